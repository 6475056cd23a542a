"""MacroReporter: macroscopic observables of any OpenMM Simulation, one row per report.

Also holds the base class shared with :class:`~openmm_closure.reporters.DatasetReporter`
(argument validation, species from the topology, box handling, NaN checks).

Example:
    >>> from openmm_closure.reporters import MacroReporter
    >>> sim.reporters.append(MacroReporter("macro.csv", 200, observables=("R_AB", "R_BA")))  # doctest: +SKIP
    >>> sim.step(10_000)                                                                     # doctest: +SKIP
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np

from openmm_closure.observables import check_names, compute

__all__ = ["MacroReporter", "species_from_topology", "OBSERVABLE_PARAMS"]

#: keyword parameters the reporters hand to the observables (nm); anything else is a typo
OBSERVABLE_PARAMS = ("a", "b", "cutoff", "box")


def species_from_topology(topology) -> tuple[np.ndarray, list[str]]:
    """Species indices from atom names: sorted unique names -> 0, 1, ...

    Arguments:
        topology: an ``openmm.app.Topology``.

    Returns:
        (types, names): (n,) int64 species index per atom, and the sorted names.
    """
    atom_names = [a.name for a in topology.atoms()]
    names = sorted(set(atom_names))
    index = {s: i for i, s in enumerate(names)}
    return np.array([index[s] for s in atom_names], dtype=np.int64), names


def _names_for_types(types: np.ndarray, topology) -> list[str] | None:
    """Species names for explicit types when the topology's atom names agree with them
    (each species index carries one atom name, distinct per index); else None."""
    seen: dict[int, set[str]] = {}
    for t, atom in zip(types, topology.atoms()):
        seen.setdefault(int(t), set()).add(atom.name)
    k = int(types.max()) + 1 if len(types) else 0
    if any(len(seen.get(t, ())) != 1 for t in range(k)):
        return None
    names = [next(iter(seen[t])) for t in range(k)]
    return names if len(set(names)) == k else None


class _ObservableReporter:
    """Base of the reporters: validation in ``__init__``, set-up on the first report."""

    def __init__(
        self,
        file: Any,
        reportInterval: int,
        observables: Sequence[str],
        types: Sequence[int] | np.ndarray | None,
        params: dict[str, Any],
        overwrite: bool = False,
    ) -> None:
        unknown = sorted(set(params) - set(OBSERVABLE_PARAMS))
        if unknown:
            raise ValueError(f"{type(self).__name__}: unknown keyword(s) {unknown}; observable "
                             f"parameters are {list(OBSERVABLE_PARAMS)}")
        if not hasattr(file, "write") and os.path.exists(os.fspath(file)) and not overwrite:
            raise FileExistsError(f"{type(self).__name__}: {os.fspath(file)} exists; pass "
                                  "overwrite=True to replace it")
        if isinstance(reportInterval, bool) or not isinstance(reportInterval, (int, np.integer)) or reportInterval <= 0:
            raise ValueError(f"reportInterval must be a positive integer, got {reportInterval!r}")
        self._interval = int(reportInterval)
        self._observables = check_names(observables)
        if types is not None:
            t = np.asarray(types)
            if t.ndim != 1 or not np.issubdtype(t.dtype, np.integer) or (t.size and t.min() < 0):
                raise ValueError("types must be a 1D array of non-negative integer species indices")
            types = t.astype(np.int64)
        self._types = types
        self._species_names: list[str] | None = None
        self._params = dict(params)
        self._file = file
        self._ready = False
        self._closed = False

    @property
    def reportInterval(self) -> int:
        """Steps between reports."""
        return self._interval

    @property
    def observables(self) -> tuple[str, ...]:
        """Names of the observables reported."""
        return self._observables

    def describeNextReport(self, simulation) -> dict[str, Any]:
        """OpenMM 8 protocol: steps to the next report and what the State must include."""
        steps = self._interval - simulation.currentStep % self._interval
        return {"steps": steps, "periodic": False, "include": ["positions"]}

    # -- helpers -----------------------------------------------------------------------
    def _setup_common(self, simulation) -> None:
        n = simulation.topology.getNumAtoms()
        top_types, top_names = species_from_topology(simulation.topology)
        if self._types is None:
            self._types, self._species_names = top_types, top_names
        else:
            if len(self._types) != n:
                raise ValueError(f"types has {len(self._types)} entries but the topology has {n} atoms")
            self._species_names = _names_for_types(self._types, simulation.topology)
        pair = [k for k in self._observables if k in ("R_AB", "R_BA")]
        n_species = len(np.unique(self._types)) if len(self._types) else 0
        if pair and n_species < 2:
            raise ValueError(f"{type(self).__name__}: {pair} need two species (A and B) but the "
                             f"topology has {n_species}; pass types= or choose other observables")
        self._periodic = bool(simulation.system.usesPeriodicBoundaryConditions())

    def _box(self, state) -> list[float] | None:
        box = self._params.get("box")
        if box is not None:
            return list(box)
        if self._periodic:
            from openmm import unit

            v = state.getPeriodicBoxVectors(asNumpy=True).value_in_unit(unit.nanometer)
            return [float(v[0][0]), float(v[1][1]), float(v[2][2])]
        return None

    def _positions(self, simulation, state) -> np.ndarray:
        from openmm import unit

        x = np.asarray(state.getPositions(asNumpy=True).value_in_unit(unit.nanometer), dtype=np.float64)
        if not np.all(np.isfinite(x)):
            raise ValueError(
                f"{type(self).__name__}: non-finite coordinates at step {simulation.currentStep}"
            )
        return x

    def _values(self, x: np.ndarray, box) -> dict[str, float]:
        params = dict(self._params)
        params["box"] = box
        out = compute(self._observables, x, self._types, **params)
        return {k: float(v) for k, v in out.items()}

    def _begin_report(self, simulation, state) -> tuple[np.ndarray, dict[str, float]]:
        """The start of every ``report``: refuse after ``close``, set up on the first report,
        then the checked positions (n, 3) nm and the observables of ``state``."""
        if self._closed:
            raise ValueError(f"{type(self).__name__}: report() after close()")
        if not self._ready:
            self._setup(simulation)
        x = self._positions(simulation, state)
        return x, (self._values(x, self._box(state)) if self._observables else {})

    def close(self) -> None:  # pragma: no cover - overridden
        self._closed = True

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass


class MacroReporter(_ObservableReporter):
    """Report macroscopic observables (step, time, observables) every ``reportInterval`` steps.

    Works on any ``openmm.app.Simulation``. Positions are taken unwrapped; for a periodic
    system the minimum image convention uses the box of each reported State (or an
    explicit ``box=`` parameter); a non-periodic system is treated as walled.

    Arguments:
        file: output path; ``.csv`` (text, header ``step,time_ps,<names>``) or
            ``.h5``/``.hdf5`` (a table ``/macro`` with the same columns and ``units``
            attributes). A writable text file object is accepted as CSV.
        reportInterval: steps between reports (positive int).
        observables: names from :data:`openmm_closure.observables.OBSERVABLES`.
        types: (n,) int species index per atom (0 = A, 1 = B); default: sorted unique
            topology atom names -> index.
        overwrite: replace an existing ``file`` (default: FileExistsError).
        **params: observable parameters (``a``, ``b``, ``cutoff``, ``box`` in nm); any
            other keyword is a ValueError.

    Raises:
        ValueError: bad interval, unknown observable or keyword (in ``__init__``); types
            whose length differs from the topology, R_AB/R_BA on one species, or
            non-finite coordinates (naming the step), at a report.
        FileExistsError: ``file`` exists and ``overwrite`` is False.
    """

    def __init__(
        self,
        file: str | os.PathLike | Any,
        reportInterval: int,
        observables: Sequence[str] = ("R_AB", "R_BA"),
        types: Sequence[int] | np.ndarray | None = None,
        overwrite: bool = False,
        **params: Any,
    ) -> None:
        super().__init__(file, reportInterval, observables, types, params, overwrite)
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
        self._setup_common(simulation)
        if self._format == "csv":
            if hasattr(self._file, "write"):
                self._out, self._own = self._file, False
            else:
                self._out, self._own = open(self._file, "w"), True
            self._out.write(",".join(("step", "time_ps") + self._observables) + "\n")
        else:
            import tables

            from openmm_closure.data import OBSERVABLE_UNITS

            cols = {"step": tables.Int64Col(pos=0), "time_ps": tables.Float64Col(pos=1)}
            for k, name in enumerate(self._observables):
                cols[name] = tables.Float64Col(pos=k + 2)
            self._out = tables.open_file(os.fspath(self._file), "w")
            self._own = True
            tab = self._out.create_table("/", "macro", cols)
            tab.attrs["units"] = ["steps", "picoseconds"] + [
                OBSERVABLE_UNITS.get(n, "unknown") for n in self._observables
            ]
        self._ready = True

    def report(self, simulation, state) -> None:
        """Compute the observables of ``state`` and append one row."""
        from openmm import unit

        x, values = self._begin_report(simulation, state)
        step = int(simulation.currentStep)
        t = float(state.getTime().value_in_unit(unit.picosecond))
        if self._format == "csv":
            row = [str(step), repr(t)] + [repr(values[k]) for k in self._observables]
            self._out.write(",".join(row) + "\n")
            self._out.flush()
        else:
            tab = self._out.root.macro
            tab.append([(step, t) + tuple(values[k] for k in self._observables)])
            tab.flush()

    def close(self) -> None:
        """Close the output file (idempotent; a file object passed in is left open)."""
        if self._closed:
            return
        self._closed = True
        if self._out is not None and self._own:
            self._out.close()
