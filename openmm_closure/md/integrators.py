"""CustomIntegrator subclasses for the three microscopic systems.

Every integrator is built completely in ``__init__`` (openmmtools style), keeps its
settings as global variables (so they survive ``XmlSerializer``), and confines motion
to the plane with a per-DOF ``mask`` where a system is 2D.

Units are OpenMM's: nm, ps, kJ/mol, amu.
"""

from __future__ import annotations

import math
from typing import Sequence

import openmm

__all__ = ["GradientFlowIntegrator", "WalledLangevinIntegrator", "ExtensionalFlowBrownianIntegrator"]


def _vec3_list(values: Sequence[float], n: int):
    return [openmm.Vec3(*values)] * n


def _check_positive(name: str, value: float) -> float:
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive number, got {value}")
    return value


class GradientFlowIntegrator(openmm.CustomIntegrator):
    """Forward-Euler first-order gradient flow ``dx/dt = F(x)`` (no velocities, no mass).

    Each step moves ``x <- x + dt * mask * f`` with ``f = -dE/dx``. With the
    ``interacting_particles_2d`` energy (pair potential P(r) scaled by 1/N) this is
    exactly SPEC §3A's particle system.

    Arguments:
        dt: step in ps (reduced time units).
        n_particles: number of particles (sizes the per-DOF mask).
        mask: per-dimension factor; (1, 1, 0) keeps the system in the xy plane.
    """

    def __init__(self, dt: float, n_particles: int, mask: Sequence[float] = (1.0, 1.0, 0.0)):
        super().__init__(_check_positive("dt", dt))
        self.addPerDofVariable("mask", 0.0)
        self.addUpdateContextState()
        self.addComputePerDof("x", "x + dt*mask*f")
        self.setPerDofVariableByName("mask", _vec3_list(mask, n_particles))


class WalledLangevinIntegrator(openmm.CustomIntegrator):
    """BAOAB Langevin dynamics in a box with reflecting walls; NVE when friction is 0.

    The splitting is V-R-O-R-V (OpenMM's LangevinMiddle): half kick, half drift, exact
    Ornstein-Uhlenbeck velocity update, half drift, half kick. With ``friction = 0`` the O
    step is left out and the scheme is velocity Verlet.

    Walls: after each drift, a coordinate that crossed ``lo`` or ``hi`` is mirrored back
    (``x -> 2 hi - x``) and its velocity component flips sign, an elastic reflection. The
    bounds live in per-DOF variables ``lo`` and ``hi``; the z bounds are effectively
    infinite for 2D systems, whose z is frozen by ``mask``.

    Arguments:
        dt: time step in ps.
        n_particles: number of particles.
        lo, hi: (3,) lower and upper wall coordinates in nm.
        kT: thermal energy in kJ/mol.
        friction: collision rate in 1/ps (0 for NVE).
        mask: per-dimension factor on kicks, noise and drift; (1, 1, 0) for 2D.
    """

    def __init__(
        self,
        dt: float,
        n_particles: int,
        lo: Sequence[float],
        hi: Sequence[float],
        kT: float = 1.0,
        friction: float = 1.0,
        mask: Sequence[float] = (1.0, 1.0, 0.0),
    ):
        dt = _check_positive("dt", dt)
        friction = float(friction)
        if friction < 0 or not math.isfinite(friction):
            raise ValueError(f"friction must be >= 0, got {friction}")
        super().__init__(dt)
        self.addGlobalVariable("kT", _check_positive("kT", kT))
        self.addGlobalVariable("friction", friction)
        self.addGlobalVariable("vscale", math.exp(-friction * dt))
        self.addGlobalVariable("nscale", math.sqrt(1.0 - math.exp(-2.0 * friction * dt)))
        for name in ("mask", "lo", "hi", "out"):
            self.addPerDofVariable(name, 0.0)
        self.addUpdateContextState()
        self.addComputePerDof("v", "v + 0.5*dt*mask*f/m")
        self._drift()
        if friction > 0:
            self.addComputePerDof("v", "vscale*v + nscale*mask*sqrt(kT/m)*gaussian")
        self._drift()
        self.addComputePerDof("v", "v + 0.5*dt*mask*f/m")
        self.setPerDofVariableByName("mask", _vec3_list(mask, n_particles))
        self.setPerDofVariableByName("lo", _vec3_list(lo, n_particles))
        self.setPerDofVariableByName("hi", _vec3_list(hi, n_particles))

    def _drift(self) -> None:
        self.addComputePerDof("x", "x + 0.5*dt*mask*v")
        # strict inequalities: an atom sitting exactly on a wall is not reflected
        self.addComputePerDof("out", "1 - step(x - lo)")
        self.addComputePerDof("v", "select(out, -v, v)")
        self.addComputePerDof("x", "select(out, 2*lo - x, x)")
        self.addComputePerDof("out", "1 - step(hi - x)")
        self.addComputePerDof("v", "select(out, -v, v)")
        self.addComputePerDof("x", "select(out, 2*hi - x, x)")


class ExtensionalFlowBrownianIntegrator(openmm.CustomIntegrator):
    """Overdamped Langevin (Brownian) dynamics in planar extensional flow.

    ``dx = [u(x) + f / zeta] dt + sqrt(2 kT dt / zeta) dW`` (Euler-Maruyama) with the flow
    ``u = strain_rate * (x - x_c, -(y - y_c), 0)`` about the centre of mass ``c`` of all
    particles. For a linear flow, measuring positions from the centre of mass leaves the
    internal dynamics unchanged and keeps the chain at the stagnation point, so
    coordinates never grow exponentially.

    Arguments:
        dt: time step in ps.
        n_particles: number of beads.
        kT: thermal energy in kJ/mol.
        zeta: bead friction coefficient in amu/ps.
        strain_rate: extension rate in 1/ps (0: no flow).
    """

    def __init__(self, dt: float, n_particles: int, kT: float = 1.0, zeta: float = 1.0, strain_rate: float = 0.0):
        super().__init__(_check_positive("dt", dt))
        strain_rate = float(strain_rate)
        if not math.isfinite(strain_rate):
            raise ValueError(f"strain_rate must be finite, got {strain_rate}")
        self.addGlobalVariable("kT", _check_positive("kT", kT))
        self.addGlobalVariable("zeta", _check_positive("zeta", zeta))
        self.addGlobalVariable("strain_rate", strain_rate)
        self.addGlobalVariable("inv_n", 1.0 / n_particles)
        for name in ("cx", "cy", "cz"):
            self.addGlobalVariable(name, 0.0)
        for name in ("flow", "ex", "ey", "ez"):
            self.addPerDofVariable(name, 0.0)
        self.addUpdateContextState()
        self.addComputeSum("cx", "x*ex")
        self.addComputeSum("cy", "x*ey")
        self.addComputeSum("cz", "x*ez")
        self.addComputePerDof(
            "x",
            "x + dt*(strain_rate*flow*(x - inv_n*(cx*ex + cy*ey + cz*ez)) + f/zeta)"
            " + sqrt(2*kT*dt/zeta)*gaussian",
        )
        self.setPerDofVariableByName("flow", _vec3_list((1.0, -1.0, 0.0), n_particles))
        self.setPerDofVariableByName("ex", _vec3_list((1.0, 0.0, 0.0), n_particles))
        self.setPerDofVariableByName("ey", _vec3_list((0.0, 1.0, 0.0), n_particles))
        self.setPerDofVariableByName("ez", _vec3_list((0.0, 0.0, 1.0), n_particles))
