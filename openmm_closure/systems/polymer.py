"""SPEC §3C: a bead-spring polymer unravelling in planar extensional flow.

Model: Kremer-Grest chain, FENE bonds (k = 30, R0 = 1.5) and WCA excluded volume
(epsilon = sigma = 1) between all bead pairs, in Brownian dynamics (bead friction zeta,
kT = 1) with the flow ``u = strain_rate (x, -y, 0)`` about the chain's centre of mass
(:class:`~openmm_closure.md.integrators.ExtensionalFlowBrownianIntegrator`).

Time step: explicit Brownian dynamics is stable while ``dt * k / zeta < 2`` for the
stiffest pair curvature k; WCA's exceeds 2,000 kJ/mol/nm² below r = 0.9, and close
contacts blew a 300-bead chain up within 500 steps at dt = 0.0005 ps. The default
``dt`` is therefore 0.0002 ps, which makes the reference-sized run (300 beads, Wi = 5,
Hencky strain 6) about 1.7e7 steps: hours on a CPU.

Weissenberg number: ``Wi = strain_rate * tau`` with ``tau`` the chain's longest
relaxation time. By default tau is the Rouse estimate
``zeta <b^2> N^2 / (3 pi^2 kT)`` with the Kremer-Grest bond length (0.97 nm); pass
``relaxation_time=`` a value measured with :func:`measure_relaxation_time` (the
end-to-end vector's autocorrelation time) to use that instead. The value used is
recorded in ``params``.

Regimes: ``in-dst`` (training) starts each replica from its own equilibrated
conformation (a self-avoiding growth walk relaxed without flow). The test sets
``slow``, ``medium`` and ``fast`` start every replica from ONE conformation each (only
the noise differs): from a fixed pool of walks, each relaxed without flow, the one with
the smallest, median and largest x-span after that relaxation, which unravel slowly, at
a medium rate and fast. (Ranking the walks before the relaxation, as earlier versions
did, gave ``medium`` and ``fast`` the same starting extension.)
"""

from __future__ import annotations

import math

import numpy as np
import openmm

from ..md.integrators import ExtensionalFlowBrownianIntegrator
from .spec import KT_REDUCED, SimulationSpec, check_count, check_positive

__all__ = [
    "build_polymer",
    "FENE_ENERGY",
    "WCA_ENERGY",
    "WCA_CUTOFF",
    "SOFT_ENERGY",
    "REPULSIONS",
    "growth_walk",
    "rouse_time",
    "measure_relaxation_time",
    "fene_mean_square_bond",
    "REGIMES",
    "MEASURED_RELAXATION_TIMES",
    "SMALL_CHAIN",
]

# Same expressions as forcefields/bead_spring_polymer.xml (a test checks they agree).
FENE_ENERGY = "-0.5*fene_k*fene_r0^2*log(1 - (r/fene_r0)^2)"
WCA_ENERGY = "step(2^(1/6)*wca_sig - r)*(4*wca_eps*((wca_sig/r)^12 - (wca_sig/r)^6) + wca_eps)"
WCA_CUTOFF = 2.0 ** (1.0 / 6.0)
# Soft excluded volume (DPD-like): 0.5 a (1 - r/sigma)^2 inside r < sigma. Its curvature
# a / sigma^2 is 25 kJ/mol/nm^2 at a = 25 kT, against WCA's ~2,300 at r = 0.9, so explicit
# BD stays stable at steps that WCA's close contacts blow up.
SOFT_ENERGY = "step(soft_sig - r)*0.5*soft_a*(1 - r/soft_sig)^2"
REPULSIONS = ("wca", "soft")
KG_BOND = 0.97  # nm, mean Kremer-Grest bond length
REGIMES = ("in-dst", "slow", "medium", "fast")

