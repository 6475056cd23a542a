"""Time per frame of the pooled neighbour ratios R_AB/R_BA at 10^3, 10^4, 10^5 particles.

2D configurations at the mixing system's density (0.5 nm^-2), cutoff 2.5 nm, walled and
periodic. Prints the time per frame and its ratio to the 10^3 case (linear scaling gives
10 and 100).

Usage: python benchmarks/neighbour_scaling.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from openmm_closure.md.observables import neighbour_ratios


def time_per_frame(n: int, periodic: bool, repeats: int, rng: np.random.Generator) -> float:
    side = np.sqrt(n / 0.5)
    x = np.zeros((n, 3))
    x[:, :2] = rng.uniform(0, side, (n, 2))
    types = (x[:, 0] > side / 2).astype(np.int64)
    box = (side, side, side) if periodic else None
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        neighbour_ratios(x, types, cutoff=2.5, box=box)
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="frames timed per size (best is kept)")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    sizes = (10**3, 10**4, 10**5)
    for periodic in (False, True):
        times = [time_per_frame(n, periodic, args.repeats, rng) for n in sizes]
        label = "periodic" if periodic else "walled"
        for n, t in zip(sizes, times):
            print(f"{label:8s} n={n:>7d}  {t * 1e3:9.2f} ms/frame  {t / n * 1e9:7.1f} ns/particle  "
                  f"ratio to n=1e3: {t / times[0]:6.1f} (linear: {n // sizes[0]})")


if __name__ == "__main__":
    main()
