"""Coarse projective integration: bursts, leaps, lifts, error control, the guard, seeds, bad input."""

import csv
import warnings

import numpy as np
import pytest
from openmm import unit

from conftest import SMALL_SYSTEMS
from openmm_closure import load_model, systems
from openmm_closure.couple.handover import ClosureSimulation
from openmm_closure.couple.projective import ProjectiveIntegrator, SystemFactory, run_ensemble

pytestmark = [
    pytest.mark.filterwarnings("ignore:.*torch.jit.* is deprecated:DeprecationWarning"),
    pytest.mark.usefixtures("one_torch_thread"),
]


def _cs(model, name="lj-mixing", seed=7, **params):
    spec = systems.build(name, seed=seed, **{**SMALL_SYSTEMS[name], **params})
    return ClosureSimulation(spec.make_simulation("Reference"), model)  # Reference: deterministic sums


def _clock(cs):
    return cs.simulation.context.getState().getTime().value_in_unit(unit.picosecond)


def test_contradicted_leap_is_shortened_agreeing_leap_lengthened(simulated_models, tmp_path):
    model = load_model(simulated_models["lj-mixing"])
    dt = model.dt
    # a tolerance no burst can meet: the first leap is rejected, retried shorter from the same state
    cs = _cs(model)
    res = cs.run(12 * dt, burst_ps=dt, tolerance=1e-9, leap_ps=4 * dt, min_leap_ps=dt, seed=0)
    ev = res.events
    rejected = [e for e in ev if e.action == "reject"]
    assert rejected and ev[0].action == "reject" and ev[0].leap_ps == pytest.approx(4 * dt)
    assert ev[0].error > 1e-9 and ev[1].leap_ps < ev[0].leap_ps
    assert ev[1].time == pytest.approx(ev[0].time)  # retried from the restored MD state
    leaps = [s for s in res.segments if s.source == "leap"]
    assert not leaps[0].accepted and np.array_equal(leaps[0].states[0], leaps[1].states[0])
    assert all(e.action in ("reject", "md-fallback", "guard", "guard-md") for e in ev)
    # even the shortest leap fails: MD carries on, twice as long after each failure in a row
    md_runs = [s for s in res.segments if s.source == "md" and s.accepted][1:]
    fallbacks = [e for e in ev if e.action == "md-fallback"]
    assert fallbacks and res.time_in("leap") == 0
    lengths = [round((s.times[-1] - s.times[0]) / dt) for s in md_runs]
    assert lengths[:3] == [1, 2, 4][: len(lengths[:3])]
    assert _clock(cs) == pytest.approx(12 * dt)  # the run ends at the horizon, in MD
    # rejected segments stay out of the timeline, which runs forward in time
    t, z, src = res.trajectory()
    assert set(src) <= {"md", "leap", "lift"} and np.all(np.diff(t) > -1e-9)
    assert np.all(np.diff([r["time_ps"] for r in cs.timeline]) > -1e-9)
    # a tolerance every burst meets: each leap grows by the growth factor up to max_leap
    cs = _cs(model)
    res = cs.run(40 * dt, burst_ps=dt, tolerance=1e6, leap_ps=dt, min_leap_ps=dt, max_leap_ps=8 * dt,
                 growth=2.0, seed=0)
    acc = [e for e in res.events if e.action == "accept"]
    assert len(acc) >= 3 and not any(e.action == "reject" for e in res.events)
    assert [e.next_leap_ps for e in acc[:3]] == pytest.approx([2 * dt, 4 * dt, 8 * dt])
    assert max(e.leap_ps for e in res.events) == pytest.approx(8 * dt)
    assert res.time_in("leap") > 0 and res.time_in("md") + res.time_in("leap") == pytest.approx(40 * dt)
    assert set(res.cost) == {"md", "surrogate", "lift", "total"} and res.cost["lift"] > 0


