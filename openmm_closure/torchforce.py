"""An openmm-torch ``TorchForce`` for an exported closure bias, with its global parameters.

``collective_variable.pt`` (see :mod:`openmm_closure.export`) takes the force constant and
the target as openmm-torch global parameters:

- ``closure_k``: force constant k in kJ/mol;
- ``closure_target``: target ẑ* of the biased closure component (raw encoder units).

Their defaults are the values given at export. Umbrella windows and steered runs change
them with ``context.setParameter`` instead of re-exporting.

Example:
    >>> force = closure_torch_force("exported/p2d/collective_variable.pt")    # doctest: +SKIP
    >>> system.addForce(force)                                                # doctest: +SKIP
    >>> context.setParameter("closure_target", 0.4)                           # doctest: +SKIP
"""

from __future__ import annotations

import os
from typing import Any, Optional

__all__ = ["GLOBAL_K", "GLOBAL_TARGET", "closure_torch_force"]

GLOBAL_K = "closure_k"
GLOBAL_TARGET = "closure_target"


def closure_torch_force(path: str | os.PathLike, force_constant: Optional[float] = None,
                        target: Optional[float] = None) -> Any:
    """A ``TorchForce`` of an exported ``collective_variable.pt`` with its global parameters.

    Arguments:
        path: the exported collective variable.
        force_constant: default of ``closure_k`` in kJ/mol (None: the export's).
        target: default of ``closure_target`` (None: the export's).

    Returns:
        An ``openmmtorch.TorchForce`` with the global parameters ``closure_k`` and
        ``closure_target`` added.

    Raises:
        ImportError: openmm-torch is not installed (install acellera-openmmtorch).
        ValueError: the file is not an exported collective variable.
    """
    try:
        import openmmtorch
    except ImportError as exc:  # pragma: no cover - the pinned stack has it
        raise ImportError("closure_torch_force needs openmm-torch: pip install acellera-openmmtorch-cu13") from exc
    from .export import read_metadata

    meta = read_metadata(path)
    if meta.get("kind") != "collective_variable":
        raise ValueError(f"{path} is a {meta.get('kind')!r} export, not collective_variable.pt")
    k = float(meta["force_constant"] if force_constant is None else force_constant)
    t = float(meta["target"] if target is None else target)
    force = openmmtorch.TorchForce(os.fspath(path))
    force.addGlobalParameter(GLOBAL_K, k)
    force.addGlobalParameter(GLOBAL_TARGET, t)
    return force
