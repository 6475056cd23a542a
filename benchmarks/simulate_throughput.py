"""Trajectories per minute of ``simulate``: batched (B replicas in one Context) over unbatched.

For each system, the same ensemble (same seeds, same sizes) is simulated side by side in
one run: once with one Context per replica (``--batch 1``, ``--workers`` processes), then
with ``--batch B`` for every B asked for. Each run goes through
:func:`openmm_closure.md.simulate.simulate_ensemble` end to end (builds, MD, observables,
HDF5 files, manifest), into a fresh temporary directory. Prints trajectories per minute
and the ratio to the unbatched run measured in the same invocation.

    python benchmarks/simulate_throughput.py                              # all systems, CPU
    python benchmarks/simulate_throughput.py --systems particles2d --batches 1 8 64 --replicas 64
    python benchmarks/simulate_throughput.py --platform CUDA --replicas 1024 --batches 64 256 1024

Sizes: particles2d at the paper's size (N = 300, 300 steps, 301 frames); lj-mixing and
polymer shrunk to CPU scale (see CASES), the same for every B. On a shared machine the
load drifts: ``--rounds R`` interleaves the configurations R times and keeps each one's
fastest run.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from openmm_closure.md.simulate import simulate_ensemble

# system -> (n_particles, builder parameters)
CASES = {
    "particles2d": (300, dict(steps=300)),
    "lj-mixing": (None, dict(walls=[16.0, 16.0], relax_steps=200, steps=2000, report_interval=100)),
    "polymer": (50, dict(n_frames=51, steps=2000, equilibration_steps=200)),
}


def timed_run(system: str, replicas: int, batch: int, workers: int, platform: str, root: Path,
              steps: int | None = None, n_particles: int | None = None) -> float:
    """Seconds to simulate ``replicas`` replicas with ``batch`` per Context."""
    n, params = CASES[system]
    n = n if n_particles is None else n_particles
    if steps is not None:
        params = dict(params, steps=steps)
    out = root / f"{system}_b{batch}"
    t0 = time.perf_counter()
    simulate_ensemble(system, out, replicas, n_particles=n, seed=0, platform=platform, workers=workers,
                      progress=False, batch=batch, **params)
    seconds = time.perf_counter() - t0
    shutil.rmtree(out)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--systems", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--batches", nargs="+", type=int, default=[8, 64], help="batch sizes B > 1 to time")
    parser.add_argument("--replicas", type=int, default=64, help="replicas per run (default 64)")
    parser.add_argument("--workers", type=int, default=2, help="processes for every run (default 2)")
    parser.add_argument("--platform", default="CPU")
    parser.add_argument("--rounds", type=int, default=1, help="interleaved repeats; the fastest is kept")
    parser.add_argument("--steps", type=int, default=None, help="override the steps of every system")
    parser.add_argument("--n-particles", type=int, default=None, help="override the particles per replica")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="sim_throughput_"))
    print(f"platform {args.platform}, {args.replicas} replicas, {args.workers} worker(s)")
    print(f"{'system':12s} {'batch':>6s} {'seconds':>9s} {'traj/min':>10s} {'x unbatched':>12s}")
    try:
        for system in args.systems:
            configs = [1] + [b for b in args.batches if 1 < b <= args.replicas]
            best = {b: float("inf") for b in configs}
            for _ in range(args.rounds):
                for b in configs:
                    best[b] = min(best[b], timed_run(system, args.replicas, b, args.workers, args.platform,
                                                     root, args.steps, args.n_particles))
            for b in configs:
                print(f"{system:12s} {b:6d} {best[b]:9.1f} {60 * args.replicas / best[b]:10.1f} "
                      f"{best[1] / best[b]:12.2f}", flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
