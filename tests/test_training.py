"""Two-stage training: resume equals an uninterrupted run, model directory, bad input."""

import json

import numpy as np
import pytest
import torch

from openmm_closure import load_model
from openmm_closure.cli import main
from openmm_closure.data import ArrayDataset


pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMALL = ["--samples", "16", "--flow-transforms", "1", "--flow-hidden", "8,8",
         "--dynamics-hidden", "8,8", "--batch-size", "4", "--batch-size-stage2", "8",
         "--no-progress", "--val-fraction", "0.25"]


def _dataset(path, nan=False, system="lj-mixing"):
    rng = np.random.default_rng(0)
    r, f, n = 4, 4, 12
    pos = rng.random((r, f, n, 3)).astype(np.float32) * 5
    pos[..., 2] = 0
    if nan:
        pos[1, 2, 3, 0] = np.nan
    types = (np.arange(n) % 2).astype(np.int64)
    obs = {"R_AB": rng.random((r, f)), "R_BA": rng.random((r, f))}
    ds = ArrayDataset(pos, types, np.arange(f) * 0.4, obs,
                      {"system": system, "observables": ["R_AB", "R_BA"], "params": {"cutoff": 1.0}})
    ds.save(path)
    return pos, types


def _weights(d):
    return torch.load(d / "model.pt", weights_only=True)


def test_resume_matches_uninterrupted(tmp_path):
    pos, types = _dataset(tmp_path / "ds")
    base = ["train", "--data", str(tmp_path / "ds"), "--epochs", "2", "--seed", "3", *SMALL]
    assert main([*base, "--out", str(tmp_path / "full")]) == 0
    full = _weights(tmp_path / "full")
    for k in (1, 3):  # killed in stage 1, killed in stage 2
        out = str(tmp_path / f"cut{k}")
        assert main([*base, "--out", out, "--stop-after", str(k)]) == 0
        assert not (tmp_path / f"cut{k}" / "model.pt").exists()
        assert main([*base, "--out", out]) == 2  # refuses to overwrite without --resume
        assert main([*base, "--out", out, "--resume"]) == 0
        resumed = _weights(tmp_path / f"cut{k}")
        assert resumed.keys() == full.keys()
        for name in full:
            assert torch.equal(full[name], resumed[name]), (k, name)

    # the model directory is complete and documented
    d = tmp_path / "full"
    cfg = json.loads((d / "config.json").read_text())
    for key in ("latent_dim", "epsilon", "species", "units", "manifest", "observables", "dynamics", "dt"):
        assert key in cfg
    assert cfg["latent_dim"] == 2 and cfg["dynamics"]["kind"] == "sde"  # lj-mixing defaults
    hist = json.loads((d / "history.json").read_text())
    assert len(hist["stage1"]) == 2 and len(hist["stage2"]) == 2

    model = load_model(d)
    zhat = model.encode(pos[0, 0], types)
    assert zhat.shape == (2,) and isinstance(zhat, np.ndarray)
    assert np.allclose(model.encode(pos[0, 0].astype(np.float64), types), zhat, atol=1e-6)
    zt = model.encode(torch.tensor(pos[0, 0]), torch.tensor(types))
    assert isinstance(zt, torch.Tensor)
    z0 = model.state(pos[0, 0], types)
    assert z0.shape == (model.dim,) == (4,)
    traj = model.rollout(z0, 5, samples=3, seed=1)
    assert traj.shape == (3, 6, 4)
    assert torch.equal(traj, model.rollout(z0, 5, samples=3, seed=1))
    raw = model.unscale(traj)
    assert torch.allclose(model.scale(raw), traj, atol=1e-5)
    assert model.sample_positions(zhat, 10, species=1).shape == (10, 2)

    # a configuration of a different system: more species than the model knows
    with pytest.raises(ValueError, match="species index out of range"):
        model.encode(pos[0, 0], np.full(12, 2))
    with pytest.raises(ValueError, match="shape"):
        model.encode(pos[0, 0, :, :1], types)


def test_bad_input(tmp_path, capsys):
    _dataset(tmp_path / "nan", nan=True)
    rc = main(["train", "--data", str(tmp_path / "nan"), "--out", str(tmp_path / "m1"), *SMALL])
    assert rc == 2 and "NaN" in capsys.readouterr().err

    (tmp_path / "empty").mkdir()
    rc = main(["train", "--data", str(tmp_path / "empty"), "--out", str(tmp_path / "m2"), *SMALL])
    assert rc == 2 and "error" in capsys.readouterr().err

    rc = main(["train", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "m3"), *SMALL])
    assert rc == 2 and "does not exist" in capsys.readouterr().err

    _dataset(tmp_path / "ok")
    for bad in ("0", "-2"):
        rc = main(["train", "--data", str(tmp_path / "ok"), "--out", str(tmp_path / "m4"),
                   "--latent-dim", bad, *SMALL])
        assert rc == 2 and "--latent-dim must be >= 1" in capsys.readouterr().err

    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "m4")


def test_stage2_keeps_the_best_validation_epoch(tmp_path):
    """--select one-step: the snapshot with the lowest one-step validation loss."""
    _dataset(tmp_path / "ds")
    out = tmp_path / "m"
    args = ["train", "--data", str(tmp_path / "ds"), "--out", str(out), "--epochs-stage1", "1",
            "--epochs-stage2", "8", "--lr-stage2", "0.3", "--seed", "1", "--select", "one-step", *SMALL]
    assert main(args) == 0
    hist = json.loads((out / "history.json").read_text())
    assert hist["stage2_select"] == "one-step"
    vals = [h["val"] for h in hist["stage2"]]
    best = int(np.argmin(vals)) + 1
    assert best < len(vals)  # this over-large learning rate makes later epochs worse
    assert hist["stage2_best_epoch"] == best
    ck = torch.load(out / "checkpoint.pt", weights_only=True)
    saved = _weights(out)
    for name, value in ck["best"]["dynamics"].items():
        assert torch.equal(saved["dynamics." + name], value)
    # the saved dynamics reproduce the best validation loss, not the last epoch's
    assert ck["best"]["val"] == pytest.approx(min(vals))


def test_metric_range_is_the_whole_training_set_whatever_the_split(tmp_path):
    """observable_range and the mean curve come from every replica (before the validation
    split): the same for every seed, while the state scaler (training replicas only) moves."""
    from conftest import contracting_clusters

    from openmm_closure.learn.training import TrainConfig, train_on

    ds = contracting_clusters(8, 5, 4, seed=2)
    e = ds.observables["energy"]
    ranges, scaler_hi = [], []
    for seed in range(4):
        cfg = TrainConfig(data="", out=str(tmp_path / f"s{seed}"), seed=seed, val_fraction=0.2, epochs_stage1=0,
                          epochs_stage2=1, samples=16, flow_transforms=1, flow_hidden=(8, 8),
                          encoder_hidden=(8,), encoder_embed=8, dynamics_hidden=(8, 8), progress=False, device="cpu")
        model = train_on(ds, cfg)
        saved = json.loads((tmp_path / f"s{seed}" / "config.json").read_text())
        ranges.append(saved["observable_range"])
        scaler_hi.append(float(model.state_scaler.hi[0]))
        assert np.allclose(saved["observable_mean_curve"], e.mean(0)[:, None])
    assert all(r == ranges[0] for r in ranges)
    assert ranges[0]["lo"] == [pytest.approx(e.min())] and ranges[0]["hi"] == [pytest.approx(e.max())]
    assert len(set(scaler_hi)) > 1  # the split-dependent range the metric no longer uses
