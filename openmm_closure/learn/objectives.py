r"""Stage-1 objectives: the method's ("ours") and the ablation baselines', behind one Protocol.

Stage 1 trains the encoder φ̂ (and whatever decodes ẑ) before stage 2 fits the dynamics.
Every objective satisfies :class:`Stage1Objective` and is registered in
:data:`OBJECTIVES` under its ``--method`` name:

==================  ====================================================================
``ours``            :class:`DensityObjective`: KL(q_X || p(·|ẑ)) of the flow decoder
``ae-aug``          :class:`AEAugObjective`: ordered MLP autoencoder, permuted input
``ae-inve``         :class:`AEInvEObjective`: DeepSet + MLP decoder, pointwise MSE
``ae-inve-cd``      :class:`AEInvECDObjective`: DeepSet + set decoder, Chamfer distance
``inve``            :class:`InvEObjective`: encoder and dynamics jointly, no decoder
``no-closure``      :class:`NoClosure`: no ẑ and no stage 1 (the calibration row)
==================  ====================================================================

The trainer calls, in order: ``encoder_config(config, frames)`` (on the class, before the
model exists; None keeps the method's encoder), the constructor ``(model, config)``,
``bind(frames, device)``, then ``parameters()`` and ``loss(batch, generator)`` per step.
In data-parallel training the batch is one process's share of the step's batch
(``batch.first_set``, ``batch.total_sets``): an objective that draws random numbers
draws them for the whole step and keeps its share's (``batch.draws``), and returns the
mean over its share's sets, so the processes together compute the single-process loss.
:class:`Objective` gives the optional hooks their defaults. This module imports the
data interface (:mod:`openmm_closure.learn.frames`) and the networks, never the trainer.

Example:
    >>> sorted(OBJECTIVES)
    ['ae-aug', 'ae-inve', 'ae-inve-cd', 'inve', 'no-closure', 'ours']
    >>> all(isinstance(cls, type) and issubclass(cls, Objective) for _, cls in OBJECTIVES.items())
    True
"""

from __future__ import annotations

from typing import Any, ClassVar, Optional, Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor

from .frames import SetBatch, TrainingFrames
from ..models.baselines import chamfer_distance, ordered_gather
from ..models.decoder import density_nll
from ..models.normalization import MinMaxScaler
from ..registry import Registry

__all__ = [
    "Stage1Objective",
    "Objective",
    "DensityObjective",
    "NoClosure",
    "AEAugObjective",
    "AEInvEObjective",
    "AEInvECDObjective",
    "InvEObjective",
    "OBJECTIVES",
    "METHODS",
]


@runtime_checkable
class Stage1Objective(Protocol):
    """What the trainer requires of a stage-1 objective (an instance, built as
    ``cls(model, config)`` from a :class:`~openmm_closure.learn.model.ClosureModel` and a
    :class:`~openmm_closure.learn.training.TrainConfig`).

    Attributes:
        skips_stage1: True when there is nothing to train before the dynamics (no-closure).
    """

    skips_stage1: ClassVar[bool]

    @staticmethod
    def encoder_config(config: Any, frames: TrainingFrames) -> Optional[dict]:
        """The model configuration's ``encoder`` entry this objective needs (called on the
        class before the model is built), or None for the method's encoder."""

    def bind(self, frames: TrainingFrames, device: torch.device) -> None:
        """Receive the training frames and the device before the first :meth:`loss`."""

    def parameters(self) -> list:
        """The parameters stage 1 optimises."""

    def loss(self, batch: SetBatch, generator: torch.Generator) -> Tensor:
        """The () loss of a batch of sets; Monte Carlo draws come from ``generator``."""


class Objective:
    """Base of the registered objectives: holds ``model`` and ``config`` and gives the
    optional hooks of :class:`Stage1Objective` their defaults (method's encoder, nothing
    to bind, stage 1 runs)."""

    skips_stage1: ClassVar[bool] = False
    #: the encoder kind this objective brings itself (None: the ``--encoder`` the user picks)
    own_encoder: ClassVar[Optional[str]] = None

    def __init__(self, model, config):
        self.model = model
        self.config = config

    @staticmethod
    def encoder_config(config: Any, frames: TrainingFrames) -> Optional[dict]:
        return None

    def bind(self, frames: TrainingFrames, device: torch.device) -> None:
        return None

    def parameters(self) -> list:
        return list(self.model.encoder.parameters())

    def loss(self, batch: SetBatch, generator: torch.Generator) -> Tensor:
        raise NotImplementedError


