"""Score a trained model on test data (the library side of ``openmm-closure evaluate``).

For every test trajectory the model encodes frame 0 once (z = [z̄, ẑ]), the dynamics
extrapolates alone for the trajectory's length, and the predicted macroscopic
observables are compared with the simulated ones:

- particles2d (deterministic): MRE (SPEC §3A) on the observable scaled to [-1, 1] with
  the range of the model's *whole training set* (every replica, before the validation
  split; ``config["observable_range"]``), as the paper scales it, so a training seed's
  validation split cannot move the scale (models without that key fall back to the
  state scaler's range of the training replicas, with a warning);
- lj-mixing (stochastic): MMD² (SPEC §3B) between the predicted ensemble (``samples``
  rollouts from each test trajectory's first frame, pooled) and the simulated ensemble
  of (R_AB, R_BA) at each frame, averaged over time;
- polymer: mean and standard deviation of the extension over time (SPEC §3C).

Calibration rows (``metrics.json`` ``calibration``, and extra rows in ``metrics.md``), on
the same trajectories and the same scale:

- ``no-closure``: a model trained with ``--method no-closure`` (the same stage 2 on the
  observables alone), when ``no_closure`` names one: the row a closure must beat;
- ``mean-curve``: the training set's mean observable curve shifted to each test
  trajectory's first value (no model);
- ``mean-curve-unshifted``: the training set's mean curve itself, the same for every test
  trajectory (no model; strong where every trajectory ends in the same state, e.g.
  particles2d's clusters all reach the same final energy);
- ``constant``: each test trajectory's first value held constant (no model).

For the MMD the two model-free predictors are deterministic ensembles (one member per
test trajectory).

Diagnostic (``metrics.json`` ``closure_diagnostic``, a paragraph in ``metrics.md``):
what ẑ explains (:mod:`openmm_closure.evaluate.diagnostics`): R² against simple set statistics
and the fraction of its variance that varies in time, with a one-line reading.

A model that cannot encode the test data (AE-Aug on another particle number) is
reported as ``"status": "n/a"`` with the reason instead of a number.

Report directory::

    REPORT_DIR/
      metrics.json            the numbers (see :func:`evaluate`)
      metrics.md              one-row markdown table
      trajectories.png        predicted vs simulated observables: ensemble mean ± std
      metric_over_time.png    the metric's per-frame value (MRE: cumulative)
      permutation.png         one configuration under several random particle orders

Example:
    $ openmm-closure evaluate --model models/p2d --data runs/p2d-test --out reports/p2d
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Optional

import numpy as np

__all__ = ["evaluate", "metric_kind", "markdown_table", "report_markdown", "metric_range",
           "calibration_predictions", "rollout_rows"]



class _MetricNames(dict):
    """Metric kind -> its name in tables (a view of the metric-kind registry)."""

    def get(self, kind, default=None):  # type: ignore[override]
        from .metric_kinds import METRIC_KINDS

        return METRIC_KINDS[kind].name if kind in METRIC_KINDS else default

    def __getitem__(self, kind):
        from .metric_kinds import METRIC_KINDS

        return METRIC_KINDS[kind].name


METRIC_NAMES = _MetricNames()


def metric_kind(system: str, observables: list) -> str:
    """The metric kind of a system, a name of :data:`~openmm_closure.evaluate.metric_kinds.METRIC_KINDS`
    (the registered system's ``facts.metric``; for a system nobody registered, from the
    observables: mixing ratios -> MMD, the polymer extension -> extension, else MRE)."""
    from ..catalog import SYSTEM_REGISTRY

    listed = SYSTEM_REGISTRY[system].facts.metric if system in SYSTEM_REGISTRY else "mre"
    if listed not in ("mre", "mmd", "extension"):
        return listed  # a registered kind of its own
    if listed == "mmd" or {"R_AB", "R_BA"} & set(observables):
        return "mmd"
    if listed == "extension" or "extension" in observables:
        return "extension"
    return "mre"


def _format(value: Optional[float]) -> str:
    return "N/A" if value is None else f"{value:.3g}" if abs(value) >= 1e-2 else f"{value:.2e}"


def markdown_table(rows: list[dict]) -> str:
    """A markdown table of evaluation results (dicts as returned by :func:`evaluate`)."""
    lines = ["| method | test data | regime | metric | value | trajectories | note |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        note = r.get("reason", "") if r.get("status") != "ok" else ""
        lines.append(
            f"| {r.get('method', '?')} | {r.get('data_name', '?')} | {r.get('regime', '?')} | "
            f"{METRIC_NAMES.get(r.get('metric'), r.get('metric'))} | {_format(r.get('value'))} | "
            f"{r.get('n_trajectories', 0)} | {note} |"
        )
    return "\n".join(lines) + "\n"


def metric_range(model) -> tuple[np.ndarray, np.ndarray, bool]:
    """Min-max range of the observables that the MRE scales by.

    Returns:
        (lo (M,), hi (M,), whole): raw units; ``whole`` is True when the range is the
        whole training set's (``config["observable_range"]``), False for the fallback of
        older models (the state scaler's range, training replicas after the split).
    """
    r = model.spec.observable_range
    if r and len(r.get("lo", [])) == model.macro_dim:
        return np.asarray(r["lo"], dtype=np.float64), np.asarray(r["hi"], dtype=np.float64), True
    lo = model.state_scaler.lo[: model.macro_dim].cpu().double().numpy()
    hi = model.state_scaler.hi[: model.macro_dim].cpu().double().numpy()
    return lo, hi, False


def calibration_predictions(true, mean_curve) -> dict[str, np.ndarray]:
    """Model-free predictors of the observables.

    Arguments:
        true: (R, T, M) simulated observables (raw units); only frame 0 is used.
        mean_curve: (F, M) the training set's mean curve, or None. Held at its last
            value past frame F - 1.

    Returns:
        {"mean-curve": (R, T, M) mean curve shifted to each trajectory's first value,
        "mean-curve-unshifted": (R, T, M) the mean curve itself (both absent without a
        mean curve), "constant": (R, T, M) first value held}.
    """
    true = np.asarray(true, dtype=np.float64)
    t = true.shape[1]
    out = {"constant": np.repeat(true[:, :1], t, axis=1)}
    if mean_curve is not None:
        mc = np.asarray(mean_curve, dtype=np.float64).reshape(-1, true.shape[-1])
        if mc.shape[0] < t:
            mc = np.concatenate([mc, np.repeat(mc[-1:], t - mc.shape[0], axis=0)])
        mc = mc[:t]
        out["mean-curve"] = true[:, :1] + (mc - mc[0])[None]
        out["mean-curve-unshifted"] = np.repeat(mc[None], true.shape[0], axis=0)
    return out


def _score(kind: str, pred, true, lo, hi, k: int, names=()) -> tuple[float, np.ndarray]:
    """(value, per-frame values) of predictions (R*K, T, M) against true (R, T, M)."""
    from .metric_kinds import METRIC_KINDS

    value, over, _ = METRIC_KINDS[kind].evaluate(pred, true, lo=lo, hi=hi, k=k, names=list(names), stochastic=False)
    return value, over


def _rollout(model, ds, replicas, k: int, steps: int, dt: float, seed: int, client=None, model_dir=None,
             device: str = "cpu") -> np.ndarray:
    """Observables (R*K, T, M) in raw units predicted from each replica's first frame."""
    z0 = _states(model, ds, replicas)
    return _predict(model, model_dir, z0, k, steps, dt, seed, device, client)[..., : model.macro_dim]


def rollout_rows(model_dir: str, device: str, z0, start: int, total: int, steps: int, dt: float,
                 seed: int) -> np.ndarray:
    """Rows ``[start, start + len(z0))`` of ``model.rollout(Z0, steps, dt=dt, seed=seed)``
    for a stacked initial state Z0 of ``total`` rows, unscaled: one Dask task of
    ``evaluate --scheduler``.

    The SDE noise is drawn for all ``total`` rows and then sliced (the ``rows`` argument of
    :meth:`ClosureModel.rollout`), so the rows equal the ones of the single rollout.

    Arguments:
        model_dir: model directory (workers load it from there).
        device: torch device of the model.
        z0: (B, dim) scaled initial states, float64.
        start, total: where the rows sit in the whole ensemble, and its size.
        steps, dt, seed: as :meth:`ClosureModel.rollout` (dt in ps).

    Returns:
        (B, steps + 1, dim) states in raw units (float64).
    """
    import torch

    from ..learn.model import load_model

    model = load_model(model_dir, device=device)
    with torch.no_grad():
        traj = model.rollout(torch.as_tensor(np.asarray(z0)), steps, dt=dt, seed=seed, rows=(start, total))
        return model.unscale(traj).cpu().numpy()


def _predict(model, model_dir, z0: np.ndarray, k: int, steps: int, dt: float, seed: int, device: str,
             client=None) -> np.ndarray:
    """Raw states (R*K, T, dim) rolled out from z0 (R, dim) with K members each: in this
    process, or on a Dask ``client`` in tasks of whole trajectories (:func:`rollout_rows`)."""
    z0k = np.repeat(z0, k, axis=0)
    if client is None:
        import torch

        traj = model.rollout(torch.as_tensor(z0k), steps, dt=dt, seed=seed)
        return model.unscale(traj).cpu().numpy()
    from ..cluster import run_tasks, worker_count

    r = len(z0)
    per = max(1, -(-r // (4 * max(1, worker_count(client)))))  # about 4 tasks a worker
    where = str(Path(model_dir).absolute())  # workers do not share this working directory
    calls = [(a * k, (where, device, z0k[a * k: (a + per) * k], a * k, len(z0k), steps, dt, seed))
             for a in range(0, r, per)]
    parts = dict(run_tasks(client, rollout_rows, calls, name="evaluate-rollout"))
    return np.concatenate([parts[a] for a in sorted(parts)])


def _calibration(model, ds, replicas, kind, true, lo, hi, k, steps, dt, seed, no_closure, device,
                 client=None, frames=None) -> dict:
    """{row name: {"value", "note"?}} of the calibration rows (see the module docstring)."""
    rows: dict[str, dict] = {}
    if no_closure is not None:
        from ..learn.model import load_model

        nc = load_model(no_closure, device=device)
        if list(nc.observables) != list(model.observables) or nc.spec.system != model.spec.system:
            raise ValueError(f"no-closure model {no_closure} has other observables or another system")
        kk = k if getattr(nc.dynamics, "stochastic", False) else 1
        pred = _rollout(nc, ds, replicas, kk, steps, dt, seed, client, no_closure, device)
        if not np.isfinite(pred).all():
            rows["no-closure"] = {"value": None, "note": "the rollout produced NaN or inf"}
        else:
            rows["no-closure"] = {"value": _score(kind, pred, true, lo, hi, kk)[0], "model": str(no_closure)}
    mc = model.spec.observable_mean_curve
    if mc and frames is not None:  # the training mean curve at the scored frames
        mc = np.asarray(mc, dtype=np.float64)
        mc = mc[np.minimum(frames, len(mc) - 1)]
    preds = calibration_predictions(true, mc if mc is not None and len(mc) else None)
    if "mean-curve" not in preds:
        rows["mean-curve"] = {"value": None, "note": "the model predates observable_mean_curve"}
    for name in ("mean-curve", "mean-curve-unshifted", "constant"):
        if name in preds:
            rows[name] = {"value": _score(kind, preds[name], true, lo, hi, 1)[0]}
    return rows


def _scored_frames(model, times: np.ndarray, result: dict) -> tuple[np.ndarray, float]:
    """The test frames a rollout is compared at, and its step (ps).

    The dynamics steps by ``model.dt`` (the training step, ``stage2_step`` frame spacings):
    when that is a whole number m of the test data's frame spacing the rollout steps by it
    and is scored at frames 0, m, 2m, ...; otherwise it steps by the test spacing (every
    frame) and the result carries a note.
    """
    dt_data = float(times[1] - times[0]) if len(times) > 1 else model.dt
    m = int(round(model.dt / dt_data))
    if m >= 1 and np.isclose(m * dt_data, model.dt, rtol=1e-6):
        return np.arange(0, len(times), m), float(model.dt)
    result["note"] = (f"the model's step {model.dt} ps is not a whole number of the test frame spacing "
                      f"{dt_data} ps: rolled out at the test spacing")
    return np.arange(len(times)), dt_data


def _ensemble_calibration(pred: np.ndarray, true: np.ndarray, ratio: np.ndarray) -> dict:
    """See :func:`openmm_closure.evaluate.metric_kinds.ensemble_calibration`."""
    from .metric_kinds import ensemble_calibration

    return ensemble_calibration(pred, true, ratio)


def _reliability_plot(out: Path, result: dict, times, cal: dict, names) -> str:
    """calibration.png: the spread ratio over time (with the band) and the reliability
    curve (observed coverage against the nominal level)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    ratio = np.asarray([[np.nan if v is None else v for v in row] for row in cal["spread_ratio_over_time"]])
    for j, name in enumerate(names):
        a.plot(times[1:len(ratio)], ratio[1:, j], label=name)
    a.axhspan(*cal["band"], color="0.85", zorder=0, label="band")
    a.axhline(1.0, color="k", lw=0.8)
    a.set_xlabel("time (ps)")
    a.set_ylabel("predicted std / simulated std")
    a.legend(fontsize=8)
    b.plot([0, 1], [0, 1], "k--", lw=0.8, label="calibrated")
    b.plot(cal["levels"], cal["coverage"], "o-", label="observed")
    b.set_xlabel("nominal central-interval level")
    b.set_ylabel("share of simulated members inside")
    b.legend(fontsize=8)
    fig.suptitle(f"{result['method']} on {result['data_name']}: calibration")
    fig.tight_layout()
    path = str(out / "calibration.png")
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


#: |z_scaled| beyond which a rollout counts as divergent (the training range is |z_scaled| <= 1)
DIVERGED = 10.0


def _out_of_range(model, raw: np.ndarray, k: int) -> dict:
    """How many rollouts leave the range of z seen in training (:mod:`openmm_closure.couple.guard`):
    their values are extrapolations, and one that diverges can dominate a mean metric."""
    from ..couple.guard import bound, members_out

    limit = bound(model)
    scaled = model.scale(raw)
    out = members_out(scaled, limit)
    finite = np.abs(np.nan_to_num(np.asarray(scaled, dtype=np.float64), nan=np.inf))
    return {"rollouts": int(out.sum()), "of": int(len(out)), "limit": limit,
            "trajectories": sorted({int(i) // k for i in np.flatnonzero(out)}),
            # a divergent rollout: |z_scaled| beyond DIVERGED (or not finite) at any frame
            "diverged": int((finite.reshape(len(out), -1) > DIVERGED).any(axis=1).sum()),
            # the largest finite |z_scaled| (a non-finite rollout is counted in "diverged")
            "max_abs": float(finite[np.isfinite(finite)].max()) if np.isfinite(finite).any() else 0.0}


def report_markdown(res: dict) -> str:
    """metrics.md: the result row, its calibration rows, and the diagnostic's reading."""
    rows = [res]
    for name, c in res.get("calibration", {}).items():
        rows.append({**res, "method": name, "value": c.get("value"),
                     "status": "ok" if c.get("value") is not None else "n/a",
                     "reason": c.get("note", "")})
    text = markdown_table(rows)
    diag = res.get("closure_diagnostic")
    if diag:
        text += "\nWhat ẑ explains (R² of a linear fit; within = share of variance that varies in time):\n\n"
        stats = diag["statistics"]
        text += "| component | " + " | ".join(stats) + " | joint | within |\n"
        text += "|---" * (len(stats) + 3) + "|\n"
        for j, (comp, row) in enumerate(diag["r2"].items()):
            text += (f"| {comp} | " + " | ".join(f"{row[s_]:.2f}" for s_ in stats)
                     + f" | {row['joint']:.2f} | {diag['within_fraction'][j]:.2f} |\n")
        text += f"\nReading: {diag['reading']}.\n"
    spread = (res.get("extra") or {}).get("spread_ratio")
    if spread:
        text += ("\nSpread at the last frame, predicted std / simulated std: "
                 + ", ".join(f"{n} {_format(v)}" for n, v in zip(res.get("observables", []), spread))
                 + " (1 = the simulated ensemble's width).\n")
    cal = (res.get("extra") or {}).get("calibration")
    if cal:
        obs = res.get("observables", [])
        text += (f"\nCalibration: central 50% intervals hold {cal['coverage_50']:.0%} and 90% intervals "
                 f"{cal['coverage_90']:.0%} of the simulated members; mean spread ratio over time "
                 + ", ".join(f"{n} {_format(v)}" for n, v in zip(obs, cal["spread_ratio_mean"])) + ".\n")
        flagged = [n for n, f in zip(obs, cal["outside_band"]) if f]
        if flagged:
            lo, hi = cal["band"]
            text += (f"\n**Flag**: the last-frame spread ratio of {', '.join(flagged)} is outside [{lo}, {hi}]: "
                     "the predicted ensemble is " + ("too wide" if any(
                         v is not None and v > hi for v, f in zip(spread or [], cal["outside_band"]) if f)
                         else "too narrow") + ".\n")
    oor = res.get("out_of_range")
    if oor and oor["rollouts"]:
        text += (f"\nOut of range: {oor['rollouts']} of {oor['of']} rollouts leave the training range of z "
                 f"(|z_scaled| > {oor['limit']:g}; test trajectories {oor['trajectories']}); their values "
                 "are extrapolations.\n")
    if res.get("scale_note"):
        text += f"\nNote: {res['scale_note']}\n"
    return text


def _atomic_text(path: Path, text: str) -> None:
    from ..fileio import atomic_write_bytes

    atomic_write_bytes(path, text.encode())


def _is_pixels(manifest: dict) -> bool:
    return manifest.get("representation") == "pixels"


def _state(model, pos, types, zbar=None):
    """Scaled state (dim,) of one set; ``zbar`` (macro_dim,) raw observables replaces the
    ones computed from ``pos`` (pixel sets: z̄ comes from the rendered trajectory)."""
    if zbar is None:
        return model.state(pos, types)
    import torch

    zhat = torch.as_tensor(model.encode(pos, types), dtype=torch.float64)
    return model.scale(torch.cat([torch.as_tensor(zbar, dtype=torch.float64), zhat]))


def _states(model, ds, replicas) -> np.ndarray:
    """Scaled initial states (R, dim) of the replicas' first frames.

    For a model of pixel sets (``representation: pixels``) z̄ cannot be computed from the
    set's elements: it is read from the dataset's observables (carried over from the
    trajectory the pixels were rendered from)."""
    types = ds.types
    pixels = _is_pixels(ds.manifest)
    z = []
    for r in replicas:
        pos0 = np.asarray(ds.positions[r, 0], dtype=np.float64)
        zbar = [float(ds.observables[k][r][0]) for k in model.observables] if pixels else None
        z.append(_state(model, pos0, np.asarray(types[r]), zbar).double().cpu().numpy())
    return np.stack(z)


def _permutation_curves(model, pos0, types0, steps, dt, n_perm, seed, zbar=None) -> tuple[np.ndarray, np.ndarray]:
    """Macroscopic rollouts (P, T, M) of one configuration under P random particle orders,
    and the encoder outputs (P, d)."""
    rng = np.random.default_rng(seed)
    zs, zh = [], []
    for i in range(n_perm):
        perm = np.arange(len(types0)) if i == 0 else rng.permutation(len(types0))
        zs.append(_state(model, pos0[perm], types0[perm], zbar))
        zh.append(model.encode(pos0[perm], types0[perm]))
    curves = []
    for z in zs:  # same noise for every order: only ẑ can make the curves differ
        traj = model.rollout(z, steps, samples=1, dt=dt, seed=seed)
        curves.append(model.unscale(traj)[0, :, : model.macro_dim].cpu().numpy())
    return np.stack(curves), np.stack(zh)


def _plots(out: Path, result: dict, times, pred, true, over_time, perm_curves, names) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = {}
    m = len(names)
    fig, axes = plt.subplots(1, max(m, 1), figsize=(5 * max(m, 1), 3.6), squeeze=False)
    for j, name in enumerate(names):
        ax = axes[0, j]
        for arr, label, color in ((true[..., j], "simulated", "k"), (pred[..., j], "predicted", "C1")):
            mu, sd = arr.mean(0), arr.std(0)
            ax.plot(times, mu, color=color, label=f"{label} mean")
            ax.fill_between(times, mu - sd, mu + sd, color=color, alpha=0.2, lw=0)
        ax.set_xlabel("time (ps)")
        ax.set_ylabel(name)
        ax.legend(fontsize=8)
    fig.suptitle(f"{result['method']} on {result['data_name']}: ensemble mean ± std")
    fig.tight_layout()
    paths["trajectories"] = str(out / "trajectories.png")
    fig.savefig(paths["trajectories"], dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 3.6))
    kind = result["metric"]
    from .metric_kinds import METRIC_KINDS

    entry = METRIC_KINDS[kind]
    y = np.cumsum(over_time) if entry.cumulative else over_time
    ax.plot(times[: len(y)], y)
    ax.set_xlabel("time (ps)")
    ax.set_ylabel(entry.plot_label)
    if entry.log_scale and np.all(y > 0):
        ax.set_yscale("log")
    ax.set_title(f"{result['method']}: {METRIC_NAMES[kind]} over time")
    fig.tight_layout()
    paths["metric_over_time"] = str(out / "metric_over_time.png")
    fig.savefig(paths["metric_over_time"], dpi=100)
    plt.close(fig)

    if perm_curves is not None:
        fig, ax = plt.subplots(figsize=(5, 3.6))
        for i, c in enumerate(perm_curves):
            ax.plot(times[: c.shape[0]], c[:, 0], lw=1.2, alpha=0.8, label="stored order" if i == 0 else None)
        ax.set_xlabel("time (ps)")
        ax.set_ylabel(names[0] if names else "z̄")
        ax.set_title(f"{result['method']}: one configuration, {len(perm_curves)} particle orders")
        ax.legend(fontsize=8)
        fig.tight_layout()
        paths["permutation"] = str(out / "permutation.png")
        fig.savefig(paths["permutation"], dpi=100)
        plt.close(fig)
    return paths


def _check_test_data(model: Any, model_dir: Path, ds: Any, data_dir: Path, max_trajectories: Optional[int]) -> None:
    """The test data's species names and values, as ``train`` checks its data: the species
    named as the model's (same names, same order) and finite coordinates and observables.

    Raises:
        ValueError: one line naming the test data and the mismatch.
    """
    want = [str(x) for x in (model.spec.species or [])]
    got = [str(x) for x in (ds.manifest.get("species") or [])]
    unnamed = want == [str(i) for i in range(len(want))]  # a model trained without species names
    if want and got and not unnamed and want != got:
        raise ValueError(f"test data {data_dir} names its species {got}, model {model_dir} was trained on "
                         f"{want} (same names in the same order needed)")
    for i in range(len(ds))[: max_trajectories]:
        r = ds.replica(i)
        if not np.isfinite(r.positions).all():
            raise ValueError(f"test data {data_dir}: replica {i} has NaN or inf coordinates")
        for name in model.observables:
            v = r.observables.get(name)
            if v is not None and not np.isfinite(v).all():
                raise ValueError(f"test data {data_dir}: replica {i} has NaN or inf values of {name}")


def evaluate(
    model_dir: str | os.PathLike,
    data_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    samples: Optional[int] = None,
    seed: int = 0,
    permutations: int = 6,
    max_trajectories: Optional[int] = None,
    overwrite: bool = False,
    plots: bool = True,
    device: str = "cpu",
    no_closure: Optional[str | os.PathLike] = None,
    diagnostic: bool = True,
    scheduler: Any = None,
) -> dict:
    """Roll a model out from each test trajectory's first frame and score it.

    Arguments:
        model_dir: model directory (``openmm-closure train``).
        data_dir: test dataset directory (``openmm-closure simulate``), same system.
        out_dir: report directory (created); see the module docstring.
        samples: rollouts per test trajectory (default 1; ODE models always 1).
        seed: seed of the SDE noise and of the permutations.
        permutations: particle orders in the permutation overlay (0: no overlay).
        max_trajectories: use only the first test trajectories (>= 1; None: all).
        overwrite: replace a report already in ``out_dir`` (default: refuse).
        plots: write the PNG plots.
        device: torch device of the model.
        no_closure: a ``--method no-closure`` model directory for the calibration row
            (None: that row is left out).
        diagnostic: compute what ẑ explains (``closure_diagnostic``).
        scheduler: run the rollouts (the model's and the no-closure model's) as Dask
            tasks of whole test trajectories: ``"local"`` (one worker), an address, a
            :class:`~openmm_closure.cluster.SchedulerConfig` (``SchedulerConfig("local",
            workers=4)``) or a ``distributed.Client``
            (see :mod:`openmm_closure.cluster`); the workers load the model from
            ``model_dir``. The numbers equal the ones without it (the SDE noise is drawn
            as one stream and sliced); the metrics are computed here.

    Returns:
        The ``metrics.json`` dict: ``status`` ("ok" or "n/a"), ``reason`` (n/a only),
        ``method``, ``system``, ``regime``, ``data``, ``data_name``, ``model``,
        ``metric`` ("mre" | "mmd" | "extension"), ``value`` (the paper's number, None
        when n/a), ``over_time`` (per-frame values), ``extra`` (metric-specific
        numbers), ``n_trajectories``, ``samples``, ``permutation_spread`` (max |Δẑ|
        over the particle orders), ``plots`` (paths), ``calibration`` ({row:
        {"value"}}: ``no-closure``, ``mean-curve``, ``constant``), ``metric_scale``
        ("whole training set" or the fallback), ``closure_diagnostic`` (see
        :mod:`openmm_closure.evaluate.diagnostics`; None without closure variables).
    """
    from . import metrics
    from ..data import load
    from ..learn.model import load_model

    model_dir, data_dir, out = Path(model_dir), Path(data_dir), Path(out_dir)
    if samples is not None and (isinstance(samples, bool) or int(samples) != samples or samples < 1):
        raise ValueError(f"samples must be an integer >= 1 (or None for 1), got {samples!r}")
    if max_trajectories is not None and (isinstance(max_trajectories, bool)
                                         or int(max_trajectories) != max_trajectories or max_trajectories < 1):
        raise ValueError(f"max_trajectories must be an integer >= 1 (or None for all), got {max_trajectories!r}")
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--out {out} is a file, not a directory; choose another --out")
    if (out / "metrics.json").exists() and not overwrite:
        raise FileExistsError(f"{out} already holds a report (metrics.json); pass --overwrite "
                              "(overwrite=True) to replace it, or choose another --out")
    if not data_dir.exists():
        raise FileNotFoundError(f"test dataset {data_dir} does not exist")
    if scheduler is not None:
        from ..cluster import is_client, open_client, scheduler_config

        if not is_client(scheduler_config(scheduler)):  # connect first, then evaluate on the client
            with open_client(scheduler) as client:
                return evaluate(model_dir, data_dir, out_dir, samples=samples, seed=seed, permutations=permutations,
                                max_trajectories=max_trajectories, overwrite=overwrite, plots=plots, device=device,
                                no_closure=no_closure, diagnostic=diagnostic, scheduler=client)
    model = load_model(model_dir, device=device)
    ds = load(data_dir)
    spec = model.spec
    system = spec.system or "custom"
    names = list(model.observables)
    if ds.manifest.get("system") != system:
        raise ValueError(f"model {model_dir} was trained on {system!r}, test data {data_dir} is "
                         f"{ds.manifest.get('system')!r}")
    missing = [k for k in names if k not in ds.observables]
    if missing:
        raise ValueError(f"test data {data_dir} lacks the observables {missing}")
    if int(ds.n_frames) < 2:
        raise ValueError(f"test data {data_dir} has fewer than 2 frames")
    if _is_pixels(spec.manifest or {}) != _is_pixels(ds.manifest):
        raise ValueError(f"model {model_dir} and test data {data_dir} differ in representation (pixel sets vs "
                         "positions); render the test data with `openmm-closure render DATA --pixels`")
    _check_test_data(model, model_dir, ds, data_dir, max_trajectories)
    if no_closure is not None:
        from ..learn.model import check_model_dir

        nc_method = check_model_dir(no_closure).get("method", "ours")
        if nc_method != "no-closure":
            raise ValueError(f"--no-closure {no_closure} is a method={nc_method!r} model; pass a model trained "
                             "with --method no-closure (its row is labelled no-closure)")
    out.mkdir(parents=True, exist_ok=True)
    kind = metric_kind(system, names)
    stochastic = bool(getattr(model.dynamics, "stochastic", False))
    k = 1 if not stochastic else int(samples or 1)
    if k < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    replicas = list(range(len(ds)))[: max_trajectories]
    result: dict[str, Any] = {
        "status": "ok", "method": spec.method, "system": system,
        "regime": ds.manifest.get("regime", "?"), "data": str(data_dir), "data_name": data_dir.name,
        "model": str(model_dir), "metric": kind, "value": None, "n_trajectories": len(replicas),
        "samples": k, "observables": names, "n_particles": sorted(set(int(n) for n in ds.n_particles)),
    }

    def write(res: dict) -> dict:
        _atomic_text(out / "metrics.json", json.dumps(res, indent=2, sort_keys=True) + "\n")
        _atomic_text(out / "metrics.md", report_markdown(res))
        return res

    try:
        z0 = _states(model, ds, replicas)
    except ValueError as exc:  # e.g. AE-Aug tied to another particle number
        result.update(status="n/a", reason=str(exc).split("\n")[0])
        return write(result)

    times = np.asarray(ds.times, dtype=np.float64)
    frames, dt_data = _scored_frames(model, times, result)
    steps = len(frames) - 1
    times = times[frames]
    raw = _predict(model, model_dir, z0, k, steps, dt_data, seed, device, scheduler)  # (R*K, T, dim)
    result["out_of_range"] = _out_of_range(model, raw, k)
    if not np.isfinite(raw).all():
        result.update(status="diverged", reason="the rollout produced NaN or inf")
        return write(result)
    pred = raw[..., : model.macro_dim]  # (R*K, T, M)
    from .metric_kinds import METRIC_KINDS

    true = np.stack([np.asarray(ds.observables[n_], dtype=np.float64)[replicas] for n_ in names], -1)
    true = true[:, frames]

    lo, hi, whole = metric_range(model)
    result["metric_scale"] = "whole training set" if whole else "training replicas after the validation split"
    if not whole and kind == "mre":
        import warnings

        result["scale_note"] = ("this model predates observable_range: the MRE is scaled by the training "
                                "replicas left after the validation split, not the whole training set")
        warnings.warn(result["scale_note"], stacklevel=2)
    result["value"], over, result["extra"] = METRIC_KINDS[kind].evaluate(
        pred, true, lo=lo, hi=hi, k=k, names=names, stochastic=stochastic)
    result["over_time"] = np.asarray(over).tolist()
    result["calibration"] = _calibration(model, ds, replicas, kind, true, lo, hi, k, steps, dt_data, seed,
                                         no_closure, device, scheduler, frames)
    if diagnostic:
        from .diagnostics import diagnose

        result["closure_diagnostic"] = diagnose(model, ds, replicas)

    perm_curves = None
    if permutations and permutations > 1 and model.latent_dim > 0:
        r0 = replicas[0]
        pos0 = np.asarray(ds.positions[r0, 0], dtype=np.float64)
        types0 = np.asarray(ds.types[r0])
        zbar0 = [float(ds.observables[k][r0][0]) for k in names] if _is_pixels(ds.manifest) else None
        perm_curves, zh = _permutation_curves(model, pos0, types0, steps, dt_data, int(permutations), seed, zbar0)
        result["permutation_spread"] = float(np.max(np.abs(zh - zh[0])))
        result["permutation_curve_spread"] = float(np.max(np.abs(perm_curves - perm_curves[0])))
    if plots:
        result["plots"] = _plots(out, result, times, pred, true, over, perm_curves, names)
        cal = (result.get("extra") or {}).get("calibration")
        if cal:
            result["plots"]["reliability"] = _reliability_plot(out, result, times, cal, names)
    return write(result)
