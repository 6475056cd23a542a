"""A periodic set made whole, in numpy (the OpenMM side and the datasets use it).

The twin of :func:`openmm_closure.models.periodic.periodic_image` (same formula; see
there): every particle at its image nearest the set's periodic centre, from fractional
coordinates, so the result does not change when any particle is moved by a box vector.
Imports numpy only.

Example:
    >>> import numpy as np
    >>> box = np.diag([2.0, 2.0, 2.0])
    >>> x = np.array([[0.9, 1.0, 1.0], [1.1, 1.0, 1.0]])
    >>> moved = x + np.array([[2.0, 0.0, -4.0], [-2.0, 2.0, 0.0]])   # by box vectors
    >>> periodic_image_np(moved, box).round(6).tolist() == periodic_image_np(x, box).round(6).tolist() == x.tolist()
    True
"""

from __future__ import annotations

import numpy as np

__all__ = ["periodic_image_np"]


def periodic_image_np(positions: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Each particle at its image nearest the set's periodic centre.

    Arguments:
        positions: (n, 3) or (F, n, 3) positions in nm.
        box: (3, 3) or (F, 3, 3) box vectors in nm (rows a, b, c; triclinic allowed).

    Returns:
        (n, 3) or (F, n, 3) float64 positions in nm.
    """
    x = np.asarray(positions, dtype=np.float64)
    b = np.asarray(box, dtype=np.float64)
    squeeze = x.ndim == 2
    if squeeze:
        x = x[None]
    b = np.broadcast_to(b, (x.shape[0], 3, 3)) if b.ndim == 2 else b
    s = np.einsum("fni,fij->fnj", x, np.linalg.inv(b))
    ang = 2.0 * np.pi * s
    c = np.arctan2(np.sin(ang).mean(axis=1, keepdims=True), np.cos(ang).mean(axis=1, keepdims=True)) / (2.0 * np.pi)
    c = c - np.floor(c)  # in [0, 1), as the torch version
    d = s - c
    out = np.einsum("fnj,fjk->fnk", c + d - np.round(d), b)
    return out[0] if squeeze else out
