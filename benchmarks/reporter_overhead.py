"""MD wall time with MacroReporter + DatasetReporter over MD alone, measured side by side.

The LJ binary mixture (529 atoms, reporting every 200 steps: the reference interval) on
one Simulation: blocks of MD alone and MD with both reporters attached alternate, and the
best block of each kind is compared. Target: ratio <= 1.05.

Usage: python benchmarks/reporter_overhead.py [--platform CPU] [--steps 2000] [--blocks 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from openmm_closure.reporters import DatasetReporter, MacroReporter
from openmm_closure.systems import build


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--platform", default="CPU")
    parser.add_argument("--steps", type=int, default=2000, help="MD steps per block")
    parser.add_argument("--blocks", type=int, default=3, help="blocks of each kind")
    parser.add_argument("--interval", type=int, default=200, help="report interval (steps)")
    args = parser.parse_args()

    spec = build("lj-mixing", seed=0, relax_steps=200, relax_platform=args.platform)
    sim = spec.make_simulation(args.platform)
    sim.step(args.interval)  # warm up
    obs_params = {k: spec.params[k] for k in ("cutoff", "box") if k in spec.params}
    plain, reported = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for b in range(args.blocks):
            sim.reporters = []
            t0 = time.perf_counter()
            sim.step(args.steps)
            plain.append(time.perf_counter() - t0)

            macro = MacroReporter(Path(tmp) / f"macro{b}.csv", args.interval, observables=spec.observables,
                                  types=spec.types, **obs_params)
            data = DatasetReporter(Path(tmp) / f"traj{b}.h5", args.interval, types=spec.types,
                                   observables=spec.observables, **obs_params)
            sim.reporters = [macro, data]
            t0 = time.perf_counter()
            sim.step(args.steps)
            reported.append(time.perf_counter() - t0)
            macro.close()
            data.close()
            assert data.n_frames == args.steps // args.interval
    name = sim.context.getPlatform().getName()
    print(f"lj-mixing n={spec.n_particles} platform={name} steps/block={args.steps} "
          f"interval={args.interval} blocks={args.blocks}")
    print(f"MD alone:           best {min(plain):.3f} s  ({args.steps / min(plain):.0f} steps/s)  all {[round(t, 3) for t in plain]}")
    print(f"MD + both reporters: best {min(reported):.3f} s  all {[round(t, 3) for t in reported]}")
    print(f"ratio (with reporters / MD alone): {min(reported) / min(plain):.3f}  (target <= 1.05)")


if __name__ == "__main__":
    main()
