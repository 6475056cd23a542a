"""What an exported file needs and how to tell it was not changed: versions, input contracts,
and a digest of a TorchScript file's records.

Every exported file's metadata carries (see :func:`stamp`):

- ``versions``: ``torch``, ``libtorch_cxx11_abi`` (``torch._C._GLIBCXX_USE_CXX11_ABI``: a
  C++ host must link a libtorch of the same version and ABI), ``openmm``, ``openmm_closure``,
  ``python`` of the exporting environment.
- ``inputs`` / ``outputs``: the call the file expects, each argument with its shape, dtype
  and units (:data:`CONTRACTS`, by the file's ``kind``).
- ``records_sha256`` (TorchScript files): the sha256 of every record of the zip archive
  except the metadata itself and torch's per-save serialization id. An edited code, constant
  or weight record no longer matches; :func:`records_digest` recomputes it.

No openmm import (versions are read from the installed distributions).
"""

from __future__ import annotations

import hashlib
import io
import platform
import zipfile
from importlib import metadata as _dist
from typing import Optional

__all__ = ["runtime_versions", "CONTRACTS", "stamp", "records_digest", "DIGEST_KEY"]

DIGEST_KEY = "records_sha256"
#: records left out of the digest: the metadata (which holds the digest) and torch's
#: per-save random serialization id
_SKIP = ("/extra/metadata.json", "/.data/serialization_id")


def _version(dist: str) -> Optional[str]:
    try:
        return _dist.version(dist)
    except _dist.PackageNotFoundError:
        return None


def runtime_versions() -> dict:
    """Versions of this environment: ``{"torch", "libtorch_cxx11_abi", "openmm",
    "openmm_closure", "python"}`` (None where a package is not installed)."""
    import torch

    from . import __version__

    return {
        "torch": torch.__version__,
        "libtorch_cxx11_abi": bool(torch._C._GLIBCXX_USE_CXX11_ABI),
        "openmm": _version("openmm"),
        "openmm_closure": __version__,
        "python": platform.python_version(),
    }


def _arg(name: str, shape: list, dtype: str, units: str) -> dict:
    return {"name": name, "shape": shape, "dtype": dtype, "units": units}


_POS = _arg("positions", ["n", 3], "float32|float64", "nm")
_PLUMED_IN = [_arg("x", [1, "3n"], "float32", "nm (x, y, z of each atom)")]
#: kind -> {"inputs": [...], "outputs": [...]}: the call each exported kind expects
CONTRACTS = {
    "encoder": {"inputs": [_POS, _arg("types", ["n"], "int64", "species index")],
                "outputs": [_arg("zhat", ["d"], "weights dtype", "dimensionless")]},
    "dynamics": {"inputs": [_arg("z", ["...", "D"], "float32|float64", "scaled state")],
                 "outputs": [_arg("drift", ["...", "D"], "dtype of z", "per ps")]},
    "collective_variable": {"inputs": [_POS, _arg("closure_k", [], "float", "kJ/mol (optional)"),
                                       _arg("closure_target", [], "float", "raw zhat (optional)")],
                            "outputs": [_arg("energy", [], "dtype of positions", "kJ/mol")]},
    "closure_cv": {"inputs": [_arg("positions", ["N", 3], "float32|float64", "nm (every particle of the System)"),
                              _arg("box", [3, 3], "dtype of positions", "nm (optional; periodic exports)")],
                   "outputs": [_arg("zhat_c", [], "dtype of positions", "dimensionless")]},
    "observable_cv": {"inputs": [_arg("positions", ["N", 3], "float32|float64", "nm (every particle of the System)"),
                                 _arg("box", [3, 3], "dtype of positions", "nm (optional; periodic exports)")],
                      "outputs": [_arg("observable", [], "dtype of positions", "the observable's units")]},
    "plumed": {"inputs": _PLUMED_IN, "outputs": [_arg("zhat", [1, "d"], "float32", "dimensionless")]},
    "gromacs-colvars": {"inputs": _PLUMED_IN, "outputs": [_arg("zhat", [1, "d"], "float32", "dimensionless")]},
}


def stamp(metadata: dict) -> dict:
    """``metadata`` with ``versions`` and the ``inputs``/``outputs`` of its ``kind`` added
    (kept where already present)."""
    out = dict(metadata)
    out.setdefault("versions", runtime_versions())
    contract = CONTRACTS.get(str(out.get("kind")))
    if contract is not None and not out.get("aoti"):
        out.setdefault("inputs", contract["inputs"])
        out.setdefault("outputs", contract["outputs"])
    return out


def records_digest(data: bytes) -> str:
    """sha256 over the records of a TorchScript zip archive (``data``: the file's bytes),
    each record's name (without the archive's top folder) and content, in name order,
    leaving out the metadata and the serialization id.

    Raises:
        ValueError: not a zip archive, or a record fails its CRC check (truncated or edited).
    """
    h = hashlib.sha256()
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            for info in sorted(z.infolist(), key=lambda i: i.filename):
                if info.filename.endswith(_SKIP):
                    continue
                h.update(info.filename.split("/", 1)[-1].encode())
                h.update(z.read(info))
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise ValueError(f"not an intact TorchScript archive ({exc})") from exc
    return h.hexdigest()
