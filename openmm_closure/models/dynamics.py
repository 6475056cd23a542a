r"""Learned dynamics on the scaled macroscopic state :math:`z = [\bar z, \hat z] \in [-1, 1]^D`.

- :class:`ODEDynamics`: :math:`dz/dt = g(z)`; loss = MSE between g(z_t) and the finite
  difference :math:`(z_{t+1} - z_t)/\Delta t`; rollouts by classical RK4.
- :class:`SDEDynamics`: :math:`dz = g(z)\,dt + \mathrm{diag}(\sigma(z))\,dW`; loss =
  negative log-likelihood of the Euler–Maruyama transition
  :math:`\mathcal N(z_t + g\Delta t, \Delta t\,\sigma^2)`; rollouts by Euler–Maruyama.
  The diffusion is either scaled by the data (``diffusion="data"``, the default of new
  models): :math:`\sigma_k^2 = f v_k + v_k\,\mathrm{softplus}(\mathrm{MLP}_k(z) + c)`,
  with :math:`v_k` the training data's increment variance per ps of component k at the
  training step, :math:`f` a small floor fraction and c chosen so that a fresh network
  starts at :math:`\sigma_k^2 \approx v_k`; or, as in the reference code and in models
  trained before it, :math:`\sigma = \sqrt{\sigma_0^2 + \mathrm{MLP}(z)^2}` with a fixed
  floor :math:`\sigma_0^2` in scaled units² per ps.

Both are **confined**: outside the box :math:`|z_k| \le b` (b = 1 + the guard's margin,
the edge of the training range the guard allows) the networks see the nearest point of
the box, and a restoring flow :math:`\dot z = -\kappa (z - \mathrm{clamp}(z, -b, b))`
pulls the state back; each step applies it exactly (the excess decays by
:math:`e^{-\kappa\Delta t}`), so no step size makes it unstable and no rollout diverges.
Inside the box the dynamics is the networks' alone. Models trained before this have
``bound = inf`` and ``restore_rate = 0``: the plain dynamics.

The drift g is either an MLP (:class:`DriftMLP`) or OnsagerNet-structured
(:class:`OnsagerDrift`). Time is in ps (the dataset's frame spacing), z is
dimensionless. All modules are ``torch.jit.script``-able; rollouts take the noise as an
optional tensor so that callers control the random numbers.
"""

import inspect
import math
from typing import Any, Callable, Optional, Sequence

import torch
from torch import Tensor, nn

from ..registry import Registry
from .encoder import MLP
from .nn import DYNAMICS_MEMBERS

__all__ = ["DriftMLP", "OnsagerDrift", "RolloutBase", "ODEDynamics", "SDEDynamics", "build_dynamics",
           "build_drift", "DIFFUSION_MODES", "DYNAMICS", "DRIFTS"]

#: ``diffusion=`` of :class:`SDEDynamics`: scaled by the data, or a fixed floor σ0²
DIFFUSION_MODES = ("data", "floor")



class DriftMLP(nn.Module):
    """Unstructured drift g(z) = MLP(z).

    Arguments:
        dim: state dimension D.
        hidden: hidden sizes.

    Example:
        >>> DriftMLP(3)(torch.zeros(5, 3)).shape
        torch.Size([5, 3])
    """

    def __init__(self, dim: int, hidden: Sequence[int] = (128, 128)):
        super().__init__()
        self.net = MLP(dim, dim, hidden)

    def forward(self, z: Tensor) -> Tensor:
        """Drift (..., D) per ps of scaled states z (..., D)."""
        return self.net(z)


