"""An openmm-torch ``TorchForce`` for an exported closure bias, with its global parameters.

``collective_variable.pt`` (see :mod:`openmm_closure.hosts.export`) takes the force constant and
the target as openmm-torch global parameters:

- ``closure_k``: force constant k in kJ/mol;
- ``closure_target``: target ẑ* of the biased closure component (raw encoder units).

A bias exported with ``periodic`` (``export --periodic``) also takes the box: openmm-torch
passes it after the positions and before the global parameters when the force uses periodic
boundary conditions, which :func:`closure_torch_force` turns on from the file's metadata.

Their defaults are the values given at export. Umbrella windows and steered runs change
them with ``context.setParameter`` instead of re-exporting.

``closure_cv_<c>.pt`` (``export --cv``, see :mod:`openmm_closure.hosts.cv`) is a TorchForce
whose energy is closure variable c itself: :func:`closure_cv_force` wraps it for
``openmm.CustomCVForce``, :func:`closure_bias_variable` for ``openmm.app.Metadynamics``.

Example:
    >>> force = closure_torch_force("exported/p2d/collective_variable.pt")    # doctest: +SKIP
    >>> system.addForce(force)                                                # doctest: +SKIP
    >>> context.setParameter("closure_target", 0.4)                           # doctest: +SKIP
"""

from __future__ import annotations

import os
from typing import Any, Optional

__all__ = ["GLOBAL_K", "GLOBAL_TARGET", "CV_BACKENDS", "closure_torch_force", "closure_cv_force",
           "closure_bias_variable", "check_particle_count"]

GLOBAL_K = "closure_k"
GLOBAL_TARGET = "closure_target"


def closure_torch_force(path: str | os.PathLike, force_constant: Optional[float] = None,
                        target: Optional[float] = None, system: Any = None) -> Any:
    """A ``TorchForce`` of an exported ``collective_variable.pt`` with its global parameters.

    Arguments:
        path: the exported collective variable.
        force_constant: default of ``closure_k`` in kJ/mol (None: the export's).
        target: default of ``closure_target`` (None: the export's).
        system: the ``openmm.System`` the Force goes into: its particle count is checked
            against the one baked in at export (one line when it does not fit).

    Returns:
        An ``openmmtorch.TorchForce`` with the global parameters ``closure_k`` and
        ``closure_target`` added, and periodic boundary conditions on when the file was
        exported with ``periodic`` (its metadata's ``uses_periodic_boundary_conditions``:
        it then takes the box after the positions).

    Raises:
        ImportError: openmm-torch is not installed (install acellera-openmmtorch).
        ValueError: the file is not an exported collective variable.
    """
    openmmtorch = _openmmtorch("closure_torch_force")
    from ..hosts.export import read_metadata

    meta = read_metadata(path)
    if meta.get("kind") != "collective_variable":
        raise ValueError(f"{path} is a {meta.get('kind')!r} export, not collective_variable.pt")
    if system is not None:
        check_particle_count(meta, system, path)
    k = float(meta["force_constant"] if force_constant is None else force_constant)
    t = float(meta["target"] if target is None else target)
    force = openmmtorch.TorchForce(os.fspath(path))
    # a periodic export takes the box: openmm-torch then calls forward(positions, box, closure_k, closure_target)
    force.setUsesPeriodicBoundaryConditions(bool(meta.get("uses_periodic_boundary_conditions", False)))
    force.addGlobalParameter(GLOBAL_K, k)
    force.addGlobalParameter(GLOBAL_TARGET, t)
    return force


def _openmmtorch(what: str):
    try:
        import openmmtorch
    except ImportError as exc:  # pragma: no cover - the pinned stack has it
        raise ImportError(f"{what} needs openmm-torch: pip install acellera-openmmtorch-cu13") from exc
    return openmmtorch


#: ``closure_cv_force`` backends
CV_BACKENDS = ("python", "torch")


def check_particle_count(meta: dict, system: Any, path: Any) -> None:
    """Refuse, in one line, an export whose baked-in atom subset (or particle count) does not
    fit ``system`` (an ``openmm.System``)."""
    n = int(system.getNumParticles())
    subset = meta.get("atom_subset")
    if subset:
        if max(subset) >= n:
            raise ValueError(f"{path} was exported with atom_subset up to index {max(subset)}; this System has "
                             f"{n} particles: export it again with --atom-subset for this System")
    elif meta.get("n_particles") is not None and int(meta["n_particles"]) != n:
        raise ValueError(f"{path} was exported for {meta['n_particles']} particles; this System has {n}: "
                         "export it again with --atom-subset or --types for this System")


