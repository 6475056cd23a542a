"""Flow decoder: the Gaussian-mixture objective learns set-dependent densities (1D demo)."""

import math

import numpy as np
import pytest
import torch

from openmm_closure.models.decoder import FlowDecoder, density_nll, mixture_samples
from openmm_closure.models.encoder import DeepSetEncoder


pytestmark = pytest.mark.usefixtures("one_torch_thread")

MEANS = np.array([-0.75, -0.25, 0.25, 0.75])
STD = 0.08
EPS = 0.1   # bandwidth of q_X in this demo (normalised units)
N = 200


def make_sets(k, rng):
    """k sets of N 1D points from a 4-Gaussian mixture with Dirichlet weights and a shift."""
    w = rng.dirichlet(np.ones(4), size=k)
    shift = rng.uniform(-0.1, 0.1, size=k)
    comp = np.array([rng.choice(4, size=N, p=wi) for wi in w])
    x = MEANS[comp] + shift[:, None] + STD * rng.standard_normal((k, N))
    return x, w, shift


def neg_entropy(x, eps, m, rng):
    """MC estimate of E_{q_X}[log q_X] for q_X = mean_i N(x_i, eps^2); x (N,)."""
    y = rng.choice(x, size=m) + eps * rng.standard_normal(m)
    logq = -0.5 * ((y[:, None] - x[None, :]) / eps) ** 2 - math.log(eps * math.sqrt(2 * math.pi))
    logq = np.logaddexp.reduce(logq, axis=1) - math.log(len(x))
    return float(logq.mean())


def _train(steps, seed=0):
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    x, _, _ = make_sets(512, rng)
    enc = DeepSetEncoder(4, in_features=1, hidden=(64, 64), embed=32, rho_hidden=(64,))
    enc.coords.lo.fill_(-1.0)
    enc.coords.hi.fill_(1.0)
    dec = FlowDecoder(1, 4, transforms=3, bins=16, hidden=(64, 64))
    opt = torch.optim.Adam(list(enc.parameters()) + list(dec.parameters()), lr=3e-3)
    gen = torch.Generator().manual_seed(seed)
    B, M = 32, 256
    xt = torch.tensor(x, dtype=torch.float32)
    for s in range(steps):
        for g in opt.param_groups:
            g["lr"] = 3e-3 * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * s / steps)))
        pick = torch.randint(0, len(xt), (B,), generator=gen)
        flat = xt[pick].reshape(-1, 1)
        idx = torch.arange(B).repeat_interleave(N)
        types = torch.zeros_like(idx)
        z = enc.forward_flat(flat, types, idx, B)
        loss = density_nll(dec, z, flat, types, idx, M, EPS, gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return enc, dec


def _encode(enc, x):
    pos = torch.zeros(len(x), 3)
    pos[:, 0] = torch.tensor(x, dtype=torch.float32)
    return enc(pos, torch.zeros(len(x), dtype=torch.long))


def _check(enc, dec, tol):
    rng = np.random.default_rng(123)
    x, w, shift = make_sets(8, rng)
    gaps = []
    with torch.no_grad():
        for xi in x:
            z = _encode(enc, xi)
            y = rng.choice(xi, size=4000) + EPS * rng.standard_normal(4000)
            logp = dec.log_prob(torch.tensor(y, dtype=torch.float32)[:, None], z.expand(4000, -1))
            gaps.append(neg_entropy(xi, EPS, 4000, rng) - float(logp.mean()))
    # mean log-likelihood of fresh q_X samples is within tol nats of -H(q_X) (gap = KL >= 0 up to MC)
    assert np.mean(gaps) < tol, gaps
    assert max(gaps) < 2 * tol, gaps

    # two different sets: mass mostly left vs mostly right; samples follow the sets
    left = MEANS[rng.choice(4, size=N, p=[0.7, 0.2, 0.05, 0.05])] + STD * rng.standard_normal(N)
    right = MEANS[rng.choice(4, size=N, p=[0.05, 0.05, 0.2, 0.7])] + STD * rng.standard_normal(N)
    with torch.no_grad():
        sl = dec.sample(_encode(enc, left), 4000).numpy()[:, 0]
        sr = dec.sample(_encode(enc, right), 4000).numpy()[:, 0]
    assert abs(sl.mean() - left.mean()) < 0.1 and abs(sr.mean() - right.mean()) < 0.1
    assert sr.mean() - sl.mean() > 0.6
    edges = np.linspace(-1, 1, 9)
    assert np.argmax(np.histogram(sl, edges)[0]) == 0  # mode near -0.75
    assert np.argmax(np.histogram(sr, edges)[0]) == 7  # mode near +0.75


def test_decoder_learns_set_densities():
    enc, dec = _train(steps=450)
    _check(enc, dec, tol=0.15)


@pytest.mark.slow
def test_decoder_learns_set_densities_long():
    enc, dec = _train(steps=1500)
    _check(enc, dec, tol=0.1)


def test_mixture_samples_per_species():
    """M draws per (set, species) come from that set's particles of that species, plus noise."""
    x = torch.tensor([[0.0], [1.0], [2.0], [10.0], [11.0]])
    types = torch.tensor([0, 1, 0, 0, 0])
    index = torch.tensor([0, 0, 0, 1, 1])
    gen = torch.Generator().manual_seed(0)
    pts, set_id, species, present = mixture_samples(x, types, index, 2, 2, 500, 1e-4, gen)
    assert pts.shape == (2, 2, 500, 1)
    assert present.tolist() == [[True, True], [True, False]]
    assert set(pts[0, 0, :, 0].round().tolist()) == {0.0, 2.0}
    assert set(pts[0, 1, :, 0].round().tolist()) == {1.0}
    assert set(pts[1, 0, :, 0].round().tolist()) == {10.0, 11.0}
    dec = FlowDecoder(1, 2, n_species=2, transforms=1, hidden=(8,))
    z = torch.zeros(2, 2, requires_grad=True)
    loss = density_nll(dec, z, x, types, index, 16, 0.01, gen)
    loss.backward()
    assert torch.isfinite(loss) and z.grad is not None


def test_decoder_bad_latent():
    with pytest.raises(ValueError, match="latent dimension"):
        FlowDecoder(2, 0)
