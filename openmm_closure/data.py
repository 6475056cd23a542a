"""Datasets of simulated replicas: the on-disk format, a writer, and lazy loading.

A dataset is a directory holding ``manifest.json`` and one HDF5 file per replica,
``replica_00000.h5``, ``replica_00001.h5``, ... Each replica file is an mdtraj HDF5
trajectory (``mdtraj.load(path)`` reads it: coordinates in nm, time in ps, a topology
whose atom names are the species names) with extra nodes:

- ``/species``: (n,) int64 species index of each particle (0 = first species name in
  sorted order), attribute ``names`` (JSON list of species names);
- ``/observables/<name>``: (F,) float64 per-frame observable, attribute ``units``.

This module imports only numpy at module level (tables and mdtraj inside functions) and
never imports torch or openmm.

Example:
    >>> import numpy as np
    >>> from openmm_closure.data import ArrayDataset, load
    >>> pos = np.random.rand(2, 5, 10, 3).astype(np.float32)     # (R, F, n, 3) nm
    >>> ds = ArrayDataset(pos, np.zeros(10, dtype=np.int64), np.arange(5) * 0.02,
    ...                   {"energy": np.zeros((2, 5))}, {"system": "particles2d"})
    >>> ds.save("example_ds")                                     # doctest: +SKIP
    >>> load("example_ds").positions[1].shape                     # doctest: +SKIP
    (5, 10, 3)
"""

from __future__ import annotations

import json
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

__all__ = [
    "FORMAT_VERSION",
    "MANIFEST",
    "OBSERVABLE_UNITS",
    "Replica",
    "Dataset",
    "ArrayDataset",
    "ReplicaWriter",
    "load",
    "save",
    "read_replica",
    "replica_filename",
    "partial_filename",
    "read_manifest",
    "write_manifest",
    "software_versions",
    "species_names_for",
    "fingerprint",
    "check_dataset",
    "read_types",
    "Configuration",
    "read_configuration",
]

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
_REPLICA_RE = re.compile(r"^replica_(\d{5})\.h5$")

#: units attribute stored with each observable array
OBSERVABLE_UNITS: dict[str, str] = {
    "energy": "kilojoules_per_mole",
    "R_AB": "dimensionless",
    "R_BA": "dimensionless",
    "extension": "nanometers",
    "end_to_end_x": "nanometers",
    "end_to_end_y": "nanometers",
    "end_to_end_z": "nanometers",
}


def replica_filename(i: int) -> str:
    """The file name of replica ``i`` inside a dataset directory (``replica_00007.h5``)."""
    return f"replica_{int(i):05d}.h5"


def partial_filename(i: int) -> str:
    """The temporary name replica ``i`` is written under before it is renamed."""
    return f"replica_{int(i):05d}.part.h5"


def species_names_for(types: np.ndarray, names: Sequence[str] | None = None) -> list[str]:
    """Species names for integer species indices.

    Arguments:
        types: (n,) int species indices.
        names: explicit names (index -> name); default "A", "B", "C", ...

    Returns:
        A list of names, one per species index up to ``max(types)``.
    """
    k = int(np.max(types)) + 1 if len(types) else 1
    if names is not None:
        names = [str(s) for s in names]
        if len(names) < k:
            raise ValueError(f"{len(names)} species names given but types go up to {k - 1}")
        return names
    return [chr(ord("A") + i) for i in range(k)]


