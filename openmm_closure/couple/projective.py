r"""Coarse projective integration with the learned closure: MD bursts, surrogate leaps, lifts.

Equation-free (coarse projective) integration advances a macroscopic state over long
times by alternating short bursts of the microscopic dynamics with long leaps of a
macroscopic model. Here the macroscopic model is the learned SDE/ODE on z = [z̄, ẑ]:

1. **MD burst**: after a lift, ``relax_ps`` of MD heal the lifted configuration (the
   decoder gives a density, not a microstate; the encoder's ẑ is trustworthy only after
   the particles relaxed), then ``burst_ps`` of MD are observed (a row every model frame
   ``model.dt``);
2. **encode** the last configuration of the burst into z;
3. **leap**: the surrogate extrapolates one sample path of z over ``leap`` ps;
4. **lift** the end of the leap back to particles (:func:`openmm_closure.couple.lift.lift_configuration`),
   and the Context's clock moves to the end of the leap; then the next burst.

Error control, as in an adaptive ODE solver: from the lifted state the surrogate also
predicts the next burst (the mean of ``samples`` members over the observed window). The
error of a leap is the largest difference, over the observables, between the window
mean of z̄ that MD produced and the one the surrogate predicted, in the model's scaled
units (each observable's training range spans 2); a lift whose z̄ misses its target by
more than ``tolerance`` (the same units) fails the leap at once, without a burst. A leap
with error above ``tolerance`` is rejected: the MD state before the leap is restored and
the leap is retried, shorter by the factor ``max(shrink, min(0.9, safety *
sqrt(tolerance / error)))``; an accepted leap sets the next to its length times
``min(growth, max(1, safety * sqrt(tolerance / error)))`` (rounded to whole frames, at
least one frame longer when the factor exceeds 1), always within ``[min_leap_ps,
max_leap_ps]``. When even a leap of ``min_leap_ps`` fails, MD carries on from the restored
state (``md-fallback``) for ``min_leap_ps``, twice as long after each such failure in a row
(at most ``max_leap_ps``), and leaps are tried again. A guard exit (a leap leaving the
training range of z, see :mod:`openmm_closure.couple.guard`) cuts the leap at the last state
inside the range; when not one surrogate step stays inside, MD runs on instead
(``min_leap_ps`` of it), at once.
Every decision is an :class:`Event` of the result and a ``logging`` record of the
``openmm_closure.couple.projective`` logger.

Ensembles: :func:`run_ensemble` runs K independent projective members (each its own
simulation, MD noise, leaps and lifts) serially, on a process pool or as Dask tasks
(:mod:`openmm_closure.cluster`).

Example:
    >>> cs = ClosureSimulation(simulation, "models/mix")                       # doctest: +SKIP
    >>> res = cs.run(200.0, burst_ps=2.0, relax_ps=1.0, tolerance=0.2, seed=0)  # doctest: +SKIP
    >>> res.summary()                                                          # doctest: +SKIP
"""

from __future__ import annotations

import logging
import math
import os
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np

__all__ = ["Segment", "Event", "ProjectiveResult", "ProjectiveIntegrator", "SystemFactory", "run_ensemble",
           "check_options"]

log = logging.getLogger("openmm_closure.couple.projective")


@dataclass
class Segment:
    """One piece of a projective run's timeline.

    Attributes:
        source: ``"md"`` (MD frames), ``"leap"`` (the surrogate's sample path) or ``"lift"``
            (the relaxed lifted configuration, one row).
        times: (T,) times in ps (the simulation's clock).
        states: (T, D) raw states [z̄, ẑ] (observables' units; ẑ dimensionless).
        accepted: False for a leap (and its lift and burst) that error control rejected.
    """

    source: str
    times: np.ndarray
    states: np.ndarray
    accepted: bool = True


@dataclass
class Event:
    """One decision of error control.

    Attributes:
        time: simulation time (ps) at which the leap started.
        action: ``accept``, ``reject``, ``md-fallback`` (the minimum leap failed: MD ran
            on instead), ``guard`` (leap cut at the training range's edge) or ``guard-md``
            (no leap inside the range: MD ran on).
        leap_ps: the leap's length (ps) as taken.
        error: the lift's miss of z̄ or the burst's disagreement with the prediction
            (scaled units), NaN where none.
        next_leap_ps: the leap length the next attempt uses.
    """

    time: float
    action: str
    leap_ps: float
    error: float
    next_leap_ps: float


