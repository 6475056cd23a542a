"""Well-tempered metadynamics along a learned closure variable, with its free-energy profile.

The closure variable ẑ_c of a particles2d model (``openmm-closure train``; without
``--model`` the script simulates a small ensemble and trains a tiny model first) is
exported with ``export --cv`` and becomes an OpenMM collective variable: a
``BiasVariable`` for ``openmm.app.Metadynamics``. The particles2d system (pair energy
(1/N) Σ P(r), SPEC §3A) then runs as Langevin dynamics in 2D at kT (``--kT``, kJ/mol;
T = kT / R), Gaussian hills are deposited on ẑ_c every ``--pace`` steps (well-tempered,
bias factor ``--bias-factor``), and the free energy F(ẑ_c) estimated by the bias is
written to ``OUT/free_energy.csv`` and plotted to ``OUT/free_energy.png``.

    python examples/metadynamics_closure.py --out meta_p2d --steps 20000
    python examples/metadynamics_closure.py --out meta_p2d --model models/p2d --component 1

In any OpenMM script the same two lines make a learned CV::

    from openmm_closure.couple.torchforce import closure_bias_variable
    cv = closure_bias_variable("exported/p2d/closure_cv_0.pt", lo, hi, width)
    meta = Metadynamics(system, [cv], temperature, biasFactor, height, frequency)
"""

import argparse
import csv
import warnings
from pathlib import Path

import numpy as np
import openmm
from openmm import app, unit

from openmm_closure import load_model, systems
from openmm_closure.hosts.export import export_model
from openmm_closure.md.integrators import WalledLangevinIntegrator
from openmm_closure.md.platforms import select_platform
from openmm_closure.couple.torchforce import closure_bias_variable