def software_versions() -> dict[str, str]:
    """Versions of the software stack, read from package metadata (imports nothing heavy).

    Returns:
        dict package name -> version string (packages that are not installed are omitted).
    """
    from importlib import metadata

    out = {}
    for dist in ("openmm-closure", "openmm", "numpy", "scipy", "mdtraj", "tables", "torch"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    import platform

    out["python"] = platform.python_version()
    return out


# --------------------------------------------------------------------------------------
# writing


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


def write_manifest(directory: str | os.PathLike, manifest: Mapping[str, Any]) -> None:
    """Write ``manifest.json`` atomically (per-process temporary file, then rename)."""
    from .fileio import atomic_write_bytes

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    text = json.dumps(_jsonable(dict(manifest)), indent=2, sort_keys=True) + "\n"
    atomic_write_bytes(d / MANIFEST, text.encode())


def read_manifest(directory: str | os.PathLike) -> dict:
    """Read ``manifest.json`` of a dataset directory (FileNotFoundError if absent)."""
    p = Path(directory) / MANIFEST
    if not p.is_file():
        raise FileNotFoundError(f"no {MANIFEST} in {directory}")
    try:
        with open(p) as fh:
            m = json.load(fh)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{p} is not valid JSON ({exc})") from exc
    if not isinstance(m, dict):
        raise ValueError(f"{p} does not hold a JSON object")
    return m


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, np.generic):
        return x.item()
    return x


def save(dataset: "Dataset | ArrayDataset", directory: str | os.PathLike) -> Path:
    """Write any dataset (in memory or loaded) in the on-disk format.

    Each replica file is written under a temporary name and renamed when complete.

    Arguments:
        dataset: an :class:`ArrayDataset` or :class:`Dataset`.
        directory: output directory (created; existing replica files are overwritten).

    Returns:
        The directory as a Path.
    """
    from .fileio import unique_temp_name

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
    write_manifest(d, manifest)
    return d


# --------------------------------------------------------------------------------------
# reading


@dataclass
class Replica:
    """One replica's trajectory, fully in memory.

    Attributes:
        positions: (F, n, 3) float32 coordinates in nm.
        types: (n,) int64 species index per particle.
        times: (F,) float64 frame times in ps.
        observables: name -> (F,) float64 per-frame values.
        species_names: species index -> name, or None.
    """

    positions: np.ndarray
    types: np.ndarray
    times: np.ndarray
    observables: dict[str, np.ndarray] = field(default_factory=dict)
    species_names: list[str] | None = None

    @property
    def n_particles(self) -> int:
        return int(self.positions.shape[1])

    @property
    def n_frames(self) -> int:
        return int(self.positions.shape[0])


def _frame_read(node, index) -> np.ndarray:
    """Read ``node[index]`` along the first axis without loading more than needed."""
    if isinstance(index, (int, np.integer, slice)):
        return node[index]
    idx = np.asarray(index)
    if idx.dtype == bool:
        idx = np.nonzero(idx)[0]
    n = node.shape[0]
    idx = np.where(idx < 0, idx + n, idx).astype(np.int64)
    if idx.size == 0:
        return np.empty((0,) + tuple(node.shape[1:]), dtype=node.dtype)
    if idx.min() < 0 or idx.max() >= n:
        raise IndexError(f"frame index out of range for {n} frames")
    lo, hi = int(idx.min()), int(idx.max()) + 1
    return node[lo:hi][idx - lo]


def read_replica(path: str | os.PathLike, frames: Any = slice(None), particles: Any = slice(None)) -> Replica:
    """Read (part of) one replica file; the file is closed on return.

    Arguments:
        path: a replica ``.h5`` file.
        frames: index along frames (int, slice, list or array).
        particles: index along particles applied to positions and types.

    Returns:
        A :class:`Replica` (positions (F, n, 3) float32 nm, times (F,) ps, ...).
    """
    import tables

    with tables.open_file(str(path), "r") as h:
        pos = np.asarray(_frame_read(h.root.coordinates, frames), dtype=np.float32)
        times = np.asarray(_frame_read(h.root.time, frames), dtype=np.float64)
        if "species" in h.root:
            types = np.asarray(h.root.species[:], dtype=np.int64)
            names = json.loads(h.root.species.attrs["names"]) if "names" in h.root.species.attrs._v_attrnames else None
        else:
            types = np.zeros(h.root.coordinates.shape[1], dtype=np.int64)
            names = None
        obs = {}
        if "observables" in h.root:
            for node in h.root.observables:
                obs[node.name] = np.asarray(_frame_read(node, frames), dtype=np.float64)
    if pos.ndim == 3:
        pos = pos[:, particles]
    else:
        pos = pos[particles]
    return Replica(pos, types[particles], times, obs, names)


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


