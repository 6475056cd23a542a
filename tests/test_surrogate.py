"""The surrogate integrator and ``openmm-closure rollout``: values, files, seeds, bad input."""

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from openmm_closure import load_model
from openmm_closure.md import observables
from openmm_closure.cli import main
from openmm_closure.data import ArrayDataset
from openmm_closure.couple.surrogate import SurrogateIntegrator, from_simulation, types_from_names
from openmm_closure.learn.training import TrainConfig, train_on

ROOT = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _dataset(system: str, n: int = 12) -> ArrayDataset:
    rng = np.random.default_rng(0)
    r, f = 4, 5
    pos = (rng.random((r, f, n, 3)) * 4).astype(np.float32)
    pos[..., 2] = 0
    if system == "particles2d":
        types, names, params = np.zeros(n, np.int64), ["energy"], {"a": 4.0, "b": 0.1}
        species = ["P"]
    else:
        types, names, params = (np.arange(n) % 2).astype(np.int64), ["R_AB", "R_BA"], {"cutoff": 1.0}
        species = ["A", "B"]
    obs = observables.compute(names, pos.astype(np.float64), types, **params)
    return ArrayDataset(pos, types, np.arange(f) * 0.02, obs,
                        {"system": system, "observables": names, "params": params, "species": species},
                        species_names=species)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """name -> (model dir, dataset dir): a particles2d (ODE) and an lj-mixing (SDE) model."""
    base = tmp_path_factory.mktemp("surrogate")
    out = {}
    for name in ("particles2d", "lj-mixing"):
        ds = _dataset(name)
        ds.save(base / f"data-{name}")
        cfg = TrainConfig(data="", out=str(base / f"model-{name}"), epochs_stage1=1, epochs_stage2=2,
                          samples=16, flow_transforms=1, flow_hidden=(8, 8), dynamics_hidden=(8, 8),
                          encoder_hidden=(16,), encoder_embed=8, batch_size=4, batch_size_stage2=8,
                          val_fraction=0.25, progress=False, device="cpu", seed=2)
        torch.set_num_threads(1)
        train_on(ds, cfg)
        out[name] = (base / f"model-{name}", base / f"data-{name}")
    return out


@pytest.mark.parametrize("name", ["particles2d", "lj-mixing"])
def test_run_equals_model_rollout(setup, name):
    model_dir, data_dir = setup[name]
    model = load_model(model_dir)
    ds = _dataset(name)
    pos, types = ds.positions[1, 2], ds.types[1]
    res = SurrogateIntegrator(model).run(pos, types, steps=7, samples=4, seed=11)
    assert res.samples.shape == (4, 8, model.dim) and res.mean.shape == res.std.shape == (8, model.dim)
    assert res.names == model.observables + [f"zhat_{i}" for i in range(model.latent_dim)]
    assert np.allclose(res.times, np.arange(8) * model.dt)
    want = model.unscale(model.rollout(model.state(pos, types), 7, samples=4, seed=11)).numpy()
    assert np.array_equal(res.samples, want)
    # the initial state is the encoded configuration, in raw units
    assert np.allclose(res.initial[model.macro_dim:], model.encode(pos, types), atol=1e-5)
    assert np.allclose(res.initial[: model.macro_dim], model.macro(pos, types), rtol=1e-5, atol=1e-6)
    assert np.all(res.std[0] < 1e-12)
    if name == "lj-mixing":
        assert np.all(res.std[-1] > 0)
    else:
        assert np.allclose(res.std, 0, atol=1e-12)
    assert "zhat_0" in res.summary()
    # a permutation of the particles gives the same trajectory (invariant encoder)
    perm = np.random.default_rng(0).permutation(len(types))
    again = SurrogateIntegrator(model).run(pos[perm], types[perm], steps=7, samples=4, seed=11)
    assert np.allclose(again.samples, res.samples, atol=1e-5)


@pytest.mark.parametrize("ext", ["csv", "npz"])
def test_rollout_cli_file_and_seed(setup, tmp_path, capsys, ext):
    model_dir, data_dir = setup["lj-mixing"]
    model = load_model(model_dir)
    args = ["rollout", "--model", str(model_dir), "--data", str(data_dir), "--replica", "2", "--frame", "1",
            "--steps", "9", "--samples", "5"]
    paths = []
    for seed, name in ((3, "a"), (3, "b"), (4, "c")):
        p = tmp_path / f"{name}.{ext}"
        assert main([*args, "--seed", str(seed), "--out", str(p)]) == 0
        paths.append(p)
    out = capsys.readouterr().out
    assert "replica 2, frame 1" in out and "R_AB" in out and f"wrote {paths[-1]}" in out
    if ext == "csv":
        rows = [list(csv.reader(p.open())) for p in paths]
        header = rows[0][0]
        assert header[0] == "time_ps" and header[1:3] == ["R_AB_mean", "R_AB_std"]
        assert len(header) == 1 + 2 * model.dim and len(rows[0]) == 1 + 10
        a, b, c = (np.array(r[1:], dtype=float) for r in rows)
        assert np.allclose(a[:, 0], np.arange(10) * model.dt)
    else:
        files = [np.load(p) for p in paths]
        f = files[0]
        assert f["samples"].shape == (5, 10, model.dim) and f["mean"].shape == (10, model.dim)
        assert f["std"].shape == (10, model.dim) and f["time_ps"].shape == (10,)
        assert list(f["names"]) == ["R_AB", "R_BA", "zhat_0", "zhat_1"]
        a, b, c = (x["samples"] for x in files)
        # the same frame through the Python API
        ds = _dataset("lj-mixing")
        res = SurrogateIntegrator(model).run(ds.positions[2, 1], ds.types[2], 9, samples=5, seed=3)
        assert np.allclose(a, res.samples, atol=1e-6)
    assert np.array_equal(a, b)  # same seed: identical
    assert not np.allclose(a, c)  # another seed: another ensemble


