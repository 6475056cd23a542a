"""What a dataset directory is: the checks that decide it (:func:`check_dataset`)."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np

from .format import _REPLICA_RE, FORMAT_VERSION, replica_filename
from .manifest import read_manifest

__all__ = ["check_dataset"]


def _replica_header(path: Path) -> dict:
    """Shapes, frame times, species names and observable names of one replica file."""
    import tables

    try:
        with tables.open_file(str(path), "r") as h:
            if "coordinates" not in h.root or "time" not in h.root:
                raise ValueError(f"{path} is not a finished replica (no /coordinates or /time); "
                                 "rerun the simulate command that writes this dataset")
            f, n, _ = h.root.coordinates.shape
            times = np.asarray(h.root.time[:], dtype=np.float64)
            names = None
            if "species" in h.root and "names" in h.root.species.attrs._v_attrnames:
                names = json.loads(h.root.species.attrs["names"])
            obs = [node.name for node in h.root.observables] if "observables" in h.root else []
    except ValueError:
        raise
    except Exception as exc:  # not HDF5, truncated, ...
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"{path} is not a readable replica file ({text[:200]})") from exc
    return {"n_frames": int(f), "n": int(n), "times": times, "species": names, "observables": obs}


def check_dataset(directory: str | os.PathLike) -> tuple[dict, list[Path], list[int], int]:
    """Read and validate a dataset directory: the one place that decides what a dataset is.

    The replica files are the truth; the manifest must agree with them. Checked: the
    format version, completeness (``complete: false`` is refused), every replica file
    readable and finished, the frame count, the particle number of every replica, the
    frame spacing ``dt_frame`` against the stored times, the species names and the
    observables. Keys the manifest lacks (``dt_frame``, ``observables``, ``species``,
    ``n_frames``, ``n_particles``) are filled in from the files, never from defaults.

    Arguments:
        directory: a dataset directory.

    Returns:
        ``(manifest, files, n_particles, n_frames)``: the completed manifest dict, the
        replica files in order, particles per replica, frames per replica.

    Raises:
        FileNotFoundError: no such directory, no manifest, or no replica files.
        ValueError: any disagreement, naming the file and the fix.
    """
    d = Path(directory)
    if not d.exists():
        raise FileNotFoundError(f"dataset directory {d} does not exist")
    if not d.is_dir():
        raise ValueError(f"{d} is not a dataset directory")
    manifest = read_manifest(d)
    fv = manifest.get("format_version")
    if fv != FORMAT_VERSION:
        raise ValueError(f"{d / 'manifest.json'}: key 'format_version' is {fv!r}, this version reads "
                         f"dataset format_version {FORMAT_VERSION}")
    if manifest.get("complete") is False:
        raise ValueError(f"{d} is an incomplete dataset (its manifest says complete: false: the "
                         "simulate run writing it was interrupted or failed); rerun the same "
                         "simulate command to finish it")
    found = sorted(int(m.group(1)) for p in d.iterdir() if (m := _REPLICA_RE.match(p.name)))
    n = 0
    while n < len(found) and found[n] == n:
        n += 1
    if n < len(found):
        warnings.warn(f"{d}: replica files are not contiguous; loading the first {n}")
    if n == 0:
        raise FileNotFoundError(f"{d}: no replica files")
    expected = manifest.get("n_particles")
    if isinstance(expected, list) and len(expected) > n:
        warnings.warn(f"{d}: manifest lists {len(expected)} replicas, {n} finished files found")
    files = [d / replica_filename(i) for i in range(n)]
    heads = [_replica_header(p) for p in files]
    nf = heads[0]["n_frames"]
    for p, h in zip(files, heads):
        if h["n_frames"] != nf:
            raise ValueError(f"{p} has {h['n_frames']} frames, {files[0].name} has {nf}: replicas "
                             "of one dataset share the frame schedule")
    if "n_frames" in manifest and manifest["n_frames"] != nf:
        raise ValueError(f"{d}: manifest says {manifest['n_frames']} frames, the replica files hold "
                         f"{nf}; the manifest belongs to another dataset")
    ns = [h["n"] for h in heads]
    if isinstance(expected, list):
        for i, (want, got) in enumerate(zip(expected, ns)):
            if want != got:
                raise ValueError(f"{files[i]} has {got} particles, the manifest says {want}; "
                                 "the manifest belongs to another dataset")
    elif expected is not None:
        raise ValueError(f"{d}: manifest n_particles must be a list, got {expected!r}")
    dt_files = float(heads[0]["times"][1] - heads[0]["times"][0]) if nf > 1 else 0.0
    dt = manifest.get("dt_frame")
    if dt is None:
        manifest["dt_frame"] = dt_files
    elif nf > 1:
        for p, h in zip(files, heads):
            steps = np.diff(h["times"])
            if not np.allclose(steps, dt, rtol=1e-3, atol=1e-6):
                raise ValueError(f"{p}: frames are {float(steps[0]):g} ps apart, the manifest says "
                                 f"dt_frame {dt!r}; the manifest belongs to another dataset")
    species = manifest.get("species")
    for p, h in zip(files, heads):
        if species is not None and h["species"] is not None and list(h["species"]) != list(species):
            raise ValueError(f"{p}: species {h['species']} differ from the manifest's {species}")
    if species is None and heads[0]["species"] is not None:
        manifest["species"] = list(heads[0]["species"])
    observables = manifest.get("observables")
    if observables is None:
        common = [k for k in heads[0]["observables"] if all(k in h["observables"] for h in heads)]
        manifest["observables"] = common
    else:
        for p, h in zip(files, heads):
            missing = [k for k in observables if k not in h["observables"]]
            if missing:
                raise ValueError(f"{p} lacks the observables {missing} listed in the manifest")
    manifest.setdefault("n_frames", nf)
    manifest.setdefault("n_particles", ns)
    return manifest, files, ns, nf
