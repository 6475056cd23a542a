"""Independent tasks on a Dask cluster: a LocalCluster, a running scheduler, or a job queue.

``simulate --scheduler`` and ``evaluate --scheduler`` hand their work to Dask through
this module; it knows nothing about replicas or models, only how to open a client and
run a list of calls on it:

- ``local``: a :class:`distributed.LocalCluster` on this machine, ``workers`` processes
  with one thread each;
- an address (``tcp://host:8786``): a scheduler already running; the connection gives up
  after ``timeout`` seconds with one line naming the address;
- ``jobqueue``: a ``dask_jobqueue`` cluster built from dask's own configuration (the
  user's ``~/.config/dask/jobqueue.yaml``), scaled to ``jobs`` batch jobs. The queue system
  is ``system`` (``slurm``, ``pbs``, ``lsf``, ``sge``, ``htcondor``, ``oar``, ``moab``) or,
  when not given, the one section of the configuration that sets ``cores``.

A task that raises is retried (``retries``); a task whose worker dies is rescheduled by
the Dask scheduler on another worker (up to ``distributed.scheduler.allowed-failures``
times, 3 by default). Tasks must therefore be safe to run twice: the dataset writers
write under a temporary name and rename only a complete file.

Dask is an optional dependency (``pip install 'openmm-closure[cluster]'``), imported only
inside these functions. This module imports neither torch nor openmm.

Example:
    >>> cfg = SchedulerConfig("local", workers=2)
    >>> with open_client(cfg) as client:                              # doctest: +SKIP
    ...     squares = dict(run_tasks(client, pow, [(i, (i, 2)) for i in range(4)]))
"""

from __future__ import annotations

import contextlib
import re
import shutil
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

__all__ = ["EXTRA", "JOBQUEUE_SYSTEMS", "SchedulerConfig", "scheduler_config", "require_dask",
           "jobqueue_system", "jobqueue_cluster", "open_client", "run_tasks", "worker_count", "is_client"]

#: what to install for ``--scheduler``
EXTRA = "pip install 'openmm-closure[cluster]'"
#: ``--jobqueue-system`` name -> dask_jobqueue class name (the config section is the name)
JOBQUEUE_SYSTEMS = {"slurm": "SLURMCluster", "pbs": "PBSCluster", "lsf": "LSFCluster", "sge": "SGECluster",
                    "htcondor": "HTCondorCluster", "oar": "OARCluster", "moab": "MoabCluster"}
_ADDRESS = re.compile(r"^([a-z][a-z0-9+]*://)?[^\s:/]+:\d+$|^[a-z][a-z0-9+]*://\S+$")