@dataclass
class ProjectiveResult:
    """What a projective run did.

    Attributes:
        names: the D state component names (observables, then ``zhat_i``).
        macro_dim: number of observables.
        segments: every :class:`Segment` in order, rejected ones included.
        events: every :class:`Event` in order.
        cost: wall seconds spent in ``md``, ``surrogate`` (encoding and rollouts) and
            ``lift``; ``total`` is the run's wall time.
        horizon: the run's length in ps.
    """

    names: list
    macro_dim: int
    segments: list = field(default_factory=list)
    events: list = field(default_factory=list)
    cost: dict = field(default_factory=dict)
    horizon: float = 0.0

    def trajectory(self, sources: tuple = ("md", "leap", "lift")) -> tuple:
        """The accepted timeline: ``(times (T,) ps, states (T, D) raw, sources (T,) str)``."""
        t, z, s = [], [], []
        for seg in self.segments:
            if seg.accepted and seg.source in sources:
                t.append(seg.times)
                z.append(seg.states)
                s += [seg.source] * len(seg.times)
        if not t:
            return np.zeros(0), np.zeros((0, len(self.names))), np.zeros(0, dtype=str)
        return np.concatenate(t), np.concatenate(z), np.asarray(s)

    @property
    def final_state(self) -> np.ndarray:
        """(D,) raw state at the end of the run (the last MD frame)."""
        return next(seg.states[-1] for seg in reversed(self.segments) if seg.accepted and seg.source == "md")

    def time_in(self, source: str) -> float:
        """Simulated ps covered by accepted ``md`` or ``leap`` segments."""
        return float(sum(seg.times[-1] - seg.times[0]
                         for seg in self.segments if seg.accepted and seg.source == source and len(seg.times)))

    def summary(self) -> str:
        """A few lines: time covered by MD and leaps, decisions, where the wall time went."""
        acts: dict = {}
        for e in self.events:
            acts[e.action] = acts.get(e.action, 0) + 1
        total = max(self.cost.get("total", 0.0), 1e-12)
        shares = ", ".join(f"{k} {100 * self.cost.get(k, 0.0) / total:.0f}%" for k in ("md", "surrogate", "lift"))
        return (f"{self.horizon:g} ps: MD {self.time_in('md'):g} ps, leaps {self.time_in('leap'):g} ps; "
                f"decisions {acts}; wall {total:.3g} s ({shares})")


