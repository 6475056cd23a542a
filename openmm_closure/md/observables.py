"""Macroscopic observables of particle configurations (numpy in, numpy out).

All functions are vectorised over leading "frame" axes: ``positions`` has shape
(..., n, 3) in nm and results have shape (...). This module imports numpy and scipy only
(never torch or openmm), so both the OpenMM side and the model side can use it.

- ``energy``: mean pair energy of the 2D interacting particles (SPEC 3A).
- ``R_AB``, ``R_BA``: pooled neighbour ratios of the binary mixture (SPEC 3B).
- ``extension``, ``end_to_end_{x,y,z}``: polymer chain span and end-to-end vector (SPEC 3C).
- anything registered with :func:`register` (or through the entry-point group
  ``openmm_closure.md.observables``): a function of one frame, used everywhere by name.

Example:
    >>> import numpy as np
    >>> x = np.random.rand(10, 50, 3)                     # 10 frames, 50 particles, nm
    >>> types = np.arange(50) % 2
    >>> out = compute(["energy", "R_AB"], x, types, cutoff=0.3)
    >>> out["energy"].shape, out["R_AB"].shape
    ((10,), (10,))
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np

from ..catalog import _View
from ..registry import Registry

__all__ = [
    "OBSERVABLE_PARAMS",
    "pair_potential",
    "mean_pair_energy",
    "neighbour_ratios",
    "extension",
    "end_to_end",
    "compute",
    "OBSERVABLES",
    "Observable",
    "register",
    "units_of",
    "param_names",
    "resolved_params",
    "box_matrix",
    "DEFAULT_OBSERVABLES",
    "check_names",
]

#: default macroscopic observables of each built-in system
DEFAULT_OBSERVABLES: dict[str, tuple[str, ...]] = _View(lambda record: record.facts.observables)  # type: ignore


def _log_cosh(u: np.ndarray) -> np.ndarray:
    """log(cosh(u)) without overflow: |u| + log1p(exp(-2|u|)) - log 2."""
    au = np.abs(u)
    with np.errstate(over="ignore"):  # -2|u| below -1.8e308 is -inf: exp gives 0, the right limit
        return au + np.log1p(np.exp(-2.0 * au)) - np.log(2.0)


def pair_potential(r: np.ndarray, a: float = 4.0, b: float = 0.1) -> np.ndarray:
    """P(r) = (1/a) log cosh(a (1 - r)) + b (1 - r), elementwise.

    Arguments:
        r: distances, any shape, nm (reduced units).
        a, b: potential parameters.

    Returns:
        P(r), same shape as ``r``, kJ/mol (reduced units).
    """
    d = 1.0 - np.asarray(r, dtype=np.float64)
    return _log_cosh(a * d) / a + b * d


def _frames(positions: np.ndarray) -> tuple[np.ndarray, tuple[int, ...]]:
    x = np.asarray(positions, dtype=np.float64)
    if x.ndim < 2 or x.shape[-1] != 3:
        raise ValueError(f"positions must have shape (..., n, 3), got {x.shape}")
    lead = x.shape[:-2]
    return x.reshape((-1,) + x.shape[-2:]), lead


def mean_pair_energy(positions: np.ndarray, a: float = 4.0, b: float = 0.1) -> np.ndarray:
    """Mean pair energy sum_{i<j} P(r_ij) / (n (n - 1) / 2) of a 2D configuration.

    Only x and y are used. All pairs are summed (O(n^2) per frame, as in the model).

    Arguments:
        positions: (..., n, 3) coordinates in nm; n >= 2.
        a, b: pair potential parameters (see :func:`pair_potential`).

    Returns:
        (...) float64 mean pair energy, kJ/mol (reduced units).
    """
    from scipy.spatial.distance import pdist

    x, lead = _frames(positions)
    n = x.shape[1]
    if n < 2:
        raise ValueError("mean_pair_energy needs at least 2 particles")
    out = np.empty(x.shape[0])
    for k in range(x.shape[0]):
        out[k] = pair_potential(pdist(x[k, :, :2]), a, b).mean()
    return out.reshape(lead)


def _wrap(x: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Wrap coordinates into [0, L) exactly (cKDTree rejects L itself)."""
    w = np.mod(x, box)
    w[w >= box] = 0.0  # np.mod can round a tiny negative up to L
    return w


