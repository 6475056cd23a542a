"""ClosureSimulation: MD -> extrapolate -> lift -> MD, the timeline file, seeds, the guard, bad input."""

import csv
import warnings

import numpy as np
import openmm
import pytest
import torch
from openmm import unit

from conftest import SMALL_SYSTEMS
from openmm_closure import load_model, systems
from openmm_closure.md import observables
from openmm_closure.couple.fast_rollout import compiled_rollout, rollout_noise
from openmm_closure.couple.guard import OutOfRangeWarning
from openmm_closure.couple.handover import ClosureSimulation
from openmm_closure.couple.lift import DEFAULT_TOLERANCE, LiftWarning
from openmm_closure.couple.surrogate import SurrogateIntegrator

pytestmark = [
    pytest.mark.filterwarnings("ignore:.*torch.jit.* is deprecated:DeprecationWarning"),
    pytest.mark.usefixtures("one_torch_thread"),
]


def _sim(name, seed=7, platform="CPU"):
    spec = systems.build(name, seed=seed, **SMALL_SYSTEMS[name])
    return spec, spec.make_simulation(platform)


def _positions(sim):
    return np.asarray(sim.context.getState(getPositions=True).getPositions(asNumpy=True)
                      .value_in_unit(unit.nanometer))


@pytest.mark.parametrize("name", ["particles2d", "lj-mixing"])
def test_md_extrapolate_lift_md(simulated_models, tmp_path, name):
    model = load_model(simulated_models[name])
    spec, sim = _sim(name)
    cs = ClosureSimulation(sim, model, file=tmp_path / "timeline.csv")
    assert cs.reportInterval == spec.report_interval  # the model's frame spacing
    cs.step(3 * cs.reportInterval)
    before = _positions(sim)
    t_handover = sim.context.getState().getTime().value_in_unit(unit.picosecond)
    res = cs.extrapolate(time_ps=4 * model.dt, samples=6, seed=1)
    assert res.samples.shape == (6, 5, model.dim) and np.isfinite(res.samples).all()
    stochastic = name == "lj-mixing"
    assert res.stochastic == stochastic
    if stochastic:
        assert np.all(res.std[-1] > 0)  # SDE members spread
    else:
        assert np.array_equal(res.samples, np.broadcast_to(res.samples[:1], res.samples.shape))  # ODE: identical
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LiftWarning)
        lifted = cs.lift(member=2, seed=3, attempts=6)
    after = _positions(sim)
    # species counts and identities: the topology's atoms, each species' particles moved
    assert after.shape == before.shape and np.isfinite(after).all()
    for s in np.unique(spec.types):
        idx = spec.types == s
        assert not np.allclose(after[idx, :2], before[idx, :2])
    assert np.all(after[:, 2] == before[:, 2])  # 2D: z untouched
    if stochastic:  # inside the walls
        lo, hi = spec.params["walls"]
        assert after[:, 0].min() > 0 and after[:, 0].max() < lo and after[:, 1].max() < hi
    # finite energy; observables measured independently agree with what lift reports
    energy = sim.context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
    assert np.isfinite(energy) and energy == pytest.approx(lifted.energy, rel=1e-6, abs=1e-6)
    want = observables.compute(model.observables, after, spec.types, **model.config["observable_params"])
    assert np.allclose(lifted.observables, [want[k] for k in model.observables], rtol=1e-10)
    assert np.allclose(lifted.target, res.samples[2, -1, : model.macro_dim])
    span = (model.state_scaler.hi - model.state_scaler.lo).numpy()[: model.macro_dim]
    assert lifted.deviation == pytest.approx(float(np.max(2 * np.abs(lifted.observables - lifted.target) / span)))
    assert lifted.tolerance == DEFAULT_TOLERANCE
    assert lifted.ok, f"lifted observables off by {lifted.deviation:.3g} scaled units"
    # the clock continues at the end of the extrapolation, then MD resumes
    t = sim.context.getState().getTime().value_in_unit(unit.picosecond)
    assert t == pytest.approx(t_handover + 4 * model.dt)
    assert sim.currentStep == 3 * cs.reportInterval + int(round(4 * model.dt / sim.integrator.getStepSize()._value))
    cs.step(2 * cs.reportInterval)
    assert np.isfinite(_positions(sim)).all()
    cs.close()
    with open(tmp_path / "timeline.csv") as f:
        rows = list(csv.DictReader(f))
    sources = [r["source"] for r in rows]
    assert sources == ["md"] * 4 + ["surrogate"] * 4 + ["lift"] + ["md"] * 2
    times = np.array([float(r["time_ps"]) for r in rows])
    assert np.all(np.diff(times) > -1e-9) and times[-1] == pytest.approx(t_handover + 6 * model.dt)
    name0 = model.observables[0]
    sur = [r for r in rows if r["source"] == "surrogate"]
    assert np.allclose([float(r[f"{name0}_mean"]) for r in sur], res.mean[1:, 0])
    assert np.allclose([float(r[f"{name0}_std"]) for r in sur], res.std[1:, 0])
    assert float(rows[8][f"{name0}_mean"]) == pytest.approx(lifted.observables[0])


