"""The object every system builder returns, and helpers shared by the builders."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import openmm
from openmm import app, unit

__all__ = ["SimulationSpec", "single_atom_topology", "check_count", "check_positive", "KT_REDUCED"]

# Reduced units: kT = 1 kJ/mol, i.e. T = 1 / k_B = 120.27 K.
KT_REDUCED = 1.0


@dataclass
class SimulationSpec:
    """A ready-to-run microscopic system.

    Attributes:
        name: ``"particles2d"``, ``"lj-mixing"`` or ``"polymer"``.
        system: the ``openmm.System``.
        topology: ``openmm.app.Topology``; atom names are species names.
        positions: (n, 3) initial positions in nm.
        velocities: (n, 3) initial velocities in nm/ps, or None.
        types: (n,) int64 species index per particle (index into ``species``).
        species: species names, e.g. ("A", "B").
        integrator: a fresh integrator for this system (one Context may own it).
        report_interval: integration steps between stored frames.
        n_frames: frames per trajectory, the initial one included.
        params: every parameter needed to rebuild the spec (JSON-serialisable).
        observables: default macroscopic observables of this system.
    """

    name: str
    system: openmm.System
    topology: app.Topology
    positions: np.ndarray
    velocities: np.ndarray | None
    types: np.ndarray
    species: tuple[str, ...]
    report_interval: int
    n_frames: int
    params: dict[str, Any]
    observables: tuple[str, ...]
    integrator_factory: Callable[[], openmm.Integrator] = field(repr=False)
    integrator: openmm.Integrator = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.integrator = self.integrator_factory()

    @property
    def n_particles(self) -> int:
        return int(self.positions.shape[0])

    @property
    def n_steps(self) -> int:
        """Integration steps from the first to the last frame."""
        return self.report_interval * (self.n_frames - 1)

    @property
    def dt_frame(self) -> float:
        """Time between frames in ps."""
        return self.report_interval * self.integrator.getStepSize().value_in_unit(unit.picosecond)

    def new_integrator(self) -> openmm.Integrator:
        """A new integrator with the same settings (each Context needs its own)."""
        return self.integrator_factory()

    def make_simulation(self, platform: str = "auto", deterministic: bool = False) -> app.Simulation:
        """An ``openmm.app.Simulation`` at the initial state, on ``platform``
        (``deterministic``: bitwise-reproducible forces where the platform can, see
        :func:`openmm_closure.md.platforms.platform_properties`)."""
        from ..md.platforms import platform_properties, select_platform

        plat = select_platform(platform)
        sim = app.Simulation(self.topology, self.system, self.new_integrator(), plat,
                             platform_properties(plat, deterministic))
        sim.context.setPositions(self.positions)
        if self.velocities is not None:
            sim.context.setVelocities(self.velocities)
        return sim


def single_atom_topology(names: Sequence[str], elements: dict[str, str] | None = None) -> app.Topology:
    """A topology with one atom per residue; atom and residue names are ``names``.

    ``elements`` maps a species name to an element symbol. Elements are labels only
    (masses come from the System); OpenMM's ForceField needs them to tell apart
    one-atom residue templates.
    """
    top = app.Topology()
    chain = top.addChain()
    for name in names:
        res = top.addResidue(name, chain)
        symbol = (elements or {}).get(name)
        top.addAtom(name, app.Element.getBySymbol(symbol) if symbol else None, res)
    return top


def check_count(name: str, value: Any) -> int:
    """A positive integer, or ValueError naming the parameter."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def check_positive(name: str, value: Any) -> float:
    """A positive finite float, or ValueError naming the parameter."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a positive number, got {value!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return value
