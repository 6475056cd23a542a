"""Integrity records: the sha256 of every file a loader reads, checked on every load.

A model directory holds ``integrity.json``, written last by
:func:`openmm_closure.learn.model.save_model`::

    {"format_version": 1, "kind": "model",
     "sha256": {"config.json": "<hex>", "model.pt": "<hex>"}}

An export directory's record is its index ``export.json`` (:mod:`openmm_closure.hosts.export`),
with the same ``sha256`` map over every file the export wrote. :func:`check_record`
checks either: the record must exist and parse, and every listed file must be there with
its recorded hash, so an edited, truncated, swapped or half-written file (``config.json``
included) is a ValueError naming the file, never a silently different model.

Torch-free and OpenMM-free.

Example:
    >>> seal("runs/p2d", ["config.json", "model.pt"], kind="model")     # doctest: +SKIP
    >>> check_record("runs/p2d", "integrity.json", kind="model",
    ...              required=["config.json", "model.pt"])              # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable, Sequence

from .fileio import atomic_write_bytes, check_hashes, sha256_file

__all__ = ["RECORD", "RECORD_FORMAT_VERSION", "seal", "check_record", "read_record", "seal_model_dir"]

#: the integrity record of a model directory
RECORD = "integrity.json"
RECORD_FORMAT_VERSION = 1


def seal(directory: str | os.PathLike, names: Iterable[str], kind: str, record: str = RECORD,
         extra: dict | None = None) -> dict:
    """Write ``record`` in ``directory`` with the sha256 of each file in ``names`` (atomically).

    Arguments:
        directory: the directory holding the files.
        names: file names (relative to ``directory``) to record.
        kind: what the directory is (``"model"``, ``"export"``).
        record: the record's file name.
        extra: further keys stored in the record.

    Returns:
        The record dict.
    """
    d = Path(directory)
    rec = {**(extra or {}), "format_version": RECORD_FORMAT_VERSION, "kind": kind,
           "sha256": {name: sha256_file(d / name) for name in sorted(set(names))}}
    atomic_write_bytes(d / record, (json.dumps(rec, indent=2, sort_keys=True) + "\n").encode())
    return rec


def read_record(directory: str | os.PathLike, record: str = RECORD, what: str = "model directory",
                fix: str = "write it again") -> dict:
    """Read and shape-check an integrity record.

    Raises:
        FileNotFoundError: no record (an older or an interrupted write).
        ValueError: the record is not JSON, or its ``sha256`` is not a name -> hex map.
    """
    d = Path(directory)
    p = d / record
    if not p.is_file():
        raise FileNotFoundError(f"{what} {d} has no {record} (the sha256 of every file it holds): {fix}")
    try:
        rec = json.loads(p.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{p} is not valid JSON ({exc}); {fix}") from None
    hashes = rec.get("sha256") if isinstance(rec, dict) else None
    if not isinstance(hashes, dict) or not all(isinstance(k, str) and isinstance(v, str) and "/" not in k
                                                and k not in ("", ".", "..") for k, v in hashes.items()):
        raise ValueError(f"{p}: key 'sha256' must map file names to hex digests; {fix}")
    return rec


def check_record(directory: str | os.PathLike, record: str = RECORD, *, kind: str | None = None,
                 required: Sequence[str] = (), what: str = "model directory", fix: str = "write it again") -> dict:
    """Check a directory against its integrity record.

    Arguments:
        directory: the directory.
        record: the record's file name.
        kind: the expected ``kind`` of the record (None: any).
        required: files the loader reads, which the record must list.
        what: how messages name the directory.
        fix: what messages tell the user to do.

    Returns:
        The record dict.

    Raises:
        FileNotFoundError: no record, or a listed file is missing.
        ValueError: a file differs from its recorded sha256, the record lacks a file the
            loader reads, or the record is of another kind.
    """
    d = Path(directory)
    rec = read_record(d, record, what, fix)
    if kind is not None and rec.get("kind", kind) != kind:
        raise ValueError(f"{d / record}: key 'kind' is {rec.get('kind')!r}, expected {kind!r}; {fix}")
    missing = [name for name in required if name not in rec["sha256"]]
    if missing:
        raise ValueError(f"{d / record} does not cover {', '.join(missing)}, which the loader reads; {fix}")
    check_hashes(d, rec["sha256"], what)
    return rec


def seal_model_dir(directory: str | os.PathLike) -> dict:
    """Record the present files of a model directory as trusted (for a model written before
    integrity records existed, or one edited on purpose). Check its files yourself first:
    after this, they load as they are.

    Returns:
        The record dict.
    """
    d = Path(directory)
    names = [n for n in ("config.json", "model.pt") if (d / n).is_file()]
    return seal(d, names, kind="model")
