r"""Lift a macroscopic state back to particles: the way back from the surrogate to MD.

The decoder of a closure model is a density p(x | ẑ, s) over particle positions, one per
species s, not a microstate. Lifting draws the simulation's number of particles of each
species from that density, relaxes the configuration with the simulation's own forces
and integrator, and measures how well its observables z̄ reproduce the z̄ it was lifted
from (coarse projective integration: MD → surrogate → lift → MD).

Steps of :func:`lift_configuration`:

1. for each species, draw its count of positions (nm) from p(x | ẑ, s); coordinates the
   model does not see (z of a 2D system) keep their current values; a model whose
   encoder centres each set gets the samples moved onto the current centroid;
2. keep them inside the integrator's walls where it has them (per-DOF ``lo``/``hi``);
3. for an integrator without temperature (the first-order gradient flow), dilate the
   cloud about its centroid by the factor that best matches z̄ (a constrained lift);
4. relax: local energy minimisation (``minimize_iterations``; by default none for a
   first-order gradient flow, whose dynamics is itself a descent of the energy the
   observable measures), then ``equilibration_steps`` steps of the simulation's
   integrator (by default 20 where it has a temperature, none for the gradient flow),
   with Maxwell–Boltzmann velocities at its temperature where it has one;
5. measure z̄ and its deviation from the target in the model's scaled units (each
   observable's training range spans 2); repeat for ``attempts`` draws and keep the
   closest.

What lifting preserves, per system:

- particles2d (mean pair energy): the species count (all particles) and, to the
  decoder's resolution ε, the density of the cloud and hence the energy; the pairing of
  particles, their order and exact positions are not preserved (the decoder gives a
  density). The decoder smooths the tight Gaussian clusters, which lowers the energy,
  so the cloud is dilated to the target energy; ẑ of the lifted cloud then differs from
  the ẑ it was drawn from (the pair structure inside a cluster is not recovered). No
  minimisation or equilibration by default: both would advance the gradient flow.
- lj-mixing (R_AB, R_BA): the counts of A and B exactly and their spatial densities;
  the velocities are fresh Maxwell–Boltzmann draws, and overlaps created by independent
  draws are removed by minimisation, which shifts the neighbour ratios slightly.

The OpenMM side runs here; torch is used only through the model.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

__all__ = ["LiftResult", "LiftWarning", "lift_configuration", "thermal_energy", "DEFAULT_TOLERANCE"]

#: default tolerance on max |z̄_lifted - z̄_target| in scaled units (a quarter of the training range)
DEFAULT_TOLERANCE = 0.5

_KB = 0.0083144626  # kJ/mol/K


class LiftWarning(UserWarning):
    """The lifted configuration's observables miss the target by more than the tolerance."""


@dataclass
class LiftResult:
    """A configuration lifted from a macroscopic state.

    Attributes:
        positions: (n, 3) relaxed positions in nm (already in the Context).
        target: (M,) z̄ lifted from (raw units).
        observables: (M,) z̄ of the relaxed configuration (raw units).
        deviation: max over observables of |z̄ - target| in scaled units (training range = 2).
        tolerance: the tolerance it was checked against (scaled units).
        energy: potential energy after relaxation, kJ/mol.
        attempts: number of draws made; the closest one is kept.
    """

    positions: np.ndarray
    target: np.ndarray
    observables: np.ndarray
    deviation: float
    tolerance: float
    energy: float
    attempts: int

    @property
    def ok(self) -> bool:
        """Whether the observables are within the tolerance."""
        return bool(self.deviation <= self.tolerance)


def thermal_energy(integrator: Any) -> Optional[float]:
    """kT in kJ/mol of an integrator: a global ``kT`` of a CustomIntegrator, or
    ``getTemperature()``; None when it has no temperature (a first-order gradient flow)."""
    import openmm

    if isinstance(integrator, openmm.CustomIntegrator):
        for i in range(integrator.getNumGlobalVariables()):
            if integrator.getGlobalVariableName(i) == "kT":
                return float(integrator.getGlobalVariable(i))
    if hasattr(integrator, "getTemperature"):
        from openmm import unit

        return float(integrator.getTemperature().value_in_unit(unit.kelvin)) * _KB
    return None


