"""Many independent replicas of one system in one OpenMM ``System`` and ``Context``.

A small system (300 particles) leaves a CPU core mostly waiting on per-step overhead and a
GPU idle; packing B replicas into one Context amortises the context creation, the kernel
launches and the per-step integrator bookkeeping. Replicas never interact:

- ``particles2d`` (all pairs, no cutoff): one ``CustomNonbondedForce`` interaction group
  per replica (``method="groups"``: only within-replica pairs, B·N² pair work, never
  (B·N)²), or replicas in separate z planes with a neighbour-list cutoff that holds a
  whole replica (``method="planes"``; each frame is checked to fit the cutoff). z is
  frozen by the integrator's mask, so planes never meet.
- ``lj-mixing`` (2D, cutoff, reflecting walls): replicas in z planes spaced farther
  apart than the cutoff, so the ``CutoffNonPeriodic`` neighbour list never pairs two
  replicas; the walls are the integrator's per-DOF ``lo``/``hi`` variables, set per
  replica; the thermostat noise is per-DOF Gaussian, so independent per replica.
- ``polymer``: the excluded volume uses one interaction group per replica, so chains may
  overlap in space without touching. The planar extensional flow ``u = ė (x - c_x,
  -(y - c_y), 0)`` about each replica's OWN centre of mass c is a potential flow:
  ``ζ u_i = -∂U/∂x_i`` with ``U = -(ζ ė / 2) Σ_i (x_i² - y_i²) + (ζ ė n / 2)(c_x² - c_y²)``
  (the second term's gradient through c cancels the first's mean), i.e. a
  ``CustomExternalForce`` plus one ``CustomCentroidBondForce`` term per replica. The
  Brownian step ``x += dt (f / ζ) + noise`` then moves every chain in the flow about its
  own centre, exactly as :class:`~openmm_closure.md.integrators.ExtensionalFlowBrownianIntegrator`
  does for one chain about the global centre.

Randomness: OpenMM draws a CustomIntegrator's Gaussian numbers from ONE stream per
Context, seeded by the integrator's seed, in DOF order. A batch of B > 1 replicas is
therefore seeded with the noise seed of its first replica and is bitwise reproducible
for the same (seed, B), and equal to unbatched runs in distribution (each replica's
noise is independent standard normal), not bitwise. A batch of one replica runs the
replica's own System and integrator, so ``B = 1`` is bitwise the unbatched run. Initial
states (positions, velocities, species, the build-time relaxation) come from each
replica's own seed, so they never depend on B.

This module never imports torch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import openmm

from .spec import SimulationSpec

__all__ = [
    "BatchedSystem",
    "build_batch",
    "run_batch_frames",
    "batch_memory_bytes",
    "available_memory_bytes",
    "check_batch_fits",
    "METHODS",
]

#: particles2d constructions; the default is the faster one on CPU (benchmarks/simulate_throughput.py)
METHODS = ("groups", "planes")
#: plane spacing and cutoff of the particles2d "planes" construction, nm
PLANES_CUTOFF = 12.0
_Z_FAR = 1.0e6


@dataclass
class BatchedSystem:
    """B replicas packed into one System.

    Attributes:
        system: the ``openmm.System`` of all B·n particles (replica b holds particles
            ``b*n .. (b+1)*n - 1``).
        integrator: a fresh integrator for it (seeded where stochastic).
        positions: (B·n, 3) initial positions in nm (replica offsets included).
        velocities: (B·n, 3) initial velocities in nm/ps, or None.
        offsets: (B, 3) nm added to replica b's coordinates inside the batch.
        n: particles per replica; ``batch``: B.
        span_limit: a replica's coordinates must stay within this many nm of each other
            (the "planes" cutoff), or None when any extent is exact.
    """

    system: openmm.System
    integrator: openmm.Integrator
    positions: np.ndarray
    velocities: np.ndarray | None
    offsets: np.ndarray
    n: int
    batch: int
    span_limit: float | None = None


def _check_same(specs: Sequence[SimulationSpec]) -> tuple[str, int]:
    if len(specs) == 0:
        raise ValueError("a batch needs at least one replica")
    name, n = specs[0].name, specs[0].n_particles
    skip = {"seed", "noise_seed", "half_l"}
    ref = {k: v for k, v in specs[0].params.items() if k not in skip}
    for s in specs[1:]:
        if s.name != name or s.n_particles != n:
            raise ValueError("all replicas of a batch must be the same system with the same particle count")
        if {k: v for k, v in s.params.items() if k not in skip} != ref:
            raise ValueError("all replicas of a batch must share their parameters (apart from the seed)")
    return name, n


def _particles2d(specs, n, method):
    from .particles2d import PAIR_ENERGY
    from ..md.integrators import GradientFlowIntegrator

    p, b = specs[0].params, len(specs)
    system = openmm.System()
    for _ in range(b * n):
        system.addParticle(1.0)
    force = openmm.CustomNonbondedForce(PAIR_ENERGY)
    force.addGlobalParameter("ip_a", p["a"])
    force.addGlobalParameter("ip_b", p["b"])
    force.addGlobalParameter("ip_inv_n", 1.0 / n)
    for _ in range(b * n):
        force.addParticle([])
    offsets = np.zeros((b, 3))
    span = None
    if method == "groups":
        force.setNonbondedMethod(openmm.CustomNonbondedForce.NoCutoff)
        for r in range(b):
            group = range(r * n, (r + 1) * n)
            force.addInteractionGroup(group, group)
    elif method == "planes":
        force.setNonbondedMethod(openmm.CustomNonbondedForce.CutoffNonPeriodic)
        force.setCutoffDistance(PLANES_CUTOFF)
        offsets[:, 2] = 2.0 * PLANES_CUTOFF * (np.arange(b) - (b - 1) / 2.0)
        span = PLANES_CUTOFF
    else:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    system.addForce(force)
    integrator = GradientFlowIntegrator(p["dt"], b * n)
    return system, integrator, offsets, span


def _lj_mixing(specs, n):
    from ..md.integrators import WalledLangevinIntegrator
    from .lj_mixing import lj_force

    p, b = specs[0].params, len(specs)
    types = np.concatenate([s.types for s in specs])
    system = openmm.System()
    for _ in range(b * n):
        system.addParticle(1.0)
    system.addForce(lj_force(types, p["cutoff"]))
    offsets = np.zeros((b, 3))
    # planes farther apart than the cutoff: the neighbour list never pairs two replicas
    offsets[:, 2] = 2.0 * p["cutoff"] * (np.arange(b) - (b - 1) / 2.0)
    lx, ly = p["walls"]
    integrator = WalledLangevinIntegrator(p["dt"], b * n, (0.0, 0.0, -_Z_FAR), (lx, ly, _Z_FAR),
                                          kT=p["kT"], friction=p["friction"])
    # per-replica walls: each replica's box, shifted by its offset
    lo = np.repeat(offsets + np.array([0.0, 0.0, -_Z_FAR]), n, axis=0)
    hi = np.repeat(offsets + np.array([lx, ly, _Z_FAR]), n, axis=0)
    integrator.setPerDofVariableByName("lo", [openmm.Vec3(*v) for v in lo])
    integrator.setPerDofVariableByName("hi", [openmm.Vec3(*v) for v in hi])
    integrator.setRandomNumberSeed(int(p["noise_seed"]))
    return system, integrator, offsets, None


def _polymer(specs, n):
    from ..md.integrators import ExtensionalFlowBrownianIntegrator
    from .polymer import WCA_CUTOFF, WCA_ENERGY

    p, b = specs[0].params, len(specs)
    single = specs[0].system
    system = openmm.System()
    for _ in range(b * n):
        system.addParticle(1.0)
    for force in single.getForces():
        if isinstance(force, openmm.CustomBondForce):
            bonds = openmm.CustomBondForce(force.getEnergyFunction())
            for g in range(force.getNumGlobalParameters()):
                bonds.addGlobalParameter(force.getGlobalParameterName(g), force.getGlobalParameterDefaultValue(g))
            for r in range(b):
                for k in range(force.getNumBonds()):
                    i, j, par = force.getBondParameters(k)
                    bonds.addBond(r * n + i, r * n + j, par)
            system.addForce(bonds)
        elif isinstance(force, openmm.CustomNonbondedForce):
            wca = openmm.CustomNonbondedForce(WCA_ENERGY)
            wca.addGlobalParameter("wca_eps", 1.0)
            wca.addGlobalParameter("wca_sig", 1.0)
            wca.setNonbondedMethod(openmm.CustomNonbondedForce.CutoffNonPeriodic)
            wca.setCutoffDistance(WCA_CUTOFF)
            for _ in range(b * n):
                wca.addParticle([])
            for r in range(b):
                group = range(r * n, (r + 1) * n)
                wca.addInteractionGroup(group, group)
            system.addForce(wca)
        else:  # pragma: no cover - the polymer builder makes only these two kinds
            raise ValueError(f"cannot batch a polymer force of type {type(force).__name__}")
    rate = float(p["strain_rate"])
    if rate != 0.0:
        # potential flow about each replica's own centre of mass (module docstring)
        k = float(p["zeta"]) * rate
        ext = openmm.CustomExternalForce("-0.5*flow_k*(x^2 - y^2)")
        ext.addGlobalParameter("flow_k", k)
        for i in range(b * n):
            ext.addParticle(i, [])
        system.addForce(ext)
        centre = openmm.CustomCentroidBondForce(1, "0.5*flow_k*flow_n*(x1^2 - y1^2)")
        centre.addGlobalParameter("flow_k", k)
        centre.addGlobalParameter("flow_n", float(n))
        for r in range(b):
            centre.addGroup(list(range(r * n, (r + 1) * n)), [1.0] * n)
            centre.addBond([r], [])
        system.addForce(centre)
    integrator = ExtensionalFlowBrownianIntegrator(p["dt"], b * n, kT=p["kT"], zeta=p["zeta"], strain_rate=0.0)
    integrator.setRandomNumberSeed(int(specs[0].params["noise_seed"]))
    return system, integrator, np.zeros((b, 3)), None


def build_batch(specs: Sequence[SimulationSpec], method: str = "groups") -> BatchedSystem:
    """Pack the replicas ``specs`` (same system, same parameters, any seeds) into one System.

    Arguments:
        specs: B specs from :func:`openmm_closure.systems.build` differing only in seed.
        method: particles2d construction, ``"groups"`` or ``"planes"`` (module docstring).

    Returns:
        A :class:`BatchedSystem`. For B = 1 it holds the replica's own System and a fresh
        integrator of its own (bitwise the unbatched run).
    """
    name, n = _check_same(specs)
    b = len(specs)
    if b == 1:
        s = specs[0]
        return BatchedSystem(s.system, s.new_integrator(), np.asarray(s.positions, dtype=np.float64),
                             None if s.velocities is None else np.asarray(s.velocities, dtype=np.float64),
                             np.zeros((1, 3)), n, 1)
    if name == "particles2d":
        system, integrator, offsets, span = _particles2d(specs, n, method)
    elif name == "lj-mixing":
        system, integrator, offsets, span = _lj_mixing(specs, n)
    elif name == "polymer":
        system, integrator, offsets, span = _polymer(specs, n)
    else:  # a registered system packs its own replicas, with its record's batched builder
        from ..catalog import SYSTEM_REGISTRY

        own = SYSTEM_REGISTRY[name].batched_fn()
        if own is None or own is build_batch:
            raise ValueError(f"system {name!r} has no batched builder: run its replicas with --batch 1")
        return own(specs, method)
    positions = np.concatenate([np.asarray(s.positions, dtype=np.float64) + offsets[r] for r, s in enumerate(specs)])
    velocities = None
    if specs[0].velocities is not None:
        velocities = np.concatenate([np.asarray(s.velocities, dtype=np.float64) for s in specs])
    return BatchedSystem(system, integrator, positions, velocities, offsets, n, b, span)


def run_batch_frames(
    batched: BatchedSystem, report_interval: int, n_frames: int, platform: str = "auto",
    deterministic: bool = False,
) -> tuple[np.ndarray, np.ndarray, str]:
    """Run a batch and keep every frame in memory.

    Arguments:
        batched: from :func:`build_batch`.
        report_interval: steps between frames; ``n_frames``: frames, the initial one included.
        platform: ``auto``, ``CUDA``, ``OpenCL``, ``CPU`` or ``Reference``.
        deterministic: bitwise-reproducible forces where the platform can give them
            (see :func:`openmm_closure.md.platforms.platform_properties`).

    Returns:
        (positions, times, platform name): positions (B, F, n, 3) float64 in nm with the
        replica offsets removed, times (F,) in ps.

    Raises:
        ValueError: non-finite coordinates, or a "planes" replica that outgrew its cutoff.
    """
    from ..md.platforms import platform_properties, select_platform

    plat = select_platform(platform)
    context = openmm.Context(batched.system, batched.integrator, plat, platform_properties(plat, deterministic))
    context.setPositions(batched.positions)
    if batched.velocities is not None:
        context.setVelocities(batched.velocities)
    b, n = batched.batch, batched.n
    out = np.empty((n_frames, b * n, 3))
    times = np.empty(n_frames)
    for f in range(n_frames):
        if f:
            batched.integrator.step(report_interval)
        state = context.getState(getPositions=True)
        out[f] = state.getPositions(asNumpy=True)._value
        times[f] = state.getTime()._value
        if not np.all(np.isfinite(out[f])):
            raise ValueError(f"batch: non-finite coordinates at frame {f}")
    name = context.getPlatform().getName()
    del context
    pos = out.reshape(n_frames, b, n, 3).transpose(1, 0, 2, 3) - batched.offsets[:, None, None, :]
    if batched.span_limit is not None:
        span = np.max(np.ptp(pos, axis=2))
        if span >= batched.span_limit:
            raise ValueError(f"batch: a replica spread over {span:.3g} nm, beyond the planes cutoff "
                             f"{batched.span_limit} nm; use method='groups'")
    return np.ascontiguousarray(pos), times, name


def batch_memory_bytes(batch: int, n_particles: int, n_frames: int) -> int:
    """Bytes of the frame buffers of a batch: float64 positions, held twice while split."""
    return int(2 * batch * n_frames * n_particles * 3 * 8)


def available_memory_bytes() -> int | None:
    """``MemAvailable`` from /proc/meminfo in bytes, or None where it cannot be read."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def check_batch_fits(batch: int, n_particles: int, n_frames: int, workers: int = 1,
                     available: int | None = None) -> int:
    """Raise ValueError when ``workers`` batches' frame buffers exceed half the free memory.

    Returns:
        The estimated bytes of all workers' buffers.
    """
    need = workers * batch_memory_bytes(batch, n_particles, n_frames)
    free = available_memory_bytes() if available is None else available
    if free is not None and need > free // 2:
        fit = max(1, int(batch * (free // 2) / max(need, 1)))
        raise ValueError(
            f"batch {batch} x {workers} worker(s) needs about {need / 2**30:.2f} GiB of frame buffers "
            f"({n_frames} frames of {n_particles} particles per replica), more than half of the "
            f"{free / 2**30:.2f} GiB available; use --batch {fit} or fewer"
        )
    return need
