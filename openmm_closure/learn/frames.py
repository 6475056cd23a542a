"""The training data as objectives and the trainer see it: frames and batches of sets.

:class:`TrainingFrames` wraps a dataset with its checks and the replica split;
:class:`SetBatch` is a batch of sets as one flat concatenation, the input of every
stage-1 objective's ``loss``. Neither imports the trainer, so the objectives
(:mod:`openmm_closure.learn.objectives`) use them without an import cycle.
"""

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
from torch import Tensor

from ..catalog import IN_FEATURES

__all__ = ["SetBatch", "TrainingFrames", "to_device", "seed_for"]


@dataclass
class SetBatch:
    """A batch of sets as one flat concatenation.

    Attributes:
        x: (N, D) normalised coordinates.
        types: (N,) int64 species indices.
        index: (N,) int64 set index of each element, in [0, n_sets).
        n_sets: number of sets B.
        first_set, total_sets: when the batch is one process's share of a step's batch
            (data-parallel training, :mod:`openmm_closure.learn.distributed`), its sets are sets
            ``[first_set, first_set + n_sets)`` of that step's ``total_sets``; an
            objective makes its random draws for all ``total_sets`` and keeps its share's
            (see :meth:`draws`), so the share's draws do not depend on the process count.
            None: the batch is the whole step.
    """

    x: Tensor
    types: Tensor
    index: Tensor
    n_sets: int
    first_set: int = 0
    total_sets: Optional[int] = None

    def draws(self, per_set: int = 1) -> tuple[int, slice]:
        """How many random draws the whole step makes with ``per_set`` draws a set, and
        the slice of them that are this batch's sets'.

        Example:
            >>> b = SetBatch(torch.zeros(4, 2), torch.zeros(4), torch.zeros(4), 2, first_set=3, total_sets=8)
            >>> b.draws(5)
            (40, slice(15, 25, None))
        """
        total = self.n_sets if self.total_sets is None else int(self.total_sets)
        return total * per_set, slice(self.first_set * per_set, (self.first_set + self.n_sets) * per_set)



def seed_for(seed: int, stage: int, epoch: int, salt: int = 0) -> int:
    return int(np.random.SeedSequence([int(seed), stage, epoch, salt]).generate_state(1)[0])