#: The CPU-affordable chain of the small-scale polymer task: 20 beads, soft excluded
#: volume, dt = 0.002 ps (0 blow-ups in 8 flowed replicas at 0.001 and 0.002, 1 in 8 at
#: 0.004; and 0 in the whole small-scale ensemble of benchmarks/polymer_pipeline.py).
SMALL_CHAIN = {"n_particles": 20, "repulsion": "soft", "dt": 0.002}

#: Longest relaxation times (ps) measured with :func:`measure_relaxation_time`, keyed by
#: (n_particles, repulsion, soft_a, k_fene, r0_fene, zeta, kT). The builder uses an entry
#: (``relaxation_time_source = "measured"``) instead of the Rouse estimate when the chain
#: matches, so that Wi means what it says. How: 16 independent chains of SMALL_CHAIN in
#: one system, no flow, 5,000 equilibration steps, then 100,000 steps (200 ps, ~16 tau)
#: sampled every 50 steps; 1/e time of the end-to-end autocorrelation. The Rouse estimate
#: for the same chain is 12.7 ps. ``tests/test_polymer_pipeline.py`` re-measures it (slow).
MEASURED_RELAXATION_TIMES = {(20, "soft", 25.0, 30.0, 1.5, 1.0, 1.0): 12.29}
_TEST_SET_SEED = {"slow": 101, "medium": 101, "fast": 101}
_POOL_SIZE = 16


def rouse_time(n_beads: int, mean_square_bond: float = KG_BOND**2, zeta: float = 1.0, kT: float = 1.0) -> float:
    """Rouse longest relaxation time ``zeta <b^2> N^2 / (3 pi^2 kT)`` in ps."""
    return zeta * mean_square_bond * n_beads**2 / (3.0 * math.pi**2 * kT)


def fene_mean_square_bond(k: float = 30.0, r0: float = 1.5, kT: float = 1.0) -> float:
    """Exact <b^2> of a free FENE bond, by quadrature of b^2 exp(-U(b)/kT) b^2 db."""
    b = np.linspace(0.0, r0, 200_001)[1:-1]
    weight = b**2 * (1.0 - (b / r0) ** 2) ** (0.5 * k * r0**2 / kT)
    return float(np.trapezoid(weight * b**2, b) / np.trapezoid(weight, b))


def growth_walk(n: int, rng: np.random.Generator, bond: float = KG_BOND, min_distance: float = 1.0) -> np.ndarray:
    """A self-avoiding random walk of ``n`` beads grown bead by bead, centred at 0.

    Returns:
        (n, 3) positions in nm.
    """
    for _attempt in range(100):
        x = np.zeros((n, 3))
        ok = True
        for i in range(1, n):
            for _try in range(100):
                d = rng.standard_normal(3)
                cand = x[i - 1] + bond * d / np.linalg.norm(d)
                if i < 2 or np.min(np.sum((x[: i - 1] - cand) ** 2, axis=1)) >= min_distance**2:
                    x[i] = cand
                    break
            else:
                ok = False
                break
        if ok:
            return x - x.mean(axis=0)
    raise RuntimeError(f"could not grow a self-avoiding walk of {n} beads")


def _make_system(n: int, n_chains: int, k_fene: float, r0_fene: float, excluded_volume: bool,
                 repulsion: str = "wca", soft_a: float = 25.0) -> openmm.System:
    system = openmm.System()
    total = n * n_chains
    for _ in range(total):
        system.addParticle(1.0)
    bonds = openmm.CustomBondForce(FENE_ENERGY)
    bonds.addGlobalParameter("fene_k", k_fene)
    bonds.addGlobalParameter("fene_r0", r0_fene)
    for c in range(n_chains):
        for i in range(n - 1):
            bonds.addBond(c * n + i, c * n + i + 1, [])
    system.addForce(bonds)
    if excluded_volume:
        if repulsion == "soft":
            wca = openmm.CustomNonbondedForce(SOFT_ENERGY)
            wca.addGlobalParameter("soft_a", soft_a)
            wca.addGlobalParameter("soft_sig", 1.0)
            wca.setCutoffDistance(1.0)
        else:
            wca = openmm.CustomNonbondedForce(WCA_ENERGY)
            wca.addGlobalParameter("wca_eps", 1.0)
            wca.addGlobalParameter("wca_sig", 1.0)
            wca.setCutoffDistance(WCA_CUTOFF)
        wca.setNonbondedMethod(openmm.CustomNonbondedForce.CutoffNonPeriodic)
        for _ in range(total):
            wca.addParticle([])
        system.addForce(wca)
    return system


