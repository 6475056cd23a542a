"""The microscopic systems, built as OpenMM objects: the three of SPEC §3 and any
registered in :data:`openmm_closure.catalog.SYSTEM_REGISTRY` (entry-point group
``openmm_closure.systems``).

>>> spec = build("particles2d", n_particles=50, steps=10)
>>> spec.positions.shape, spec.n_frames
((50, 3), 11)
"""

from __future__ import annotations

import inspect
from typing import Any

from ..catalog import SYSTEM_REGISTRY, _View
from .spec import SimulationSpec

__all__ = ["build", "rebuild", "check_params", "SYSTEMS", "SimulationSpec"]

#: system name -> builder (a view of the system registry; a plugin's builder is imported on lookup)
SYSTEMS = _View(lambda record: record.build_fn())


def check_params(name: str, params: Any) -> None:
    """The one check of a system name and its builder parameters (nothing is built).

    Arguments:
        name: a key of :data:`SYSTEMS`.
        params: builder parameters by name (``n_particles``, ``regime`` and ``seed``
            are :func:`build`'s own arguments and are not expected here).

    Raises:
        ValueError: an unknown system or parameter, naming the accepted ones.

    Example:
        >>> check_params("particles2d", {"steps": 10})
        >>> check_params("particles2d", {"stesp": 10})
        Traceback (most recent call last):
        ...
        ValueError: unknown parameter(s) ['stesp'] for particles2d; accepted: [...]
    """
    if name not in SYSTEM_REGISTRY:
        raise ValueError(f"unknown system {name!r}; choose one of {sorted(SYSTEM_REGISTRY.names())}")
    accepted = set(inspect.signature(SYSTEMS[name]).parameters)
    unknown = sorted(set(params) - accepted)
    if unknown:
        own = {"n_particles", "regime", "seed"}
        raise ValueError(f"unknown parameter(s) {unknown} for {name}; accepted: {sorted(accepted - own)}")


def build(name: str, *, n_particles: int | None = None, regime: str = "in-dst", seed: int = 0, **params: Any) -> SimulationSpec:
    """Build one of the microscopic systems.

    Arguments:
        name: ``"particles2d"``, ``"lj-mixing"`` or ``"polymer"``.
        n_particles: particles (beads); default the reference size of the regime.
        regime: ``in-dst``, ``diff-init``, ``diff-N`` (particles2d, lj-mixing);
            ``in-dst``, ``slow``, ``medium``, ``fast`` (polymer).
        seed: all randomness of the build and of the integrator.
        **params: system-specific parameters (see each builder).

    Returns:
        A :class:`SimulationSpec` with ``.system``, ``.topology``, ``.positions`` (nm),
        ``.types``, ``.integrator``, ``.report_interval``, ``.n_frames``, ``.params``.
    """
    check_params(name, params)
    return SYSTEMS[name](n_particles=n_particles, regime=regime, seed=seed, **params)


def rebuild(params: dict[str, Any]) -> SimulationSpec:
    """Rebuild a spec from its ``params`` (as stored in a dataset manifest).

    Derived entries (such as ``noise_seed`` or ``strain_rate``) are recomputed from the
    inputs, so they are dropped before the call.
    """
    name = params["system"]
    accepted = set(inspect.signature(SYSTEMS[name]).parameters)
    kwargs = {k: v for k, v in params.items() if k in accepted}
    if name == "polymer":
        kwargs.pop("strain", None)  # steps is stored and fixes the horizon
        if params.get("relaxation_time_source") != "given":
            kwargs.pop("relaxation_time", None)  # recomputed the same way
    return SYSTEMS[name](**kwargs)
