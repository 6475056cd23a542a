"""The ensemble rollout as one compiled loop, batched over members.

:meth:`ClosureModel.rollout` runs the dynamics eagerly (a Python loop of small MLP
calls, the path training uses). For inference the same dynamics and state scaler are
wrapped in :class:`openmm_closure.export.ExportedDynamics`, compiled once with
``torch.jit.script`` and cached on the model; the whole loop over time steps then runs
inside TorchScript, on the model's device, for all K members at once.

The noise of an SDE is drawn exactly as :meth:`ClosureModel.rollout` draws it (float64
from a seeded CPU generator, cast to the model's dtype), so the compiled and the eager
rollout of a seed agree to floating-point round-off.

Example:
    >>> traj = compiled_rollout(model, z0, steps=1000, samples=1000, seed=0)  # doctest: +SKIP
    >>> traj.shape                                                             # doctest: +SKIP
    torch.Size([1000, 1001, 3])
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch import Tensor

from .species import state_names

__all__ = ["scripted_dynamics", "rollout_noise", "compiled_rollout"]

_CACHE_ATTR = "_compiled_dynamics"


def scripted_dynamics(model: Any) -> torch.jit.ScriptModule:
    """The model's dynamics + state scaler compiled with TorchScript, made once per model.

    The compiled module holds a copy of the weights; it is made again when the model's
    device, dtype or any dynamics/scaler tensor changed since (in-place updates, such as
    an optimizer step or ``load_state_dict``, bump the tensors' version counters).
    """
    tensors = list(model.dynamics.parameters()) + list(model.state_scaler.buffers())
    key = (str(model.device), model.dtype, tuple((t.data_ptr(), t._version) for t in tensors))
    cached = getattr(model, _CACHE_ATTR, None)
    if cached is not None and cached[0] == key:
        return cached[1]
    import warnings

    from .export import ExportedDynamics

    names = state_names(model.observables, model.latent_dim)
    module = ExportedDynamics(model.dynamics, model.state_scaler, names, model.macro_dim, model.dt).eval()
    for p in module.parameters():
        p.requires_grad_(False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        scripted = torch.jit.script(module)
    # plain attribute (not a submodule): the compiled copy is no part of the state dict
    object.__setattr__(model, _CACHE_ATTR, (key, scripted))
    return scripted


def rollout_noise(model: Any, steps: int, members: int, seed: Optional[int]) -> Optional[Tensor]:
    """Standard normal draws (steps, K, D) for an SDE (None for an ODE), as the eager rollout draws them.

    Arguments:
        model: a ClosureModel.
        steps: number of steps; members: ensemble size K.
        seed: seed of a CPU generator (None: torch's global generator).
    """
    if not getattr(model.dynamics, "stochastic", False):
        return None
    gen = torch.Generator().manual_seed(int(seed)) if seed is not None else None
    noise = torch.randn((int(steps), int(members), model.dim), generator=gen, dtype=torch.float64)
    return noise.to(device=model.device, dtype=model.dtype)


@torch.no_grad()
def compiled_rollout(model: Any, z0: Any, steps: int, samples: int = 1, dt: Optional[float] = None,
                     seed: Optional[int] = None, noise: Optional[Tensor] = None,
                     allow_large: bool = False) -> Tensor:
    """Extrapolate scaled states with the compiled dynamics.

    Arguments:
        model: a :class:`~openmm_closure.model.ClosureModel`.
        z0: (D,) scaled initial state, copied to ``samples`` members, or (K, D).
        steps: number of steps (>= 0), each ``dt`` ps (default ``model.dt``).
        samples: ensemble size K when z0 is (D,).
        seed: seed of the SDE noise (ignored when ``noise`` is given or for an ODE).
        noise: (steps, K, D) standard normal draws for an SDE (default: drawn from ``seed``).
        allow_large: run a rollout over the memory bound of :mod:`openmm_closure.budget`.

    Returns:
        (K, steps + 1, D) scaled states on the model's device, the model's dtype.

    Raises:
        ValueError: bad arguments, or a memory estimate over the bound (named).
    """
    from .budget import check_rollout, check_seed

    steps = int(steps)
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    check_seed(seed)
    z0 = torch.as_tensor(z0).to(device=model.device, dtype=model.dtype)
    check_rollout(steps, int(samples) if z0.dim() == 1 else z0.shape[0], model.dim, allow_large)
    if z0.dim() == 1:
        z0 = z0.unsqueeze(0).expand(int(samples), -1).contiguous()
    if z0.dim() != 2 or z0.shape[-1] != model.dim:
        raise ValueError(f"z0 must have shape (D,) or (K, D) with D = {model.dim}, got {tuple(z0.shape)}")
    dt = float(model.dt if dt is None else dt)
    if noise is None:
        noise = rollout_noise(model, steps, z0.shape[0], seed)
    elif getattr(model.dynamics, "stochastic", False):
        noise = torch.as_tensor(noise).to(device=model.device, dtype=model.dtype)
    else:
        noise = None
    return scripted_dynamics(model).rollout(z0, steps, dt, noise)
