"""Reading datasets lazily: :class:`Dataset` (on disk), :class:`ArrayDataset` (in memory),
:func:`read_replica`, :func:`load` and :func:`fingerprint`."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .manifest import _jsonable, complete_manifest
from .validation import check_dataset
from .replica import Replica, _frame_read, content_sha256, read_replica
from .writer import save

__all__ = ["Replica", "Dataset", "ArrayDataset", "read_replica", "load", "fingerprint", "replica_hashes", "content_sha256"]


def _read_shape(path: Path) -> tuple[int, int]:
    import tables

    with tables.open_file(str(path), "r") as h:
        f, n, _ = h.root.coordinates.shape
    return int(f), int(n)


class _LazyPositions:
    """(replica, frame, particle, 3) positions read on demand, one file at a time.

    ``pos[i]`` -> (F, n, 3); ``pos[[i, j]]`` or ``pos[a:b]`` -> (k, F, n, 3) when all
    replicas have the same n, else a list of (F, n_i, 3); ``pos[i, frames, ...]`` reads
    only those frames.
    """

    def __init__(self, owner: "_DatasetBase") -> None:
        self._owner = owner

    def __len__(self) -> int:
        return len(self._owner)

    @property
    def shape(self) -> tuple[int, ...]:
        o = self._owner
        ns = o.n_particles
        if len(set(ns)) > 1:
            raise ValueError("replicas have different particle numbers: no single shape")
        return (len(o), o.n_frames, ns[0] if ns else 0, 3)

    @property
    def dtype(self):
        return np.dtype(np.float32)

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def __array__(self, dtype=None, copy=None):
        out = np.stack([self[i] for i in range(len(self))])
        return out if dtype is None else out.astype(dtype)

    def __getitem__(self, key):
        rest: tuple = ()
        if isinstance(key, tuple):
            key, rest = key[0], key[1:]
        frames = rest[0] if rest else slice(None)
        tail = rest[1:]
        o = self._owner
        if isinstance(key, (int, np.integer)):
            i = int(key) + (len(o) if key < 0 else 0)
            if not 0 <= i < len(o):
                raise IndexError(f"replica {key} out of range for {len(o)} replicas")
            arr = o._positions(i, frames)
            if not tail:
                return arr
            return arr[tail] if arr.ndim == 2 else arr[(slice(None),) + tail]
        if isinstance(key, slice):
            ids = list(range(len(o)))[key]
        else:
            ids = np.arange(len(o))[np.asarray(key)].tolist()
        parts = [self[(i,) + rest] for i in ids]
        if parts and len({p.shape for p in parts}) == 1:
            return np.stack(parts)
        if not parts:
            return np.empty((0,), dtype=np.float32)
        return parts


class _DatasetBase:
    """Shared interface of :class:`Dataset` and :class:`ArrayDataset`."""

    manifest: dict

    def __len__(self) -> int:  # pragma: no cover - overridden
        raise NotImplementedError

    def replica(self, i: int) -> Replica:  # pragma: no cover - overridden
        raise NotImplementedError

    def _positions(self, i: int, frames: Any) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    @property
    def n_particles(self) -> list[int]:
        """Particle number of each replica."""
        raise NotImplementedError  # pragma: no cover

    @property
    def n_frames(self) -> int:
        """Frames per replica (frame 0 is the initial state)."""
        raise NotImplementedError  # pragma: no cover

    @property
    def positions(self) -> _LazyPositions:
        """(replica, frame, particle, 3) float32 coordinates in nm, read lazily."""
        return _LazyPositions(self)

    @property
    def system(self) -> str:
        return str(self.manifest.get("system", "custom"))

    def save(self, directory: str | os.PathLike) -> Path:
        """Write this dataset in the on-disk format (see :func:`save`)."""
        return save(self, directory)

    def __iter__(self):
        for i in range(len(self)):
            yield self.replica(i)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(system={self.system!r}, replicas={len(self)}, "
            f"frames={self.n_frames}, n={sorted(set(self.n_particles))})"
        )


class ArrayDataset(_DatasetBase):
    """A dataset held in memory, with the same interface as a loaded :class:`Dataset`.

    Arguments:
        positions: (R, F, n, 3) array, or a list of R arrays (F, n_i, 3); nm.
        types: (n,) int array shared by all replicas, (R, n) array, or a list of R
            (n_i,) arrays; species indices.
        times: (F,) frame times in ps (shared), or (R, F).
        observables: name -> (R, F) array (or list of (F,) arrays).
        manifest: manifest dict; missing keys are filled in ("system": "custom",
            "regime": "in-dst", "params": {}, dt_frame from times, n_frames,
            n_particles, seeds 0..R-1, versions, format_version).
        species_names: optional species index -> name (default "A", "B", ...).

    Example:
        >>> ds = ArrayDataset(np.zeros((3, 4, 5, 3)), np.zeros(5, int), np.arange(4.0), {})
        >>> ds.positions[[0, 2]].shape
        (2, 4, 5, 3)
    """

    def __init__(
        self,
        positions: np.ndarray | Sequence[np.ndarray],
        types: np.ndarray | Sequence[np.ndarray],
        times: np.ndarray,
        observables: Mapping[str, np.ndarray | Sequence[np.ndarray]] | None = None,
        manifest: Mapping[str, Any] | None = None,
        species_names: Sequence[str] | None = None,
    ) -> None:
        pos = [np.asarray(p, dtype=np.float32) for p in positions]
        if not pos:
            raise ValueError("an ArrayDataset needs at least one replica")
        r = len(pos)
        f = pos[0].shape[0]
        for k, p in enumerate(pos):
            if p.ndim != 3 or p.shape[2] != 3:
                raise ValueError(f"replica {k}: positions must be (F, n, 3), got {p.shape}")
            if p.shape[0] != f:
                raise ValueError(f"replica {k} has {p.shape[0]} frames, replica 0 has {f}")
        if isinstance(types, np.ndarray) and types.ndim == 1:
            tl = [types] * r
        else:
            tl = list(types)
            if len(tl) == 1 and r > 1:
                tl = tl * r
        if len(tl) != r:
            raise ValueError(f"{len(tl)} types arrays for {r} replicas")
        tl = [np.asarray(t, dtype=np.int64).reshape(-1) for t in tl]
        for k, (p, t) in enumerate(zip(pos, tl)):
            if t.shape[0] != p.shape[1]:
                raise ValueError(f"replica {k}: {t.shape[0]} types for {p.shape[1]} particles")
        tm = np.asarray(times, dtype=np.float64)
        tm = np.broadcast_to(tm, (r, f)) if tm.ndim == 1 else tm
        if tm.shape != (r, f):
            raise ValueError(f"times of shape {np.shape(times)} do not match {r} replicas x {f} frames")
        obs = {}
        for name, v in (observables or {}).items():
            a = np.stack([np.asarray(x, dtype=np.float64) for x in v])
            if a.shape != (r, f):
                raise ValueError(f"observable {name!r} has shape {a.shape}, expected {(r, f)}")
            obs[name] = a
        self._pos, self._types, self._times, self._obs = pos, tl, np.array(tm), obs
        self.species_names = list(species_names) if species_names is not None else None
        self.manifest = complete_manifest(manifest, r, f, [p.shape[1] for p in pos], tm[0], obs)
        if self.species_names is None and "species" in self.manifest:
            self.species_names = list(self.manifest["species"])

    def __len__(self) -> int:
        return len(self._pos)

    @property
    def n_particles(self) -> list[int]:
        return [p.shape[1] for p in self._pos]

    @property
    def n_frames(self) -> int:
        return self._pos[0].shape[0]

    def _positions(self, i: int, frames: Any) -> np.ndarray:
        return self._pos[i][frames]

    def replica(self, i: int) -> Replica:
        """Replica ``i`` (positions (F, n, 3) float32 nm, types, times ps, observables)."""
        return Replica(self._pos[i], self._types[i], self._times[i],
                       {k: v[i] for k, v in self._obs.items()}, self.species_names)

    @property
    def types(self) -> np.ndarray | list[np.ndarray]:
        """(R, n) int64 species indices, or a list of (n_i,) arrays when n differs."""
        if len(set(self.n_particles)) == 1:
            return np.stack(self._types)
        return list(self._types)

    @property
    def times(self) -> np.ndarray:
        """(F,) frame times of replica 0 in ps (all replicas share the frame schedule)."""
        return self._times[0]

    @property
    def observables(self) -> dict[str, np.ndarray]:
        """name -> (R, F) float64 per-frame observables."""
        return dict(self._obs)


class Dataset(_DatasetBase):
    """A dataset directory on disk, read lazily (see :func:`load`).

    Positions are read replica by replica when indexed; types, times and observables
    (small) are read on first access and cached. At most one file is open at a time.
    """

    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory = Path(directory)
        self.manifest, self._files, self._ns, self._nf = check_dataset(self.directory)
        self._small: tuple | None = None

    def __len__(self) -> int:
        return len(self._files)

    @property
    def files(self) -> list[Path]:
        """The replica files, in order."""
        return list(self._files)

    @property
    def n_particles(self) -> list[int]:
        return list(self._ns)

    @property
    def n_frames(self) -> int:
        return self._nf

    def _positions(self, i: int, frames: Any) -> np.ndarray:
        import tables

        with tables.open_file(str(self._files[i]), "r") as h:
            return np.asarray(_frame_read(h.root.coordinates, frames), dtype=np.float32)

    def replica(self, i: int) -> Replica:
        """Replica ``i`` read fully (positions (F, n, 3) float32 nm, types, times ps, observables)."""
        i = int(i) + (len(self) if i < 0 else 0)
        return read_replica(self._files[i])

    def _load_small(self) -> tuple:
        if self._small is None:
            import tables

            types, times, obs = [], [], {}
            for p in self._files:
                with tables.open_file(str(p), "r") as h:
                    if "species" in h.root:
                        types.append(np.asarray(h.root.species[:], dtype=np.int64))
                    else:
                        types.append(np.zeros(h.root.coordinates.shape[1], dtype=np.int64))
                    times.append(np.asarray(h.root.time[:], dtype=np.float64))
                    if "observables" in h.root:
                        for node in h.root.observables:
                            obs.setdefault(node.name, []).append(np.asarray(node[:], dtype=np.float64))
            obs = {k: np.stack(v) for k, v in obs.items() if len(v) == len(self._files)}
            self._small = (types, np.stack(times), obs)
        return self._small

    @property
    def types(self) -> np.ndarray | list[np.ndarray]:
        """(R, n) int64 species indices, or a list of (n_i,) arrays when n differs."""
        types = self._load_small()[0]
        return np.stack(types) if len({len(t) for t in types}) == 1 else list(types)

    @property
    def times(self) -> np.ndarray:
        """(F,) frame times of replica 0 in ps (all replicas share the frame schedule)."""
        return self._load_small()[1][0]

    @property
    def observables(self) -> dict[str, np.ndarray]:
        """name -> (R, F) float64 per-frame observables."""
        return dict(self._load_small()[2])


def replica_hashes(dataset: "_DatasetBase | str | os.PathLike") -> list[str]:
    """The content hash (:func:`content_sha256`) of every replica, in replica order.

    On disk each replica file is read and its hash checked against the one the manifest
    records (``replica_sha256``, written by ``simulate`` and :func:`save`): a replica edited
    after it was written is a ValueError naming the file.

    Raises:
        ValueError: a replica differs from the hash its manifest records.
    """
    ds = load(dataset) if isinstance(dataset, (str, os.PathLike)) else dataset
    files = list(getattr(ds, "files", []))
    if not files:
        return [content_sha256(ds.replica(i)) for i in range(len(ds))]
    out = [content_sha256(read_replica(p)) for p in files]
    recorded = ds.manifest.get("replica_sha256")
    if isinstance(recorded, list) and len(recorded) == len(out):
        for p, want, got in zip(files, recorded, out):
            if want != got:
                raise ValueError(f"{p} does not match its hash in {Path(p).parent / 'manifest.json'} "
                                 "(key replica_sha256): the replica was edited after it was written; "
                                 "simulate it again")
    return out


def fingerprint(dataset: "_DatasetBase | str | os.PathLike") -> str:
    """A path-independent fingerprint of a dataset's content: sha256 of its manifest
    (canonical JSON), its shape and the content hash of every replica
    (:func:`replica_hashes`), so a replica edited in place (same size, other coordinates)
    changes it.

    ``train --resume`` compares it with the one stored in the checkpoint.

    Raises:
        ValueError: a replica file differs from the hash its manifest records.
    """
    import hashlib

    ds = load(dataset) if isinstance(dataset, (str, os.PathLike)) else dataset
    h = hashlib.sha256()
    manifest = {k: v for k, v in dict(ds.manifest).items() if k != "replica_sha256"}
    h.update(json.dumps(_jsonable(manifest), sort_keys=True).encode())
    h.update(json.dumps([len(ds), int(ds.n_frames), list(map(int, ds.n_particles))]).encode())
    for digest in replica_hashes(ds):
        h.update(f"{digest};".encode())
    return h.hexdigest()


def load(directory: str | os.PathLike) -> Dataset:
    """Open a dataset directory written by ``openmm-closure simulate`` or :func:`save`.

    Arguments:
        directory: a directory with ``manifest.json`` and ``replica_#####.h5`` files.

    Returns:
        A :class:`Dataset`: ``len(ds)`` replicas, ``ds.manifest``, ``ds.replica(i)``,
        lazily indexed ``ds.positions`` (replica, frame, particle, 3) in nm,
        ``ds.types``, ``ds.times`` (F,) ps, ``ds.observables`` name -> (R, F).
    """
    return Dataset(directory)
