"""SPEC §3B: a 2D binary Lennard-Jones mixture that mixes between reflecting walls.

Protocol (done at build time up to the production run):
  1. atoms on a square lattice at the given density fill the box ``[0, Lx] x [0, Ly]``;
  2. velocities from Maxwell-Boltzmann at kT (x and y only);
  3. NVE relaxation (velocity Verlet with the same walls), all atoms of species A;
  4. atoms with ``x < half_l`` become A, the rest B;
  5. production: NVT with a Langevin (BAOAB) thermostat, friction 1/ps by default, in
     place of the reference's Nose-Hoover (damping 0.1 tau). Langevin is exact in
     distribution and local (each atom is thermostatted), which suits the walled,
     non-momentum-conserving box; the friction is a parameter.

Walls: reflecting in x and y (a coordinate that crosses a wall is mirrored back and its
velocity component flips), done inside the integrator; z is frozen by a per-DOF mask.
Non-bonded: the per-type-pair (epsilon, sigma) table from ``Discrete2DFunction`` tables (not
Lorentz-Berthelot), cut at 2.5 and shifted to zero there (the shift changes energies,
not forces).
"""

from __future__ import annotations

import numpy as np
import openmm

from ..md.integrators import WalledLangevinIntegrator
from .spec import KT_REDUCED, SimulationSpec, check_count, check_positive, single_atom_topology

__all__ = ["build_lj_mixing", "LJ_ENERGY", "LJ_EPSILON", "LJ_SIGMA", "lattice_positions", "REGIMES", "lj_force"]

# Same expression as forcefields/lj_binary_mixture.xml (a test checks they agree).
LJ_ENERGY = "4*e*((s/r)^12 - (s/r)^6 - (s/rc)^12 + (s/rc)^6); e=lj_eps(t1, t2); s=lj_sig(t1, t2)"
LJ_EPSILON = np.array([[0.5, 0.7], [0.7, 0.6]])  # kJ/mol, [type_i, type_j], A = 0, B = 1
LJ_SIGMA = np.array([[1.0, 0.9], [0.9, 0.9]])  # nm

# regime -> (box in nm, half_l intervals as fractions of Lx, sampled with equal probability);
# for the reference Lx = 32 these are U[10, 22] (in-dst) and U[8, 10] or U[22, 24] (diff-init)
REGIMES = {
    "in-dst": ((32.0, 32.0), ((10 / 32, 22 / 32),)),
    "diff-init": ((32.0, 32.0), ((8 / 32, 10 / 32), (22 / 32, 24 / 32))),
    "diff-N": ((32.0, 26.0), ((10 / 32, 22 / 32),)),
}
WALL_FAR = 1.0e6  # z "walls": never reached
# element labels that let ForceField tell the one-atom templates A and B apart
SPECIES_ELEMENTS = {"A": "Ar", "B": "Kr"}


def lattice_positions(box: tuple[float, float], density: float) -> np.ndarray:
    """Square lattice of spacing ``density**-0.5`` from the origin, inside ``box``.

    Returns:
        (n, 3) positions in nm, z = 0, row by row (y outer, x inner).
    """
    spacing = density ** -0.5
    nx = int(np.floor(box[0] / spacing - 1e-9)) + 1
    ny = int(np.floor(box[1] / spacing - 1e-9)) + 1
    gx, gy = np.meshgrid(np.arange(nx) * spacing, np.arange(ny) * spacing)
    xy = np.stack([gx.ravel(), gy.ravel()], axis=1)
    xy = xy[(xy[:, 0] < box[0]) & (xy[:, 1] < box[1])]
    return np.concatenate([xy, np.zeros((len(xy), 1))], axis=1)


def lj_force(types: np.ndarray, cutoff: float) -> openmm.CustomNonbondedForce:
    """The tabulated-pair LJ force for particles of species ``types`` (0 = A, 1 = B)."""
    force = openmm.CustomNonbondedForce(LJ_ENERGY)
    force.addGlobalParameter("rc", cutoff)
    force.addPerParticleParameter("t")
    # Discrete2DFunction value index is x + xsize * y; the tables are symmetric anyway
    force.addTabulatedFunction("lj_eps", openmm.Discrete2DFunction(2, 2, LJ_EPSILON.T.ravel().tolist()))
    force.addTabulatedFunction("lj_sig", openmm.Discrete2DFunction(2, 2, LJ_SIGMA.T.ravel().tolist()))
    force.setNonbondedMethod(openmm.CustomNonbondedForce.CutoffNonPeriodic)
    force.setCutoffDistance(cutoff)
    for t in types:
        force.addParticle([float(t)])
    return force


