"""Dynamics: identification of a known OU SDE and a known linear ODE; TorchScript."""

import math

import numpy as np
import pytest
import torch

from openmm_closure.models.dynamics import ODEDynamics, SDEDynamics, build_dynamics


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _fit(dyn, z0, z1, dt, steps, lr, batch, seed=0):
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(dyn.parameters(), lr=lr)
    n = z0.shape[0]
    for s in range(steps):
        for g in opt.param_groups:
            g["lr"] = lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * s / steps)))
        idx = torch.randint(0, n, (batch,), generator=gen) if batch < n else slice(None)
        loss = dyn.loss(z0[idx], z1[idx], dt)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return dyn


def ou_transitions(theta, s, dt, n_traj, length, seed=0):
    """Exact transitions (z_t, z_t+dt) of dz = -Θ z dt + diag(s) dW from uniform starts in
    [-1, 1]: two (n_traj * length, D) float32 tensors."""
    rng = np.random.default_rng(seed)
    theta, s = np.asarray(theta), np.asarray(s)
    z = rng.uniform(-1, 1, (n_traj, len(theta)))
    a = np.exp(-theta * dt)
    sd = s * np.sqrt((1 - a**2) / (2 * theta))
    z0, z1 = [], []
    for _ in range(length):
        nxt = a * z + sd * rng.standard_normal(z.shape)
        z0.append(z)
        z1.append(nxt)
        z = nxt
    return (torch.tensor(np.concatenate(z0), dtype=torch.float32),
            torch.tensor(np.concatenate(z1), dtype=torch.float32))


def test_ou_sde_identified():
    """dz = -Θ z dt + diag(s) dW, Θ = diag(1, 2), s = (0.5, 0.3), exact transitions."""
    torch.manual_seed(0)
    theta = np.array([1.0, 2.0])
    s = np.array([0.5, 0.3])
    dt = 0.02
    z0, z1 = ou_transitions(theta, s, dt, 4000, 25)
    dyn = SDEDynamics(2, hidden=(32, 32), dt=dt, sigma0_sq=0.01)
    _fit(dyn, z0, z1, dt, steps=1500, lr=3e-3, batch=4096)
    pts = torch.tensor([[0.5, 0.0], [-0.5, 0.3], [0.4, -0.4], [0.0, 0.5], [-0.3, -0.3]])
    with torch.no_grad():
        g = dyn.drift(pts).numpy()
        sig = dyn.diffusion(pts).numpy()
    true_g = -theta * pts.numpy()
    rel = np.linalg.norm(g - true_g, axis=1) / np.linalg.norm(true_g, axis=1)
    assert rel.max() < 0.10, (g, true_g)
    assert np.abs(sig / s - 1).max() < 0.10, sig


def test_linear_ode_identified():
    """dz/dt = A z with a damped rotation; finite differences at dt = 1e-4."""
    torch.manual_seed(0)
    from scipy.linalg import expm

    A = np.array([[-0.5, 1.0], [-1.0, -0.5]])
    dt = 1e-4
    rng = np.random.default_rng(1)
    z0 = rng.uniform(-1, 1, (20000, 2))
    z1 = z0 @ expm(A * dt).T
    dyn = ODEDynamics(2, hidden=(32, 32), dt=dt)
    t0 = torch.tensor(z0, dtype=torch.float64)
    t1 = torch.tensor(z1, dtype=torch.float64)
    dyn = dyn.double()
    _fit(dyn, t0, t1, dt, steps=6000, lr=3e-3, batch=4096)
    pts = torch.tensor(rng.uniform(-0.8, 0.8, (50, 2)))
    with torch.no_grad():
        err = (dyn.drift(pts) - pts @ torch.tensor(A).T).abs().max().item()
        # RK4 rollout over 1 ps against the exact flow
        traj = dyn.rollout(pts[:5], 100, 0.01)
    assert err < 1e-3, err  # the finite-difference bias |A|^2 dt / 2 = 6e-5 leaves room for the fit
    exact = pts[:5].numpy() @ expm(A * 1.0).T
    assert np.abs(traj[:, -1].numpy() - exact).max() < 2e-3


@pytest.mark.parametrize("kind", ["ode", "sde"])
@pytest.mark.parametrize("drift", ["mlp", "onsager"])
def test_scripted_rollout_matches(kind, drift):
    torch.manual_seed(0)
    dyn = build_dynamics(kind, 3, drift=drift, hidden=(16, 16), dt=0.1)
    scripted = torch.jit.script(dyn)
    z = torch.randn(4, 3)
    noise = torch.randn(6, 4, 3)
    with torch.no_grad():
        a = dyn.rollout(z, 6, 0.1, noise)
        b = scripted.rollout(z, 6, 0.1, noise)
    assert a.shape == (4, 7, 3)
    assert torch.allclose(a, b)
    assert torch.equal(a[:, 0], z)
    if kind == "sde":
        assert (dyn.diffusion(z) >= 0.1 - 1e-7).all()  # sigma >= sigma0
        assert not torch.allclose(a, dyn.rollout(z, 6, 0.1, -noise))


def test_onsager_drift_is_dissipative_without_force():
    """With f = 0, dV/dt = -∇V·M∇V <= 0 along the drift."""
    torch.manual_seed(0)
    dyn = ODEDynamics(3, hidden=(16, 16), drift="onsager")
    z = torch.randn(64, 3)
    with torch.no_grad():
        g = dyn.drift(z)
        dv = (dyn.drift_net.grad_potential(z) * g).sum(-1)
    assert (dv <= 1e-6).all()


def test_bad_dims():
    with pytest.raises(ValueError):
        build_dynamics("ode", 0)
    with pytest.raises(ValueError):
        build_dynamics("xyz", 2)
