"""Work estimates before long work: a rollout whose memory would pass a stated bound is
refused with the estimate, before anything is allocated.

A rollout of K members over ``steps`` steps of a D-component state holds the states
(K, steps + 1, D), the SDE noise (steps, K, D) and the raw-unit copy a caller makes, each
up to 8 bytes a number: about ``3 * 8 * K * (steps + 1) * D`` bytes. Above
:data:`MAX_ROLLOUT_BYTES` (4 GiB) it is refused unless the caller lifts the bound
(``allow_large=True``, ``--allow-large``). Torch-free.

Example:
    >>> check_rollout(300, 16, 3)            # bytes: well under the bound
    346752
    >>> check_rollout(5 * 10**10, 1, 3)      # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: a rollout of 50000000000 steps x 1 member(s) x 3 components needs about 3.3 TiB of memory, over the bound of 4.0 GiB; ...
"""

from __future__ import annotations

from typing import Any

__all__ = ["MAX_ROLLOUT_BYTES", "rollout_bytes", "check_rollout", "check_seed"]

#: the largest rollout (estimated bytes) run without ``allow_large``
MAX_ROLLOUT_BYTES = 4 * 1024**3


def rollout_bytes(steps: int, members: int, dim: int) -> int:
    """Estimated peak memory in bytes of a rollout (states, noise, raw copy; 8 bytes a number)."""
    return 3 * 8 * int(members) * (int(steps) + 1) * max(1, int(dim))


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} PiB"


def check_rollout(steps: int, members: int, dim: int, allow_large: bool = False) -> int:
    """Refuse a rollout whose memory estimate passes :data:`MAX_ROLLOUT_BYTES`.

    Arguments:
        steps: number of steps.
        members: ensemble size K.
        dim: state components D.
        allow_large: lift the bound (the caller knows the machine has the memory).

    Returns:
        The estimate in bytes.

    Raises:
        ValueError: one line with the estimate, the bound and the flag that lifts it.
    """
    need = rollout_bytes(steps, members, dim)
    if need > MAX_ROLLOUT_BYTES and not allow_large:
        raise ValueError(
            f"a rollout of {int(steps)} steps x {int(members)} member(s) x {int(dim)} components needs about "
            f"{_human(need)} of memory, over the bound of {_human(MAX_ROLLOUT_BYTES)}; shorten the horizon "
            "(steps / time_ps) or the ensemble, or pass allow_large=True (--allow-large) to run it anyway")
    return need


def check_seed(seed: Any) -> None:
    """A seed is None or an integer (for ODE and SDE alike, so a typo is caught either way).

    Raises:
        ValueError: anything else (the value is named).
    """
    import numbers

    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)):
        raise ValueError(f"seed must be an integer or None, got {seed!r}")
