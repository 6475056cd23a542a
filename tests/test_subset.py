"""Nested training sets: the first n replicas of a simulated ensemble as a dataset."""

import numpy as np
import pytest

from openmm_closure.data import check_dataset, load, read_manifest, subset_dataset
from openmm_closure.md.simulate import simulate_ensemble

KW = dict(regime="in-dst", n_particles=12, seed=3, platform="Reference", progress=False, steps=6)


@pytest.fixture(scope="module")
def ensembles(tmp_path_factory):
    base = tmp_path_factory.mktemp("subset")
    big = simulate_ensemble("particles2d", base / "big", 4, **KW)
    direct = simulate_ensemble("particles2d", base / "direct", 2, **KW)
    return base, big, direct


def test_subset_equals_direct_simulation(ensembles):
    base, big, direct = ensembles
    sub = subset_dataset(big, base / "sub", 2)
    a, b = load(sub), load(direct)
    assert len(a) == 2 and a.manifest["subset_of"] == {"replicas": 4}
    assert a.manifest["seeds"] == b.manifest["seeds"] == read_manifest(big)["seeds"][:2]
    for i in range(2):
        np.testing.assert_array_equal(np.asarray(a.positions[i]), np.asarray(b.positions[i]))
        np.testing.assert_array_equal(a.observables["energy"][i], b.observables["energy"][i])
    check_dataset(sub)
    # asking again, or naming the direct run of the same request and size, is a no-op
    assert subset_dataset(big, sub, 2) == sub
    assert subset_dataset(big, direct, 2) == direct


def test_subset_refuses_bad_size_and_other_directory(ensembles):
    base, big, _ = ensembles
    for n in (0, 5, 1.5, True):
        with pytest.raises(ValueError, match="subset size"):
            subset_dataset(big, base / "bad", n)
    other = subset_dataset(big, base / "three", 3)
    with pytest.raises(ValueError, match="not empty"):
        subset_dataset(big, other, 2)
    assert len(load(other)) == 3  # untouched
