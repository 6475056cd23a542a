"""One configuration of particles from a dataset or a file, and species from a types file."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .reader import load, read_replica

__all__ = ["read_types", "Configuration", "read_configuration"]


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
