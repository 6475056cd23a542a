"""Simulate an ensemble of replicas of one system into a dataset directory.

``openmm-closure simulate SYSTEM --out DIR --replicas R`` writes one
``replica_#####.h5`` per replica (see :mod:`openmm_closure.data`) and a
``manifest.json``. The run is resumable: each replica is written under a temporary name
and renamed only when complete, so rerunning the same command keeps the finished
replicas and redoes the interrupted ones. Replica ``i`` is seeded from ``(seed, i)``
alone, so the result does not depend on interruptions, worker count or order.

Example:
    >>> simulate_ensemble("particles2d", "data/p2d", replicas=4, n_particles=50,
    ...                   steps=20, progress=False)                  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..fileio import DirectoryLock, file_mode
from .observables import OBSERVABLE_PARAMS
from ..data import (
    FORMAT_VERSION,
    MANIFEST,
    REPLICA_META_ATTR,
    build_manifest,
    normalise,
    read_manifest,
    replica_filename,
    replica_meta,
    write_manifest,
)

__all__ = ["simulate_ensemble", "replica_seed", "parse_param", "parse_params"]


class _Regimes(Sequence):
    """Every registered system's regimes, in registration order (a live view of the registry)."""

    def _all(self) -> tuple[str, ...]:
        from ..catalog import SYSTEM_REGISTRY

        seen: dict[str, None] = {}
        for name in SYSTEM_REGISTRY.names():
            seen.update(dict.fromkeys(SYSTEM_REGISTRY[name].regimes))
        return tuple(seen)

    def __getitem__(self, i):  # type: ignore[override]
        return self._all()[i]

    def __len__(self) -> int:
        return len(self._all())

    def __repr__(self) -> str:
        return repr(self._all())


#: the ``--regime`` names of all registered systems
REGIMES: Sequence[str] = _Regimes()
#: observable parameters handed from a system's params to the reporter


def replica_seed(seed: int, i: int) -> int:
    """Seed of replica ``i``: a deterministic function of ``(seed, i)`` in [1, 2^31 - 1).

    OpenMM treats a random seed of 0 as "pick one at random", so 0 is never returned.
    """
    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(i)]).generate_state(1, dtype=np.uint64)[0]
    return int(state % np.uint64(2**31 - 2)) + 1


