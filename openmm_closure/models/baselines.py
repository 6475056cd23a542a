r"""The paper's ablation baselines (SPEC §2): their encoders (networks only).

Each baseline replaces stage 1 of the method; stage 2 (frozen encoder, dynamics on
:math:`z = [\bar z, \hat z]`) is the same for all, with the same data and budget knobs.

======================  =================================================  ==========================
``--method``            encoder (``config["encoder"]["kind"]``)             stage-1 objective
======================  =================================================  ==========================
``ae-aug``              ``flat-mlp``: MLP on the flattened *ordered*        pointwise MSE of the
                        particle vector (fixed n) + MLP decoder              permuted input (random
                                                                             permutation augmentation)
``ae-inve``             ``deepset-mlpdec``: DeepSet + MLP decoder to an     pointwise MSE against the
                        ordered list of n particles                          stored particle order
``ae-inve-cd``          ``deepset-setdec``: DeepSet + MLP decoder to m      Chamfer distance, per
                        points per species                                   species
``inve``                ``deepset`` (the method's encoder)                  dynamics loss on
                                                                             consecutive frames,
                                                                             encoder + dynamics
                                                                             jointly, no decoder
======================  =================================================  ==========================

The reconstruction decoders live inside the encoder module (``encoder.recon``), so the
model directory, checkpoints and ``--resume`` work unchanged and
:func:`openmm_closure.load_model` rebuilds a baseline like the method's model (the flow
decoder of such a model is untrained and unused). Only AE-Aug depends on the particle
order and is tied to one n: encoding a set of another size raises ``ValueError``.

This module holds the networks only; their training objectives are in
:mod:`openmm_closure.learn.objectives` and the kinds are registered in
:mod:`openmm_closure.models.registry`.

Example:
    $ openmm-closure train --data runs/p2d --out models/p2d-aug --method ae-aug
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from .encoder import DeepSetEncoder
from .nn import MLP, SetEncoder

__all__ = [
    "FlatMLPEncoder",
    "DeepSetMLPDecoderEncoder",
    "DeepSetSetDecoderEncoder",
    "chamfer_distance",
    "particle_features",
    "ordered_gather",
]


def particle_features(x: Tensor, types: Tensor, n_species: int) -> Tensor:
    """Per-particle feature (N, D [+ S]): normalised coordinates [+ one-hot species]."""
    if n_species == 1:
        return x
    return torch.cat([x, nn.functional.one_hot(types, n_species).to(x.dtype)], dim=-1)


def ordered_gather(index: Tensor, n_sets: int, n: int) -> Tensor:
    """Indices that gather a flat batch into (n_sets, n) keeping each set's element order."""
    counts = torch.bincount(index, minlength=n_sets)
    if counts.numel() and bool((counts != n).any()):
        bad = sorted({int(c) for c in counts.tolist() if int(c) != n})
        raise ValueError(
            f"this encoder is tied to sets of exactly {n} particles (an ordered vector), "
            f"got sets of {bad}; AE-Aug cannot encode a different particle number"
        )
    return torch.sort(index, stable=True)[1].reshape(n_sets, n)


class FlatMLPEncoder(SetEncoder):
    """AE-Aug encoder: an MLP on the flattened ordered particle vector, and its decoder.

    Not permutation invariant: it sees particles in the order given. Tied to
    ``n_particles``.

    Arguments:
        latent_dim: closure dimension d.
        in_features: coordinates per particle (2 for 2D systems).
        n_species: number of species S (S > 1 adds a one-hot per particle).
        n_particles: the fixed number of particles n.
        hidden: hidden sizes of the encoder MLP.
        decoder_hidden: hidden sizes of the decoder MLP ẑ -> (n, D [+ S]).
        center: subtract each set's centroid before normalising (as the method's encoder).

    Example:
        >>> enc = FlatMLPEncoder(2, in_features=2, n_particles=5, hidden=(8,), decoder_hidden=(8,))
        >>> enc(torch.rand(5, 3), torch.zeros(5, dtype=torch.long)).shape
        torch.Size([2])
    """

    def __init__(
        self,
        latent_dim: int,
        in_features: int = 2,
        n_species: int = 1,
        n_particles: int = 1,
        hidden: Sequence[int] = (256, 256),
        decoder_hidden: Sequence[int] = (256, 256),
        center: bool = False,
    ):
        super().__init__(latent_dim, in_features, n_species, center)
        if int(n_particles) <= 0:
            raise ValueError(f"n_particles must be >= 1, got {n_particles}")
        self.n_particles = int(n_particles)
        self.width = self.in_features + (self.n_species if self.n_species > 1 else 0)
        self.net = MLP(self.n_particles * self.width, self.latent_dim, hidden)
        self.recon = MLP(self.latent_dim, self.n_particles * self.width, decoder_hidden)

    def flat_input(self, x: Tensor, types: Tensor, index: Tensor, n_sets: int) -> Tensor:
        """The ordered particle vectors (n_sets, n, D [+ S]) of a flat batch."""
        gather = ordered_gather(index, n_sets, self.n_particles)
        return particle_features(x, types, self.n_species)[gather]

    def forward_flat(self, x: Tensor, types: Tensor, index: Tensor, n_sets: int) -> Tensor:
        """Encode a flat batch of sets of exactly n elements each; returns (n_sets, d)."""
        v = self.flat_input(x, types, index, n_sets)
        return self.net(v.reshape(n_sets, -1))

    def reconstruct(self, z: Tensor) -> Tensor:
        """Decoded ordered particle vector (B, n, D [+ S]) of ẑ (B, d)."""
        return self.recon(z).reshape(z.shape[0], self.n_particles, self.width)


