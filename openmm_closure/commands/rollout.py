"""``openmm-closure rollout``: encode a configuration and extrapolate it with the surrogate."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ..data import read_configuration
from ..couple.surrogate import SurrogateIntegrator, check_species_names, output_kind
from ._device import add_device_argument

__all__ = ["configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the ``rollout`` arguments to ``parser``."""
    a = parser.add_argument
    a("--model", required=True, help="model directory (openmm-closure train)")
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", help="dataset directory to take the configuration from")
    src.add_argument("--positions", help="configuration file: .npy (n, 3) or (F, n, 3) in nm, or a replica .h5")
    a("--replica", type=int, default=0, help="replica of --data")
    a("--frame", type=int, default=0, help="frame of --data or of a multi-frame --positions file")
    a("--types", default=None, help=".npy (n,) species indices for --positions .npy (default: all 0)")
    a("--steps", type=int, required=True, help="dynamics steps (each --dt ps)")
    a("--samples", type=int, default=1, help="ensemble size (an ODE gives equal members)")
    a("--seed", type=int, default=0, help="seed of the SDE noise")
    a("--dt", type=float, default=None, help="time step in ps (default: the model's frame spacing)")
    a("--out", required=True, help="output file, .csv (mean/std) or .npz (also every member)")
    add_device_argument(parser)
    a("--overwrite", action="store_true", help="replace --out if it exists (without it, an existing --out is refused)")
    a("--allow-large", action="store_true", help="run a rollout whose memory estimate passes the 4 GiB bound")


def run(args: argparse.Namespace) -> int:
    """Execute ``openmm-closure rollout``; returns the exit code."""
    out = Path(args.out)
    output_kind(out)
    if out.exists() and not args.overwrite:
        raise FileExistsError(f"{out} exists; pass --overwrite to replace it")
    if args.steps < 1:
        raise ValueError(f"--steps must be >= 1, got {args.steps}")
    if args.samples < 1:
        raise ValueError(f"--samples must be >= 1, got {args.samples}")
    model_dir = Path(args.model)
    if not model_dir.is_dir():
        raise FileNotFoundError(f"model directory {model_dir} does not exist")
    integ = SurrogateIntegrator(model_dir, dt=args.dt, device=args.device)
    model = integ.model
    conf = read_configuration(data=args.data, positions=args.positions, replica=args.replica,
                              frame=args.frame, types=args.types)
    pos, types, names, where = conf.positions, conf.types, conf.species, conf.where
    species = list(model.config.get("species") or [])
    if types is None:
        if model.n_species != 1:
            raise ValueError(f"this model knows {model.n_species} species {species}: pass --types FILE.npy")
        types = np.zeros(len(pos), dtype=np.int64)
    check_species_names(names, species)
    res = integ.run(pos, types, args.steps, samples=args.samples, seed=args.seed, allow_large=args.allow_large)
    res.save(out, overwrite=args.overwrite)
    kind = "SDE" if res.stochastic else "ODE"
    print(f"rollout of {model.config.get('system', 'model')} ({kind}) from {where}: {len(pos)} particles, "
          f"{args.steps} steps x {integ.dt:g} ps = {res.times[-1]:g} ps, {args.samples} sample(s)")
    print(res.summary())
    print(f"wrote {out}")
    return 0
