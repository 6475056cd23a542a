"""Surrogate vs MD over the same physical horizon, measured side by side in one run.

For particles2d and lj-mixing: trains a small model on a small simulated ensemble (a few
epochs: the timings do not depend on how well it is trained, the MMD does), then times

- MD over the horizon (one trajectory; lj-mixing also at the reference 529-atom size);
- the surrogate over the same horizon: one trajectory (encoding + compiled rollout), and
  a batched ensemble of ``--members`` members (cost per member);
- one lift back to particles (decoder draws, minimisation, equilibration, check);

and prints the speed-ups, with the ensemble's MMD (SPEC §3B, lj-mixing) against an MD
ensemble from the same initial configuration beside it (and the MMD of a frozen initial
state, the no-dynamics reference), or the energy's MRE against the MD trajectory
(particles2d, deterministic).

    python benchmarks/surrogate_speedup.py                 # about 5 minutes on 2 idle cores
    python benchmarks/surrogate_speedup.py --frames 50 --md-replicas 32

Where the time goes: the surrogate's one-trajectory cost is the encoding of the initial
configuration (observables + DeepSet, a few ms) plus the compiled rollout (tens of us a
step); MD's cost grows with the horizon, so the one-trajectory ratio grows with it.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np


def _time(fn, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _train(name: str, base: Path, params: dict, replicas: int, epochs: int, platform: str):
    from openmm_closure import load_model
    from openmm_closure.data import load
    from openmm_closure.md.simulate import simulate_ensemble
    from openmm_closure.learn.training import TrainConfig, train_on

    data = simulate_ensemble(name, base / f"data-{name}", replicas, seed=1, platform=platform, progress=False, **params)
    cfg = TrainConfig(data=str(data), out=str(base / f"model-{name}"), epochs_stage1=epochs, epochs_stage2=epochs,
                      samples=128, flow_transforms=2, flow_hidden=(32, 32), dynamics_hidden=(64, 64),
                      encoder_hidden=(32,), encoder_embed=16, batch_size=8, batch_size_stage2=32,
                      progress=False, device="cpu", seed=0)
    train_on(load(data), cfg)
    return load_model(base / f"model-{name}")


def _md_time(spec, steps: int, platform: str) -> float:
    sim = spec.make_simulation(platform)
    sim.step(10)  # warm up (kernels, neighbour lists)
    t0 = time.perf_counter()
    sim.step(steps)
    return time.perf_counter() - t0


def _md_ensemble(name, params, model, steps_per_frame, frames, replicas, platform, seed):
    """Observables (R, frames + 1, M) of R MD runs from one initial configuration, other noise seeds."""
    from openmm import unit

    from openmm_closure import systems

    out = []
    for r in range(replicas):
        spec = systems.build(name, seed=seed, **params)
        sim = spec.make_simulation(platform)
        sim.integrator.setRandomNumberSeed(1000 + r)
        rows = []
        for f in range(frames + 1):
            if f:
                sim.step(steps_per_frame)
            x = sim.context.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(unit.nanometer)
            rows.append(model.macro(np.asarray(x), spec.types))
        out.append(rows)
    return np.asarray(out)


def run_system(name: str, args, base: Path) -> dict:
    from openmm_closure import systems
    from openmm_closure.couple.handover import ClosureSimulation
    from openmm_closure.evaluate.metrics import mmd, mre
    from openmm_closure.couple.surrogate import SurrogateIntegrator

    if name == "particles2d":
        params = dict(n_particles=args.p2d_n, steps=100, report_interval=2)
        frames, replicas = args.p2d_frames, max(2, args.replicas // 2)
        ref = None
    else:
        params = dict(walls=(args.box, args.box), steps=2000, report_interval=200, relax_steps=1000)
        frames, replicas = args.frames, args.replicas
        ref = dict(relax_steps=0, steps=200 * frames, report_interval=200)  # 529 atoms, 32 x 32
    t0 = time.perf_counter()
    model = _train(name, base, params, replicas, args.epochs, args.platform)
    t_train = time.perf_counter() - t0
    spec = systems.build(name, seed=99, **params)
    steps_per_frame = spec.report_interval
    md_steps = steps_per_frame * frames
    horizon = frames * model.dt
    t_md = _md_time(spec, md_steps, args.platform)
    t_md_ref = _md_time(systems.build(name, seed=99, **ref), md_steps, args.platform) if ref else None

    integ = SurrogateIntegrator(model)
    pos, types = np.asarray(spec.positions), spec.types
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        integ.run(pos, types, frames, samples=1, seed=0)  # compile once
        t_one = _time(lambda: integ.run(pos, types, frames, samples=1, seed=0))
        z0 = integ.initial_state(pos, types)
        t_roll = _time(lambda: integ.run_state(z0, frames, samples=1, seed=0))
        t_ens = _time(lambda: integ.run_state(z0, frames, samples=args.members, seed=0))
        res = integ.run(pos, types, frames, samples=args.members, seed=0)

    # quality beside the speed
    md = _md_ensemble(name, params, model, steps_per_frame, frames,
                      1 if name == "particles2d" else args.md_replicas, args.platform, 99)
    m = model.macro_dim
    if name == "particles2d":
        quality = f"energy MRE vs the MD trajectory {mre(res.samples[:1, :, 0], md[:, :, 0]):.3g}"
    else:
        frozen = np.repeat(md[:, :1], md.shape[1], axis=1)
        quality = (f"MMD^2 vs {len(md)} MD runs {mmd(res.samples[:, :, :m], md):.3g} "
                   f"(frozen initial state: {mmd(frozen, md):.3g})")
    sim = spec.make_simulation(args.platform)
    cs = ClosureSimulation(sim, model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cs.extrapolate(steps=frames, samples=1, seed=0)
        t0 = time.perf_counter()
        lifted = cs.lift(seed=0)
        t_lift = time.perf_counter() - t0
    return dict(name=name, n=spec.n_particles, horizon=horizon, md_steps=md_steps, members=args.members, frames=frames, t_md=t_md, t_md_ref=t_md_ref,
                t_one=t_one, t_roll=t_roll, t_ens=t_ens, quality=quality, t_lift=t_lift,
                lift_dev=lifted.deviation, t_train=t_train, kind="SDE" if res.stochastic else "ODE")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=25, help="lj-mixing horizon in model frames (200 MD steps each)")
    p.add_argument("--p2d-frames", type=int, default=50, help="particles2d horizon in model frames (2 MD steps each)")
    p.add_argument("--members", type=int, default=1000, help="batched ensemble size")
    p.add_argument("--replicas", type=int, default=8, help="training replicas (particles2d: half)")
    p.add_argument("--md-replicas", type=int, default=16, help="MD runs beside the ensemble (MMD)")
    p.add_argument("--epochs", type=int, default=8, help="training epochs per stage")
    p.add_argument("--box", type=float, default=12.0, help="lj-mixing training box side, nm")
    p.add_argument("--p2d-n", type=int, default=300, help="particles2d particles")
    p.add_argument("--platform", default="CPU", help="OpenMM platform of the MD")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--systems", default="particles2d,lj-mixing")
    args = p.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} torch thread(s), OpenMM platform {args.platform}; "
          f"small models ({args.epochs} epochs on {args.replicas} replicas)")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.systems.split(","):
            r = run_system(name, args, Path(tmp))
            print(f"\n{name} ({r['kind']}, {r['n']} particles; model trained in {r['t_train']:.0f} s): "
                  f"horizon {r['horizon']:g} ps = {r['md_steps']} MD steps")
            print(f"  MD, one trajectory            {r['t_md']:10.4f} s")
            if r["t_md_ref"] is not None:
                print(f"  MD, reference size (529 atoms) {r['t_md_ref']:9.4f} s")
            print(f"  surrogate, one trajectory     {r['t_one']:10.6f} s (encode + rollout; rollout alone "
                  f"{r['t_roll']:.6f} s)  speed-up {r['t_md'] / r['t_one']:,.0f}x")
            if r["t_md_ref"] is not None:
                print(f"    vs the reference-size MD                      speed-up {r['t_md_ref'] / r['t_one']:,.0f}x")
            per = r["t_ens"] / args.members
            print(f"  surrogate, {args.members} members batched {r['t_ens']:8.4f} s = {per * 1e6:.2f} us/member  "
                  f"speed-up per member {r['t_md'] / per:,.0f}x"
                  + (f" ({r['t_md_ref'] / per:,.0f}x vs reference size)" if r["t_md_ref"] is not None else ""))
            print(f"    where the time goes: encoding the initial configuration {1e3 * (r['t_one'] - r['t_roll']):.2f} ms, "
                  f"compiled rollout {1e3 * r['t_roll']:.2f} ms ({1e6 * r['t_roll'] / r['frames']:.1f} us/step)")
            print(f"  ensemble quality: {r['quality']}")
            print(f"  one lift (draw, relax, check)  {r['t_lift']:9.4f} s (deviation {r['lift_dev']:.3g} scaled units)")


if __name__ == "__main__":
    main()