def _complete_manifest(manifest: Mapping[str, Any] | None, r: int, n_frames: int, ns: list[int],
                       times: np.ndarray, observables: Iterable[str]) -> dict:
    m = dict(manifest or {})
    m.setdefault("system", "custom")
    m.setdefault("regime", "in-dst")
    m.setdefault("params", {})
    m.setdefault("observables", list(observables))
    dt = float(times[1] - times[0]) if len(times) > 1 else 0.0
    m.setdefault("dt_frame", dt)
    m["n_frames"] = int(n_frames)
    m["n_particles"] = [int(n) for n in ns]
    m.setdefault("seeds", list(range(r)))
    m.setdefault("versions", software_versions())
    m["format_version"] = FORMAT_VERSION
    return m


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
        self.manifest = _complete_manifest(manifest, r, f, [p.shape[1] for p in pos], tm[0], obs)
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


def _replica_header(path: Path) -> dict:
    """Shapes, frame times, species names and observable names of one replica file."""
    import tables

    try:
        with tables.open_file(str(path), "r") as h:
            if "coordinates" not in h.root or "time" not in h.root:
                raise ValueError(f"{path} is not a finished replica (no /coordinates or /time); "
                                 "rerun the simulate command that writes this dataset")
            f, n, _ = h.root.coordinates.shape
            times = np.asarray(h.root.time[:], dtype=np.float64)
            names = None
            if "species" in h.root and "names" in h.root.species.attrs._v_attrnames:
                names = json.loads(h.root.species.attrs["names"])
            obs = [node.name for node in h.root.observables] if "observables" in h.root else []
    except ValueError:
        raise
    except Exception as exc:  # not HDF5, truncated, ...
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"{path} is not a readable replica file ({text[:200]})") from exc
    return {"n_frames": int(f), "n": int(n), "times": times, "species": names, "observables": obs}


