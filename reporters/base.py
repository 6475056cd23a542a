"""The base of the reporters: argument validation, species from the topology, box handling,
NaN checks, and the set-up on the first report.

:class:`ObservableReporter` is public so that a reporter of your own (one more file in
``reporters/``, or your package) gets the same checks as
:class:`~openmm_closure.reporters.MacroReporter` and
:class:`~openmm_closure.reporters.DatasetReporter`: subclass it and write the rows.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np

from openmm_closure.md.observables import box_matrix, check_names, compute, param_names

__all__ = ["check_atom_subset", "species_from_topology", "ObservableReporter"]


def check_atom_subset(atomSubset: Sequence[int] | np.ndarray | None, n: int | None = None) -> np.ndarray | None:
    """Validate an ``atomSubset`` (OpenMM's name): distinct non-negative atom indices.

    Arguments:
        atomSubset: indices of the atoms to use, in the order given, or None (all atoms).
        n: the number of atoms of the System/topology, when known (indices must be < n).

    Returns:
        (k,) int64 indices, or None.

    Raises:
        ValueError: one line: not integers, empty, negative, repeated or out of range.
    """
    if atomSubset is None:
        return None
    a = np.asarray(list(atomSubset) if not isinstance(atomSubset, np.ndarray) else atomSubset)
    if a.ndim != 1 or a.size == 0 or not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"atomSubset must be a non-empty list of atom indices, got {atomSubset!r}"[:200])
    a = a.astype(np.int64)
    if a.min() < 0:
        raise ValueError(f"atomSubset holds the negative index {int(a.min())}; atom indices start at 0")
    u, counts = np.unique(a, return_counts=True)
    if np.any(counts > 1):
        raise ValueError(f"atomSubset repeats the atom index {int(u[counts > 1][0])}; list each atom once")
    if n is not None and a.max() >= n:
        raise ValueError(f"atomSubset index {int(a.max())} is out of range for {n} atoms")
    return a


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


def _species_of_atoms(atoms: Sequence[Any]) -> tuple[np.ndarray, list[str]]:
    """(types, names) of a list of atoms: sorted unique atom names -> 0, 1, ..."""
    atom_names = [a.name for a in atoms]
    names = sorted(set(atom_names))
    index = {s: i for i, s in enumerate(names)}
    return np.array([index[s] for s in atom_names], dtype=np.int64), names


def _names_for_types(types: np.ndarray, atoms: Any) -> list[str] | None:
    """Species names for explicit types when the atoms' names agree with them (each species
    index carries one atom name, distinct per index); else None. ``atoms``: a list of atoms
    or an ``openmm.app.Topology``."""
    if hasattr(atoms, "atoms"):
        atoms = list(atoms.atoms())
    seen: dict[int, set[str]] = {}
    for t, atom in zip(types, atoms):
        seen.setdefault(int(t), set()).add(atom.name)
    k = int(types.max()) + 1 if len(types) else 0
    if any(len(seen.get(t, ())) != 1 for t in range(k)):
        return None
    names = [next(iter(seen[t])) for t in range(k)]
    return names if len(set(names)) == k else None


class ObservableReporter:
    """Base of the reporters: validation in ``__init__``, set-up on the first report."""

    def __init__(
        self,
        file: Any,
        reportInterval: int,
        observables: Sequence[str],
        types: Sequence[int] | np.ndarray | None,
        params: dict[str, Any],
        overwrite: bool = False,
        append: bool = False,
        atomSubset: Sequence[int] | np.ndarray | None = None,
    ) -> None:
        self._observables = check_names(observables)
        known = param_names(self._observables)
        unknown = sorted(set(params) - set(known))
        if unknown:
            raise ValueError(f"{type(self).__name__}: unknown keyword(s) {unknown}; observable "
                             f"parameters are {list(known)}")
        if append and overwrite:
            raise ValueError(f"{type(self).__name__}: append=True continues the file, overwrite=True "
                             "replaces it; pass one of them")
        if not hasattr(file, "write") and os.path.exists(os.fspath(file)) and not (overwrite or append):
            raise FileExistsError(f"{type(self).__name__}: {os.fspath(file)} exists; pass "
                                  "overwrite=True to replace it or append=True to continue it")
        if isinstance(reportInterval, bool) or not isinstance(reportInterval, (int, np.integer)) or reportInterval <= 0:
            raise ValueError(f"reportInterval must be a positive integer, got {reportInterval!r}")
        self._interval = int(reportInterval)
        self._subset = check_atom_subset(atomSubset)
        # append to a file that is there (a new file is started when it is not, as OpenMM's do)
        self._append = bool(append) and not hasattr(file, "write") and os.path.exists(os.fspath(file))
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

    @property
    def atomSubset(self) -> np.ndarray | None:
        """(k,) indices of the atoms reported, or None for all."""
        return None if self._subset is None else self._subset.copy()

    def describeNextReport(self, simulation) -> dict[str, Any]:
        """OpenMM 8 protocol: steps to the next report and what the State must include."""
        steps = self._interval - simulation.currentStep % self._interval
        return {"steps": steps, "periodic": False, "include": ["positions"]}

    # -- helpers -----------------------------------------------------------------------
    def _atoms(self, simulation) -> list:
        """The topology's atoms this reporter sees (the subset's, in its order)."""
        atoms = list(simulation.topology.atoms())
        if self._subset is None:
            return atoms
        check_atom_subset(self._subset, len(atoms))
        if simulation.system.getNumParticles() != len(atoms):
            raise ValueError(f"the topology has {len(atoms)} atoms, the System "
                             f"{simulation.system.getNumParticles()} particles")
        return [atoms[i] for i in self._subset]

    def _setup_common(self, simulation) -> None:
        atoms = self._atoms(simulation)
        n = len(atoms)
        top_types, top_names = _species_of_atoms(atoms)
        if self._types is None:
            self._types, self._species_names = top_types, top_names
        else:
            if len(self._types) != n:
                raise ValueError(f"types has {len(self._types)} entries but the "
                                 f"{'atom subset' if self._subset is not None else 'topology'} has {n} atoms")
            self._species_names = _names_for_types(self._types, atoms)
        pair = [k for k in self._observables if k in ("R_AB", "R_BA")]
        n_species = len(np.unique(self._types)) if len(self._types) else 0
        if pair and n_species < 2:
            raise ValueError(f"{type(self).__name__}: {pair} need two species (A and B) but the "
                             f"topology has {n_species}; pass types= or choose other observables")
        self._periodic = bool(simulation.system.usesPeriodicBoundaryConditions())

    def _box(self, state) -> np.ndarray | None:
        """This State's box vectors (3, 3) nm (rows; an explicit ``box=`` wins), or None."""
        box = self._params.get("box")
        if box is not None:
            return box_matrix(box)
        if self._periodic:
            from openmm import unit

            v = state.getPeriodicBoxVectors(asNumpy=True).value_in_unit(unit.nanometer)
            return np.asarray(v, dtype=np.float64).reshape(3, 3)
        return None

    def _positions(self, simulation, state) -> np.ndarray:
        from openmm import unit

        x = np.asarray(state.getPositions(asNumpy=True).value_in_unit(unit.nanometer), dtype=np.float64)
        if self._subset is not None:
            x = x[self._subset]
        if not np.all(np.isfinite(x)):
            raise ValueError(
                f"{type(self).__name__}: non-finite coordinates at step {simulation.currentStep}"
            )
        return x

    def _values(self, x: np.ndarray, box, step: int | None = None) -> dict[str, float]:
        params = dict(self._params)
        params["box"] = box
        try:
            out = compute(self._observables, x, self._types, **params)
        except ValueError as exc:
            raise ValueError(f"{type(self).__name__}: at step {step}: {exc}") from None
        return {k: float(v) for k, v in out.items()}

    def _open_rows(self, columns: Sequence[str], table: str, units: Sequence[str] | None = None,
                   attrs: dict[str, Any] | None = None) -> None:
        """Open the CSV or HDF5 table of a row reporter: a new one with its header, or (with
        ``append``) the existing one after checking that its columns are these."""
        columns = list(columns)
        if self._format == "csv":
            if hasattr(self._file, "write"):
                self._out, self._own = self._file, False
            elif self._append:
                with open(self._file) as fh:
                    header = fh.readline().strip().split(",")
                if header != columns:
                    raise ValueError(f"cannot append to {os.fspath(self._file)}: its columns {header} "
                                     f"are not {columns}; write a new file")
                self._out, self._own = open(self._file, "a"), True
                return
            else:
                self._out, self._own = open(self._file, "w"), True
            self._out.write(",".join(columns) + "\n")
            return
        import tables

        if self._append:
            try:
                out = tables.open_file(os.fspath(self._file), "a")
            except Exception as exc:
                raise ValueError(f"cannot append to {os.fspath(self._file)}: not a readable HDF5 file "
                                 f"({str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__})") from None
            node = getattr(out.root, table, None)
            if node is None or list(node.colnames) != columns:
                out.close()
                raise ValueError(f"cannot append to {os.fspath(self._file)}: it has no table /{table} with "
                                 f"the columns {columns}; write a new file")
            self._out, self._own = out, True
            return
        cols = {}
        for k, name in enumerate(columns):
            cols[name] = tables.Int64Col(pos=k) if name == "step" else tables.Float64Col(pos=k)
        self._out = tables.open_file(os.fspath(self._file), "w")
        self._own = True
        tab = self._out.create_table("/", table, cols)
        if units is not None:
            tab.attrs["units"] = list(units)
        for k, v in (attrs or {}).items():
            tab.attrs[k] = v

    def _write_row(self, table: str, step: int, row: Sequence[float]) -> None:
        """Append one row (step, then floats) and flush."""
        if self._format == "csv":
            self._out.write(",".join([str(int(step))] + [repr(float(v)) for v in row]) + "\n")
            self._out.flush()
        else:
            tab = getattr(self._out.root, table)
            tab.append([(int(step), *[float(v) for v in row])])
            tab.flush()

    def _begin_report(self, simulation, state) -> tuple[np.ndarray, dict[str, float]]:
        """The start of every ``report``: refuse after ``close``, set up on the first report,
        then the checked positions (n, 3) nm and the observables of ``state``."""
        if self._closed:
            raise ValueError(f"{type(self).__name__}: report() after close()")
        if not self._ready:
            self._setup(simulation)
        x = self._positions(simulation, state)
        return x, (self._values(x, self._box(state), simulation.currentStep) if self._observables else {})

    def close(self) -> None:  # pragma: no cover - overridden
        self._closed = True

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass
