"""SPEC §3A: interacting particles in 2D under a first-order gradient flow.

``dx_i/dt = (1/N) sum_j F(r_ij) (x_i - x_j) / r_ij`` with ``F = -P'`` and
``P(r) = (1/a) log cosh(a (1 - r)) + b (1 - r)``: the gradient flow of the energy
``(1/N) sum_{i<j} P(r_ij)``, written as a CustomNonbondedForce (all pairs) and moved by
:class:`~openmm_closure.md.integrators.GradientFlowIntegrator` (forward Euler).
"""

from __future__ import annotations

import numpy as np
import openmm

from ..md.integrators import GradientFlowIntegrator
from .spec import SimulationSpec, check_count, check_positive, single_atom_topology

__all__ = ["build_particles2d", "PAIR_ENERGY", "initial_positions", "numpy_gradient_flow", "REGIMES"]

# Same expression as forcefields/interacting_particles_2d.xml (a test checks they agree).
PAIR_ENERGY = (
    "ip_inv_n*((abs(u) + log(1 + exp(-2*abs(u))) - log(2))/ip_a + ip_b*(1 - r)); u = ip_a*(1 - r)"
)

# regime -> (mixture components K, default N)
REGIMES = {"in-dst": (2, 300), "diff-init": (3, 300), "diff-N": (2, 400)}


def initial_positions(n: int, k: int, rng: np.random.Generator, variance: float = 0.01) -> np.ndarray:
    """Gaussian mixture: K equal-weight components, means uniform in the unit disk.

    Returns:
        (n, 3) positions in nm with z = 0.
    """
    radius = np.sqrt(rng.uniform(size=k))
    angle = rng.uniform(0.0, 2.0 * np.pi, size=k)
    means = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)
    component = rng.integers(k, size=n)
    xy = means[component] + np.sqrt(variance) * rng.standard_normal((n, 2))
    return np.concatenate([xy, np.zeros((n, 1))], axis=1)


def build_particles2d(
    *,
    n_particles: int | None = None,
    regime: str = "in-dst",
    seed: int = 0,
    a: float = 4.0,
    b: float = 0.1,
    dt: float = 0.02,
    steps: int = 300,
    report_interval: int = 1,
    components: int | None = None,
    variance: float = 0.01,
) -> SimulationSpec:
    """Build the 2D interacting-particle gradient flow.

    Arguments:
        n_particles: N (default 300; 400 for ``diff-N``).
        regime: ``in-dst`` (K = 2), ``diff-init`` (K = 3) or ``diff-N`` (K = 2, N = 400).
        seed: seeds the initial Gaussian-mixture state.
        a, b: pair-potential parameters.
        dt: Euler step (ps); ``steps``: steps per trajectory; ``report_interval``: steps per frame.
        components: override K; ``variance``: per-component covariance (times I), nm².
    """
    if regime not in REGIMES:
        raise ValueError(f"regime must be one of {sorted(REGIMES)}, got {regime!r}")
    k_default, n_default = REGIMES[regime]
    n = check_count("n_particles", n_default if n_particles is None else n_particles)
    if n < 2:
        raise ValueError(f"n_particles must be at least 2 for a pair potential, got {n}")
    k = check_count("components", k_default if components is None else components)
    steps = check_count("steps", steps)
    report_interval = check_count("report_interval", report_interval)
    if steps % report_interval:
        raise ValueError(f"steps ({steps}) must be a multiple of report_interval ({report_interval})")
    a, b, dt = check_positive("a", a), float(b), check_positive("dt", dt)
    variance = check_positive("variance", variance)

    rng = np.random.default_rng(seed)
    positions = initial_positions(n, k, rng, variance)

    system = openmm.System()
    for _ in range(n):
        system.addParticle(1.0)
    force = openmm.CustomNonbondedForce(PAIR_ENERGY)
    force.addGlobalParameter("ip_a", a)
    force.addGlobalParameter("ip_b", b)
    force.addGlobalParameter("ip_inv_n", 1.0 / n)
    force.setNonbondedMethod(openmm.CustomNonbondedForce.NoCutoff)
    for _ in range(n):
        force.addParticle([])
    system.addForce(force)

    params = dict(
        system="particles2d", n_particles=n, regime=regime, seed=int(seed), a=a, b=b, dt=dt,
        steps=steps, report_interval=report_interval, components=k, variance=variance, dimensions=2,
    )
    return SimulationSpec(
        name="particles2d",
        system=system,
        topology=single_atom_topology(["P"] * n),
        positions=positions,
        velocities=None,
        types=np.zeros(n, dtype=np.int64),
        species=("P",),
        report_interval=report_interval,
        n_frames=steps // report_interval + 1,
        params=params,
        observables=("energy",),
        integrator_factory=lambda: GradientFlowIntegrator(dt, n),
    )


def numpy_gradient_flow(x0: np.ndarray, a: float, b: float, dt: float, steps: int) -> np.ndarray:
    """The same gradient flow in plain vectorised numpy (all pairs, forward Euler).

    ``dx_i/dt = (1/N) sum_{j != i} F(r_ij) (x_i - x_j) / r_ij``, ``F = tanh(a (1 - r)) + b``:
    an implementation independent of OpenMM, for tests and benchmarks.

    Arguments:
        x0: (N, 2) or (N, 3) initial positions in nm (z ignored).

    Returns:
        (steps + 1, N, 2) positions in nm, the initial frame included.
    """
    x = np.asarray(x0, dtype=np.float64)[:, :2].copy()
    n = len(x)
    out = np.empty((steps + 1, n, 2))
    out[0] = x
    for step in range(1, steps + 1):
        d = x[:, None, :] - x[None, :, :]
        r = np.sqrt(np.einsum("ijk,ijk->ij", d, d))
        np.fill_diagonal(r, 1.0)
        w = (np.tanh(a * (1.0 - r)) + b) / r
        np.fill_diagonal(w, 0.0)
        x = x + (dt / n) * np.einsum("ij,ijk->ik", w, d)
        out[step] = x
    return out