def closure_cv_force(path: str | os.PathLike, backend: str = "python", system: Any = None) -> Any:
    """A Force whose energy is one closure variable: a collective variable.

    Arguments:
        path: an exported ``closure_cv_<c>.pt`` or ``observable_cv_<name>.pt``
            (``openmm-closure export --cv``).
        backend: ``"python"`` (default): an ``openmm.PythonForce`` that runs the exported
            TorchScript file with torch; ``"torch"``: openmm-torch's ``TorchForce`` of the
            file. Both give the same value and forces. ``CustomCVForce`` and
            ``Metadynamics`` clone each collective variable through ``XmlSerializer``, and
            openmm-torch 1.10 with torch 2.12 (the pinned stack) crashes when it
            deserializes a TorchForce, so there only the python backend works inside them;
            the torch one is for a stack whose openmm-torch serializes (check with
            ``XmlSerializer.clone``) or for a TorchForce used on its own.
        system: the ``openmm.System`` the Force goes into: its particle count is checked
            against the atom subset baked in at export (one line when it does not fit).

    Returns:
        The Force (periodic boundary conditions on when the file was exported with
        ``periodic``), ready for ``CustomCVForce.addCollectiveVariable`` or
        ``BiasVariable``. Its energy is ẑ_c (dimensionless, read by OpenMM as kJ/mol): do
        not add it to a System on its own.

    Raises:
        ImportError: openmm-torch (torch backend) or PythonForce (python) is missing.
        ValueError: the file is not an exported closure CV, an unknown backend, or an atom
            subset that does not fit ``system``.

    Example:
        >>> cv = openmm.CustomCVForce("0.5*k*(z - z0)^2")                    # doctest: +SKIP
        >>> cv.addCollectiveVariable("z", closure_cv_force("x/closure_cv_0.pt"))  # doctest: +SKIP
    """
    if backend not in CV_BACKENDS:
        raise ValueError(f"closure_cv_force: unknown backend {backend!r}; choose from {', '.join(CV_BACKENDS)}")
    from ..hosts.export import load_exported

    _, meta = load_exported(path)  # checked against its export directory's index, if any
    if meta.get("kind") not in ("closure_cv", "observable_cv"):
        raise ValueError(f"{path} is a {meta.get('kind')!r} export, not closure_cv_<c>.pt or "
                         "observable_cv_<name>.pt (export --cv)")
    if system is not None:
        check_particle_count(meta, system, path)
    periodic = bool(meta.get("periodic", False))
    if backend == "torch":
        openmmtorch = _openmmtorch("closure_cv_force(backend='torch')")
        force = openmmtorch.TorchForce(os.fspath(path))
        force.setUsesPeriodicBoundaryConditions(periodic)
    else:
        from .pythonforce import closure_python_cv

        force = closure_python_cv(path, periodic)
    force.setName(f"closure CV {meta.get('observable') or meta.get('name', meta.get('component'))}")
    return force


def closure_bias_variable(path: str | os.PathLike, minValue: float, maxValue: float, biasWidth: float,
                          periodic: bool = False, gridWidth: Optional[int] = None, backend: str = "python") -> Any:
    """An ``openmm.app.metadynamics.BiasVariable`` on one exported closure variable.

    Arguments:
        path: an exported ``closure_cv_<c>.pt``.
        minValue, maxValue: range of ẑ_c the bias grid covers (raw encoder units).
        biasWidth: width (standard deviation) of the deposited Gaussians, raw units.
        periodic: whether ẑ_c is periodic on [minValue, maxValue] (closure variables are
            not: keep False).
        gridWidth: grid points (None: OpenMM's default from the range and width).
        backend: the CV's Force, see :func:`closure_cv_force`.

    Returns:
        A ``BiasVariable`` for ``openmm.app.Metadynamics``.

    Raises:
        ValueError: bad range or width (one line), or not a closure CV file.
    """
    import math

    from openmm.app.metadynamics import BiasVariable

    lo, hi, w = float(minValue), float(maxValue), float(biasWidth)
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"closure_bias_variable: need finite minValue < maxValue, got {lo}, {hi}")
    if not (math.isfinite(w) and 0 < w < hi - lo):
        raise ValueError(f"closure_bias_variable: biasWidth must be in (0, maxValue - minValue), got {w}")
    return BiasVariable(closure_cv_force(path, backend), lo, hi, w, periodic, gridWidth)
