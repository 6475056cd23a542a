"""Closure forces through ``openmm.PythonForce`` (OpenMM >= 8.6): no openmm-torch needed.

``openmm.PythonForce(computation, globalParameters)`` calls ``computation(state)`` with an
OpenMM ``State`` (positions in nm, global parameters, the box when periodic) and takes back
``(energy kJ/mol, forces (N, 3) kJ/mol/nm)``; the computation is pickled (OpenMM clones
forces through ``XmlSerializer``, e.g. into the inner context of ``CustomCVForce``), so the
objects here pickle as a path or a small encoder module and load the rest lazily.

- :func:`closure_python_force`: the harmonic closure bias ``0.5 closure_k (ẑ_c -
  closure_target)²`` of the *eager* model (no TorchScript), the same energy and forces as
  ``collective_variable.pt`` under openmm-torch's ``TorchForce``.
- :func:`closure_python_cv`: an exported ``closure_cv_<c>.pt`` run by torch inside a
  PythonForce: energy = ẑ_c, for ``CustomCVForce`` / ``BiasVariable``. openmm-torch 1.10
  with torch 2.12 crashes when a ``TorchForce`` is cloned through ``XmlSerializer``, which
  ``CustomCVForce`` does to every collective variable, so this is the CV route that works
  on the pinned stack (see :func:`openmm_closure.couple.torchforce.closure_cv_force`).

Example:
    >>> force = closure_python_force("models/p2d", component=0, force_constant=100.0)  # doctest: +SKIP
    >>> system.addForce(force)                                                        # doctest: +SKIP
"""

from __future__ import annotations

import copy
import os
from typing import Any, Optional

import numpy as np

__all__ = ["EagerClosureBias", "ScriptedClosureCV", "closure_python_force", "closure_python_cv"]

GLOBAL_K = "closure_k"
GLOBAL_TARGET = "closure_target"


def _positions(state) -> np.ndarray:
    return np.asarray(state.getPositions(asNumpy=True)._value, dtype=np.float64)


def _box(state) -> np.ndarray:
    return np.asarray(state.getPeriodicBoxVectors(asNumpy=True)._value, dtype=np.float64)


class EagerClosureBias:
    """``computation(state)`` of the harmonic bias on closure component c, eager model.

    Arguments:
        encoder: the model's set encoder (a deep copy is taken; it is what gets pickled).
        component: c.
        types: (n,) species of the particles (None: one species).
    """

    def __init__(self, encoder, component: int, types: Optional[Any] = None):
        import torch

        self.encoder = copy.deepcopy(encoder).cpu().eval()
        for p in self.encoder.parameters():
            p.requires_grad_(False)
        self.component = int(component)
        self.types = None if types is None else torch.as_tensor(np.asarray(types), dtype=torch.long).reshape(-1)

    def __call__(self, state):
        """Energy (kJ/mol) and forces (N, 3) kJ/mol/nm at ``state``."""
        import torch

        pos = _positions(state)
        params = state.getParameters()
        k, target = float(params[GLOBAL_K]), float(params[GLOBAL_TARGET])
        x = torch.tensor(pos, requires_grad=True)
        t = torch.zeros(len(pos), dtype=torch.long) if self.types is None else self.types
        if len(t) != len(pos):
            raise ValueError(f"closure_python_force was made for {len(t)} particles, got {len(pos)}")
        zc = self.encoder(x, t)[self.component].to(torch.float64)
        energy = 0.5 * k * (zc - target) ** 2
        (grad,) = torch.autograd.grad(energy, x)
        return float(energy.detach()), -grad.numpy()


class ScriptedClosureCV:
    """``computation(state)`` of an exported ``closure_cv_<c>.pt``: energy = ẑ_c.

    Arguments:
        path: the exported file (pickled as this path; loaded on first use).
        periodic: pass the box (the file was exported with ``periodic``).
    """

    def __init__(self, path: str, periodic: bool = False):
        self.path = os.fspath(path)
        self.periodic = bool(periodic)
        self._module = None

    def __getstate__(self) -> dict:
        return {"path": self.path, "periodic": self.periodic}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["path"], state["periodic"])

    def __call__(self, state):
        """ẑ_c as the energy and -∂ẑ_c/∂x (N, 3) as the forces at ``state``."""
        import torch

        if self._module is None:
            self._module = torch.jit.load(self.path, map_location="cpu")
        x = torch.tensor(_positions(state), requires_grad=True)
        if self.periodic:
            z = self._module(x, torch.tensor(_box(state)))
        else:
            z = self._module(x)
        (grad,) = torch.autograd.grad(z, x)
        return float(z.detach()), -grad.numpy()


def closure_python_force(model, component: int = 0, force_constant: float = 1.0, target: float = 0.0,
                         types: Optional[Any] = None) -> Any:
    """An ``openmm.PythonForce`` of the harmonic closure bias with the eager model.

    .. math:: E = \\tfrac12\\,\\mathrm{closure\\_k}\\,(\\hat z_c(X) - \\mathrm{closure\\_target})^2

    Arguments:
        model: a model directory or a loaded :class:`~openmm_closure.learn.model.ClosureModel`.
        component: closure component c.
        force_constant: default of the global parameter ``closure_k``, kJ/mol.
        target: default of ``closure_target`` (raw ẑ units).
        types: (n,) species of every particle (required for a multi-species model).

    Returns:
        ``openmm.PythonForce`` with global parameters ``closure_k`` and ``closure_target``
        (``context.setParameter`` moves them, as with the TorchForce path).

    Raises:
        ImportError: OpenMM older than 8.6 (no PythonForce).
        ValueError: bad component, or a multi-species model without types.
    """
    import openmm

    if not hasattr(openmm, "PythonForce"):
        raise ImportError(f"closure_python_force needs openmm.PythonForce (OpenMM >= 8.6), found {openmm.__version__}")
    if isinstance(model, (str, os.PathLike)):
        from ..learn.model import load_model

        model = load_model(model, device="cpu")
    d = int(model.latent_dim)
    if not 0 <= int(component) < d:
        raise ValueError(f"component must be in [0, {d}), got {component}")
    if types is None and int(model.n_species) != 1:
        raise ValueError(f"the model has {model.n_species} species: pass the species of every particle (types)")
    if not (np.isfinite(force_constant) and np.isfinite(target)):
        raise ValueError("force_constant and target must be finite")
    comp = EagerClosureBias(model.encoder, component, types)
    force = openmm.PythonForce(comp, {GLOBAL_K: float(force_constant), GLOBAL_TARGET: float(target)})
    force.setName(f"closure bias zhat_{int(component)}")
    return force


def closure_python_cv(path, periodic: bool = False) -> Any:
    """An ``openmm.PythonForce`` whose energy is the exported closure CV ``path``.

    Arguments:
        path: an exported ``closure_cv_<c>.pt``.
        periodic: the file takes the box (its metadata's ``periodic``).

    Returns:
        ``openmm.PythonForce`` (periodic when ``periodic``).
    """
    import openmm

    if not hasattr(openmm, "PythonForce"):
        raise ImportError(f"closure_python_cv needs openmm.PythonForce (OpenMM >= 8.6), found {openmm.__version__}")
    force = openmm.PythonForce(ScriptedClosureCV(os.fspath(path), periodic))
    force.setUsesPeriodicBoundaryConditions(bool(periodic))
    return force