def neighbour_ratios(
    positions: np.ndarray,
    types: np.ndarray,
    cutoff: float = 2.5,
    box: Sequence[float] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Pooled neighbour ratios R_AB and R_BA within a cutoff.

    R_AB = (number of B neighbours of all A atoms) / (number of all neighbours of all A
    atoms), a ratio of sums; R_BA likewise with A and B swapped. A particle is not its own
    neighbour. Species 0 is A and species 1 is B. A ratio whose denominator is zero is NaN.
    Cost is linear in n (a KD-tree per frame).

    Arguments:
        positions: (..., n, 3) coordinates in nm.
        types: (n,) or (..., n) int species indices (0 = A, 1 = B).
        cutoff: neighbour distance in nm (pairs with r <= cutoff count).
        box: None for a non-periodic (walled) system, or (Lx, Ly[, Lz]) periodic box
            lengths in nm (minimum image). If every z coordinate is equal the system is
            treated as 2D and Lz is ignored.

    Returns:
        (R_AB, R_BA), each (...) float64, dimensionless.
    """
    from scipy.spatial import cKDTree

    x, lead = _frames(positions)
    f, n = x.shape[:2]
    t = np.asarray(types)
    if t.shape[-1:] != (n,):
        raise ValueError(f"types of shape {t.shape} do not match {n} particles")
    t = np.broadcast_to(t, lead + (n,)).reshape(f, n)
    flat2d = bool(np.all(x[..., 2] == x[..., :1, 2]))
    dims = 2 if flat2d else 3
    boxsize = None
    if box is not None:
        bx = np.asarray(box, dtype=np.float64).reshape(-1)
        if bx.size < dims or np.any(bx[:dims] <= 0):
            raise ValueError(f"box {list(bx)} needs {dims} positive lengths")
        boxsize = bx[:dims]
    r_ab = np.empty(f)
    r_ba = np.empty(f)
    with np.errstate(invalid="ignore", divide="ignore"):
        for k in range(f):
            xk = x[k, :, :dims]
            if boxsize is not None:
                xk = _wrap(xk, boxsize)
            isa = t[k] == 0
            isb = t[k] == 1
            xa, xb = xk[isa], xk[isb]
            ta = cKDTree(xa, boxsize=boxsize) if len(xa) else None
            tb = cKDTree(xb, boxsize=boxsize) if len(xb) else None
            # dual-tree pair counts (r <= cutoff); same-tree counts are ordered pairs
            # and include each particle with itself once
            n_ab = float(ta.count_neighbors(tb, cutoff)) if ta is not None and tb is not None else 0.0
            n_aa = float(ta.count_neighbors(ta, cutoff)) - len(xa) if ta is not None else 0.0
            n_bb = float(tb.count_neighbors(tb, cutoff)) - len(xb) if tb is not None else 0.0
            a_all = n_aa + n_ab  # neighbours of all A atoms (any species)
            b_all = n_bb + n_ab
            r_ab[k] = n_ab / a_all if a_all else np.nan
            r_ba[k] = n_ab / b_all if b_all else np.nan
    return r_ab.reshape(lead), r_ba.reshape(lead)


def extension(positions: np.ndarray) -> np.ndarray:
    """x-span of a chain: max x - min x over the beads.

    Arguments:
        positions: (..., n, 3) bead coordinates in nm.

    Returns:
        (...) float64 extension in nm.
    """
    x = np.asarray(positions, dtype=np.float64)[..., 0]
    return x.max(axis=-1) - x.min(axis=-1)


def end_to_end(positions: np.ndarray) -> np.ndarray:
    """End-to-end vector, last bead minus first bead.

    Arguments:
        positions: (..., n, 3) bead coordinates in nm.

    Returns:
        (..., 3) float64 vector in nm.
    """
    x = np.asarray(positions, dtype=np.float64)
    return x[..., -1, :] - x[..., 0, :]


def _energy(x, types, p):
    return {"energy": mean_pair_energy(x, a=p.get("a", 4.0), b=p.get("b", 0.1))}


def _ratios(x, types, p):
    if types is None:
        raise ValueError("R_AB / R_BA need species types")
    box = p.get("box")
    rab, rba = neighbour_ratios(x, types, cutoff=p.get("cutoff", 2.5), box=box)
    return {"R_AB": rab, "R_BA": rba}


def _extension(x, types, p):
    return {"extension": extension(x)}


def _end_to_end(x, types, p):
    e = end_to_end(x)
    return {"end_to_end_x": e[..., 0], "end_to_end_y": e[..., 1], "end_to_end_z": e[..., 2]}


@dataclass(frozen=True)
class Observable:
    """One entry of the observable registry.

    Attributes:
        fn: ``fn(positions (n, 3) nm, box (3, 3) nm or None, types (n,) int, **params)
            -> float``, one frame at a time (a user's observable), or None for a built-in.
        units: the units of its value (stored with every array, e.g. ``"nanometers"``).
        defaults: its keyword parameters and their default values.
        batched: built-ins only: ``batched(positions (..., n, 3), types, params) -> dict``
            of (...) arrays (shared work done once for several names).
    """

    fn: Optional[Callable[..., float]] = None
    units: str = "unknown"
    defaults: Mapping[str, Any] = field(default_factory=dict)
    batched: Optional[Callable[[np.ndarray, Any, dict], dict]] = None


def _check_record(name: str, record: Any) -> None:
    if not isinstance(record, Observable):
        raise ValueError(f"observable {name!r}: register a function with "
                         "openmm_closure.md.observables.register(name, fn, units=...), "
                         f"not {type(record).__name__}")
    if record.fn is None and record.batched is None:
        raise ValueError(f"observable {name!r} has no function")
    if record.fn is not None and not callable(record.fn):
        raise ValueError(f"observable {name!r}: {record.fn!r} is not callable")


#: name -> :class:`Observable`; the built-ins, those :func:`register` adds and those of the
#: entry-point group ``openmm_closure.observables`` (loaded when first named)
OBSERVABLES = Registry("observable", group="openmm_closure.observables", check=_check_record)

for _name, _fn, _units, _defaults in (
    ("energy", _energy, "kilojoules_per_mole", {"a": 4.0, "b": 0.1}),
    ("R_AB", _ratios, "dimensionless", {"cutoff": 2.5}),
    ("R_BA", _ratios, "dimensionless", {"cutoff": 2.5}),
    ("extension", _extension, "nanometers", {}),
    ("end_to_end_x", _end_to_end, "nanometers", {}),
    ("end_to_end_y", _end_to_end, "nanometers", {}),
    ("end_to_end_z", _end_to_end, "nanometers", {}),
):
    OBSERVABLES.register(_name, Observable(units=_units, defaults=_defaults, batched=_fn))


def register(name: str, fn: Callable[..., float], *, units: str, replace: bool = False,
             **defaults: Any) -> Observable:
    """Register a user observable under ``name``: reporters, ``ingest``, training and
    evaluation then use it by name.

    Arguments:
        name: the observable's name (a column of the reporters, a key of the dataset).
        fn: ``fn(positions, box, types, **params) -> float`` with positions (n, 3) float64
            nm, box (3, 3) float64 nm (rows are the box vectors) or None for a
            non-periodic system, types (n,) int64 species indices.
        units: units of the value, stored with it (``"nanometers"``, ``"dimensionless"``).
        replace: replace an observable of the same name.
        **defaults: ``fn``'s keyword parameters and their defaults; a reporter's keyword
            of the same name overrides one.

    Returns:
        The :class:`Observable` record.

    Raises:
        ValueError: the name is taken (pass ``replace=True``), or ``fn`` is not callable.

    Example:
        >>> import numpy as np
        >>> rec = register("mean_z", lambda x, box, types, shift=0.0: x[:, 2].mean() + shift,
        ...                units="nanometers", shift=0.0, replace=True)
        >>> compute(["mean_z"], np.ones((4, 5, 3)), np.zeros(5, int), shift=1.0)["mean_z"]
        array([2., 2., 2., 2.])
        >>> OBSERVABLES.unregister("mean_z")
    """
    if not isinstance(units, str) or not units:
        raise ValueError(f"observable {name!r}: units must be a non-empty string such as 'nanometers'")
    return OBSERVABLES.register(name, Observable(fn=fn, units=units, defaults=dict(defaults)), replace=replace)


def units_of(name: str) -> str:
    """The units of observable ``name`` ("unknown" for a name the registry lacks)."""
    rec = OBSERVABLES.get(name) if name in OBSERVABLES else None
    return rec.units if rec is not None else "unknown"


def param_names(names: Sequence[str] = ()) -> tuple[str, ...]:
    """The keyword parameters the named observables take (the built-ins' ``a``, ``b``,
    ``cutoff``, ``box`` always; plus each named user observable's)."""
    out = list(OBSERVABLE_PARAMS)
    for name in check_names(names):
        for k in OBSERVABLES[name].defaults:
            if k not in out:
                out.append(k)
    return tuple(out)


def resolved_params(names: Sequence[str], params: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters the named observables are computed with: each one's defaults, then
    ``params`` (``box`` left out: it belongs to a frame), as a dataset records them."""
    out: dict[str, Any] = {}
    for name in check_names(names):
        out.update(OBSERVABLES[name].defaults)
    out.update({k: v for k, v in params.items() if k != "box"})
    return out


def check_names(names: Sequence[str]) -> tuple[str, ...]:
    """Validate observable names.

    Arguments:
        names: observable names (a single string is one name).

    Returns:
        The names as a tuple.

    Raises:
        ValueError: naming the unknown observable and listing the valid names.
    """
    if isinstance(names, str):
        names = (names,)
    names = tuple(names)
    for name in names:
        if name not in OBSERVABLES:
            raise ValueError(f"unknown observable {name!r}; valid names: {', '.join(OBSERVABLES)} "
                             "(register your own with openmm_closure.md.observables.register)")
    return names


#: the system parameters the built-in observables take (a, b: energy; cutoff, box: neighbour ratios)
OBSERVABLE_PARAMS = ("a", "b", "cutoff", "box")


def box_matrix(box: Any) -> Optional[np.ndarray]:
    """A box as (3, 3) vectors in nm (rows), or (F, 3, 3) per frame; None stays None.

    Arguments:
        box: None, (3,) or (2,) lengths (an orthorhombic box), (3, 3) vectors or
            (F, 3, 3) vectors per frame, nm.
    """
    if box is None:
        return None
    b = np.asarray(box, dtype=np.float64)
    if b.ndim == 1:
        v = np.zeros(3)
        v[: b.size] = b[:3]
        if b.size < 3:
            v[2] = 1.0
        return np.diag(v)
    if b.shape[-2:] != (3, 3):
        raise ValueError(f"box of shape {b.shape}: give lengths (3,), vectors (3, 3) or (F, 3, 3), nm")
    return b


def _box_lengths(box: Any) -> Optional[np.ndarray]:
    """Orthorhombic lengths for the built-ins (the diagonal of box vectors)."""
    if box is None:
        return None
    b = np.asarray(box, dtype=np.float64)
    if b.ndim >= 2 and b.shape[-2:] == (3, 3):
        b = b.reshape(-1, 3, 3)
        if len(b) > 1 and not np.allclose(b, b[:1]):
            raise ValueError("the built-in observables take one box for all frames; compute frame by frame")
        return np.diag(b[0]).copy()
    return b


def _user_values(name: str, rec: Observable, positions: np.ndarray, types: Any,
                 params: Mapping[str, Any]) -> np.ndarray:
    x, lead = _frames(positions)
    box = box_matrix(params.get("box"))
    boxes = None if box is None else np.broadcast_to(box, (x.shape[0], 3, 3)) if box.ndim == 2 \
        else box.reshape(-1, 3, 3)
    if boxes is not None and len(boxes) != x.shape[0]:
        raise ValueError(f"{len(boxes)} boxes for {x.shape[0]} frames")
    kwargs = {k: params.get(k, v) for k, v in rec.defaults.items()}
    t = None if types is None else np.asarray(types, dtype=np.int64)
    out = np.empty(x.shape[0])
    for k in range(x.shape[0]):
        tk = t if t is None or t.ndim == 1 else t.reshape(-1, x.shape[1])[k]
        v = np.asarray(rec.fn(x[k], None if boxes is None else boxes[k].copy(), tk, **kwargs), dtype=np.float64)
        if v.size != 1:
            raise ValueError(f"observable {name!r} returned shape {v.shape} at frame {k}; it must return one float")
        if not np.isfinite(v.reshape(())):
            raise ValueError(f"observable {name!r} returned {float(v.reshape(()))} at frame {k}; "
                             "it must return a finite float")
        out[k] = float(v.reshape(()))
    return out.reshape(lead)


def compute(names: Sequence[str], positions: np.ndarray, types: np.ndarray | None = None,
            **params: Any) -> dict[str, np.ndarray]:
    """Compute several observables at once (shared work is done once).

    Arguments:
        names: observable names (see :data:`OBSERVABLES`).
        positions: (..., n, 3) coordinates in nm.
        types: (n,) int species indices (needed for R_AB / R_BA), or None.
        **params: observable parameters: ``a``, ``b`` (energy), ``cutoff`` (neighbour
            ratios), ``box`` (None, lengths (3,), vectors (3, 3) or per frame (F, 3, 3),
            nm) and those of registered observables. Unknown keys are ignored, so a
            system's whole parameter dict can be passed.

    Returns:
        dict name -> (...) float64 array, one entry per requested name.

    Raises:
        ValueError: an unknown name, or a registered observable returning anything but one
            finite float (naming the observable and the frame).
    """
    names = check_names(names)
    out: dict[str, np.ndarray] = {}
    done: dict[Callable, dict[str, np.ndarray]] = {}
    for name in names:
        rec = OBSERVABLES[name]
        if rec.batched is None:
            out[name] = _user_values(name, rec, positions, types, params)
            continue
        fn = rec.batched
        if fn not in done:
            p = dict(params)
            p["box"] = _box_lengths(p.get("box"))
            done[fn] = fn(positions, types, p)
        out[name] = np.asarray(done[fn][name], dtype=np.float64)
    return out
