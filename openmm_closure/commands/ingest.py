"""``openmm-closure ingest``: a dataset from DatasetReporter files of any origin."""

from __future__ import annotations

import argparse

from ..data import ingest, load

__all__ = ["configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the ``ingest`` arguments to ``parser``."""
    parser.add_argument("files", nargs="+", metavar="FILE",
                        help="the .h5 files DatasetReporter wrote, one per replica, in replica order")
    parser.add_argument("--out", required=True, metavar="DATASET",
                        help="the dataset directory to write (train --data, evaluate --data take it)")
    parser.add_argument("--system", default="custom",
                        help="the system name recorded in the manifest (a name the package does not know "
                             "gets the generic model settings)")
    parser.add_argument("--regime", nargs="+", default=None, metavar="NAME",
                        help="the regime of the replicas: one name for all, or one per file (recorded)")
    parser.add_argument("--seeds", nargs="+", type=int, default=None, metavar="SEED",
                        help="each replica's random seed, one per file (recorded; 0, 1, ... when not given)")
    parser.add_argument("--frames", type=int, default=None,
                        help="keep the first N frames of every file (files of different lengths); "
                             "none: every file must hold the same number")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a dataset already in --out")


def run(args: argparse.Namespace) -> int:
    """Execute ``openmm-closure ingest``; returns the exit code."""
    out = ingest(args.files, args.out, system=args.system, regimes=args.regime, seeds=args.seeds,
                 frames=args.frames, overwrite=args.overwrite)
    print(f"{load(out)!r} written to {out}")
    return 0
