"""A dataset from trajectory files of any origin: :func:`ingest`.

Each file is one replica written by :class:`openmm_closure.reporters.DatasetReporter`
(or :class:`~openmm_closure.data.ReplicaWriter`) from the user's own OpenMM script. The
files are checked against each other (the same species, observables, observable
parameters and frame spacing; each complete), copied into the dataset format (box per
frame included) and given a manifest. The frames of a periodic system are stored with
every particle at its image nearest the set's periodic centre
(:func:`openmm_closure.periodic.periodic_image_np`), the frame
``model.encode(positions, types, box)`` encodes in, so ẑ does not depend on which image
OpenMM kept; the manifest says ``periodic: true``. So ``train``, ``evaluate``, ``export``,
:class:`~openmm_closure.reporters.ClosureReporter` and ``ClosureSimulation`` take the
result like a built-in system's dataset.

Example:
    >>> from openmm_closure.data import ingest, load
    >>> ingest(["run0.h5", "run1.h5"], "my_dataset", regimes="in-dst", seeds=[11, 12])  # doctest: +SKIP
    >>> load("my_dataset")                                                             # doctest: +SKIP
    Dataset(system='custom', replicas=2, frames=50, n=[64])
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .manifest import build_manifest, write_manifest
from ..periodic import periodic_image_np
from .replica import content_sha256, read_replica, replica_lengths

__all__ = ["ingest"]


def _header(path: Path) -> dict:
    """What one reporter file holds (after checking it is complete)."""
    import tables

    counts = replica_lengths(path)
    with tables.open_file(str(path), "r") as h:
        if "species" not in h.root:
            raise ValueError(f"{path} has no /species: write it with DatasetReporter (or ReplicaWriter)")
        types = np.asarray(h.root.species[:], dtype=np.int64)
        names = json.loads(h.root.species.attrs["names"]) if "names" in h.root.species.attrs._v_attrnames else None
        obs, params = [], {}
        if "observables" in h.root:
            obs = sorted(node.name for node in h.root.observables)
            if "params" in h.root.observables._v_attrs._v_attrnames:
                params = json.loads(h.root.observables._v_attrs["params"])
        times = np.asarray(h.root.time[:], dtype=np.float64)
        periodic = "box" in h.root or "cell_lengths" in h.root
    return {**counts, "types": types, "species": names, "observables": obs, "params": params,
            "times": times, "periodic": periodic}


def _per_replica(value: Any, r: int, what: str) -> list | None:
    if value is None:
        return None
    if isinstance(value, (str, int, np.integer)):
        return [value] * r
    out = list(value)
    if len(out) == 1:
        return out * r
    if len(out) != r:
        raise ValueError(f"{len(out)} {what} for {r} files: give one, or one per file")
    return out


def ingest(
    files: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    *,
    system: str = "custom",
    regimes: str | Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
    frames: int | None = None,
    overwrite: bool = False,
) -> Path:
    """Build a dataset directory from reporter files, one file per replica.

    Arguments:
        files: ``.h5`` files written by ``DatasetReporter``, one per replica, in order.
        out: the dataset directory to write (created).
        system: the manifest's system name (a name the package does not know is a
            custom system: generic model defaults).
        regimes: the regime of every replica (one name, or one per file), recorded.
        seeds: the random seed of every replica's run, recorded (default 0, 1, ...).
        frames: keep the first ``frames`` frames of every file (files of different
            lengths); default: all, and the files must hold the same number.
        overwrite: replace ``out`` when it already holds a dataset.

    Returns:
        ``out`` as a Path (read it with :func:`openmm_closure.data.load`).

    Raises:
        ValueError: one line naming the file: incomplete or unreadable, other species,
            observables, observable parameters, frame spacing or frame count than the
            first file, fewer frames than ``frames``.
        FileExistsError: ``out`` holds a dataset and ``overwrite`` is False.
    """
    from ..fileio import unique_temp_name
    from .format import MANIFEST, replica_filename
    from .writer import ReplicaWriter

    paths = [Path(os.fspath(f)) for f in files]
    if not paths:
        raise ValueError("ingest needs at least one reporter file")
    for p in paths:
        if not p.is_file():
            raise ValueError(f"{p} does not exist: pass the .h5 files your DatasetReporters wrote")
    d = Path(os.fspath(out))
    if (d / MANIFEST).exists() and not overwrite:
        raise FileExistsError(f"{d} already holds a dataset; pass overwrite=True (--overwrite) to replace it")
    heads = [_header(p) for p in paths]
    first, p0 = heads[0], paths[0]
    for p, h in zip(paths[1:], heads[1:]):
        if h["species"] != first["species"] or sorted(set(h["types"].tolist())) != sorted(set(first["types"].tolist())):
            raise ValueError(f"{p} holds the species {h['species']}, {p0.name} {first['species']}: "
                             "the replicas of one dataset simulate one system")
        if h["observables"] != first["observables"]:
            raise ValueError(f"{p} holds the observables {h['observables']}, {p0.name} {first['observables']}: "
                             "report the same observables in every replica")
        if h["params"] != first["params"]:
            raise ValueError(f"{p} computed its observables with {h['params']}, {p0.name} with "
                             f"{first['params']}: use the same observable parameters in every replica")
        if h["periodic"] != first["periodic"]:
            raise ValueError(f"{p} is {'' if h['periodic'] else 'not '}periodic, {p0.name} is "
                             f"{'' if first['periodic'] else 'not '}: the replicas of one dataset simulate one system")
    dts = []
    for p, h in zip(paths, heads):
        if h["frames"] < 2:
            raise ValueError(f"{p} holds {h['frames']} frame(s): a replica needs at least 2")
        steps = np.diff(h["times"])
        if not np.allclose(steps, steps[0], rtol=1e-3, atol=1e-6):
            raise ValueError(f"{p}: its frames are not evenly spaced in time ({float(steps.min()):g} to "
                             f"{float(steps.max()):g} ps): report at a fixed interval")
        dts.append(float(steps[0]))
    for p, dt in zip(paths[1:], dts[1:]):
        if not np.isclose(dt, dts[0], rtol=1e-3, atol=1e-6):
            raise ValueError(f"{p} has frames {dt:g} ps apart, {p0.name} {dts[0]:g} ps: use the same "
                             "reportInterval and time step in every replica")
    counts = [h["frames"] for h in heads]
    if frames is None:
        if len(set(counts)) > 1:
            k = int(np.argmax(np.asarray(counts) != counts[0]))
            raise ValueError(f"{paths[k]} holds {counts[k]} frames, {p0.name} {counts[0]}: pass "
                             f"frames={min(counts)} (--frames) to keep the first {min(counts)} of each")
        nf = counts[0]
    else:
        nf = int(frames)
        if nf < 2:
            raise ValueError(f"frames must be at least 2, got {frames}")
        short = [(p, c) for p, c in zip(paths, counts) if c < nf]
        if short:
            raise ValueError(f"{short[0][0]} holds {short[0][1]} frames, fewer than frames={nf}")
    r = len(paths)
    regime_list = _per_replica(regimes, r, "regimes")
    seed_list = _per_replica(seeds, r, "seeds")
    d.mkdir(parents=True, exist_ok=True)
    hashes, ns = [], []
    for i, p in enumerate(paths):
        rep = read_replica(p, frames=slice(0, nf))
        positions = rep.positions
        if rep.box is not None:  # the frame a periodic model encodes in (model.encode(..., box=))
            positions = periodic_image_np(positions, rep.box)
        final = d / replica_filename(i)
        tmp = unique_temp_name(final, ".part.h5")
        with ReplicaWriter(tmp, rep.types, rep.species_names, sorted(rep.observables), params=first["params"]) as w:
            w.append(positions, rep.times, rep.observables, box=rep.box)
        os.replace(tmp, final)
        hashes.append(content_sha256(read_replica(final)))
        ns.append(rep.n_particles)
    for stale in d.glob("replica_*.h5"):  # an overwritten dataset's extra replicas
        if stale.name not in {replica_filename(i) for i in range(r)}:
            stale.unlink()
    regime = "in-dst" if regime_list is None else (regime_list[0] if len(set(regime_list)) == 1 else "mixed")
    fields: dict[str, Any] = {"species": first["species"], "periodic": first["periodic"],
                              "ingested_from": [p.name for p in paths], "replica_sha256": hashes}
    if regime_list is not None:
        fields["regimes"] = [str(x) for x in regime_list]
    manifest = build_manifest(system=str(system), regime=str(regime), observables=first["observables"],
                              dt_frame=dts[0], n_frames=nf, n_particles=ns, params=first["params"],
                              seeds=None if seed_list is None else [int(s) for s in seed_list], **fields)
    write_manifest(d, manifest)
    return d
