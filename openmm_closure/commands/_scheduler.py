"""The ``--scheduler`` arguments that ``simulate`` and ``evaluate`` share (Dask; see
:mod:`openmm_closure.cluster`)."""

from __future__ import annotations

import argparse

__all__ = ["add_scheduler_arguments", "scheduler_from_args"]


def add_scheduler_arguments(parser: argparse.ArgumentParser, what: str, workers: bool = False) -> None:
    """Add ``--scheduler``, ``--jobs``, ``--jobqueue-system`` and ``--scheduler-timeout``.

    Arguments:
        parser: the subcommand's parser.
        what: what becomes a Dask task, for the help text (e.g. ``"replicas"``).
        workers: also add ``--workers`` (the size of ``--scheduler local``), for a
            subcommand that has none of its own.
    """
    g = parser.add_argument_group("on a Dask cluster (pip install 'openmm-closure[cluster]')")
    if workers:
        g.add_argument("--workers", type=int, default=1, help="--scheduler local: worker processes")
    g.add_argument("--scheduler", default=None, metavar="local|ADDRESS|jobqueue",
                   help=f"run the {what} as Dask tasks: local (a LocalCluster of --workers processes), "
                        "the address of a running scheduler (tcp://host:8786), or jobqueue (a SLURM/PBS/LSF/"
                        "SGE cluster from dask's jobqueue.yaml, --jobs N); default: no Dask")
    g.add_argument("--jobs", type=int, default=None, help="--scheduler jobqueue: batch jobs to submit")
    g.add_argument("--jobqueue-system", default=None, metavar="slurm|pbs|lsf|sge|...",
                   help="--scheduler jobqueue: which section of jobqueue.yaml (default: the one that sets cores)")
    g.add_argument("--scheduler-timeout", type=float, default=30.0, metavar="SECONDS",
                   help="give up connecting to --scheduler ADDRESS after this long")


def scheduler_from_args(args: argparse.Namespace, workers: int = 1):
    """The :class:`~openmm_closure.cluster.SchedulerConfig` the arguments ask for, or None.

    Raises:
        ValueError: a Dask-only option without ``--scheduler``, or a bad combination.
    """
    from ..cluster import SchedulerConfig

    if args.scheduler is None:
        used = [flag for flag, value in (("--jobs", args.jobs), ("--jobqueue-system", args.jobqueue_system))
                if value is not None]
        if used:
            verb = "apply" if len(used) > 1 else "applies"
            raise ValueError(f"{' and '.join(used)} {verb} to --scheduler jobqueue only")
        return None
    return SchedulerConfig(args.scheduler, workers=workers, jobs=args.jobs,
                           system=args.jobqueue_system, timeout=args.scheduler_timeout)
