"""Replicas per minute of ``simulate`` on Dask against the process pool, and the paper-scale bill.

Part 1, side by side in one run: the same particles2d ensemble (same seeds, sizes and
platform) simulated end to end by :func:`openmm_closure.md.simulate.simulate_ensemble`

- with the process pool, ``workers`` = 1 (in this process) and 2;
- with ``scheduler="local"``: a LocalCluster of 1 and 2 worker processes that
  ``simulate`` starts and stops (its start-up counted);
- on a LocalCluster of 1 and 2 workers already running (a ``distributed.Client``
  passed in: the per-task overhead alone).

It prints replicas per minute and each run's ratio to the process pool with as many
workers. ``--rounds R`` interleaves the configurations R times and keeps each one's
fastest run (a shared machine drifts).

Part 2, the projection: the measured cost of one replica at the paper's size, times
10,000 replicas (the paper's training sets), divided over N workers (one core each),
N = 1, 16, 64, 256, 1024. The cost of one replica:

- particles2d: ``--paper-replicas`` replicas at the paper's size (N = 300, 300 steps, 301
  frames) run one after the other in this process, seconds per replica (part 1 may use a
  smaller size to get more rounds in);
- lj-mixing: the reference box (32 x 32, 529 atoms, NVE relaxation of 3,000 steps, then
  100,000 NVT steps with a frame every 200) is too long to time here, so two short
  replicas of the same box and relaxation with ``steps`` = S1 and S2 (a frame every 200
  steps) are timed; the cost is a + b S (relaxation, set-up and files in a; MD and per-frame
  observables in b, since the frames grow with the steps) and is extrapolated to
  S = 100,000.

The projection assumes that N workers each keep the measured per-replica cost (one core a
worker, no shared-filesystem bottleneck; the replica files are 10-100 MB a thousand);
the measured 2-worker efficiency of part 1 is printed beside it.

    python benchmarks/scale_out.py                                    # defaults (CPU, ~10 min)
    python benchmarks/scale_out.py --replicas 8 --n-particles 100 --steps 100 --rounds 2
    python benchmarks/scale_out.py --platform CUDA                    # the projection on a GPU
"""

from __future__ import annotations

import argparse
import logging
import shutil
import tempfile
import time
from pathlib import Path

from openmm_closure.md.simulate import simulate_ensemble

PAPER_REPLICAS = 10_000
LJ_REFERENCE_STEPS = 100_000


def timed(system: str, out: Path, replicas: int, **kw) -> float:
    """Seconds to simulate ``replicas`` replicas into a fresh ``out`` (removed after)."""
    t0 = time.perf_counter()
    simulate_ensemble(system, out, replicas, seed=0, progress=False, **kw)
    seconds = time.perf_counter() - t0
    shutil.rmtree(out)
    return seconds


def throughput(args, root: Path) -> dict[tuple[str, int], float]:
    """Part 1: best seconds of every (configuration, workers)."""
    from distributed import Client, LocalCluster

    kw = dict(n_particles=args.n_particles, platform=args.platform, steps=args.steps)
    best: dict[tuple[str, int], float] = {}
    clusters = {w: LocalCluster(n_workers=w, threads_per_worker=1, processes=True, dashboard_address=":0",
                                silence_logs=logging.ERROR) for w in (1, 2)}
    clients = {w: Client(c) for w, c in clusters.items()}
    try:
        for w, c in clients.items():  # warm the running workers' imports once
            timed("particles2d", root / "warm", w, scheduler=c, **dict(kw, steps=2))
        for _ in range(args.rounds):
            for w in (1, 2):
                runs = {"process pool": dict(workers=w), "LocalCluster, started by simulate":
                        dict(workers=w, scheduler="local"), "LocalCluster, running": dict(scheduler=clients[w])}
                for name, extra in runs.items():
                    s = timed("particles2d", root / "p2d", args.replicas, **kw, **extra)
                    best[name, w] = min(best.get((name, w), float("inf")), s)
    finally:
        for c in clients.values():
            c.close()
        for c in clusters.values():
            c.close()
    return best


