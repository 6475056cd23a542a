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

import os
import time
from pathlib import Path

__all__ = ["DEFAULT", "QUICK", "run_demo"]

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
        The evaluation result (see :func:`openmm_closure.evaluate.evaluation.evaluate`) with
        ``sizes`` and ``seconds`` (wall time per phase) added.
    """
    from .evaluate.evaluation import evaluate
    from .md.simulate import simulate_ensemble
    from .learn.training import CHECKPOINT, TrainConfig, train

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