def check_options(time_ps: float, burst_ps: float, relax_ps: float, tolerance: float, leap_ps: float,
                  min_leap_ps: float, max_leap_ps: float, growth: float, shrink: float, safety: float,
                  samples: int, seed: Optional[int]) -> None:
    """Refuse bad arguments of a projective run, one line each (ValueError)."""
    def positive(name: str, v: Any, zero_ok: bool = False) -> None:
        if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)) or not np.isfinite(v) \
                or (v < 0 if zero_ok else v <= 0):
            raise ValueError(f"{name} must be a finite number {'>= 0' if zero_ok else '> 0'}, got {v!r}")

    positive("time_ps", time_ps)
    positive("burst_ps", burst_ps)
    positive("relax_ps", relax_ps, zero_ok=True)
    positive("tolerance (scaled units)", tolerance)
    positive("leap_ps", leap_ps)
    positive("min_leap_ps", min_leap_ps)
    positive("max_leap_ps", max_leap_ps)
    if not min_leap_ps <= leap_ps <= max_leap_ps:
        raise ValueError(f"need min_leap_ps <= leap_ps <= max_leap_ps, got {min_leap_ps} <= {leap_ps} <= {max_leap_ps}")
    positive("growth", growth)
    if growth <= 1:
        raise ValueError(f"growth (largest factor by which a leap lengthens) must be > 1, got {growth}")
    positive("shrink", shrink)
    if not shrink < 1:
        raise ValueError(f"shrink (smallest factor by which a rejected leap shortens) must be in (0, 1), got {shrink}")
    positive("safety", safety)
    if not safety <= 1:
        raise ValueError(f"safety must be in (0, 1], got {safety}")
    if isinstance(samples, bool) or int(samples) != samples or samples < 1:
        raise ValueError(f"samples (members of the burst prediction) must be a positive integer, got {samples!r}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
        raise ValueError(f"seed must be a non-negative integer or None, got {seed!r}")


def _seed(*parts: int) -> int:
    """A deterministic 31-bit seed from integers."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0] & 0x7FFFFFFF)


class ProjectiveIntegrator:
    """MD bursts, surrogate leaps and lifts with adaptive leap control.

    Arguments:
        closure_simulation: a :class:`~openmm_closure.couple.handover.ClosureSimulation` (its
            Simulation, model and species are used); :meth:`for_simulation` takes a bare
            ``openmm.app.Simulation``.
        burst_ps: MD observed after each lift (and at the start), ps (> 0, at least one
            model frame ``model.dt``; rounded to whole frames).
        relax_ps: MD right after a lift before the burst is observed (the lifted
            particles heal; ps >= 0, whole frames).
        tolerance: allowed disagreement between the burst and the surrogate's prediction,
            max over observables of |Δ mean z̄| in scaled units (training range spans 2);
            also the allowed miss of a lift's z̄.
        leap_ps: the first leap (ps); ``min_leap_ps`` / ``max_leap_ps`` its bounds (whole
            surrogate steps of ``model.dt``; at least one).
        growth: the largest factor by which an accepted leap lengthens the next (> 1).
        shrink: the smallest factor by which a rejected leap shortens (in (0, 1)).
        safety: factor on the error-based step ratio (in (0, 1]).
        samples: members of the surrogate's prediction of a burst (its mean is compared).
        seed: seeds the leaps, predictions and lifts (None: 0); the MD noise is the
            integrator's own (set it with ``setRandomNumberSeed`` for a reproducible run).
        lift_options: keyword options of :func:`~openmm_closure.couple.lift.lift_configuration`
            (``attempts``, ``tolerance``, ``minimize_iterations``, ...).

    Raises:
        ValueError: one line per bad argument.
    """

    def __init__(self, closure_simulation: Any, *, burst_ps: float, relax_ps: float = 0.0,
                 tolerance: float = 0.2, leap_ps: Optional[float] = None, min_leap_ps: Optional[float] = None,
                 max_leap_ps: Optional[float] = None, growth: float = 2.0, shrink: float = 0.25,
                 safety: float = 0.9, samples: int = 8, seed: Optional[int] = 0,
                 lift_options: Optional[dict] = None) -> None:
        from openmm import unit

        cs = closure_simulation
        self.cs = cs
        self.model = cs.model
        self.dt = float(cs.integrator.dt)
        self.step_ps = float(cs.simulation.integrator.getStepSize().value_in_unit(unit.picosecond))
        min_leap_ps = self.dt if min_leap_ps is None else min_leap_ps
        leap_ps = 4 * min_leap_ps if leap_ps is None else leap_ps
        max_leap_ps = max(64 * min_leap_ps, leap_ps) if max_leap_ps is None else max_leap_ps
        check_options(1.0, burst_ps, relax_ps, tolerance, leap_ps, min_leap_ps, max_leap_ps, growth, shrink,
                      safety, samples, seed)
        self.frame_steps = max(1, int(round(self.dt / self.step_ps)))
        self.burst = self._frames("burst_ps", burst_ps, 1)
        self.relax = self._frames("relax_ps", relax_ps, 0)
        self.min_leap = self._frames("min_leap_ps", min_leap_ps, 1)
        self.max_leap = self._frames("max_leap_ps", max_leap_ps, 1)
        self.leap0 = min(max(self._frames("leap_ps", leap_ps, 1), self.min_leap), self.max_leap)
        self.tolerance, self.growth, self.shrink, self.safety = float(tolerance), float(growth), float(shrink), float(safety)
        self.samples, self.seed = int(samples), 0 if seed is None else int(seed)
        self.lift_options = dict(lift_options or {})
        self.lift_options.setdefault("on_mismatch", "warn")
        m = self.model.macro_dim
        lo = self.model.state_scaler.lo.detach().cpu().double().numpy()[:m]
        hi = self.model.state_scaler.hi.detach().cpu().double().numpy()[:m]
        self._span = np.where(hi > lo, hi - lo, 1.0)

    @classmethod
    def for_simulation(cls, simulation: Any, model: Any, **options: Any) -> "ProjectiveIntegrator":
        """A projective integrator on a bare ``openmm.app.Simulation`` (species matched from
        its atom names; no timeline file): ``options`` as for the constructor."""
        return cls(_Coupling(simulation, model), **options)

    def _frames(self, name: str, ps: float, least: int) -> int:
        n = int(round(float(ps) / self.dt))
        if n < least:
            raise ValueError(f"{name}={ps} ps is shorter than one model frame ({self.dt:g} ps); "
                             f"give at least {self.dt:g} ps")
        return n

    # ------------------------------------------------------------------ pieces
    def _clock(self) -> float:
        from openmm import unit

        return float(self.cs.simulation.context.getState().getTime().value_in_unit(unit.picosecond))

    def _md(self, frames: int, cost: dict) -> Segment:
        """``frames`` model frames of MD; a state row after each (and one at the start)."""
        sim = self.cs.simulation
        t_md = t_enc = 0.0
        t0 = time.perf_counter()
        rows, times = [self.cs.current_state()], [self._clock()]
        t_enc += time.perf_counter() - t0
        for _ in range(frames):
            t0 = time.perf_counter()
            sim.step(self.frame_steps)
            t1 = time.perf_counter()
            rows.append(self.cs.current_state())
            times.append(self._clock())
            t_md, t_enc = t_md + t1 - t0, t_enc + time.perf_counter() - t1
        cost["md"] += t_md
        cost["surrogate"] += t_enc  # encoding the frames: the model's cost, not MD's
        return Segment("md", np.asarray(times), np.asarray(rows))

    def _rollout(self, z_raw: np.ndarray, steps: int, samples: int, seed: int, cost: dict):
        from .guard import OutOfRangeWarning

        t0 = time.perf_counter()
        z0 = self.model.scale(np.asarray(z_raw, dtype=np.float64))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OutOfRangeWarning)
            res = self.cs.integrator.run_state(z0, int(steps), samples=samples, seed=seed)
        cost["surrogate"] += time.perf_counter() - t0
        return res

    def _lift(self, z: np.ndarray, seed: int, cost: dict):
        from .lift import LiftWarning, lift_configuration

        m = self.model.macro_dim
        t0 = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", LiftWarning)
            out = lift_configuration(self.cs.simulation, self.model, z[m:], z[:m], self.cs.types, seed=seed,
                                     **self.lift_options)
        for w in caught:
            if not issubclass(w.category, LiftWarning):
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        cost["lift"] += time.perf_counter() - t0
        return out

    def _md_instead(self, res: ProjectiveResult, t: float, action: str, leap: int, err: float, frames: int,
                    cost: dict) -> np.ndarray:
        """Log ``action`` (a guard exit or a failed shortest leap), run ``frames`` frames of MD
        instead of a leap, and return the state it ends in."""
        self._event(res, t, action, leap, err, self.min_leap)
        seg = self._md(frames, cost)
        res.segments.append(seg)
        return seg.states[-1]

    def _event(self, res: ProjectiveResult, t: float, action: str, leap: int, err: float, nxt: int) -> None:
        e = Event(float(t), action, leap * self.dt, float(err), nxt * self.dt)
        res.events.append(e)
        log.info("t=%.6g ps %s leap %.6g ps error %.3g -> next leap %.6g ps", e.time, action, e.leap_ps, e.error,
                 e.next_leap_ps)

    def _ratio(self, err: float) -> float:
        return self.safety * math.sqrt(self.tolerance / err) if err > 0 else float("inf")

    # ------------------------------------------------------------------ the run
    def horizon_frames(self, time_ps: float) -> int:
        """Model frames in ``time_ps`` (ValueError, one line, for a bad or too short time)."""
        check_options(time_ps, self.burst * self.dt, self.relax * self.dt, self.tolerance, self.leap0 * self.dt,
                      self.min_leap * self.dt, self.max_leap * self.dt, self.growth, self.shrink, self.safety,
                      self.samples, self.seed)
        total = int(round(float(time_ps) / self.dt))
        if total < 1:
            raise ValueError(f"time_ps={time_ps} is shorter than one model frame ({self.dt:g} ps)")
        return total

    def run(self, time_ps: float) -> ProjectiveResult:
        """Advance the simulation by ``time_ps`` ps with bursts, leaps and lifts.

        Returns:
            A :class:`ProjectiveResult`; the Context ends at the start time + ``time_ps``
            (rounded to whole model frames) in an MD state.
        """
        total = self.horizon_frames(time_ps)
        cost = {"md": 0.0, "surrogate": 0.0, "lift": 0.0}
        res = ProjectiveResult(names=list(self.cs.names), macro_dim=int(self.model.macro_dim), cost=cost,
                               horizon=total * self.dt)
        wall0 = time.perf_counter()
        context = self.cs.simulation.context
        m = self.model.macro_dim
        done = 0  # frames advanced
        seg = self._md(min(self.burst, total), cost)
        res.segments.append(seg)
        done += seg.states.shape[0] - 1
        z_now = seg.states[-1]  # the MD state the next leap starts from
        leap = self.leap0
        k = 0  # leap attempts (seeds)
        failures = 0  # minimum leaps failed in a row
        while done < total:
            left = total - done
            after = self.relax + self.burst  # frames of MD that follow a leap
            if left < self.min_leap + after:  # no room for a leap and its burst: MD to the end
                seg = self._md(left, cost)
                res.segments.append(seg)
                done += left
                break
            take = min(leap, left - after)
            base = leap  # what the next leap grows from (the cut length after a guard exit)
            t_start = self._clock()
            k += 1
            path = self._rollout(z_now, take, 1, _seed(self.seed, k, 0), cost)
            if path.ood_step is not None and path.ood_step < take + 1:
                inside = path.ood_step - 1  # last step inside the range
                if inside < 1:
                    md = min(self.min_leap, left)
                    z_now = self._md_instead(res, t_start, "guard-md", 0, float("nan"), md, cost)
                    done += md
                    leap = self.min_leap
                    continue
                self._event(res, t_start, "guard", take, float("nan"), inside)
                take = base = inside
            checkpoint = context.getState(getPositions=True, getVelocities=True, getParameters=True)
            step0 = self.cs.simulation.currentStep
            end = path.samples[0, take]
            leap_seg = Segment("leap", t_start + path.times[: take + 1], path.samples[0, : take + 1])
            lifted = self._lift(end, _seed(self.seed, k, 1), cost)
            context.setTime(t_start + take * self.dt)
            context.setStepCount(step0 + take * self.frame_steps)
            lift_state = self.cs.current_state()
            lift_seg = Segment("lift", np.asarray([self._clock()]), lift_state[None])
            relax_seg = burst = None
            # a lift that misses z̄ by more than the tolerance fails the leap without a burst
            err = float(lifted.deviation) if np.isfinite(lifted.deviation) else float("inf")
            if err <= self.tolerance:
                # the surrogate's prediction of the burst from the macroscopic state lifted
                pred = self._rollout(end, after, self.samples, _seed(self.seed, k, 2), cost)
                relax_seg = self._md(self.relax, cost) if self.relax else None
                burst = self._md(self.burst, cost)
                md_mean = burst.states[1:, :m].mean(axis=0)
                pr_mean = pred.samples[:, self.relax + 1: after + 1, :m].mean(axis=(0, 1))
                err = float(np.max(2.0 * np.abs(md_mean - pr_mean) / self._span))
                if not np.isfinite(err):
                    err = float("inf")
            pieces = [x for x in (leap_seg, lift_seg, relax_seg, burst) if x is not None]
            if err > self.tolerance:
                for x in pieces:
                    x.accepted = False
                res.segments.extend(pieces)
                context.setState(checkpoint)
                context.setStepCount(step0)
                if take > self.min_leap:
                    nxt = max(self.min_leap, min(take - 1, int(take * max(self.shrink, min(self._ratio(err), 0.9)))))
                    self._event(res, t_start, "reject", take, err, nxt)
                    leap = nxt
                    continue
                # even the shortest leap fails: MD carries on, longer after each failure in a row
                failures += 1
                md = min(left, min(self.max_leap, self.min_leap * 2 ** (failures - 1)))
                z_now = self._md_instead(res, t_start, "md-fallback", take, err, md, cost)
                done += md
                leap = self.min_leap
                continue
            failures = 0
            factor = min(self.growth, max(1.0, self._ratio(err)))
            nxt = int(round(base * factor))
            nxt = nxt + 1 if factor > 1 and nxt == base else nxt
            nxt = max(self.min_leap, min(self.max_leap, nxt))
            self._event(res, t_start, "accept", take, err, nxt)
            res.segments.extend(pieces)
            done += take + after
            z_now = burst.states[-1]
            leap = nxt
        cost["total"] = time.perf_counter() - wall0
        return res


@dataclass(frozen=True)
class SystemFactory:
    """A picklable recipe for the simulation of one ensemble member: a registered system
    built with a fixed ``seed`` (the same initial configuration for every member) and the
    MD noise seeded per member.

    Arguments:
        name: a system of :mod:`openmm_closure.systems`.
        params: keyword arguments of its builder.
        seed: the builder's seed (initial configuration).
        platform: OpenMM platform name.
    """

    name: str
    params: dict
    seed: int = 0
    platform: str = "CPU"

    def __call__(self, member: int) -> Any:
        from .. import systems

        spec = systems.build(self.name, seed=self.seed, **self.params)
        sim = spec.make_simulation(self.platform)
        if hasattr(sim.integrator, "setRandomNumberSeed"):
            sim.integrator.setRandomNumberSeed(_seed(self.seed, member, 7) % 2_000_000_000 + 1)
        return sim


class _Coupling:
    """What a projective run needs of a :class:`~openmm_closure.couple.handover.ClosureSimulation`
    (``simulation``, ``model``, ``types``, ``integrator``, ``names``, ``current_state()``),
    for a bare ``openmm.app.Simulation`` (species from the atom names)."""

    def __init__(self, simulation: Any, model: Any) -> None:
        from openmm_closure.reporters.closure import match_species

        from ..species import check_species
        from .surrogate import SurrogateIntegrator

        self.simulation, self.model = simulation, model
        self.integrator = SurrogateIntegrator(model)
        types = match_species([a.name for a in simulation.topology.atoms()], model.config.get("species") or [])
        self.types = check_species(np.asarray(types, dtype=np.int64), model.n_species, model.spec.species,
                                   model.spec.system)
        self.names = self.integrator.names

    def current_state(self) -> np.ndarray:
        from openmm import unit

        st = self.simulation.context.getState(getPositions=True)
        pos = np.asarray(st.getPositions(asNumpy=True).value_in_unit(unit.nanometer), dtype=np.float64)
        z = self.model.unscale(self.integrator.initial_state(pos, self.types))
        return z.detach().cpu().numpy().astype(np.float64)


def _member(make_simulation: Callable, model: Any, member: int, time_ps: float, seed: int,
            options: dict) -> ProjectiveResult:
    """One ensemble member: build its simulation, run it projectively (a Dask or pool task)."""
    import torch

    from ..learn.model import load_model

    torch.set_num_threads(1)
    if isinstance(model, (str, os.PathLike)):
        model = load_model(model)
    return ProjectiveIntegrator.for_simulation(make_simulation(member), model, seed=_seed(seed, member),
                                               **options).run(time_ps)


def run_ensemble(make_simulation: Callable, model: Any, time_ps: float, members: int, *, seed: int = 0,
                 workers: int = 1, scheduler: Any = None, **options: Any) -> list:
    """K independent projective runs, each with its own simulation, MD noise, leaps and lifts.

    Arguments:
        make_simulation: ``make_simulation(member) -> openmm.app.Simulation``, picklable
            for ``workers > 1`` or a scheduler (a module-level function or a :class:`SystemFactory`).
        model: a model directory (a loaded model only for the serial run, ``workers=1``).
        time_ps: the horizon (ps).
        members: K (>= 1).
        seed: the members' seeds derive from it (reproducible).
        workers: processes of a local pool (1: serial, in this process).
        scheduler: run the members as Dask tasks instead (``"local"``, an address, a
            :class:`~openmm_closure.cluster.SchedulerConfig` or a ``distributed.Client``).
        **options: :class:`ProjectiveIntegrator` keyword arguments.

    Returns:
        K :class:`ProjectiveResult` in member order.
    """
    if isinstance(members, bool) or int(members) != members or members < 1:
        raise ValueError(f"members must be a positive integer, got {members!r}")
    if isinstance(workers, bool) or int(workers) != workers or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    check_options(time_ps, options.get("burst_ps", 1.0), options.get("relax_ps", 0.0), options.get("tolerance", 0.2),
                  1.0, 1.0, 1.0, options.get("growth", 2.0), options.get("shrink", 0.25),
                  options.get("safety", 0.9), options.get("samples", 8), seed)
    is_path = isinstance(model, (str, os.PathLike))
    if (workers > 1 or scheduler is not None) and not is_path:
        raise ValueError("pass the model directory (not a loaded model) to run members in other processes")
    calls = [(k, (make_simulation, os.fspath(model) if is_path else model, k, float(time_ps),
                  int(seed), dict(options))) for k in range(int(members))]
    if scheduler is not None:
        from ..cluster import open_client, run_tasks

        with open_client(scheduler) as client:
            out = dict(run_tasks(client, _member, calls, name="projective-member"))
        return [out[k] for k in range(int(members))]
    if workers == 1:
        return [_member(*args) for _, args in calls]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(int(workers), int(members)), mp_context=ctx) as pool:
        futures = [pool.submit(_member, *args) for _, args in calls]
        return [f.result() for f in futures]
