"""Two-stage training of the closure model (the library side of ``openmm-closure train``).

Stage 1 trains the encoder φ̂ and the flow decoder p(x | ẑ) with a swappable objective
(:mod:`openmm_closure.learn.objectives`; "ours" is the Gaussian-mixture density objective of
SPEC §2). Both stages run through one epoch loop (``_run_stage``) and a run is opened or
resumed in one place (``_open_run``); the model's configuration is a
:class:`~openmm_closure.learn.model_config.ModelConfig` built from the dataset's facts
(:mod:`openmm_closure.catalog`) and the options.
Stage 2 freezes the encoder, encodes every frame once, fits the state scaler on
z = [z̄, ẑ] of the training replicas, and trains the ODE/SDE dynamics on windows of the
trajectories: pairs ``stage2_step`` frames apart (the dynamics' time step is that many
frame spacings), and with ``stage2_horizon`` H > 1 also the path of H such steps (an
unrolled error for an ODE, the energy score of sampled paths for an SDE). An SDE's
diffusion is scaled by the training data's own increment variance (no fixed floor in
scaled units), and the dynamics is confined outside the training range
(:mod:`openmm_closure.models.dynamics`). Every few epochs the dynamics is rolled out
from the validation trajectories' first states over their whole length and scored with
the system's metric (:mod:`openmm_closure.learn.selection`); the best snapshot is kept, over
``stage2_seeds`` independent stage-2 trainings. ``select_data`` adds datasets that only
score (e.g. trajectories of another particle number, which the validation split of one
N cannot show); the score is then the mean over the validation set and those sets,
each weighted by its number of trajectories.

Reproducibility: the data order and the Monte Carlo draws of every epoch come from
generators seeded by (seed, stage, epoch), and a checkpoint (model, optimizer, history,
RNG states) is written atomically after every epoch, so ``--resume`` after a kill gives
the same weights as an uninterrupted run. The validation split is by replica.

Under ``torchrun`` (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK`` set) the same loop runs in
every process with DistributedDataParallel (:mod:`openmm_closure.learn.distributed`): the batch
sizes are global, each process trains on its share of every step's batch, the
gradients are averaged, and rank 0 alone writes the checkpoint and the model files.

Example:
    $ openmm-closure train --data runs/mixing --out models/mixing --epochs 20
    >>> from openmm_closure.learn.training import TrainConfig, train
    >>> model = train(TrainConfig(data="runs/mixing", out="models/mixing"))  # doctest: +SKIP
"""

import dataclasses
import json
import math
import random
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from torch import Tensor

from ..catalog import default_center, default_dynamics, default_latent_dim
from .distributed import SINGLE, Distributed, from_environment
from ..fileio import LOCK_FILE, DirectoryLock
from .frames import SetBatch, TrainingFrames, seed_for, to_device
from .model import ClosureModel, save_model, save_torch_atomic
from .model_config import FORMAT_VERSION, UNITS, ModelConfig
from .objectives import OBJECTIVES, DensityObjective, NoClosure, Stage1Objective
from .selection import rollout_score

__all__ = [
    "TrainConfig",
    "SetBatch",
    "TrainingFrames",
    "DensityObjective",
    "NoClosure",
    "STAGE1_OBJECTIVES",
    "train",
    "TRAIN_CONFIG",
    "train_config_values",
    "write_train_config",
]

CHECKPOINT = "checkpoint.pt"
#: the effective options of a run, written beside ``config.json``; ``train --config`` reads it
TRAIN_CONFIG = "train_config.toml"
_VAL_MAX_SETS = 512
_ENCODE_CHUNK = 64