def _topology(n: int, n_chains: int):
    from openmm import app

    top = app.Topology()
    for _ in range(n_chains):
        chain = top.addChain()
        atoms = []
        for i in range(n):
            res = top.addResidue("BDH" if i == 0 else "BDT" if i == n - 1 else "BDM", chain)
            atoms.append(top.addAtom("C", None, res))
        for a, b in zip(atoms[:-1], atoms[1:]):
            top.addBond(a, b)
    return top


_POOLS: dict = {}


def _relaxed_pool(chain, n: int, seed: int, relax_args: tuple) -> list:
    """The test sets' pool of ``_POOL_SIZE`` growth walks of one chain, each relaxed
    without flow (the same relaxation noise seed for each), made once per process."""
    key = (n, seed, relax_args, openmm.XmlSerializer.serialize(chain))
    if key not in _POOLS:
        dt, kT, zeta, steps, platform = relax_args
        rng = np.random.default_rng(seed)
        out = []
        for walk in [growth_walk(n, rng) for _ in range(_POOL_SIZE)]:
            relaxer = ExtensionalFlowBrownianIntegrator(dt, n, kT=kT, zeta=zeta, strain_rate=0.0)
            relaxer.setRandomNumberSeed(seed + 1)
            out.append(_relax(chain, walk, relaxer, steps, platform))
        _POOLS.clear()  # keep one pool: the regimes share it
        _POOLS[key] = out
    return _POOLS[key]


def _relax(system, positions, integrator, steps, platform) -> np.ndarray:
    from ..md.platforms import platform_properties, select_platform

    if steps <= 0:
        return positions
    plat = select_platform(platform)  # reproducible: the same seed gives the same start
    context = openmm.Context(system, integrator, plat, platform_properties(plat, deterministic=True))
    context.setPositions(positions)
    integrator.step(steps)
    out = context.getState(getPositions=True).getPositions(asNumpy=True)._value.copy()
    del context
    return out


