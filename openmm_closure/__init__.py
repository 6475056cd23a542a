"""openmm-closure: learned permutation-invariant closure dynamics for OpenMM.

The physics side (platforms, systems, integrators, observables, reporters) never
imports torch; the model side (models, training, metrics) never imports openmm.
Heavy imports happen inside the functions that need them: the public API below is
imported lazily on first use, so ``import openmm_closure`` loads neither torch nor openmm.

Example:
    >>> from openmm_closure import ClosureSimulation, SurrogateIntegrator, load_model
    >>> SurrogateIntegrator.__module__
    'openmm_closure.surrogate'
"""

__version__ = "0.1.0"

# the lazy names (``_LAZY``) stay out of ``__all__``: ``from openmm_closure import *`` loads no torch
__all__ = ["__version__", "load_model"]

#: public name -> the module that holds it (imported on first access)
_LAZY = {
    "ClosureModel": "openmm_closure.model",
    "ClosureSimulation": "openmm_closure.handover",
    "SurrogateIntegrator": "openmm_closure.surrogate",
    "Registry": "openmm_closure.registry",
    "SYSTEM_REGISTRY": "openmm_closure.catalog",
}


def __getattr__(name):
    """The lazily imported public API (PEP 562)."""
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'openmm_closure' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


def load_model(path, device="cpu"):
    """Load a trained closure model directory (see :mod:`openmm_closure.model`).

    Arguments:
        path: a model directory written by ``openmm-closure train``.
        device: torch device to place the model on.

    Returns:
        A :class:`openmm_closure.model.ClosureModel`.
    """
    from .model import load_model as _load

    return _load(path, device=device)