def train_small_model(out: Path, n_particles: int, replicas: int, steps: int, epochs: int, seed: int) -> Path:
    """Simulate ``replicas`` particles2d runs and train a tiny model on them (seconds)."""
    import torch

    from openmm_closure.data import load
    from openmm_closure.md.simulate import simulate_ensemble
    from openmm_closure.learn.training import TrainConfig, train_on

    torch.set_num_threads(1)
    data = simulate_ensemble("particles2d", out / "data", replicas, seed=seed, platform="CPU", progress=False,
                             n_particles=n_particles, steps=steps, report_interval=2)
    cfg = TrainConfig(data="", out=str(out / "model"), epochs_stage1=epochs, epochs_stage2=max(1, epochs // 2),
                      samples=64, flow_transforms=2, flow_hidden=(16, 16), dynamics_hidden=(16, 16),
                      encoder_hidden=(16,), encoder_embed=8, batch_size=8, batch_size_stage2=16,
                      val_fraction=0.2, progress=False, device="cpu", seed=seed)
    train_on(load(data), cfg)
    return out / "model"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="output directory (model, export, free_energy.csv/.png)")
    p.add_argument("--model", default=None,
                   help="a trained particles2d model directory (default: simulate and train a tiny one)")
    p.add_argument("--component", type=int, default=0, help="closure component biased (default: 0)")
    p.add_argument("--n-particles", type=int, default=24, help="particles in the biased system (default: 24)")
    p.add_argument("--steps", type=int, default=5000, help="metadynamics MD steps (default: 5000)")
    p.add_argument("--dt", type=float, default=0.005, help="MD step in ps (default: 0.005)")
    p.add_argument("--kT", type=float, default=1.0, help="thermal energy in kJ/mol (default: 1.0)")
    p.add_argument("--friction", type=float, default=1.0, help="Langevin friction in 1/ps (default: 1.0)")
    p.add_argument("--pace", type=int, default=50, help="steps between hills (default: 50)")
    p.add_argument("--height", type=float, default=0.3, help="initial hill height in units of kT (default: 0.3)")
    p.add_argument("--bias-factor", type=float, default=5.0, help="well-tempered bias factor (default: 5.0)")
    p.add_argument("--grid", type=int, default=101, help="grid points of the bias along zhat (default: 101)")
    p.add_argument("--train-replicas", type=int, default=6, help="replicas simulated for the tiny model (default: 6)")
    p.add_argument("--train-steps", type=int, default=40, help="steps per training replica (default: 40)")
    p.add_argument("--epochs", type=int, default=8, help="stage-1 epochs of the tiny model (default: 8)")
    p.add_argument("--platform", default="auto", help="auto, CUDA, OpenCL, CPU or Reference (default: auto)")
    p.add_argument("--seed", type=int, default=1, help="seed of the simulations and the training (default: 1)")
    args = p.parse_args()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model_dir = Path(args.model) if args.model else train_small_model(
        out, args.n_particles, args.train_replicas, args.train_steps, args.epochs, args.seed)
    model = load_model(model_dir)
    paths = export_model(model_dir, out / "export", cv=True)
    cv_file = paths["cv"][args.component] if args.component < len(paths["cv"]) else None
    if cv_file is None:
        raise SystemExit(f"--component {args.component}: the model has {model.latent_dim} closure variables")

    # the biased system: particles2d's pair energy, Langevin dynamics in the xy plane at kT
    spec = systems.build("particles2d", n_particles=args.n_particles, steps=1, seed=args.seed)
    types = np.asarray(spec.types)
    z_start = float(model.encode(spec.positions, types)[args.component])
    # the grid: ẑ over configurations from compact to spread (the range the bias will explore)
    rng = np.random.default_rng(args.seed)
    centred = np.asarray(spec.positions) - np.asarray(spec.positions).mean(0)
    with warnings.catch_warnings():  # the spread end may leave the training range: a grid edge only
        warnings.simplefilter("ignore", UserWarning)
        zs = [float(model.encode(centred * s + rng.normal(scale=0.05, size=centred.shape) * [1, 1, 0],
                                 types)[args.component]) for s in np.linspace(0.3, 2.5, 12)] + [z_start]
    lo, hi = min(zs), max(zs)
    pad = 0.5 * (hi - lo) + 1e-3
    lo, hi = lo - pad, hi + pad
    width = (hi - lo) / 25
    bias_var = closure_bias_variable(cv_file, lo, hi, width, gridWidth=args.grid)
    temperature = args.kT / unit.MOLAR_GAS_CONSTANT_R.value_in_unit(unit.kilojoule_per_mole / unit.kelvin)
    meta = app.Metadynamics(spec.system, [bias_var], temperature * unit.kelvin, args.bias_factor,
                            args.height * args.kT * unit.kilojoule_per_mole, args.pace)
    far = 1e4
    integrator = WalledLangevinIntegrator(args.dt, args.n_particles, (-far, -far, -far), (far, far, far),
                                          kT=args.kT, friction=args.friction)
    integrator.setRandomNumberSeed(args.seed)
    platform = select_platform(args.platform)
    simulation = app.Simulation(spec.topology, spec.system, integrator, platform)
    simulation.context.setPositions(spec.positions)
    simulation.context.setVelocitiesToTemperature(temperature * unit.kelvin, args.seed)

    print(f"platform {platform.getName()}, {args.n_particles} particles, kT {args.kT:g} kJ/mol "
          f"(T {temperature:.2f} K); CV {cv_file.name}, grid [{lo:.4f}, {hi:.4f}], hill width {width:.4f}")
    chunks = 5
    trace = []
    for i in range(chunks):
        meta.step(simulation, args.steps // chunks)
        z = float(meta.getCollectiveVariables(simulation)[0])
        trace.append(z)
        print(f"step {(i + 1) * (args.steps // chunks):7d}  zhat_{args.component} {z: .5f}")
    grid = np.linspace(lo, hi, args.grid)
    fe = np.asarray(meta.getFreeEnergy().value_in_unit(unit.kilojoule_per_mole), dtype=float).reshape(-1)
    fe = fe - fe.min()
    if not np.all(np.isfinite(fe)):
        raise SystemExit("the free-energy estimate is not finite")
    hills = (args.steps // chunks) * chunks // args.pace
    with open(out / "free_energy.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow([f"zhat_{args.component}", "free_energy_kJ_per_mol"])
        w.writerows(zip(grid.tolist(), fe.tolist()))
    print(f"{hills} hills deposited; free energy spans {fe.max():.4g} kJ/mol over the grid "
          f"-> {out / 'free_energy.csv'}")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(grid, fe, color="C0")
    for z in trace:
        ax.axvline(z, color="C1", alpha=0.4, lw=0.8)
    ax.set_xlabel(f"closure variable zhat_{args.component}")
    ax.set_ylabel("free energy (kJ/mol)")
    ax.set_title(f"WT metadynamics, particles2d N={args.n_particles}", fontsize=10)
    ax.locator_params(axis="x", nbins=5)
    fig.tight_layout()
    fig.savefig(out / "free_energy.png", dpi=120)
    print(f"wrote {out / 'free_energy.png'}")


if __name__ == "__main__":
    main()