def check_dataset(directory: str | os.PathLike) -> tuple[dict, list[Path], list[int], int]:
    """Read and validate a dataset directory: the one place that decides what a dataset is.

    The replica files are the truth; the manifest must agree with them. Checked: the
    format version, completeness (``complete: false`` is refused), every replica file
    readable and finished, the frame count, the particle number of every replica, the
    frame spacing ``dt_frame`` against the stored times, the species names and the
    observables. Keys the manifest lacks (``dt_frame``, ``observables``, ``species``,
    ``n_frames``, ``n_particles``) are filled in from the files, never from defaults.

    Arguments:
        directory: a dataset directory.

    Returns:
        ``(manifest, files, n_particles, n_frames)``: the completed manifest dict, the
        replica files in order, particles per replica, frames per replica.

    Raises:
        FileNotFoundError: no such directory, no manifest, or no replica files.
        ValueError: any disagreement, naming the file and the fix.
    """
    d = Path(directory)
    if not d.exists():
        raise FileNotFoundError(f"dataset directory {d} does not exist")
    if not d.is_dir():
        raise ValueError(f"{d} is not a dataset directory")
    manifest = read_manifest(d)
    fv = manifest.get("format_version")
    if fv != FORMAT_VERSION:
        raise ValueError(f"{d}: unsupported dataset format_version {fv!r} (expected {FORMAT_VERSION})")
    if manifest.get("complete") is False:
        raise ValueError(f"{d} is an incomplete dataset (its manifest says complete: false: the "
                         "simulate run writing it was interrupted or failed); rerun the same "
                         "simulate command to finish it")
    found = sorted(int(m.group(1)) for p in d.iterdir() if (m := _REPLICA_RE.match(p.name)))
    n = 0
    while n < len(found) and found[n] == n:
        n += 1
    if n < len(found):
        warnings.warn(f"{d}: replica files are not contiguous; loading the first {n}")
    if n == 0:
        raise FileNotFoundError(f"{d}: no replica files")
    expected = manifest.get("n_particles")
    if isinstance(expected, list) and len(expected) > n:
        warnings.warn(f"{d}: manifest lists {len(expected)} replicas, {n} finished files found")
    files = [d / replica_filename(i) for i in range(n)]
    heads = [_replica_header(p) for p in files]
    nf = heads[0]["n_frames"]
    for p, h in zip(files, heads):
        if h["n_frames"] != nf:
            raise ValueError(f"{p} has {h['n_frames']} frames, {files[0].name} has {nf}: replicas "
                             "of one dataset share the frame schedule")
    if "n_frames" in manifest and manifest["n_frames"] != nf:
        raise ValueError(f"{d}: manifest says {manifest['n_frames']} frames, the replica files hold "
                         f"{nf}; the manifest belongs to another dataset")
    ns = [h["n"] for h in heads]
    if isinstance(expected, list):
        for i, (want, got) in enumerate(zip(expected, ns)):
            if want != got:
                raise ValueError(f"{files[i]} has {got} particles, the manifest says {want}; "
                                 "the manifest belongs to another dataset")
    elif expected is not None:
        raise ValueError(f"{d}: manifest n_particles must be a list, got {expected!r}")
    dt_files = float(heads[0]["times"][1] - heads[0]["times"][0]) if nf > 1 else 0.0
    dt = manifest.get("dt_frame")
    if dt is None:
        manifest["dt_frame"] = dt_files
    elif nf > 1:
        for p, h in zip(files, heads):
            steps = np.diff(h["times"])
            if not np.allclose(steps, dt, rtol=1e-3, atol=1e-6):
                raise ValueError(f"{p}: frames are {float(steps[0]):g} ps apart, the manifest says "
                                 f"dt_frame {dt!r}; the manifest belongs to another dataset")
    species = manifest.get("species")
    for p, h in zip(files, heads):
        if species is not None and h["species"] is not None and list(h["species"]) != list(species):
            raise ValueError(f"{p}: species {h['species']} differ from the manifest's {species}")
    if species is None and heads[0]["species"] is not None:
        manifest["species"] = list(heads[0]["species"])
    observables = manifest.get("observables")
    if observables is None:
        common = [k for k in heads[0]["observables"] if all(k in h["observables"] for h in heads)]
        manifest["observables"] = common
    else:
        for p, h in zip(files, heads):
            missing = [k for k in observables if k not in h["observables"]]
            if missing:
                raise ValueError(f"{p} lacks the observables {missing} listed in the manifest")
    manifest.setdefault("n_frames", nf)
    manifest.setdefault("n_particles", ns)
    return manifest, files, ns, nf


def fingerprint(dataset: "_DatasetBase | str | os.PathLike") -> str:
    """A path-independent fingerprint of a dataset: sha256 of its manifest (canonical JSON),
    its shape and, on disk, the byte size of every replica file.

    ``train --resume`` compares it with the one stored in the checkpoint.
    """
    import hashlib

    ds = load(dataset) if isinstance(dataset, (str, os.PathLike)) else dataset
    h = hashlib.sha256()
    h.update(json.dumps(_jsonable(dict(ds.manifest)), sort_keys=True).encode())
    h.update(json.dumps([len(ds), int(ds.n_frames), list(map(int, ds.n_particles))]).encode())
    for p in getattr(ds, "files", []):
        h.update(f"{Path(p).name}:{Path(p).stat().st_size};".encode())
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


def read_types(source: str | os.PathLike, replica: int = 0) -> np.ndarray:
    """Species index of every particle, from a ``.npy`` file, a dataset directory or a
    replica ``.h5`` file.

    Arguments:
        source: a ``.npy`` (n,) integer array, a dataset directory (its replica
            ``replica``) or a replica ``.h5`` file.
        replica: the replica of a dataset directory.

    Returns:
        (n,) int64 species indices.

    Raises:
        FileNotFoundError: ``source`` does not exist.
        ValueError: the replica is out of range, or the array is not 1-D integer.
    """
    p = Path(source)
    if not p.exists():
        raise FileNotFoundError(f"--types: {p} does not exist")
    if p.suffix == ".npy":
        t = np.load(p)
    elif p.is_dir():
        ds = load(p)
        if not 0 <= replica < len(ds):
            raise ValueError(f"--replica {replica} out of range: {p} has {len(ds)} replicas")
        t = ds.types[replica]
    else:
        t = read_replica(p, frames=slice(0, 1)).types
    t = np.asarray(t)
    if t.ndim != 1 or not np.issubdtype(t.dtype, np.integer):
        raise ValueError(f"--types: expected a 1-D integer array, got {t.dtype} of shape {t.shape}")
    return t.astype(np.int64)


