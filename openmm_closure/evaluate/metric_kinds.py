"""The registry of metric kinds: how a system's rollouts are scored against its simulations.

A system's facts name its metric (``metric`` of :class:`openmm_closure.catalog.SystemFacts`);
:data:`METRIC_KINDS` maps that name to a :class:`MetricKind`, whose functions the
evaluation (``openmm-closure evaluate``) and the stage-2 selection call. Other packages
add kinds under the entry-point group ``openmm_closure.metrics``. Numpy only (no torch,
no openmm).

Example:
    >>> import numpy as np
    >>> true = np.linspace(1.0, 2.0, 6).reshape(2, 3, 1)  # (R, T, M)
    >>> value, over, extra = METRIC_KINDS["mre"].evaluate(true, true, lo=np.zeros(1), hi=np.full(1, 2.0), k=1,
    ...                                                   names=["energy"], stochastic=False)
    >>> value, over.shape
    (0.0, (3,))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from . import metrics
from ..registry import Registry

__all__ = ["MetricKind", "METRIC_KINDS", "ensemble_calibration"]


@dataclass(frozen=True)
class MetricKind:
    """One way of scoring predicted observables against simulated ones.

    Attributes:
        name: short name in tables (``"MRE"``).
        plot_label: y label of the metric-over-time plot.
        cumulative: plot the running sum over time (a per-frame error).
        log_scale: the plot may use a log scale.
        evaluate: ``evaluate(pred (R*K, T, M), true (R, T, M), *, lo (M,), hi (M,), k,
            names, stochastic) -> (value, per-frame values (T,), extra dict)``, raw units.
        select: ``select(pred (R*K, T, M), true (R, T, M), *, lo, hi, k, names, out) ->
            {"score", "metric", "spread"}``, the stage-2 selection score (lower is
            better; ``out``: share of rollouts outside the guard's range).
    """

    name: str
    plot_label: str
    cumulative: bool
    log_scale: bool
    evaluate: Callable[..., tuple[float, np.ndarray, dict]]
    select: Callable[..., dict]


def ensemble_calibration(pred: np.ndarray, true: np.ndarray, ratio: np.ndarray) -> dict:
    """Calibration of the predicted ensemble (K, T, M) against the simulated one (R, T, M),
    given their spread ratio (T, M) (:func:`~openmm_closure.evaluate.metrics.spread_ratio_over_time`):
    the spread ratio over time, the coverage of central intervals (50% and 90%, and a
    reliability curve over levels 0.1 .. 0.9), and which observables leave the band
    :data:`~openmm_closure.evaluate.metrics.CALIBRATION_BAND` at the last frame."""
    levels = [round(0.1 * i, 1) for i in range(1, 10)]
    cover = metrics.interval_coverage(pred, true, levels)
    lo, hi = metrics.CALIBRATION_BAND
    last = ratio[-1]
    return {
        "spread_ratio_over_time": [[None if not np.isfinite(v) else float(v) for v in row] for row in ratio],
        "spread_ratio_mean": [float(np.nanmean(ratio[1:, j])) if len(ratio) > 1 else None
                              for j in range(ratio.shape[1])],
        "levels": levels,
        "coverage": [float(c) for c in cover],
        "coverage_50": float(cover[levels.index(0.5)]),
        "coverage_90": float(cover[levels.index(0.9)]),
        "band": [lo, hi],
        "outside_band": [bool(np.isfinite(v) and not lo <= v <= hi) for v in last],
    }


def _mean_members(pred: np.ndarray, r: int, k: int) -> np.ndarray:
    return pred.reshape(r, k, *pred.shape[1:]).mean(1)


def _mre(pred, true, *, lo, hi, k, names, stochastic):
    pm = _mean_members(pred, len(true), k)
    over = np.asarray(metrics.mre_over_time(pm, true, lo, hi))
    extra = {"training_range": [np.asarray(lo).tolist(), np.asarray(hi).tolist()],
             "mre_per_trajectory": metrics.mre_per_trajectory(pm, true, lo, hi).tolist()}
    return metrics.mre(pm, true, lo, hi), over, extra


def _mre_select(pred, true, *, lo, hi, k, names, out):
    value = metrics.mre(_mean_members(pred, len(true), k), true, lo, hi)
    return {"score": value, "metric": value, "spread": None}


def _mmd(pred, true, *, lo, hi, k, names, stochastic):
    over = np.asarray(metrics.mmd_over_time(pred, true))
    # the predicted ensemble's spread at the last frame against the simulated one, per
    # observable: an SDE that spreads too wide loses the MMD however good its mean
    ratio = metrics.spread_ratio_over_time(pred, true)  # (T, M), NaN where the simulation has no spread
    extra: dict[str, Any] = {"sigmas": list(metrics.MMD_SIGMAS),
                             "spread_ratio": [float(v) if np.isfinite(v) else None for v in ratio[-1]]}
    if stochastic and len(pred) > 1:
        extra["calibration"] = ensemble_calibration(pred, true, ratio)
    return float(over.mean()), over, extra


def _mmd_select(pred, true, *, lo, hi, k, names, out):
    value = float(np.mean(metrics.mmd_over_time(pred, true)))
    spread = metrics.spread_ratio_over_time(pred, true)[-1]
    log_spread = np.abs(np.log(spread[np.isfinite(spread) & (spread > 0)]))
    penalty = 1.0 + (float(log_spread.mean()) if len(log_spread) else 0.0)
    return {"score": value * penalty * (1.0 + out), "metric": value, "spread": [float(v) for v in spread]}


def _column(names: Sequence[str]) -> int:
    return list(names).index("extension") if "extension" in names else 0


def _extension(pred, true, *, lo, hi, k, names, stochastic):
    j = _column(names)
    over = np.abs(metrics.extension_stats(pred[..., j])[0] - metrics.extension_stats(true[..., j])[0])
    errs = metrics.moment_errors(pred[..., j], true[..., j])
    pm_, ps_ = metrics.extension_stats(pred[..., j])
    tm_, ts_ = metrics.extension_stats(true[..., j])
    extra = {**errs, "pred_mean": pm_.tolist(), "pred_std": ps_.tolist(),
             "true_mean": tm_.tolist(), "true_std": ts_.tolist()}
    return errs["mean_abs_error_mean"], over, extra


def _extension_select(pred, true, *, lo, hi, k, names, out):
    j = _column(names)
    errs = metrics.moment_errors(pred[..., j], true[..., j])
    value = errs["mean_abs_error_mean"]
    return {"score": value + errs["mean_abs_error_std"], "metric": value, "spread": None}


def _check(name: str, record: Any) -> None:
    if not isinstance(record, MetricKind):
        raise ValueError(f"metric kind {name!r}: register a metric_kinds.MetricKind, got {type(record).__name__}")


#: metric kind (a system's ``facts.metric``) -> :class:`MetricKind`
METRIC_KINDS = Registry("metric kind", group="openmm_closure.metrics", check=_check)
METRIC_KINDS.register("mre", MetricKind("MRE", "cumulative MRE", True, True, _mre, _mre_select))
METRIC_KINDS.register("mmd", MetricKind("MMD", "MMD²", False, True, _mmd, _mmd_select))
METRIC_KINDS.register("extension", MetricKind("ext. mean |Δ|", "|Δ mean extension| (nm)", False, False,
                                              _extension, _extension_select))
