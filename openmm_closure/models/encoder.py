r"""Permutation-invariant set encoders :math:`\hat z = \hat\phi(X)`.

Both encoders share one interface:

- ``forward(positions, types) -> z`` for one set: ``positions`` (n, 3) in nm (any
  float dtype; only the first ``in_features`` columns are used, so 2D systems ignore
  z), ``types`` (n,) int64 species indices in ``[0, n_species)``; returns (d,) in the
  encoder's dtype. This is the TorchScript entry point.
- ``forward_flat(x, types, index, n_sets) -> z`` for a batch of sets stored as one flat
  concatenation: ``x`` (N, in_features) *normalised* coordinates (``normalize(positions,
  index, n_sets)``), ``types`` (N,), ``index`` (N,) the set each element belongs to;
  returns (n_sets, d). Training uses this path; sets may have different sizes.

Translation invariance (``center=True``): :meth:`SetEncoder.normalize` subtracts each
set's centroid (over all its particles, every species) before the min-max map, so ẑ does
not depend on where the set sits. The coordinate ranges are then fit on centred
coordinates. It lives inside the encoder module, so every export that wraps the encoder
(``encoder.pt``, ``collective_variable.pt``) and :meth:`ClosureModel.encode` honour it.
Use it where the physics is translation invariant (particles2d, polymer); not with walls
(lj-mixing), where the position relative to the box matters.

Invariance is by construction: every element goes through the same per-element map
and the only reduction over elements is a (masked, per-species) mean or an attention
pooling, both symmetric functions. The cost is O(n).
"""


from typing import Sequence

import torch
from torch import Tensor, nn

from .nn import MLP, SetEncoder, center_sets

#: the former private name of :class:`~openmm_closure.models.nn.SetEncoder`
_SetEncoderBase = SetEncoder

__all__ = ["MLP", "SetEncoder", "DeepSetEncoder", "SetTransformerEncoder", "NullEncoder", "center_sets"]


class DeepSetEncoder(SetEncoder):
    r"""DeepSet encoder :math:`\hat z = \rho(\oplus_s \mathrm{mean}_{i: s_i = s} \psi(x^i))`.

    A shared per-particle MLP ψ, a masked mean (or sum) per species, the per-species
    pooled vectors concatenated, and an MLP ρ to ``latent_dim``. A species absent from
    a set pools to zeros.

    Arguments:
        latent_dim: closure dimension d (>= 1).
        in_features: coordinates used per particle (2 for 2D systems, 3 otherwise).
        n_species: number of species S.
        hidden: hidden sizes of ψ.
        embed: output size of ψ (per species pooled width).
        rho_hidden: hidden sizes of ρ.
        pool: ``"mean"`` (reference) or ``"sum"``.
        center: subtract each set's centroid before normalising (translation invariance).

    Example:
        >>> enc = DeepSetEncoder(2, in_features=2, n_species=2)
        >>> enc(torch.rand(10, 3), torch.randint(0, 2, (10,))).shape
        torch.Size([2])
    """

    def __init__(
        self,
        latent_dim: int,
        in_features: int = 2,
        n_species: int = 1,
        hidden: Sequence[int] = (64, 64),
        embed: int = 64,
        rho_hidden: Sequence[int] = (64, 64),
        pool: str = "mean",
        center: bool = False,
    ):
        super().__init__(latent_dim, in_features, n_species, center)
        if pool not in ("mean", "sum"):
            raise ValueError(f"pool must be 'mean' or 'sum', got {pool!r}")
        self.pool = pool
        self.embed = int(embed)
        self.psi = MLP(self.in_features, self.embed, hidden)
        self.rho = MLP(self.n_species * self.embed, self.latent_dim, rho_hidden)

    def pooled(self, x: Tensor, types: Tensor, index: Tensor, n_sets: int) -> Tensor:
        """Per-species pooled features (n_sets, S * embed) of normalised elements x (N, D)."""
        h = self.psi(x)
        seg = index * self.n_species + types
        n_seg = n_sets * self.n_species
        sums = torch.zeros(n_seg, self.embed, dtype=h.dtype, device=h.device)
        sums = sums.index_add(0, seg, h)
        if self.pool == "mean":
            ones = torch.ones(seg.shape[0], dtype=h.dtype, device=h.device)
            counts = torch.zeros(n_seg, dtype=h.dtype, device=h.device).index_add(0, seg, ones)
            sums = sums / counts.clamp(min=1.0).unsqueeze(-1)
        return sums.reshape(n_sets, self.n_species * self.embed)

    def forward_flat(self, x: Tensor, types: Tensor, index: Tensor, n_sets: int) -> Tensor:
        """Encode a flat batch of sets; see the module docstring. Returns (n_sets, d)."""
        return self.rho(self.pooled(x, types, index, n_sets))


