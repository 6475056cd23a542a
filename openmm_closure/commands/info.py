"""``openmm-closure info``: what a model, export, exported file or dataset is, and whether it is intact."""

from __future__ import annotations

import argparse
import json

from ..info import describe, format_info

__all__ = ["configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the ``info`` arguments to ``parser``."""
    parser.add_argument("path", metavar="PATH",
                        help="a model directory, an export directory, one exported .pt/.pt2 file "
                             "or a dataset directory")
    parser.add_argument("--json", action="store_true",
                        help="print the description as JSON instead of text (default: text)")


def run(args: argparse.Namespace) -> int:
    """Execute ``openmm-closure info``; returns the exit code (a damaged path is an error line)."""
    info = describe(args.path)
    print(json.dumps(info, indent=2, sort_keys=True) if args.json else format_info(info))
    return 0
