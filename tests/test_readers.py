"""The readers the CLI uses, called from Python: one configuration, a types file, the
manifest builder, and the species-name agreement check."""

import numpy as np
import pytest

from openmm_closure import data
from openmm_closure.couple.surrogate import check_species_names


@pytest.fixture
def saved(tmp_path):
    rng = np.random.default_rng(0)
    pos = rng.normal(size=(2, 4, 6, 3)).astype(np.float32)
    types = np.array([[0, 1, 0, 1, 1, 0], [1, 1, 0, 0, 0, 1]])
    ds = data.ArrayDataset(pos, types, np.arange(4) * 0.5, {"energy": rng.normal(size=(2, 4))},
                           {"system": "particles2d", "species": ["A", "B"]})
    return ds.save(tmp_path / "ds"), pos, types


def test_read_configuration_from_a_dataset_and_from_files(saved, tmp_path):
    d, pos, types = saved
    c = data.read_configuration(data=d, replica=1, frame=2)
    np.testing.assert_array_equal(c.positions, pos[1, 2].astype(np.float64))
    np.testing.assert_array_equal(c.types, types[1])
    assert c.species == ["A", "B"] and "replica 1, frame 2" in c.where
    c = data.read_configuration(positions=d / data.replica_filename(1), frame=3)
    np.testing.assert_array_equal(c.positions, pos[1, 3])
    np.testing.assert_array_equal(c.types, types[1])
    np.save(tmp_path / "traj.npy", pos[0])
    np.save(tmp_path / "t.npy", types[0])
    c = data.read_configuration(positions=tmp_path / "traj.npy", frame=1, types=tmp_path / "t.npy")
    np.testing.assert_array_equal(c.positions, pos[0, 1])
    np.testing.assert_array_equal(c.types, types[0])
    assert c.species is None
    with pytest.raises(ValueError, match="--frame 4 out of range"):
        data.read_configuration(data=d, frame=4)
    with pytest.raises(ValueError, match="exactly one"):
        data.read_configuration(data=d, positions=tmp_path / "traj.npy")
    with pytest.raises(FileNotFoundError):
        data.read_configuration(positions=tmp_path / "nope.npy")


def test_read_types_agrees_across_sources(saved, tmp_path):
    d, _, types = saved
    np.save(tmp_path / "t.npy", types[1])
    for source in (d, d / data.replica_filename(1), tmp_path / "t.npy"):
        got = data.read_types(source, replica=1)
        assert got.dtype == np.int64
        np.testing.assert_array_equal(got, types[1])
    np.save(tmp_path / "f.npy", np.zeros(3))
    with pytest.raises(ValueError, match="1-D integer"):
        data.read_types(tmp_path / "f.npy")
    with pytest.raises(ValueError, match="--replica 2 out of range"):
        data.read_types(d, replica=2)


def test_the_one_manifest_builder_serves_arrays_and_saved_datasets(saved):
    d, _, _ = saved
    m = data.load(d).manifest
    built = data.build_manifest(system="particles2d", regime="in-dst", observables=["energy"], dt_frame=0.5,
                                n_frames=4, n_particles=[6, 6], species=["A", "B"], versions=m["versions"])
    assert {k: m[k] for k in built} == built


def test_species_names_must_agree():
    check_species_names(None, ["A", "B"])
    check_species_names(["A", "B"], ["0", "1"])  # a model without names accepts any
    with pytest.raises(ValueError, match=r"species \['B', 'A'\] differ"):
        check_species_names(["B", "A"], ["A", "B"])