class OnsagerDrift(nn.Module):
    r"""OnsagerNet drift :math:`g = -(M(z) + W(z))\nabla V(z) + f`.

    :math:`M = L L^\top + \alpha I \succeq 0` (L lower triangular), :math:`W = A - A^\top`
    antisymmetric, both from an MLP of z; the potential

    .. math:: V(z) = \tfrac{\beta}{2}\|z\|^2 + \sum_k \mathrm{softplus}(a_k)\,
              \mathrm{softplus}(w_k \cdot z + b_k)

    is bounded below with an analytic gradient (so the module stays scriptable), and f
    is a learned constant force.

    Arguments:
        dim: state dimension D.
        hidden: hidden sizes of the M/W network.
        units: number of potential units K.
        alpha: dissipation floor α.
        beta: confinement β.

    Example:
        >>> OnsagerDrift(2)(torch.zeros(4, 2)).shape
        torch.Size([4, 2])
    """

    def __init__(
        self,
        dim: int,
        hidden: Sequence[int] = (128, 128),
        units: int = 64,
        alpha: float = 0.01,
        beta: float = 0.1,
    ):
        super().__init__()
        self.dim = int(dim)
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.mats = MLP(dim, 2 * dim * dim, hidden)
        self.potential = nn.Linear(dim, units)
        self.weights = nn.Parameter(torch.zeros(units))
        self.force = nn.Parameter(torch.zeros(dim))

    def grad_potential(self, z: Tensor) -> Tensor:
        """∇V(z) of shape (..., D)."""
        s = torch.sigmoid(self.potential(z)) * nn.functional.softplus(self.weights)
        return self.beta * z + s @ self.potential.weight

    def forward(self, z: Tensor) -> Tensor:
        """Drift (..., D) per ps of scaled states z (..., D)."""
        d = self.dim
        mats = self.mats(z).reshape(z.shape[:-1] + (2, d, d))
        low = torch.tril(mats[..., 0, :, :])
        a = mats[..., 1, :, :]
        eye = torch.eye(d, dtype=z.dtype, device=z.device)
        m = low @ low.transpose(-1, -2) + self.alpha * eye
        w = a - a.transpose(-1, -2)
        grad = self.grad_potential(z).unsqueeze(-1)
        return -((m + w) @ grad).squeeze(-1) + self.force


def _check_factory(what: str) -> Callable[[str, Any], None]:
    def check(name: str, record: Any) -> None:
        if not callable(record):
            raise ValueError(f"{what} {name!r}: register a class or factory, got {record!r}")
        if what == "dynamics" and isinstance(record, type):
            # the attributes (dim, dt, stochastic) are set per instance: the methods are checked here
            missing = [m for m in DYNAMICS_MEMBERS if m not in ("dim", "dt", "stochastic") and not hasattr(record, m)]
            if missing:
                raise ValueError(f"dynamics {name!r}: {record.__name__} lacks {missing} of the Dynamics protocol")
    return check


#: ``--drift`` name -> ``factory(dim, hidden) -> nn.Module`` mapping z (..., D) to g(z) (..., D) per ps;
#: other packages add drifts under the entry-point group ``openmm_closure.drifts``
DRIFTS = Registry("drift", group="openmm_closure.drifts", check=_check_factory("drift"))

#: ``--dynamics`` kind -> class (or factory) ``(dim, *, dt, **kwargs)`` of a
#: :class:`~openmm_closure.models.nn.Dynamics`; other packages add kinds under the
#: entry-point group ``openmm_closure.dynamics``
DYNAMICS = Registry("dynamics", group="openmm_closure.dynamics", check=_check_factory("dynamics"))


def build_drift(kind: str, dim: int, hidden: Sequence[int] = (128, 128)) -> nn.Module:
    """The drift network registered as ``kind`` (``"mlp"``, ``"onsager"``, a plugin's)."""
    return DRIFTS[kind](dim, hidden)


_make_drift = build_drift


def _check_confinement(bound: float, restore_rate: float) -> None:
    if not (float(bound) > 0):  # inf allowed: no box
        raise ValueError(f"bound must be > 0 (inf: no confinement), got {bound}")
    if not (math.isfinite(float(restore_rate)) and float(restore_rate) >= 0):
        raise ValueError(f"restore_rate must be a finite rate >= 0 per ps, got {restore_rate}")


