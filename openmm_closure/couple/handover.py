"""ClosureSimulation: MD, the hand-over to the learned dynamics, and the way back.

A wrapper in the spirit of ``openmm.app.Metadynamics``: call ``step`` on it instead of on
the Simulation. It writes one macroscopic timeline, MD and surrogate on one time axis.

Example:
    >>> cs = ClosureSimulation(simulation, "models/mix", file="timeline.csv")   # doctest: +SKIP
    >>> cs.step(2000)                                  # MD, reporters as usual  # doctest: +SKIP
    >>> res = cs.extrapolate(time_ps=200.0, samples=64, seed=0)                # doctest: +SKIP
    >>> cs.lift(member=0, seed=0)                      # particles again          # doctest: +SKIP
    >>> cs.step(2000)                                  # MD resumes               # doctest: +SKIP

Timeline file (CSV): columns ``time_ps``, ``step``, ``source`` (``md``, ``surrogate`` or
``lift``: the relaxed lifted configuration), then ``<name>_mean`` and ``<name>_std`` for
every state component (observables, then ``zhat_i``; MD rows have std 0), and ``ood``
(1 from the first surrogate time at which a member left the training range of z, else 0).
Surrogate rows start after the hand-over time (the hand-over state itself is the last MD
row); their time continues the simulation's.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ..species import check_species

__all__ = ["ClosureSimulation"]


class ClosureSimulation:
    """Run MD, hand over to the learned dynamics, and lift back to particles.

    Arguments:
        simulation: an ``openmm.app.Simulation`` of the system the model was trained on.
        model: a :class:`~openmm_closure.learn.model.ClosureModel` or a model directory
            (loaded on CUDA when the simulation runs on the CUDA platform).
        file: timeline CSV path (or a writable text file object); None writes none
            (``timeline`` still holds the rows).
        reportInterval: MD steps between timeline rows (default: the model's frame
            spacing ``model.dt`` divided by the integrator's step, so MD and surrogate
            rows share one spacing).
        types: (n,) species index of every atom in the model's order (default: atom names
            matched to the model's species).
        overwrite: replace an existing timeline ``file`` (default: refuse with FileExistsError).
        atomSubset: indices of the atoms the model describes (e.g. the solute of a
            solvated system; ``types`` then are theirs); :meth:`lift` puts back only these
            and relaxes the rest. None: all atoms.

    Raises:
        ValueError: species that do not match the model, bad interval or file name, an
            ``atomSubset`` with repeated or out-of-range indices.
        FileExistsError: ``file`` exists and ``overwrite`` is False.
    """

    def __init__(self, simulation: Any, model: Any, file: Any = None, reportInterval: Optional[int] = None,
                 types: Optional[Any] = None, overwrite: bool = False, atomSubset: Optional[Any] = None) -> None:
        from openmm import unit

        from openmm_closure.reporters.closure import match_species
        from openmm_closure.reporters.base import check_atom_subset

        from .surrogate import SurrogateIntegrator

        if isinstance(model, (str, os.PathLike)):
            from ..learn.model import load_model

            path = Path(model)
            if not (path / "config.json").is_file():
                raise ValueError(f"{path} is not a model directory (no config.json): pass the directory "
                                 "written by `openmm-closure train`")
            device = "cpu"
            if simulation.context.getPlatform().getName() == "CUDA":
                import torch

                device = "cuda" if torch.cuda.is_available() else "cpu"
            model = load_model(path, device=device)
        self.simulation = simulation
        self.model = model
        self.integrator = SurrogateIntegrator(model)
        atoms = list(simulation.topology.atoms())
        self.atomSubset = check_atom_subset(atomSubset, simulation.system.getNumParticles())
        if self.atomSubset is not None:
            atoms = [atoms[i] for i in self.atomSubset]
        n = len(atoms)
        if types is None:
            types = match_species([a.name for a in atoms], model.config.get("species") or [])
        types = np.asarray(types, dtype=np.int64)
        if types.shape != (n,):
            raise ValueError(f"types has shape {types.shape}, the "
                             f"{'atom subset' if self.atomSubset is not None else 'topology'} has {n} atoms")
        types = check_species(types, model.n_species, model.spec.species, model.spec.system)
        self.types = types
        self._step_ps = float(simulation.integrator.getStepSize().value_in_unit(unit.picosecond))
        if reportInterval is None:
            reportInterval = max(1, int(round(model.dt / self._step_ps)))
        if isinstance(reportInterval, bool) or int(reportInterval) != reportInterval or reportInterval <= 0:
            raise ValueError(f"reportInterval must be a positive integer, got {reportInterval!r}")
        self.reportInterval = int(reportInterval)
        self.names = self.integrator.names
        self.timeline: list = []
        self.last_result = None
        self._handover_time: Optional[float] = None
        self._out, self._own = None, False
        self._closed = False
        if file is not None:
            if hasattr(file, "write"):
                self._out = file
            else:
                if os.path.splitext(os.fspath(file))[1].lower() != ".csv":
                    raise ValueError(f"the timeline file must end in .csv, got {file!r}")
                if os.path.lexists(file) and not overwrite:
                    raise FileExistsError(f"ClosureSimulation: {file} exists; pass overwrite=True to replace it, "
                                          "or choose another file")
                self._out, self._own = open(file, "w"), True
            header = ["time_ps", "step", "source"] + [f"{n}_{s}" for n in self.names for s in ("mean", "std")]
            self._out.write(",".join(header + ["ood"]) + "\n")
            self._out.flush()

    # ------------------------------------------------------------------ timeline
    def _row(self, t: float, step: int, source: str, mean: np.ndarray, std: np.ndarray, ood: int) -> None:
        if self._closed:
            raise ValueError("ClosureSimulation: step(), extrapolate() or lift() after close(); the timeline "
                             "is closed (create a new ClosureSimulation to go on)")
        row = {"time_ps": float(t), "step": int(step), "source": source, "mean": np.asarray(mean, float),
               "std": np.asarray(std, float), "ood": int(ood)}
        self.timeline.append(row)
        if self._out is not None:
            vals = [repr(float(t)), str(int(step)), source]
            for m, s in zip(row["mean"], row["std"]):
                vals += [repr(float(m)), repr(float(s))]
            self._out.write(",".join(vals + [str(int(ood))]) + "\n")
            self._out.flush()

    def _positions(self) -> tuple:
        from openmm import unit

        st = self.simulation.context.getState(getPositions=True)
        pos = np.asarray(st.getPositions(asNumpy=True).value_in_unit(unit.nanometer), dtype=np.float64)
        if self.atomSubset is not None:
            pos = pos[self.atomSubset]
        if self.model.periodic and self.simulation.system.usesPeriodicBoundaryConditions():
            from ..periodic import periodic_image_np  # the frame the model was trained in

            box = np.asarray(st.getPeriodicBoxVectors(asNumpy=True).value_in_unit(unit.nanometer), dtype=np.float64)
            pos = periodic_image_np(pos, box)
        return pos, float(st.getTime().value_in_unit(unit.picosecond))

    def current_state(self) -> np.ndarray:
        """Raw [z̄, ẑ] (D,) of the simulation's current configuration."""
        pos, _ = self._positions()
        if not np.isfinite(pos).all():
            raise ValueError(f"non-finite coordinates at step {self.simulation.currentStep}")
        z = self.model.unscale(self.integrator.initial_state(pos, self.types))
        return z.detach().cpu().numpy().astype(np.float64)

    def _record_md(self, source: str = "md") -> None:
        _, t = self._positions()
        z = self.current_state()
        self._row(t, self.simulation.currentStep, source, z, np.zeros_like(z), 0)

    # ------------------------------------------------------------------ MD
    def step(self, steps: int) -> None:
        """Advance MD by ``steps`` integration steps (the Simulation's reporters run as usual);
        a timeline row every ``reportInterval`` steps (and one at the start)."""
        if isinstance(steps, bool) or int(steps) != steps or steps < 0:
            raise ValueError(f"steps must be a non-negative integer, got {steps!r}")
        if not self.timeline:
            self._record_md()
        left = int(steps)
        while left > 0:
            to_row = self.reportInterval - self.simulation.currentStep % self.reportInterval
            chunk = min(left, to_row)
            self.simulation.step(chunk)
            left -= chunk
            if self.simulation.currentStep % self.reportInterval == 0:
                self._record_md()

    # ------------------------------------------------------------------ hand-over
    def extrapolate(self, time_ps: Optional[float] = None, steps: Optional[int] = None, samples: int = 1,
                    seed: Optional[int] = None, allow_large: bool = False):
        """Encode the current configuration once and extrapolate with the learned dynamics.

        Arguments:
            time_ps: horizon in ps (rounded to whole surrogate steps of ``model.dt``), or
            steps: the horizon in surrogate steps (give one of the two).
            samples: ensemble size K (>= 1).
            seed: seed of the SDE noise (same seed, same ensemble); an integer or None.
            allow_large: run a horizon whose memory estimate passes the bound of
                :mod:`openmm_closure.budget` (default: refuse it with the estimate).

        Returns:
            A :class:`~openmm_closure.couple.surrogate.SurrogateResult` whose ``times`` start at
            the hand-over (0 ps); the timeline rows carry the simulation's time.
        """
        if (time_ps is None) == (steps is None):
            raise ValueError("give exactly one of time_ps (ps) or steps (surrogate steps)")
        if isinstance(samples, bool) or int(samples) != samples or samples < 1:
            raise ValueError(f"samples must be a positive integer (ensemble size), got {samples!r}")
        if time_ps is not None:
            time_ps = float(time_ps)
            if not np.isfinite(time_ps) or time_ps <= 0:
                raise ValueError(f"time_ps must be a positive time in ps, got {time_ps}")
            steps = max(1, int(round(time_ps / self.integrator.dt)))
        elif isinstance(steps, bool) or int(steps) != steps or steps < 1:
            raise ValueError(f"steps must be a positive integer, got {steps!r}")
        from ..budget import check_rollout, check_seed

        check_seed(seed)
        check_rollout(int(steps), int(samples), self.model.dim, allow_large)
        if not self.timeline:
            self._record_md()
        pos, t0 = self._positions()
        res = self.integrator.run(pos, self.types, int(steps), samples=int(samples), seed=seed,
                                  allow_large=allow_large)
        mean, std = res.mean, res.std
        for j in range(1, len(res.times)):
            ood = int(res.ood_step is not None and j >= res.ood_step)
            step = self.simulation.currentStep + int(round(res.times[j] / self._step_ps))
            self._row(t0 + res.times[j], step, "surrogate", mean[j], std[j], ood)
        self.last_result = res
        self._handover_time = t0
        return res

    def lift(self, member: int = 0, seed: int = 0, **options: Any):
        """Back to particles from the end of the last extrapolation, then MD can resume.

        Draws the simulation's count of every species from the decoder p(x | ẑ) of
        ``member``'s final state, relaxes it, checks its observables (see
        :func:`openmm_closure.couple.lift.lift_configuration`, whose keyword options
        ``attempts``, ``tolerance``, ``minimize_iterations``, ``equilibration_steps`` and
        ``on_mismatch`` pass through), sets it into the Context and moves the Context's
        time and the step counter to the end of the extrapolation.

        Returns:
            A :class:`~openmm_closure.couple.lift.LiftResult`.

        Raises:
            ValueError: no extrapolation to lift from, or a member out of range.
        """
        from .lift import lift_configuration

        res = self.last_result
        if res is None:
            raise ValueError("nothing to lift: call extrapolate() first (lift consumes one extrapolation)")
        k = res.samples.shape[0]
        if isinstance(member, bool) or int(member) != member or not 0 <= member < k:
            raise ValueError(f"member must be in [0, {k}), got {member!r}")
        end = res.samples[int(member), -1]
        m = self.model.macro_dim
        out = lift_configuration(self.simulation, self.model, end[m:], end[:m], self.types, seed=seed,
                                 atomSubset=self.atomSubset, **options)
        horizon = float(res.times[-1])
        self.simulation.context.setTime(self._handover_time + horizon)
        self.simulation.context.setStepCount(self.simulation.currentStep + int(round(horizon / self._step_ps)))
        self.last_result = None
        self._record_md("lift")
        return out

    def run(self, time_ps: float, *, burst_ps: float, **options: Any):
        """Advance by ``time_ps`` ps with coarse projective integration: MD bursts, surrogate
        leaps and lifts, with adaptive leaps (see :mod:`openmm_closure.couple.projective`).

        Arguments:
            time_ps: the horizon (ps, whole model frames).
            burst_ps: MD observed after each lift (ps).
            **options: the other :class:`~openmm_closure.couple.projective.ProjectiveIntegrator`
                keyword arguments (``relax_ps``, ``tolerance``, ``leap_ps``, ``min_leap_ps``,
                ``max_leap_ps``, ``growth``, ``shrink``, ``samples``, ``seed``, ``lift_options``).

        Returns:
            A :class:`~openmm_closure.couple.projective.ProjectiveResult`. The accepted segments
            become timeline rows with ``source`` ``md``, ``leap`` (the surrogate's sample
            path, std 0) and ``lift``.
        """
        from .projective import ProjectiveIntegrator

        integ = ProjectiveIntegrator(self, burst_ps=burst_ps, **options)
        integ.horizon_frames(time_ps)  # bad input refused before anything runs
        if not self.timeline:
            self._record_md()
        _, t0 = self._positions()
        step0 = self.simulation.currentStep
        res = integ.run(time_ps)
        for seg in res.segments:
            if not seg.accepted:
                continue
            first = 0 if seg.source == "lift" else 1  # row 0 of md and leap repeats the row before
            for t, z in zip(seg.times[first:], seg.states[first:]):
                self._row(t, step0 + int(round((t - t0) / self._step_ps)), seg.source, z, np.zeros_like(z), 0)
        return res

    def close(self) -> None:
        """Close the timeline file (a file object passed in is left open)."""
        if self._out is not None and self._own:
            self._out.close()
        self._out = None
        self._closed = True