class DensityObjective(Objective):
    """Stage-1 objective of the method ("ours"): KL(q_X || p(·|ẑ)) by M MC samples
    (``config.samples``) at bandwidth ``config.epsilon`` (normalised units)."""

    def __init__(self, model, config):
        super().__init__(model, config)
        self.epsilon = float(config.epsilon)
        self.samples = int(config.samples)

    def parameters(self) -> list:
        return list(self.model.encoder.parameters()) + list(self.model.decoder.parameters())

    def loss(self, batch: SetBatch, generator: torch.Generator) -> Tensor:
        z = self.model.encoder.forward_flat(batch.x, batch.types, batch.index, batch.n_sets)
        return density_nll(self.model.decoder, z, batch.x, batch.types, batch.index,
                           self.samples, self.epsilon, generator, batch.first_set, batch.total_sets)


class NoClosure(Objective):
    """``--method no-closure``: no closure variables and no stage 1.

    The model's encoder outputs nothing (``encoder.kind = "none"``, d = 0) and stage 2
    trains the same dynamics, with the same budget and the same best-validation
    selection, on the observables z̄ alone. This is the calibration row a closure must
    beat.
    """

    skips_stage1: ClassVar[bool] = True
    own_encoder: ClassVar[Optional[str]] = "none"

    @staticmethod
    def encoder_config(config: Any, frames: TrainingFrames) -> dict:
        return {"kind": "none"}

    def parameters(self) -> list:
        return []

    def loss(self, batch: SetBatch, generator: torch.Generator) -> Tensor:
        raise RuntimeError("--method no-closure has no stage-1 loss")


# ---------------------------------------------------------------------------- baselines
def _sizes(frames: TrainingFrames) -> tuple[list[int], list[np.ndarray]]:
    types = [frames.types[r] for r in frames.train]
    return [int(t.size) for t in types], types


def _deepset_kwargs(config) -> dict:
    return {"hidden": list(config.encoder_hidden), "embed": int(config.encoder_embed)}


def _fixed_n(frames: TrainingFrames, method: str) -> int:
    sizes, _ = _sizes(frames)
    if len(set(sizes)) != 1:
        raise ValueError(f"--method {method} needs one particle number across the training replicas, "
                         f"got {sorted(set(sizes))}")
    return sizes[0]


