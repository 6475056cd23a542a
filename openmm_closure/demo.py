"""``openmm-closure demo``: the whole pipeline on the 2D interacting particles, end to end.

1. simulate a training ensemble and an in-distribution test ensemble of particles2d
   (SPEC §3A) with OpenMM;
2. train the closure model (stage 1: DeepSet encoder + flow decoder; stage 2: ODE);
3. evaluate: encode each test trajectory's first frame, extrapolate, score the MRE of
   the mean pair energy, and write the report (table + plots).

The default size finishes in a few minutes on 2 CPU cores; ``--quick`` is a
seconds-scale smoke run (used by the tests). Everything is cached under ``--out``
(default ``demo_out``): rerunning resumes the simulations and the training.

Example:
    $ openmm-closure demo                  # about 3-5 minutes on 2 CPU cores
    $ openmm-closure demo --quick --out demo_quick
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

__all__ = ["DEFAULT", "QUICK", "run_demo", "configure", "run"]

#: the demo's default size (N particles, replicas, Euler steps, epochs, flow size)
DEFAULT = dict(n_particles=300, replicas=32, test_replicas=8, steps=300, epochs_stage1=12,
               epochs_stage2=300, frame_stride=10, flow_transforms=4, flow_hidden=(64, 64),
               samples=256, batch_size=16)
#: ``--quick``: a smoke run of the same pipeline (tens of seconds)
QUICK = dict(n_particles=40, replicas=6, test_replicas=3, steps=40, epochs_stage1=2,
             epochs_stage2=10, frame_stride=5, flow_transforms=1, flow_hidden=(16, 16),
             samples=64, batch_size=8)


def run_demo(out: str | os.PathLike = "demo_out", quick: bool = False, workers: int = 2,
             seed: int = 0, progress: bool = True, **overrides) -> dict:
    """Simulate, train and evaluate particles2d under ``out``.

    Arguments:
        out: output directory (datasets ``data/train``, ``data/test``; model ``model``;
            report ``report``).
        quick: use :data:`QUICK` sizes instead of :data:`DEFAULT`.
        workers: simulation worker processes.
        seed: base seed (test data uses ``seed + 1000``).
        progress: progress bars.
        **overrides: any key of :data:`DEFAULT`.

    Returns:
        The evaluation result (see :func:`openmm_closure.evaluation.evaluate`) with
        ``sizes`` and ``seconds`` (wall time per phase) added.
    """
    from .evaluation import evaluate
    from .simulate import simulate_ensemble
    from .training import CHECKPOINT, TrainConfig, train

    sizes = dict(QUICK if quick else DEFAULT)
    unknown = sorted(set(overrides) - set(sizes))
    if unknown:
        raise ValueError(f"unknown demo size option(s) {unknown}")
    sizes.update({k: v for k, v in overrides.items() if v is not None})
    out = Path(out)
    seconds = {}
    t0 = time.time()
    common = dict(n_particles=int(sizes["n_particles"]), steps=int(sizes["steps"]), platform="CPU",
                  workers=int(workers), progress=progress,
                  deterministic=False)  # all CPU threads per replica: the demo's timings
    train_dir = simulate_ensemble("particles2d", out / "data" / "train", int(sizes["replicas"]),
                                  seed=seed, **common)
    test_dir = simulate_ensemble("particles2d", out / "data" / "test", int(sizes["test_replicas"]),
                                 seed=seed + 1000, **common)
    seconds["simulate"] = time.time() - t0

    t1 = time.time()
    model_dir = out / "model"
    cfg = TrainConfig(
        data=str(train_dir), out=str(model_dir), epochs_stage1=int(sizes["epochs_stage1"]),
        epochs_stage2=int(sizes["epochs_stage2"]), frame_stride=int(sizes["frame_stride"]),
        flow_transforms=int(sizes["flow_transforms"]), flow_hidden=tuple(sizes["flow_hidden"]),
        samples=int(sizes["samples"]), batch_size=int(sizes["batch_size"]), seed=seed,
        resume=(model_dir / CHECKPOINT).exists(), progress=None if progress else False,
    )
    train(cfg)
    seconds["train"] = time.time() - t1

    t2 = time.time()
    result = evaluate(model_dir, test_dir, out / "report", seed=seed, overwrite=True)  # rerun resumes
    seconds["evaluate"] = time.time() - t2
    seconds["total"] = time.time() - t0
    result["sizes"] = sizes
    result["seconds"] = seconds
    return result


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the ``demo`` arguments to ``parser``."""
    a = parser.add_argument
    a("--out", default="demo_out", help="output directory (default demo_out; rerun resumes)")
    a("--quick", action="store_true", help="a seconds-scale smoke run of the same pipeline")
    a("--workers", type=int, default=2, help="simulation worker processes (default 2)")
    a("--seed", type=int, default=0)
    a("--n-particles", type=int, default=None, help=f"particles N (default {DEFAULT['n_particles']})")
    a("--replicas", type=int, default=None, help=f"training replicas (default {DEFAULT['replicas']})")
    a("--test-replicas", type=int, default=None, help=f"test replicas (default {DEFAULT['test_replicas']})")
    a("--steps", type=int, default=None, help=f"Euler steps = frames - 1 (default {DEFAULT['steps']})")
    a("--epochs-stage1", type=int, default=None, help=f"default {DEFAULT['epochs_stage1']}")
    a("--epochs-stage2", type=int, default=None, help=f"default {DEFAULT['epochs_stage2']}")
    a("--threads", type=int, default=1,
      help="torch CPU threads (default 1: these small networks gain little from more, "
           "and a busy machine loses a lot)")
    a("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    """Execute ``openmm-closure demo``: prints the sizes, the metric table and the plot paths."""
    from .evaluation import markdown_table

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