def test_guard_exit_returns_to_md(simulated_models):
    model = load_model(simulated_models["particles2d"])
    dt = model.dt
    # clusters far wider than in training: the mean pair energy is out of the training range
    cs = _cs(model, "particles2d", variance=4.0)
    z = model.scale(cs.current_state()).numpy()
    from openmm_closure.couple.guard import bound

    assert np.abs(z).max() > bound(model)
    res = cs.run(8 * dt, burst_ps=dt, leap_ps=2 * dt, tolerance=1e6, seed=0)
    assert res.events and all(e.action == "guard-md" for e in res.events)
    assert {s.source for s in res.segments} == {"md"} and res.time_in("md") == pytest.approx(8 * dt)
    assert res.cost["lift"] == 0
    # a leap that leaves the range on the way is cut at the last state inside, and MD follows
    model = load_model(simulated_models["lj-mixing"])
    dt = model.dt
    cs = _cs(model, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = cs.run(30 * dt, burst_ps=dt, leap_ps=16 * dt, max_leap_ps=16 * dt, tolerance=1e6, seed=0)
    first = res.events[0]
    assert first.action == "guard" and first.leap_ps == pytest.approx(16 * dt) and first.next_leap_ps < 16 * dt
    i = next(j for j, s in enumerate(res.segments) if s.source == "leap")
    leap = res.segments[i]
    assert leap.times[-1] - leap.times[0] == pytest.approx(first.next_leap_ps)
    assert np.abs(model.scale(leap.states).numpy()).max() <= bound(model)
    assert [s.source for s in res.segments[i + 1: i + 3]] == ["lift", "md"]
    # the next leap grows from the cut length, not from the planned one
    acc = next(e for e in res.events if e.action == "accept")
    assert acc.leap_ps == pytest.approx(first.next_leap_ps) and acc.next_leap_ps <= 2 * first.next_leap_ps + 1e-9


@pytest.mark.parametrize("name", ["particles2d", "lj-mixing"])
def test_run_reproducible_for_fixed_seeds(simulated_models, name):
    model = load_model(simulated_models[name])
    dt = model.dt
    out = []
    for seed in (3, 3, 4):
        cs = _cs(model, name)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = cs.run(10 * dt, burst_ps=dt, relax_ps=dt if name == "lj-mixing" else 0.0, tolerance=1e6,
                         leap_ps=2 * dt, seed=seed, lift_options={"attempts": 1})
        pos = cs.simulation.context.getState(getPositions=True).getPositions(asNumpy=True)._value
        out.append((res.trajectory(), [(e.action, e.leap_ps) for e in res.events], np.asarray(pos)))
    (t0, z0, s0), e0, p0 = out[0]
    (t1, z1, s1), e1, p1 = out[1]
    assert np.array_equal(t0, t1) and np.array_equal(z0, z1) and list(s0) == list(s1) and e0 == e1
    assert np.array_equal(p0, p1)
    if "leap" in s0:  # another seed: other lifts (and for the SDE other leaps)
        assert not np.array_equal(p0, out[2][2])


def test_ensemble_members_own_noise_pool_and_dask_equal_serial(simulated_models):
    from openmm_closure.cluster import SchedulerConfig

    dt = 0.04
    make = SystemFactory("lj-mixing", SMALL_SYSTEMS["lj-mixing"], seed=7, platform="Reference")
    opts = dict(burst_ps=dt, tolerance=1e6, leap_ps=2 * dt, lift_options={"attempts": 1})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        serial = run_ensemble(make, simulated_models["lj-mixing"], 6 * dt, 2, seed=1, **opts)
        pool = run_ensemble(make, simulated_models["lj-mixing"], 6 * dt, 2, seed=1, workers=2, **opts)
        dask = run_ensemble(make, simulated_models["lj-mixing"], 6 * dt, 2, seed=1,
                            scheduler=SchedulerConfig("local", workers=2), **opts)
    assert len(serial) == 2 and not np.array_equal(serial[0].final_state, serial[1].final_state)
    assert any(s.source == "leap" for s in serial[0].segments)
    for a, b, c in zip(serial, pool, dask):
        assert np.array_equal(a.trajectory()[1], b.trajectory()[1])
        assert np.array_equal(a.trajectory()[1], c.trajectory()[1])
    with pytest.raises(ValueError, match="model directory"):
        run_ensemble(make, load_model(simulated_models["lj-mixing"]), 6 * dt, 2, workers=2, **opts)


@pytest.mark.parametrize("kwargs, match", [
    (dict(time_ps=-1.0), r"time_ps must be a finite number > 0"),
    (dict(time_ps=float("nan")), r"time_ps must be a finite number > 0"),
    (dict(burst_ps=0.0), r"burst_ps must be a finite number > 0"),
    (dict(burst_ps=0.001), r"burst_ps=0.001 ps is shorter than one model frame"),
    (dict(relax_ps=-0.1), r"relax_ps must be a finite number >= 0"),
    (dict(tolerance=0.0), r"tolerance \(scaled units\) must be a finite number > 0"),
    (dict(tolerance=-1.0), r"tolerance \(scaled units\) must be a finite number > 0"),
    (dict(min_leap_ps=0.4, max_leap_ps=0.2), r"need min_leap_ps <= leap_ps <= max_leap_ps"),
    (dict(growth=1.0), r"growth .* must be > 1"),
    (dict(shrink=1.0), r"shrink .* must be in \(0, 1\)"),
    (dict(samples=0), r"samples .* must be a positive integer"),
    (dict(seed=-3), r"seed must be a non-negative integer or None"),
    (dict(time_ps=0.01), r"time_ps=0.01 is shorter than one model frame"),
])
def test_bad_arguments_one_line(simulated_models, kwargs, match):
    model = load_model(simulated_models["lj-mixing"])
    cs = _cs(model)
    kwargs = {"time_ps": 1.0, "burst_ps": 0.04, **kwargs}
    with pytest.raises(ValueError, match=match) as info:
        cs.run(kwargs.pop("time_ps"), **kwargs)
    assert "\n" not in str(info.value)
    assert not cs.timeline or len(cs.timeline) == 1


def test_timeline_file_rows(simulated_models, tmp_path):
    model = load_model(simulated_models["lj-mixing"])
    dt = model.dt
    spec = systems.build("lj-mixing", seed=7, **SMALL_SYSTEMS["lj-mixing"])
    cs = ClosureSimulation(spec.make_simulation("Reference"), model, file=tmp_path / "t.csv")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = cs.run(8 * dt, burst_ps=dt, tolerance=1e6, leap_ps=3 * dt, max_leap_ps=3 * dt, seed=0)
    cs.close()
    with open(tmp_path / "t.csv") as f:
        rows = list(csv.DictReader(f))
    sources = [r["source"] for r in rows]
    assert sources[:2] == ["md", "md"] and "leap" in sources and "lift" in sources
    t = np.array([float(r["time_ps"]) for r in rows])
    assert np.all(np.diff(t) > -1e-9) and t[-1] == pytest.approx(8 * dt)
    lift = sources.index("lift")
    assert sources[lift - 3: lift] == ["leap"] * 3 and t[lift] == pytest.approx(t[lift - 1])
    steps = np.array([int(r["step"]) for r in rows])
    assert np.array_equal(steps, np.round(t / 0.002).astype(int))
    assert len(rows) == len(cs.timeline) and res.events[0].action == "accept"
