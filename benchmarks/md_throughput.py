"""MD throughput of the three systems on every available platform, and OpenMM vs numpy.

Prints steps/s for each (system, platform) and, measured side by side in the same run,
the ratio of OpenMM's particles2d integration to a vectorised numpy implementation of
the same gradient flow (all pairs, forward Euler, N = 300).

    python benchmarks/md_throughput.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

from openmm_closure.md.platforms import available_platforms
from openmm_closure.systems import build
from openmm_closure.systems.particles2d import numpy_gradient_flow

# (system, build kwargs, steps timed on fast platforms, steps on Reference)
CASES = [
    ("particles2d", dict(n_particles=300), 300, 100),
    ("lj-mixing", dict(relax_steps=0), 2000, 200),
    ("polymer", dict(n_particles=300, equilibration_steps=0), 2000, 500),
]


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="timed blocks per case; the best is kept")
    args = parser.parse_args()
    platforms = available_platforms()
    print(f"platforms: {platforms}")
    print(f"{'system':<12} {'n':>5} {'platform':<10} {'steps/s':>10}")
    for name, kwargs, steps, ref_steps in CASES:
        spec = build(name, **kwargs)
        for platform in platforms:
            sim = spec.make_simulation(platform)
            n = ref_steps if platform == "Reference" else steps
            sim.step(10)  # warm-up: kernels compiled, neighbour lists built
            t = best_of(lambda: sim.step(n), args.repeats)
            print(f"{name:<12} {spec.n_particles:>5} {platform:<10} {n / t:>10.1f}")
            del sim

    # particles2d: OpenMM vs numpy, alternating blocks in one run
    spec = build("particles2d", n_particles=300)
    steps = 100
    print("\nparticles2d N = 300, OpenMM vs vectorised numpy (same equations, same steps)")
    numpy_t = best_of(lambda: numpy_gradient_flow(spec.positions, 4.0, 0.1, 0.02, steps), args.repeats)
    print(f"  numpy      {steps / numpy_t:10.1f} steps/s")
    for platform in platforms:
        sim = spec.make_simulation(platform)
        sim.step(5)
        t = best_of(lambda: sim.step(steps), args.repeats)
        print(f"  {platform:<10} {steps / t:10.1f} steps/s   OpenMM/numpy speed ratio {numpy_t / t:6.2f}")


if __name__ == "__main__":
    main()
