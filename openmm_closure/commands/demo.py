"""``openmm-closure demo``: the whole pipeline on the 2D interacting particles, end to end."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..demo import DEFAULT, run_demo

__all__ = ["configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the ``demo`` arguments to ``parser``."""
    a = parser.add_argument
    a("--out", default="demo_out", help="output directory (a rerun resumes)")
    a("--quick", action="store_true", help="a seconds-scale smoke run of the same pipeline")
    a("--workers", type=int, default=2, help="simulation worker processes")
    a("--seed", type=int, default=0, help="seed of the simulations and the training")
    a("--n-particles", type=int, default=None, help=f"particles N (default: {DEFAULT['n_particles']})")
    a("--replicas", type=int, default=None, help=f"training replicas (default: {DEFAULT['replicas']})")
    a("--test-replicas", type=int, default=None, help=f"test replicas (default: {DEFAULT['test_replicas']})")
    a("--steps", type=int, default=None, help=f"Euler steps = frames - 1 (default: {DEFAULT['steps']})")
    a("--epochs-stage1", type=int, default=None, help=f"stage-1 epochs (default: {DEFAULT['epochs_stage1']})")
    a("--epochs-stage2", type=int, default=None, help=f"stage-2 epochs (default: {DEFAULT['epochs_stage2']})")
    a("--threads", type=int, default=1,
      help="torch CPU threads (1: these small networks gain little from more, "
           "and a busy machine loses a lot)")
    a("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    """Execute ``openmm-closure demo``: prints the sizes, the metric table and the plot paths."""
    from ..evaluate.evaluation import markdown_table

    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        import torch

        torch.set_num_threads(int(args.threads))
    over = {k: getattr(args, k) for k in ("n_particles", "replicas", "test_replicas", "steps",
                                          "epochs_stage1", "epochs_stage2")}
    res = run_demo(args.out, quick=args.quick, workers=args.workers, seed=args.seed,
                   progress=not args.no_progress, **over)
    s = res["sizes"]
    print(f"particles2d: N = {s['n_particles']}, {s['replicas']} training / {s['test_replicas']} test "
          f"replicas, {s['steps'] + 1} frames; epochs {s['epochs_stage1']} + {s['epochs_stage2']}")
    print(markdown_table([res]), end="")
    for name, path in sorted(res.get("plots", {}).items()):
        print(f"{name}: {path}")
    report = Path(args.out) / "report"
    print(f"table: {report / 'metrics.md'}")
    print("wall time: " + ", ".join(f"{k} {v:.0f} s" for k, v in res["seconds"].items()))
    sys.stdout.flush()
    return 0
