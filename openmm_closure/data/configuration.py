"""One configuration of particles from a dataset or a file, and species from a types file."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .reader import load, read_replica

__all__ = ["read_types", "Configuration", "read_configuration", "load_npy"]

_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def load_npy(path: str | os.PathLike, flag: str) -> np.ndarray:
    """A ``.npy`` array file as data (never pickles), or one line naming ``flag`` and the file.

    Raises:
        ValueError: not a NumPy array file, or one holding Python objects.
    """
    try:
        arr = np.load(path, allow_pickle=False)
    except ValueError as exc:
        why = ("it holds Python objects, which are never loaded" if "pickle" in str(exc).lower()
               else str(exc).strip().splitlines()[0] if str(exc).strip() else "unreadable")
        raise ValueError(f"{flag} {path} is not a NumPy array file ({why}); save one with numpy.save") from None
    except (OSError, EOFError) as exc:
        raise ValueError(f"{flag} {path} is not a NumPy array file ({type(exc).__name__}); "
                         "save one with numpy.save") from None
    if not isinstance(arr, np.ndarray):
        raise ValueError(f"{flag} {path} holds several arrays (.npz); pass one .npy array")
    return arr


def _is_hdf5(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(8) == _HDF5_MAGIC
    except OSError:
        return False


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
        t = load_npy(p, "--types")
    elif p.is_dir():
        ds = load(p)
        if not 0 <= replica < len(ds):
            raise ValueError(f"--replica {replica} out of range: {p} has {len(ds)} replicas")
        t = ds.types[replica]
    elif not _is_hdf5(p):
        raise ValueError(f"--types {p} is neither a .npy file, a dataset directory nor a replica .h5 file")
    else:
        try:
            t = read_replica(p, frames=slice(0, 1)).types
        except Exception as exc:  # an HDF5 file of another kind
            first = str(exc).strip().splitlines()
            raise ValueError(f"--types {p} is not a readable replica file "
                             f"({first[0] if first else type(exc).__name__})") from None
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
        arr = load_npy(path, "--positions")
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
        kinds = load_npy(tp, "--types")
    return Configuration(pos, kinds, names, f"frame {frame} of {path.name}")
