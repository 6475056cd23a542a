r"""The paper's ablation baselines (SPEC §2): encoders and stage-1 objectives.

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

Objectives follow the interface of :class:`openmm_closure.training.DensityObjective`
(``__init__(model, config)``, ``parameters()``, ``loss(batch, generator)``) plus two
optional hooks the trainer calls: ``encoder_config(config, frames) -> dict | None``
(static; the encoder entry of the model configuration) and ``bind(frames, device)``.
This module never imports the trainer (no import cycle).

Example:
    $ openmm-closure train --data runs/p2d --out models/p2d-aug --method ae-aug
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from .encoder import MLP, DeepSetEncoder, _SetEncoderBase

__all__ = [
    "FlatMLPEncoder",
    "DeepSetMLPDecoderEncoder",
    "DeepSetSetDecoderEncoder",
    "chamfer_distance",
    "AEAugObjective",
    "AEInvEObjective",
    "AEInvECDObjective",
    "InvEObjective",
    "ENCODERS",
    "OBJECTIVES",
    "METHODS",
]

#: all ``--method`` names, the method first
METHODS = ("ours", "ae-aug", "ae-inve", "ae-inve-cd", "inve")


def _features(x: Tensor, types: Tensor, n_species: int) -> Tensor:
    """Per-particle feature (N, D [+ S]): normalised coordinates [+ one-hot species]."""
    if n_species == 1:
        return x
    return torch.cat([x, nn.functional.one_hot(types, n_species).to(x.dtype)], dim=-1)


def _ordered(index: Tensor, n_sets: int, n: int) -> Tensor:
    """Indices that gather a flat batch into (n_sets, n) keeping each set's element order."""
    counts = torch.bincount(index, minlength=n_sets)
    if counts.numel() and bool((counts != n).any()):
        bad = sorted({int(c) for c in counts.tolist() if int(c) != n})
        raise ValueError(
            f"this encoder is tied to sets of exactly {n} particles (an ordered vector), "
            f"got sets of {bad}; AE-Aug cannot encode a different particle number"
        )
    return torch.sort(index, stable=True)[1].reshape(n_sets, n)


class FlatMLPEncoder(_SetEncoderBase):
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
        gather = _ordered(index, n_sets, self.n_particles)
        return _features(x, types, self.n_species)[gather]

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


#: encoder kind -> class (looked up by ``openmm_closure.models.encoder.build_encoder``)
ENCODERS = {
    "flat-mlp": FlatMLPEncoder,
    "deepset-mlpdec": DeepSetMLPDecoderEncoder,
    "deepset-setdec": DeepSetSetDecoderEncoder,
}


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


# ---------------------------------------------------------------------------- objectives
def _sizes(frames) -> tuple[list[int], list[np.ndarray]]:
    types = [frames.types[r] for r in frames.train]
    return [int(t.size) for t in types], types


def _deepset_kwargs(config) -> dict:
    return {"hidden": list(config.encoder_hidden), "embed": int(config.encoder_embed)}


def _fixed_n(frames, method: str) -> int:
    sizes, _ = _sizes(frames)
    if len(set(sizes)) != 1:
        raise ValueError(f"--method {method} needs one particle number across the training replicas, "
                         f"got {sorted(set(sizes))}")
    return sizes[0]


class _EncoderObjective:
    """Common part: trains the encoder module (which holds its own decoder)."""

    def __init__(self, model, config):
        self.model = model
        self.config = config

    def parameters(self):
        return list(self.model.encoder.parameters())


class AEAugObjective(_EncoderObjective):
    """AE-Aug: reconstruct the randomly permuted ordered particle vector, pointwise MSE."""

    @staticmethod
    def encoder_config(config, frames) -> dict:
        return {"kind": "flat-mlp", "n_particles": _fixed_n(frames, "ae-aug"),
                "hidden": [256, 256], "decoder_hidden": [256, 256]}

    def loss(self, batch, generator: torch.Generator) -> Tensor:
        enc = self.model.encoder
        # random permutation within each set: sort by (set, random key)
        key = torch.rand(batch.x.shape[0], generator=generator, dtype=torch.float64).to(batch.x.device)
        perm = torch.argsort(batch.index.to(torch.float64) * 2.0 + key, stable=True)
        x, types, index = batch.x[perm], batch.types[perm], batch.index[perm]
        target = enc.flat_input(x, types, index, batch.n_sets)
        z = enc.net(target.reshape(batch.n_sets, -1))
        return ((enc.reconstruct(z) - target) ** 2).mean()


class AEInvEObjective(_EncoderObjective):
    """AE-InvE: invariant encoder, MLP decoder to the stored particle order, pointwise MSE."""

    @staticmethod
    def encoder_config(config, frames) -> dict:
        return {"kind": "deepset-mlpdec", **_deepset_kwargs(config),
                "n_particles": _fixed_n(frames, "ae-inve"), "decoder_hidden": [256, 256]}

    def loss(self, batch, generator: torch.Generator) -> Tensor:
        enc = self.model.encoder
        z = enc.forward_flat(batch.x, batch.types, batch.index, batch.n_sets)
        target = batch.x[_ordered(batch.index, batch.n_sets, enc.n_particles)]
        return ((enc.reconstruct(z) - target) ** 2).mean()


