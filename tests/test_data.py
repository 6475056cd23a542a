"""Dataset format: ArrayDataset <-> save/load round trips, lazy indexing, mixed n."""

import json

import numpy as np
import pytest

from openmm_closure.data import ArrayDataset, load, read_replica, replica_filename


def _ds(r=3, f=4, n=6, seed=0, **kw):
    rng = np.random.default_rng(seed)
    pos = rng.random((r, f, n, 3)).astype(np.float32)
    types = (np.arange(n) % 2).astype(np.int64)
    obs = {"R_AB": rng.random((r, f)), "R_BA": rng.random((r, f))}
    return ArrayDataset(pos, types, np.arange(f) * 0.4, obs,
                        {"system": "lj-mixing", "params": {"cutoff": 2.5, "box": None}}, **kw)


def test_array_dataset_interface():
    ds = _ds()
    assert len(ds) == 3
    assert ds.positions[[0, 2]].shape == (2, 4, 6, 3)
    assert ds.positions[1].dtype == np.float32
    assert ds.types.shape == (3, 6) and ds.types.dtype == np.int64
    assert ds.times.shape == (4,)
    assert ds.observables["R_AB"].shape == (3, 4)
    m = ds.manifest
    for key in ("system", "regime", "params", "observables", "dt_frame", "n_frames",
                "n_particles", "seeds", "versions", "format_version"):
        assert key in m
    assert m["n_particles"] == [6, 6, 6] and m["n_frames"] == 4 and m["format_version"] == 1
    assert m["dt_frame"] == pytest.approx(0.4)
    r = ds.replica(2)
    assert r.positions.shape == (4, 6, 3) and r.types.shape == (6,)


def test_save_load_roundtrip(tmp_path):
    import mdtraj

    ds = _ds()
    ds.save(tmp_path)
    json.loads((tmp_path / "manifest.json").read_text())
    got = load(tmp_path)
    assert len(got) == 3 and got.manifest["system"] == "lj-mixing"
    np.testing.assert_array_equal(got.positions[1], ds.positions[1])
    np.testing.assert_array_equal(got.positions[[2, 0]], ds.positions[[2, 0]])
    np.testing.assert_array_equal(got.positions[0, [3, 1]], ds.positions[0, [3, 1]])
    np.testing.assert_array_equal(got.positions[0, 1:3, :2], ds.positions[0, 1:3, :2])
    np.testing.assert_array_equal(np.asarray(got.positions), np.asarray(ds.positions))
    np.testing.assert_array_equal(got.types, ds.types)
    np.testing.assert_allclose(got.times, ds.times, rtol=1e-6)
    for k in ("R_AB", "R_BA"):
        np.testing.assert_array_equal(got.observables[k], ds.observables[k])
    rep = read_replica(tmp_path / replica_filename(1))
    np.testing.assert_array_equal(rep.positions, ds.positions[1])
    traj = mdtraj.load(str(tmp_path / replica_filename(0)))
    np.testing.assert_array_equal(traj.xyz, ds.positions[0])
    assert [a.name for a in traj.topology.atoms] == ["A", "B"] * 3


def test_units_attributes(tmp_path):
    import tables

    _ds().save(tmp_path)
    with tables.open_file(str(tmp_path / replica_filename(0))) as h:
        assert h.root.coordinates.attrs["units"] == "nanometers"
        assert h.root.time.attrs["units"] == "picoseconds"
        assert h.root.observables.R_AB.attrs["units"] == "dimensionless"
        assert h.root.species.attrs["units"] == "dimensionless"


def test_mixed_particle_numbers(tmp_path):
    rng = np.random.default_rng(1)
    pos = [rng.random((3, n, 3)) for n in (4, 7)]
    types = [np.zeros(4, int), np.ones(7, int)]
    ds = ArrayDataset(pos, types, np.arange(3.0), {"energy": rng.random((2, 3))},
                      {"system": "particles2d"})
    ds.save(tmp_path)
    got = load(tmp_path)
    assert got.n_particles == [4, 7]
    parts = got.positions[[0, 1]]
    assert isinstance(parts, list) and parts[1].shape == (3, 7, 3)
    assert isinstance(got.types, list) and got.types[1].shape == (7,)
    np.testing.assert_allclose(got.positions[1], pos[1].astype(np.float32))


def test_two_datasets_side_by_side(tmp_path):
    _ds(n=6).save(tmp_path / "a")
    _ds(n=10, seed=3).save(tmp_path / "b")
    a, b = load(tmp_path / "a"), load(tmp_path / "b")
    assert a.positions[0].shape == (4, 6, 3) and b.positions[0].shape == (4, 10, 3)


def test_bad_shapes():
    with pytest.raises(ValueError):
        ArrayDataset(np.zeros((2, 3, 4, 3)), np.zeros(5, int), np.arange(3.0))
    with pytest.raises(ValueError):
        ArrayDataset(np.zeros((2, 3, 4, 3)), np.zeros(4, int), np.arange(3.0), {"energy": np.zeros((2, 2))})


def test_load_missing_dir(tmp_path):
    with pytest.raises(FileNotFoundError):
        load(tmp_path)