class RolloutBase(nn.Module):
    """What every dynamics shares: the box the networks see, the exact restoring step and
    the one rollout loop (every caller, eager, compiled, exported or ``.pt2``, goes
    through :meth:`rollout` and :meth:`step`). A new dynamics kind subclasses it and
    implements ``drift``, ``diffusion``, ``step`` and ``loss``."""

    bound: float
    restore_rate: float
    stochastic: bool

    def inside(self, z: Tensor) -> Tensor:
        """The nearest point of the box |z_k| <= bound (z itself inside it)."""
        return torch.clamp(z, -self.bound, self.bound)

    def restoring(self, z: Tensor) -> Tensor:
        """-κ (z - clamp(z)): zero inside the box, per ps."""
        return -self.restore_rate * (z - self.inside(z))

    def relax(self, z: Tensor, dt: float) -> Tensor:
        """The restoring flow solved exactly over dt ps: the excess over the box decays
        by exp(-κ dt) (componentwise; inside the box nothing changes)."""
        c = self.inside(z)
        return c + (z - c) * math.exp(-self.restore_rate * dt)

    def step(self, z: Tensor, dt: float, noise: Tensor) -> Tensor:
        """One step of dt ps (overridden)."""
        return z

    @torch.jit.export
    def rollout(self, z0: Tensor, steps: int, dt: float, noise: Optional[Tensor] = None) -> Tensor:
        """Integrate from z0 (K, D) for ``steps`` steps of dt ps; returns (K, steps + 1, D).

        ``noise`` (steps, K, D) standard normal draws of an SDE (drawn with
        ``torch.randn`` when omitted); an ODE ignores it and draws none.
        """
        if noise is None and self.stochastic:
            noise = torch.randn((steps,) + z0.shape, dtype=z0.dtype, device=z0.device)
        out = [z0]
        z = z0
        empty = torch.zeros(0, dtype=z0.dtype, device=z0.device)
        for i in range(steps):
            if noise is None:
                z = self.step(z, dt, empty)
            else:
                z = self.step(z, dt, noise[i])
            out.append(z)
        return torch.stack(out, dim=1)


class ODEDynamics(RolloutBase):
    r"""Deterministic dynamics :math:`dz/dt = g(z)` with RK4 rollouts, confined to a box.

    Arguments:
        dim: state dimension D.
        hidden: hidden sizes of the drift network.
        drift: ``"mlp"`` or ``"onsager"``.
        dt: default time step Δt in ps (the training step).
        bound: half-width b of the box in scaled units (inf: none; see module docstring).
        restore_rate: κ of the restoring flow outside the box, per ps.

    Example:
        >>> dyn = ODEDynamics(2, dt=0.1)
        >>> dyn.rollout(torch.zeros(3, 2), 5, 0.1).shape
        torch.Size([3, 6, 2])
    """

    stochastic: bool

    def __init__(self, dim: int, hidden: Sequence[int] = (128, 128), drift: str = "mlp", dt: float = 1.0,
                 bound: float = math.inf, restore_rate: float = 0.0):
        super().__init__()
        if int(dim) <= 0:
            raise ValueError(f"state dimension must be >= 1, got {dim}")
        _check_confinement(bound, restore_rate)
        self.dim = int(dim)
        self.dt = float(dt)
        self.bound = float(bound)
        self.restore_rate = float(restore_rate)
        self.stochastic = False
        self.drift_net = _make_drift(drift, self.dim, hidden)

    def forward(self, z: Tensor) -> Tensor:
        """Drift g(z) (..., D) per ps (the TorchScript entry point)."""
        return self.drift(z)

    @torch.jit.export
    def drift(self, z: Tensor) -> Tensor:
        """g(z): the network at the nearest point of the box plus the restoring term, (..., D) per ps."""
        return self.drift_net(self.inside(z)) + self.restoring(z)

    @torch.jit.export
    def diffusion(self, z: Tensor) -> Tensor:
        """σ(z): zeros (..., D) for an ODE."""
        return torch.zeros_like(z)

    @torch.jit.export
    def loss(self, z0: Tensor, z1: Tensor, dt: float) -> Tensor:
        """MSE between g(z0) and (z1 - z0)/dt; z0, z1 (B, D) scaled, dt in ps. Returns ()."""
        target = (z1 - z0) / dt
        return ((self.drift(z0) - target) ** 2).mean()

    @torch.jit.export
    def step(self, z: Tensor, dt: float, noise: Tensor) -> Tensor:
        """One RK4 step of the network's flow, then the exact restoring flow; ``noise`` is ignored."""
        k1 = self.drift_net(self.inside(z))
        k2 = self.drift_net(self.inside(z + 0.5 * dt * k1))
        k3 = self.drift_net(self.inside(z + 0.5 * dt * k2))
        k4 = self.drift_net(self.inside(z + dt * k3))
        return self.relax(z + dt / 6.0 * (k1 + 2.0 * k2 + 2.0 * k3 + k4), dt)