class AEInvECDObjective(_EncoderObjective):
    """AE-InvE-CD: invariant encoder, set decoder, Chamfer distance per species."""

    @staticmethod
    def encoder_config(config, frames) -> dict:
        _, types = _sizes(frames)
        s = frames.n_species
        m = max(int(np.bincount(t, minlength=s).max()) for t in types)
        return {"kind": "deepset-setdec", **_deepset_kwargs(config), "n_points": m,
                "decoder_hidden": [256, 256]}

    def loss(self, batch, generator: torch.Generator) -> Tensor:
        enc = self.model.encoder
        z = enc.forward_flat(batch.x, batch.types, batch.index, batch.n_sets)
        rec = enc.reconstruct(z)  # (B, S, m, D)
        total, count = z.new_zeros(()), 0
        for b in range(batch.n_sets):
            in_set = batch.index == b
            for s in range(enc.n_species):
                pts = batch.x[in_set & (batch.types == s)]
                if pts.shape[0] == 0:
                    continue
                total = total + chamfer_distance(rec[b, s], pts)
                count += 1
        return total / max(count, 1)


class InvEObjective:
    """InvE: encoder and dynamics trained jointly on consecutive frames, no reconstruction.

    The loss is the dynamics' own loss (ODE: MSE of finite differences; SDE: Gaussian
    NLL) on ``z = [scaled z̄, ẑ]`` for pairs (X_t, X_{t+1}) drawn from the training
    replicas; ẑ enters unscaled, so nothing stops it from collapsing to a constant.
    The batch handed to :meth:`loss` only sets the number of pairs; the pairs are drawn
    with ``generator`` (so validation values are estimates on training pairs).
    """

    encoder_config = None

    def __init__(self, model, config):
        self.model = model
        self.config = config
        self.frames = None
        self.device = torch.device("cpu")

    def bind(self, frames, device) -> None:
        """Give the objective the training frames (the trainer's ``_Frames``) and device."""
        self.frames = frames
        self.device = torch.device(device)
        names = frames.observables
        if names:
            zbar = np.stack([np.stack([frames.obs[k][r] for k in names], -1) for r in frames.train])
            self.lo = zbar.reshape(-1, len(names)).min(0)
            self.hi = zbar.reshape(-1, len(names)).max(0)
        else:
            self.lo = self.hi = np.zeros(0)

    def parameters(self):
        return list(self.model.encoder.parameters()) + list(self.model.dynamics.parameters())

    def _zbar(self, items: np.ndarray) -> Tensor:
        f = self.frames
        if not f.observables:
            return torch.zeros(len(items), 0, dtype=self.model.dtype, device=self.device)
        raw = np.stack([[f.obs[k][r, t] for k in f.observables] for r, t in items])
        span = np.where(self.hi > self.lo, self.hi - self.lo, 1.0)
        return torch.as_tensor(2.0 * (raw - self.lo) / span - 1.0, dtype=self.model.dtype, device=self.device)

    def _encode(self, items: np.ndarray) -> Tensor:
        f = self.frames
        b = f.batch(self.model, items, self.device)
        z = self.model.encoder.forward_flat(b.x, b.types, b.index, b.n_sets)
        # _Frames.batch groups the sets by replica; undo that to follow ``items``
        order = np.concatenate([np.flatnonzero(items[:, 0] == r) for r in np.unique(items[:, 0])])
        out = torch.empty_like(z)
        out[torch.as_tensor(order, device=z.device)] = z
        return out

    def loss(self, batch, generator: torch.Generator) -> Tensor:
        if self.frames is None:
            raise RuntimeError("InvEObjective.bind(frames, device) must be called before loss()")
        f = self.frames
        n = batch.n_sets
        reps = np.asarray(f.train)
        r = reps[torch.randint(len(reps), (n,), generator=generator).numpy()]
        t = torch.randint(f.n_frames - 1, (n,), generator=generator).numpy()
        now = np.stack([r, t], 1).astype(np.int64)
        nxt = np.stack([r, t + 1], 1).astype(np.int64)
        z0 = torch.cat([self._zbar(now), self._encode(now)], -1)
        z1 = torch.cat([self._zbar(nxt), self._encode(nxt)], -1)
        return self.model.dynamics.loss(z0, z1, self.model.dt)


#: ``--method`` name -> stage-1 objective class (the trainer adds "ours")
OBJECTIVES = {
    "ae-aug": AEAugObjective,
    "ae-inve": AEInvEObjective,
    "ae-inve-cd": AEInvECDObjective,
    "inve": InvEObjective,
}
