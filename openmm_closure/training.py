"""Two-stage training of the closure model, and the ``openmm-closure train`` command.

Stage 1 trains the encoder φ̂ and the flow decoder p(x | ẑ) with a swappable objective
(:data:`STAGE1_OBJECTIVES`; "ours" is the Gaussian-mixture density objective of SPEC §2).
Stage 2 freezes the encoder, encodes every frame once, fits the state scaler on
z = [z̄, ẑ] of the training replicas, and trains the ODE/SDE dynamics on consecutive
frame pairs.

Reproducibility: the data order and the Monte Carlo draws of every epoch come from
generators seeded by (seed, stage, epoch), and a checkpoint (model, optimizer, history,
RNG states) is written atomically after every epoch, so ``--resume`` after a kill gives
the same weights as an uninterrupted run. The validation split is by replica.

Example:
    $ openmm-closure train --data runs/mixing --out models/mixing --epochs 20
    >>> from openmm_closure.training import TrainConfig, train
    >>> model = train(TrainConfig(data="runs/mixing", out="models/mixing"))  # doctest: +SKIP
"""

import dataclasses
import json
import math
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from torch import Tensor

from .model_io import FORMAT_VERSION, UNITS, ClosureModel, _atomic_torch, save_model
from .models.baselines import OBJECTIVES as BASELINE_OBJECTIVES
from .models.decoder import density_nll

__all__ = [
    "TrainConfig",
    "SetBatch",
    "DensityObjective",
    "NoClosure",
    "STAGE1_OBJECTIVES",
    "train",
]

CHECKPOINT = "checkpoint.pt"
_IN_FEATURES = {"particles2d": 2, "lj-mixing": 2, "polymer": 3}
_VAL_MAX_SETS = 512
_ENCODE_CHUNK = 64


@dataclass
class TrainConfig:
    """All options of a training run (the CLI flags map one to one).

    Units: ``epsilon`` in normalised coordinates; learning rates per step.
    ``None`` means "choose from the dataset" (see :func:`train`).
    """

    data: str
    out: str
    method: str = "ours"
    latent_dim: Optional[int] = None
    epsilon: float = 0.01
    samples: int = 600
    dynamics: Optional[str] = None
    drift: str = "mlp"
    sigma0_sq: float = 0.01
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
        if self.dynamics not in (None, "ode", "sde"):
            raise ValueError(f"--dynamics must be 'ode' or 'sde', got {self.dynamics!r}")
        if self.method not in STAGE1_OBJECTIVES:
            raise ValueError(f"--method {self.method!r} unknown; choose from {sorted(STAGE1_OBJECTIVES)}")
        for name in ("epochs_stage1", "epochs_stage2"):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 0")
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
        if isinstance(self.loader_workers, bool) or int(self.loader_workers) != self.loader_workers \
                or int(self.loader_workers) < 0:
            raise ValueError(f"--loader-workers must be >= 0, got {self.loader_workers!r}")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        for k, v in d.items():
            if isinstance(v, tuple):
                d[k] = list(v)
        return d


# the options that may differ between a killed run and its resumption
_RESUME_FREE = {"resume", "stop_after", "progress", "device", "threads", "data", "out", "loader_workers"}


@dataclass
class SetBatch:
    """A batch of sets as one flat concatenation.

    Attributes:
        x: (N, D) normalised coordinates.
        types: (N,) int64 species indices.
        index: (N,) int64 set index of each element, in [0, n_sets).
        n_sets: number of sets B.
    """

    x: Tensor
    types: Tensor
    index: Tensor
    n_sets: int


class DensityObjective:
    """Stage-1 objective of the method ("ours"): KL(q_X || p(·|ẑ)) by M MC samples.

    A stage-1 objective is any class with this interface, registered in
    :data:`STAGE1_OBJECTIVES` under its ``--method`` name:

    - ``__init__(model, config)``;
    - ``parameters()`` -> the trainable parameters of stage 1;
    - ``loss(batch, generator)`` -> () scalar for a :class:`SetBatch`.
    """

    def __init__(self, model: ClosureModel, config: TrainConfig):
        self.model = model
        self.epsilon = float(config.epsilon)
        self.samples = int(config.samples)

    def parameters(self):
        return list(self.model.encoder.parameters()) + list(self.model.decoder.parameters())

    def loss(self, batch: SetBatch, generator: torch.Generator) -> Tensor:
        z = self.model.encoder.forward_flat(batch.x, batch.types, batch.index, batch.n_sets)
        return density_nll(self.model.decoder, z, batch.x, batch.types, batch.index,
                           self.samples, self.epsilon, generator)


