r"""Learned dynamics on the scaled macroscopic state :math:`z = [\bar z, \hat z] \in [-1, 1]^D`.

- :class:`ODEDynamics`: :math:`dz/dt = g(z)`; loss = MSE between g(z_t) and the finite
  difference :math:`(z_{t+1} - z_t)/\Delta t`; rollouts by classical RK4.
- :class:`SDEDynamics`: :math:`dz = g(z)\,dt + \mathrm{diag}(\sigma(z))\,dW`,
  :math:`\sigma = \sqrt{\sigma_0^2 + \mathrm{MLP}(z)^2}`; loss = negative log-likelihood
  of the Euler–Maruyama transition :math:`\mathcal N(z_t + g\Delta t, \Delta t\,\sigma^2)`;
  rollouts by Euler–Maruyama.

The drift g is either an MLP (:class:`DriftMLP`) or OnsagerNet-structured
(:class:`OnsagerDrift`). Time is in ps (the dataset's frame spacing), z is
dimensionless. All modules are ``torch.jit.script``-able; rollouts take the noise as an
optional tensor so that callers control the random numbers.
"""

from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from .encoder import MLP

__all__ = ["DriftMLP", "OnsagerDrift", "ODEDynamics", "SDEDynamics", "build_dynamics"]


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


def _make_drift(kind: str, dim: int, hidden: Sequence[int]) -> nn.Module:
    if kind == "mlp":
        return DriftMLP(dim, hidden)
    if kind == "onsager":
        return OnsagerDrift(dim, hidden)
    raise ValueError(f"unknown drift {kind!r}; choose 'mlp' or 'onsager'")


class ODEDynamics(nn.Module):
    r"""Deterministic dynamics :math:`dz/dt = g(z)` with RK4 rollouts.

    Arguments:
        dim: state dimension D.
        hidden: hidden sizes of the drift network.
        drift: ``"mlp"`` or ``"onsager"``.
        dt: default time step Δt in ps (the dataset's frame spacing).

    Example:
        >>> dyn = ODEDynamics(2, dt=0.1)
        >>> dyn.rollout(torch.zeros(3, 2), 5, 0.1).shape
        torch.Size([3, 6, 2])
    """

    stochastic: bool

    def __init__(self, dim: int, hidden: Sequence[int] = (128, 128), drift: str = "mlp", dt: float = 1.0):
        super().__init__()
        if int(dim) <= 0:
            raise ValueError(f"state dimension must be >= 1, got {dim}")
        self.dim = int(dim)
        self.dt = float(dt)
        self.stochastic = False
        self.drift_net = _make_drift(drift, self.dim, hidden)

    def forward(self, z: Tensor) -> Tensor:
        """Drift g(z) (..., D) per ps (the TorchScript entry point)."""
        return self.drift_net(z)

    @torch.jit.export
    def drift(self, z: Tensor) -> Tensor:
        """g(z): (..., D) per ps."""
        return self.drift_net(z)

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
        """One RK4 step of length dt (ps) from z (..., D); ``noise`` is ignored."""
        k1 = self.drift(z)
        k2 = self.drift(z + 0.5 * dt * k1)
        k3 = self.drift(z + 0.5 * dt * k2)
        k4 = self.drift(z + dt * k3)
        return z + dt / 6.0 * (k1 + 2.0 * k2 + 2.0 * k3 + k4)

    @torch.jit.export
    def rollout(self, z0: Tensor, steps: int, dt: float, noise: Optional[Tensor] = None) -> Tensor:
        """Integrate from z0 (K, D) for ``steps`` steps of dt ps; returns (K, steps + 1, D)."""
        out = [z0]
        z = z0
        empty = torch.zeros(0, dtype=z0.dtype, device=z0.device)
        for _ in range(steps):
            z = self.step(z, dt, empty)
            out.append(z)
        return torch.stack(out, dim=1)


