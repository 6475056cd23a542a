r"""The paper's metrics (SPEC §3), numpy only.

- :func:`mre`: mean relative error of a deterministic macroscopic trajectory (SPEC §3A),
  :math:`\frac1R \sum_r \sum_t (\hat{\bar z}_{rt} - \bar z_{rt})^2 / \sum_t \bar z_{rt}^2`,
  computed on the observable min-max scaled to [-1, 1] with the *training* range.
- :func:`mmd2`, :func:`mmd_over_time`, :func:`mmd`: squared maximum mean discrepancy
  between a predicted and a simulated ensemble (SPEC §3B), the biased V-statistic
  :math:`\overline{k(X,X)} + \overline{k(Y,Y)} - 2\,\overline{k(X,Y)}` with RBF kernels
  :math:`k(x, y) = \exp(-\|x - y\|^2 / 2\sigma^2)`, averaged over
  :data:`MMD_SIGMAS`, then over time. The reported number is this squared quantity.
- :func:`mmd_floor`: what a perfect model scores on that metric with finite ensembles
  (the V-statistic's expectation for two independent samples of one distribution).
- :func:`extension_stats`, :func:`moment_errors`: mean and standard deviation of the
  polymer extension over time (SPEC §3C) and their distance to the simulation's.
- :func:`spread_ratio_over_time`, :func:`interval_coverage`: calibration of a predicted
  ensemble against a simulated one (is it as wide as the simulation, do its central
  intervals hold the simulated members as often as they claim).

This module never imports torch or openmm.

Example:
    >>> import numpy as np
    >>> x = np.zeros((1, 2)); y = np.ones((1, 2))
    >>> round(mmd2(x, y, sigmas=(1.0,)), 6)     # 2 - 2 exp(-2 / 2)
    1.264241
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = [
    "MMD_SIGMAS",
    "minmax_scale",
    "mre",
    "mre_per_trajectory",
    "mre_over_time",
    "mmd2",
    "mmd_over_time",
    "mmd",
    "mmd_floor",
    "extension_stats",
    "moment_errors",
    "CALIBRATION_BAND",
    "spread_ratio_over_time",
    "interval_coverage",
]

#: a predicted/simulated spread ratio outside this band is flagged by ``evaluate``
CALIBRATION_BAND: tuple[float, float] = (0.8, 1.25)

#: RBF bandwidths of the MMD (SPEC §3B), in the observable's units
MMD_SIGMAS: tuple[float, ...] = (0.01, 0.05, 0.25, 1.25)


def minmax_scale(x, lo, hi) -> np.ndarray:
    """Map ``x`` (..., [D]) from the range ``[lo, hi]`` onto [-1, 1]: ``2 (x - lo) / (hi - lo) - 1``.

    Arguments:
        x: values, any shape; ``lo``/``hi`` broadcast against it (scalars or (D,)).
        lo, hi: the training range (raw units). An empty range (hi == lo) uses span 1.

    Returns:
        float64 array of the shape of ``x`` (dimensionless).
    """
    x = np.asarray(x, dtype=np.float64)
    lo = np.asarray(lo, dtype=np.float64)
    span = np.asarray(hi, dtype=np.float64) - lo
    span = np.where(span > 0, span, 1.0)
    return 2.0 * (x - lo) / span - 1.0


def _pair(pred, true) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(pred, dtype=np.float64)
    t = np.asarray(true, dtype=np.float64)
    if p.shape != t.shape:
        raise ValueError(f"pred and true must have the same shape, got {p.shape} and {t.shape}")
    if p.ndim < 2:
        raise ValueError(f"expected (R, T) or (R, T, D) trajectories, got shape {p.shape}")
    if not (np.isfinite(p).all() and np.isfinite(t).all()):
        raise ValueError("trajectories contain NaN or inf")
    return p, t


def _scaled(pred, true, lo, hi):
    p, t = _pair(pred, true)
    if (lo is None) != (hi is None):
        raise ValueError("give both lo and hi, or neither")
    if lo is not None:
        p, t = minmax_scale(p, lo, hi), minmax_scale(t, lo, hi)
    return p, t


def mre_per_trajectory(pred, true, lo=None, hi=None) -> np.ndarray:
    r"""Relative error of each trajectory, :math:`\sum_t (p_t - y_t)^2 / \sum_t y_t^2`.

    Arguments:
        pred: (R, T) or (R, T, D) predicted observables (raw units).
        true: the simulated ones, same shape.
        lo, hi: training range of the observable (scalars or (D,)); when given, both are
            min-max scaled to [-1, 1] first, as the paper does. None: use values as given.

    Returns:
        (R,) float64; with D > 1 the sums run over time and components.
    """
    p, t = _scaled(pred, true, lo, hi)
    axes = tuple(range(1, p.ndim))
    den = np.sum(t**2, axis=axes)
    if np.any(den == 0):
        raise ValueError("a true trajectory is identically zero: its relative error is undefined")
    return np.sum((p - t) ** 2, axis=axes) / den


def mre(pred, true, lo=None, hi=None) -> float:
    """Mean relative error (SPEC §3A): the mean over trajectories of :func:`mre_per_trajectory`.

    Example:
        >>> y = np.array([[1.0, 2.0, 3.0]])
        >>> mre(1.1 * y, y)            # (0.1)^2 for any scaled copy
        0.010000000000000018
    """
    return float(np.mean(mre_per_trajectory(pred, true, lo, hi)))


def mre_over_time(pred, true, lo=None, hi=None) -> np.ndarray:
    r"""Contribution of each time to the MRE: :math:`e_t = \frac1R\sum_r (p_{rt} - y_{rt})^2 / \sum_s y_{rs}^2`.

    ``mre_over_time(...).sum() == mre(...)``; its cumulative sum shows where the error grows.

    Returns:
        (T,) float64.
    """
    p, t = _scaled(pred, true, lo, hi)
    axes = tuple(range(1, p.ndim))
    den = np.sum(t**2, axis=axes)
    if np.any(den == 0):
        raise ValueError("a true trajectory is identically zero: its relative error is undefined")
    err = (p - t) ** 2
    if err.ndim == 3:
        err = err.sum(axis=2)
    return np.mean(err / den[:, None], axis=0)


def _sq_dists(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = a[:, None, :] - b[None, :, :]
    return np.sum(d * d, axis=-1)


def _as_points(x, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2 or a.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty (n, D) ensemble, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or inf")
    return a


def mmd2(x, y, sigmas: Sequence[float] = MMD_SIGMAS) -> float:
    r"""Squared MMD between two ensembles, biased V-statistic, averaged over RBF bandwidths.

    .. math:: \frac{1}{|\Sigma|}\sum_{\sigma}\Big[\frac{1}{n^2}\sum_{ij} k_\sigma(x_i, x_j)
              + \frac{1}{m^2}\sum_{ij} k_\sigma(y_i, y_j)
              - \frac{2}{nm}\sum_{ij} k_\sigma(x_i, y_j)\Big]

    Arguments:
        x: (n, D) or (n,) one ensemble (observable units).
        y: (m, D) or (m,) the other, same D.
        sigmas: RBF bandwidths (default :data:`MMD_SIGMAS`).

    Returns:
        The squared MMD (>= 0 up to rounding; exactly 0 for ``x`` against itself).
    """
    a, b = _as_points(x, "x"), _as_points(y, "y")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"x and y have different dimensions: {a.shape[1]} and {b.shape[1]}")
    sig = np.asarray(sigmas, dtype=np.float64).reshape(-1)
    if sig.size == 0 or np.any(sig <= 0):
        raise ValueError(f"sigmas must be positive, got {list(sigmas)}")
    dxx, dyy, dxy = _sq_dists(a, a), _sq_dists(b, b), _sq_dists(a, b)
    total = 0.0
    for s in sig:
        g = 1.0 / (2.0 * s * s)
        total += np.exp(-g * dxx).mean() + np.exp(-g * dyy).mean() - 2.0 * np.exp(-g * dxy).mean()
    return float(total / sig.size)


def mmd_over_time(pred, true, sigmas: Sequence[float] = MMD_SIGMAS) -> np.ndarray:
    """Squared MMD at each time between predicted and simulated ensembles.

    Arguments:
        pred: (K, T, D) or (K, T) predicted ensemble (K members, raw observable units).
        true: (R, T, D) or (R, T) simulated ensemble (same T and D; K and R may differ).
        sigmas: RBF bandwidths.

    Returns:
        (T,) float64.
    """
    p = np.asarray(pred, dtype=np.float64)
    t = np.asarray(true, dtype=np.float64)
    if p.ndim == 2:
        p = p[..., None]
    if t.ndim == 2:
        t = t[..., None]
    if p.ndim != 3 or t.ndim != 3 or p.shape[1:] != t.shape[1:]:
        raise ValueError(f"pred (K, T, D) and true (R, T, D) must agree in T and D, got {p.shape} and {t.shape}")
    return np.array([mmd2(p[:, i], t[:, i], sigmas) for i in range(p.shape[1])])


def mmd(pred, true, sigmas: Sequence[float] = MMD_SIGMAS) -> float:
    """The reported MMD (SPEC §3B): :func:`mmd_over_time` averaged over time."""
    return float(np.mean(mmd_over_time(pred, true, sigmas)))


def mmd_floor(pool, n: int, m: int, sigmas: Sequence[float] = MMD_SIGMAS) -> float:
    r"""The finite-ensemble floor of :func:`mmd`: its expectation when the predicted and the
    simulated ensembles are independent samples of one and the same distribution.

    For i.i.d. samples of sizes ``n`` and ``m`` the biased V-statistic has
    :math:`E[\widehat{\mathrm{MMD}}^2] = (1/n + 1/m)\,(1 - \bar k)` per bandwidth, with
    :math:`\bar k = E\,k(x, x')` over independent pairs (:math:`k(x, x) = 1` for the RBF
    kernel). :math:`\bar k` is estimated at each time from ``pool`` by the U-statistic
    (all distinct pairs), then the floor is averaged over bandwidths and time like
    :func:`mmd`. A model is only resolved from a perfect one where it scores well above
    this. Members rolled out from the same initial state are correlated, so for a
    predicted ensemble of ``samples`` rollouts per test trajectory the floor with
    ``n = samples * m`` is a lower bound of a perfect model's expected score. Any model's
    expected score is at least the simulated ensemble's share ``(1/m)(1 - k̄)`` (a model
    whose members all coincide drops the ``1/n`` share while adding its own error).

    Arguments:
        pool: (R, T, D) or (R, T) simulated trajectories of the distribution (R >= 2,
            observable units), e.g. a training set and a test set together.
        n, m: the two ensemble sizes (>= 1).
        sigmas: RBF bandwidths (default :data:`MMD_SIGMAS`).

    Returns:
        The expected squared MMD of two perfect ensembles of sizes ``n`` and ``m``.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> round(mmd_floor(rng.normal(size=(400, 1)), 10, 10, sigmas=(1.0,)), 2)   # 0.2 (1 - 1/sqrt(3))
        0.08
    """
    x = np.asarray(pool, dtype=np.float64)
    if x.ndim == 2:
        x = x[..., None]
    if x.ndim != 3 or x.shape[0] < 2 or x.shape[1] == 0:
        raise ValueError(f"pool must be (R, T, D) or (R, T) with R >= 2 trajectories, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("pool contains NaN or inf")
    for name, v in (("n", n), ("m", m)):
        if isinstance(v, bool) or int(v) != v or int(v) < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
    sig = np.asarray(sigmas, dtype=np.float64).reshape(-1)
    if sig.size == 0 or np.any(sig <= 0):
        raise ValueError(f"sigmas must be positive, got {list(sigmas)}")
    r = x.shape[0]
    off = ~np.eye(r, dtype=bool)
    kbar = np.empty((x.shape[1], sig.size))
    for t in range(x.shape[1]):
        d = _sq_dists(x[:, t], x[:, t])[off]
        for j, s in enumerate(sig):
            kbar[t, j] = np.exp(-d / (2.0 * s * s)).mean()
    return float((1.0 / int(n) + 1.0 / int(m)) * np.mean(1.0 - kbar))


def extension_stats(extension) -> tuple[np.ndarray, np.ndarray]:
    """Ensemble mean and standard deviation of the polymer extension over time.

    Arguments:
        extension: (R, T) extensions in nm (R trajectories or samples).

    Returns:
        ``(mean, std)``, each (T,) in nm (``std`` is the population standard deviation).
    """
    e = np.asarray(extension, dtype=np.float64)
    if e.ndim != 2 or e.shape[0] == 0:
        raise ValueError(f"extension must be (R, T), got shape {e.shape}")
    return e.mean(axis=0), e.std(axis=0)


def moment_errors(pred, true) -> dict:
    """Distance between the predicted and simulated mean/std curves of an observable.

    Arguments:
        pred: (K, T) predicted ensemble; true: (R, T) simulated ensemble (raw units).

    Returns:
        ``{"mean_abs_error_mean", "mean_abs_error_std", "rel_error_mean"}``: the time
        average of |Δmean| and |Δstd| (raw units) and ``Σ_t Δmean² / Σ_t mean_true²``.
    """
    pm, ps = extension_stats(pred)
    tm, ts = extension_stats(true)
    if pm.shape != tm.shape:
        raise ValueError(f"pred and true have different numbers of times: {pm.shape[0]} and {tm.shape[0]}")
    den = float(np.sum(tm**2))
    return {
        "mean_abs_error_mean": float(np.mean(np.abs(pm - tm))),
        "mean_abs_error_std": float(np.mean(np.abs(ps - ts))),
        "rel_error_mean": float(np.sum((pm - tm) ** 2) / den) if den > 0 else float("nan"),
    }


def spread_ratio_over_time(pred, true) -> np.ndarray:
    """Predicted over simulated ensemble standard deviation at every time.

    Arguments:
        pred: (K, T, M) predicted ensemble; true: (R, T, M) simulated ensemble (raw units).

    Returns:
        (T, M): std_pred / std_true (NaN where the simulated std is zero). 1 is a
        perfectly wide ensemble; above 1 too wide, below too narrow.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> r = spread_ratio_over_time(2 * rng.standard_normal((4000, 3, 1)), rng.standard_normal((4000, 3, 1)))
        >>> bool(np.all(np.abs(r - 2) < 0.15))
        True
    """
    p, t = _ensembles(pred, true)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = p.std(0) / t.std(0)
    return np.where(np.isfinite(ratio), ratio, np.nan)


def interval_coverage(pred, true, levels: Sequence[float] = (0.5, 0.9), skip_first: bool = True) -> np.ndarray:
    """How often the simulated members fall inside the predicted ensemble's central intervals.

    At each time and for each observable, the central interval of level p is the predicted
    ensemble's [(1 - p)/2, (1 + p)/2] quantile range; the coverage is the share of
    simulated members inside it, pooled over times and observables. A calibrated ensemble
    covers a share p; more means too wide, less too narrow or biased.

    Arguments:
        pred: (K, T, M) predicted ensemble; true: (R, T, M) simulated ensemble.
        levels: nominal levels p in (0, 1).
        skip_first: leave out frame 0 (every member starts from a simulated state).

    Returns:
        (len(levels),) observed coverage.

    Example:
        >>> rng = np.random.default_rng(1)
        >>> c = interval_coverage(rng.standard_normal((4000, 2, 1)), rng.standard_normal((4000, 2, 1)))
        >>> bool(np.all(np.abs(c - [0.5, 0.9]) < 0.03))
        True
    """
    p, t = _ensembles(pred, true)
    if skip_first and p.shape[1] > 1:
        p, t = p[:, 1:], t[:, 1:]
    out = []
    for level in levels:
        if not 0 < float(level) < 1:
            raise ValueError(f"interval levels must be in (0, 1), got {level}")
        lo = np.quantile(p, (1 - level) / 2, axis=0)  # (T, M)
        hi = np.quantile(p, (1 + level) / 2, axis=0)
        out.append(float(((t >= lo[None]) & (t <= hi[None])).mean()))
    return np.asarray(out)


def _ensembles(pred, true) -> tuple[np.ndarray, np.ndarray]:
    """Two ensembles (K, T, M) and (R, T, M) as float64, checked to share T and M."""
    p = np.asarray(pred, dtype=np.float64)
    t = np.asarray(true, dtype=np.float64)
    if p.ndim != 3 or t.ndim != 3 or p.shape[1:] != t.shape[1:] or not len(p) or not len(t):
        raise ValueError(f"pred and true must be (K, T, M) and (R, T, M) ensembles, got {p.shape} and {t.shape}")
    return p, t
