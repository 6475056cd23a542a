"""The on-disk dataset format: version, file names, units, species names, software versions.

A dataset is a directory holding ``manifest.json`` and one HDF5 file per replica,
``replica_00000.h5``, ``replica_00001.h5``, ... (see :mod:`openmm_closure.data`).
Imports only numpy.
"""

from __future__ import annotations

import re
from typing import Sequence

import numpy as np

__all__ = ["FORMAT_VERSION", "MANIFEST", "OBSERVABLE_UNITS", "replica_filename", "partial_filename",
           "species_names_for", "software_versions"]

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
