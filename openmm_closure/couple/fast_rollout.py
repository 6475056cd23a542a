"""The one rollout engine: the noise, the loop, eager and compiled.

- The loop is the dynamics' own :meth:`~openmm_closure.models.dynamics.RolloutBase.rollout`
  (every step through ``step``): :meth:`ClosureModel.rollout` runs it eagerly (the path
  training uses), :class:`ExportedDynamics` wraps it with the state scaler for
  TorchScript (the compiled engine, cached on the model by :func:`scripted_dynamics`,
  the module written as ``dynamics.pt``), and the ``.pt2`` rollout calls it too.
- The noise is :func:`draw_noise`: float64 standard normal draws from a seeded CPU
  generator, for the whole ensemble, cast to the model's dtype. The model, the
  evaluation, the surrogate integrator, the hand-over and the exports all take their
  noise from it, so one seed gives one ensemble on every path (an ODE draws none).

Example:
    >>> traj = compiled_rollout(model, z0, steps=1000, samples=1000, seed=0)  # doctest: +SKIP
    >>> traj.shape                                                             # doctest: +SKIP
    torch.Size([1000, 1001, 3])
"""


import copy
from typing import Any, List, Optional, Sequence

import torch
from torch import Tensor, nn

from ..species import state_names

__all__ = ["draw_noise", "ExportedDynamics", "scripted_dynamics", "rollout_noise", "compiled_rollout"]


def draw_noise(stochastic: bool, steps: int, members: int, dim: int, seed: Optional[int] = None,
               rows: Optional[tuple[int, int]] = None, device: Any = "cpu",
               dtype: torch.dtype = torch.float64) -> Optional[Tensor]:
    """The standard normal draws of an SDE rollout: the one noise function.

    Arguments:
        stochastic: False (an ODE): no noise, None is returned.
        steps: number of steps; members: ensemble size K (the rows returned).
        dim: state dimension D.
        seed: seed of a CPU generator (None: torch's global generator).
        rows: ``(start, total)``: the K members are members ``[start, start + K)`` of an
            ensemble of ``total``: the draws are made for all ``total`` and sliced, so the
            members equal those of the whole ensemble (None: ``(0, K)``).
        device, dtype: where the draws go (drawn in float64 on the CPU, then cast).

    Returns:
        (steps, K, D) tensor, or None for an ODE.

    Example:
        >>> a = draw_noise(True, 3, 4, 2, seed=0)
        >>> b = draw_noise(True, 3, 2, 2, seed=0, rows=(2, 4))
        >>> a.shape, bool((a[:, 2:] == b).all()), draw_noise(False, 3, 4, 2, seed=0)
        (torch.Size([3, 4, 2]), True, None)
    """
    if not stochastic:
        return None
    start, total = (0, int(members)) if rows is None else (int(rows[0]), int(rows[1]))
    if not 0 <= start <= total - int(members):
        raise ValueError(f"rows {rows!r}: {members} members do not fit at {start} in {total}")
    gen = torch.Generator().manual_seed(int(seed)) if seed is not None else None
    noise = torch.randn((int(steps), total, int(dim)), generator=gen, dtype=torch.float64)
    return noise[:, start:start + int(members)].to(device=device, dtype=dtype)


