"""MD, the closure variables reported live, the hand-over to the learned SDE, and back.

A complete script on the LJ binary mixture: it simulates a small training ensemble and
trains a small model (or takes ``--model``), exports the encoder, then runs one new
simulation in which

1. a ``ClosureReporter`` writes ẑ (from ``encoder.pt``, the TorchScript file) every frame;
2. ``ClosureSimulation.step`` runs MD, writing the macroscopic timeline;
3. ``extrapolate`` hands over to the learned SDE for a horizon, as an ensemble;
4. ``lift`` draws particles from the decoder for one member, relaxes them, and MD resumes;
5. MD and the surrogate's mean ± std of R_AB are plotted on one time axis (PNG).

    python examples/closure_handover.py --out handover_out
    python examples/closure_handover.py --out handover_out --model models/mix   # a trained model

Files in ``--out``: ``data/`` and ``model/`` (when trained here), ``export/``,
``closure.csv`` (the reporter), ``timeline.csv`` (MD and surrogate rows, ``source``
column), ``timeline.png``.
"""

import argparse
import csv
import warnings
from pathlib import Path

import numpy as np


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--model", default=None, help="a trained lj-mixing model directory (default: train one here)")
    p.add_argument("--box", type=float, default=10.0, help="walled box side in nm (the training box too)")
    p.add_argument("--replicas", type=int, default=8, help="training replicas (when training here)")
    p.add_argument("--train-frames", type=int, default=26, help="frames per training replica")
    p.add_argument("--epochs", type=int, default=15, help="stage-1 epochs (stage 2: the same)")
    p.add_argument("--md-frames", type=int, default=10, help="MD frames before the hand-over")
    p.add_argument("--horizon-frames", type=int, default=40, help="surrogate horizon in frames")
    p.add_argument("--after-frames", type=int, default=10, help="MD frames after the lift")
    p.add_argument("--samples", type=int, default=64, help="surrogate ensemble size")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--platform", default="auto", help="auto, CUDA, OpenCL, CPU or Reference")
    args = p.parse_args(argv)

    from openmm_closure import load_model, systems
    from openmm_closure.hosts.export import export_model
    from openmm_closure.couple.handover import ClosureSimulation
    from openmm_closure.reporters import ClosureReporter

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    interval = 20
    params = dict(walls=(args.box, args.box), report_interval=interval, relax_steps=500)
    if args.model is None:
        from openmm_closure.data import load
        from openmm_closure.md.simulate import simulate_ensemble
        from openmm_closure.learn.training import TrainConfig, train_on

        data = simulate_ensemble("lj-mixing", out / "data", args.replicas, seed=args.seed, progress=False,
                                 platform=args.platform, steps=interval * (args.train_frames - 1), **params)
        cfg = TrainConfig(data=str(data), out=str(out / "model"), epochs_stage1=args.epochs,
                          epochs_stage2=args.epochs, samples=128, flow_transforms=3, flow_hidden=(32, 32),
                          dynamics_hidden=(32, 32), encoder_hidden=(32,), encoder_embed=16, batch_size=8,
                          batch_size_stage2=32, progress=False, device="cpu", seed=args.seed)
        train_on(load(data), cfg)
        model_dir = out / "model"
        print(f"trained a small model on {args.replicas} replicas in {out / 'model'}")
    else:
        model_dir = Path(args.model)
    model = load_model(model_dir)
    export_model(model_dir, out / "export")

    # a new simulation of the same system (another seed): a plain openmm.app.Simulation
    spec = systems.build("lj-mixing", seed=args.seed + 1000, steps=interval, **params)
    simulation = spec.make_simulation(args.platform)
    reporter = ClosureReporter(out / "closure.csv", interval, out / "export" / "encoder.pt")
    simulation.reporters.append(reporter)
    cs = ClosureSimulation(simulation, model, file=out / "timeline.csv", reportInterval=interval)

    cs.step(args.md_frames * interval)
    print(f"MD: {args.md_frames * interval} steps, ẑ reported live in {out / 'closure.csv'}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = cs.extrapolate(steps=args.horizon_frames, samples=args.samples, seed=args.seed)
    for w in caught:
        print(f"warning: {w.message}")
    print(f"surrogate: {args.samples} members over {res.times[-1]:g} ps")
    print(res.summary())
    lifted = cs.lift(member=0, seed=args.seed)
    print(f"lift: observables {np.round(lifted.observables, 4).tolist()} for the target "
          f"{np.round(lifted.target, 4).tolist()} (deviation {lifted.deviation:.3g} scaled units, "
          f"tolerance {lifted.tolerance:g}), energy {lifted.energy:.4g} kJ/mol")
    cs.step(args.after_frames * interval)
    cs.close()
    reporter.close()

    with open(out / "timeline.csv") as f:
        rows = list(csv.DictReader(f))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    for name, color in (("R_AB", "C0"), ("R_BA", "C1")):
        for source, style in (("md", "-"), ("surrogate", "--")):
            # MD before and after the hand-over as separate segments
            seg = [r for r in rows if r["source"] in ((source, "lift") if source == "md" else (source,))]
            t = np.array([float(r["time_ps"]) for r in seg])
            m = np.array([float(r[f"{name}_mean"]) for r in seg])
            sd = np.array([float(r[f"{name}_std"]) for r in seg])
            if source == "md":
                gap = np.where(np.diff(t) > 1.5 * float(model.dt))[0]
                for a, b in zip(np.r_[0, gap + 1], np.r_[gap + 1, len(t)]):
                    ax.plot(t[a:b], m[a:b], style, color=color, label=f"{name} MD" if a == 0 else None)
            else:
                ax.plot(t, m, style, color=color, label=f"{name} surrogate mean")
                ax.fill_between(t, m - sd, m + sd, color=color, alpha=0.2)
    ax.set_xlabel("time (ps)")
    ax.set_ylabel("neighbour ratio")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(out / "timeline.png", dpi=120)
    print(f"wrote {out / 'timeline.csv'} and {out / 'timeline.png'}")


if __name__ == "__main__":
    main()
