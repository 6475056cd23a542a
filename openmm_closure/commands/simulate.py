"""``openmm-closure simulate``: an ensemble of replicas of one system into a dataset directory."""

from __future__ import annotations

import argparse

from ..catalog import SYSTEM_REGISTRY
from ..md.simulate import REGIMES, parse_params, simulate_ensemble
from ._scheduler import add_scheduler_arguments, scheduler_from_args

__all__ = ["configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the ``simulate`` arguments to ``parser``."""
    parser.add_argument("system", nargs="?", choices=SYSTEM_REGISTRY.names(),
                        help="the system to simulate (or --system)")
    parser.add_argument("--system", dest="system_option", choices=SYSTEM_REGISTRY.names(), default=None,
                        help="the system to simulate (instead of the positional argument)")
    parser.add_argument("--out", required=True, help="output dataset directory (resumed if it holds this dataset)")
    parser.add_argument("--replicas", type=int, default=8, help="number of replicas")
    parser.add_argument("--regime", default="in-dst", choices=REGIMES,
                        help="initial-state regime: in-dst, diff-init or diff-N (polymer: in-dst, slow, medium or fast)")
    parser.add_argument("--n-particles", type=int, default=None, help="particles per replica (default: the regime's)")
    parser.add_argument("--seed", type=int, default=0, help="base seed; replica i is seeded from (seed, i)")
    parser.add_argument("--platform", default="auto", help="OpenMM platform: auto (CUDA > OpenCL > CPU > Reference), CUDA, OpenCL, CPU or Reference")
    parser.add_argument("--workers", type=int, default=1,
                        help="parallel worker processes; with --scheduler local, the LocalCluster's")
    parser.add_argument("--batch", type=int, default=1,
                        help="replicas packed into one OpenMM Context; the files do not depend "
                             "on it for particles2d; stochastic systems agree in distribution")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                        help="builder parameter, VALUE parsed as JSON if possible (repeatable), "
                             "e.g. --param steps=1000 --param report_interval=50")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--no-deterministic", action="store_true",
                        help="allow run-to-run differences in the last bits of the forces for a "
                             "little speed (default: DeterministicForces on CPU and CUDA)")
    add_scheduler_arguments(parser, "replicas (batches with --batch > 1)")


def run(args: argparse.Namespace) -> int:
    """Execute ``openmm-closure simulate``."""
    from ..data import read_manifest

    if (args.system is None) == (args.system_option is None):
        raise ValueError("name the system once: `simulate SYSTEM` or `simulate --system SYSTEM`")
    system = args.system or args.system_option
    params = parse_params(args.param)
    scheduler = scheduler_from_args(args, args.workers)
    for key in ("n_particles", "regime", "seed"):
        if key in params:
            raise ValueError(f"--param {key}=... : use --{key.replace('_', '-')} instead")
    out = simulate_ensemble(system, args.out, args.replicas, regime=args.regime,
                            n_particles=args.n_particles, seed=args.seed, platform=args.platform,
                            workers=args.workers, progress=not args.no_progress,
                            deterministic=not args.no_deterministic, batch=args.batch, scheduler=scheduler,
                            **params)
    m = read_manifest(out)
    print(f"{out}: {len(m['n_particles'])} replicas of {m['system']} ({m['regime']}), "
          f"{m['n_frames']} frames each, dt_frame {m['dt_frame']:g} ps")
    return 0
