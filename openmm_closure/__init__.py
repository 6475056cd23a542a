"""openmm-closure: learned permutation-invariant closure dynamics for OpenMM.

The physics side (platforms, systems, integrators, observables, reporters) never
imports torch; the model side (models, training, metrics) never imports openmm.
Heavy imports happen inside the functions that need them.
"""

__version__ = "0.1.0"

__all__ = ["__version__", "load_model"]


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
