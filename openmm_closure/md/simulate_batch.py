"""The ``simulate --batch B`` path: run B replicas in one Context, write them one by one.

Each batch builds its replicas from their own seeds (so initial states never depend on
B), runs them together (:mod:`openmm_closure.systems.batch`), keeps the frames in memory,
and then writes every replica's file in one go under its temporary name and renames it
when complete: the same files, metadata and atomic protocol as the unbatched runner, so
a killed run redoes at most the batch in flight.

Example:
    >>> from openmm_closure.md.simulate import simulate_ensemble
    >>> simulate_ensemble("particles2d", "data/p2d", replicas=64, batch=16,
    ...                   n_particles=50, steps=20, progress=False)   # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = ["run_batch", "estimate_batch_bytes"]


def _specs(tasks: Sequence[dict]):
    from ..systems import build

    return [build(t["system"], n_particles=t["n_particles"], regime=t["regime"], seed=t["seed"], **t["params"])
            for t in tasks]


def estimate_batch_bytes(task: dict, batch: int, workers: int = 1) -> int:
    """Check that ``workers`` batches of ``batch`` replicas like ``task`` fit in memory.

    The sizes come from one cheap build (no relaxation) of the task's system.

    Returns:
        The estimated bytes of the frame buffers.

    Raises:
        ValueError: the buffers would exceed half the available memory (names a --batch that fits).
    """
    from ..systems import build
    from ..systems.batch import check_batch_fits

    params = dict(task["params"])
    if task["system"] == "lj-mixing":
        params["relax_steps"] = 0
    if task["system"] == "polymer":
        params["equilibration_steps"] = 0
    spec = build(task["system"], n_particles=task["n_particles"], regime=task["regime"], seed=task["seed"], **params)
    return check_batch_fits(batch, spec.n_particles, spec.n_frames, workers)


def run_batch(tasks: Sequence[dict], write: Sequence[int] | None = None, method: str = "planes") -> list[dict]:
    """Run the replicas ``tasks`` (the unbatched runner's task dicts) as one batch.

    Arguments:
        tasks: dicts with ``index``, ``path``, ``system``, ``regime``, ``n_particles``,
            ``seed``, ``platform``, ``params`` (as ``simulate_ensemble`` makes them).
        write: indices of the replicas to write (default all); the others are run (they
            belong to the batch) but their files are left as they are.
        method: particles2d construction (``"planes"`` or ``"groups"``).

    Returns:
        The metadata of the written replicas, in the order of ``tasks``.
    """
    import tables

    from ..data import REPLICA_META_ATTR, ReplicaWriter, replica_meta
    from ..fileio import unique_temp_name
    from .observables import OBSERVABLE_PARAMS, compute
    from ..reporters.base import _names_for_types
    from ..systems.batch import build_batch, run_batch_frames

    from ..catalog import SYSTEM_REGISTRY

    specs = _specs(tasks)
    spec0 = specs[0]
    if len(specs) > 1 and SYSTEM_REGISTRY[spec0.name].batched is None:
        # a system without a batched builder: each replica as a batch of one (its own System)
        runs = [run_batch_frames(build_batch([s], method), spec0.report_interval, spec0.n_frames,
                                 tasks[0]["platform"], tasks[0].get("deterministic", False)) for s in specs]
        positions, times, platform = [r[0][0] for r in runs], runs[0][1], runs[0][2]
    else:
        batched = build_batch(specs, method)
        positions, times, platform = run_batch_frames(batched, spec0.report_interval, spec0.n_frames,
                                                     tasks[0]["platform"], tasks[0].get("deterministic", False))
    wanted = None if write is None else set(write)
    jobs = [(task, spec, x) for task, spec, x in zip(tasks, specs, positions)
            if wanted is None or task["index"] in wanted]

    def observe(job) -> dict[str, np.ndarray]:
        """Frame by frame, exactly as the reporter computes them."""
        _, spec, x = job
        obs_params = {k: spec.params[k] for k in OBSERVABLE_PARAMS if k in spec.params}
        values: dict[str, list[float]] = {k: [] for k in spec.observables}
        for frame in x:
            for k, v in compute(spec.observables, frame, spec.types, **obs_params).items():
                values[k].append(float(v))
        return {k: np.asarray(v) for k, v in values.items()}

    # numpy and scipy release the GIL in their loops: use every core for the observables
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=max(1, min(len(jobs), os.cpu_count() or 1))) as pool:
        all_values = list(pool.map(observe, jobs))
    metas = []
    for (task, spec, x), values in zip(jobs, all_values):
        final = Path(task["path"])
        tmp = unique_temp_name(final, ".part.h5")  # per process: a rerun elsewhere never shares it
        box = spec.params.get("box")
        try:  # a replica that fails leaves no temporary behind
            writer = ReplicaWriter(tmp, spec.types, _names_for_types(spec.types, spec.topology), spec.observables, box)
            try:
                writer.append(x, times, values)
            finally:
                writer.close()
            meta = replica_meta(task, spec, platform, batch={
                "size": len(tasks), "first": tasks[0]["index"],
                "method": method if spec.name == "particles2d" else None})
            with tables.open_file(str(tmp), "a") as h:
                h.root._v_attrs[REPLICA_META_ATTR] = json.dumps(meta)
            os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        metas.append(meta)
    return metas
