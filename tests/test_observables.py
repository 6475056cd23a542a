"""Observables against brute-force O(n^2) numpy references."""

import numpy as np
import pytest

from openmm_closure.md import observables as ob


def brute_energy(x, a=4.0, b=0.1):
    n = x.shape[0]
    tot = 0.0
    for i in range(n):
        for j in range(i + 1, n):
            r = np.hypot(*(x[i, :2] - x[j, :2]))
            tot += np.log(np.cosh(a * (1 - r))) / a + b * (1 - r)
    return tot / (n * (n - 1) / 2)


def brute_ratios(x, t, cutoff, box=None):
    d = x[:, None, :] - x[None, :, :]
    if box is not None:
        L = np.asarray(box, float)[: x.shape[1]]
        d -= L * np.round(d / L)
    r = np.sqrt((d**2).sum(-1))
    nb = (r <= cutoff) & ~np.eye(len(x), dtype=bool)
    a, b = t == 0, t == 1
    r_ab = nb[a][:, b].sum() / nb[a].sum()
    r_ba = nb[b][:, a].sum() / nb[b].sum()
    return r_ab, r_ba


def _config(rng, n, L):
    """Random 2D configuration with particles on the walls and pairs near the cutoff."""
    x = np.zeros((n, 3))
    x[:, :2] = rng.uniform(0, L, (n, 2))
    x[0, :2] = [0.0, 0.0]          # corner / wall
    x[1, :2] = [L - 1e-9, 0.3]     # the other wall (periodic edge)
    x[2, :2] = [L - 1e-3, L - 1e-3]
    # pairs just inside / outside the cutoff 2.5
    x[3, :2] = [5.0, 5.0]
    x[4, :2] = [5.0 + 2.5 - 1e-7, 5.0]
    x[5, :2] = [9.0, 9.0]
    x[6, :2] = [9.0, 9.0 + 2.5 + 1e-7]
    x[7, :2] = [0.4, 3.0]           # across the periodic x edge from 8
    x[8, :2] = [L - 1.0, 3.0]
    return x


def test_energy_matches_brute_force():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 25, 3)) * 0.6
    x[..., 2] = 0
    x[0, 0, :2] = [40.0, 0.0]   # far away: large |a(1 - r)| must not overflow
    got = ob.mean_pair_energy(x)
    want = [brute_energy(f) for f in x]
    np.testing.assert_allclose(got, want, rtol=1e-12)
    np.testing.assert_allclose(ob.mean_pair_energy(x, a=2.0, b=0.3)[1], brute_energy(x[1], 2.0, 0.3))
    assert ob.mean_pair_energy(x[0]).shape == ()
    big = np.zeros((2, 3)); big[1, 0] = 1e3
    assert np.isfinite(ob.mean_pair_energy(big))


@pytest.mark.parametrize("periodic", [False, True])
def test_ratios_match_brute_force(periodic):
    rng = np.random.default_rng(1)
    L = 14.0
    frames = np.stack([_config(rng, 120, L) for _ in range(3)])
    types = rng.integers(0, 2, 120)
    box = (L, L, 1.0) if periodic else None
    rab, rba = ob.neighbour_ratios(frames, types, cutoff=2.5, box=box)
    assert rab.shape == (3,)
    for k in range(3):
        want = brute_ratios(frames[k, :, :2], types, 2.5, box)
        np.testing.assert_allclose([rab[k], rba[k]], want, rtol=1e-12)


def test_ratios_periodic_edges_and_unwrapped_input():
    rng = np.random.default_rng(2)
    L = 10.0
    x = _config(rng, 60, L)
    types = rng.integers(0, 2, 60)
    shifted = x.copy()
    shifted[:, :2] += L * rng.integers(-2, 3, (60, 2))   # images of the same configuration
    a = ob.neighbour_ratios(x, types, 2.5, box=(L, L, L))
    b = ob.neighbour_ratios(shifted, types, 2.5, box=(L, L, L))
    np.testing.assert_allclose(a, b)
    np.testing.assert_allclose(a, brute_ratios(x[:, :2], types, 2.5, (L, L)))
    # the periodic pair 7-8 matters: walled and periodic results differ
    assert not np.allclose(a, ob.neighbour_ratios(x, types, 2.5, box=None))


def test_ratios_3d():
    rng = np.random.default_rng(3)
    x = rng.uniform(0, 6, (80, 3))
    t = rng.integers(0, 2, 80)
    np.testing.assert_allclose(ob.neighbour_ratios(x, t, 1.5), brute_ratios(x, t, 1.5))
    np.testing.assert_allclose(ob.neighbour_ratios(x, t, 1.5, box=(6, 6, 6)),
                               brute_ratios(x, t, 1.5, (6, 6, 6)))


def test_polymer_observables():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(5, 30, 3))
    ext = ob.extension(x)
    want = [max(f[:, 0]) - min(f[:, 0]) for f in x]
    np.testing.assert_allclose(ext, want)
    np.testing.assert_allclose(ob.end_to_end(x), x[:, -1] - x[:, 0])
    out = ob.compute(["end_to_end_y", "extension"], x)
    np.testing.assert_allclose(out["end_to_end_y"], x[:, -1, 1] - x[:, 0, 1])


def test_compute_registry():
    rng = np.random.default_rng(5)
    x = rng.uniform(0, 5, (2, 40, 3)); x[..., 2] = 0
    t = np.arange(40) % 2
    out = ob.compute(["energy", "R_AB", "R_BA"], x, t, a=3.0, b=0.2, cutoff=1.0, box=None,
                     unrelated="ignored")
    assert set(out) == {"energy", "R_AB", "R_BA"}
    np.testing.assert_allclose(out["energy"], ob.mean_pair_energy(x, 3.0, 0.2))
    np.testing.assert_allclose(out["R_BA"], ob.neighbour_ratios(x, t, 1.0)[1])
    with pytest.raises(ValueError, match="unknown observable 'nope'.*energy"):
        ob.compute(["nope"], x, t)
    assert set(ob.DEFAULT_OBSERVABLES) == {"particles2d", "lj-mixing", "polymer"}
    for names in ob.DEFAULT_OBSERVABLES.values():
        ob.check_names(names)