def _per_dof(integrator: Any, name: str) -> Optional[np.ndarray]:
    import openmm

    if not isinstance(integrator, openmm.CustomIntegrator):
        return None
    for i in range(integrator.getNumPerDofVariables()):
        if integrator.getPerDofVariableName(i) == name:
            return np.asarray([list(v) for v in integrator.getPerDofVariable(i)], dtype=np.float64)
    return None


def _centred(model: Any) -> bool:
    enc = dict(model.config.get("encoder") or {})
    return bool(enc.get("center") or enc.get("centre") or enc.get("centered") or enc.get("centred"))


def _inside(x: np.ndarray, lo: Optional[np.ndarray], hi: Optional[np.ndarray], f: int) -> np.ndarray:
    ok = np.isfinite(x).all(axis=1)
    if lo is not None and hi is not None:
        ok &= ((x > lo[0, :f]) & (x < hi[0, :f])).all(axis=1)
    return ok


def _spread(x: np.ndarray, taken: np.ndarray, d_min: float) -> np.ndarray:
    """Candidates (m, f) kept in order when farther than d_min from every point kept so far."""
    if d_min <= 0:
        return x
    keep = []
    pts = [p for p in taken]
    for p in x:
        if pts and np.min(np.sum((np.asarray(pts) - p) ** 2, axis=1)) < d_min * d_min:
            continue
        pts.append(p)
        keep.append(p)
    return np.asarray(keep).reshape(-1, x.shape[1])


def _draw(model: Any, zhat: np.ndarray, types: np.ndarray, current: np.ndarray, seed: int,
          lo: Optional[np.ndarray], hi: Optional[np.ndarray], d_min: float) -> np.ndarray:
    """Positions (n, 3) nm: each species' count drawn from p(x | ẑ, s). Draws outside the
    walls, non-finite ones and (with ``d_min`` > 0) ones closer than d_min nm to a point
    already placed are rejected and redrawn; after 20 rounds the rest are taken as drawn."""
    import torch

    pos = current.copy()
    f = int(model.in_features)
    shift = current[:, :f].mean(0) if _centred(model) else np.zeros(f)
    placed = np.zeros((0, f))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        for s in np.unique(types):
            idx = np.where(types == s)[0]
            sp = None if model.n_species == 1 else int(s)
            kept = np.zeros((0, f))
            for _ in range(20):
                x = model.sample_positions(zhat, 2 * len(idx), species=sp).detach().cpu().numpy()[:, :f] + shift
                x = _spread(x[_inside(x, lo, hi, f)], np.concatenate([placed, kept]), d_min)
                kept = np.concatenate([kept, x])[: len(idx)]
                if len(kept) >= len(idx):
                    break
            if len(kept) < len(idx):
                x = model.sample_positions(zhat, len(idx) - len(kept), species=sp).detach().cpu().numpy()[:, :f]
                kept = np.concatenate([kept, np.nan_to_num(x + shift)])
            pos[idx, :f] = kept
            placed = np.concatenate([placed, kept])
    if _centred(model):
        pos[:, :f] += current[:, :f].mean(0) - pos[:, :f].mean(0)
    return pos


def _dilate(model: Any, pos: np.ndarray, types: np.ndarray, target: np.ndarray, span: np.ndarray) -> np.ndarray:
    """Dilate the configuration about its centroid (factor 0.5 ... 2, in the model's
    coordinates) to bring z̄ closest to the target; returns the best positions (n, 3)."""
    f = int(model.in_features)
    c = pos[:, :f].mean(0)
    best, best_dev = pos, np.inf
    for s in np.exp(np.linspace(np.log(0.5), np.log(2.0), 61)):
        x = pos.copy()
        x[:, :f] = c + s * (pos[:, :f] - c)
        z = np.asarray(model.macro(x, types), dtype=np.float64).reshape(-1)
        dev = float(np.max(np.abs(z - target) / span))
        if dev < best_dev:
            best, best_dev = x, dev
    return best


def _nearest_distance(x: np.ndarray) -> float:
    """Median nearest-neighbour distance (nm) of a configuration (n, f)."""
    if len(x) < 2:
        return 0.0
    d2 = np.sum((x[:, None, :] - x[None, :, :]) ** 2, axis=-1)
    np.fill_diagonal(d2, np.inf)
    return float(np.median(np.sqrt(d2.min(axis=1))))