class NoClosure:
    """``--method no-closure``: no closure variables and no stage 1.

    The model's encoder outputs nothing (``encoder.kind = "none"``, d = 0) and stage 2
    trains the same dynamics, with the same budget and the same best-validation
    selection, on the observables z̄ alone. This is the calibration row a closure must
    beat.
    """

    skips_stage1 = True

    @staticmethod
    def encoder_config(config, frames) -> dict:
        return {"kind": "none"}


#: ``--method`` name -> stage-1 objective class (the baselines: :mod:`.models.baselines`)
STAGE1_OBJECTIVES: dict[str, Callable] = {"ours": DensityObjective, **BASELINE_OBJECTIVES,
                                          "no-closure": NoClosure}


# ---------------------------------------------------------------------------- data
def _seed_for(seed: int, stage: int, epoch: int, salt: int = 0) -> int:
    return int(np.random.SeedSequence([int(seed), stage, epoch, salt]).generate_state(1)[0])


class _Frames:
    """Access to the frames of a dataset, with checks and the replica split."""

    def __init__(self, ds, config: TrainConfig):
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
        rng = np.random.default_rng(_seed_for(config.seed, 0, 0))
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
        self.in_features = int(self.manifest.get("spatial_dim", _IN_FEATURES.get(system, 0)))
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
        return np.asarray(self.ds.positions[replica, frames], dtype=np.float32)

    def items(self, replicas, stride: int = 1) -> np.ndarray:
        """(K, 2) array of (replica, frame) pairs."""
        frames = np.arange(0, self.n_frames, stride)
        return np.array([(r, f) for r in replicas for f in frames], dtype=np.int64).reshape(-1, 2)

    def batch(self, model: ClosureModel, items: np.ndarray, device) -> SetBatch:
        return _to_device(model, self.host_batch(items), device)

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


def _to_device(model: ClosureModel, host: tuple, device) -> SetBatch:
    x, types, index, k = host
    nb = x.is_pinned()
    index = index.to(device, non_blocking=nb)
    return SetBatch(
        x=model.encoder.normalize(x.to(device, non_blocking=nb), index, k),  # centring needs the set index
        types=types.to(device, non_blocking=nb),
        index=index,
        n_sets=k,
    )


class _EpochBatches(torch.utils.data.Dataset):
    """Batch ``s`` of an epoch, assembled on the host (in DataLoader workers when asked).

    Its content depends only on (items, order, batch size), never on the worker count, so
    ``--loader-workers`` changes speed, not results."""

    def __init__(self, frames: "_Frames", items: np.ndarray, order: np.ndarray, batch_size: int):
        self.frames, self.items, self.order, self.bs = frames, items, order, int(batch_size)

    def __len__(self) -> int:
        return math.ceil(len(self.order) / self.bs)

    def __getitem__(self, s: int) -> tuple:
        return self.frames.host_batch(self.items[self.order[s * self.bs:(s + 1) * self.bs]])


def _epoch_loader(frames, items, order, config: TrainConfig, device):
    """Iterator over the host batches of one epoch: in order, overlapped with compute by
    ``config.loader_workers`` processes, pinned when the device is CUDA."""
    data = _EpochBatches(frames, items, order, config.batch_size)
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
def _default_latent(system: str, n_species: int) -> int:
    return n_species if system == "lj-mixing" else 2


def _default_dynamics(system: str) -> str:
    return "ode" if system == "particles2d" else "sde"


def _frame_dt(manifest: dict) -> float:
    """The frame spacing in ps; a dataset without a positive one is refused (no default)."""
    dt = manifest.get("dt_frame")
    if not isinstance(dt, (int, float)) or isinstance(dt, bool) or not math.isfinite(dt) or dt <= 0:
        raise ValueError(f"dataset manifest has no valid dt_frame (got {dt!r}); it must be the "
                         "frame spacing in ps (> 0)")
    return float(dt)