class SDEDynamics(nn.Module):
    r"""Stochastic dynamics :math:`dz = g(z)dt + \mathrm{diag}(\sigma(z)) dW` with
    :math:`\sigma = \sqrt{\sigma_0^2 + \mathrm{MLP}(z)^2}`.

    Arguments:
        dim: state dimension D.
        hidden: hidden sizes of the drift and diffusion networks.
        drift: ``"mlp"`` or ``"onsager"``.
        sigma0_sq: diffusion floor σ0² (ref 0.01), in scaled units² per ps.
        dt: default time step Δt in ps.

    Example:
        >>> dyn = SDEDynamics(2, dt=0.1)
        >>> dyn.rollout(torch.zeros(3, 2), 5, 0.1).shape
        torch.Size([3, 6, 2])
    """

    stochastic: bool

    def __init__(
        self,
        dim: int,
        hidden: Sequence[int] = (128, 128),
        drift: str = "mlp",
        sigma0_sq: float = 0.01,
        dt: float = 1.0,
    ):
        super().__init__()
        if int(dim) <= 0:
            raise ValueError(f"state dimension must be >= 1, got {dim}")
        if sigma0_sq < 0:
            raise ValueError(f"sigma0_sq must be >= 0, got {sigma0_sq}")
        self.dim = int(dim)
        self.dt = float(dt)
        self.sigma0_sq = float(sigma0_sq)
        self.stochastic = True
        self.drift_net = _make_drift(drift, self.dim, hidden)
        self.diffusion_net = MLP(self.dim, self.dim, hidden)

    def forward(self, z: Tensor) -> Tensor:
        """Drift g(z) (..., D) per ps (the TorchScript entry point)."""
        return self.drift_net(z)

    @torch.jit.export
    def drift(self, z: Tensor) -> Tensor:
        """g(z): (..., D) per ps."""
        return self.drift_net(z)

    @torch.jit.export
    def diffusion(self, z: Tensor) -> Tensor:
        """σ(z): (..., D), per sqrt(ps)."""
        return torch.sqrt(self.sigma0_sq + self.diffusion_net(z) ** 2)

    @torch.jit.export
    def loss(self, z0: Tensor, z1: Tensor, dt: float) -> Tensor:
        """Gaussian NLL of the Euler–Maruyama transition z0 -> z1 (B, D), per dimension. Returns ()."""
        var = dt * self.diffusion(z0) ** 2
        r = z1 - z0 - dt * self.drift(z0)
        nll = 0.5 * (torch.log(2.0 * torch.pi * var) + r * r / var)
        return nll.mean()

    @torch.jit.export
    def step(self, z: Tensor, dt: float, noise: Tensor) -> Tensor:
        """One Euler–Maruyama step; ``noise`` (..., D) standard normal."""
        return z + dt * self.drift(z) + (dt ** 0.5) * self.diffusion(z) * noise

    @torch.jit.export
    def rollout(self, z0: Tensor, steps: int, dt: float, noise: Optional[Tensor] = None) -> Tensor:
        """Simulate from z0 (K, D) for ``steps`` EM steps of dt ps.

        ``noise`` (steps, K, D) standard normal draws; drawn with ``torch.randn`` when
        omitted. Returns (K, steps + 1, D).
        """
        if noise is None:
            noise = torch.randn((steps,) + z0.shape, dtype=z0.dtype, device=z0.device)
        out = [z0]
        z = z0
        for i in range(steps):
            z = self.step(z, dt, noise[i])
            out.append(z)
        return torch.stack(out, dim=1)


def build_dynamics(kind: str, dim: int, **kwargs) -> nn.Module:
    """Dynamics factory: ``kind`` is ``"ode"`` or ``"sde"``."""
    if kind == "ode":
        kwargs.pop("sigma0_sq", None)
        return ODEDynamics(dim, **kwargs)
    if kind == "sde":
        return SDEDynamics(dim, **kwargs)
    raise ValueError(f"unknown dynamics {kind!r}; choose 'ode' or 'sde'")