class DeepSetMLPDecoderEncoder(DeepSetEncoder):
    """AE-InvE: the DeepSet encoder with an MLP decoder to an ordered list of n points.

    Arguments:
        latent_dim, in_features, n_species, hidden, embed, rho_hidden, pool, center: as
            :class:`~openmm_closure.models.encoder.DeepSetEncoder`.
        n_particles: length of the decoded list (training sets must have this n;
            encoding accepts any n).
        decoder_hidden: hidden sizes of the decoder MLP.
    """

    def __init__(
        self,
        latent_dim: int,
        in_features: int = 2,
        n_species: int = 1,
        n_particles: int = 1,
        decoder_hidden: Sequence[int] = (256, 256),
        **deepset,
    ):
        super().__init__(latent_dim, in_features, n_species, **deepset)
        if int(n_particles) <= 0:
            raise ValueError(f"n_particles must be >= 1, got {n_particles}")
        self.n_particles = int(n_particles)
        self.recon = MLP(self.latent_dim, self.n_particles * self.in_features, decoder_hidden)

    def reconstruct(self, z: Tensor) -> Tensor:
        """Decoded ordered coordinates (B, n, D) of ẑ (B, d), normalised units."""
        return self.recon(z).reshape(z.shape[0], self.n_particles, self.in_features)


class DeepSetSetDecoderEncoder(DeepSetEncoder):
    """AE-InvE-CD: the DeepSet encoder with an MLP decoder to m points per species.

    Arguments:
        latent_dim, in_features, n_species, hidden, embed, rho_hidden, pool, center: as
            :class:`~openmm_closure.models.encoder.DeepSetEncoder`.
        n_points: decoded points per species m.
        decoder_hidden: hidden sizes of the decoder MLP.
    """

    def __init__(
        self,
        latent_dim: int,
        in_features: int = 2,
        n_species: int = 1,
        n_points: int = 1,
        decoder_hidden: Sequence[int] = (256, 256),
        **deepset,
    ):
        super().__init__(latent_dim, in_features, n_species, **deepset)
        if int(n_points) <= 0:
            raise ValueError(f"n_points must be >= 1, got {n_points}")
        self.n_points = int(n_points)
        self.recon = MLP(self.latent_dim, self.n_species * self.n_points * self.in_features, decoder_hidden)

    def reconstruct(self, z: Tensor) -> Tensor:
        """Decoded point sets (B, S, m, D) of ẑ (B, d), normalised units."""
        return self.recon(z).reshape(z.shape[0], self.n_species, self.n_points, self.in_features)


def chamfer_distance(a: Tensor, b: Tensor) -> Tensor:
    r"""Symmetric Chamfer distance between point sets a (m, D) and b (n, D).

    :math:`\frac1m\sum_i \min_j \|a_i - b_j\|^2 + \frac1n\sum_j \min_i \|a_i - b_j\|^2`;
    cost O(m n). Returns a () tensor (squared input units).

    Example:
        >>> round(float(chamfer_distance(torch.zeros(3, 2), torch.ones(1, 2))), 5)
        4.0
    """
    d = torch.cdist(a.unsqueeze(0), b.unsqueeze(0)).squeeze(0) ** 2
    return d.min(dim=1).values.mean() + d.min(dim=0).values.mean()