class SDEDynamics(RolloutBase):
    r"""Stochastic dynamics :math:`dz = g(z)dt + \mathrm{diag}(\sigma(z)) dW`, confined to a box.

    Arguments:
        dim: state dimension D.
        hidden: hidden sizes of the drift and diffusion networks.
        drift: ``"mlp"`` or ``"onsager"``.
        sigma0_sq: the fixed floor σ0² of ``diffusion="floor"``, scaled units² per ps
            (the reference code's 0.01 is in its own units; see the module docstring).
        dt: default time step Δt in ps (the training step).
        diffusion: ``"data"`` (σ² scaled by the data's increment variance, set with
            :meth:`set_data_scale` before training) or ``"floor"`` (σ0² + MLP²).
        floor_fraction: f of ``diffusion="data"``: σ_k² >= f v_k.
        bound, restore_rate: the box and the restoring rate (see :class:`ODEDynamics`).

    Example:
        >>> dyn = SDEDynamics(2, dt=0.1)
        >>> dyn.set_data_scale(torch.tensor([0.01, 0.002]))
        >>> dyn.rollout(torch.zeros(3, 2), 5, 0.1).shape
        torch.Size([3, 6, 2])
    """

    stochastic: bool
    data_scaled: bool

    def __init__(
        self,
        dim: int,
        hidden: Sequence[int] = (128, 128),
        drift: str = "mlp",
        sigma0_sq: float = 0.01,
        dt: float = 1.0,
        diffusion: str = "floor",
        floor_fraction: float = 0.01,
        bound: float = math.inf,
        restore_rate: float = 0.0,
    ):
        super().__init__()
        if int(dim) <= 0:
            raise ValueError(f"state dimension must be >= 1, got {dim}")
        if diffusion not in DIFFUSION_MODES:
            raise ValueError(f"diffusion must be one of {DIFFUSION_MODES}, got {diffusion!r}")
        if not (math.isfinite(float(sigma0_sq)) and sigma0_sq >= 0):
            raise ValueError(f"sigma0_sq must be >= 0, got {sigma0_sq}")
        if not (math.isfinite(float(floor_fraction)) and 0 < floor_fraction < 1):
            raise ValueError(f"floor_fraction must be in (0, 1), got {floor_fraction}")
        _check_confinement(bound, restore_rate)
        self.dim = int(dim)
        self.dt = float(dt)
        self.sigma0_sq = float(sigma0_sq)
        self.data_scaled = diffusion == "data"
        self.floor_fraction = float(floor_fraction)
        self.bound = float(bound)
        self.restore_rate = float(restore_rate)
        self.stochastic = True
        self.drift_net = _make_drift(drift, self.dim, hidden)
        self.diffusion_net = MLP(self.dim, self.dim, hidden)
        #: v_k: the data's increment variance per ps, (D,) (ones until set from the data);
        #: saved only by data-scaled models (older files have no such entry)
        self.register_buffer("data_var", torch.ones(self.dim), persistent=self.data_scaled)

    def set_data_scale(self, var_per_ps: Tensor) -> None:
        """Set v (D,), the training data's increment variance per ps of each scaled
        component at the training step (``diffusion="data"``); zero or non-finite
        entries are refused (a constant component carries no information: drop it)."""
        v = torch.as_tensor(var_per_ps, dtype=self.data_var.dtype).reshape(-1)
        if v.shape != self.data_var.shape or not bool(torch.isfinite(v).all()) or bool((v <= 0).any()):
            raise ValueError(f"the data's increment variance per ps must be {self.dim} finite values > 0, "
                             f"got {v.tolist()}")
        self.data_var.copy_(v.to(self.data_var.device))

    def forward(self, z: Tensor) -> Tensor:
        """Drift g(z) (..., D) per ps (the TorchScript entry point)."""
        return self.drift(z)

    @torch.jit.export
    def drift(self, z: Tensor) -> Tensor:
        """g(z): the network at the nearest point of the box plus the restoring term, (..., D) per ps."""
        return self.drift_net(self.inside(z)) + self.restoring(z)

    @torch.jit.export
    def variance(self, z: Tensor) -> Tensor:
        """σ²(z): (..., D) per ps, evaluated at the nearest point of the box."""
        h = self.diffusion_net(self.inside(z))
        if self.data_scaled:
            v = self.data_var.to(h.dtype)
            # 0.5413 = log(e - 1): softplus = 1 at h = 0, a fresh network starts at v
            return v * (self.floor_fraction + nn.functional.softplus(h + 0.541324854612918))
        return self.sigma0_sq + h * h

    @torch.jit.export
    def diffusion(self, z: Tensor) -> Tensor:
        """σ(z): (..., D), per sqrt(ps)."""
        return torch.sqrt(self.variance(z))

    @torch.jit.export
    def loss(self, z0: Tensor, z1: Tensor, dt: float) -> Tensor:
        """Gaussian NLL of the Euler–Maruyama transition z0 -> z1 (B, D), per dimension. Returns ()."""
        var = dt * self.variance(z0)
        r = z1 - z0 - dt * self.drift(z0)
        nll = 0.5 * (torch.log(2.0 * torch.pi * var) + r * r / var)
        return nll.mean()

    @torch.jit.export
    def step(self, z: Tensor, dt: float, noise: Tensor) -> Tensor:
        """One Euler–Maruyama step of the networks' SDE, then the exact restoring flow;
        ``noise`` (..., D) standard normal."""
        c = self.inside(z)
        z1 = z + dt * self.drift_net(c) + math.sqrt(dt) * self.diffusion(c) * noise
        return self.relax(z1, dt)


_Confined = RolloutBase  # the former private name

DRIFTS.register("mlp", DriftMLP)
DRIFTS.register("onsager", OnsagerDrift)
DYNAMICS.register("ode", ODEDynamics)
DYNAMICS.register("sde", SDEDynamics)


def build_dynamics(kind: str, dim: int, **kwargs) -> nn.Module:
    """Dynamics factory: ``kind`` is a name of :data:`DYNAMICS` (``"ode"``, ``"sde"``, a
    plugin's); the keyword arguments its class does not take are dropped (an ODE drops
    the SDE-only ``sigma0_sq``, ``diffusion``, ``floor_fraction``).

    Raises:
        ValueError: an unknown kind, naming the registered ones.
    """
    factory = DYNAMICS[kind]
    params = inspect.signature(factory).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        kwargs = {k: v for k, v in kwargs.items() if k in params}
    return factory(dim, **kwargs)