#: systems whose physics is translation invariant (encoder ``center`` on by default):
#: particles2d (pair forces only) and the polymer (the flow is taken about the chain's
#: centre); not lj-mixing, whose walls fix where the particles are
_TRANSLATION_INVARIANT = {"particles2d", "polymer"}


def _default_center(system: str) -> bool:
    return system in _TRANSLATION_INVARIANT


def _build_model(config: TrainConfig, frames: _Frames) -> ClosureModel:
    from .guard import DEFAULT_MARGIN as OOD_MARGIN

    latent = config.latent_dim or _default_latent(frames.system, frames.n_species)
    if config.method == "no-closure":
        latent = 0
    center = _default_center(frames.system) if config.center is None else bool(config.center)
    kind = config.dynamics or _default_dynamics(frames.system)
    params = dict(frames.manifest.get("params", {}))
    from . import __version__

    model_config = {
        "format_version": FORMAT_VERSION,
        "package_version": __version__,
        "method": config.method,
        "system": frames.system,
        "in_features": frames.in_features,
        "n_species": frames.n_species,
        "species": frames.species,
        "latent_dim": int(latent),
        "epsilon": float(config.epsilon),
        "samples": int(config.samples),
        "observables": frames.observables,
        "observable_params": params,
        "ood_margin": OOD_MARGIN,  # the surrogate's out-of-range guard, scaled units
        "dt": _frame_dt(frames.manifest),
        "encoder": (
            {"kind": "deepset", "hidden": list(config.encoder_hidden), "embed": int(config.encoder_embed)}
            if config.encoder == "deepset" else {"kind": config.encoder}
        ),
        "decoder": {
            "transforms": int(config.flow_transforms),
            "bins": int(config.flow_bins),
            "hidden": list(config.flow_hidden),
        },
        "dynamics": {
            "kind": kind,
            "drift": config.drift,
            "hidden": list(config.dynamics_hidden),
            **({"sigma0_sq": float(config.sigma0_sq)} if kind == "sde" else {}),
        },
        "units": UNITS,
        # whole training set (all replicas): the metric's min-max scale and the mean curve
        # of the model-free calibration predictor, (F, M) raw units
        "observable_range": {"lo": frames.obs_lo.tolist(), "hi": frames.obs_hi.tolist()},
        "observable_mean_curve": frames.obs_mean_curve.tolist(),
        "manifest": json.loads(json.dumps(frames.manifest, default=str)),
        "training": config.to_dict(),
    }
    # a baseline may bring its own encoder (optional ``encoder_config`` hook of the objective)
    encoder_hook = getattr(STAGE1_OBJECTIVES[config.method], "encoder_config", None)
    if encoder_hook is not None:
        model_config["encoder"] = encoder_hook(config, frames)
    model_config["encoder"]["center"] = center
    torch.manual_seed(_seed_for(config.seed, 0, 1))
    model = ClosureModel(model_config)
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
def _encode_all(model: ClosureModel, frames: _Frames, replicas, device) -> dict:
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


def _states(model: ClosureModel, frames: _Frames, zhat: dict, replicas) -> dict:
    out = {}
    for r in replicas:
        zbar = np.stack([frames.obs[k][r] for k in frames.observables], axis=-1) if frames.observables \
            else np.zeros((frames.n_frames, 0))
        out[r] = np.concatenate([zbar, zhat[r]], axis=-1)
    return out


def _pairs(model: ClosureModel, states: dict, replicas, device):
    if not replicas:
        return None
    z = torch.as_tensor(np.stack([states[r] for r in replicas]), dtype=torch.float64)
    zs = model.state_scaler(z).to(model.dtype).to(device)  # (R, F, D)
    return zs[:, :-1].reshape(-1, zs.shape[-1]), zs[:, 1:].reshape(-1, zs.shape[-1])


