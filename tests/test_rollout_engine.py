"""One rollout engine: the same seed gives the same ensemble on every path.

``model.rollout`` (eager), the evaluation's rollout (``evaluation.rollout_rows``), the
surrogate integrator and the hand-over (compiled), and the exported ``dynamics.pt``
(TorchScript file, noise from :func:`openmm_closure.couple.fast_rollout.draw_noise`) roll out
the same tiny trained model from the same configuration: an ODE agrees to round-off,
an SDE bitwise (one noise stream, drawn once for the whole ensemble).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytestmark = [
    pytest.mark.filterwarnings("ignore:.*torch.jit.* is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::openmm_closure.couple.guard.OutOfRangeWarning"),
    pytest.mark.usefixtures("one_torch_thread"),
]

N = 12


def _train(out, dynamics: str):
    from openmm_closure.md import observables
    from openmm_closure.data import ArrayDataset
    from openmm_closure.learn.training import TrainConfig, train_on

    rng = np.random.default_rng(0)
    pos = (rng.random((4, 5, N, 3)) * 2 - 1).astype(np.float32)
    pos[..., 2] = 0
    types = np.zeros(N, np.int64)
    obs = observables.compute(["energy"], pos.astype(np.float64), types, a=4.0, b=0.1)
    ds = ArrayDataset(pos, types, np.arange(5) * 0.02, obs,
                      {"system": "particles2d", "observables": ["energy"], "params": {"a": 4.0, "b": 0.1}})
    cfg = TrainConfig(data="", out=str(out), epochs_stage1=1, epochs_stage2=2, samples=16, dynamics=dynamics,
                      flow_transforms=1, flow_hidden=(8, 8), dynamics_hidden=(8, 8), encoder_hidden=(16,),
                      encoder_embed=8, batch_size=4, batch_size_stage2=8, val_fraction=0.25, progress=False,
                      device="cpu", seed=1)
    train_on(ds, cfg)
    return out


@pytest.fixture(scope="module", params=["ode", "sde"])
def trained(request, tmp_path_factory):
    base = tmp_path_factory.mktemp(f"engine-{request.param}")
    torch.set_num_threads(1)
    return request.param, _train(base / "model", request.param), base


def test_same_seed_same_rollout_on_every_path(trained):
    from openmm_closure import systems
    from openmm_closure.evaluate.evaluation import rollout_rows
    from openmm_closure.hosts.export import export_model
    from openmm_closure.couple.fast_rollout import draw_noise
    from openmm_closure.couple.handover import ClosureSimulation
    from openmm_closure.learn.model import load_model
    from openmm_closure.couple.surrogate import SurrogateIntegrator

    kind, model_dir, base = trained
    model = load_model(model_dir)
    steps, k, seed = 12, 5, 7
    spec = systems.build("particles2d", n_particles=N, steps=2, report_interval=1, seed=3)
    sim = spec.make_simulation("Reference")
    pos = np.asarray(sim.context.getState(getPositions=True).getPositions(asNumpy=True)._value)
    z0 = model.state(pos, spec.types)

    eager = model.unscale(model.rollout(z0, steps, samples=k, seed=seed)).numpy()
    assert eager.shape == (k, steps + 1, model.dim) and np.isfinite(eager).all()
    z0k = np.repeat(z0.double().numpy()[None], k, axis=0)
    paths = {
        "evaluation": rollout_rows(str(model_dir), "cpu", z0k, 0, k, steps, model.dt, seed),
        "surrogate": SurrogateIntegrator(model).run(pos, spec.types, steps, samples=k, seed=seed).samples,
        "handover": ClosureSimulation(sim, model).extrapolate(steps=steps, samples=k, seed=seed).samples,
    }
    export_model(str(model_dir), str(base / "export"))
    exported = torch.jit.load(str(base / "export" / "dynamics.pt"))
    z0t = torch.as_tensor(z0k, dtype=model.dtype)
    noise = draw_noise(bool(exported.stochastic), steps, k, model.dim, seed, dtype=model.dtype)
    paths["dynamics.pt"] = exported.unscale(exported.rollout(z0t, steps, model.dt, noise).double()).numpy()

    for name, got in paths.items():
        assert got.shape == eager.shape, name
        if kind == "sde":
            assert np.array_equal(got, eager), (name, float(np.abs(got - eager).max()))
        else:
            np.testing.assert_allclose(got, eager, rtol=1e-6, atol=1e-6, err_msg=name)
    if kind == "sde":  # the members differ from each other, and another seed gives another ensemble
        assert np.abs(eager[0] - eager[1]).max() > 0
        other = model.unscale(model.rollout(z0, steps, samples=k, seed=seed + 1)).numpy()
        assert np.abs(other - eager).max() > 0
