"""OpenMM reporters of openmm-closure, usable on any ``openmm.app.Simulation``.

- :class:`MacroReporter`: macroscopic observables, one row per report (CSV or HDF5).
- :class:`DatasetReporter`: an mdtraj-readable HDF5 trajectory with species and observables.
- :class:`ClosureReporter`: z̄ and the closure variables ẑ from an exported encoder.
"""

from .closure import ClosureReporter
from .dataset import DatasetReporter
from .macro import MacroReporter, species_from_topology

__all__ = ["MacroReporter", "DatasetReporter", "ClosureReporter", "species_from_topology"]