@pytest.mark.parametrize("name", ["particles2d", "lj-mixing"])
def test_seeds_reproduce(simulated_models, name):
    model = load_model(simulated_models[name])
    out = []
    for seed in (5, 5, 6):
        _, sim = _sim(name, platform="Reference")  # deterministic force sums
        cs = ClosureSimulation(sim, model)
        cs.step(cs.reportInterval)
        res = cs.extrapolate(steps=3, samples=4, seed=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", LiftWarning)
            cs.lift(member=1, seed=seed, attempts=2)
        out.append((res.samples, _positions(sim)))
    assert np.array_equal(out[0][0], out[1][0]) and np.array_equal(out[0][1], out[1][1])
    assert not np.allclose(out[0][1], out[2][1])  # another lift seed, another configuration
    if name == "lj-mixing":
        assert not np.allclose(out[0][0], out[2][0])


def test_lift_tolerance_raises_or_warns(simulated_models):
    model = load_model(simulated_models["lj-mixing"])
    _, sim = _sim("lj-mixing")
    cs = ClosureSimulation(sim, model)
    cs.extrapolate(steps=2, samples=2, seed=0)
    with pytest.raises(ValueError, match=r"miss the target .* by [0-9.e-]+ scaled units \(tolerance 0\)"):
        cs.lift(seed=0, tolerance=0.0, on_mismatch="raise", attempts=1)
    cs.extrapolate(steps=2, samples=2, seed=0)
    with pytest.warns(LiftWarning, match="scaled units"):
        res = cs.lift(seed=0, tolerance=0.0, attempts=1)
    assert res.deviation > 0 and not res.ok


@pytest.mark.parametrize("name", ["particles2d", "lj-mixing"])
def test_compiled_rollout_equals_eager(simulated_models, name):
    model = load_model(simulated_models[name])
    rng = np.random.default_rng(0)
    z0 = torch.as_tensor(rng.uniform(-0.8, 0.8, size=(7, model.dim)), dtype=model.dtype)
    eager = model.rollout(z0, 25, seed=4)
    noise = rollout_noise(model, 25, 7, 4)
    fast = compiled_rollout(model, z0, 25, noise=noise)
    assert fast.shape == (7, 26, model.dim)
    assert torch.allclose(fast, eager, rtol=0, atol=1e-6)
    if noise is not None:  # the same noise given as input to the eager dynamics
        assert torch.allclose(fast, model.dynamics.rollout(z0, 25, model.dt, noise), atol=1e-6)
    # one compiled module per model, reused
    from openmm_closure.couple.fast_rollout import scripted_dynamics

    assert scripted_dynamics(model) is scripted_dynamics(model)


def test_guard_fires_outside_quiet_inside(simulated_models, tmp_path):
    from openmm_closure.couple.guard import DEFAULT_MARGIN, bound

    model = load_model(simulated_models["lj-mixing"])
    assert model.config["ood_margin"] == DEFAULT_MARGIN  # stored by training
    old = dict(model.config)
    del old["ood_margin"]  # a model trained before the guard: the default margin
    assert bound(type("M", (), {"config": old})()) == 1.0 + DEFAULT_MARGIN
    integ = SurrogateIntegrator(model)
    inside = torch.zeros(model.dim, dtype=model.dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error", OutOfRangeWarning)
        res = integ.run_state(inside, 5, samples=3, seed=0)
    assert res.ood_step is None and res.ood_time is None
    pushed = inside.clone()
    pushed[1] = 1.6  # beyond the training range + the default margin (1.25)
    with pytest.warns(OutOfRangeWarning, match=r"t = 0 ps .*R_BA") as record:
        res = integ.run_state(pushed, 5, samples=3, seed=0)
    assert len(record) == 1  # once per rollout, not per member or step
    assert res.ood_step == 0 and res.ood_time == 0.0 and res.ood_component == "R_BA"
    # a rollout that leaves the range later is caught at that step
    model.config["ood_margin"] = 0.0
    edge = inside.clone()
    edge[0] = 0.999
    drift = model.dynamics.drift(edge.unsqueeze(0))[0, 0]
    if float(drift) < 0:
        edge[0] = -0.999
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        res = integ.run_state(edge, 40, samples=1, seed=0)
    if res.ood_step is not None:
        assert len([w for w in rec if w.category is OutOfRangeWarning]) == 1
        z = model.scale(res.samples[0]).numpy()
        assert np.all(np.abs(z[: res.ood_step]) <= 1.0) and np.any(np.abs(z[res.ood_step]) > 1.0)
    # a bigger margin in the model keeps the pushed start quiet
    model.config["ood_margin"] = 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("error", OutOfRangeWarning)
        assert integ.run_state(pushed, 2, samples=1, seed=0).ood_step is None
    # the timeline file marks the out-of-range rows
    model.config["ood_margin"] = -0.999  # an (absurd) negative margin is refused
    with pytest.raises(ValueError, match="ood_margin"):
        integ.run_state(inside, 1)
    model.config["ood_margin"] = 0.0
    _, sim = _sim("lj-mixing")
    cs = ClosureSimulation(sim, model, file=tmp_path / "t.csv")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OutOfRangeWarning)
        res = cs.extrapolate(steps=4, samples=2, seed=0)
    cs.close()
    with open(tmp_path / "t.csv") as f:
        rows = [r for r in csv.DictReader(f) if r["source"] == "surrogate"]
    flags = [int(r["ood"]) for r in rows]
    want = [int(res.ood_step is not None and j >= res.ood_step) for j in range(1, 5)]
    assert flags == want


def test_bad_input(simulated_models, tmp_path):
    model = load_model(simulated_models["lj-mixing"])
    _, sim = _sim("lj-mixing")
    cs = ClosureSimulation(sim, model)
    cases = [
        (lambda: cs.lift(), "call extrapolate\\(\\) first"),
        (lambda: cs.extrapolate(time_ps=1.0, samples=0), "samples must be a positive integer"),
        (lambda: cs.extrapolate(time_ps=-1.0), "time_ps must be a positive time"),
        (lambda: cs.extrapolate(), "exactly one of time_ps"),
        (lambda: cs.extrapolate(steps=0), "steps must be a positive integer"),
        (lambda: ClosureSimulation(sim, tmp_path), "not a model directory"),
        (lambda: ClosureSimulation(sim, model, file=tmp_path / "t.txt"), "must end in .csv"),
    ]
    for call, msg in cases:
        with pytest.raises(ValueError, match=msg) as info:
            call()
        assert "\n" not in str(info.value)
    cs.extrapolate(steps=1, samples=2, seed=0)
    with pytest.raises(ValueError, match=r"member must be in \[0, 2\)"):
        cs.lift(member=2)
    # a topology lacking one of the model's species
    from openmm import app

    from openmm_closure.systems.spec import single_atom_topology

    spec = systems.build("lj-mixing", seed=3, **SMALL_SYSTEMS["lj-mixing"])
    only_a = app.Simulation(single_atom_topology(["A"] * spec.n_particles), spec.system, spec.new_integrator(),
                            openmm.Platform.getPlatformByName("Reference"))
    with pytest.raises(ValueError, match=r"species \['B'\] are missing from the topology"):
        ClosureSimulation(only_a, model)


def test_compiled_rollout_follows_new_weights(simulated_models):
    """The cached compiled dynamics is remade after the weights change in place."""
    model = load_model(simulated_models["particles2d"])
    z0 = torch.zeros(model.dim, dtype=model.dtype)
    before = compiled_rollout(model, z0, 5)
    with torch.no_grad():
        for p in model.dynamics.parameters():
            p.mul_(1.5)
    after = compiled_rollout(model, z0, 5)
    assert not torch.allclose(before, after)
    assert torch.allclose(after, model.rollout(z0, 5), atol=1e-6)