@dataclass
class Configuration:
    """One configuration of particles, as a rollout or an encoder takes it.

    Attributes:
        positions: (n, 3) float64 positions in nm.
        types: (n,) int64 species indices, or None when the source does not say.
        species: species names in index order, or None when the source does not say.
        where: a few words naming the source (for messages).
    """

    positions: np.ndarray
    types: np.ndarray | None
    species: list | None
    where: str


def read_configuration(data: str | os.PathLike | None = None, positions: str | os.PathLike | None = None,
                       replica: int = 0, frame: int = 0, types: str | os.PathLike | None = None) -> Configuration:
    """Read one configuration from a dataset directory or from a positions file.

    Arguments:
        data: a dataset directory; the configuration is frame ``frame`` of replica
            ``replica``. Give exactly one of ``data`` and ``positions``.
        positions: a ``.npy`` file, (n, 3) or (F, n, 3) in nm (frame ``frame`` of the
            latter), or a replica ``.h5`` file (frame ``frame``; its species too).
        replica, frame: which replica and frame.
        types: a ``.npy`` (n,) species-index file; overrides the types of ``positions``.

    Returns:
        A :class:`Configuration`.

    Raises:
        FileNotFoundError: a file or directory does not exist.
        ValueError: an index out of range, or a file of another kind.
    """
    if (data is None) == (positions is None):
        raise ValueError("give exactly one of data= (a dataset directory) and positions= (a file)")
    if data is not None:
        path = Path(data)
        if not path.exists():
            raise FileNotFoundError(f"dataset directory {path} does not exist")
        ds = load(path)
        if not 0 <= replica < len(ds):
            raise ValueError(f"--replica {replica} out of range: {path} has {len(ds)} replicas")
        if not 0 <= frame < ds.n_frames:
            raise ValueError(f"--frame {frame} out of range: {path} has {ds.n_frames} frames")
        return Configuration(np.asarray(ds.positions[replica, frame], dtype=np.float64),
                             np.asarray(ds.types[replica], dtype=np.int64), ds.manifest.get("species"),
                             f"replica {replica}, frame {frame} of {path.name}")
    path = Path(positions)
    if not path.exists():
        raise FileNotFoundError(f"positions file {path} does not exist")
    names = None
    kinds = None
    if path.suffix.lower() == ".npy":
        arr = np.load(path)
        if arr.ndim == 3:
            if not 0 <= frame < arr.shape[0]:
                raise ValueError(f"--frame {frame} out of range: {path.name} has {arr.shape[0]} frames")
            arr = arr[frame]
        pos = np.asarray(arr, dtype=np.float64)
    elif path.suffix.lower() in (".h5", ".hdf5"):
        try:
            rep = read_replica(path, frames=[frame])
        except (IndexError, ValueError) as exc:
            raise ValueError(f"cannot read frame {frame} of {path.name}: {exc}") from exc
        pos = np.asarray(rep.positions[0], dtype=np.float64)
        kinds, names = np.asarray(rep.types, dtype=np.int64), rep.species_names
    else:
        raise ValueError(f"--positions must be a .npy or .h5 file, got {path.name!r}")
    if types is not None:
        tp = Path(types)
        if not tp.exists():
            raise FileNotFoundError(f"types file {tp} does not exist")
        kinds = np.load(tp)
    return Configuration(pos, kinds, names, f"frame {frame} of {path.name}")
