"""What one polymer replica costs: the small chain against the 300-bead reference, side by side.

Measures CPU-platform steps/s of both chains in the same run (one OpenMM thread each) and
multiplies by the steps a replica needs: production to Hencky strain 6 at Wi = 5, plus
three relaxation times of flow-free equilibration. The reference's tau is the Rouse
estimate (a lower bound with excluded volume; measuring it would need ~1e8 steps).

Example:
    $ OPENMM_CPU_THREADS=1 python benchmarks/polymer_cost.py
"""

from __future__ import annotations

import argparse
import sys
import time


def steps_per_second(n: int, repulsion: str, dt: float, steps: int, platform: str) -> float:
    from openmm_closure.systems import build

    spec = build("polymer", n_particles=n, repulsion=repulsion, dt=dt, weissenberg=5.0, strain=6.0, n_frames=2,
                 equilibration_steps=0, seed=1)
    sim = spec.make_simulation(platform)
    sim.step(200)  # warm-up
    t = time.perf_counter()
    sim.step(steps)
    return steps / (time.perf_counter() - t)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=4000)
    p.add_argument("--platform", default="CPU")
    args = p.parse_args(argv)
    from openmm_closure.systems import build

    rows = []
    for label, n, rep, dt in (("small", 20, "soft", 0.002), ("reference", 300, "wca", 0.0002)):
        spec = build("polymer", n_particles=n, repulsion=rep, dt=dt, weissenberg=5.0, strain=6.0, n_frames=101,
                     equilibration_steps=0)
        tau = spec.params["relaxation_time"]
        need = spec.n_steps + int(round(3 * tau / dt))
        sps = steps_per_second(n, rep, dt, args.steps, args.platform)
        rows.append((label, n, rep, dt, tau, spec.params["relaxation_time_source"], need, sps, need / sps))
    print("| chain | beads | repulsion | dt (ps) | tau (ps) | steps/replica | steps/s | s/replica |")
    print("|---|---|---|---|---|---|---|---|")
    for label, n, rep, dt, tau, src, need, sps, sec in rows:
        print(f"| {label} | {n} | {rep} | {dt} | {tau:.4g} ({src}) | {need:.3g} | {sps:,.0f} | {sec:,.0f} |")
    print(f"reference / small cost per replica: {rows[1][-1] / rows[0][-1]:.0f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
