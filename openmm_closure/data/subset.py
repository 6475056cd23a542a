"""The first ``n`` replicas of a dataset as a dataset of its own (nested training sets).

Replica ``i`` of a simulated ensemble is seeded from ``(seed, i)``, so the first ``n``
replicas of a large ensemble are exactly the ensemble ``simulate --replicas n`` would
write with the same seed. :func:`subset_dataset` makes that dataset without simulating
again: the replica files are hard-linked (copied where links are not possible) and the
manifest's per-replica lists are cut to ``n``. Learning curves train on such nested sets
(32 of 100 of 320 ...), so that a larger set only ever adds trajectories.

Example:
    >>> from openmm_closure.data import subset_dataset
    >>> subset_dataset("runs/train-320", "runs/train-100", 100)   # doctest: +SKIP
    PosixPath('runs/train-100')
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from .format import MANIFEST, replica_filename
from .manifest import write_manifest
from .validation import check_dataset

__all__ = ["subset_dataset"]

#: manifest keys that hold one entry per replica
_PER_REPLICA = ("n_particles", "seeds", "replica_params", "replica_sha256")


def _link_or_copy(src: Path, dst: Path) -> None:
    """Hard-link ``src`` to ``dst`` (a copy where the filesystem refuses links)."""
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copy2(src, tmp)
    os.replace(tmp, dst)


#: manifest keys that do not decide which replicas a dataset holds
_PROVENANCE = ("versions", "subset_of", "platforms", "batch_sizes")


def _same_replicas(a: dict, b: dict) -> bool:
    """Whether two manifests describe the same replicas (a subset and a direct run of the same
    request and size agree)."""
    return {k: v for k, v in a.items() if k not in _PROVENANCE} == {k: v for k, v in b.items() if k not in _PROVENANCE}


def subset_dataset(source: str | os.PathLike, out: str | os.PathLike, n: int) -> Path:
    """Write the dataset of the first ``n`` replicas of ``source`` into ``out``.

    Arguments:
        source: a complete dataset directory (checked with :func:`check_dataset`).
        out: the new dataset directory: absent, empty, or already holding these replicas
            (this subset, or ``simulate`` of the same request with ``n`` replicas; then it is
            checked and returned unchanged).
        n: number of replicas to keep, ``1 <= n <= len(source)``.

    Returns:
        ``out`` as a Path. Its manifest is the source's with the per-replica lists
        (``n_particles``, ``seeds``, ``replica_params``) cut to ``n``, ``replicas`` set to
        ``n`` and ``subset_of`` recording the source's replica count.

    Raises:
        ValueError: ``n`` out of range, or ``out`` holding something else.
    """
    manifest, files, _, _ = check_dataset(source)
    if isinstance(n, bool) or int(n) != n or not 1 <= int(n) <= len(files):
        raise ValueError(f"subset size must be an integer in 1..{len(files)} (the replicas of {source}), got {n!r}")
    n = int(n)
    dst = Path(out)
    sub = dict(manifest)
    for key in _PER_REPLICA:
        if isinstance(sub.get(key), list):
            sub[key] = sub[key][:n]
    sub["replicas"] = n
    sub["subset_of"] = {"replicas": len(files)}
    if dst.exists() and any(dst.iterdir()):
        if (dst / MANIFEST).is_file():
            old, old_files, _, _ = check_dataset(dst)
            if _same_replicas(old, sub) and len(old_files) == n:
                return dst
        raise ValueError(f"{dst} is not empty and does not hold the first {n} replicas of {source}; "
                         "choose another directory")
    dst.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        _link_or_copy(files[i], dst / replica_filename(i))
    write_manifest(dst, sub)
    return dst