def p2d_cost(args, root: Path) -> float:
    """Part 2: seconds of one particles2d replica at the paper's size (best of the rounds)."""
    k = args.paper_replicas
    return min(timed("particles2d", root / "p2d_paper", k, platform=args.platform, n_particles=300, steps=300)
               for _ in range(args.rounds)) / k


def lj_cost(args, root: Path) -> tuple[float, float, float, list[tuple[int, float]]]:
    """Part 2: (a, b, seconds of one reference replica, [(steps, seconds)])."""
    measured = []
    for steps in args.lj_steps:
        s = min(timed("lj-mixing", root / "lj", 1, platform=args.platform, steps=steps, report_interval=200)
                for _ in range(args.rounds))
        measured.append((steps, s))
    (s1, t1), (s2, t2) = measured[0], measured[-1]
    b = (t2 - t1) / (s2 - s1)
    a = t1 - b * s1
    return a, b, a + b * LJ_REFERENCE_STEPS, measured


def _duration(seconds: float) -> str:
    """``29 s``, ``8.1 min``, ``12.3 h`` or ``4.2 d``."""
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= 2 * size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replicas", type=int, default=8, help="particles2d replicas per run (default 8)")
    parser.add_argument("--n-particles", type=int, default=300, help="particles2d N (default 300, the paper's)")
    parser.add_argument("--steps", type=int, default=300, help="particles2d steps (default 300, the paper's)")
    parser.add_argument("--lj-steps", type=int, nargs=2, default=[1000, 3000], metavar=("S1", "S2"),
                        help="steps of the two short lj-mixing replicas (default 1000 3000)")
    parser.add_argument("--paper-replicas", type=int, default=2,
                        help="particles2d replicas at the paper's size timed for the projection (default 2)")
    parser.add_argument("--platform", default="CPU")
    parser.add_argument("--rounds", type=int, default=1, help="interleaved repeats; the fastest is kept")
    parser.add_argument("--workers-projected", type=int, nargs="+", default=[1, 16, 64, 256, 1024])
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="scale_out_"))
    try:
        print(f"particles2d N = {args.n_particles}, {args.steps} steps, {args.replicas} replicas, "
              f"platform {args.platform}, best of {args.rounds}")
        best = throughput(args, root)
        print(f"{'runner':36s} {'workers':>7s} {'seconds':>8s} {'replicas/min':>12s} {'x pool':>7s}")
        for (name, w), s in sorted(best.items(), key=lambda kv: (kv[0][1], kv[0][0] != "process pool")):
            print(f"{name:36s} {w:7d} {s:8.1f} {60 * args.replicas / s:12.1f} "
                  f"{best['process pool', w] / s:7.2f}", flush=True)
        for name in ("process pool", "LocalCluster, started by simulate", "LocalCluster, running"):
            print(f"2 workers over 1, {name}: {best[name, 1] / best[name, 2]:.2f}x")
        efficiency = best["LocalCluster, running", 1] / best["LocalCluster, running", 2] / 2

        a, b, lj_ref, measured = lj_cost(args, root)
        print("\nlj-mixing reference box, one replica: " + ", ".join(f"{st} steps {s:.1f} s" for st, s in measured)
              + f" -> {a:.1f} s + {1000 * b:.2f} s per 1,000 steps -> {lj_ref:.0f} s at {LJ_REFERENCE_STEPS:,} steps")
        p2d = p2d_cost(args, root)
        print(f"particles2d one replica at the paper's size (N = 300, 300 steps, in this process): {p2d:.2f} s")
        print(f"\n{PAPER_REPLICAS:,} replicas on N workers, wall clock ({args.platform}; ideal scaling, "
              f"measured 2-worker efficiency {efficiency:.2f}):")
        print(f"{'workers':>8s} {'particles2d':>12s} {'lj-mixing':>12s}")
        for n in args.workers_projected:
            print(f"{n:8d} {_duration(PAPER_REPLICAS * p2d / n):>12s} {_duration(PAPER_REPLICAS * lj_ref / n):>12s}")
        print(f"(CPU-hours in all: particles2d {PAPER_REPLICAS * p2d / 3600:.1f}, "
              f"lj-mixing {PAPER_REPLICAS * lj_ref / 3600:.0f})")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
