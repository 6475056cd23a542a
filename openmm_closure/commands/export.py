"""``openmm-closure export``: the encoder, the dynamics and a closure bias as TorchScript
files, plus host profiles (PLUMED, GROMACS) and .pt2 packages on request."""

from __future__ import annotations

import argparse

from ..data import read_types
from ..hosts.export import export_model
from ..hosts.cv import parse_atom_subset
from ..hosts.profiles import FORMATS, HOSTS, REFUSED_HOSTS

__all__ = ["configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the ``export`` arguments to ``parser``."""
    a = parser.add_argument
    a("--model", required=True, help="model directory (openmm-closure train)")
    a("--out", required=True, help="export directory to write")
    a("--component", type=int, default=0, help="closure component biased by collective_variable.pt")
    a("--force-constant", type=float, default=1.0, help="bias force constant k, kJ/mol")
    a("--target", type=float, default=0.0, help="bias target of the closure component (raw units)")
    a("--types", default=None,
      help="species of every particle for the bias: a .npy file, a dataset directory or a "
           "replica .h5 (required for multi-species models)")
    a("--replica", type=int, default=0, help="replica whose species --types DATASET_DIR uses")
    a("--host", action="append", default=[], choices=[*HOSTS.names(), *REFUSED_HOSTS],
      help="also write a host profile: plumed (PYTORCH_MODEL + plumed_model.dat, also for gmx mdrun "
           "-plumed), gromacs (Colvars torchANN model + gromacs_colvars.dat + .mdp lines); gromacs-nnpot "
           "is refused with the reason; repeatable (default: none)")
    a("--format", action="append", default=[], choices=FORMATS.names(),
      help="pt2: also write torch.export + AOTInductor packages (needs a C++ compiler)")
    a("--rollout-steps", type=int, default=10, help="steps baked into the .pt2 rollout")
    a("--cv", action="store_true",
      help="also write closure_cv_<c>.pt for every closure component c: a TorchForce whose energy is "
           "zhat_c, for openmm.CustomCVForce and metadynamics BiasVariable (default: off)")
    a("--atom-subset", default=None,
      help="the particles the bias (collective_variable.pt) and the CVs see, as System indices: a .npy "
           "file or a list such as 0,1,5-9; --types then gives their species (default: every particle)")
    a("--periodic", action="store_true",
      help="collective_variable.pt (and the CVs, with --cv) take the periodic box and put each particle "
           "at its image nearest the set's periodic centre before encoding; closure_torch_force then "
           "turns on the TorchForce's periodic boundary conditions (centring models only; default: off)")


def run(args: argparse.Namespace) -> int:
    """Execute ``openmm-closure export``; returns the exit code."""
    types = read_types(args.types, args.replica) if args.types else None
    subset = parse_atom_subset(args.atom_subset) if args.atom_subset else None
    paths = export_model(args.model, args.out, component=args.component,
                         force_constant=args.force_constant, target=args.target, types=types,
                         hosts=args.host, formats=args.format, rollout_steps=args.rollout_steps,
                         cv=args.cv, atom_subset=subset, periodic=args.periodic)
    for key in ("encoder", "dynamics", "collective_variable"):
        if paths.get(key) is not None:
            print(f"wrote {paths[key]}")
    for p in paths.get("hosts", []) + paths.get("cv", []):
        print(f"wrote {p}")
    if paths.get("skipped"):
        print(f"note: {paths['skipped']}")
    return 0
