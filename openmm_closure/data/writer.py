"""Writing datasets: one replica file at a time (:class:`ReplicaWriter`), or a whole dataset (:func:`save`)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .format import replica_filename, species_names_for
from .manifest import _jsonable, write_manifest

__all__ = ["ReplicaWriter", "save"]


class ReplicaWriter:
    """Append frames of one replica to an mdtraj-readable HDF5 file.

    Used by :class:`openmm_closure.reporters.DatasetReporter` and by :func:`save`. A
    periodic replica stores every frame's box twice: as mdtraj's unit cell (lengths and
    angles, float32) and exactly as ``/box`` (F, 3, 3) float64 box vectors in nm.

    Arguments:
        path: output file (``.h5``); overwritten unless ``append``.
        types: (n,) int species index per particle.
        species_names: names of species indices (default "A", "B", ...); they become
            the topology's atom names.
        observables: names of the per-frame observables that :meth:`append` receives.
        box: the box of every frame when :meth:`append` is given none: (3,) lengths or
            (3, 3) vectors in nm; None for a non-periodic system (unless frames bring
            their own box).
        append: continue an existing file written by this class (its species and
            observables must be these); frames are added after its last one.
        params: the observables' parameters, stored as JSON with them (``ingest`` reads them).

    Raises:
        ValueError: ``append`` on a file with other species or observables, or an
            incomplete one (arrays of different lengths: a run killed mid-write).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        types: np.ndarray,
        species_names: Sequence[str] | None = None,
        observables: Sequence[str] = (),
        box: Sequence[float] | np.ndarray | None = None,
        append: bool = False,
        params: Mapping[str, Any] | None = None,
    ) -> None:
        import mdtraj
        from mdtraj.formats import HDF5TrajectoryFile

        from ..md.observables import box_matrix, units_of

        self.path = str(path)
        self.types = np.asarray(types, dtype=np.int64).reshape(-1)
        self.names = species_names_for(self.types, species_names)
        self.observables = tuple(observables)
        self.box = None if box is None else box_matrix(box).reshape(3, 3)
        if append:
            from .replica import replica_lengths

            counts = replica_lengths(self.path)  # one line on a file that is not a finished replica
            self._file = HDF5TrajectoryFile(self.path, mode="a")
            h = self._file._handle
            old_types = np.asarray(h.root.species[:], dtype=np.int64) if "species" in h.root else None
            old_obs = [n.name for n in h.root.observables] if "observables" in h.root else []
            problem = None
            if old_types is None or not np.array_equal(old_types, self.types):
                problem = "other species (types)"
            elif sorted(old_obs) != sorted(self.observables):
                problem = f"the observables {sorted(old_obs)}, not {sorted(self.observables)}"
            if problem:
                self._file.close()
                raise ValueError(f"cannot append to {self.path}: it holds {problem}; write a new file")
            self.n_frames = counts["frames"]
            return
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
        group._v_attrs["params"] = json.dumps(_jsonable({k: v for k, v in (params or {}).items() if k != "box"}))
        import tables

        for name in self.observables:
            node = h.create_earray(group, name, atom=tables.Float64Atom(), shape=(0,))
            node.attrs["units"] = units_of(name)
        self.n_frames = 0

    def append(
        self,
        positions: np.ndarray,
        times: np.ndarray | float,
        observables: Mapping[str, np.ndarray | float] | None = None,
        box: np.ndarray | None = None,
    ) -> None:
        """Append frames.

        Arguments:
            positions: (F, n, 3) or (n, 3) coordinates in nm.
            times: (F,) or scalar times in ps.
            observables: name -> (F,) or scalar values, one entry for each observable
                named at construction.
            box: (F, 3, 3) or (3, 3) box vectors in nm (rows), or (3,) lengths; default:
                the constructor's box (or none).
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
        h = self._file._handle
        if box is None and self.box is None and "box" in h.root:
            raise ValueError(f"{self.path} stores a box per frame: pass box=")
        if box is not None or self.box is not None:
            from mdtraj.utils import box_vectors_to_lengths_and_angles

            from ..md.observables import box_matrix

            b = box_matrix(self.box if box is None else box)
            b = np.array(np.broadcast_to(b, (f, 3, 3)), dtype=np.float64)
            la = box_vectors_to_lengths_and_angles(b[:, 0], b[:, 1], b[:, 2])
            kwargs["cell_lengths"] = np.stack(la[:3], -1).astype(np.float32)
            kwargs["cell_angles"] = np.stack(la[3:], -1).astype(np.float32)
        obs = dict(observables or {})
        missing = set(self.observables) - set(obs)
        if missing:
            raise ValueError(f"missing observables {sorted(missing)}")
        values = {}
        for name in self.observables:
            v = np.asarray(obs[name], dtype=np.float64).reshape(-1)
            if v.shape != (f,):
                raise ValueError(f"observable {name!r}: {v.size} values for {f} frames")
            values[name] = v
        if kwargs:
            if "box" not in h.root:
                if self.n_frames:
                    raise ValueError(f"{self.path} has frames without a box; write a new file")
                import tables

                node = h.create_earray("/", "box", atom=tables.Float64Atom(), shape=(0, 3, 3))
                node.attrs["units"] = "nanometers"
            h.root.box.append(b)
        self._file.write(pos, time=t, **kwargs)
        for name in self.observables:
            h.get_node("/observables", name).append(values[name])
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
        boxes = getattr(r, "box", None)
        with ReplicaWriter(tmp, r.types, names, tuple(r.observables), None if boxes is not None else box,
                           params=params) as w:
            w.append(r.positions, r.times, r.observables, box=boxes)
        os.replace(tmp, final)
    from .replica import content_sha256, read_replica

    # the content of every replica as written, checked by fingerprint() (train, train --resume)
    manifest["replica_sha256"] = [content_sha256(read_replica(d / replica_filename(i))) for i in range(len(dataset))]
    write_manifest(d, manifest)
    return d
