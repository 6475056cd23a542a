"""MacroReporter: macroscopic observables of any OpenMM Simulation, one row per report.

The shared base is :mod:`.base`.

Example:
    >>> from openmm_closure.reporters import MacroReporter
    >>> sim.reporters.append(MacroReporter("macro.csv", 200, observables=("R_AB", "R_BA")))  # doctest: +SKIP
    >>> sim.step(10_000)                                                                     # doctest: +SKIP
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np

from openmm_closure.md.observables import OBSERVABLE_PARAMS
from .base import ObservableReporter, check_atom_subset, species_from_topology

__all__ = ["MacroReporter", "species_from_topology", "OBSERVABLE_PARAMS", "check_atom_subset"]


class MacroReporter(ObservableReporter):
    """Report macroscopic observables (step, time, observables) every ``reportInterval`` steps.

    Works on any ``openmm.app.Simulation``. Positions are taken unwrapped; for a periodic
    system the minimum image convention uses the box of each reported State (or an
    explicit ``box=`` parameter); a non-periodic system is treated as walled.

    Arguments:
        file: output path; ``.csv`` (text, header ``step,time_ps,<names>``) or
            ``.h5``/``.hdf5`` (a table ``/macro`` with the same columns and ``units``
            attributes). A writable text file object is accepted as CSV.
        reportInterval: steps between reports (positive int).
        observables: names of :data:`openmm_closure.md.observables.OBSERVABLES` (built-in or
            registered with :func:`openmm_closure.md.observables.register`).
        types: (n,) int species index per atom (of the subset, when one is given) (0 = A,
            1 = B); default: sorted unique atom names -> index.
        overwrite: replace an existing ``file`` (default: FileExistsError).
        append: continue an existing ``file`` after a restart (its columns must match;
            a missing file is started), as OpenMM's reporters do.
        atomSubset: indices of the atoms the observables see (default: all).
        **params: observable parameters (``a``, ``b``, ``cutoff``, ``box`` in nm, and
            those of registered observables); any other keyword is a ValueError.

    Raises:
        ValueError: bad interval, unknown observable or keyword, a bad ``atomSubset`` (in
            ``__init__``); types whose length differs from the atoms, R_AB/R_BA on one
            species, subset indices out of range, a file to append to with other columns,
            or non-finite coordinates or observables (naming the step), at a report.
        FileExistsError: ``file`` exists and neither ``overwrite`` nor ``append`` is set.
    """

    def __init__(
        self,
        file: str | os.PathLike | Any,
        reportInterval: int,
        observables: Sequence[str] = ("R_AB", "R_BA"),
        types: Sequence[int] | np.ndarray | None = None,
        overwrite: bool = False,
        append: bool = False,
        atomSubset: Sequence[int] | np.ndarray | None = None,
        **params: Any,
    ) -> None:
        super().__init__(file, reportInterval, observables, types, params, overwrite, append, atomSubset)
        if not self._observables:
            raise ValueError("MacroReporter needs at least one observable")
        if hasattr(file, "write"):
            self._format = "csv"
        else:
            ext = os.path.splitext(os.fspath(file))[1].lower()
            if ext == ".csv":
                self._format = "csv"
            elif ext in (".h5", ".hdf5"):
                self._format = "h5"
            else:
                raise ValueError(f"MacroReporter: file must end in .csv, .h5 or .hdf5, got {file!r}")
        self._out = None
        self._own = False

    def _setup(self, simulation) -> None:
        from openmm_closure.md.observables import units_of

        self._setup_common(simulation)
        self._open_rows(("step", "time_ps") + self._observables, "macro",
                        ["steps", "picoseconds"] + [units_of(n) for n in self._observables])
        self._ready = True

    def report(self, simulation, state) -> None:
        """Compute the observables of ``state`` and append one row."""
        from openmm import unit

        x, values = self._begin_report(simulation, state)
        t = float(state.getTime().value_in_unit(unit.picosecond))
        self._write_row("macro", simulation.currentStep, [t] + [values[k] for k in self._observables])

    def close(self) -> None:
        """Close the output file (idempotent; a file object passed in is left open)."""
        if self._closed:
            return
        self._closed = True
        if self._out is not None and self._own:
            self._out.close()
