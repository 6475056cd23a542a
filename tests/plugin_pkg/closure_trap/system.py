"""The plugin's system ``trap2d``: n particles in a 2D harmonic trap, overdamped Langevin
(Brownian) dynamics written as an OpenMM ``CustomIntegrator`` (z frozen), observed through
the package's ``energy`` and the plugin's own ``trap_radius``. Imports no torch."""


import numpy as np
import openmm

from openmm_closure.catalog import SystemFacts, SystemRecord
from openmm_closure.systems.spec import SimulationSpec, single_atom_topology


def _brownian_2d(dt: float, n: int, seed: int, kT: float = 1.0, gamma: float = 1.0) -> openmm.CustomIntegrator:
    integ = openmm.CustomIntegrator(dt)
    integ.addGlobalVariable("kT", kT)
    integ.addGlobalVariable("gamma", gamma)
    integ.addPerDofVariable("mask", 0.0)
    integ.addComputePerDof("x", "x + mask*(dt*f/gamma + sqrt(2*kT*dt/gamma)*gaussian)")
    integ.setPerDofVariableByName("mask", [openmm.Vec3(1.0, 1.0, 0.0)] * n)
    integ.setRandomNumberSeed(int(seed))
    return integ


def build_trap(*, n_particles=None, regime="in-dst", seed=0, k=2.0, dt=0.01, steps=40, report_interval=4):
    """n particles (default 8) in the trap 0.5 k (x² + y²), kJ/mol with x, y in nm."""
    if regime != "in-dst":
        raise ValueError(f"regime must be 'in-dst', got {regime!r}")
    n = 8 if n_particles is None else int(n_particles)
    rng = np.random.default_rng(seed)
    positions = np.zeros((n, 3))
    positions[:, :2] = rng.normal(0.0, 1.0, size=(n, 2))
    system = openmm.System()
    force = openmm.CustomExternalForce("0.5*trap_k*(x*x + y*y)")
    force.addGlobalParameter("trap_k", float(k))
    for i in range(n):
        system.addParticle(1.0)
        force.addParticle(i, [])
    system.addForce(force)
    noise_seed = int(rng.integers(1, 2**30))
    params = dict(system="trap2d", n_particles=n, regime=regime, seed=int(seed), k=float(k), dt=float(dt),
                  steps=int(steps), report_interval=int(report_interval), dimensions=2)
    return SimulationSpec(
        name="trap2d", system=system, topology=single_atom_topology(["P"] * n), positions=positions,
        velocities=None, types=np.zeros(n, dtype=np.int64), species=("P",), report_interval=int(report_interval),
        n_frames=int(steps) // int(report_interval) + 1, params=params, observables=("energy", "trap_radius"),
        integrator_factory=lambda: _brownian_2d(float(dt), n, noise_seed))


TRAP = SystemRecord(
    SystemFacts("trap2d", ("energy", "trap_radius"), in_features=2, latent_dim=2, dynamics="damped", center=False,
                metric="mre", metric_label="energy MRE"),
    builder=build_trap, regimes=("in-dst",), batched=None,
    test_params={"n_particles": 6, "steps": 20, "report_interval": 4})