def _walls(pos: np.ndarray, lo: Optional[np.ndarray], hi: Optional[np.ndarray]) -> np.ndarray:
    if lo is None or hi is None:
        return pos
    span = np.maximum(hi - lo, 0.0)
    pad = np.minimum(1e-3, 0.5 * span)
    return np.clip(pos, lo + pad, hi - pad)


def lift_configuration(
    simulation: Any,
    model: Any,
    zhat: Any,
    target: Any,
    types: Any,
    *,
    seed: int = 0,
    attempts: int = 4,
    tolerance: float = DEFAULT_TOLERANCE,
    minimize_iterations: Optional[int] = None,
    equilibration_steps: Optional[int] = None,
    on_mismatch: str = "warn",
    min_distance: Optional[float] = None,
    dilate: Optional[bool] = None,
    atomSubset: Optional[Any] = None,
) -> LiftResult:
    """Sample a configuration from p(x | ẑ), relax it, check z̄, and set it into the Context.

    Arguments:
        simulation: an ``openmm.app.Simulation``; its Context receives the configuration.
        model: the ClosureModel whose decoder is sampled.
        zhat: (d,) closure variables (raw units, as :meth:`ClosureModel.encode` gives).
        target: (M,) observables z̄ to reproduce (raw units).
        types: (n,) species of every particle (the counts are kept).
        seed: seeds the draws and the velocities; the same seed gives the same configuration.
        attempts: draws to make; the closest to the target is kept (>= 1).
        tolerance: allowed max |z̄ - target| in scaled units (the training range spans 2).
        minimize_iterations: LocalEnergyMinimizer iterations (None: 0 for an integrator
            without temperature, 500 otherwise; 0 skips minimisation).
        equilibration_steps: integrator steps after minimisation (the Context's time and
            step count are restored afterwards; None: 0 for an integrator without
            temperature, whose steps would advance the deterministic dynamics, else 20).
        on_mismatch: "warn" (a :class:`LiftWarning`) or "raise" (ValueError) when the
            deviation exceeds the tolerance.
        min_distance: draws closer than this (nm) to a particle already placed are
            redrawn, so that hard cores do not overlap (None: 0.7 x the current median
            nearest-neighbour distance for an integrator with a temperature, else 0).
        dilate: before relaxing, dilate the drawn cloud about its centroid by the factor
            in [0.5, 2] that brings z̄ closest to the target (a constrained lift: the
            decoder's smoothing spreads tight structures); None: on for an integrator
            without temperature (no hard cores or walls to respect), else off.
        atomSubset: indices of the particles the model describes (``types`` are theirs);
            only they are drawn and put back, every particle is then relaxed (a solute
            lifted into its solvent). None: all particles.

    Returns:
        A :class:`LiftResult`.
    """
    import openmm
    from openmm import unit

    if on_mismatch not in ("warn", "raise"):
        raise ValueError(f"on_mismatch must be 'warn' or 'raise', got {on_mismatch!r}")
    attempts = int(attempts)
    if attempts < 1:
        raise ValueError(f"attempts must be >= 1, got {attempts}")
    if not np.isfinite(tolerance) or tolerance < 0:
        raise ValueError(f"tolerance must be >= 0 (scaled units), got {tolerance}")
    if equilibration_steps is not None and int(equilibration_steps) < 0:
        raise ValueError(f"equilibration_steps must be >= 0, got {equilibration_steps}")
    types = np.asarray(types, dtype=np.int64)
    zhat = np.asarray(zhat, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    if not (np.isfinite(zhat).all() and np.isfinite(target).all()):
        raise ValueError("cannot lift a non-finite state (the rollout diverged): lift another member or an earlier time")

    context, integrator = simulation.context, simulation.integrator
    state = context.getState(getPositions=True)
    everything = np.asarray(state.getPositions(asNumpy=True).value_in_unit(unit.nanometer), dtype=np.float64)
    from openmm_closure.reporters.base import check_atom_subset

    sub = check_atom_subset(atomSubset, len(everything))
    sub = np.arange(len(everything)) if sub is None else sub
    if len(types) != len(sub):
        raise ValueError(f"types has {len(types)} entries for {len(sub)} lifted particles")
    current = everything[sub]
    periodic = simulation.system.usesPeriodicBoundaryConditions()

    def box_of(st):
        if not periodic:
            return None
        return np.asarray(st.getPeriodicBoxVectors(asNumpy=True).value_in_unit(unit.nanometer), dtype=np.float64)
    time0, step0 = state.getTime(), state.getStepCount()
    kT = thermal_energy(integrator)
    if minimize_iterations is None:
        minimize_iterations = 0 if kT is None else 500
    if equilibration_steps is None:
        equilibration_steps = 0 if kT is None else 20
    if dilate is None:
        dilate = kT is None
    lo, hi = _per_dof(integrator, "lo"), _per_dof(integrator, "hi")
    lo = None if lo is None else lo[sub]
    hi = None if hi is None else hi[sub]
    if min_distance is None:
        min_distance = 0.0 if kT is None else 0.7 * _nearest_distance(current[:, : int(model.in_features)])
    mask = _per_dof(integrator, "mask")
    if mask is None:
        mask = np.zeros_like(everything)
        mask[:, : int(model.in_features)] = 1.0
    masses = np.array([simulation.system.getParticleMass(i).value_in_unit(unit.dalton)
                       for i in range(simulation.system.getNumParticles())])
    n_obs = len(target)
    lo_s = model.state_scaler.lo.detach().cpu().double().numpy()[:n_obs]
    hi_s = model.state_scaler.hi.detach().cpu().double().numpy()[:n_obs]
    span = np.where(hi_s > lo_s, hi_s - lo_s, 1.0)

    best = None
    for a in range(attempts):
        s = int(seed) * 1_000_003 + a
        pos = _walls(_draw(model, zhat, types, current, s, lo, hi, float(min_distance)), lo, hi)
        if dilate and n_obs:
            pos = _walls(_dilate(model, pos, types, target, span), lo, hi)
        full = everything.copy()
        full[sub] = pos
        context.setPositions(full)
        if minimize_iterations > 0:
            try:
                openmm.LocalEnergyMinimizer.minimize(context, 1.0, int(minimize_iterations))
            except openmm.OpenMMException:  # overlapping draws: try the next attempt
                continue
            p = context.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(unit.nanometer)
            p = np.asarray(p)
            p[sub] = _walls(p[sub], lo, hi)
            context.setPositions(p)
        if kT is not None:
            rng = np.random.default_rng(s)
            v = rng.standard_normal(everything.shape) * np.sqrt(kT / masses)[:, None] * mask
            context.setVelocities(v)
        if equilibration_steps > 0:
            integrator.step(int(equilibration_steps))
        out = context.getState(getPositions=True, getEnergy=True, getVelocities=kT is not None)
        relaxed = np.asarray(out.getPositions(asNumpy=True).value_in_unit(unit.nanometer), dtype=np.float64)
        energy = float(out.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole))
        zbar = np.asarray(model.macro(relaxed[sub], types, box=box_of(out)), dtype=np.float64).reshape(-1)
        dev = float(np.max(2.0 * np.abs(zbar - target) / span)) if n_obs else 0.0
        if not np.isfinite(dev) or not np.isfinite(energy):
            dev = float("inf")
        if best is None or dev < best[0]:
            vel = out.getVelocities(asNumpy=True) if kT is not None else None
            best = (dev, relaxed, zbar, energy, vel)
    if best is None:
        context.setPositions(everything)
        context.setTime(time0)
        context.setStepCount(step0)
        raise ValueError(f"every one of {attempts} lifted configurations blew up in minimisation: "
                         "raise attempts or min_distance")
    dev, relaxed, zbar, energy, vel = best
    context.setPositions(relaxed)
    if vel is not None:
        context.setVelocities(vel)
    context.setTime(time0)
    context.setStepCount(step0)
    if not np.isfinite(energy):
        raise ValueError(f"the lifted configuration has a non-finite energy ({energy}) after relaxation; "
                         "raise minimize_iterations or attempts")
    res = LiftResult(positions=relaxed, target=target, observables=zbar, deviation=dev,
                     tolerance=float(tolerance), energy=energy, attempts=attempts)
    if not res.ok:
        msg = (f"lifted observables {np.round(zbar, 5).tolist()} miss the target {np.round(target, 5).tolist()} "
               f"by {dev:.3g} scaled units (tolerance {tolerance:g}); raise attempts or the tolerance")
        if on_mismatch == "raise":
            raise ValueError(msg)
        warnings.warn(msg, LiftWarning, stacklevel=2)
    return res