class TrainingFrames:
    """The frames of a training dataset, checked once, with the replica split.

    What the trainer and every stage-1 objective read: positions, species, observables,
    the coordinate and observable ranges of the training replicas, and the assembly of
    batches of sets.

    Arguments:
        ds: a dataset (``openmm_closure.data.load`` or ``ArrayDataset``): ``positions``
            (R, F, n, 3) nm, ``types`` (R, n), ``observables`` name -> (R, F), ``manifest``.
        config: anything with ``data`` (its name in messages), ``seed`` and
            ``val_fraction`` (e.g. a :class:`~openmm_closure.learn.training.TrainConfig`).

    Attributes:
        train, val: sorted replica indices of the training and validation split.
        n_frames: frames per replica F; ``types``: per replica (n,) int64 species.
        observables: names of z̄; ``obs``: name -> (R, F) float64 raw values.
        n_species, species, system, in_features: facts of the dataset.
        lo, hi / lo_centered, hi_centered: (3,) nm coordinate ranges of the training
            replicas, raw / with each frame's centroid subtracted.
        obs_lo, obs_hi: (M,) observable ranges over every replica (the metric's scale);
            obs_mean_curve: (F, M) their mean per frame.
    """

    def __init__(self, ds, config):
        self.ds = ds
        r = len(ds)
        if r == 0:
            raise ValueError(f"dataset {config.data} is empty (no replicas)")
        self.manifest = dict(ds.manifest)
        self.n_frames = int(ds.n_frames)
        if self.n_frames < 2:
            raise ValueError(f"dataset {config.data} has {self.n_frames} frame(s); at least 2 are needed")
        types = ds.types
        self.types = [np.asarray(types[i], dtype=np.int64) for i in range(r)]
        if any(t.size == 0 for t in self.types):
            raise ValueError(f"dataset {config.data} has a replica with no particles")
        self.observables = list(self.manifest.get("observables", []))
        obs = ds.observables
        missing = [k for k in self.observables if k not in obs]
        if missing:
            raise ValueError(f"dataset {config.data} lacks the observables {missing} listed in its manifest")
        self.obs = {k: np.asarray(obs[k], dtype=np.float64) for k in self.observables}
        for k, v in self.obs.items():
            if not np.isfinite(v).all():
                raise ValueError(f"dataset {config.data}: observable {k!r} contains NaN or inf")
        rng = np.random.default_rng(seed_for(config.seed, 0, 0))
        order = rng.permutation(r)
        n_val = int(round(config.val_fraction * r)) if r > 1 else 0
        n_val = min(n_val, r - 1)
        self.val = sorted(order[:n_val].tolist())
        self.train = sorted(order[n_val:].tolist())
        species = self.manifest.get("species")
        max_type = max(int(t.max()) for t in self.types)
        self.n_species = max(len(species) if species else 0, max_type + 1)
        self.species = list(species) if species else [str(i) for i in range(self.n_species)]
        system = self.manifest.get("system", "custom")
        self.system = system
        self.in_features = int(self.manifest.get("spatial_dim", IN_FEATURES.get(system, 0)))
        # one pass over the training replicas: finiteness and coordinate ranges, raw and
        # with each frame's centroid subtracted (for encoders with ``center``)
        lo = np.full(3, np.inf)
        hi = np.full(3, -np.inf)
        lo_c = np.full(3, np.inf)
        hi_c = np.full(3, -np.inf)
        for i in range(r):
            p = np.asarray(ds.positions[i], dtype=np.float64)
            if not np.isfinite(p).all():
                raise ValueError(f"dataset {config.data}: replica {i} positions contain NaN or inf")
            if i in self.train:
                flat = p.reshape(-1, 3)
                lo = np.minimum(lo, flat.min(0))
                hi = np.maximum(hi, flat.max(0))
                c = (p - p.mean(axis=-2, keepdims=True)).reshape(-1, 3)
                lo_c = np.minimum(lo_c, c.min(0))
                hi_c = np.maximum(hi_c, c.max(0))
        self.lo, self.hi = lo, hi
        self.lo_centered, self.hi_centered = lo_c, hi_c
        # the metric's scale and the model-free predictors come from the WHOLE training
        # set (every replica, before the validation split), as the paper scales its MRE
        if self.observables:
            allobs = np.stack([self.obs[k] for k in self.observables], -1)  # (R, F, M)
            self.obs_lo = allobs.min(axis=(0, 1))
            self.obs_hi = allobs.max(axis=(0, 1))
            self.obs_mean_curve = allobs.mean(axis=0)  # (F, M)
        else:
            self.obs_lo = self.obs_hi = np.zeros(0)
            self.obs_mean_curve = np.zeros((self.n_frames, 0))
        if self.in_features == 0:  # unknown system: 2D when z never varies
            self.in_features = 2 if hi[2] - lo[2] == 0 else 3

    def positions(self, replica: int, frames) -> np.ndarray:
        """Positions (f, n, 3) float32 nm of the given frames of one replica."""
        return np.asarray(self.ds.positions[replica, frames], dtype=np.float32)

    def items(self, replicas, stride: int = 1) -> np.ndarray:
        """(K, 2) array of (replica, frame) pairs."""
        frames = np.arange(0, self.n_frames, stride)
        return np.array([(r, f) for r in replicas for f in frames], dtype=np.int64).reshape(-1, 2)

    def batch(self, model, items: np.ndarray, device) -> SetBatch:
        """The :class:`SetBatch` of the (replica, frame) pairs ``items`` (K, 2) on ``device``,
        normalised by ``model.encoder``; sets are grouped by replica (ascending)."""
        return to_device(model, self.host_batch(items), device)

    def host_batch(self, items: np.ndarray) -> tuple:
        """The arrays of a batch on the host: (x (N, 3) float32 nm, types (N,) int64,
        index (N,) int64, n_sets) for the (replica, frame) pairs ``items`` (K, 2)."""
        xs, ts, idx = [], [], []
        k = 0
        for r in np.unique(items[:, 0]):
            fr = items[items[:, 0] == r, 1]
            pos = self.positions(int(r), fr)  # (f, n, 3)
            n = pos.shape[1]
            xs.append(pos.reshape(-1, 3))
            ts.append(np.tile(self.types[int(r)], len(fr)))
            idx.append(np.repeat(np.arange(k, k + len(fr)), n))
            k += len(fr)
        return (torch.from_numpy(np.concatenate(xs)), torch.from_numpy(np.concatenate(ts)),
                torch.from_numpy(np.concatenate(idx)), k)

    def epoch_items(self, items: np.ndarray, per_trajectory: Optional[int], seed: int) -> np.ndarray:
        """Stage 1's (replica, frame) pairs of one epoch: all of ``items``, or
        ``per_trajectory`` frames of each replica drawn without replacement by a
        generator seeded with ``seed`` (so a resumed epoch draws the same frames)."""
        if per_trajectory is None:
            return items
        rng = np.random.default_rng(seed)
        out = []
        for r in np.unique(items[:, 0]):
            mine = items[items[:, 0] == r]
            k = min(int(per_trajectory), len(mine))
            out.append(mine[np.sort(rng.choice(len(mine), k, replace=False))])
        return np.concatenate(out)


def to_device(model, host: tuple, device) -> SetBatch:
    """Move a host batch (:meth:`TrainingFrames.host_batch`) to ``device`` and normalise
    its coordinates with ``model.encoder`` (centring needs the set index)."""
    x, types, index, k = host
    nb = x.is_pinned()
    index = index.to(device, non_blocking=nb)
    return SetBatch(
        x=model.encoder.normalize(x.to(device, non_blocking=nb), index, k),  # centring needs the set index
        types=types.to(device, non_blocking=nb),
        index=index,
        n_sets=k,
    )