@dataclass
class TrainConfig:
    """All options of a training run (the CLI flags map one to one).

    Units: ``epsilon`` in normalised coordinates; learning rates per step.
    ``None`` means "choose from the dataset" (see :func:`train`). ``batch_size`` and
    ``batch_size_stage2`` are global: under torchrun each process trains on its share.
    """

    data: str
    out: str
    method: str = "ours"
    latent_dim: Optional[int] = None
    epsilon: float = 0.01
    samples: int = 600
    dynamics: Optional[str] = None
    drift: str = "mlp"
    sigma0_sq: Optional[float] = None
    diffusion_floor: float = 0.01
    confine: bool = True
    restore_steps: float = 5.0
    encoder: str = "deepset"
    center: Optional[bool] = None
    encoder_hidden: tuple = (64, 64)
    encoder_embed: int = 64
    flow_transforms: int = 8
    flow_bins: int = 16
    flow_hidden: tuple = (128, 128)
    dynamics_hidden: tuple = (128, 128)
    epochs_stage1: int = 20
    epochs_stage2: int = 100
    batch_size: int = 16
    batch_size_stage2: int = 256
    lr: float = 1e-3
    lr_stage2: float = 1e-3
    frame_stride: int = 1
    frames_per_trajectory: Optional[int] = None
    frames_per_trajectory_stage2: Optional[int] = None
    stage2_step: int = 1
    stage2_horizon: int = 1
    stage2_horizon_weight: float = 1.0
    stage2_seeds: int = 1
    select: str = "rollout"
    select_data: tuple = ()
    select_every: Optional[int] = None
    select_samples: int = 4
    loader_workers: int = 0
    amp: bool = False
    seed: int = 0
    val_fraction: float = 0.1
    device: str = "auto"
    threads: Optional[int] = None
    resume: bool = False
    stop_after: Optional[int] = None
    progress: Optional[bool] = None

    def check(self) -> None:
        if self.latent_dim is not None and int(self.latent_dim) <= 0:
            raise ValueError(f"--latent-dim must be >= 1, got {self.latent_dim}")
        if self.method == "no-closure" and self.latent_dim is not None:
            raise ValueError("--method no-closure has no closure variables; drop --latent-dim")
        if not self.epsilon > 0:
            raise ValueError(f"--epsilon must be > 0, got {self.epsilon}")
        if int(self.samples) <= 0:
            raise ValueError(f"--samples must be >= 1, got {self.samples}")
        from ..models.dynamics import DRIFTS, DYNAMICS

        if self.dynamics is not None and self.dynamics not in DYNAMICS:
            raise ValueError(f"--dynamics must be one of {', '.join(DYNAMICS.names())}, got {self.dynamics!r}")
        if self.drift not in DRIFTS:
            raise ValueError(f"--drift must be one of {', '.join(DRIFTS.names())}, got {self.drift!r}")
        if self.method not in STAGE1_OBJECTIVES:
            raise ValueError(f"--method {self.method!r} unknown; choose from {sorted(STAGE1_OBJECTIVES)}")
        from ..models.registry import ENCODERS

        if self.encoder not in ENCODERS:
            raise ValueError(f"--encoder must be one of {', '.join(ENCODERS.names())}, got {self.encoder!r}")
        owners = {getattr(cls, "own_encoder", None): name for name, cls in STAGE1_OBJECTIVES.items()}
        if self.encoder in owners and owners[self.encoder] != self.method:
            raise ValueError(f"--encoder {self.encoder} is the encoder --method {owners[self.encoder]} brings itself; "
                             f"use that method, or another encoder with --method {self.method}")
        for name in ("epochs_stage1", "epochs_stage2"):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 0")
        if int(self.epochs_stage1) == 0 and int(self.epochs_stage2) == 0:
            raise ValueError("--epochs 0 (--epochs-stage1 0 and --epochs-stage2 0) trains nothing and would write an "
                             "untrained model; give at least 1 epoch")
        if int(self.batch_size) <= 0 or int(self.batch_size_stage2) <= 0:
            raise ValueError("batch sizes must be >= 1")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"--val-fraction must be in [0, 1), got {self.val_fraction}")
        if int(self.frame_stride) <= 0:
            raise ValueError(f"--frame-stride must be >= 1, got {self.frame_stride}")
        if int(self.flow_transforms) < 1 or int(self.flow_bins) < 1:
            raise ValueError(f"--flow-transforms and --flow-bins must be >= 1, got "
                             f"{self.flow_transforms} and {self.flow_bins}")
        if self.threads is not None and int(self.threads) <= 0:
            raise ValueError(f"--threads must be >= 1, got {self.threads}")
        for name in ("frames_per_trajectory", "frames_per_trajectory_stage2"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or int(v) != v or int(v) <= 0):
                raise ValueError(f"--{name.replace('_', '-')} must be a positive integer, got {v!r}")
        for name in ("stage2_step", "stage2_horizon", "stage2_seeds", "select_samples"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or int(v) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be an integer >= 1, got {v!r}")
        if self.select_every is not None and (isinstance(self.select_every, bool)
                                              or int(self.select_every) != self.select_every
                                              or int(self.select_every) < 1):
            raise ValueError(f"--select-every must be an integer >= 1, got {self.select_every!r}")
        if self.select not in SELECT_MODES:
            raise ValueError(f"--select must be one of {', '.join(SELECT_MODES)}, got {self.select!r}")
        if isinstance(self.select_data, (str, os.PathLike)) or not all(
                isinstance(d, (str, os.PathLike)) and str(d) for d in self.select_data):
            raise ValueError(f"--select-data takes dataset directories, got {self.select_data!r}")
        if self.select_data and self.select != "rollout":
            raise ValueError("--select-data scores rollouts; it needs --select rollout")
        if self.sigma0_sq is not None and not (math.isfinite(float(self.sigma0_sq)) and self.sigma0_sq > 0):
            raise ValueError(f"--sigma0-sq must be a finite floor > 0 (or unset: the diffusion is scaled by "
                             f"the data), got {self.sigma0_sq!r}")
        if not (math.isfinite(float(self.diffusion_floor)) and 0 < self.diffusion_floor < 1):
            raise ValueError(f"--diffusion-floor must be a fraction in (0, 1), got {self.diffusion_floor!r}")
        if not (math.isfinite(float(self.restore_steps)) and self.restore_steps > 0):
            raise ValueError(f"--restore-steps must be > 0, got {self.restore_steps!r}")
        if not (math.isfinite(float(self.stage2_horizon_weight)) and self.stage2_horizon_weight >= 0):
            raise ValueError(f"--stage2-horizon-weight must be >= 0, got {self.stage2_horizon_weight!r}")
        if isinstance(self.loader_workers, bool) or int(self.loader_workers) != self.loader_workers \
                or int(self.loader_workers) < 0:
            raise ValueError(f"--loader-workers must be >= 0, got {self.loader_workers!r}")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        for k, v in d.items():
            if isinstance(v, tuple):
                d[k] = list(v)
        return d


#: ``--select``: keep the stage-2 snapshot with the best rollout score on the validation
#: trajectories (:mod:`openmm_closure.learn.selection`), or the lowest one-step validation loss
SELECT_MODES = ("rollout", "one-step")

#: options that steer one invocation, not the run: left out of ``train_config.toml``
_INVOCATION_ONLY = ("resume", "stop_after", "progress")


def train_config_values(config: TrainConfig) -> dict:
    """The options of ``config`` as ``train --config`` reads them: one key per ``train``
    flag (``--flow-hidden`` is ``flow_hidden``), tuples as lists, None for "chosen from
    the dataset" (written as a comment); ``resume``, ``stop_after`` and ``progress``
    are left out.

    Example:
        >>> values = train_config_values(TrainConfig(data="runs/p2d", out="models/p2d", lr=3e-4))
        >>> values["lr"], values["flow_hidden"], values["latent_dim"], "resume" in values
        (0.0003, [128, 128], None, False)
    """
    return {k: v for k, v in config.to_dict().items() if k not in _INVOCATION_ONLY}


def write_train_config(config: TrainConfig, directory) -> Path:
    """Write ``train_config.toml`` (:func:`train_config_values`) into ``directory``; every
    run writes it beside ``config.json`` when it starts, and ``openmm-closure train
    --config DIR/train_config.toml`` repeats the run."""
    from .config_file import write_toml

    return write_toml(Path(directory) / TRAIN_CONFIG, train_config_values(config),
                      header="openmm-closure train: the options of this run "
                             "(repeat it with: openmm-closure train --config FILE)")


#: ``--method`` name -> stage-1 objective class (:data:`openmm_closure.learn.objectives.OBJECTIVES`)
STAGE1_OBJECTIVES = OBJECTIVES

# the options that may differ between a killed run and its resumption
_RESUME_FREE = {"resume", "stop_after", "progress", "device", "threads", "data", "out", "loader_workers"}
# options that only stage 2 reads: they may differ while the checkpoint has not begun
# stage 2 (one stage 1, several stage-2 settings: copy the run directory, resume each)
_STAGE2_ONLY = {"sigma0_sq", "diffusion_floor", "confine", "restore_steps", "stage2_step", "stage2_horizon",
                "select_data",
                "stage2_horizon_weight", "stage2_seeds", "select", "select_every", "select_samples",
                "epochs_stage2", "lr_stage2", "batch_size_stage2", "frames_per_trajectory_stage2"}


class _EpochBatches(torch.utils.data.Dataset):
    """Batch ``s`` of an epoch, assembled on the host (in DataLoader workers when asked).

    Its content depends only on (items, order, batch size), never on the worker count, so
    ``--loader-workers`` changes speed, not results. Under torchrun it is this process's
    share of the batch (its sets in the order a single process batches them: grouped by
    replica), or None when the share is empty."""

    def __init__(self, frames: "TrainingFrames", items: np.ndarray, order: np.ndarray, batch_size: int,
                 dist: Distributed = SINGLE):
        self.frames, self.items, self.order, self.bs = frames, items, order, int(batch_size)
        self.dist = dist

    def __len__(self) -> int:
        return math.ceil(len(self.order) / self.bs)

    def __getitem__(self, s: int) -> Optional[tuple]:
        items = self.items[self.order[s * self.bs:(s + 1) * self.bs]]
        if self.dist.active:
            items = _share_items(items, self.dist)
            if len(items) == 0:
                return None
        return self.frames.host_batch(items)


def _share_items(items: np.ndarray, dist: Distributed) -> np.ndarray:
    """This process's share of a step's (replica, frame) pairs ``items`` (K, 2), in the
    order :meth:`TrainingFrames.host_batch` puts the sets (grouped by replica, stable)."""
    items = items[np.argsort(items[:, 0], kind="stable")]
    start, stop = dist.share(len(items))
    return items[start:stop]


def _epoch_loader(frames, items, order, config: TrainConfig, device, dist: Distributed = SINGLE):
    """Iterator over the host batches of one epoch: in order, overlapped with compute by
    ``config.loader_workers`` processes, pinned when the device is CUDA."""
    data = _EpochBatches(frames, items, order, config.batch_size, dist)
    workers = int(config.loader_workers)
    if workers == 0 and device.type != "cuda":
        return (data[s] for s in range(len(data)))
    return iter(torch.utils.data.DataLoader(
        data, batch_size=None, shuffle=False, num_workers=workers,
        pin_memory=device.type == "cuda", persistent_workers=False,
        prefetch_factor=4 if workers > 0 else None))


def _autocast(config: TrainConfig, device):
    """bf16 autocast of stage 1's forward pass when ``--amp`` (a no-op context otherwise)."""
    import contextlib

    if not config.amp:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


# ---------------------------------------------------------------------------- model
def _frame_dt(manifest: dict) -> float:
    """The frame spacing in ps; a dataset without a positive one is refused (no default)."""
    dt = manifest.get("dt_frame")
    if not isinstance(dt, (int, float)) or isinstance(dt, bool) or not math.isfinite(dt) or dt <= 0:
        raise ValueError(f"dataset manifest has no valid dt_frame (got {dt!r}); it must be the "
                         "frame spacing in ps (> 0)")
    return float(dt)


def _build_model(config: TrainConfig, frames: TrainingFrames) -> ClosureModel:
    from ..couple.guard import DEFAULT_MARGIN as OOD_MARGIN

    latent = config.latent_dim or default_latent_dim(frames.system, frames.n_species)
    if config.method == "no-closure":
        latent = 0
    # a periodic system (an ingested one says so) is translation invariant: centre by default
    center = (default_center(frames.system) or bool(frames.manifest.get("periodic"))) if config.center is None \
        else bool(config.center)
    kind = config.dynamics or default_dynamics(frames.system)
    params = dict(frames.manifest.get("params", {}))
    step = int(config.stage2_step)
    if step * int(config.stage2_horizon) > frames.n_frames - 1:
        raise ValueError(f"--stage2-step {step} x --stage2-horizon {config.stage2_horizon} frames is longer than "
                         f"the trajectories ({frames.n_frames} frames): shorten the step or the horizon")
    dt = _frame_dt(frames.manifest) * step  # the dynamics' time step, ps
    dynamics = {"kind": kind, "drift": config.drift, "hidden": list(config.dynamics_hidden)}
    if kind == "sde":
        dynamics.update({"diffusion": "floor", "sigma0_sq": float(config.sigma0_sq)} if config.sigma0_sq is not None
                        else {"diffusion": "data", "floor_fraction": float(config.diffusion_floor)})
    if config.confine:
        # the box is the guard's range; the excess relaxes in restore_steps dynamics steps
        dynamics.update({"bound": 1.0 + OOD_MARGIN, "restore_rate": 1.0 / (float(config.restore_steps) * dt)})
    from .. import __version__

    # a baseline may bring its own encoder (the objective's ``encoder_config`` hook)
    encoder = STAGE1_OBJECTIVES[config.method].encoder_config(config, frames)
    if encoder is None:
        encoder = ({"kind": "deepset", "hidden": list(config.encoder_hidden), "embed": int(config.encoder_embed)}
                   if config.encoder == "deepset" else {"kind": config.encoder})
    encoder["center"] = center
    spec = ModelConfig(
        format_version=FORMAT_VERSION,
        package_version=__version__,
        method=config.method,
        system=frames.system,
        in_features=frames.in_features,
        n_species=frames.n_species,
        species=frames.species,
        latent_dim=int(latent),
        epsilon=float(config.epsilon),
        samples=int(config.samples),
        observables=frames.observables,
        observable_params=params,
        ood_margin=OOD_MARGIN,  # the surrogate's out-of-range guard, scaled units
        dt=dt,
        encoder=encoder,
        decoder={
            "transforms": int(config.flow_transforms),
            "bins": int(config.flow_bins),
            "hidden": list(config.flow_hidden),
        },
        dynamics=dynamics,
        units=UNITS,
        # whole training set (all replicas): the metric's min-max scale and the mean curve
        # of the model-free calibration predictor, (F, M) raw units
        observable_range={"lo": frames.obs_lo.tolist(), "hi": frames.obs_hi.tolist()},
        observable_mean_curve=frames.obs_mean_curve.tolist(),
        manifest=json.loads(json.dumps(frames.manifest, default=str)),
        training=config.to_dict(),
    )
    torch.manual_seed(seed_for(config.seed, 0, 1))
    model = ClosureModel(spec)
    lo, hi = (frames.lo_centered, frames.hi_centered) if center else (frames.lo, frames.hi)
    model.encoder.coords.lo.copy_(torch.as_tensor(lo[: frames.in_features]))
    model.encoder.coords.hi.copy_(torch.as_tensor(hi[: frames.in_features]))
    return model


def _lr(base: float, step: int, total: int) -> float:
    """Cosine decay from ``base`` to ``base / 100`` over ``total`` steps."""
    if total <= 0:
        return base
    t = min(step / total, 1.0)
    return base * (0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * t)))


