"""``openmm-closure render``: a replica as a video (a polymer or any particle set), and the pixel dataset."""

from __future__ import annotations

import argparse
import os

from ..video.render import render_video, video_encoder

__all__ = ["configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the ``render`` arguments to ``parser``."""
    a = parser.add_argument
    a("dataset", help="dataset directory: a polymer (openmm-closure simulate polymer) or any 2D or 3D "
                      "particle set (openmm-closure ingest); --pixels and --model need a polymer")
    a("--out", default=None, help="video file to write (.gif with Pillow; .mp4 etc. need the [video] extra)")
    a("--replica", type=int, default=0, help="replica shown in the video")
    a("--model", default=None, help="model directory: draw its predicted extension band beside the video")
    a("--samples", type=int, default=32, help="rollouts for the predicted band")
    a("--video-scale", type=float, default=1.0, help="video image size relative to 100 x 500 px")
    a("--fps", type=float, default=10.0, help="frames per second")
    a("--every", type=int, default=1, help="show every k-th frame")
    a("--pixels", nargs="?", const="", default=None, metavar="DIR",
      help="also write the pixel-set dataset for training, into DIR (default: DATASET-pixels)")
    a("--scale", type=float, default=None,
      help="pixel dataset image size relative to 100 x 500 px (default: >= 1.4 px/nm, 0.3 for 32 beads)")
    a("--n-pixels", type=int, default=256, help="pixels kept per frame in the pixel dataset, K")
    a("--no-progress", action="store_true", help="no progress bar")
    a("--overwrite", action="store_true", help="replace an existing --out video")


def run(args: argparse.Namespace) -> int:
    """Execute ``openmm-closure render``."""
    from ..data import read_manifest
    from ..video.pixel_dataset import default_render_config, render_dataset

    if args.out is None and args.pixels is None:
        raise ValueError("nothing to do: give --out VIDEO and/or --pixels [DIR]")
    if args.out is not None:
        video_encoder(args.out)
        if os.path.lexists(args.out) and not args.overwrite:  # before the pixel dataset's work
            raise FileExistsError(f"--out {args.out} exists; pass --overwrite to replace it, or choose another --out")
    if args.pixels is not None:
        cfg = default_render_config(read_manifest(args.dataset), scale=args.scale, n_pixels=args.n_pixels)
        d = render_dataset(args.dataset, args.pixels or None, cfg, progress=not args.no_progress)
        print(f"pixel dataset: {d} ({cfg.height} x {cfg.width} px, K = {cfg.n_pixels})")
    if args.out is not None:
        p = render_video(args.dataset, args.replica, args.out, model=args.model, scale=args.video_scale,
                         fps=args.fps, samples=args.samples, every=args.every, overwrite=args.overwrite)
        print(f"video: {p}")
    return 0
