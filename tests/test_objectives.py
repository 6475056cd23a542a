"""The stage-1 seam and the shared configuration: every registered objective satisfies the
Protocol and trains a step; ModelConfig reads every config.json shape written so far and
rebuilds the same model; the per-system catalogue and the species check agree with
their users."""

import json

import numpy as np
import pytest
import torch
from conftest import contracting_clusters

from openmm_closure import catalog
from openmm_closure.learn.frames import SetBatch, TrainingFrames
from openmm_closure.learn.model import ClosureModel, load_model
from openmm_closure.learn.model_config import ModelConfig
from openmm_closure.learn.objectives import OBJECTIVES, Objective, Stage1Objective
from openmm_closure.species import check_species, state_names
from openmm_closure.learn.training import STAGE1_OBJECTIVES, TrainConfig, _build_model


def _config(method):
    return TrainConfig(data="tiny", out="unused", method=method, samples=16, flow_transforms=1,
                       flow_hidden=(8,), encoder_hidden=(8,), encoder_embed=8, dynamics_hidden=(8,), seed=0)


@pytest.mark.parametrize("method", sorted(OBJECTIVES))
def test_every_objective_satisfies_the_protocol_and_its_loss_has_gradients(method):
    assert STAGE1_OBJECTIVES is OBJECTIVES
    cfg = _config(method)
    frames = TrainingFrames(contracting_clusters(6, 4, 5, seed=1), cfg)
    cls = OBJECTIVES[method]
    assert issubclass(cls, Objective)
    model = _build_model(cfg, frames)
    objective = cls(model, cfg)
    assert isinstance(objective, Stage1Objective)
    objective.bind(frames, torch.device("cpu"))
    if cls.skips_stage1:
        assert model.latent_dim == 0 and objective.parameters() == []
        return
    batch = frames.batch(model, frames.items(frames.train[:2], 2), torch.device("cpu"))
    assert isinstance(batch, SetBatch) and batch.x.shape[1] == model.in_features
    assert float(batch.x.abs().max()) <= 1.0 + 1e-6  # min-max map of the training range
    loss = objective.loss(batch, torch.Generator().manual_seed(0))
    assert loss.shape == () and torch.isfinite(loss)
    params = objective.parameters()
    loss.backward()
    assert any(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in params)


def _written_configs(tmp_path):
    """config.json shapes: one written by training now, and the older shapes derived from
    it by dropping the keys added later (center, observable ranges, mean curve, ood margin,
    hashes, package version), and the no-closure one."""
    cfg = _config("ours")
    frames = TrainingFrames(contracting_clusters(6, 4, 5, seed=1), cfg)
    now = json.loads(json.dumps(_build_model(cfg, frames).config))
    old = {k: v for k, v in now.items() if k not in ("observable_range", "observable_mean_curve", "ood_margin",
                                                     "package_version", "samples", "units", "training")}
    old["encoder"] = {k: v for k, v in now["encoder"].items() if k != "center"}
    oldest = {k: now[k] for k in ("in_features", "n_species", "latent_dim", "observables", "dt")}
    ncfg = _config("no-closure")
    none = json.loads(json.dumps(_build_model(ncfg, frames).config))
    return {"now": now, "old": old, "oldest": oldest, "no-closure": none}


def test_model_config_round_trips_every_written_shape(tmp_path):
    for name, d in _written_configs(tmp_path).items():
        spec = ModelConfig.from_dict(d)
        assert spec.to_dict() == d, name  # nothing added, nothing lost
        assert ModelConfig.from_dict(spec.to_dict()) == spec
        model = ClosureModel(d)
        assert model.config == d and model.spec == spec
        typed = ClosureModel(spec)
        assert [k for k in typed.state_dict()] == [k for k in model.state_dict()]
    old = ModelConfig.from_dict(_written_configs(tmp_path)["old"])
    assert old.center is False and old.ood_margin is None and old.observable_range is None
    oldest = ModelConfig.from_dict(_written_configs(tmp_path)["oldest"])
    assert (oldest.encoder_kind, oldest.dynamics_kind, oldest.method, oldest.epsilon) == ("deepset", "ode", "ours", 0.01)
    with pytest.raises(KeyError, match="latent_dim"):
        ModelConfig.from_dict({"in_features": 2, "n_species": 1})


def test_model_config_unknown_keys_survive_and_a_saved_model_reloads(tmp_path):
    d = _written_configs(tmp_path)["now"]
    d["future_key"] = {"a": 1}
    assert ModelConfig.from_dict(d).to_dict()["future_key"] == {"a": 1}
    from openmm_closure.learn.model import save_model

    model = ClosureModel(ModelConfig.from_dict(d))
    save_model(model, tmp_path / "m")
    back = load_model(tmp_path / "m")
    assert back.spec == model.spec
    x = torch.rand(6, 3)
    assert torch.equal(back.encoder(x, torch.zeros(6, dtype=torch.long)),
                       model.eval().encoder(x, torch.zeros(6, dtype=torch.long)))


def test_catalogue_drives_the_training_defaults():
    cfg = _config("ours")
    for system, n_species, d, kind, center in (("particles2d", 1, 2, "ode", True), ("lj-mixing", 2, 2, "sde", False),
                                               ("polymer", 1, 2, "sde", True), ("custom", 3, 2, "sde", False)):
        frames = TrainingFrames(contracting_clusters(6, 4, 5, seed=1), cfg)
        frames.system, frames.n_species = system, n_species
        frames.species = [str(i) for i in range(n_species)]
        model = _build_model(cfg, frames)
        assert (model.latent_dim, model.spec.dynamics_kind, model.spec.center) == (d, kind, center), system
    assert catalog.facts("lj-mixing").observables == ("R_AB", "R_BA")
    from openmm_closure.md.observables import DEFAULT_OBSERVABLES

    assert all(DEFAULT_OBSERVABLES[s] == catalog.CATALOG[s].observables for s in catalog.SYSTEMS)


def test_one_species_check_for_every_user():
    assert check_species(np.array([0.0, 1.0]), 2).dtype == np.int64
    for bad, match in (([0, 2], "out of range"), ([-1], "out of range"), ([0.5], "non-integer"),
                       (np.array([True]), "dtype")):
        with pytest.raises(ValueError, match=match):
            check_species(bad, 2)
    cfg = _config("ours")
    frames = TrainingFrames(contracting_clusters(6, 4, 5, seed=1), cfg)
    model = _build_model(cfg, frames).eval()
    with pytest.raises(ValueError, match="species index out of range"):
        model.encode(np.zeros((6, 3)), np.full(6, model.n_species))
    from openmm_closure.couple.surrogate import SurrogateIntegrator

    with pytest.raises(ValueError, match="species index out of range"):
        SurrogateIntegrator(model).check(np.zeros((6, 3)), np.full(6, model.n_species))
    assert SurrogateIntegrator(model).names == state_names(model.observables, model.latent_dim)
