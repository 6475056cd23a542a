r"""Density-reconstructing decoder :math:`p_\theta(x \mid \hat z)` and its objective.

The decoder never reconstructs an ordered list of particles. For a set X of n
(normalised) elements it is trained to match the Gaussian mixture

.. math:: q_X(x) = \frac1n \sum_i \mathcal N(x; x^i, \epsilon^2 I)

by minimising :math:`\mathbb E_{x \sim q_X}[-\log p_\theta(x \mid \hat z)]`, estimated with
a fixed number M of Monte Carlo samples per set (pick an element uniformly, add
:math:`\epsilon\,\mathcal N(0, I)`). The cost per set is O(M), whatever n is.

For several species the flow is conditioned on ``[ẑ, one-hot(species)]`` and the
objective is the average over the species present in a set of the per-species NLLs
(each species' density is reconstructed separately, as in the reference).

ε is in normalised units (coordinates min-max scaled to [-1, 1]); data then lie well
inside the spline bound (default 5), outside of which zuko's splines are the identity.
"""

from typing import Optional, Sequence

import torch
from torch import Tensor, nn

__all__ = ["FlowDecoder", "flat_segments", "mixture_samples", "density_nll"]


class FlowDecoder(nn.Module):
    r"""Conditional neural spline flow :math:`p(x \mid \hat z, s)` over normalised coordinates.

    Arguments:
        features: dimension D of an element (normalised coordinates).
        latent_dim: closure dimension d (the context).
        n_species: number of species S; with S > 1 the context is ``[ẑ, one-hot(s)]``.
        transforms: number of autoregressive spline transforms (ref: 8).
        bins: spline bins (ref: 16).
        hidden: hidden sizes of each transform's network (ref: (128, 128)).
        bound: spline tail bound in normalised units.

    Example:
        >>> dec = FlowDecoder(2, 3, transforms=2, hidden=(16, 16))
        >>> dec.log_prob(torch.randn(5, 2), torch.randn(5, 3)).shape
        torch.Size([5])
    """

    def __init__(
        self,
        features: int,
        latent_dim: int,
        n_species: int = 1,
        transforms: int = 8,
        bins: int = 16,
        hidden: Sequence[int] = (128, 128),
        bound: float = 5.0,
    ):
        super().__init__()
        from functools import partial

        import zuko
        from zuko.transforms import MonotonicRQSTransform

        if int(latent_dim) <= 0:
            raise ValueError(f"latent dimension must be >= 1, got {latent_dim}")
        self.features = int(features)
        self.latent_dim = int(latent_dim)
        self.n_species = int(n_species)
        context = self.latent_dim + (self.n_species if self.n_species > 1 else 0)
        self.bound = float(bound)
        # zuko.flows.NSF with a configurable spline bound (NSF fixes it at 5)
        self.flow = zuko.flows.MAF(
            features=self.features,
            context=context,
            transforms=int(transforms),
            univariate=partial(MonotonicRQSTransform, bound=self.bound, slope=1e-3),
            shapes=[(int(bins),), (int(bins),), (int(bins) - 1,)],
            hidden_features=tuple(int(h) for h in hidden),
        )

    def context(self, z: Tensor, species: Optional[Tensor] = None) -> Tensor:
        """Flow context (..., d [+ S]) from ẑ (..., d) and species indices (...)."""
        if self.n_species == 1:
            return z
        if species is None:
            raise ValueError("species indices are required for a multi-species decoder")
        onehot = nn.functional.one_hot(species.long(), self.n_species).to(z.dtype)
        return torch.cat([z, onehot.expand(*z.shape[:-1], self.n_species)], dim=-1)

    def log_prob(self, x: Tensor, z: Tensor, species: Optional[Tensor] = None) -> Tensor:
        """Log-density of normalised points.

        Arguments:
            x: (..., D) normalised coordinates.
            z: (..., d) closure variables, broadcastable against ``x[..., 0]``.
            species: (...) species indices (multi-species decoders only).

        Returns:
            (...) log p(x | ẑ, s) in normalised units.
        """
        return self.flow(self.context(z, species)).log_prob(x)

    @torch.no_grad()
    def sample(self, z: Tensor, n: int, species: Optional[Tensor] = None) -> Tensor:
        """Draw ``n`` normalised points from p(x | ẑ, s) for one ẑ (d,); returns (n, D)."""
        c = self.context(z.reshape(-1), None if species is None else species.reshape(()))
        return self.flow(c).sample((int(n),))


def flat_segments(types: Tensor, index: Tensor, n_sets: int, n_species: int):
    """Group a flat batch by (set, species).

    Arguments:
        types: (N,) species indices.
        index: (N,) set index of each element.
        n_sets: number of sets B.
        n_species: number of species S.

    Returns:
        ``(order, counts, offsets)``: ``order`` (N,) permutation sorting the elements
        by segment ``set * S + species``; ``counts`` and ``offsets`` (B * S,) the size
        and start of each segment in that order.
    """
    seg = index * n_species + types
    order = torch.sort(seg, stable=True)[1]
    counts = torch.bincount(seg, minlength=n_sets * n_species)
    offsets = torch.cumsum(counts, 0) - counts
    return order, counts, offsets


