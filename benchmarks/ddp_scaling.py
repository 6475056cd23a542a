"""Stage-1 training throughput with 1 and 2 data-parallel processes (torchrun, gloo, CPU).

Side by side in one run, on the same synthetic particles2d-shaped dataset (n = 300
particles, 2D, one species): ``openmm-closure train`` in one process with 1 and with 2
torch threads, and ``torchrun --nproc_per_node 2`` with 1 thread per process (the same
2 cores as the 2-thread single process). Every run uses the same global batch, so all
take the same optimiser steps. Stage 1 only (``--epochs-stage2 0``), no validation;
frames/s = training sets per epoch / the median epoch time of ``history.json`` after the
first (warm-up) epoch, which excludes process start-up. The three runs are repeated
``--repeats`` times in turn (so a change in the machine's load touches all three) and
the median epoch time of each is printed. The ratio is to one process on one thread.

    python benchmarks/ddp_scaling.py [--replicas 8] [--frames 16] [--epochs 4] [--batch 16] [--repeats 2]

Flow of the small scale of ``benchmarks/paper_table.py`` by default (4 transforms,
hidden (64, 64), M = 256); ``--paper-flow`` uses the paper's (8 transforms, hidden
(128, 128), M = 600).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np


def make_dataset(path: Path, replicas: int, frames: int, n: int = 300, seed: int = 0) -> Path:
    """Gaussian clusters contracting towards their centres, with their mean pair energy."""
    from openmm_closure.data import ArrayDataset
    from openmm_closure.md.observables import mean_pair_energy

    rng = np.random.default_rng(seed)
    pos = np.zeros((replicas, frames, n, 3), dtype=np.float32)
    for r in range(replicas):
        x0 = rng.normal(scale=0.5, size=(n, 2))
        centre = x0.mean(0)
        for f in range(frames):
            pos[r, f, :, :2] = centre + (x0 - centre) * np.exp(-0.05 * f)
    ArrayDataset(pos, np.zeros(n, dtype=np.int64), np.arange(frames) * 0.02,
                 {"energy": mean_pair_energy(pos.astype(np.float64))},
                 {"system": "particles2d", "observables": ["energy"], "dt_frame": 0.02}).save(path)
    return path


def run(label: str, processes: int, threads: int, data: Path, out: Path, train_args: list) -> dict:
    args = ["train", "--data", str(data), "--out", str(out), "--threads", str(threads), *train_args]
    if processes == 1:
        cmd = [sys.executable, "-m", "openmm_closure.cli", *args]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes), "--standalone",
               "-m", "openmm_closure.cli", *args]
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = str(threads)
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if res.returncode != 0:
        raise SystemExit(f"{label} failed:\n{res.stderr[-3000:]}")
    hist = json.loads((out / "history.json").read_text())
    seconds = [e["seconds"] for e in hist["stage1"]][1:]  # the first epoch warms up
    return {"label": label, "processes": processes, "threads": threads, "epoch_s": statistics.median(seconds)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--replicas", type=int, default=8)
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--batch", type=int, default=16, help="global sets per step")
    ap.add_argument("--paper-flow", action="store_true")
    ap.add_argument("--repeats", type=int, default=2)
    a = ap.parse_args()
    flow = (["--flow-transforms", "8", "--flow-hidden", "128,128", "--samples", "600"] if a.paper_flow else
            ["--flow-transforms", "4", "--flow-hidden", "64,64", "--samples", "256"])
    train_args = ["--epochs-stage1", str(a.epochs), "--epochs-stage2", "0", "--batch-size", str(a.batch),
                  "--val-fraction", "0", "--device", "cpu", "--no-progress", *flow]
    sets = a.replicas * a.frames
    with tempfile.TemporaryDirectory() as tmp:
        data = make_dataset(Path(tmp) / "data", a.replicas, a.frames)
        setups = [("1 process x 1 thread", 1, 1), ("1 process x 2 threads", 1, 2),
                  ("torchrun 2 processes x 1 thread", 2, 1)]
        times = {label: [] for label, _, _ in setups}
        for k in range(a.repeats):
            for label, procs, threads in setups:
                out = Path(tmp) / f"run-{k}-{procs}-{threads}"
                times[label].append(run(label, procs, threads, data, out, train_args)["epoch_s"])
        rows = [{"label": label, "epoch_s": statistics.median(times[label])} for label, _, _ in setups]
    base = sets / rows[0]["epoch_s"]
    print(f"stage 1, {sets} sets of 300 particles an epoch, global batch {a.batch}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end")
    print(f"{'run':34s} {'epoch s':>8s} {'frames/s':>9s} {'ratio':>6s}")
    for r in rows:
        fps = sets / r["epoch_s"]
        print(f"{r['label']:34s} {r['epoch_s']:8.2f} {fps:9.1f} {fps / base:6.2f}")


if __name__ == "__main__":
    main()
