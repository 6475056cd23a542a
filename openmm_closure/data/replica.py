"""One replica in memory (:class:`Replica`), reading one replica file (:func:`read_replica`)
and the hash of a replica's content (:func:`content_sha256`)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Replica", "read_replica", "content_sha256", "replica_lengths"]


@dataclass
class Replica:
    """One replica's trajectory, fully in memory.

    Attributes:
        positions: (F, n, 3) float32 coordinates in nm.
        types: (n,) int64 species index per particle.
        times: (F,) float64 frame times in ps.
        observables: name -> (F,) float64 per-frame values.
        species_names: species index -> name, or None.
        box: (F, 3, 3) float64 box vectors of every frame in nm (rows), or None
            (non-periodic, or a file written before boxes were stored per frame).
    """

    positions: np.ndarray
    types: np.ndarray
    times: np.ndarray
    observables: dict[str, np.ndarray] = field(default_factory=dict)
    species_names: list[str] | None = None
    box: np.ndarray | None = None

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
        box = np.asarray(_frame_read(h.root.box, frames), dtype=np.float64) if "box" in h.root else None
    if pos.ndim == 3:
        pos = pos[:, particles]
    else:
        pos = pos[particles]
    return Replica(pos, types[particles], times, obs, names, box)


def replica_lengths(path: str | os.PathLike) -> dict[str, int]:
    """Check that a replica (or reporter) file is complete and count its frames.

    Arguments:
        path: an ``.h5`` file written by :class:`~openmm_closure.data.ReplicaWriter`.

    Returns:
        ``{"frames": F, "particles": n}``.

    Raises:
        ValueError: one line: the file is not readable HDF5, lacks coordinates or times, or
            its arrays (coordinates, times, box, observables) have different lengths (a run
            killed while writing a frame).
    """
    import tables

    try:
        with tables.open_file(str(path), "r") as h:
            if "coordinates" not in h.root or "time" not in h.root:
                raise ValueError(f"{path} is incomplete: no /coordinates or /time (a run killed before "
                                 "its first frame); rerun it")
            f, n, _ = h.root.coordinates.shape
            lengths = {"time": len(h.root.time)}
            if "cell_lengths" in h.root:
                lengths["cell_lengths"] = len(h.root.cell_lengths)
            if "box" in h.root:
                lengths["box"] = len(h.root.box)
            if "observables" in h.root:
                for node in h.root.observables:
                    lengths[f"observables/{node.name}"] = len(node)
    except ValueError:
        raise
    except Exception as exc:  # not HDF5, truncated, ...
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"{path} is not a readable trajectory file ({text[:160]}): a run killed while "
                         "writing it; rerun it or append to an intact copy") from None
    bad = {k: v for k, v in lengths.items() if v != f}
    if bad:
        k, v = next(iter(bad.items()))
        raise ValueError(f"{path} is incomplete: {f} frames of coordinates but {v} of {k} (a run killed "
                         "mid-frame); rerun it")
    return {"frames": int(f), "particles": int(n)}


def content_sha256(replica: Replica) -> str:
    """sha256 of one replica's content: positions, species, times, observables (by name)
    and species names; equal for equal data whatever the HDF5 file's bytes."""
    import hashlib

    h = hashlib.sha256()
    arrays = [("positions", replica.positions), ("types", replica.types), ("times", replica.times)]
    arrays += [(f"obs:{k}", replica.observables[k]) for k in sorted(replica.observables)]
    if replica.box is not None:
        arrays.append(("box", replica.box))
    for name, a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{name}:{a.dtype.str}{a.shape};".encode())
        h.update(a.tobytes())
    h.update(json.dumps(replica.species_names).encode())
    return h.hexdigest()