class _MAB(nn.Module):
    """Multihead attention block LN(q + MHA(q, k, k)); LN(h + FF(h))."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.att = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.ln1 = nn.LayerNorm(dim)
        self.ln2 = nn.LayerNorm(dim)
        self.ff = MLP(dim, dim, (dim,))

    def forward(self, q: Tensor, k: Tensor, mask: Tensor) -> Tensor:
        a, _ = self.att(q, k, k, key_padding_mask=mask, need_weights=False)
        h = self.ln1(q + a)
        return self.ln2(h + self.ff(h))


class SetTransformerEncoder(SetEncoder):
    r"""Set Transformer encoder: ISAB blocks then per-species attention pooling.

    Elements are embedded by an MLP, mixed by induced set attention blocks (``m``
    learned inducing points, cost O(n m)), and pooled per species by a learned query
    (softmax over the elements of that species), then mapped to ``latent_dim`` by ρ.

    Arguments:
        latent_dim: closure dimension d (>= 1).
        in_features: coordinates used per particle.
        n_species: number of species S.
        dim: width of the attention blocks.
        heads: attention heads.
        inducing: number of inducing points m.
        blocks: number of ISAB blocks.
        rho_hidden: hidden sizes of ρ.
        center: subtract each set's centroid before normalising (translation invariance).

    Example:
        >>> enc = SetTransformerEncoder(2, dim=16, heads=2, inducing=4)
        >>> enc(torch.rand(10, 3), torch.zeros(10, dtype=torch.long)).shape
        torch.Size([2])
    """

    def __init__(
        self,
        latent_dim: int,
        in_features: int = 2,
        n_species: int = 1,
        dim: int = 64,
        heads: int = 4,
        inducing: int = 16,
        blocks: int = 2,
        rho_hidden: Sequence[int] = (64, 64),
        center: bool = False,
    ):
        super().__init__(latent_dim, in_features, n_species, center)
        self.dim = int(dim)
        self.embed_net = MLP(self.in_features + self.n_species, self.dim, (self.dim,))
        self.inducing = nn.Parameter(torch.randn(int(blocks), int(inducing), self.dim) * 0.1)
        self.mab_in = nn.ModuleList([_MAB(self.dim, heads) for _ in range(blocks)])
        self.mab_out = nn.ModuleList([_MAB(self.dim, heads) for _ in range(blocks)])
        self.query = nn.Parameter(torch.randn(self.n_species, self.dim) * 0.1)
        self.key = nn.Linear(self.dim, self.dim)
        self.value = nn.Linear(self.dim, self.dim)
        self.rho = MLP(self.n_species * self.dim, self.latent_dim, rho_hidden)

    def forward_flat(self, x: Tensor, types: Tensor, index: Tensor, n_sets: int) -> Tensor:
        """Encode a flat batch of sets; see the module docstring. Returns (n_sets, d)."""
        n = x.shape[0]
        onehot = nn.functional.one_hot(types, self.n_species).to(x.dtype)
        h = self.embed_net(torch.cat([x, onehot], dim=-1))
        # flat -> padded (n_sets, n_max, dim) with a padding mask
        counts = torch.bincount(index, minlength=n_sets)
        offsets = torch.cumsum(counts, 0) - counts
        order = torch.sort(index, stable=True)[1]
        rank = torch.empty_like(index)
        rank[order] = torch.arange(n, device=x.device) - offsets[index[order]]
        n_max = int(counts.max()) if n > 0 else 1
        padded = torch.zeros(n_sets, n_max, self.dim, dtype=h.dtype, device=h.device)
        padded = padded.index_put((index, rank), h)
        mask = torch.ones(n_sets, n_max, dtype=torch.bool, device=h.device)
        mask = mask.index_put((index, rank), torch.zeros(n, dtype=torch.bool, device=h.device))
        no_mask = torch.zeros(n_sets, self.inducing.shape[1], dtype=torch.bool, device=h.device)
        b = 0
        for mab_in, mab_out in zip(self.mab_in, self.mab_out):
            ind = self.inducing[b].to(h.dtype).unsqueeze(0).expand(n_sets, -1, -1)
            mid = mab_in(ind, padded, mask)
            padded = mab_out(padded, mid, no_mask)
            b += 1
        h = padded[index, rank]
        # per-species attention pooling, flat (segments = set * S + species)
        seg = index * self.n_species + types
        n_seg = n_sets * self.n_species
        k = self.key(h)
        v = self.value(h)
        score = (k * self.query.to(h.dtype)[types]).sum(-1) / float(self.dim) ** 0.5
        top = torch.full((n_seg,), -1e30, dtype=h.dtype, device=h.device)
        top = top.scatter_reduce(0, seg, score, reduce="amax", include_self=True)
        w = torch.exp(score - top[seg])
        den = torch.zeros(n_seg, dtype=h.dtype, device=h.device).index_add(0, seg, w)
        num = torch.zeros(n_seg, self.dim, dtype=h.dtype, device=h.device)
        num = num.index_add(0, seg, w.unsqueeze(-1) * v)
        pooled = num / den.clamp(min=1e-30).unsqueeze(-1)
        return self.rho(pooled.reshape(n_sets, self.n_species * self.dim))


class NullEncoder(SetEncoder):
    """The encoder of the no-closure model: ẑ has zero components.

    Stage 2 then learns the dynamics of the observables z̄ alone; this is the row a
    closure must beat.

    Example:
        >>> NullEncoder(in_features=2)(torch.rand(10, 3), torch.zeros(10, dtype=torch.long)).shape
        torch.Size([0])
    """

    def __init__(self, latent_dim: int = 0, in_features: int = 2, n_species: int = 1, center: bool = False):
        if int(latent_dim) != 0:
            raise ValueError(f"the no-closure encoder has latent dimension 0, got {latent_dim}")
        super().__init__(0, in_features, n_species, center, _minimum_latent=0)

    def forward_flat(self, x: Tensor, types: Tensor, index: Tensor, n_sets: int) -> Tensor:
        """(n_sets, 0): no closure variables."""
        return torch.zeros(n_sets, 0, dtype=x.dtype, device=x.device)
