"""The ablation baselines: each trains on a tiny dataset with a falling loss, loads like the
method's model, and only AE-Aug depends on the particle order."""

import numpy as np
import pytest
import torch
from conftest import contracting_clusters

from openmm_closure import load_model
from openmm_closure.data import ArrayDataset
from openmm_closure.models.baselines import (
    DeepSetSetDecoderEncoder,
    FlatMLPEncoder,
    chamfer_distance,
)
from openmm_closure.learn.training import STAGE1_OBJECTIVES, TrainConfig, train_on

N, R, F = 12, 6, 8


def _dataset(n=N, seed=0):
    return contracting_clusters(n, R, F, seed)


def _config(tmp_path, method, **kw):
    base = dict(data="", out=str(tmp_path / method), method=method, epochs_stage1=8, epochs_stage2=2,
                batch_size=8, samples=64, flow_transforms=1, flow_hidden=(16, 16), encoder_hidden=(16, 16),
                encoder_embed=16, dynamics_hidden=(16, 16), progress=False, lr=3e-3, seed=0)
    base.update(kw)
    return TrainConfig(**base)


def test_all_methods_are_registered():
    assert set(STAGE1_OBJECTIVES) == {"ours", "ae-aug", "ae-inve", "ae-inve-cd", "inve", "no-closure"}


@pytest.mark.parametrize("method", ["ae-aug", "ae-inve", "ae-inve-cd", "inve"])
def test_baseline_trains_and_its_loss_falls(tmp_path, method):
    cfg = _config(tmp_path, method)
    model = train_on(_dataset(), cfg)
    h = load_model(cfg.out).config["method"], model.config["method"]
    assert h == (method, method)
    losses = [e["train"] for e in model_history(cfg.out)["stage1"]]
    assert len(losses) == cfg.epochs_stage1 and np.all(np.isfinite(losses))
    assert losses[-1] < losses[0], losses
    # the saved model reloads and rolls out like the method's
    m = load_model(cfg.out)
    pos = _dataset().positions[0, 0]
    z = m.state(pos, np.zeros(N, dtype=np.int64))
    assert torch.isfinite(m.rollout(z, 3)).all()


def model_history(out):
    import json
    from pathlib import Path

    return json.loads((Path(out) / "history.json").read_text())


def test_ae_aug_depends_on_the_order_and_ours_does_not(tmp_path):
    ds = _dataset()
    ours = train_on(ds, _config(tmp_path, "ours", epochs_stage1=1, epochs_stage2=1))
    aug = train_on(ds, _config(tmp_path, "ae-aug", epochs_stage1=1, epochs_stage2=1))
    pos = np.asarray(ds.positions[0, 3], dtype=np.float64)
    types = np.zeros(N, dtype=np.int64)
    rng = np.random.default_rng(1)
    z_ours = ours.encode(pos, types)
    z_aug = aug.encode(pos, types)
    d_ours, d_aug = [], []
    for _ in range(10):
        p = rng.permutation(N)
        d_ours.append(np.abs(ours.encode(pos[p], types[p]) - z_ours).max())
        d_aug.append(np.abs(aug.encode(pos[p], types[p]) - z_aug).max())
    assert max(d_ours) < 1e-6
    assert min(d_aug) > 1e-4, d_aug


def test_ae_aug_is_tied_to_one_particle_number(tmp_path):
    aug = train_on(_dataset(), _config(tmp_path, "ae-aug", epochs_stage1=1, epochs_stage2=1))
    with pytest.raises(ValueError, match="exactly 12 particles"):
        aug.encode(np.zeros((N + 3, 3)), np.zeros(N + 3, dtype=np.int64))
    # a training set with two particle numbers cannot train AE-Aug (nor AE-InvE's ordered decoder)
    ds = _dataset()
    small = _dataset(n=5, seed=1)
    mixed = ArrayDataset([np.asarray(ds.positions[r]) for r in range(R)] + [np.asarray(small.positions[0])],
                         [np.zeros(N, np.int64)] * R + [np.zeros(5, np.int64)], np.arange(F) * 0.02,
                         {"energy": np.vstack([ds.observables["energy"], small.observables["energy"][:1]])},
                         {"system": "particles2d", "observables": ["energy"]})
    for method in ("ae-aug", "ae-inve"):
        with pytest.raises(ValueError, match="one particle number"):
            train_on(mixed, _config(tmp_path, method, out=str(tmp_path / f"mixed-{method}"), val_fraction=0.0))


def test_chamfer_distance_by_hand():
    a = torch.tensor([[0.0, 0.0], [2.0, 0.0]])
    b = torch.tensor([[0.0, 1.0]])
    # a -> b: (1 + 5) / 2 = 3; b -> a: 1
    assert float(chamfer_distance(a, b)) == pytest.approx(4.0)
    assert float(chamfer_distance(a, a)) == 0.0


def test_baseline_encoders_shapes():
    enc = FlatMLPEncoder(3, in_features=2, n_species=2, n_particles=4, hidden=(8,), decoder_hidden=(8,))
    z = enc(torch.rand(4, 3), torch.tensor([0, 1, 1, 0]))
    assert z.shape == (3,)
    assert enc.reconstruct(z.unsqueeze(0)).shape == (1, 4, 4)
    cd = DeepSetSetDecoderEncoder(2, in_features=2, n_species=2, n_points=5, hidden=(8,), embed=8)
    z = cd(torch.rand(7, 3), torch.tensor([0, 1, 1, 0, 0, 1, 1]))
    assert cd.reconstruct(z.unsqueeze(0)).shape == (1, 2, 5, 2)