def mixture_samples(
    x: Tensor,
    types: Tensor,
    index: Tensor,
    n_sets: int,
    n_species: int,
    samples: int,
    epsilon: float,
    generator: Optional[torch.Generator] = None,
    first_set: int = 0,
    total_sets: Optional[int] = None,
):
    r"""Draw M samples per (set, species) from :math:`q_X = \frac1n\sum_i \mathcal N(x^i, \epsilon^2 I)`.

    Arguments:
        x: (N, D) normalised coordinates of a flat batch.
        types: (N,) species indices.
        index: (N,) set index of each element.
        n_sets: number of sets B.
        n_species: number of species S.
        samples: M, samples per segment.
        epsilon: bandwidth ε (normalised units).
        generator: optional CPU torch generator (the draws are made on CPU so that a
            seed gives the same samples on any device).
        first_set, total_sets: the batch is sets ``[first_set, first_set + n_sets)`` of
            a batch of ``total_sets`` (one process's share in data-parallel training): the
            draws are made for all ``total_sets`` and the share's rows kept, so they equal
            the whole batch's. None: the batch is whole.

    Returns:
        ``(points, set_id, species, present)``: points (B, S, M, D); set_id and species
        (B, S) index tensors; present (B, S) bool, False where a species is absent
        from a set (its points are meaningless and must be masked).
    """
    order, counts, offsets = flat_segments(types, index, n_sets, n_species)
    counts_cpu = counts.cpu()
    total = n_sets if total_sets is None else int(total_sets)
    rows = slice(first_set * n_species, (first_set + n_sets) * n_species)
    u = torch.rand(total * n_species, samples, generator=generator, dtype=torch.float64)[rows]
    pick = (u * counts_cpu.unsqueeze(-1).to(torch.float64)).floor().long()
    pick = torch.minimum(pick, (counts_cpu - 1).clamp(min=0).unsqueeze(-1))
    pick = (pick + (offsets.cpu()).unsqueeze(-1)).clamp(max=max(x.shape[0] - 1, 0))
    noise = torch.randn(total * n_species, samples, x.shape[-1], generator=generator)[rows]
    pts = x[order[pick.to(x.device)]] + float(epsilon) * noise.to(device=x.device, dtype=x.dtype)
    pts = pts.reshape(n_sets, n_species, samples, x.shape[-1])
    present = (counts > 0).reshape(n_sets, n_species)
    set_id = torch.arange(n_sets, device=x.device).unsqueeze(-1).expand(n_sets, n_species)
    species = torch.arange(n_species, device=x.device).unsqueeze(0).expand(n_sets, n_species)
    return pts, set_id, species, present


def density_nll(
    decoder: FlowDecoder,
    z: Tensor,
    x: Tensor,
    types: Tensor,
    index: Tensor,
    samples: int,
    epsilon: float,
    generator: Optional[torch.Generator] = None,
    first_set: int = 0,
    total_sets: Optional[int] = None,
) -> Tensor:
    r"""Monte Carlo estimate of :math:`\mathbb E_X \mathbb E_{x\sim q_X}[-\log p(x\mid\hat z)]`.

    Per set, the per-species NLLs (each the mean over M samples) are averaged over the
    species present, then averaged over sets. The cost is O(B S M), independent of n.

    Arguments:
        decoder: the flow decoder.
        z: (B, d) closure variables of the sets.
        x: (N, D) normalised coordinates of the flat batch.
        types: (N,) species indices.
        index: (N,) set index of each element.
        samples: M.
        epsilon: ε in normalised units.
        generator: optional CPU generator for the Monte Carlo draws.
        first_set, total_sets: a share of a larger batch (see :func:`mixture_samples`).

    Returns:
        () scalar loss, nats per sample (normalised units).
    """
    n_sets = z.shape[0]
    s = decoder.n_species
    pts, set_id, species, present = mixture_samples(
        x, types, index, n_sets, s, samples, epsilon, generator, first_set, total_sets
    )
    keep = present.reshape(-1)
    pts = pts.reshape(n_sets * s, samples, -1)[keep]
    zz = z[set_id.reshape(-1)[keep]].unsqueeze(1)
    sp = species.reshape(-1)[keep].unsqueeze(1).expand(-1, samples)
    logp = decoder.log_prob(pts, zz.expand(-1, samples, -1), sp)
    per_segment = -logp.mean(dim=1)
    weight = torch.zeros(n_sets * s, dtype=z.dtype, device=z.device)
    per_set_count = present.sum(dim=1).to(z.dtype)
    weight[keep] = 1.0 / per_set_count[set_id.reshape(-1)[keep]]
    return (per_segment * weight[keep]).sum() / n_sets
