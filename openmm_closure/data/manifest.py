"""``manifest.json``: the one place a dataset's manifest is built, written and read.

Example:
    >>> m = build_manifest(system="particles2d", regime="in-dst", observables=["energy"],
    ...                    dt_frame=0.02, n_frames=5, n_particles=[10, 10])
    >>> m["seeds"], m["n_particles"], m["format_version"]
    ([0, 1], [10, 10], 1)
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from .format import FORMAT_VERSION, MANIFEST, software_versions

__all__ = ["build_manifest", "complete_manifest", "write_manifest", "read_manifest", "replica_meta",
           "REPLICA_META_ATTR", "normalise"]

#: HDF5 root attribute of a finished replica file holding its metadata (JSON)
REPLICA_META_ATTR = "openmm_closure_replica"


def normalise(x: Any) -> Any:
    """``x`` as it reads back from JSON (sorted keys, lists for tuples, plain numbers)."""
    return json.loads(json.dumps(x, sort_keys=True))


def replica_meta(task: Mapping[str, Any], spec: Any, platform: str, batch: Mapping[str, Any] | None = None) -> dict:
    """The metadata stored in a finished replica file and gathered into the manifest.

    Arguments:
        task: the replica's task (``index``, ``seed``).
        spec: its built system (``openmm_closure.systems.SimulationSpec``: ``n_particles``,
            ``n_frames``, ``dt_frame`` ps, ``observables``, ``species``, ``params``).
        platform: the OpenMM platform it ran on.
        batch: ``simulate --batch`` details (size, first index, method), if batched.
    """
    meta = {
        "index": task["index"], "seed": task["seed"], "n_particles": spec.n_particles,
        "n_frames": spec.n_frames, "dt_frame": spec.dt_frame, "observables": list(spec.observables),
        "species": list(spec.species), "params": spec.params, "platform": platform,
    }
    if batch is not None:
        meta["batch"] = dict(batch)
    return normalise(meta)


def build_manifest(*, system: str, regime: str, observables: Iterable[str], dt_frame: Any, n_frames: int,
                   n_particles: Sequence[int], params: Mapping[str, Any] | None = None,
                   seeds: Sequence[int] | None = None, versions: Mapping[str, str] | None = None,
                   **fields: Any) -> dict:
    """The manifest of a dataset: the keys every dataset has, then ``fields``.

    Arguments:
        system, regime: what was simulated (``"custom"`` for arrays of any origin).
        observables: names of the per-frame observables.
        dt_frame: frame spacing in ps.
        n_frames: frames per replica (frame 0 is the initial state).
        n_particles: particles of each replica (R,).
        params: builder parameters common to all replicas (default none).
        seeds: seed of each replica (default 0..R-1).
        versions: software versions (default those installed now).
        **fields: any further keys (``species``, ``request``, ``complete``, ...).

    Returns:
        The manifest dict, ``format_version`` set to :data:`FORMAT_VERSION`.
    """
    m = {
        "system": system,
        "regime": regime,
        "params": {} if params is None else params,
        "observables": list(observables),
        "dt_frame": dt_frame,
        "n_frames": int(n_frames),
        "n_particles": [int(n) for n in n_particles],
        "seeds": list(range(len(n_particles))) if seeds is None else list(seeds),
        "versions": software_versions() if versions is None else versions,
    }
    m.update(fields)
    m["format_version"] = FORMAT_VERSION
    return m


def complete_manifest(manifest: Mapping[str, Any] | None, r: int, n_frames: int, ns: list[int],
                       times: np.ndarray, observables: Iterable[str]) -> dict:
    """A user-given (partial) manifest completed for arrays of ``r`` replicas: given keys
    win, except the shape (``n_frames``, ``n_particles``) and ``format_version``, which
    the arrays decide; ``dt_frame`` defaults to the spacing of ``times`` (ps)."""
    m = dict(manifest or {})
    for key in ("n_frames", "n_particles", "format_version"):
        m.pop(key, None)
    dt = float(times[1] - times[0]) if len(times) > 1 else 0.0
    return build_manifest(system=m.pop("system", "custom"), regime=m.pop("regime", "in-dst"),
                          observables=m.pop("observables", list(observables)), dt_frame=m.pop("dt_frame", dt),
                          n_frames=n_frames, n_particles=ns, params=m.pop("params", {}),
                          seeds=m.pop("seeds", list(range(r))), versions=m.pop("versions", None), **m)


def write_manifest(directory: str | os.PathLike, manifest: Mapping[str, Any]) -> None:
    """Write ``manifest.json`` atomically (per-process temporary file, then rename)."""
    from ..fileio import atomic_write_bytes

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
