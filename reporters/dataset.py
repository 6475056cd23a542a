"""DatasetReporter: an mdtraj-readable HDF5 trajectory plus species and observables.

The file is one replica of the dataset format of :mod:`openmm_closure.data`:
``mdtraj.load(file)`` reads coordinates (nm), time (ps) and a topology whose atom names
are the species names; ``/species`` and ``/observables/<name>`` hold the extra arrays
with ``units`` attributes.

Example:
    >>> from openmm_closure.reporters import DatasetReporter
    >>> rep = DatasetReporter("traj.h5", 200, observables=("R_AB", "R_BA"), cutoff=2.5)  # doctest: +SKIP
    >>> sim.reporters.append(rep); sim.step(10_000); rep.close()                         # doctest: +SKIP
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np

from .base import ObservableReporter

__all__ = ["DatasetReporter"]


class DatasetReporter(ObservableReporter):
    """Write positions, times, boxes, species and observables every ``reportInterval`` steps.

    Positions are written as the Simulation holds them (not wrapped into the box). A
    periodic system's box is written at every frame (under a barostat it changes): as
    mdtraj's unit cell and exactly as ``/box`` (F, 3, 3) nm. ``openmm-closure ingest``
    (:func:`openmm_closure.data.ingest`) turns such files into a dataset.

    Arguments:
        file: output path (``.h5``).
        reportInterval: steps between reports (positive int).
        types: (n,) int species index per atom (of the subset, when one is given) (0 = A,
            1 = B, ...); default: sorted unique atom names -> index (and those names label
            the species).
        observables: names of :data:`openmm_closure.md.observables.OBSERVABLES` (built-in or
            registered) to store per frame (may be empty).
        overwrite: replace an existing ``file`` (default: FileExistsError).
        append: continue an existing ``file`` after a restart (same species and
            observables; a missing file is started), as OpenMM's reporters do.
        atomSubset: indices of the atoms to write (default: all), e.g. the solute of a
            solvated system.
        **params: observable parameters (``a``, ``b``, ``cutoff``, ``box`` in nm, and
            those of registered observables), stored in the file; any other keyword is a
            ValueError.

    Raises:
        ValueError: bad interval, unknown observable, bad ``atomSubset`` (in ``__init__``);
            types whose length differs from the atoms, subset indices out of range, a file
            to append to that differs or is incomplete, non-finite coordinates or
            observables (naming the step), at a report.
    """

    def __init__(
        self,
        file: str | os.PathLike,
        reportInterval: int,
        types: Sequence[int] | np.ndarray | None = None,
        observables: Sequence[str] = (),
        overwrite: bool = False,
        append: bool = False,
        atomSubset: Sequence[int] | np.ndarray | None = None,
        **params: Any,
    ) -> None:
        super().__init__(os.fspath(file), reportInterval, observables, types, params, overwrite, append, atomSubset)
        self._writer = None

    @property
    def n_frames(self) -> int:
        """Frames in the file so far (with ``append``, those written before too)."""
        return 0 if self._writer is None else self._writer.n_frames

    def _setup(self, simulation, state) -> None:
        from openmm_closure.data import ReplicaWriter
        from openmm_closure.md.observables import resolved_params

        params = resolved_params(self._observables, self._params)
        self._writer = ReplicaWriter(self._file, self._types, self._species_names, self._observables,
                                     append=self._append, params=params)
        self._ready = True

    def report(self, simulation, state) -> None:
        """Append the positions, time, box and observables of ``state`` as one frame."""
        if self._closed:
            raise ValueError("DatasetReporter: report() after close()")
        if not self._ready:
            # validate before creating the file so bad input overwrites nothing
            self._setup_common(simulation)
            self._positions(simulation, state)
            self._setup(simulation, state)
        from openmm import unit

        x = self._positions(simulation, state)
        box = self._box(state)
        values = self._values(x, box, simulation.currentStep) if self._observables else {}
        t = state.getTime().value_in_unit(unit.picosecond)
        self._writer.append(x, t, values, box=box)
        self._writer.flush()

    def close(self) -> None:
        """Close the file (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if self._writer is not None:
            self._writer.close()