class AEAugObjective(Objective):
    """AE-Aug: reconstruct the randomly permuted ordered particle vector, pointwise MSE."""

    own_encoder: ClassVar[Optional[str]] = "flat-mlp"

    @staticmethod
    def encoder_config(config: Any, frames: TrainingFrames) -> dict:
        return {"kind": "flat-mlp", "n_particles": _fixed_n(frames, "ae-aug"),
                "hidden": [256, 256], "decoder_hidden": [256, 256]}

    def loss(self, batch: SetBatch, generator: torch.Generator) -> Tensor:
        enc = self.model.encoder
        # random permutation within each set: sort by (set, random key); the keys are drawn
        # for the whole step's batch (all sets hold n elements) and this share's kept
        count, rows = batch.draws(batch.x.shape[0] // max(batch.n_sets, 1))
        key = torch.rand(count, generator=generator, dtype=torch.float64)[rows].to(batch.x.device)
        perm = torch.argsort(batch.index.to(torch.float64) * 2.0 + key, stable=True)
        x, types, index = batch.x[perm], batch.types[perm], batch.index[perm]
        target = enc.flat_input(x, types, index, batch.n_sets)
        z = enc.net(target.reshape(batch.n_sets, -1))
        return ((enc.reconstruct(z) - target) ** 2).mean()


class AEInvEObjective(Objective):
    """AE-InvE: invariant encoder, MLP decoder to the stored particle order, pointwise MSE."""

    own_encoder: ClassVar[Optional[str]] = "deepset-mlpdec"

    @staticmethod
    def encoder_config(config: Any, frames: TrainingFrames) -> dict:
        return {"kind": "deepset-mlpdec", **_deepset_kwargs(config),
                "n_particles": _fixed_n(frames, "ae-inve"), "decoder_hidden": [256, 256]}

    def loss(self, batch: SetBatch, generator: torch.Generator) -> Tensor:
        enc = self.model.encoder
        z = enc.forward_flat(batch.x, batch.types, batch.index, batch.n_sets)
        target = batch.x[ordered_gather(batch.index, batch.n_sets, enc.n_particles)]
        return ((enc.reconstruct(z) - target) ** 2).mean()


class AEInvECDObjective(Objective):
    """AE-InvE-CD: invariant encoder, set decoder, Chamfer distance per species."""

    own_encoder: ClassVar[Optional[str]] = "deepset-setdec"

    @staticmethod
    def encoder_config(config: Any, frames: TrainingFrames) -> dict:
        _, types = _sizes(frames)
        s = frames.n_species
        m = max(int(np.bincount(t, minlength=s).max()) for t in types)
        return {"kind": "deepset-setdec", **_deepset_kwargs(config), "n_points": m,
                "decoder_hidden": [256, 256]}

    def loss(self, batch: SetBatch, generator: torch.Generator) -> Tensor:
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


class InvEObjective(Objective):
    """InvE: encoder and dynamics trained jointly on consecutive frames, no reconstruction.

    The loss is the dynamics' own loss (ODE: MSE of finite differences; SDE: Gaussian
    NLL) on ``z = [scaled z̄, ẑ]`` for pairs (X_t, X_{t+1}) drawn from the training
    replicas; z̄ is min-max scaled over the training replicas, ẑ enters unscaled, so
    nothing stops it from collapsing to a constant. The batch handed to :meth:`loss`
    only sets the number of pairs; the pairs are drawn with ``generator`` (so validation
    values are estimates on training pairs).
    """

    def __init__(self, model, config):
        super().__init__(model, config)
        self.frames: Optional[TrainingFrames] = None
        self.device = torch.device("cpu")
        self.scaler = MinMaxScaler(0)

    def bind(self, frames: TrainingFrames, device: torch.device) -> None:
        """Take the training frames and device; fit z̄'s scale on the training replicas."""
        self.frames = frames
        self.device = torch.device(device)
        names = frames.observables
        self.scaler = MinMaxScaler(len(names))
        if names:
            self.scaler.fit(np.stack([np.stack([frames.obs[k][r] for k in names], -1) for r in frames.train]))

    def parameters(self) -> list:
        return list(self.model.encoder.parameters()) + list(self.model.dynamics.parameters())

    def _zbar(self, items: np.ndarray) -> Tensor:
        f = self.frames
        if not f.observables:
            return torch.zeros(len(items), 0, dtype=self.model.dtype, device=self.device)
        raw = np.stack([[f.obs[k][r, t] for k in f.observables] for r, t in items])
        scaled = self.scaler(torch.as_tensor(raw, dtype=torch.float64))
        return scaled.to(dtype=self.model.dtype, device=self.device)

    def _encode(self, items: np.ndarray) -> Tensor:
        f = self.frames
        b = f.batch(self.model, items, self.device)
        z = self.model.encoder.forward_flat(b.x, b.types, b.index, b.n_sets)
        # TrainingFrames.batch groups the sets by replica; undo that to follow ``items``
        order = np.concatenate([np.flatnonzero(items[:, 0] == r) for r in np.unique(items[:, 0])])
        out = torch.empty_like(z)
        out[torch.as_tensor(order, device=z.device)] = z
        return out

    def loss(self, batch: SetBatch, generator: torch.Generator) -> Tensor:
        if self.frames is None:
            raise RuntimeError("InvEObjective.bind(frames, device) must be called before loss()")
        f = self.frames
        count, rows = batch.draws()  # the whole step's pairs are drawn, this share's kept
        reps = np.asarray(f.train)
        r = reps[torch.randint(len(reps), (count,), generator=generator).numpy()[rows]]
        step = int(getattr(self.config, "stage2_step", 1))  # frames per dynamics step (model.dt)
        t = torch.randint(f.n_frames - step, (count,), generator=generator).numpy()[rows]
        now = np.stack([r, t], 1).astype(np.int64)
        nxt = np.stack([r, t + step], 1).astype(np.int64)
        z0 = torch.cat([self._zbar(now), self._encode(now)], -1)
        z1 = torch.cat([self._zbar(nxt), self._encode(nxt)], -1)
        return self.model.dynamics.loss(z0, z1, self.model.dt)


def _check_objective(name: str, cls: Any) -> None:
    if not (isinstance(cls, type) and all(hasattr(cls, m) for m in ("encoder_config", "bind", "parameters", "loss"))):
        raise ValueError(f"method {name!r}: {cls!r} is not a stage-1 objective class (see Stage1Objective)")


#: ``--method`` name -> stage-1 objective class, the method first; other packages add
#: methods under the entry-point group ``openmm_closure.objectives``
OBJECTIVES = Registry("method", group="openmm_closure.objectives", check=_check_objective)
for _name, _cls in (("ours", DensityObjective), ("ae-aug", AEAugObjective), ("ae-inve", AEInvEObjective),
                    ("ae-inve-cd", AEInvECDObjective), ("inve", InvEObjective), ("no-closure", NoClosure)):
    OBJECTIVES.register(_name, _cls)

#: the built-in ``--method`` names, the method first (every name: ``OBJECTIVES.names()``)
METHODS: tuple[str, ...] = tuple(OBJECTIVES)
