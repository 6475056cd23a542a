"""Out-of-distribution guard: has a rollout left the range of z seen in training?

The state scaler of a model maps each component's training range of z = [z̄, ẑ] onto
[-1, 1]. The guard allows a margin beyond it, in those scaled units: a component is out
of range when |z_scaled| > 1 + margin. The margin is stored in the model's config as
``ood_margin``; models without it use :data:`DEFAULT_MARGIN`.

Example:
    >>> first_exit(traj_scaled, bound(model))   # (step, member, component) or None  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

__all__ = ["DEFAULT_MARGIN", "OutOfRangeWarning", "bound", "first_exit", "members_out"]

class OutOfRangeWarning(UserWarning):
    """A rollout left the range of z the model was trained on (its values are extrapolations)."""


#: margin beyond the training range, in scaled units (the range itself spans 2)
DEFAULT_MARGIN = 0.25


def bound(model: Any) -> float:
    """The largest allowed |z_scaled| of a component: 1 + the model's ``ood_margin``."""
    margin = float(model.config.get("ood_margin", DEFAULT_MARGIN))
    if not np.isfinite(margin) or margin < 0:
        raise ValueError(f"ood_margin must be a finite number >= 0, got {margin}")
    return 1.0 + margin


def first_exit(scaled: Any, limit: float) -> Optional[tuple]:
    """The first time step at which any member leaves the allowed range.

    Arguments:
        scaled: (K, T, D) scaled states (numpy or torch).
        limit: the allowed |z_scaled| (see :func:`bound`).

    Returns:
        ``(step, member, component)`` of the first exit (non-finite values count as out),
        or None when every state stays inside.
    """
    out = _outside(scaled, limit)
    if not out.any():
        return None
    per_step = out.any(axis=(0, 2))
    t = int(np.argmax(per_step))
    k, d = np.argwhere(out[:, t, :])[0]
    return t, int(k), int(d)


def members_out(scaled: Any, limit: float) -> np.ndarray:
    """Which members leave the allowed range at any time step.

    Arguments:
        scaled: (K, T, D) scaled states (numpy or torch).
        limit: the allowed |z_scaled| (see :func:`bound`).

    Returns:
        (K,) bool: True where a component of that member is out of range at some step
        (non-finite values count as out).
    """
    return _outside(scaled, limit).any(axis=(1, 2))


def _outside(scaled: Any, limit: float) -> np.ndarray:
    """(K, T, D) bool: |z_scaled| > limit, NaN counting as out (numpy or torch input)."""
    z = scaled.detach().cpu().numpy() if hasattr(scaled, "detach") else np.asarray(scaled)
    return ~(np.abs(z) <= limit)