def build_lj_mixing(
    *,
    n_particles: int | None = None,
    regime: str = "in-dst",
    seed: int = 0,
    walls: tuple[float, float] | None = None,
    density: float = 0.5,
    half_l: float | None = None,
    kT: float = KT_REDUCED,
    friction: float = 1.0,
    cutoff: float = 2.5,
    dt: float = 0.002,
    relax_steps: int = 3000,
    steps: int = 100_000,
    report_interval: int = 200,
    relax_platform: str = "auto",
) -> SimulationSpec:
    """Build the LJ binary mixture, relaxed and typed, ready for the NVT production run.

    Arguments:
        n_particles: keep the first N lattice sites (default: the whole lattice, 529 in a
            32 x 32 box at density 0.5).
        regime: ``in-dst`` (half_l ~ U[10, 22]), ``diff-init`` (U[8, 10] or U[22, 24]),
            ``diff-N`` (box 32 x 26, about 437 atoms). The intervals scale with Lx
            (fractions 10/32 ... 24/32) when ``walls`` sets another box.
        seed: seeds half_l, the velocities and the thermostat noise.
        walls: (Lx, Ly) in nm, the walled box ``[0, Lx] x [0, Ly]``, overriding the
            regime's; each side must be at least 2 * cutoff.
        half_l: the A/B boundary x (nm), overriding the regime's distribution.
        kT (kJ/mol), friction (1/ps), cutoff (nm), dt (ps), relax_steps (NVE steps),
        steps (NVT steps), report_interval (steps per frame).
        relax_platform: platform for the NVE relaxation done here.
    """
    if regime not in REGIMES:
        raise ValueError(f"regime must be one of {sorted(REGIMES)}, got {regime!r}")
    default_box, intervals = REGIMES[regime]
    try:
        box = tuple(float(v) for v in (default_box if walls is None else walls))
    except (TypeError, ValueError):
        raise ValueError(f"walls must be (Lx, Ly) in nm, got {walls!r}") from None
    if len(box) != 2:
        raise ValueError(f"walls must be (Lx, Ly) in nm, got {walls!r}")
    cutoff = check_positive("cutoff", cutoff)
    for side in box:
        check_positive("walls", side)
        if side < 2.0 * cutoff:
            raise ValueError(f"walls: box side {side} nm is smaller than twice the cutoff ({2 * cutoff} nm)")
    density = check_positive("density", density)
    kT, dt = check_positive("kT", kT), check_positive("dt", dt)
    friction = float(friction)
    if friction < 0:
        raise ValueError(f"friction must be >= 0, got {friction}")
    relax_steps = int(relax_steps)
    if relax_steps < 0:
        raise ValueError(f"relax_steps must be >= 0, got {relax_steps}")
    steps = check_count("steps", steps)
    report_interval = check_count("report_interval", report_interval)
    if steps % report_interval:
        raise ValueError(f"steps ({steps}) must be a multiple of report_interval ({report_interval})")

    sites = lattice_positions(box, density)
    if n_particles is not None:
        n = check_count("n_particles", n_particles)
        if n > len(sites):
            raise ValueError(
                f"n_particles={n} does not fit a {box[0]} x {box[1]} box at density {density} "
                f"(at most {len(sites)}); enlarge walls"
            )
        sites = sites[:n]
    n = len(sites)

    rng = np.random.default_rng(seed)
    # drawn even when half_l is given, so the velocities below depend on the seed only
    lo, hi = intervals[rng.integers(len(intervals))]
    drawn = float(rng.uniform(lo, hi)) * box[0]
    half_l = drawn if half_l is None else float(half_l)
    velocities = np.zeros((n, 3))
    velocities[:, :2] = np.sqrt(kT / 1.0) * rng.standard_normal((n, 2))
    noise_seed = int(rng.integers(1, 2**30))

    lo_wall, hi_wall = (0.0, 0.0, -WALL_FAR), (box[0], box[1], WALL_FAR)

    def make_system(types: np.ndarray) -> openmm.System:
        system = openmm.System()
        for _ in range(n):
            system.addParticle(1.0)
        system.addForce(lj_force(types, cutoff))
        return system

    # NVE relaxation, every atom of species A
    positions = sites
    if relax_steps > 0:
        from ..md.platforms import platform_properties, select_platform

        nve = WalledLangevinIntegrator(dt, n, lo_wall, hi_wall, kT=kT, friction=0.0)
        plat = select_platform(relax_platform)  # reproducible: the same seed gives the same start
        context = openmm.Context(make_system(np.zeros(n, dtype=np.int64)), nve, plat,
                                 platform_properties(plat, deterministic=True))
        context.setPositions(positions)
        context.setVelocities(velocities)
        nve.step(relax_steps)
        state = context.getState(getPositions=True, getVelocities=True)
        positions = state.getPositions(asNumpy=True)._value.copy()
        velocities = state.getVelocities(asNumpy=True)._value.copy()
        del context

    types = np.where(positions[:, 0] < half_l, 0, 1).astype(np.int64)
    if types.min() == types.max():
        raise ValueError(f"half_l={half_l} nm leaves only species {'AB'[types[0]]} in a {box[0]} nm wide box")
    species = ("A", "B")
    names = [species[t] for t in types]

    def integrator_factory() -> openmm.Integrator:
        integrator = WalledLangevinIntegrator(dt, n, lo_wall, hi_wall, kT=kT, friction=friction)
        integrator.setRandomNumberSeed(noise_seed)
        return integrator

    params = dict(
        system="lj-mixing", n_particles=n, regime=regime, seed=int(seed),
        box=None,  # no periodic images: observables treat the walled box as open
        walls=list(box), density=density, half_l=half_l, kT=kT, friction=friction, cutoff=cutoff, dt=dt,
        relax_steps=relax_steps, steps=steps, report_interval=report_interval, noise_seed=noise_seed,
        thermostat="langevin-baoab", wall_kind="reflecting", dimensions=2,
    )
    return SimulationSpec(
        name="lj-mixing",
        system=make_system(types),
        topology=single_atom_topology(names, SPECIES_ELEMENTS),
        positions=positions,
        velocities=velocities,
        types=types,
        species=species,
        report_interval=report_interval,
        n_frames=steps // report_interval + 1,
        params=params,
        observables=("R_AB", "R_BA"),
        integrator_factory=integrator_factory,
    )
