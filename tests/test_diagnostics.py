"""What ẑ explains: R² against set statistics and the within-trajectory variance share,
on planted labels (array level) and through a real trained model."""

import numpy as np
import pytest
from conftest import contracting_clusters

from openmm_closure.evaluate.diagnostics import diagnose, explain, r2_linear, set_statistics, within_fraction

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_planted_label_and_time_varying_signal():
    ds = contracting_clusters(20, 6, 8, seed=3)
    pos = np.asarray(ds.positions[:], dtype=np.float64)  # (R, F, n, 3)
    st = set_statistics(pos, ds.types, 1, 2)
    assert np.allclose(st["centre_x"], pos[..., 0].mean(-1))
    # planted label: ẑ = affine function of the centre of mass, constant in time
    label = np.stack([2.0 * st["centre_x"] - 1.0, 0.5 * st["centre_y"] + 3.0 * st["centre_x"]], -1)
    res = explain(label, st)
    assert res["r2"]["zhat_0"]["centre_x"] > 0.999 and res["r2"]["zhat_1"]["joint"] > 0.999
    assert max(res["within_fraction"]) < 1e-9
    assert "per-trajectory label" in res["reading"]
    # time-varying: ẑ = radius of gyration (the clusters contract)
    res = explain(st["radius_of_gyration"][..., None], st)
    assert res["r2"]["zhat_0"]["radius_of_gyration"] > 0.999
    assert res["within_fraction"][0] > 0.3 and "per-trajectory label" not in res["reading"]
    # noise explains nothing
    noise = np.random.default_rng(0).normal(size=label.shape[:2] + (1,))
    assert explain(noise, st)["r2"]["zhat_0"]["centre_x"] < 0.2
    assert r2_linear(np.arange(10.0), np.arange(10.0)[:, None] ** 1) == pytest.approx(1.0)
    assert within_fraction(np.zeros((3, 4, 1))) == [0.0]


def test_uncentred_model_reads_the_centre_as_a_label(tmp_path):
    """One rigid cluster shape translated by a per-trajectory offset: an uncentred encoder's ẑ
    is a function of the centre only (R² with the centre high, no variance in time)."""
    from openmm_closure.data import ArrayDataset
    from openmm_closure.md.observables import mean_pair_energy
    from openmm_closure.learn.training import TrainConfig, train_on

    rng = np.random.default_rng(1)
    n, r, f = 16, 8, 4
    shape = rng.normal(scale=0.3, size=(n, 2))
    pos = np.zeros((r, f, n, 3), dtype=np.float32)
    for i in range(r):
        pos[i, :, :, :2] = shape + rng.uniform(-1, 1, size=2)
    e = mean_pair_energy(pos.astype(np.float64)) + 1e-3 * np.arange(f)  # varies a little in time
    ds = ArrayDataset(pos, np.zeros(n, np.int64), np.arange(f) * 0.02, {"energy": e},
                      {"system": "particles2d", "observables": ["energy"], "dt_frame": 0.02})
    cfg = TrainConfig(data="", out=str(tmp_path / "m"), center=False, epochs_stage1=1, epochs_stage2=1,
                      samples=16, flow_transforms=1, flow_hidden=(8, 8), encoder_hidden=(16,), encoder_embed=8,
                      dynamics_hidden=(8, 8), batch_size=8, progress=False, device="cpu")
    model = train_on(ds, cfg)
    res = diagnose(model, ds, list(range(r)))
    assert max(res["within_fraction"]) < 1e-6
    assert min(row["joint"] for row in res["r2"].values()) > 0.9
    assert "per-trajectory label" in res["reading"]
