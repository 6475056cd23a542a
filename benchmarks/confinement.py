"""Does a rollout started outside the training range come back? Plain against confined.

Trains one particles2d model with the defaults on a few replicas (stage 1 once, then
stage 2 twice from the same stage-1 checkpoint: ``--no-confine`` and the default
confinement), starts rollouts at scaled states just outside the training range (every
component -1.5, or +1.2) and at a far one (every component +5), and prints, side by side,
where each rollout is after 1 and 10 horizons (the data's length) and the largest
|z_scaled| on the way. Everything is cached under ``--out``.

Example:
    $ python benchmarks/confinement.py --out runs/confinement
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import numpy as np


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="runs/confinement")
    p.add_argument("--replicas", type=int, default=8)
    p.add_argument("--epochs", type=int, default=2)
    args = p.parse_args(argv)
    import torch

    from openmm_closure import load_model
    from openmm_closure.md.simulate import simulate_ensemble
    from openmm_closure.learn.training import CHECKPOINT, TrainConfig, train

    torch.set_num_threads(1)
    out = Path(args.out)
    data = simulate_ensemble("particles2d", out / "data", args.replicas, seed=0, workers=1, progress=False)
    base = dict(data=str(data), epochs_stage1=args.epochs, epochs_stage2=args.epochs, threads=1, progress=False)
    stage1 = out / "stage1"
    if not (stage1 / CHECKPOINT).exists():
        train(TrainConfig(**base, out=str(stage1), stop_after=args.epochs))
    models = {}
    for name, confine in (("plain", False), ("confined", True)):
        d = out / name
        if not (d / "model.pt").exists():
            if d.exists():
                shutil.rmtree(d)
            shutil.copytree(stage1, d)
            train(TrainConfig(**base, out=str(d), resume=True, confine=confine))
        models[name] = load_model(d)
    frames = int(load_model(out / "plain").spec.manifest.get("n_frames", 301))
    print(f"particles2d, {args.replicas} replicas, {args.epochs} + {args.epochs} epochs; one horizon = "
          f"{frames - 1} steps; |z| in scaled units (training range [-1, 1], guard 1.25)")
    print("| start | model | z after 1 horizon | z after 10 horizons | max abs z |")
    print("|---|---|---|---|---|")
    for start in (-1.5, 1.2, 5.0):
        for name, model in models.items():
            z0 = torch.full((1, model.dim), start, dtype=torch.float64)
            traj = model.rollout(z0, 10 * (frames - 1)).numpy()[0]
            fmt = lambda v: "[" + ", ".join(f"{x:.3g}" for x in v) + "]"  # noqa: E731
            print(f"| {start:+g} | {name} | {fmt(traj[frames - 1])} | {fmt(traj[-1])} | "
                  f"{np.nanmax(np.abs(traj)):.3g} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