def parse_param(text: str) -> tuple[str, Any]:
    """Parse ``KEY=VALUE``; VALUE as JSON when it parses (``3``, ``0.5``, ``[32, 26]``,
    ``null``), else as a string."""
    if "=" not in text:
        raise ValueError(f"--param expects KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    key = key.strip().replace("-", "_")
    if not key:
        raise ValueError(f"--param expects KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def _request(system: str, regime: str, n_particles: int | None, seed: int, params: dict) -> dict:
    """What fixes the content of every replica (the identity of a dataset directory)."""
    return normalise({"system": system, "regime": regime, "n_particles": n_particles,
                       "seed": int(seed), "params": params})


def _run_replica(task: dict) -> dict:
    """Run one replica into ``task['path']`` (via a temporary file). Runs in a worker."""
    import tables

    from ..reporters import DatasetReporter
    from ..systems import build

    from ..fileio import unique_temp_name

    final = Path(task["path"])
    tmp = unique_temp_name(final, ".part.h5")  # per process: never another run's file
    spec = build(task["system"], n_particles=task["n_particles"], regime=task["regime"],
                 seed=task["seed"], **task["params"])
    sim = spec.make_simulation(task["platform"], task.get("deterministic", True))
    obs_params = {k: spec.params[k] for k in OBSERVABLE_PARAMS if k in spec.params}
    try:  # a replica that fails leaves no temporary behind
        rep = DatasetReporter(tmp, spec.report_interval, types=spec.types,
                              observables=spec.observables, **obs_params)
        try:
            # frame 0: the initial state
            rep.report(sim, sim.context.getState(getPositions=True))
            sim.reporters.append(rep)
            sim.step(spec.report_interval * (spec.n_frames - 1))
        finally:
            rep.close()
        if rep.n_frames != spec.n_frames:
            raise RuntimeError(f"replica {task['index']}: {rep.n_frames} frames written, expected {spec.n_frames}")
        meta = replica_meta(task, spec, sim.context.getPlatform().getName())
        with tables.open_file(str(tmp), "a") as h:
            h.root._v_attrs[REPLICA_META_ATTR] = json.dumps(meta)
        if _finished_meta(tmp) is None:  # complete and readable, or not finished at all
            raise RuntimeError(f"replica {task['index']}: {tmp.name} did not read back complete")
        os.chmod(tmp, file_mode())
        os.replace(tmp, final)
    except ValueError as exc:
        tmp.unlink(missing_ok=True)
        if "non-finite" not in str(exc):
            raise
        given = ", ".join(f"{k}={v!r}" for k, v in sorted(task["params"].items())) or "the defaults"
        raise ValueError(f"replica {task['index']} diverged ({exc}); check the --param values ({given})") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return meta


def _finished_meta(path: Path) -> dict | None:
    """Metadata of a finished replica file, or None if it is not a finished replica."""
    if not path.is_file():
        return None
    try:
        import tables

        with tables.open_file(str(path), "r") as h:
            meta = json.loads(h.root._v_attrs[REPLICA_META_ATTR])
            f, n = h.root.coordinates.shape[:2]
            if f != meta["n_frames"] or n != meta["n_particles"] or h.root.time.shape[0] != f:
                return None
            for name in meta["observables"]:
                if h.get_node("/observables", name).shape[0] != f:
                    return None
        return meta
    except Exception:
        return None


def _manifest(request: dict, metas: list[dict], replicas: int) -> dict:
    """The manifest of a finished ensemble, from its replicas' metadata."""
    params0 = metas[0]["params"]
    common = {k: v for k, v in params0.items() if all(m["params"].get(k, object()) == v for m in metas)}
    common.pop("seed", None)
    return normalise(build_manifest(
        system=request["system"],
        regime=request["regime"],
        params=common,
        observables=metas[0]["observables"],
        dt_frame=metas[0]["dt_frame"],
        n_frames=metas[0]["n_frames"],
        n_particles=[m["n_particles"] for m in metas],
        seeds=[m["seed"] for m in metas],
        replica_params=[m["params"] for m in metas],
        species=metas[0]["species"],
        seed=request["seed"],
        replicas=replicas,
        platforms=sorted({m["platform"] for m in metas}),
        batch_sizes=sorted({int((m.get("batch") or {}).get("size", 1)) for m in metas}),
        request=request,
        complete=True,
    ))


def _check_out_dir(out: Path, request: dict, replicas: int) -> None:
    """Refuse a directory holding a different dataset (nothing is touched then)."""
    if (out / MANIFEST).exists():
        old = read_manifest(out)
        if old.get("request") != request:
            theirs = old.get("request") or {k: old.get(k) for k in ("system", "regime")}
            raise FileExistsError(
                f"{out} holds a different dataset ({json.dumps(theirs, sort_keys=True)}); "
                f"this run is {json.dumps(request, sort_keys=True)}; choose another --out"
            )
        if int(old.get("replicas", 0)) > replicas:
            raise FileExistsError(
                f"{out} already holds {old['replicas']} replicas of this dataset; ask for at least that many"
            )
    elif out.exists():
        stray = sorted(p.name for p in out.iterdir()
                       if p.name.startswith("replica_") and not p.name.endswith(".part.h5"))
        if stray:
            raise FileExistsError(f"{out} holds replica files but no {MANIFEST}; choose another --out")


def simulate_ensemble(
    system: str,
    out: str | os.PathLike,
    replicas: int,
    regime: str = "in-dst",
    n_particles: int | None = None,
    seed: int = 0,
    platform: str = "auto",
    workers: int = 1,
    progress: bool = True,
    deterministic: bool = True,
    batch: int = 1,
    scheduler: Any = None,
    **params: Any,
) -> Path:
    """Simulate ``replicas`` independent replicas of ``system`` into a dataset directory.

    Arguments:
        system: ``"particles2d"``, ``"lj-mixing"`` or ``"polymer"``.
        out: dataset directory (created). If it already holds this same dataset the run
            resumes; if it holds another one, FileExistsError and nothing is touched. The
            directory is locked for the whole run (``.openmm-closure.lock``); a second run
            on it gets :class:`~openmm_closure.fileio.DirectoryLockedError` naming the pid.
        replicas: number of replicas R.
        regime: ``in-dst``, ``diff-init`` or ``diff-N`` (polymer: ``slow``/``medium``/``fast``).
        n_particles: particle number (default: the regime's reference size).
        seed: base seed; replica ``i`` uses :func:`replica_seed` ``(seed, i)``.
        platform: ``auto``, ``CUDA``, ``OpenCL``, ``CPU`` or ``Reference``.
        workers: parallel worker processes (1 runs in this process).
        progress: show a progress bar over replicas.
        deterministic: bitwise-reproducible forces (``DeterministicForces`` on CPU and
            CUDA), so a rerun with the same seed on the same platform and machine gives
            the same files.
        batch: replicas packed into one OpenMM Context (1: one Context each); see
            :mod:`openmm_closure.md.simulate_batch`. Initial states never depend on it;
            stochastic replicas of B > 1 share one noise stream per batch (equal to B = 1
            in distribution, bitwise reproducible for the same seed and B).
        scheduler: run the replicas (or batches) as Dask tasks instead of the process
            pool: ``"local"`` (a LocalCluster of ``workers`` processes), a scheduler
            address (``"tcp://host:8786"``), ``"jobqueue"`` via a
            :class:`~openmm_closure.cluster.SchedulerConfig` (``jobs``), or a
            ``distributed.Client`` you hold (see :mod:`openmm_closure.cluster`). Workers
            write the replica files into ``out`` (which they must see at the same path);
            this process holds the lock and writes the manifest. The files do not depend
            on it.
        **params: builder parameters (e.g. ``steps``, ``report_interval``).

    Returns:
        The dataset directory (load it with :func:`openmm_closure.data.load`).
    """
    from .platforms import select_platform
    from ..systems import check_params

    check_params(system, {})
    if isinstance(replicas, bool) or int(replicas) != replicas or replicas < 1:
        raise ValueError(f"replicas must be a positive integer, got {replicas!r}")
    if isinstance(workers, bool) or int(workers) != workers or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    if n_particles is not None and (int(n_particles) != n_particles or n_particles < 1):
        raise ValueError(f"n_particles must be a positive integer, got {n_particles!r}")
    if isinstance(batch, bool) or int(batch) != batch or batch < 1:
        raise ValueError(f"batch must be a positive integer (--batch 1 runs one Context per replica), got {batch!r}")
    replicas, workers, batch = int(replicas), int(workers), int(batch)
    from ..catalog import SYSTEM_REGISTRY

    if SYSTEM_REGISTRY[system].batched is None:
        batch = 1  # a system without a batched builder runs its replicas one by one
    if scheduler is not None:  # bad --scheduler/--jobs values and a missing extra fail here
        from ..cluster import require_dask, scheduler_config

        scheduler = scheduler_config(scheduler, workers)
        require_dask(jobqueue=getattr(scheduler, "target", None) == "jobqueue")
    if scheduler is None or getattr(scheduler, "target", None) == "local":
        # (the workers of a remote cluster may have platforms, CUDA, that this machine lacks)
        select_platform(platform)  # fail early on an unavailable platform
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--out {out} is a file, not a directory; choose another --out")
    request = _request(system, regime, n_particles, seed, params)
    _check_out_dir(out, request, replicas)

    # validate the parameters cheaply before writing anything
    check_params(system, params)
    _check_request(system, regime, n_particles, seed, params)

    if batch > 1:  # fail before writing anything when the frame buffers cannot fit
        from .simulate_batch import estimate_batch_bytes

        estimate_batch_bytes({"system": system, "regime": regime, "n_particles": n_particles,
                              "seed": replica_seed(seed, 0), "params": params},
                             min(batch, replicas), 1 if scheduler is not None else min(workers, -(-replicas // batch)))

    import contextlib

    with contextlib.ExitStack() as stack:
        client = None
        if scheduler is not None:  # connect (or start the cluster) before anything is written
            from ..cluster import open_client

            client = stack.enter_context(open_client(scheduler))
        # one run per directory: held until this function returns (the kernel drops it on kill)
        with DirectoryLock(out, "another simulate run"):
            _check_out_dir(out, request, replicas)  # again, now that nobody else can write
            return _simulate_locked(out, request, system, regime, n_particles, seed, platform,
                                    workers, progress, replicas, params, deterministic, batch, client,
                                    getattr(scheduler, "retries", 2))


def _check_request(system: str, regime: str, n_particles: int | None, seed: int, params: dict) -> None:
    """Build replica 0's system once so values the builder rejects fail before any file is written."""
    from ..systems import build

    try:
        build(system, n_particles=n_particles, regime=regime, seed=replica_seed(seed, 0), **params)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{system}: {exc}") from exc


def _simulate_locked(out: Path, request: dict, system: str, regime: str, n_particles: int | None,
                     seed: int, platform: str, workers: int, progress: bool, replicas: int,
                     params: dict, deterministic: bool, batch: int, client: Any = None,
                     retries: int = 2) -> Path:
    fresh = not (out / MANIFEST).exists()
    if fresh:
        write_manifest(out, {"system": system, "regime": regime, "request": request, "replicas": replicas,
                             "seed": int(seed), "seeds": [replica_seed(seed, i) for i in range(replicas)],
                             "complete": False, "format_version": FORMAT_VERSION})
    try:
        return _simulate_started(out, request, system, regime, n_particles, seed, platform, workers, progress,
                                 replicas, params, deterministic, batch, client, retries)
    except BaseException:
        # a fresh run that finished no replica leaves nothing behind (the lock goes on release)
        if fresh and not any(out.glob("replica_*.h5")):
            (out / MANIFEST).unlink(missing_ok=True)
        raise


def _simulate_started(out: Path, request: dict, system: str, regime: str, n_particles: int | None,
                      seed: int, platform: str, workers: int, progress: bool, replicas: int,
                      params: dict, deterministic: bool, batch: int, client: Any = None,
                      retries: int = 2) -> Path:
    for p in out.glob("replica_*.part.h5"):  # we hold the lock: only dead runs' temporaries remain
        p.unlink()

    metas: dict[int, dict] = {}
    todo = []
    for i in range(replicas):
        path = out / replica_filename(i)
        meta = _finished_meta(path)
        if meta is not None and meta.get("seed") == replica_seed(seed, i):
            metas[i] = meta
        else:
            todo.append({"index": i, "path": str(path), "system": system, "regime": regime,
                         "n_particles": n_particles, "seed": replica_seed(seed, i),
                         "platform": platform, "params": params, "deterministic": deterministic})

    from tqdm.auto import tqdm

    bar = tqdm(total=replicas, initial=len(metas), unit="replica", desc=f"simulate {system}",
               disable=not progress)
    try:
        if client is not None and todo:
            _run_on_cluster(client, todo, batch, metas, bar, seed, replicas, retries)
        elif batch > 1:
            _run_batches(todo, batch, workers, metas, bar, seed, replicas)
        elif workers == 1 or len(todo) <= 1:
            for task in todo:
                metas[task["index"]] = _run_replica(task)
                bar.update(1)
        else:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor, as_completed

            ctx = mp.get_context("spawn")
            with ProcessPoolExecutor(max_workers=min(workers, len(todo)), mp_context=ctx) as pool:
                futures = [pool.submit(_run_replica, t) for t in todo]
                for fut in as_completed(futures):
                    meta = fut.result()
                    metas[meta["index"]] = meta
                    bar.update(1)
    finally:
        bar.close()

    ordered = [metas[i] for i in range(replicas)]
    from ..data.replica import content_sha256, read_replica

    final = _manifest(request, ordered, replicas)
    # the content of every replica, checked by fingerprint() (train, train --resume)
    final["replica_sha256"] = [content_sha256(read_replica(out / replica_filename(i))) for i in range(replicas)]
    write_manifest(out, final)
    return out


def _run_on_cluster(client: Any, todo: list[dict], batch: int, metas: dict[int, dict], bar, seed: int,
                    replicas: int, retries: int) -> None:
    """Run ``todo`` as Dask tasks: one per replica (``_run_replica``) or per batch
    (``run_batch``), the same functions and files as the process pool. Paths are made
    absolute: workers do not share this process's working directory."""
    from ..cluster import run_tasks

    todo = [dict(t, path=str(Path(t["path"]).absolute())) for t in todo]
    if batch > 1:
        from .simulate_batch import run_batch

        calls = [(None, (tasks, write)) for tasks, write in _batch_jobs(todo, batch, seed, replicas)]
        results = run_tasks(client, run_batch, calls, retries=retries, name="simulate-batch")
    else:
        results = run_tasks(client, _run_replica, [(None, (t,)) for t in todo], retries=retries,
                            name="simulate-replica")
    for _, done in results:
        done = done if isinstance(done, list) else [done]
        for meta in done:
            metas[meta["index"]] = meta
        bar.update(len(done))
    # every replica is in place: what is left are the temporaries of workers that died
    for p in Path(todo[0]["path"]).parent.glob("replica_*.part.h5"):
        p.unlink(missing_ok=True)


def _batch_jobs(todo: list[dict], batch: int, seed: int, replicas: int) -> list[tuple[list[dict], list[int]]]:
    """``(tasks of the batch, indices to write)`` for every batch holding a replica of ``todo``."""
    if not todo:
        return []
    missing = {t["index"] for t in todo}
    template = todo[0]
    jobs = []
    for k in sorted({i // batch for i in missing}):
        tasks = []
        for i in range(k * batch, min((k + 1) * batch, replicas)):
            task = dict(template, index=i, seed=replica_seed(seed, i),
                        path=str(Path(template["path"]).with_name(replica_filename(i))))
            tasks.append(task)
        jobs.append((tasks, sorted(missing & {t["index"] for t in tasks})))
    return jobs


def _run_batches(todo: list[dict], batch: int, workers: int, metas: dict[int, dict], bar, seed: int,
                 replicas: int) -> None:
    """Run the replicas ``todo`` in fixed batches of indices ``[k B, (k + 1) B)``.

    A batch is always the same set of replicas (the noise of stochastic systems depends
    on it), so a batch with any replica missing is rerun whole and only its missing
    replicas are written: the dataset depends on (seed, B) alone, never on interruptions.
    """
    from .simulate_batch import run_batch

    jobs = _batch_jobs(todo, batch, seed, replicas)
    if workers == 1 or len(jobs) <= 1:
        for tasks, write in jobs:
            for meta in run_batch(tasks, write=write):
                metas[meta["index"]] = meta
            bar.update(len(write))
        return
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=mp.get_context("spawn")) as pool:
        for fut in as_completed([pool.submit(run_batch, tasks, write=write) for tasks, write in jobs]):
            done = fut.result()
            for meta in done:
                metas[meta["index"]] = meta
            bar.update(len(done))


def parse_params(texts: list[str]) -> dict[str, Any]:
    """Parse repeated ``--param KEY=VALUE``; the same KEY twice is an error."""
    params: dict[str, Any] = {}
    for text in texts:
        key, value = parse_param(text)
        if key in params:
            raise ValueError(f"--param {key} given twice ({params[key]!r} and {value!r}); give it once")
        params[key] = value
    return params
