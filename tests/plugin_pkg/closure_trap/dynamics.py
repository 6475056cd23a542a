"""The plugin's dynamics kind ``damped``: a linear ODE dz/dt = -softplus(γ) ⊙ z + A z + b,
RK4 steps through the package's one rollout loop."""

import math

import torch
from torch import Tensor, nn

from openmm_closure.models.dynamics import RolloutBase


class DampedLinearODE(RolloutBase):
    """dz/dt = -softplus(γ) ⊙ z + A z + b on scaled states (..., D), RK4, confined as the
    package's dynamics are."""

    stochastic: bool

    def __init__(self, dim: int, dt: float = 1.0, bound: float = math.inf, restore_rate: float = 0.0):
        super().__init__()
        self.dim = int(dim)
        self.dt = float(dt)
        self.bound = float(bound)
        self.restore_rate = float(restore_rate)
        self.stochastic = False
        self.gamma = nn.Parameter(torch.zeros(self.dim))
        self.coupling = nn.Linear(self.dim, self.dim)
        nn.init.zeros_(self.coupling.weight)

    def _flow(self, z: Tensor) -> Tensor:
        return -nn.functional.softplus(self.gamma) * z + self.coupling(z)

    def forward(self, z: Tensor) -> Tensor:
        return self.drift(z)

    @torch.jit.export
    def drift(self, z: Tensor) -> Tensor:
        return self._flow(self.inside(z)) + self.restoring(z)

    @torch.jit.export
    def diffusion(self, z: Tensor) -> Tensor:
        return torch.zeros_like(z)

    @torch.jit.export
    def loss(self, z0: Tensor, z1: Tensor, dt: float) -> Tensor:
        return ((self.drift(z0) - (z1 - z0) / dt) ** 2).mean()

    @torch.jit.export
    def step(self, z: Tensor, dt: float, noise: Tensor) -> Tensor:
        k1 = self._flow(self.inside(z))
        k2 = self._flow(self.inside(z + 0.5 * dt * k1))
        k3 = self._flow(self.inside(z + 0.5 * dt * k2))
        k4 = self._flow(self.inside(z + dt * k3))
        return self.relax(z + dt / 6.0 * (k1 + 2.0 * k2 + 2.0 * k3 + k4), dt)