@dataclass(frozen=True)
class SchedulerConfig:
    """Where Dask tasks run.

    Arguments:
        target: ``"local"``, ``"jobqueue"`` or a scheduler address (``tcp://host:8786``).
        workers: worker processes of a ``local`` cluster (one thread each).
        jobs: batch jobs a ``jobqueue`` cluster asks for (required there, refused elsewhere).
        system: queue system of ``jobqueue`` (default: read from dask's configuration).
        timeout: seconds to wait for the scheduler at an address (or a local cluster to start).
        retries: extra attempts of a task that raised.
    """

    target: str
    workers: int = 1
    jobs: int | None = None
    system: str | None = None
    timeout: float = 30.0
    retries: int = 2

    def __post_init__(self) -> None:
        t = self.target
        if not isinstance(t, str) or not (t in ("local", "jobqueue") or _ADDRESS.match(t)):
            raise ValueError(f"--scheduler must be local, jobqueue or a scheduler address such as "
                             f"tcp://host:8786, got {t!r}")
        if t not in ("local", "jobqueue"):
            port = _port(t)
            if port is not None and not (port.isdigit() and 0 < int(port) < 65536):
                raise ValueError(f"--scheduler {t}: the port {port!r} is not a number in 1..65535 "
                                 "(an address looks like tcp://host:8786)")
        for name in ("workers", "retries"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < (1 if name == "workers" else 0):
                raise ValueError(f"{name} must be an integer >= {1 if name == 'workers' else 0}, got {v!r}")
        if t != "local" and self.workers != 1:
            raise ValueError(f"--workers sets the size of --scheduler local; with --scheduler {t} the "
                             "cluster's own workers run the tasks (jobqueue: --jobs N)")
        if t == "jobqueue":
            if self.jobs is None:
                raise ValueError("--scheduler jobqueue needs --jobs N (the batch jobs to submit)")
            if isinstance(self.jobs, bool) or not isinstance(self.jobs, int) or self.jobs < 1:
                raise ValueError(f"--jobs must be an integer >= 1, got {self.jobs!r}")
        elif self.jobs is not None:
            raise ValueError("--jobs applies to --scheduler jobqueue only")
        if self.system is not None:
            if t != "jobqueue":
                raise ValueError("--jobqueue-system applies to --scheduler jobqueue only")
            if self.system not in JOBQUEUE_SYSTEMS:
                raise ValueError(f"--jobqueue-system must be one of {', '.join(JOBQUEUE_SYSTEMS)}, got {self.system!r}")
        if not (isinstance(self.timeout, (int, float)) and self.timeout > 0):
            raise ValueError(f"--scheduler-timeout must be a number of seconds > 0, got {self.timeout!r}")


def _port(address: str) -> str | None:
    """The port part of a scheduler address (``tcp://host:8786`` -> ``"8786"``), or None."""
    rest = address.split("://", 1)[-1]
    if rest.startswith("["):  # [ipv6]:port
        tail = rest.split("]", 1)[-1]
        return tail[1:].split("/", 1)[0] if tail.startswith(":") else None
    host_port = rest.split("/", 1)[0]
    return host_port.rsplit(":", 1)[1] if ":" in host_port else None


def scheduler_config(scheduler: Any, workers: int = 1) -> Any:
    """A :class:`SchedulerConfig` from a ``--scheduler`` string (``workers`` for ``local``),
    or ``scheduler`` itself when it is already one or a ``distributed.Client``."""
    if isinstance(scheduler, str):
        return SchedulerConfig(scheduler, workers=workers)
    if isinstance(scheduler, SchedulerConfig) or is_client(scheduler):
        return scheduler
    raise ValueError(f"scheduler must be 'local', 'jobqueue', an address, a SchedulerConfig or a "
                     f"distributed.Client, got {type(scheduler).__name__}")


def is_client(obj: Any) -> bool:
    """Whether ``obj`` is a ``distributed.Client`` (checked without importing dask)."""
    return type(obj).__name__ == "Client" and type(obj).__module__.startswith("distributed")


def require_dask(jobqueue: bool = False) -> None:
    """Import ``distributed`` (and ``dask_jobqueue``), or raise ImportError naming the extra."""
    try:
        import distributed  # noqa: F401

        if jobqueue:
            import dask_jobqueue  # noqa: F401
    except ImportError as exc:
        what = "dask-jobqueue" if jobqueue and "jobqueue" in str(exc) else "dask.distributed"
        raise ImportError(f"--scheduler needs {what}, which is not installed: {EXTRA}") from exc


def jobqueue_system(system: str | None = None) -> str:
    """The queue system to use: ``system``, else the one ``jobqueue.<name>`` section of
    dask's configuration that sets ``cores`` (what every job queue needs).

    Raises:
        ValueError: none or several sections are configured (names the fix).
    """
    if system is not None:
        if system not in JOBQUEUE_SYSTEMS:
            raise ValueError(f"--jobqueue-system must be one of {', '.join(JOBQUEUE_SYSTEMS)}, got {system!r}")
        return system
    import dask.config

    found = [name for name in JOBQUEUE_SYSTEMS if dask.config.get(f"jobqueue.{name}.cores", None) is not None]
    if len(found) == 1:
        return found[0]
    if not found:
        raise ValueError("--scheduler jobqueue: dask's configuration sets cores for no queue system; write "
                         "~/.config/dask/jobqueue.yaml (jobqueue: slurm: cores, memory, queue, walltime) "
                         "or pass --jobqueue-system")
    raise ValueError(f"--scheduler jobqueue: dask's configuration sets cores for {', '.join(found)}; "
                     "choose one with --jobqueue-system")


def jobqueue_cluster(system: str | None = None, **overrides: Any):
    """A ``dask_jobqueue`` cluster (no job submitted yet) from dask's configuration.

    Arguments:
        system: queue system (see :func:`jobqueue_system`).
        **overrides: keyword arguments of the dask_jobqueue class that replace the
            configuration's values (``queue``, ``cores``, ``memory``, ``walltime``...).

    Returns:
        The cluster; ``cluster.job_script()`` is the script each job runs,
        ``cluster.scale(jobs=N)`` submits N of them.
    """
    require_dask(jobqueue=True)
    import dask_jobqueue

    name = jobqueue_system(system)
    cls = getattr(dask_jobqueue, JOBQUEUE_SYSTEMS[name])
    try:
        return cls(**overrides)
    except ValueError as exc:  # e.g. no cores or memory configured
        raise ValueError(f"--scheduler jobqueue ({name}): {' '.join(str(exc).split())} (set it under "
                         f"jobqueue: {name}: in dask's jobqueue.yaml)") from exc


@contextlib.contextmanager
def open_client(config: Any) -> Iterator[Any]:
    """A ``distributed.Client`` for ``config`` (a :class:`SchedulerConfig`, a ``--scheduler``
    string, or a Client, which is yielded as it is and left open).

    Whatever this opens (a local cluster, the jobs of a job queue) is closed on exit.

    Raises:
        ImportError: dask.distributed (or dask-jobqueue) is not installed (names the extra).
        OSError: no scheduler answered at the address within ``config.timeout`` seconds.
    """
    config = scheduler_config(config)
    if is_client(config):
        yield config
        return
    require_dask(jobqueue=config.target == "jobqueue")
    import logging

    from distributed import Client, LocalCluster

    with contextlib.ExitStack() as stack:
        if config.target == "local":
            cluster = stack.enter_context(LocalCluster(
                n_workers=config.workers, threads_per_worker=1, processes=True, dashboard_address=":0",
                silence_logs=logging.ERROR))
            client = stack.enter_context(Client(cluster, timeout=config.timeout))
        elif config.target == "jobqueue":
            stack.enter_context(_quiet_logs("distributed.deploy.spec", "distributed.deploy.cluster",
                                            "dask_jobqueue", "asyncio", "tornado.application"))
            _check_submit_command(config.system)
            cluster = jobqueue_cluster(config.system)
            stack.callback(_close_quietly, cluster)
            cluster.scale(jobs=config.jobs)
            _wait_submitted(cluster, config.jobs, config.timeout)
            client = stack.enter_context(Client(cluster, timeout=config.timeout))
        else:
            try:
                client = Client(config.target, timeout=config.timeout)
            except OSError as exc:  # timed out, refused, unknown host: one line
                raise OSError(f"no Dask scheduler answered at {config.target} within {config.timeout:g} s "
                              f"({' '.join(str(exc).split())}); start one (dask scheduler) or check "
                              "--scheduler and --scheduler-timeout") from exc
            stack.enter_context(client)
        yield client


@contextlib.contextmanager
def _quiet_logs(*names: str) -> Iterator[None]:
    """Silence the named loggers (a failed job submission is reported in one line instead)."""
    import logging

    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _check_submit_command(system: str | None) -> None:
    """Refuse before anything starts when the queue system's submit command (``sbatch``,
    ``qsub``, ``bsub``...) is not on the PATH.

    Raises:
        OSError: one line naming the command.
    """
    import dask_jobqueue

    name = jobqueue_system(system)
    cls = getattr(dask_jobqueue, JOBQUEUE_SYSTEMS[name])
    cmd = str(getattr(cls.job_cls, "submit_command", "") or "").split()
    if cmd and shutil.which(cmd[0]) is None:
        raise OSError(f"--scheduler jobqueue ({name}): the submit command {cmd[0]!r} is not on the PATH; run "
                      f"on a machine of the {name} cluster (a login node), or choose another --scheduler")


def _close_quietly(cluster: Any) -> None:
    """Close a job-queue cluster, cancelling its jobs; a cluster whose jobs never started
    can fail its own consistency checks while closing: that is not the user's error."""
    try:
        cluster.close()
    except Exception:
        pass


def _wait_submitted(cluster: Any, jobs: int, timeout: float) -> None:
    """Wait until the queue system accepted ``jobs`` batch jobs (each has a job id), at most
    ``timeout`` seconds (``--scheduler-timeout``).

    Raises:
        OSError: one line: the jobs were not submitted in time (the submit command failed
            or hangs).
    """
    import time

    deadline = time.monotonic() + float(timeout)
    while True:
        submitted = [j for j in list(getattr(cluster, "workers", {}).values()) if getattr(j, "job_id", None)]
        if len(submitted) >= int(jobs):
            return
        if time.monotonic() > deadline:
            cmd = getattr(getattr(cluster, "job_cls", None), "submit_command", "the submit command")
            raise OSError(f"--scheduler jobqueue: {len(submitted)} of {jobs} batch job(s) submitted within "
                          f"{timeout:g} s (--scheduler-timeout); check that {cmd!r} works here "
                          f"(cluster.job_script() shows the job)")
        time.sleep(0.1)


def worker_count(client: Any) -> int:
    """Workers connected to ``client``'s scheduler now (0 while a job queue still waits)."""
    return len(client.scheduler_info().get("workers", {}))


def run_tasks(client: Any, fn: Callable, calls: Sequence[tuple[Any, tuple]], retries: int = 2,
              name: str = "task", **kwargs: Any) -> Iterator[tuple[Any, Any]]:
    """Run ``fn(*args, **kwargs)`` for every ``(label, args)`` of ``calls`` as Dask tasks.

    Arguments:
        client: a ``distributed.Client``.
        fn: a module-level function (workers import it by name).
        calls: ``(label, args)`` pairs; the label only travels back with the result.
        retries: extra attempts of a task that raised (a dead worker's task is
            rescheduled by the scheduler independently of this).
        name: prefix of the task keys (shown on the Dask dashboard).
        **kwargs: keyword arguments for every call.

    Yields:
        ``(label, result)`` as tasks finish (any order). The first task that still fails
        after its retries raises here, and the tasks not yet finished are cancelled.
    """
    from distributed import as_completed

    token = uuid.uuid4().hex[:8]  # keys unique on a scheduler other clients share
    futures = {}
    for j, (label, args) in enumerate(calls):
        fut = client.submit(fn, *args, key=f"{name}-{j:05d}-{token}", retries=retries, pure=False, **kwargs)
        futures[fut.key] = (fut, label)
    try:
        for fut in as_completed([f for f, _ in futures.values()]):
            yield futures[fut.key][1], fut.result()
    finally:
        pending = [f for f, _ in futures.values() if not f.done()]
        if pending:
            client.cancel(pending)
