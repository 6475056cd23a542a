"""Writing datasets: one replica file at a time (:class:`ReplicaWriter`), or a whole dataset (:func:`save`)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .format import OBSERVABLE_UNITS, replica_filename, species_names_for
from .manifest import write_manifest

__all__ = ["ReplicaWriter", "save"]


class ReplicaWriter:
    """Append frames of one replica to an mdtraj-readable HDF5 file.

    Used by :class:`openmm_closure.reporters.DatasetReporter` and by :func:`save`.

    Arguments:
        path: output file (``.h5``); overwritten.
        types: (n,) int species index per particle.
        species_names: names of species indices (default "A", "B", ...); they become
            the topology's atom names.
        observables: names of the per-frame observables that :meth:`append` receives.
        box: (3,) periodic box lengths in nm, or None for a non-periodic system.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        types: np.ndarray,
        species_names: Sequence[str] | None = None,
        observables: Sequence[str] = (),
        box: Sequence[float] | None = None,
    ) -> None:
        import mdtraj
        from mdtraj.formats import HDF5TrajectoryFile

        self.path = str(path)
        self.types = np.asarray(types, dtype=np.int64).reshape(-1)
        self.names = species_names_for(self.types, species_names)
        self.observables = tuple(observables)
        self.box = None if box is None else np.asarray(box, dtype=np.float32).reshape(3)
        top = mdtraj.Topology()
        chain = top.add_chain()
        for t in self.types:
            res = top.add_residue(self.names[t], chain)
            top.add_atom(self.names[t], None, res)
        self._file = HDF5TrajectoryFile(self.path, mode="w")
        self._file.topology = top
        h = self._file._handle
        arr = h.create_array("/", "species", obj=self.types)
        arr.attrs["units"] = "dimensionless"
        arr.attrs["names"] = json.dumps(self.names)
        group = h.create_group("/", "observables")
        import tables

        for name in self.observables:
            node = h.create_earray(group, name, atom=tables.Float64Atom(), shape=(0,))
            node.attrs["units"] = OBSERVABLE_UNITS.get(name, "unknown")
        self.n_frames = 0

    def append(
        self,
        positions: np.ndarray,
        times: np.ndarray | float,
        observables: Mapping[str, np.ndarray | float] | None = None,
    ) -> None:
        """Append frames.

        Arguments:
            positions: (F, n, 3) or (n, 3) coordinates in nm.
            times: (F,) or scalar times in ps.
            observables: name -> (F,) or scalar values, one entry for each observable
                named at construction.
        """
        pos = np.asarray(positions, dtype=np.float32)
        if pos.ndim == 2:
            pos = pos[None]
        if pos.ndim != 3 or pos.shape[1:] != (len(self.types), 3):
            raise ValueError(f"positions of shape {pos.shape} do not match {len(self.types)} particles")
        f = pos.shape[0]
        t = np.asarray(times, dtype=np.float32).reshape(-1)
        if t.shape != (f,):
            raise ValueError(f"{t.size} times for {f} frames")
        kwargs = {}
        if self.box is not None:
            kwargs["cell_lengths"] = np.broadcast_to(self.box, (f, 3)).copy()
            kwargs["cell_angles"] = np.full((f, 3), 90.0, dtype=np.float32)
        obs = dict(observables or {})
        missing = set(self.observables) - set(obs)
        if missing:
            raise ValueError(f"missing observables {sorted(missing)}")
        self._file.write(pos, time=t, **kwargs)
        h = self._file._handle
        for name in self.observables:
            v = np.asarray(obs[name], dtype=np.float64).reshape(-1)
            if v.shape != (f,):
                raise ValueError(f"observable {name!r}: {v.size} values for {f} frames")
            h.get_node("/observables", name).append(v)
        self.n_frames += f

    def flush(self) -> None:
        """Flush buffered data to disk."""
        self._file.flush()

    def close(self) -> None:
        """Close the file (idempotent)."""
        self._file.close()

    def __enter__(self) -> "ReplicaWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def save(dataset: Any, directory: str | os.PathLike) -> Path:
    """Write any dataset (in memory or loaded) in the on-disk format.

    Each replica file is written under a temporary name and renamed when complete.

    Arguments:
        dataset: an :class:`ArrayDataset` or :class:`Dataset`.
        directory: output directory (created; existing replica files are overwritten).

    Returns:
        The directory as a Path.
    """
    from ..fileio import unique_temp_name

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    manifest = dict(dataset.manifest)
    params = manifest.get("params") or {}
    box = params.get("box")
    for i in range(len(dataset)):
        r = dataset.replica(i)
        final = d / replica_filename(i)
        tmp = unique_temp_name(final, ".part.h5")
        names = r.species_names or manifest.get("species")
        with ReplicaWriter(tmp, r.types, names, tuple(r.observables), box) as w:
            w.append(r.positions, r.times, r.observables)
        os.replace(tmp, final)
    from .replica import content_sha256, read_replica

    # the content of every replica as written, checked by fingerprint() (train, train --resume)
    manifest["replica_sha256"] = [content_sha256(read_replica(d / replica_filename(i))) for i in range(len(dataset))]
    write_manifest(d, manifest)
    return d
