"""``openmm-closure evaluate``: roll a model out on test data and score it."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..evaluate.evaluation import evaluate, report_markdown
from ._device import add_device_argument
from ._scheduler import add_scheduler_arguments, scheduler_from_args

__all__ = ["configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the ``evaluate`` arguments to ``parser``."""
    a = parser.add_argument
    a("--model", required=True, help="model directory (openmm-closure train)")
    a("--data", required=True, help="test dataset directory (openmm-closure simulate)")
    a("--out", required=True, help="report directory to write (metrics.json, metrics.md, plots)")
    a("--samples", type=int, default=None, help="rollouts per test trajectory (SDE models; default 1)")
    a("--seed", type=int, default=0, help="seed of the SDE noise and the permutations")
    a("--permutations", type=int, default=6, help="particle orders in the permutation overlay (0: none)")
    a("--max-trajectories", type=int, default=None,
      help="score only the first N >= 1 test trajectories (default: all)")
    a("--overwrite", action="store_true", help="replace a report already in --out")
    a("--no-plots", action="store_true", help="write metrics only")
    add_device_argument(parser)
    a("--no-closure", default=None, metavar="MODEL",
      help="a model trained with --method no-closure on the same data: adds its calibration row")
    a("--no-diagnostic", action="store_true", help="skip the what-ẑ-explains diagnostic")
    add_scheduler_arguments(parser, "rollouts (groups of test trajectories; the metrics are computed here)",
                            workers=True)


def run(args: argparse.Namespace) -> int:
    """Execute ``openmm-closure evaluate``; prints the table and the report paths."""
    scheduler = scheduler_from_args(args, args.workers)
    if scheduler is None and args.workers != 1:
        raise ValueError("--workers sets the size of --scheduler local; evaluate runs in one process without it")
    res = evaluate(args.model, args.data, args.out, samples=args.samples, seed=args.seed,
                   permutations=args.permutations, max_trajectories=args.max_trajectories,
                   overwrite=args.overwrite,
                   plots=not args.no_plots, device=args.device, no_closure=args.no_closure,
                   diagnostic=not args.no_diagnostic, scheduler=scheduler)
    print(report_markdown(res), end="")
    for name, path in sorted(res.get("plots", {}).items()):
        print(f"{name}: {path}")
    print(f"metrics: {Path(args.out) / 'metrics.json'}")
    return 0