# ---------------------------------------------------------------------------- training
def _save_checkpoint(out: Path, stage: int, epoch: int, model, optimizer, history, config, done=False, best=None,
                     fingerprint=None):
    _atomic_torch(out / CHECKPOINT, {
        "data_fingerprint": fingerprint,
        "stage": stage,
        "epoch": epoch,
        "done": done,
        "best": best,
        "model": model.state_dict(),
        "model_config": model.config,
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "history": history,
        "rng": _rng_state(),
        "config": config.to_dict(),
    })


def _check_resume(ck: dict, config: TrainConfig, fingerprint: Optional[str] = None) -> None:
    old_fp = ck.get("data_fingerprint")
    if fingerprint is not None and old_fp is not None and old_fp != fingerprint:
        raise ValueError(f"--resume with a different dataset: {config.data} is not the dataset "
                         f"this checkpoint was trained on (its fingerprint differs); pass the same --data")
    old = {k: v for k, v in ck["config"].items() if k not in _RESUME_FREE}
    new = {k: v for k, v in config.to_dict().items() if k not in _RESUME_FREE}
    diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    if diff:
        raise ValueError(f"--resume with options that differ from the checkpoint's: {', '.join(diff)}")


def train(config: TrainConfig) -> Optional[ClosureModel]:
    """Run (or resume) both training stages; write the model directory ``config.out``.

    Defaults chosen from the dataset when options are None: latent dim = number of
    species for lj-mixing, else 2; dynamics = ODE for particles2d, else SDE.

    Returns:
        The trained :class:`ClosureModel`, or None when ``stop_after`` ended the run early.
    """
    from . import data as data_mod

    config.check()
    out = Path(config.out)
    ck_path = out / CHECKPOINT
    ck = None
    if ck_path.exists():
        if not config.resume:
            raise FileExistsError(f"{out} already holds a training run; pass --resume or choose another --out")
        ck = load_checkpoint(ck_path)
        _check_resume(ck, config)
    elif config.resume and out.exists() and any(out.iterdir()):
        raise FileNotFoundError(f"--resume: no {CHECKPOINT} in {out}")
    if not Path(config.data).exists():
        raise FileNotFoundError(f"dataset directory {config.data} does not exist")
    try:
        ds = data_mod.load(config.data)
    except (ValueError, FileNotFoundError):
        raise
    except Exception as exc:  # unreadable dataset: one clear line
        raise ValueError(f"cannot read dataset {config.data}: {exc}") from exc
    return train_on(ds, config, checkpoint=ck)