class ExportedDynamics(nn.Module):
    """Dynamics and state scaler of a closure model as one TorchScript-able module.

    Arguments:
        dynamics: the model's dynamics (``model.dynamics``; a deep copy is taken).
        scaler: the model's state scaler (``model.state_scaler``).
        names: names of the state components ``[z̄, ẑ]``.
        macro_dim: number of observables in z̄.
        dt: default time step in ps.
    """

    dt: float
    dim: int
    macro_dim: int
    latent_dim: int
    stochastic: bool
    names: List[str]
    _probe: Tensor

    def __init__(self, dynamics: nn.Module, scaler: nn.Module, names: Sequence[str], macro_dim: int, dt: float):
        super().__init__()
        self.dynamics = copy.deepcopy(dynamics)
        self.scaler = copy.deepcopy(scaler)
        self.dt = float(dt)
        self.dim = int(dynamics.dim)
        self.macro_dim = int(macro_dim)
        self.latent_dim = self.dim - self.macro_dim
        self.stochastic = bool(getattr(dynamics, "stochastic", False))
        self.names = [str(n) for n in names]
        probe = next(iter(dynamics.parameters()), torch.zeros(0))
        self.register_buffer("_probe", torch.zeros(0, dtype=probe.dtype, device=probe.device), persistent=False)

    def _in(self, z: Tensor) -> Tensor:
        return z.to(dtype=self._probe.dtype, device=self._probe.device)

    def forward(self, z: Tensor) -> Tensor:
        """Drift g(z) (..., D) per ps of scaled states z (..., D)."""
        return self.dynamics.drift(self._in(z)).to(z.dtype)

    @torch.jit.export
    def drift(self, z: Tensor) -> Tensor:
        """Drift g(z) (..., D) per ps of scaled states z (..., D)."""
        return self.dynamics.drift(self._in(z)).to(z.dtype)

    @torch.jit.export
    def diffusion(self, z: Tensor) -> Tensor:
        """Diagonal diffusion σ(z) (..., D) per sqrt(ps); zeros for an ODE."""
        return self.dynamics.diffusion(self._in(z)).to(z.dtype)

    @torch.jit.export
    def step(self, z: Tensor, dt: float, noise: Tensor) -> Tensor:
        """One step of dt ps from scaled z (..., D); ``noise`` (..., D) N(0, 1) (ODE: ignored)."""
        return self.dynamics.step(self._in(z), dt, self._in(noise)).to(z.dtype)

    @torch.jit.export
    def rollout(self, z0: Tensor, steps: int, dt: float, noise: Optional[Tensor] = None) -> Tensor:
        """Integrate from scaled z0 (K, D) for ``steps`` steps of dt ps.

        Arguments:
            z0: (K, D) scaled initial states.
            steps: number of steps (>= 0).
            dt: time step in ps.
            noise: (steps, K, D) standard normal draws for an SDE (None: drawn here);
                ignored by an ODE.

        Returns:
            (K, steps + 1, D) scaled states, dtype of z0.
        """
        if steps < 0:
            raise ValueError("steps must be >= 0")
        if z0.dim() != 2 or z0.shape[1] != self.dim:
            raise ValueError("z0 must have shape (K, " + str(self.dim) + ")")
        n: Optional[Tensor] = None
        if noise is not None:
            if noise.dim() != 3 or noise.shape[0] < steps or noise.shape[1] != z0.shape[0] or noise.shape[2] != self.dim:
                raise ValueError("noise must have shape (steps, K, " + str(self.dim) + ")")
            n = self._in(noise)
        return self.dynamics.rollout(self._in(z0), steps, dt, n).to(z0.dtype)

    @torch.jit.export
    def scale(self, raw: Tensor) -> Tensor:
        """Raw ``[z̄, ẑ]`` (..., D) -> scaled (..., D) in [-1, 1] over the training range."""
        return self.scaler(raw)

    @torch.jit.export
    def unscale(self, z: Tensor) -> Tensor:
        """Scaled states (..., D) -> raw ``[z̄, ẑ]`` (..., D)."""
        return self.scaler.inverse(z)



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


def rollout_noise(model: Any, steps: int, members: int, seed: Optional[int],
                  rows: Optional[tuple[int, int]] = None) -> Optional[Tensor]:
    """:func:`draw_noise` for a model: (steps, K, D) in its dtype on its device (None for an ODE).

    Arguments:
        model: a ClosureModel.
        steps: number of steps; members: ensemble size K.
        seed: seed of a CPU generator (None: torch's global generator).
        rows: ``(start, total)`` as in :func:`draw_noise`.
    """
    return draw_noise(bool(getattr(model.dynamics, "stochastic", False)), steps, members, model.dim, seed,
                      rows, model.device, model.dtype)


@torch.no_grad()
def compiled_rollout(model: Any, z0: Any, steps: int, samples: int = 1, dt: Optional[float] = None,
                     seed: Optional[int] = None, noise: Optional[Tensor] = None,
                     allow_large: bool = False) -> Tensor:
    """Extrapolate scaled states with the compiled dynamics.

    Arguments:
        model: a :class:`~openmm_closure.learn.model.ClosureModel`.
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
    from ..budget import check_rollout, check_seed

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
