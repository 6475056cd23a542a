"""Compatibility name of :mod:`openmm_closure.model` (the trained model and its directory).

Older code imports ``ClosureModel``, ``load_model`` and ``save_model`` from here; new code
imports them from :mod:`openmm_closure.model`.
"""

from .fileio import atomic_write_bytes
from .model import (
    CONFIG,
    FORMAT_VERSION,
    HISTORY,
    UNITS,
    WEIGHTS,
    ClosureModel,
    ModelConfig,
    check_model_dir,
    load_model,
    save_model,
    save_torch_atomic,
)

__all__ = ["FORMAT_VERSION", "ClosureModel", "ModelConfig", "save_model", "load_model", "check_model_dir",
           "atomic_write_bytes"]