def train_on(ds, config: TrainConfig, checkpoint: Optional[dict] = None) -> Optional[ClosureModel]:
    """Like :func:`train` for an in-memory dataset (e.g. ``openmm_closure.data.ArrayDataset``)."""
    config.check()
    if len(ds) == 0:
        raise ValueError("dataset is empty (no replicas)")
    device = _device(config.device)
    if config.threads is not None:
        torch.set_num_threads(int(config.threads))
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    if checkpoint is None and (out / CHECKPOINT).exists():
        if not config.resume:
            raise FileExistsError(f"{out} already holds a training run; pass --resume or choose another --out")
        checkpoint = load_checkpoint(out / CHECKPOINT)
        _check_resume(checkpoint, config)
    from .data import fingerprint as data_fingerprint

    fp = data_fingerprint(ds)
    if checkpoint is not None:
        _check_resume(checkpoint, config, fp)
    frames = _Frames(ds, config)
    if not frames.train:
        raise ValueError("no training replicas after the validation split")
    model = _build_model(config, frames).to(device)
    history = {"stage1": [], "stage2": []}
    stage, epoch = 1, 0
    opt_state = None
    best = None  # stage 2: {"epoch", "val", "dynamics"} of the lowest validation loss so far
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
        best = checkpoint.get("best")
        history = checkpoint["history"]
        stage, epoch = checkpoint["stage"], checkpoint["epoch"]
        opt_state = checkpoint["optimizer"]
        _set_rng_state(checkpoint["rng"])
        if checkpoint.get("done"):
            save_model(model, out, history)
            return model.eval()
    budget = [config.stop_after]

    def tick() -> bool:
        """Count one finished epoch; True when --stop-after says stop now."""
        if budget[0] is None:
            return False
        budget[0] -= 1
        return budget[0] <= 0

    # ------------------------------------------------------------- stage 1
    if stage == 1 and getattr(STAGE1_OBJECTIVES[config.method], "skips_stage1", False):
        stage, epoch = 2, 0  # no-closure: nothing to learn before the dynamics
    if stage == 1:
        objective = STAGE1_OBJECTIVES[config.method](model, config)
        if hasattr(objective, "bind"):  # objectives that need whole trajectories (InvE)
            objective.bind(frames, device)
        opt = torch.optim.Adam(objective.parameters(), lr=config.lr)
        if opt_state is not None:
            opt.load_state_dict(opt_state)
        all_items = frames.items(frames.train, config.frame_stride)
        items = frames.epoch_items(all_items, config.frames_per_trajectory, _seed_for(config.seed, 1, 0, 3))
        val_items = frames.items(frames.val, config.frame_stride)
        if len(val_items) > _VAL_MAX_SETS:
            pick = np.random.default_rng(_seed_for(config.seed, 1, 0, 7)).choice(
                len(val_items), _VAL_MAX_SETS, replace=False)
            val_items = val_items[np.sort(pick)]
        steps_per_epoch = math.ceil(len(items) / config.batch_size)
        total = steps_per_epoch * config.epochs_stage1
        for e in range(epoch, config.epochs_stage1):
            t0 = time.time()
            model.train()
            items = frames.epoch_items(all_items, config.frames_per_trajectory, _seed_for(config.seed, 1, e, 3))
            order = np.random.default_rng(_seed_for(config.seed, 1, e)).permutation(len(items))
            gen = torch.Generator().manual_seed(_seed_for(config.seed, 1, e, 1))
            run_loss = 0.0
            bar = _progress(range(steps_per_epoch), config.progress,
                            desc=f"stage 1 epoch {e + 1}/{config.epochs_stage1}")
            loader = _epoch_loader(frames, items, order, config, device)
            for s in bar:
                for g in opt.param_groups:
                    g["lr"] = _lr(config.lr, e * steps_per_epoch + s, total)
                batch = _to_device(model, next(loader), device)
                with _autocast(config, device):
                    loss = objective.loss(batch, gen)
                if config.amp:
                    loss = loss.float()
                if not torch.isfinite(loss):
                    raise RuntimeError(f"stage 1: loss became {loss.item()} at epoch {e + 1}, step {s + 1}")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                run_loss += (loss.item() - run_loss) / (s + 1)
                bar.set_postfix(loss=f"{run_loss:.4f}")
            val = _stage1_val(objective, model, frames, val_items, config, device)
            history["stage1"].append({"epoch": e + 1, "train": run_loss, "val": val,
                                      "lr": opt.param_groups[0]["lr"], "seconds": time.time() - t0})
            _report(config, f"stage 1 epoch {e + 1}/{config.epochs_stage1}: train {run_loss:.4f}"
                    + (f"  val {val:.4f}" if val is not None else ""))
            _save_checkpoint(out, 1, e + 1, model, opt, history, config, fingerprint=fp)
            if tick():
                return None
        stage, epoch, opt_state = 2, 0, None

    # ------------------------------------------------------------- stage 2
    for p in model.encoder.parameters():
        p.requires_grad_(False)
    reps = frames.train + frames.val
    zhat = _encode_all(model, frames, reps, device)
    states = _states(model, frames, zhat, reps)
    model.state_scaler.fit(np.concatenate([states[r] for r in frames.train]))
    train_pairs = _pairs(model, states, frames.train, device)
    val_pairs = _pairs(model, states, frames.val, device)
    dt = model.dt
    opt = torch.optim.Adam(model.dynamics.parameters(), lr=config.lr_stage2)
    if opt_state is not None:
        opt.load_state_dict(opt_state)
    n_pairs = train_pairs[0].shape[0]
    if config.frames_per_trajectory_stage2 is not None:
        n_pairs = len(frames.train) * min(int(config.frames_per_trajectory_stage2), frames.n_frames - 1)
    steps_per_epoch = math.ceil(n_pairs / config.batch_size_stage2)
    total = steps_per_epoch * config.epochs_stage2
    for e in range(epoch, config.epochs_stage2):
        t0 = time.time()
        model.dynamics.train()
        gen = torch.Generator().manual_seed(_seed_for(config.seed, 2, e))
        order = torch.randperm(n_pairs, generator=gen)
        if config.frames_per_trajectory_stage2 is not None:
            pick = _stage2_pick(config, e, len(frames.train), frames.n_frames - 1)
            order = order if pick is None else pick[order]
        order = order.to(device)
        run_loss = 0.0
        bar = _progress(range(steps_per_epoch), config.progress,
                        desc=f"stage 2 epoch {e + 1}/{config.epochs_stage2}")
        for s in bar:
            for g in opt.param_groups:
                g["lr"] = _lr(config.lr_stage2, e * steps_per_epoch + s, total)
            idx = order[s * config.batch_size_stage2:(s + 1) * config.batch_size_stage2]
            loss = model.dynamics.loss(train_pairs[0][idx], train_pairs[1][idx], dt)
            if not torch.isfinite(loss):
                raise RuntimeError(f"stage 2: loss became {loss.item()} at epoch {e + 1}, step {s + 1}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            run_loss += (loss.item() - run_loss) / (s + 1)
            bar.set_postfix(loss=f"{run_loss:.5f}")
        val = None
        if val_pairs is not None:
            model.dynamics.eval()
            with torch.no_grad():
                val = float(model.dynamics.loss(val_pairs[0], val_pairs[1], dt))
        history["stage2"].append({"epoch": e + 1, "train": run_loss, "val": val,
                                  "lr": opt.param_groups[0]["lr"], "seconds": time.time() - t0})
        _report(config, f"stage 2 epoch {e + 1}/{config.epochs_stage2}: train {run_loss:.5f}"
                + (f"  val {val:.5f}" if val is not None else ""))
        if val is not None and math.isfinite(val) and (best is None or val < best["val"]):
            best = {"epoch": e + 1, "val": val,
                    "dynamics": {k: v.detach().cpu().clone() for k, v in model.dynamics.state_dict().items()}}
        _save_checkpoint(out, 2, e + 1, model, opt, history, config, best=best, fingerprint=fp)
        if tick() and e + 1 < config.epochs_stage2:
            return None
    if best is not None:
        # keep the dynamics of the epoch with the lowest validation loss (all methods alike)
        model.dynamics.load_state_dict(best["dynamics"])
        history["stage2_best_epoch"] = best["epoch"]
    model.eval()
    save_model(model, out, history)
    _save_checkpoint(out, 2, config.epochs_stage2, model, None, history, config, done=True, best=best,
                     fingerprint=fp)
    return model


def _stage2_pick(config: TrainConfig, epoch: int, replicas: int, pairs: int) -> Optional[Tensor]:
    """Stage 2's frame pairs of one epoch when ``frames_per_trajectory_stage2`` is set:
    that many pairs per replica, drawn without replacement (seeded by seed and epoch),
    as (K,) int64 indices into the replica-major pair list; None when it keeps all."""
    k = int(config.frames_per_trajectory_stage2)
    if k >= pairs:
        return None
    g = torch.Generator().manual_seed(_seed_for(config.seed, 2, epoch, 3))
    chosen = torch.stack([torch.randperm(pairs, generator=g)[:k] for _ in range(replicas)])  # (R, k)
    return (chosen + pairs * torch.arange(replicas)[:, None]).reshape(-1)


@torch.no_grad()
def _stage1_val(objective, model, frames, val_items, config, device) -> Optional[float]:
    if len(val_items) == 0:
        return None
    model.eval()
    gen = torch.Generator().manual_seed(_seed_for(config.seed, 1, 0, 2))  # same draws every epoch
    total, count = 0.0, 0
    for s in range(0, len(val_items), config.batch_size):
        chunk = val_items[s:s + config.batch_size]
        total += float(objective.loss(frames.batch(model, chunk, device), gen)) * len(chunk)
        count += len(chunk)
    return total / count


def _report(config: TrainConfig, line: str) -> None:
    if config.progress is False:
        return
    from tqdm.auto import tqdm

    tqdm.write(line, file=sys.stderr)