def test_rollout_cli_positions_files(setup, tmp_path, capsys):
    model_dir, data_dir = setup["particles2d"]
    ds = _dataset("particles2d")
    np.save(tmp_path / "frames.npy", ds.positions[0])  # (F, n, 3)
    assert main(["rollout", "--model", str(model_dir), "--positions", str(tmp_path / "frames.npy"),
                 "--frame", "3", "--steps", "4", "--out", str(tmp_path / "a.npz")]) == 0
    assert main(["rollout", "--model", str(model_dir), "--positions", str(data_dir / "replica_00000.h5"),
                 "--frame", "3", "--steps", "4", "--out", str(tmp_path / "b.npz")]) == 0
    a, b = np.load(tmp_path / "a.npz"), np.load(tmp_path / "b.npz")
    assert a["samples"].shape == (1, 5, 3)
    assert np.allclose(a["samples"], b["samples"], atol=1e-6)


def test_bad_input(setup, tmp_path, capsys):
    p2d, p2d_data = setup["particles2d"]
    lj, lj_data = setup["lj-mixing"]
    out = str(tmp_path / "r.csv")

    def fails(argv, text):
        rc = main(["rollout", *argv])
        err = capsys.readouterr().err
        assert rc == 2, argv
        assert text in err, err
        assert err.strip().count("\n") == 0, err  # one line
        assert not Path(out).exists()

    fails(["--model", str(tmp_path / "nope"), "--data", str(p2d_data), "--steps", "3", "--out", out],
          "does not exist")
    for steps in ("0", "-4"):
        fails(["--model", str(p2d), "--data", str(p2d_data), "--steps", steps, "--out", out],
              "--steps must be >= 1")
    fails(["--model", str(p2d), "--data", str(p2d_data), "--steps", "3", "--samples", "0", "--out", out],
          "--samples must be >= 1")
    # a two-species configuration for a one-species model
    fails(["--model", str(p2d), "--data", str(lj_data), "--steps", "3", "--out", out], "species")
    np.save(tmp_path / "pos.npy", _dataset("lj-mixing").positions[0, 0])
    np.save(tmp_path / "types.npy", np.full(12, 2))
    fails(["--model", str(lj), "--positions", str(tmp_path / "pos.npy"), "--types", str(tmp_path / "types.npy"),
           "--steps", "3", "--out", out], "species index out of range")
    fails(["--model", str(lj), "--positions", str(tmp_path / "pos.npy"), "--steps", "3", "--out", out],
          "--types")
    np.save(tmp_path / "short.npy", np.zeros(5, dtype=np.int64))
    fails(["--model", str(lj), "--positions", str(tmp_path / "pos.npy"), "--types", str(tmp_path / "short.npy"),
           "--steps", "3", "--out", out], "do not match")
    fails(["--model", str(p2d), "--data", str(p2d_data), "--frame", "99", "--steps", "3", "--out", out],
          "--frame 99 out of range")
    fails(["--model", str(p2d), "--data", str(p2d_data), "--steps", "3", "--out", str(tmp_path / "r.txt")],
          ".csv or .npz")

    integ = SurrogateIntegrator(load_model(p2d))
    with pytest.raises(ValueError, match="NaN"):
        integ.run(np.full((4, 3), np.nan), np.zeros(4, int), 3)
    with pytest.raises(ValueError, match="shape"):
        integ.run(np.zeros((4, 2)), np.zeros(4, int), 3)
    with pytest.raises(ValueError, match="unknown to this model"):
        types_from_names(["A", "C"], ["A", "B"])


def test_from_simulation(setup):
    from openmm_closure import systems

    model_dir, _ = setup["particles2d"]
    model = load_model(model_dir)
    spec = systems.build("particles2d", n_particles=16, steps=3, seed=2)
    sim = spec.make_simulation("Reference")
    sim.step(3)
    pos = sim.context.getState(getPositions=True).getPositions(asNumpy=True)._value
    res = from_simulation(sim, model, steps=5, samples=2)
    want = SurrogateIntegrator(model).run(pos, spec.types, 5, samples=2)
    assert np.array_equal(res.samples, want.samples)
    assert not np.allclose(pos, spec.positions)  # the simulation's current state was used


def test_model_side_does_not_import_openmm():
    code = ("import sys, openmm_closure.couple.surrogate, openmm_closure.hosts.export; "
            "print(sorted(m for m in sys.modules if m == 'openmm' or m.startswith('openmm.')))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"