def build_polymer(
    *,
    n_particles: int | None = None,
    regime: str = "in-dst",
    seed: int = 0,
    weissenberg: float = 5.0,
    relaxation_time: float | None = None,
    kT: float = KT_REDUCED,
    zeta: float = 1.0,
    dt: float = 0.0002,
    k_fene: float = 30.0,
    r0_fene: float = 1.5,
    excluded_volume: bool = True,
    repulsion: str = "wca",
    soft_a: float = 25.0,
    n_chains: int = 1,
    strain: float = 6.0,
    n_frames: int = 1001,
    steps: int | None = None,
    equilibration_steps: int = 20_000,
    relax_platform: str = "auto",
) -> SimulationSpec:
    """Build the bead-spring chain in planar extensional flow.

    Arguments:
        n_particles: beads per chain (default 300).
        regime: ``in-dst`` (equilibrium starts), or test set ``slow``/``medium``/``fast``.
        seed: seeds the conformation (in-dst) and the Brownian noise.
        weissenberg: Wi = strain_rate * relaxation_time (0: no flow).
        relaxation_time: longest relaxation time in ps (default: the measured value in
            :data:`MEASURED_RELAXATION_TIMES` for that chain, else the Rouse estimate).
        kT (kJ/mol), zeta (amu/ps), dt (ps), k_fene (kJ/mol/nm²), r0_fene (nm).
        excluded_volume: repulsion between all beads (False: ideal FENE chain).
        repulsion: ``"wca"`` (Kremer-Grest) or ``"soft"`` (``0.5 soft_a (1 - r)^2`` for
            r < 1 nm, :data:`SOFT_ENERGY`), which stays stable at larger ``dt``.
        soft_a: strength of the soft repulsion in kJ/mol.
        n_chains: independent chains in one system (non-interacting without excluded volume).
        strain: Hencky strain ``strain_rate * t`` of a run; sets the horizon unless ``steps``.
        n_frames: frames per trajectory (initial included).
        steps: integration steps of a run (multiple of n_frames - 1).
        equilibration_steps: flow-free relaxation of the start conformation, done here.
        relax_platform: platform for that relaxation.
    """
    if repulsion not in REPULSIONS:
        raise ValueError(f"repulsion must be one of {list(REPULSIONS)}, got {repulsion!r}")
    soft_a = check_positive("soft_a", soft_a)
    if regime not in REGIMES:
        raise ValueError(f"regime must be one of {list(REGIMES)}, got {regime!r}")
    n = check_count("n_particles", 300 if n_particles is None else n_particles)
    if n < 2:
        raise ValueError(f"n_particles must be at least 2 for a chain, got {n}")
    n_chains = check_count("n_chains", n_chains)
    kT, zeta, dt = check_positive("kT", kT), check_positive("zeta", zeta), check_positive("dt", dt)
    k_fene, r0_fene = check_positive("k_fene", k_fene), check_positive("r0_fene", r0_fene)
    weissenberg = float(weissenberg)
    if weissenberg < 0 or not math.isfinite(weissenberg):
        raise ValueError(f"weissenberg must be >= 0, got {weissenberg}")
    n_frames = check_count("n_frames", n_frames)
    if n_frames < 2:
        raise ValueError("n_frames must be at least 2")
    tau = rouse_time(n, KG_BOND**2 if excluded_volume else fene_mean_square_bond(k_fene, r0_fene, kT), zeta, kT)
    tau_source = "rouse-estimate"
    key = (n, repulsion if excluded_volume else "none", soft_a if repulsion == "soft" else 0.0,
           k_fene, r0_fene, zeta, kT)
    if key in MEASURED_RELAXATION_TIMES:
        tau, tau_source = MEASURED_RELAXATION_TIMES[key], "measured"
    if relaxation_time is not None:
        tau, tau_source = check_positive("relaxation_time", relaxation_time), "given"
    strain_rate = weissenberg / tau
    if steps is None:
        if strain_rate == 0:
            raise ValueError("steps must be given when weissenberg is 0 (no strain sets the horizon)")
        strain = check_positive("strain", strain)
        per_frame = max(1, math.ceil(strain / (strain_rate * dt) / (n_frames - 1)))
    else:
        steps = check_count("steps", steps)
        if steps % (n_frames - 1):
            raise ValueError(f"steps ({steps}) must be a multiple of n_frames - 1 ({n_frames - 1})")
        per_frame = steps // (n_frames - 1)
    steps = per_frame * (n_frames - 1)

    system = _make_system(n, n_chains, k_fene, r0_fene, excluded_volume, repulsion, soft_a)
    rng = np.random.default_rng(seed)
    noise_seed = int(rng.integers(1, 2**30))
    if regime == "in-dst":
        start_rng, relax_seed = rng, int(rng.integers(1, 2**30))
        walks = [growth_walk(n, start_rng) for _ in range(n_chains)]
    else:
        walks = None
    offsets = [np.array([0.0, 0.0, 0.0]) + 3.0 * c * np.array([0.0, 0.0, 1.0]) * n for c in range(n_chains)]
    total = n * n_chains
    relax_args = (dt, kT, zeta, int(equilibration_steps), relax_platform)
    if walks is None:
        # one conformation per test set, shared by all replicas: only the noise differs;
        # ranked by x-span AFTER the flow-free relaxation, which is what the flow sees
        chain = _make_system(n, 1, k_fene, r0_fene, excluded_volume, repulsion, soft_a)
        relaxed = _relaxed_pool(chain, n, _TEST_SET_SEED[regime], relax_args)
        order = np.argsort([np.ptp(w[:, 0]) for w in relaxed])
        pick = {"slow": order[0], "medium": order[len(order) // 2], "fast": order[-1]}[regime]
        positions = np.concatenate([relaxed[pick] + o for o in offsets])
    else:
        positions = np.concatenate([w + o for w, o in zip(walks, offsets)])
        relaxer = ExtensionalFlowBrownianIntegrator(dt, total, kT=kT, zeta=zeta, strain_rate=0.0)
        relaxer.setRandomNumberSeed(relax_seed)
        positions = _relax(system, positions, relaxer, int(equilibration_steps), relax_platform)
    positions = positions - positions.mean(axis=0)

    def integrator_factory() -> openmm.Integrator:
        integrator = ExtensionalFlowBrownianIntegrator(dt, total, kT=kT, zeta=zeta, strain_rate=strain_rate)
        integrator.setRandomNumberSeed(noise_seed)
        return integrator

    params = dict(
        system="polymer", n_particles=n, regime=regime, seed=int(seed), weissenberg=weissenberg,
        relaxation_time=tau, relaxation_time_source=tau_source, strain_rate=strain_rate, kT=kT, zeta=zeta,
        dt=dt, k_fene=k_fene, r0_fene=r0_fene, excluded_volume=bool(excluded_volume), repulsion=repulsion, soft_a=soft_a, n_chains=n_chains,
        strain=strain_rate * steps * dt, n_frames=n_frames, steps=steps,
        equilibration_steps=int(equilibration_steps), noise_seed=noise_seed, box=None, dimensions=3,
    )
    return SimulationSpec(
        name="polymer",
        system=system,
        topology=_topology(n, n_chains),
        positions=positions,
        velocities=None,
        types=np.zeros(total, dtype=np.int64),
        species=("C",),
        report_interval=per_frame,
        n_frames=n_frames,
        params=params,
        observables=("extension",),
        integrator_factory=integrator_factory,
    )


def measure_relaxation_time(spec: SimulationSpec, steps: int, sample_every: int = 100, platform: str = "auto") -> float:
    """Longest relaxation time (ps) from the end-to-end autocorrelation, without flow.

    Runs ``steps`` flow-free Brownian steps of ``spec``'s first chain system and returns
    the lag where the normalised autocorrelation of the end-to-end vector(s) falls to 1/e
    (linear interpolation). Chains are taken as consecutive blocks of
    ``params['n_particles']`` beads.
    """
    from ..md.platforms import select_platform

    p = spec.params
    n, total = p["n_particles"], spec.n_particles
    integrator = ExtensionalFlowBrownianIntegrator(p["dt"], total, kT=p["kT"], zeta=p["zeta"], strain_rate=0.0)
    integrator.setRandomNumberSeed(p["noise_seed"])
    context = openmm.Context(spec.system, integrator, select_platform(platform))
    context.setPositions(spec.positions)
    samples = []
    for _ in range(steps // sample_every):
        integrator.step(sample_every)
        x = context.getState(getPositions=True).getPositions(asNumpy=True)._value.reshape(-1, n, 3)
        samples.append(x[:, -1] - x[:, 0])
    r = np.asarray(samples)  # (T, chains, 3)
    r = r - r.mean(axis=0)
    denom = np.mean(np.sum(r * r, axis=-1))
    acf = [1.0]
    for lag in range(1, len(r) // 2):
        acf.append(float(np.mean(np.sum(r[lag:] * r[:-lag], axis=-1)) / denom))
        if acf[-1] < math.exp(-1):
            break
    acf = np.asarray(acf)
    below = np.nonzero(acf < math.exp(-1))[0]
    if len(below) == 0:
        raise RuntimeError("run longer: the end-to-end autocorrelation did not decay to 1/e")
    j = below[0]
    frac = (acf[j - 1] - math.exp(-1)) / (acf[j - 1] - acf[j])
    return float((j - 1 + frac) * sample_every * p["dt"])
