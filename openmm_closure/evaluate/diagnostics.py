r"""What the closure variables ẑ explain: a diagnostic ``openmm-closure evaluate`` runs.

A closure is useful when ẑ carries information about the future of z̄ that z̄ does not.
A common failure is that the encoder learns a *label*: a quantity fixed per trajectory
(a conserved centre of mass, a species fraction) that the dynamics of z̄ can only
overfit. This module measures, on a set of trajectories,

- the R² of a linear regression of each ẑ component on simple set statistics (centre
  x/y[/z], radius of gyration, species fractions where there are several species, and
  the observables z̄), one statistic at a time and all jointly;
- the fraction of ẑ's variance that is *within* trajectories (varies in time) rather
  than *across* trajectories (a per-trajectory label).

Everything here is numpy, except :func:`diagnose`, which encodes frames with a model.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> label = rng.normal(size=(5, 1, 1)).repeat(4, 1)          # (R, F, 1): per trajectory
    >>> round(within_fraction(label)[0], 6)
    0.0
"""

from __future__ import annotations

from typing import Optional

import numpy as np

__all__ = ["set_statistics", "r2_linear", "within_fraction", "explain", "diagnose", "reading"]


def set_statistics(positions, types, n_species: int, in_features: int) -> dict[str, np.ndarray]:
    """Simple statistics of each set.

    Arguments:
        positions: (..., n, 3) positions in nm.
        types: (n,) int species indices.
        n_species: number of species S.
        in_features: coordinates used (2 for 2D systems).

    Returns:
        {name: (...) float64}: ``centre_x``, ``centre_y`` (``centre_z`` in 3D) in nm,
        ``radius_of_gyration`` in nm, and ``fraction_<s>`` (dimensionless) for each
        species s when S > 1.
    """
    p = np.asarray(positions, dtype=np.float64)[..., :in_features]
    c = p.mean(axis=-2)
    out = {f"centre_{'xyz'[k]}": c[..., k] for k in range(in_features)}
    out["radius_of_gyration"] = np.sqrt(((p - c[..., None, :]) ** 2).sum(-1).mean(-1))
    t = np.asarray(types)
    if n_species > 1:
        for s in range(n_species):
            out[f"fraction_{s}"] = np.broadcast_to(np.mean(t == s), c.shape[:-1]).astype(np.float64)
    return out


def r2_linear(y, x) -> float:
    """R² of the least-squares fit y ≈ a + x b.

    Arguments:
        y: (K,) target.
        x: (K, P) regressors (any units; a constant column is added).

    Returns:
        R² in [0, 1] (0 when y does not vary).
    """
    y = np.asarray(y, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64).reshape(len(y), -1)
    var = float(np.sum((y - y.mean()) ** 2))
    if var <= 1e-300:
        return 0.0
    xs = x - x.mean(0)
    keep = xs.std(0) > 0
    if not keep.any():
        return 0.0
    xs = xs[:, keep] / xs[:, keep].std(0)
    coef, *_ = np.linalg.lstsq(xs, y - y.mean(), rcond=None)
    res = float(np.sum((y - y.mean() - xs @ coef) ** 2))
    return float(min(max(1.0 - res / var, 0.0), 1.0))


def within_fraction(z) -> list[float]:
    """Fraction of each component's variance that is within trajectories.

    Arguments:
        z: (R, F, d) values of R trajectories at F frames.

    Returns:
        d floats in [0, 1]: Σ (z - mean over the trajectory's frames)² / Σ (z - grand mean)²;
        0 = a pure per-trajectory label, 1 = no trajectory-to-trajectory offset. A
        component that does not vary at all gets 0.
    """
    z = np.asarray(z, dtype=np.float64)
    total = ((z - z.mean(axis=(0, 1), keepdims=True)) ** 2).sum(axis=(0, 1))
    within = ((z - z.mean(axis=1, keepdims=True)) ** 2).sum(axis=(0, 1))
    return [float(w / t) if t > 1e-300 else 0.0 for w, t in zip(within, total)]


def explain(zhat, stats: dict) -> dict:
    """R² of ẑ against the statistics, and its within-trajectory variance fraction.

    Arguments:
        zhat: (R, F, d) closure variables.
        stats: {name: (R, F)} set statistics (e.g. :func:`set_statistics`, observables).

    Returns:
        ``{"r2": {"zhat_j": {stat: R² of that statistic alone, ..., "joint": R² of all
        statistics together}}, "within_fraction": [d floats], "statistics": [names used
        (constant ones are dropped)], "reading": one plain sentence}``.
    """
    z = np.asarray(zhat, dtype=np.float64)
    d = z.shape[-1]
    names = [k for k in stats if np.ptp(np.asarray(stats[k])) > 0]
    x = {k: np.asarray(stats[k], dtype=np.float64).reshape(-1) for k in names}
    r2 = {}
    for j in range(d):
        y = z[..., j].reshape(-1)
        row = {k: r2_linear(y, x[k][:, None]) for k in names}
        row["joint"] = r2_linear(y, np.stack([x[k] for k in names], -1)) if names else 0.0
        r2[f"zhat_{j}"] = row
    wf = within_fraction(z)
    return {"r2": r2, "within_fraction": wf, "statistics": names, "reading": reading(r2, wf)}


def reading(r2: dict, within: list) -> str:
    """One plain sentence on what ẑ is (see :func:`explain`)."""
    if not within:
        return "no closure variables"
    w = float(np.mean(within))
    if w < 0.2:
        head = f"ẑ is mostly a per-trajectory label (only {w:.0%} of its variance varies in time)"
    elif w > 0.8:
        head = f"ẑ varies mostly in time ({w:.0%} of its variance is within trajectories)"
    else:
        head = f"ẑ is part label, part time-varying ({w:.0%} of its variance is within trajectories)"
    best = []
    for comp, row in r2.items():
        single = {k: v for k, v in row.items() if k != "joint"}
        if single:
            k = max(single, key=single.get)
            best.append(f"{comp} ~ {k} (R² {single[k]:.2f})")
    return head + ("; best single statistic: " + ", ".join(best) if best else "")


def diagnose(model, ds, replicas, max_frames: int = 50) -> Optional[dict]:
    """Encode frames of the given trajectories and :func:`explain` ẑ.

    Arguments:
        model: a :class:`~openmm_closure.learn.model.ClosureModel`.
        ds: a dataset (``openmm_closure.data.load``) of the model's system.
        replicas: trajectory indices to use.
        max_frames: at most this many evenly spaced frames per trajectory.

    Returns:
        The :func:`explain` dict plus ``frames`` (the frame indices used), or None when
        the model has no closure variables.
    """
    if model.latent_dim == 0 or len(replicas) == 0:
        return None
    frames = np.unique(np.linspace(0, int(ds.n_frames) - 1, min(int(max_frames), int(ds.n_frames))).astype(int))
    types_all = ds.types
    zs, stats = [], {}
    for r in replicas:
        pos = np.asarray(ds.positions[r, frames], dtype=np.float64)  # (F, n, 3)
        t = np.asarray(types_all[r])
        zs.append(np.asarray(model.encode(pos, t)))
        st = set_statistics(pos, t, model.n_species, model.in_features)
        for k, v in st.items():
            stats.setdefault(k, []).append(v)
    for name in model.observables:
        stats[name] = [np.asarray(ds.observables[name], dtype=np.float64)[r, frames] for r in replicas]
    out = explain(np.stack(zs), {k: np.stack(v) for k, v in stats.items()})
    out["frames"] = frames.tolist()
    return out
