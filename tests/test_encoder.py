"""Encoders: strict permutation invariance, any n, dtypes, TorchScript, bad input."""

import pytest
import torch

from openmm_closure.models.encoder import DeepSetEncoder, SetTransformerEncoder


pytestmark = pytest.mark.usefixtures("one_torch_thread")

ENCODERS = {
    "deepset": lambda s: DeepSetEncoder(3, in_features=2, n_species=s),
    "settransformer": lambda s: SetTransformerEncoder(3, in_features=2, n_species=s, dim=16, heads=2, inducing=4),
}


def _set(n, species, gen):
    x = torch.rand(n, 3, generator=gen) * 10.0
    t = torch.randint(0, species, (n,), generator=gen)
    return x, t


@pytest.mark.parametrize("kind", ["deepset", "settransformer"])
@pytest.mark.parametrize("n", [1, 7, 300, 777])
def test_permutation_invariance(kind, n):
    torch.manual_seed(0)
    enc = ENCODERS[kind](2)
    enc.coords.lo.fill_(0.0)
    enc.coords.hi.fill_(10.0)
    gen = torch.Generator().manual_seed(n)
    x, t = _set(n, 2, gen)
    with torch.no_grad():
        ref = enc(x, t)
        worst = 0.0
        for _ in range(100):
            p = torch.randperm(n, generator=gen)
            worst = max(worst, float((enc(x[p], t[p]) - ref).abs().max()))
    assert ref.shape == (3,) and ref.dtype == torch.float32
    assert worst <= 1e-5


@pytest.mark.parametrize("kind", ["deepset", "settransformer"])
def test_dtypes_scripted_and_batched(kind):
    torch.manual_seed(1)
    enc = ENCODERS[kind](2)
    scripted = torch.jit.script(enc)
    gen = torch.Generator().manual_seed(3)
    x, t = _set(50, 2, gen)
    with torch.no_grad():
        z32 = enc(x, t)
        z64 = enc(x.double(), t)
        assert torch.allclose(z32, z64, atol=1e-6)
        assert torch.equal(scripted(x, t), z32)
        # flat batch of sets of different sizes equals one-by-one encoding
        x2, t2 = _set(13, 2, gen)
        xs = torch.cat([enc.normalize(x), enc.normalize(x2)])
        ts = torch.cat([t, t2])
        idx = torch.cat([torch.zeros(50, dtype=torch.long), torch.ones(13, dtype=torch.long)])
        zb = enc.forward_flat(xs, ts, idx, 2)
        assert torch.allclose(zb[0], z32, atol=1e-6) and torch.allclose(zb[1], enc(x2, t2), atol=1e-6)
    # a double-precision copy of the model runs too
    assert enc.double()(x, t).dtype == torch.float64


def test_species_pooling_distinguishes_species():
    torch.manual_seed(2)
    enc = DeepSetEncoder(2, in_features=2, n_species=2)
    x = torch.rand(20, 3)
    t = torch.zeros(20, dtype=torch.long)
    t[10:] = 1
    with torch.no_grad():
        assert not torch.allclose(enc(x, t), enc(x, 1 - t))


def test_bad_input():
    enc = DeepSetEncoder(2, in_features=2, n_species=2)
    with pytest.raises(ValueError, match="species index out of range"):
        enc(torch.rand(5, 3), torch.tensor([0, 1, 2, 0, 1]))
    with pytest.raises(ValueError):
        enc(torch.rand(5), torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match="latent dimension"):
        DeepSetEncoder(0)
    with pytest.raises(ValueError, match="latent dimension"):
        SetTransformerEncoder(-1)
    with pytest.raises(Exception, match="species index out of range"):
        torch.jit.script(enc)(torch.rand(5, 3), torch.tensor([0, 1, 2, 0, 1]))


@pytest.mark.parametrize("kind", ["deepset", "settransformer"])
def test_centred_encoder_translation_and_permutation_invariant(kind):
    """center=True: random translations (and permutations) leave ẑ unchanged at 1e-5,
    eager and scripted; without centring the same shifts move ẑ (the test can fail)."""
    make = {"deepset": lambda c: DeepSetEncoder(3, in_features=2, n_species=2, center=c),
            "settransformer": lambda c: SetTransformerEncoder(3, in_features=2, n_species=2, dim=16, heads=2,
                                                              inducing=4, center=c)}[kind]
    torch.manual_seed(4)
    enc, plain = make(True), make(False)
    for e in (enc, plain):
        e.coords.lo.fill_(-5.0)
        e.coords.hi.fill_(5.0)
    scripted = torch.jit.script(enc)
    gen = torch.Generator().manual_seed(5)
    x, t = _set(120, 2, gen)
    worst, moved = 0.0, 0.0
    with torch.no_grad():
        ref = enc(x, t)
        assert torch.allclose(scripted(x, t), ref, atol=1e-6)
        for _ in range(20):
            shift = (torch.rand(3, generator=gen) - 0.5) * 40.0
            p = torch.randperm(120, generator=gen)
            y = x[p] + shift
            worst = max(worst, float((enc(y, t[p]) - ref).abs().max()),
                        float((scripted(y.double(), t[p]) - ref).abs().max()))
            moved = max(moved, float((plain(y, t[p]) - plain(x, t)).abs().max()))
        # a flat batch centres each set on its own centroid
        idx = torch.cat([torch.zeros(120, dtype=torch.long), torch.ones(120, dtype=torch.long)])
        both = enc.forward_flat(enc.normalize(torch.cat([x, x + 7.0]), idx, 2), torch.cat([t, t]), idx, 2)
    assert worst <= 1e-5
    assert moved > 1e-3
    assert torch.allclose(both[0], ref, atol=1e-5) and torch.allclose(both[1], ref, atol=1e-5)
