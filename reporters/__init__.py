"""OpenMM reporters of openmm-closure, usable on any ``openmm.app.Simulation``.

- :class:`ObservableReporter`: the shared base, for reporters of your own.
- :class:`MacroReporter`: macroscopic observables, one row per report (CSV or HDF5).
- :class:`DatasetReporter`: an mdtraj-readable HDF5 trajectory with species and observables.
- :class:`ClosureReporter`: z̄ and the closure variables ẑ from an exported encoder.
"""

from .base import ObservableReporter, species_from_topology
from .closure import ClosureReporter
from .dataset import DatasetReporter
from .macro import MacroReporter

__all__ = ["ObservableReporter", "MacroReporter", "DatasetReporter", "ClosureReporter", "species_from_topology"]
