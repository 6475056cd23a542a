"""A polymer trajectory dataset rendered as a dataset of pixel sets (SPEC §3C).

Each frame of each replica is rendered (:mod:`openmm_closure.video.frames`) and its ``K``
brightest pixels become the frame's set: the replica file stores them where a particle
dataset stores positions, ``(F, K, 3)`` with the columns (x, y, intensity) in [-1, 1],
one species (``"pixel"``). The observables (the extension) are copied from the source
trajectory, so the trainer and the evaluator read a rendered dataset with the same API as
a particle dataset; the manifest says ``"representation": "pixels"``,
``"spatial_dim": 3`` (3 input features) and records the source dataset and the render
parameters.

Example:
    >>> render_dataset("runs/polymer", "runs/polymer-pixels")        # doctest: +SKIP
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Optional

import numpy as np

from ..data import (
    ReplicaWriter,
    build_manifest,
    load,
    partial_filename,
    read_manifest,
    replica_filename,
    write_manifest,
)
from .frames import REFERENCE_SHAPE, RenderConfig, brightest_pixels, render_frames

__all__ = ["render_dataset", "default_render_config", "check_polymer_manifest", "pixel_dir_for", "PIXEL_SPECIES"]

PIXEL_SPECIES = "pixel"


def pixel_dir_for(source: str | os.PathLike) -> Path:
    """The default directory of a rendered dataset: ``SOURCE-pixels`` beside ``SOURCE``."""
    s = Path(source)
    return s.with_name(s.name + "-pixels")


def check_polymer_manifest(manifest: dict, where: str) -> None:
    """ValueError unless ``manifest`` describes a polymer trajectory dataset (positions in nm)."""
    if manifest.get("system") != "polymer":
        raise ValueError(f"{where} holds a {manifest.get('system')!r} dataset, not a polymer; "
                         "render needs `openmm-closure simulate polymer` output")
    if manifest.get("representation") == "pixels":
        raise ValueError(f"{where} is already a rendered pixel dataset; render its source "
                         f"({manifest.get('render', {}).get('source', '?')})")


def default_render_config(manifest: dict, scale: Optional[float] = None, n_pixels: int = 256, **kw) -> RenderConfig:
    """The view of a polymer dataset's chain (see :meth:`RenderConfig.for_chain`).

    ``scale`` None picks the smallest multiple of 0.1 of the reference's 100 x 500 px
    that gives at least 1.4 px per nm (the reference: 500 px for a 300-bead chain's
    ~340 nm field of view, 1.46 px/nm): 0.3 (30 x 150 px) for 32 beads, 1.0 for 300.
    """
    n = manifest.get("params", {}).get("n_particles")
    if n is None:
        ns = manifest.get("n_particles") or [0]
        n = int(ns[0])
    if scale is None:
        fov = RenderConfig.for_chain(int(n), scale=1.0).fov
        scale = max(0.1, math.ceil(round(10 * 1.4 * fov / REFERENCE_SHAPE[1], 6)) / 10)
    return RenderConfig.for_chain(int(n), scale=scale, n_pixels=n_pixels, **kw)


def render_dataset(
    source: str | os.PathLike,
    out: Optional[str | os.PathLike] = None,
    config: Optional[RenderConfig] = None,
    progress: bool = False,
) -> Path:
    """Render every frame of a polymer dataset into a pixel-set dataset.

    Arguments:
        source: a polymer dataset directory (``openmm-closure simulate polymer``).
        out: output directory (default ``SOURCE-pixels`` beside it); replica files are
            written under temporary names and renamed when complete.
        config: render parameters (default :func:`default_render_config`).
        progress: show a progress bar over replicas.

    Returns:
        The output directory; its replicas hold (F, K, 3) pixel sets in [-1, 1].
    """
    source = Path(source)
    manifest = read_manifest(source)
    check_polymer_manifest(manifest, str(source))
    ds = load(source)
    if "extension" not in ds.observables:
        raise ValueError(f"{source} has no 'extension' observable to carry over")
    if len(set(ds.n_particles)) != 1:
        raise ValueError(f"{source}: replicas have different chain lengths; render them separately")
    cfg = config or default_render_config(manifest)
    out = pixel_dir_for(source) if out is None else Path(out)
    if out.resolve() == source.resolve():
        raise ValueError("the rendered dataset must not overwrite its source; choose another --pixels")
    out.mkdir(parents=True, exist_ok=True)
    observables = list(manifest.get("observables") or sorted(ds.observables))
    from tqdm.auto import tqdm

    for i in tqdm(range(len(ds)), desc="render", unit="replica", disable=not progress):
        r = ds.replica(i)
        images = render_frames(r.positions, cfg)
        sets = np.stack([brightest_pixels(img, cfg.n_pixels) for img in images])  # (F, K, 3)
        tmp, final = out / partial_filename(i), out / replica_filename(i)
        with ReplicaWriter(tmp, np.zeros(cfg.n_pixels, dtype=np.int64), [PIXEL_SPECIES], observables) as w:
            w.append(sets, r.times, {k: r.observables[k] for k in observables})
        os.replace(tmp, final)
    from ..data.replica import content_sha256, read_replica

    m = {k: v for k, v in manifest.items()
         if k not in ("request", "complete", "versions", "format_version", "replica_sha256")}
    m.update(
        representation="pixels",
        spatial_dim=3,
        species=[PIXEL_SPECIES],
        n_particles=[cfg.n_pixels] * len(ds),
        observables=observables,
        render={"source": str(source), "source_request": manifest.get("request"),
                "source_n_particles": manifest.get("n_particles"), **cfg.to_dict()},
        complete=True,
        # the content of the pixel replicas written here (not the source's)
        replica_sha256=[content_sha256(read_replica(out / replica_filename(i))) for i in range(len(ds))],
    )
    write_manifest(out, build_manifest(**m))
    return out
