"""What a path is, and whether it is intact: ``openmm-closure info PATH``.

:func:`describe` recognises and checks

- a **model directory** (``config.json`` + ``model.pt``; the weights' sha256 recorded in the
  config is checked),
- an **export directory** (``export.json``; every file against its recorded sha256, then each
  TorchScript file's records against the digest inside it),
- a **single exported file** (``.pt``: the records' digest inside its metadata, and the JSON
  copy beside it when there is one; ``.pt2``: its metadata; when the file sits in an export
  directory, its sha256 in the index too),
- a **dataset directory** (``manifest.json``; every replica file, through
  :func:`openmm_closure.data.check_dataset`),

and returns a dict: ``kind``, ``path``, ``system``, ``species``, ``n_particles``, ``dims``,
``units``, ``versions``, ``content_sha256`` and ``checks`` (what was verified).
:func:`format_info` prints it. A truncated or edited file is a ``ValueError`` with one line.
Versions that differ from the running environment's (torch, libtorch ABI) are listed under
``warnings``.

Example:
    >>> print(format_info(describe("exported/p2d/closure_cv_0.pt")))     # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["describe", "format_info"]


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return " ".join(text.splitlines()[0].split()) if text else type(exc).__name__


def _version_warnings(versions: Any) -> list:
    from .provenance import runtime_versions

    if not isinstance(versions, dict):
        return ["no versions recorded (exported before openmm-closure recorded them)"]
    here = runtime_versions()
    out = []
    for key in ("torch", "libtorch_cxx11_abi"):
        if key in versions and versions[key] != here[key]:
            out.append(f"{key}: exported with {versions[key]}, this environment has {here[key]}")
    return out


def _describe_model(d: Path) -> dict:
    from .fileio import sha256_file
    from .learn.model import check_model_dir

    cfg = check_model_dir(d)
    manifest = cfg.get("manifest") or {}
    n = manifest.get("n_particles")
    return {
        "kind": "model directory", "path": str(d), "system": cfg.get("system"), "method": cfg.get("method"),
        "species": cfg.get("species"), "n_particles": sorted(set(n)) if isinstance(n, list) else n,
        "dims": {"in_features": cfg.get("in_features"), "latent_dim": cfg.get("latent_dim"),
                 "observables": cfg.get("observables"), "dt_ps": cfg.get("dt")},
        "units": cfg.get("units"), "versions": {"openmm_closure": cfg.get("package_version")},
        "content_sha256": sha256_file(d / "model.pt"),
        "checks": ["config.json parses", "model.pt matches the sha256 in config.json"
                   if cfg.get("sha256") else "model.pt present (no sha256 recorded: older model)"],
    }


def _describe_dataset(d: Path) -> dict:
    from .data import check_dataset
    from .fileio import sha256_file

    manifest, files, n_particles, n_frames = check_dataset(d)
    versions = manifest.get("versions")
    if isinstance(versions, str):  # older manifests kept it as text
        versions = {"recorded": versions}
    return {
        "kind": "dataset", "path": str(d), "system": manifest.get("system"), "species": manifest.get("species"),
        "n_particles": sorted(set(n_particles)) if isinstance(n_particles, list) else n_particles,
        "dims": {"replicas": len(files), "frames": n_frames, "observables": manifest.get("observables"),
                 "dt_frame_ps": manifest.get("dt_frame")},
        "units": {"positions": "nm", "time": "ps"}, "versions": versions,
        "content_sha256": sha256_file(d / "manifest.json"),
        "checks": [f"manifest agrees with {len(files)} replica files (readable, complete)"],
    }


def _pt_metadata(path: Path) -> tuple:
    """(metadata, checks) of one TorchScript file, its records checked against the digest."""
    import torch

    from .provenance import DIGEST_KEY, records_digest
    from .hosts.scripting import METADATA

    data = path.read_bytes()
    try:
        digest = records_digest(data)
        extra = {METADATA: ""}
        torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    except Exception as exc:  # torch's reader and zipfile both refuse damaged archives
        raise ValueError(f"{path}: not a readable TorchScript file, truncated or damaged ({_one_line(exc)})") from None
    if not extra[METADATA]:
        raise ValueError(f"{path}: carries no {METADATA}; not written by openmm-closure export")
    meta = json.loads(extra[METADATA])
    checks = ["TorchScript archive loads"]
    if DIGEST_KEY in meta:
        if meta[DIGEST_KEY] != digest:
            raise ValueError(f"{path}: edited after export (its code or weights no longer match the "
                             f"{DIGEST_KEY} in its metadata); export it again")
        checks.append("code and weights match the digest in its metadata")
    beside = path.with_suffix(".json")
    if beside.is_file():
        try:
            if json.loads(beside.read_text()) != meta:
                raise ValueError
        except ValueError:
            raise ValueError(f"{beside}: differs from the metadata inside {path.name} (edited or from "
                             "another export)") from None
        checks.append(f"{beside.name} equals the metadata inside")
    return meta, checks


def _in_index(path: Path) -> list:
    from .hosts.export import INDEX, check_export_dir

    d = path.parent
    if not (d / INDEX).is_file():
        return []
    index = check_export_dir(d)
    if path.name not in index["sha256"]:
        raise ValueError(f"{path}: not part of the export in {d} (left from another export)")
    return [f"matches {INDEX} of its directory"]


def _file_summary(path: Path, meta: dict, checks: list) -> dict:
    from .fileio import sha256_file

    cr = meta.get("coordinate_range") or {}
    return {
        "kind": f"exported file ({meta.get('kind')})", "path": str(path), "system": meta.get("system"),
        "species": meta.get("species"),
        "n_particles": "any" if meta.get("n_particles") is None else meta["n_particles"],
        "dims": {"in_features": meta.get("in_features"), "latent_dim": meta.get("latent_dim"),
                 "state_dim": meta.get("dim"), "component": meta.get("component"),
                 "centered_per_set": cr.get("centered_per_set")},
        "units": meta.get("units"), "versions": meta.get("versions"),
        "inputs": meta.get("inputs"), "outputs": meta.get("outputs"),
        "content_sha256": sha256_file(path), "checks": checks,
        "warnings": _version_warnings(meta.get("versions")),
    }


def _describe_file(path: Path) -> dict:
    if path.suffix == ".json" and path.with_suffix(".pt").is_file():
        path = path.with_suffix(".pt")
    if path.suffix == ".pt2":
        from .hosts.pt2 import load_pt2_metadata

        checks = _in_index(path)
        try:
            meta = load_pt2_metadata(path)
        except Exception as exc:
            raise ValueError(f"{path}: not a readable .pt2 package, truncated or damaged ({_one_line(exc)})") from None
        return _file_summary(path, meta, ["AOTInductor package loads", *checks])
    if path.suffix != ".pt":
        raise ValueError(f"{path}: not a model directory, export directory, dataset or exported "
                         ".pt/.pt2 file")
    checks = _in_index(path)
    meta, more = _pt_metadata(path)
    return _file_summary(path, meta, [*more, *checks])


def _describe_export(d: Path) -> dict:
    from .hosts.export import INDEX, check_export_dir
    from .fileio import sha256_file

    index = check_export_dir(d)
    files = {}
    first: dict = {}
    checks = [f"every file matches {INDEX}"]
    for name in sorted(index["sha256"]):
        p = d / name
        if p.suffix == ".pt":
            meta, _ = _pt_metadata(p)
            files[name] = meta.get("kind")
            first = first or meta
        elif p.suffix == ".pt2":
            files[name] = "aoti package"
        elif p.suffix != ".json":
            files[name] = "host input"
    if first:
        checks.append("every TorchScript file's code and weights match its digest")
    return {
        "kind": "export directory", "path": str(d), "system": first.get("system"), "species": first.get("species"),
        "n_particles": "any" if first.get("n_particles") is None else first["n_particles"],
        "dims": {"in_features": first.get("in_features"), "latent_dim": first.get("latent_dim"),
                 "state_dim": first.get("dim"), "observables": first.get("observables")},
        "units": first.get("units"), "versions": first.get("versions"), "files": files,
        "content_sha256": sha256_file(d / INDEX), "checks": checks,
        "warnings": _version_warnings(first.get("versions")) if first else [],
    }


def describe(path: str | os.PathLike) -> dict:
    """Recognise and check a model directory, export directory, exported file or dataset.

    Arguments:
        path: the path to look at.

    Returns:
        A dict (see the module docstring).

    Raises:
        FileNotFoundError: no such path, or a file an index lists is missing.
        ValueError: not a known kind, or a truncated, edited or inconsistent file (one line).
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p} does not exist")
    if p.is_dir():
        if (p / "export.json").is_file():
            return _describe_export(p)
        if (p / "config.json").is_file():
            return _describe_model(p)
        if (p / "manifest.json").is_file():
            return _describe_dataset(p)
        raise ValueError(f"{p}: not a model directory (config.json), export directory (export.json) or "
                         "dataset (manifest.json)")
    return _describe_file(p)


def _fmt(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {_fmt(v)}" for k, v in value.items() if v is not None)
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return "; ".join(f"{a.get('name')} {a.get('shape')} {a.get('dtype')} ({a.get('units')})" for a in value)
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


def format_info(info: dict) -> str:
    """The text ``openmm-closure info`` prints: one ``key: value`` line each, then the
    checks passed (``ok: ...``) and any version warnings (``warning: ...``)."""
    lines = []
    for key in ("kind", "path", "system", "method", "species", "n_particles", "dims", "units", "versions",
                "inputs", "outputs", "files", "content_sha256"):
        if info.get(key) is not None:
            lines.append(f"{key}: {_fmt(info[key])}")
    lines += [f"ok: {c}" for c in info.get("checks", [])]
    lines += [f"warning: {w}" for w in info.get("warnings", [])]
    return "\n".join(lines)