def _rng_state() -> dict:
    """RNG states as tensors and plain types, so ``torch.load(weights_only=True)`` reads them."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
                  "pos": int(pos), "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": {"version": int(version), "internal": torch.tensor(internal, dtype=torch.int64),
                   "gauss": gauss},
    }


def _set_rng_state(s: dict) -> None:
    torch.set_rng_state(s["torch"])
    n = s["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    p = s["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["internal"].tolist()), p["gauss"]))


def load_checkpoint(path) -> dict:
    """Read a training checkpoint as data only (``weights_only=True``: no code runs).

    Raises:
        ValueError: the file is not a plain checkpoint (e.g. it carries a pickled object,
            which is refused without being run) or is damaged.
    """
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"{path} is not a plain training checkpoint; refusing to load it "
                         f"(tensors and plain types only: {first[:200]})") from exc
    if not isinstance(ck, dict) or not {"stage", "epoch", "model", "config"} <= set(ck):
        raise ValueError(f"{path} is not a training checkpoint of openmm-closure")
    return ck


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda requested but no CUDA device is available")
    if name not in ("cpu", "cuda"):
        raise ValueError(f"--device must be auto, cpu or cuda, got {name!r}")
    return torch.device(name)


def _progress(it, enabled, **kw):
    from tqdm.auto import tqdm

    return tqdm(it, disable=(None if enabled is None else not enabled), leave=False, **kw)


# ---------------------------------------------------------------------------- stage 2 data
@torch.no_grad()
def _encode_all(model: ClosureModel, frames: TrainingFrames, replicas, device) -> dict:
    """ẑ of every frame of the given replicas: replica -> (F, d) float64 numpy."""
    out = {}
    model.eval()
    for r in replicas:
        zs = []
        for start in range(0, frames.n_frames, _ENCODE_CHUNK):
            fr = np.arange(start, min(start + _ENCODE_CHUNK, frames.n_frames))
            b = frames.batch(model, np.stack([np.full_like(fr, r), fr], 1), device)
            zs.append(model.encoder.forward_flat(b.x, b.types, b.index, b.n_sets).double().cpu().numpy())
        out[r] = np.concatenate(zs)
    return out


def _states(model: ClosureModel, frames: TrainingFrames, zhat: dict, replicas) -> dict:
    out = {}
    for r in replicas:
        zbar = np.stack([frames.obs[k][r] for k in frames.observables], axis=-1) if frames.observables \
            else np.zeros((frames.n_frames, 0))
        out[r] = np.concatenate([zbar, zhat[r]], axis=-1)
    return out


def _selection_frames(frames: TrainingFrames, config: TrainConfig) -> list:
    """The ``--select-data`` datasets, checked before any training: trajectories that only
    judge stage-2 snapshots (e.g. another particle number), never train them.

    Raises:
        FileNotFoundError: a set that does not exist.
        ValueError: a set that cannot be read, or whose species or observables differ from
            the training data's, or whose trajectories are shorter than one stage-2 step.
    """
    from .. import data as data_mod

    out = []
    step = int(config.stage2_step)
    for path in config.select_data:
        if not Path(path).exists():
            raise FileNotFoundError(f"--select-data: dataset directory {path} does not exist")
        try:
            ds = data_mod.load(path)
        except Exception as exc:
            raise ValueError(f"--select-data: cannot read dataset {path}: {exc}") from exc
        sel = TrainingFrames(ds, dataclasses.replace(config, data=str(path), val_fraction=0.0))
        if sel.observables != frames.observables or sel.species != frames.species:
            raise ValueError(f"--select-data {path}: observables {sel.observables} and species {sel.species} "
                             f"must be the training data's ({frames.observables}, {frames.species})")
        if sel.n_frames <= step:
            raise ValueError(f"--select-data {path}: {sel.n_frames} frames per trajectory, fewer than one "
                             f"stage-2 step ({step} frames) needs")
        out.append(sel)
    return out


def _check_selection_encodable(model: ClosureModel, selection: list, paths, device) -> None:
    """Encode one frame of each ``--select-data`` set before stage 1, so an encoder that
    cannot take that set (AE-Aug's ordered vector of a fixed N) fails in one line now,
    not after the whole stage 1."""
    for sel, path in zip(selection, paths):
        try:
            with torch.no_grad():
                b = sel.batch(model, np.array([[0, 0]]), device)
                model.encoder.forward_flat(b.x, b.types, b.index, b.n_sets)
        except ValueError as exc:
            raise ValueError(f"--select-data {path}: {str(exc).splitlines()[0]}") from exc


def _selection_states(model: ClosureModel, selection: list, device) -> list:
    """(R, F, D) scaled float64 states of each ``--select-data`` set, encoded with the
    trained encoder."""
    out = []
    for sel in selection:
        reps = list(range(len(sel.ds)))
        out.append(_scaled(model, _states(model, sel, _encode_all(model, sel, reps, device), reps), reps))
    return out


# ---------------------------------------------------------------------------- training
def _save_checkpoint(out: Path, stage: int, epoch: int, model, optimizer, history, config, done=False, best=None,
                     fingerprint=None, extra: Optional[dict] = None, stage2_seed: int = 0):
    save_torch_atomic(out / CHECKPOINT, {
        "data_fingerprint": fingerprint,
        "stage": stage,
        "epoch": epoch,
        "stage2_seed": int(stage2_seed),
        "done": done,
        "best": best,
        "model": model.state_dict(),
        "model_config": model.config,
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "history": history,
        "rng": _rng_state(),
        "config": config.to_dict(),
        **(extra or {}),  # under torchrun: world_size and every process's RNG state
    })


def _checkpoint(dist: Distributed, out: Path, stage: int, epoch: int, model, optimizer, history, config,
                **kw) -> None:
    """Write the checkpoint from rank 0 (with every process's RNG state) while the other
    processes wait; a plain run just writes it (see :func:`_save_checkpoint`)."""
    extra = dist.rng_states(_rng_state)  # a collective: every process takes part
    if dist.is_main:
        _save_checkpoint(out, stage, epoch, model, optimizer, history, config, extra=extra, **kw)
    dist.barrier()


def _check_resume(ck: dict, config: TrainConfig, fingerprint: Optional[str] = None) -> None:
    old_fp = ck.get("data_fingerprint")
    if fingerprint is not None and old_fp is not None and old_fp != fingerprint:
        raise ValueError(f"--resume with a different dataset: {config.data} is not the dataset "
                         f"this checkpoint was trained on (its content fingerprint differs: another dataset, "
                         f"or replicas edited since); pass the same --data")
    free = set(_RESUME_FREE)
    if ck.get("stage") == 1 and config.method != "inve":  # InvE trains its dynamics in stage 1
        free |= _STAGE2_ONLY
    old = {k: v for k, v in ck["config"].items() if k not in free}
    new = {k: v for k, v in config.to_dict().items() if k not in free}
    diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    if diff:
        raise ValueError(f"--resume with options that differ from the checkpoint's: {', '.join(diff)}")


def _open_run(config: TrainConfig, missing_ok: bool) -> Optional[dict]:
    """The one place a run is opened: the checkpoint in ``config.out`` to resume from, or
    None for a fresh run.

    Raises:
        FileExistsError: ``config.out`` holds a run and ``resume`` is off.
        FileNotFoundError: ``resume`` is on, ``config.out`` is not empty and has no
            checkpoint (unless ``missing_ok``).
        ValueError: the checkpoint is not plain data, or its options differ.
    """
    out = Path(config.out)
    path = out / CHECKPOINT
    if path.exists():
        if not config.resume:
            raise FileExistsError(f"{out} already holds a training run; pass --resume or choose another --out")
        ck = load_checkpoint(path)
        _check_resume(ck, config)
        return ck
    if not missing_ok and config.resume and out.exists() and any(p.name not in (LOCK_FILE, TRAIN_CONFIG) for p in out.iterdir()):
        raise FileNotFoundError(f"--resume: no {CHECKPOINT} in {out}")
    return None


def train(config: TrainConfig) -> Optional[ClosureModel]:
    """Run (or resume) both training stages; write the model directory ``config.out``.

    Defaults chosen from the dataset when options are None (see
    :mod:`openmm_closure.catalog`): latent dim = number of species for lj-mixing, else 2;
    dynamics = ODE for particles2d, else SDE.

    Returns:
        The trained :class:`ClosureModel`, or None when ``stop_after`` ended the run early.
    """
    from .. import data as data_mod

    config.check()
    # one run at a time in an output directory (rank 0 holds it under torchrun): two runs
    # resuming from one checkpoint would overwrite each other's files
    lock = DirectoryLock(config.out, "another train run") if os.environ.get("RANK", "0") == "0" else None
    if lock is not None:
        lock.acquire()
    try:
        ck = _open_run(config, missing_ok=False)
        if ck is None and config.resume:
            print(f"note: --resume: no {CHECKPOINT} in {config.out}; starting a fresh run", file=sys.stderr)
        if not Path(config.data).exists():
            raise FileNotFoundError(f"dataset directory {config.data} does not exist")
        try:
            ds = data_mod.load(config.data)
        except (ValueError, FileNotFoundError):
            raise
        except Exception as exc:  # unreadable dataset: one clear line
            raise ValueError(f"cannot read dataset {config.data}: {exc}") from exc
        return train_on(ds, config, checkpoint=ck)
    finally:
        if lock is not None:
            lock.release()


class _Budget:
    """``--stop-after``: counts finished epochs over both stages."""

    def __init__(self, epochs: Optional[int]):
        self.left = epochs

    def tick(self) -> bool:
        """Count one finished epoch; True when the budget says stop now."""
        if self.left is None:
            return False
        self.left -= 1
        return self.left <= 0


def _run_stage(n: int, epochs: int, start: int, lr: float, opt, steps_per_epoch: int,
               epoch_steps: Callable[[int], Callable[[int], Tensor]],
               validate: Callable[[], Optional[float]], save: Callable[[int], None],
               config: TrainConfig, history: dict, budget: _Budget, digits: int,
               stop_on_last: bool, after_epoch: Optional[Callable[[int, Optional[float]], None]] = None,
               dist: Distributed = SINGLE) -> bool:
    """The epoch loop both stages share: cosine learning rate, finite-loss check, one
    optimiser step per batch, validation, history, a checkpoint after every epoch.

    Arguments:
        n: stage number (1 or 2); ``epochs`` its epoch count; ``start`` the first epoch
            to run (resume); ``lr`` the base learning rate.
        epoch_steps: ``epoch_steps(e)`` prepares epoch ``e`` (modes, seeded order) and
            returns ``loss_of_step(s) -> ()`` tensor.
        validate: the validation loss after an epoch (None without validation data).
        save: writes the checkpoint after epoch ``e + 1`` (argument: epochs done).
        after_epoch: called with (e, val) before the checkpoint (stage 2 keeps the best).
        stop_on_last: when the budget runs out at this stage's last epoch, still stop
            (stage 1) rather than finish the stage (stage 2).
        dist: the data-parallel context; under torchrun the logged and checked loss is
            the mean over the processes of their weighted share losses (the whole
            batch's mean), identical on every process.

    Returns:
        True when the stage ran to its end, False when ``--stop-after`` stopped it.
    """
    total = steps_per_epoch * epochs
    for e in range(start, epochs):
        t0 = time.time()
        loss_of_step = epoch_steps(e)
        run_loss = 0.0
        bar = _progress(range(steps_per_epoch), config.progress, desc=f"stage {n} epoch {e + 1}/{epochs}")
        for s in bar:
            for g in opt.param_groups:
                g["lr"] = _lr(lr, e * steps_per_epoch + s, total)
            loss = loss_of_step(s)
            value = loss.item() if not dist.active else dist.sum([loss.item()])[0] / dist.world
            if not math.isfinite(value):
                raise RuntimeError(f"stage {n}: loss became {value} at epoch {e + 1}, step {s + 1}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            run_loss += (value - run_loss) / (s + 1)
            bar.set_postfix(loss=f"{run_loss:.{digits}f}")
        val = validate()
        history[f"stage{n}"].append({"epoch": e + 1, "train": run_loss, "val": val,
                                     "lr": opt.param_groups[0]["lr"], "seconds": time.time() - t0})
        _report(config, f"stage {n} epoch {e + 1}/{epochs}: train {run_loss:.{digits}f}"
                + (f"  val {val:.{digits}f}" if val is not None else ""))
        if after_epoch is not None:
            after_epoch(e, val)
        save(e + 1)
        if budget.tick() and (stop_on_last or e + 1 < epochs):
            return False
    return True


def train_on(ds, config: TrainConfig, checkpoint: Optional[dict] = None) -> Optional[ClosureModel]:
    """Like :func:`train` for an in-memory dataset (e.g. ``openmm_closure.data.ArrayDataset``).

    Under ``torchrun`` every process calls it with the same arguments; the batch sizes are
    global (see :mod:`openmm_closure.learn.distributed`) and rank 0 writes the files.
    """
    config.check()
    if len(ds) == 0:
        raise ValueError("dataset is empty (no replicas)")
    dist = from_environment(_device(config.device))
    try:
        _check_world(config, dist)
        if not dist.is_main:
            config = dataclasses.replace(config, progress=False)  # one progress report: rank 0's
        return _train_on(ds, config, checkpoint, dist)
    finally:
        dist.close()


def _check_world(config: TrainConfig, dist: Distributed) -> None:
    """Refuse global batch sizes smaller than the number of processes (a process would
    never train)."""
    p = dist.world
    stage1 = int(config.epochs_stage1) > 0 and not STAGE1_OBJECTIVES[config.method].skips_stage1
    for name, size, used in (("--batch-size", config.batch_size, stage1),
                             ("--batch-size-stage2", config.batch_size_stage2, int(config.epochs_stage2) > 0)):
        if used and int(size) < p:
            raise ValueError(f"{name} {size} is the global batch and is smaller than the {p} processes: "
                             f"raise it to at least {p} or start fewer processes")


def _check_count(dist: Distributed, count: int, what: str) -> None:
    if count < dist.world:
        raise ValueError(f"{dist.world} processes but only {count} {what} per epoch: each process needs "
                         f"at least one; start at most {max(count, 1)} processes or give more data")


def _train_on(ds, config: TrainConfig, checkpoint: Optional[dict], dist: Distributed) -> Optional[ClosureModel]:
    device = dist.device if dist.active else _device(config.device)
    if config.threads is not None:
        torch.set_num_threads(int(config.threads))
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    if checkpoint is None:
        checkpoint = _open_run(config, missing_ok=True)
    from ..data import fingerprint as data_fingerprint

    fp = data_fingerprint(ds)
    if checkpoint is not None:
        _check_resume(checkpoint, config, fp)
    if dist.is_main:
        write_train_config(config, out)
    frames = TrainingFrames(ds, config)
    if not frames.train:
        raise ValueError("no training replicas after the validation split")
    selection = _selection_frames(frames, config)  # checked now, encoded in stage 2
    model = _build_model(config, frames).to(device)
    _check_selection_encodable(model, selection, config.select_data, device)
    history = {"stage1": [], "stage2": []}
    stage, epoch = 1, 0
    opt_state = None
    best = None  # stage 2: {"epoch", "val", "dynamics"} of the lowest validation loss so far
    if checkpoint is not None:
        # a stage-1 checkpoint resumed with another SDE diffusion form lacks (or has an
        # extra) data-scale buffer, which stage 2 sets from the data anyway
        missing, unexpected = model.load_state_dict(checkpoint["model"], strict=False)
        odd = [k for k in missing + unexpected if not (k == "dynamics.data_var" and checkpoint["stage"] == 1)]
        if odd:
            raise ValueError(f"--resume: the checkpoint in {config.out} does not fit this model "
                             f"(keys {', '.join(odd[:4])}{' ...' if len(odd) > 4 else ''})")
        best = checkpoint.get("best")
        history = checkpoint["history"]
        stage, epoch = checkpoint["stage"], checkpoint["epoch"]
        opt_state = checkpoint["optimizer"]
        _set_rng_state(dist.rng_state_of(checkpoint))
        if checkpoint.get("done"):
            if dist.is_main:
                save_model(model, out, history)
            dist.barrier()
            return model.eval()
    budget = _Budget(config.stop_after)
    objective_cls = STAGE1_OBJECTIVES[config.method]

    # ------------------------------------------------------------- stage 1
    if stage == 1 and objective_cls.skips_stage1:
        stage, epoch = 2, 0  # no-closure: nothing to learn before the dynamics
    if stage == 1:
        objective: Stage1Objective = objective_cls(model, config)
        objective.bind(frames, device)  # objectives that need whole trajectories (InvE)
        opt = torch.optim.Adam(objective.parameters(), lr=config.lr)
        call1 = dist.wrap(objective.parameters())  # DDP over a loss module under torchrun
        if opt_state is not None:
            opt.load_state_dict(opt_state)
        all_items = frames.items(frames.train, config.frame_stride)
        items = frames.epoch_items(all_items, config.frames_per_trajectory, seed_for(config.seed, 1, 0, 3))
        val_items = frames.items(frames.val, config.frame_stride)
        if len(val_items) > _VAL_MAX_SETS:
            pick = np.random.default_rng(seed_for(config.seed, 1, 0, 7)).choice(
                len(val_items), _VAL_MAX_SETS, replace=False)
            val_items = val_items[np.sort(pick)]
        _check_count(dist, len(items), "stage-1 training sets")

        def stage1_epoch(e: int) -> Callable[[int], Tensor]:
            model.train()
            items = frames.epoch_items(all_items, config.frames_per_trajectory, seed_for(config.seed, 1, e, 3))
            order = np.random.default_rng(seed_for(config.seed, 1, e)).permutation(len(items))
            gen = torch.Generator().manual_seed(seed_for(config.seed, 1, e, 1))
            loader = _epoch_loader(frames, items, order, config, device, dist)

            def step(s: int) -> Tensor:
                host = next(loader)
                if not dist.active:
                    batch = to_device(model, host, device)
                    with _autocast(config, device):
                        loss = objective.loss(batch, gen)
                    return loss.float() if config.amp else loss
                size = min(config.batch_size, len(items) - s * config.batch_size)

                def share_loss() -> Optional[Tensor]:
                    # None: an empty share, only possible in the epoch's last batch (every
                    # earlier batch has >= P sets), so the generators stay in step
                    if host is None:
                        return None
                    batch = to_device(model, host, device)
                    batch.first_set, batch.total_sets = dist.share(size)[0], size
                    with _autocast(config, device):
                        loss = objective.loss(batch, gen)
                    return (loss.float() if config.amp else loss) * dist.weight(size)

                return call1(share_loss)

            return step

        done = _run_stage(
            1, config.epochs_stage1, epoch, config.lr, opt, math.ceil(len(items) / config.batch_size),
            stage1_epoch, lambda: _stage1_val(objective, model, frames, val_items, config, device, dist),
            lambda e: _checkpoint(dist, out, 1, e, model, opt, history, config, fingerprint=fp),
            config, history, budget, digits=4, stop_on_last=True, dist=dist)
        if not done:
            return None
        stage, epoch, opt_state = 2, 0, None

    # ------------------------------------------------------------- stage 2
    for p in model.encoder.parameters():
        p.requires_grad_(False)
    reps = frames.train + frames.val
    zhat = _encode_all(model, frames, reps, device)
    states = _states(model, frames, zhat, reps)
    model.state_scaler.fit(np.concatenate([states[r] for r in frames.train]))
    step, horizon = int(config.stage2_step), int(config.stage2_horizon)
    train64 = _scaled(model, states, frames.train)  # (R, F, D) float64
    val64 = _scaled(model, states, frames.val)
    train_z = train64.to(model.dtype).to(device)
    val_z = val64.to(model.dtype).to(device) if val64 is not None else None
    train_w = _windows(train_z, step, horizon)  # (N, H + 1, D)
    val_w = _windows(val_z, step, 1) if val_z is not None else None
    dt = model.dt  # the dynamics' step: stage2_step frame spacings
    if getattr(model.dynamics, "data_scaled", False):  # deterministic: the same on resume
        model.dynamics.set_data_scale(_increment_variance(train64, step, dt))
    per_replica = frames.n_frames - step * horizon
    n_items = train_w.shape[0]
    if config.frames_per_trajectory_stage2 is not None:
        n_items = len(frames.train) * min(int(config.frames_per_trajectory_stage2), per_replica)
    if int(config.epochs_stage2) > epoch:
        _check_count(dist, n_items, "stage-2 training windows")
    kind = _metric_kind(model)
    # the validation trajectories, then each --select-data set (e.g. another particle
    # number): snapshots are compared by their rollout scores pooled over the trajectories
    # (each set weighted by its trajectory count, so a handful of validation trajectories,
    # whose finite-ensemble score is large and noisy, does not outweigh a larger set)
    select_sets = ([] if val_z is None else [val_z]) + [
        s.to(model.dtype).to(device) for s in _selection_states(model, selection, device)]
    rollout_select = config.select == "rollout" and bool(select_sets)
    set_sizes = [int(z.shape[0]) for z in select_sets]
    every = int(config.select_every or max(1, int(config.epochs_stage2) // 25))
    seed_index = int(checkpoint.get("stage2_seed", 0)) if checkpoint is not None and stage == 2 else 0
    history.setdefault("stage2_select", "rollout" if rollout_select else "one-step")

    def stage2_epoch(e: int) -> Callable[[int], Tensor]:
        model.dynamics.train()
        gen = torch.Generator().manual_seed(seed_for(config.seed, 2, e, 100 * seed_index))
        order = torch.randperm(n_items, generator=gen)
        if config.frames_per_trajectory_stage2 is not None:
            pick = _stage2_pick(config, e, len(frames.train), per_replica, seed_index)
            order = order if pick is None else pick[order]
        order = order.to(device)
        bs = config.batch_size_stage2

        def loss_of(w: Tensor) -> Tensor:
            loss = model.dynamics.loss(w[:, 0], w[:, 1], dt)
            if horizon > 1 and config.stage2_horizon_weight > 0:
                loss = loss + config.stage2_horizon_weight * path_loss(model.dynamics, w, dt, gen)
            return loss

        def step_loss(s: int) -> Tensor:
            idx = order[s * bs:(s + 1) * bs]
            if not dist.active:
                return loss_of(train_w[idx])
            start, stop = dist.share(len(idx))
            mine = idx[start:stop]
            return call2(lambda: None if start == stop else loss_of(train_w[mine]) * dist.weight(len(idx)))

        return step_loss

    def stage2_val() -> Optional[float]:
        if val_w is None:
            return None
        model.dynamics.eval()
        with torch.no_grad():
            # every process computes it; rank 0's value decides, the same everywhere
            return dist.same(float(model.dynamics.loss(val_w[:, 0], val_w[:, 1], dt)))

    def keep_best(e: int, val: Optional[float]) -> None:
        nonlocal best
        entry = history["stage2"][-1]
        entry["seed"] = seed_index
        if rollout_select:
            if (e + 1) % every and e + 1 != int(config.epochs_stage2):
                return
            scored = [{**rollout_score(model, z, step, kind, int(config.select_samples)), "trajectories": n}
                      for z, n in zip(select_sets, set_sizes)]
            res = scored[0] if len(scored) == 1 else {
                # weights are trajectory counts (>= 1), so an inf score stays inf
                **{key: float(np.average([r[key] for r in scored], weights=set_sizes))
                   for key in ("score", "metric", "out")},
                "spread": scored[0].get("spread"), "sets": scored}
            score = dist.same(float(res["score"]))
            entry["rollout"] = {**res, "score": score}
            _report(config, f"stage 2 epoch {e + 1}: rollout score {score:.4g} ({kind} {res['metric']:.4g}"
                    + (f", spread {', '.join(f'{v:.2f}' for v in res['spread'])}" if res.get("spread") else "")
                    + f", out of range {res['out']:.0%})")
        else:
            score = val
        if score is not None and math.isfinite(score) and (best is None or score < best["val"]):
            best = {"epoch": e + 1, "val": score, "seed": seed_index,
                    "dynamics": {k: v.detach().cpu().clone() for k, v in model.dynamics.state_dict().items()}}

    call2 = None
    while True:
        opt = torch.optim.Adam(model.dynamics.parameters(), lr=config.lr_stage2)
        if opt_state is not None:
            opt.load_state_dict(opt_state)
            opt_state = None
        call2 = dist.wrap(list(model.dynamics.parameters()))
        done = _run_stage(
            2, config.epochs_stage2, epoch, config.lr_stage2, opt, math.ceil(n_items / config.batch_size_stage2),
            stage2_epoch, stage2_val,
            lambda e: _checkpoint(dist, out, 2, e, model, opt, history, config, best=best, fingerprint=fp,
                                  stage2_seed=seed_index),
            config, history, budget, digits=5, stop_on_last=False, after_epoch=keep_best, dist=dist)
        if not done:
            return None
        if seed_index + 1 >= int(config.stage2_seeds):
            break
        # another independent stage 2 from fresh weights (same data scale, same encoder)
        seed_index, epoch = seed_index + 1, 0
        _fresh_dynamics(model, config, seed_index)
        _checkpoint(dist, out, 2, 0, model, None, history, config, best=best, fingerprint=fp, stage2_seed=seed_index)
    if best is not None:
        # keep the best snapshot (rollout score, or the one-step validation loss)
        model.dynamics.load_state_dict(best["dynamics"])
        history["stage2_best_epoch"] = best["epoch"]
        history["stage2_best_seed"] = best.get("seed", 0)
        history["stage2_best_score"] = best["val"]
    model.eval()
    if dist.is_main:
        save_model(model, out, history)
    _checkpoint(dist, out, 2, config.epochs_stage2, model, None, history, config, done=True, best=best,
                fingerprint=fp, stage2_seed=seed_index)
    return model


def _metric_kind(model: ClosureModel) -> str:
    from ..evaluate.evaluation import metric_kind

    return metric_kind(model.spec.system or "custom", list(model.observables))


def _scaled(model: ClosureModel, states: dict, replicas) -> Optional[Tensor]:
    """(R, F, D) scaled states of the replicas, float64 (None for none)."""
    if not replicas:
        return None
    z = torch.as_tensor(np.stack([states[r] for r in replicas]), dtype=torch.float64)
    return model.state_scaler(z)


def _windows(z: Tensor, step: int, horizon: int) -> Tensor:
    """(R * (F - step * horizon), horizon + 1, D): every window of horizon + 1 states
    ``step`` frames apart, replica-major, from (R, F, D)."""
    r, f, d = z.shape
    starts = f - step * horizon
    idx = torch.arange(starts, device=z.device)[:, None] + step * torch.arange(horizon + 1, device=z.device)
    return z[:, idx].reshape(r * starts, horizon + 1, d)


def _increment_variance(z: Tensor, step: int, dt: float) -> Tensor:
    """The data's increment variance per ps of each scaled component at the training step,
    (D,): Var(z_{t+step} - z_t) / dt over every training pair (a component that never moves
    gets 1e-10 rather than 0)."""
    inc = (z[:, step:] - z[:, :-step]).reshape(-1, z.shape[-1]).double()
    return (inc.var(0) / dt).clamp_min(1e-10).cpu()


def _fresh_dynamics(model: ClosureModel, config: TrainConfig, seed_index: int) -> None:
    """Re-initialise the dynamics' weights for stage-2 seed ``seed_index`` (the data scale
    buffer is kept)."""
    from ..models.dynamics import build_dynamics

    torch.manual_seed(seed_for(config.seed, 2, seed_index, 9))
    spec = model.spec
    fresh = build_dynamics(spec.dynamics_kind, model.dim, dt=model.dt, **spec.dynamics_kwargs)
    state = fresh.state_dict()
    for name, value in model.dynamics.state_dict().items():
        if name == "data_var":
            state[name] = value
    model.dynamics.load_state_dict({k: v.to(device=model.device, dtype=model.dynamics.state_dict()[k].dtype)
                                    for k, v in state.items()})


def path_loss(dyn, w: Tensor, dt: float, gen: torch.Generator, members: int = 8) -> Tensor:
    """The multi-step objective on windows ``w`` (B, H + 1, D) of scaled states.

    ODE: the mean squared error of the unrolled path against the observed one, the error
    after j steps divided by j dt (the one-step loss's units). SDE: the energy score of
    ``members`` sampled paths (Euler–Maruyama with reparametrised noise) against the
    observed path, a proper scoring rule of the whole path's distribution, divided by
    sqrt(H dt) so that it does not grow with the horizon.

    Returns:
        () tensor.
    """
    b, h1, d = w.shape
    h = h1 - 1
    if not getattr(dyn, "stochastic", False):
        z, err = w[:, 0], w.new_zeros(())
        empty = w.new_zeros(0)
        for j in range(1, h + 1):
            z = dyn.step(z, dt, empty)
            err = err + (((z - w[:, j]) / (j * dt)) ** 2).mean()
        return err / h
    m = int(members)
    z = w[:, 0].repeat(m, 1)  # (m B, D)
    path = []
    for _ in range(h):
        noise = torch.randn(z.shape, generator=gen, dtype=torch.float64).to(device=z.device, dtype=z.dtype)
        z = dyn.step(z, dt, noise)
        path.append(z)
    x = torch.stack(path, 1).reshape(m, b, h * d)
    y = w[:, 1:].reshape(1, b, h * d)
    fit = (x - y).norm(dim=-1).mean(0)  # (B,)
    pair = (x[:, None] - x[None]).norm(dim=-1).sum((0, 1)) / (m * (m - 1))  # (B,)
    return (fit - 0.5 * pair).mean() / math.sqrt(h * dt)


def _stage2_pick(config: TrainConfig, epoch: int, replicas: int, pairs: int, seed_index: int = 0) -> Optional[Tensor]:
    """Stage 2's windows of one epoch when ``frames_per_trajectory_stage2`` is set:
    that many per replica, drawn without replacement (seeded by seed, epoch and stage-2
    seed), as (K,) int64 indices into the replica-major window list; None when it keeps all."""
    k = int(config.frames_per_trajectory_stage2)
    if k >= pairs:
        return None
    g = torch.Generator().manual_seed(seed_for(config.seed, 2, epoch, 3 + 100 * seed_index))
    chosen = torch.stack([torch.randperm(pairs, generator=g)[:k] for _ in range(replicas)])  # (R, k)
    return (chosen + pairs * torch.arange(replicas)[:, None]).reshape(-1)


@torch.no_grad()
def _stage1_val(objective, model, frames, val_items, config, device, dist: Distributed = SINGLE) -> Optional[float]:
    """Stage 1's validation loss, the mean over ``val_items`` in batches of the global
    batch size; under torchrun each process evaluates its share of every batch (with the
    whole batch's draws) and the sums are added in rank order, the same on every process."""
    if len(val_items) == 0:
        return None
    model.eval()
    gen = torch.Generator().manual_seed(seed_for(config.seed, 1, 0, 2))  # same draws every epoch
    total, count = 0.0, 0
    for s in range(0, len(val_items), config.batch_size):
        chunk = val_items[s:s + config.batch_size]
        if not dist.active:
            total += float(objective.loss(frames.batch(model, chunk, device), gen)) * len(chunk)
        else:
            mine = _share_items(chunk, dist)
            if len(mine):  # empty only in the last batch: the generator stays in step
                batch = frames.batch(model, mine, device)
                batch.first_set, batch.total_sets = dist.share(len(chunk))[0], len(chunk)
                total += float(objective.loss(batch, gen)) * len(mine)
        count += len(chunk)
    if dist.active:
        total = dist.sum([total])[0]
    return total / count


def _report(config: TrainConfig, line: str) -> None:
    if config.progress is False:
        return
    from tqdm.auto import tqdm

    tqdm.write(line, file=sys.stderr)
