"""openmm-closure: learned permutation-invariant closure dynamics for OpenMM.

The physics side (platforms, systems, integrators, observables, reporters) never
imports torch; the model side (models, training, metrics) never imports openmm.
Heavy imports happen inside the functions that need them: the public API below is
imported lazily on first use, so ``import openmm_closure`` loads neither torch nor openmm.

Example:
    >>> from openmm_closure import ClosureSimulation, SurrogateIntegrator, load_model
    >>> SurrogateIntegrator.__module__
    'openmm_closure.couple.surrogate'
"""

__version__ = "0.1.0"

# the lazy names (``_LAZY``) stay out of ``__all__``: ``from openmm_closure import *`` loads no torch
__all__ = ["__version__", "load_model"]

#: public name -> the module that holds it (imported on first access)
_LAZY = {
    "ClosureModel": "openmm_closure.learn.model",
    "ClosureSimulation": "openmm_closure.couple.handover",
    "SurrogateIntegrator": "openmm_closure.couple.surrogate",
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
    if name in _MOVED:  # an old name as an attribute: the moved module
        import importlib

        return importlib.import_module(f"openmm_closure.{name}")
    raise AttributeError(f"module 'openmm_closure' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


def load_model(path, device="cpu"):
    """Load a trained closure model directory (see :mod:`openmm_closure.learn.model`).

    Arguments:
        path: a model directory written by ``openmm-closure train``.
        device: torch device to place the model on.

    Returns:
        A :class:`openmm_closure.learn.model.ClosureModel`.
    """
    from .learn.model import load_model as _load

    return _load(path, device=device)


#: modules that moved into a wing, by their old names: importing the old name
#: (``openmm_closure.surrogate``, ``openmm_closure.platforms``) gives the module itself
_MOVED = {
    "integrators": "md.integrators",
    "platforms": "md.platforms",
    "observables": "md.observables",
    "simulate": "md.simulate",
    "simulate_batch": "md.simulate_batch",
    "objectives": "learn.objectives",
    "frames": "learn.frames",
    "training": "learn.training",
    "model": "learn.model",
    "model_config": "learn.model_config",
    "distributed": "learn.distributed",
    "selection": "learn.selection",
    "config_file": "learn.config_file",
    "metrics": "evaluate.metrics",
    "metric_kinds": "evaluate.metric_kinds",
    "evaluation": "evaluate.evaluation",
    "diagnostics": "evaluate.diagnostics",
    "surrogate": "couple.surrogate",
    "handover": "couple.handover",
    "lift": "couple.lift",
    "guard": "couple.guard",
    "fast_rollout": "couple.fast_rollout",
    "torchforce": "couple.torchforce",
    "pythonforce": "couple.pythonforce",
    "projective": "couple.projective",
    "export": "hosts.export",
    "scripting": "hosts.scripting",
    "pixel_dataset": "video.pixel_dataset",
    "render": "video.render",
}


class _MovedFinder:
    """Finds a moved module by its old name and hands back the module itself."""

    def find_spec(self, fullname, path=None, target=None):
        old = fullname.partition("openmm_closure.")[2] if fullname.startswith("openmm_closure.") else None
        if old not in _MOVED:
            return None
        import importlib.util

        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec):
        import importlib

        new = "openmm_closure." + _MOVED[spec.name.partition("openmm_closure.")[2]]
        module = importlib.import_module(new)
        self._spec = module.__spec__
        return module

    def exec_module(self, module):
        module.__spec__ = self._spec  # the import system set the alias's spec: the module keeps its own


import sys as _sys

if not any(isinstance(f, _MovedFinder) or type(f).__name__ == "_MovedFinder" for f in _sys.meta_path):
    _sys.meta_path.append(_MovedFinder())
del _sys
