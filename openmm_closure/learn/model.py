"""The trained closure model, and its directory format.

Model directory (written by ``openmm-closure train`` / :func:`save_model`)::

    MODEL_DIR/
      config.json     everything needed to rebuild the modules (see below)
      model.pt        torch state dict of ClosureModel: encoder (incl. its coordinate
                      ranges), decoder (zuko flow), dynamics, state scaler (ranges of
                      z = [z̄, ẑ]); load with torch.load(..., weights_only=True)
      history.json    per-epoch losses of both stages (train / validation, lr, seconds) and
                      stage2_best_epoch: the stage-2 epoch of the lowest validation loss,
                      whose dynamics weights are the ones saved
      checkpoint.pt   training checkpoint (resume state; not needed for inference)
      integrity.json  the sha256 of config.json and model.pt (written last; checked by
                      load_model, see openmm_closure.integrity)

``config.json`` keys: ``format_version``, ``package_version``, ``method`` (stage-1
objective, "ours"), ``system``, ``in_features`` (coordinates per particle used: 2 for 2D
systems), ``n_species``, ``species`` (names), ``latent_dim`` (d = dim ẑ), ``epsilon``
(decoder bandwidth, normalised units), ``samples`` (M), ``observables`` (names of z̄,
in order), ``observable_params`` (kwargs of :func:`openmm_closure.md.observables.compute`),
``dt`` (ps, the dynamics' time step: ``stage2_step`` frame spacings), ``ood_margin`` (the surrogate's
out-of-range guard, scaled units; see :mod:`openmm_closure.couple.guard`), ``encoder`` / ``decoder`` /
``dynamics`` (module hyperparameters; ``dynamics.kind`` is "ode" or "sde"), ``units``,
``manifest`` (the training dataset's manifest), ``training`` (the training options) and
``sha256`` (``{"model.pt": hex digest}``, checked by :func:`load_model`: an edited or
truncated ``model.pt`` is a ValueError).
``encoder.center`` (bool; absent in older models = false): each set's centroid is
subtracted before encoding. ``observable_range`` (``lo``/``hi`` of each observable over
the whole training set, every replica: the metric's min-max scale) and
``observable_mean_curve`` ((F, M) training-set mean of the observables per frame: the
model-free calibration predictor); older models lack both. ``method = "no-closure"`` has
``latent_dim = 0`` (``encoder.kind = "none"``, no decoder): dynamics on z̄ alone.

State convention: ``z = [z̄, ẑ]`` of size ``dim = len(observables) + latent_dim``; the
"scaled" state maps each component's training range to [-1, 1]
(:meth:`ClosureModel.scale` / :meth:`ClosureModel.unscale`); dynamics and rollouts live
in the scaled space.
"""

import json
import math
import warnings
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from torch import Tensor, nn

from ..fileio import atomic_write_bytes, check_hashes, sha256_file
from .model_config import FORMAT_VERSION, UNITS, ModelConfig
from ..models.decoder import FlowDecoder
from ..models.dynamics import build_dynamics
from ..models.normalization import MinMaxScaler
from ..models.registry import build_encoder
from ..species import check_species

__all__ = ["FORMAT_VERSION", "UNITS", "ModelConfig", "ClosureModel", "save_model", "load_model",
           "check_model_dir", "save_torch_atomic", "resolve_device"]

CONFIG = "config.json"
WEIGHTS = "model.pt"
HISTORY = "history.json"


def _atomic_json(path, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def save_torch_atomic(path, obj) -> None:
    """``torch.save(obj)`` to ``path`` atomically (a reader never sees a partial file)."""
    import io

    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


class ClosureModel(nn.Module):
    """Encoder, flow decoder, dynamics and state scaler of one trained model.

    Arguments:
        config: the model configuration: a :class:`~openmm_closure.learn.model_config.ModelConfig`
            or the ``config.json`` dict (see module docstring).

    Attributes:
        config: the configuration as a dict (what ``save_model`` writes to ``config.json``).
        spec: the same as a typed :class:`~openmm_closure.learn.model_config.ModelConfig`.

    Example:
        >>> model = openmm_closure.load_model("runs/particles2d")     # doctest: +SKIP
        >>> z0 = model.state(positions, types)  # (dim,) scaled  # doctest: +SKIP
        >>> traj = model.rollout(z0, steps=300, samples=16)  # (16, 301, dim)  # doctest: +SKIP
        >>> z_bar = model.unscale(traj)[..., : model.macro_dim]  # z̄ in raw units  # doctest: +SKIP
    """

    def __init__(self, config):
        super().__init__()
        if isinstance(config, ModelConfig):
            spec, self.config = config, config.to_dict()
        else:
            spec, self.config = ModelConfig.from_dict(config), dict(config)
        self.latent_dim = spec.latent_dim
        kind = spec.encoder_kind
        if self.latent_dim < 0 or (self.latent_dim == 0 and kind != "none"):
            raise ValueError(f"latent dimension must be >= 1, got {self.latent_dim}")
        self.in_features = spec.in_features
        self.n_species = spec.n_species
        self.observables = list(spec.observables)
        self.macro_dim = len(self.observables)
        self.dim = self.macro_dim + self.latent_dim
        self.dt = float(spec.dt)
        self.epsilon = float(spec.epsilon)
        self.encoder = build_encoder(
            kind, latent_dim=self.latent_dim, in_features=self.in_features,
            n_species=self.n_species, **spec.encoder_kwargs,
        )
        #: the flow p(x | ẑ); None for the no-closure model (d = 0)
        self.decoder = (FlowDecoder(self.in_features, self.latent_dim, self.n_species, **spec.decoder)
                        if self.latent_dim > 0 else None)
        self.dynamics = build_dynamics(spec.dynamics_kind, self.dim, dt=self.dt, **spec.dynamics_kwargs)
        #: ranges of z = [z̄, ẑ] (raw units) mapped to [-1, 1]
        self.state_scaler = MinMaxScaler(self.dim)

    # ------------------------------------------------------------------ helpers
    @property
    def spec(self) -> ModelConfig:
        """The configuration as a typed :class:`ModelConfig` (one fallback per key), read
        from :attr:`config` on each access, so edits of the dict show."""
        return ModelConfig.from_dict(self.config)

    @property
    def device(self) -> torch.device:
        return self.encoder._probe.device

    @property
    def dtype(self) -> torch.dtype:
        return self.encoder._probe.dtype

    @property
    def periodic(self) -> bool:
        """Whether the model was trained on a periodic dataset (``ingest`` of a periodic
        system: every frame at its periodic image); then encode with ``box=``."""
        return bool((self.config.get("manifest") or {}).get("periodic", False))

    # ------------------------------------------------------------------ encoding
    def encode(self, positions, types, box=None) -> Any:
        """Closure variables ẑ of one frame or a stack of frames.

        Arguments:
            positions: (n, 3) or (B, n, 3) positions in nm, numpy or torch, any float
                dtype (2D systems use x, y only).
            types: (n,) int species indices (or (B, n)).
            box: a periodic system's box vectors, (3, 3) or (B, 3, 3) nm (rows a, b, c;
                triclinic allowed): each particle is first put at its image nearest the
                set's periodic centre (:func:`openmm_closure.models.periodic.periodic_image`),
                so ẑ does not change when a particle is moved by a box vector. None: the
                positions as given (a non-periodic system).

        Returns:
            ẑ of shape (d,) or (B, d), *unscaled* (the encoder's raw output). A numpy
            array (float64) when ``positions`` is numpy, else a tensor on the model's
            device.
        """
        as_numpy = not isinstance(positions, Tensor)
        pos = torch.as_tensor(np.asarray(positions) if as_numpy else positions)
        if not torch.is_floating_point(pos):
            pos = pos.to(torch.float64)
        typ = types.detach().cpu().numpy() if isinstance(types, Tensor) else types
        typ = torch.from_numpy(check_species(typ, self.n_species, self.spec.species, self.spec.system))
        typ = typ.to(device=self.device)
        pos = pos.to(self.device)
        if pos.dim() not in (2, 3) or not self.in_features <= pos.shape[-1] <= 3:
            raise ValueError(
                f"positions must have shape (n, 3) or (B, n, 3) in nm, got {tuple(pos.shape)}"
            )
        if not bool(torch.isfinite(pos).all()):
            raise ValueError("positions contain NaN or inf")
        if box is not None:
            from ..models.periodic import periodic_image

            bx = torch.as_tensor(np.asarray(box.detach().cpu() if isinstance(box, Tensor) else box, dtype=np.float64))
            if bx.shape[-2:] != (3, 3) or bx.dim() > pos.dim() or not bool(torch.isfinite(bx).all()) \
                    or float(torch.linalg.det(bx.reshape(-1, 3, 3)).abs().min()) == 0.0:
                raise ValueError(f"box must be finite (3, 3) box vectors in nm (rows a, b, c), got shape "
                                 f"{tuple(bx.shape)}")
            if pos.shape[-1] < 3:
                raise ValueError("a periodic box needs positions with 3 coordinates (n, 3)")
            pos = periodic_image(pos, bx.to(self.device)).to(pos.dtype)
        batched = pos.dim() == 3
        if not batched:
            pos = pos.unsqueeze(0)
        b, n = pos.shape[0], pos.shape[1]
        if n == 0:
            raise ValueError("an empty set (0 particles) has no closure variables: pass at least one particle")
        if typ.dim() == 1:
            typ = typ.unsqueeze(0).expand(b, -1)
        if typ.shape != (b, n):
            raise ValueError(f"types of shape {tuple(typ.shape)} do not match positions {tuple(pos.shape)}")
        with torch.no_grad():
            index = torch.arange(b, device=self.device).repeat_interleave(n)
            x = self.encoder.normalize(pos.reshape(b * n, -1), index, b)
            if x.numel() and float(x.abs().max()) > 3.0:
                warnings.warn(
                    "positions lie far outside the training range of this model "
                    f"(normalised |x| up to {float(x.abs().max()):.1f}); ẑ is an extrapolation",
                    stacklevel=2,
                )
            z = self.encoder.forward_flat(x, typ.reshape(-1), index, b)
        if not batched:
            z = z[0]
        return z.double().cpu().numpy() if as_numpy else z

    def macro(self, positions, types, box=None) -> np.ndarray:
        """Macroscopic observables z̄ (raw units) of one frame (n, 3) or frames (..., n, 3).

        Arguments:
            positions: (n, 3) or (..., n, 3) nm; types: (n,) int species indices.
            box: a periodic box, (3, 3) vectors (or (3,) lengths, or (F, 3, 3) per frame)
                in nm; None: the one in the model's ``observable_params``, if any.

        Returns:
            (..., len(observables)) float64 numpy array, in the order of
            ``config["observables"]``.
        """
        from ..md import observables as obs

        pos = positions.detach().cpu().numpy() if isinstance(positions, Tensor) else np.asarray(positions)
        typ = types.detach().cpu().numpy() if isinstance(types, Tensor) else np.asarray(types)
        if not self.observables:
            return np.zeros(pos.shape[:-2] + (0,))
        params = dict(self.config.get("observable_params", {}))
        if box is not None:
            params["box"] = box
        out = obs.compute(self.observables, pos.astype(np.float64), typ, **params)
        return np.stack([np.asarray(out[k], dtype=np.float64) for k in self.observables], axis=-1)

    def state(self, positions, types) -> Tensor:
        """Scaled state z = scale([z̄, ẑ]) of one frame: (dim,) tensor (or (B, dim) for (B, n, 3))."""
        zbar = torch.as_tensor(self.macro(positions, types), dtype=torch.float64)
        zhat = torch.as_tensor(self.encode(np.asarray(
            positions.detach().cpu() if isinstance(positions, Tensor) else positions), types))
        z = torch.cat([zbar, zhat.to(torch.float64)], dim=-1)
        return self.scale(z.to(self.device))

    def scale(self, z) -> Tensor:
        """Raw [z̄, ẑ] (..., dim) -> scaled (..., dim) in the model's dtype."""
        z = torch.as_tensor(z, device=self.device)
        return self.state_scaler(z.to(torch.float64)).to(self.dtype)

    def unscale(self, z) -> Tensor:
        """Scaled state (..., dim) -> raw units [z̄, ẑ] (..., dim), float64."""
        z = torch.as_tensor(z, device=self.device)
        return self.state_scaler.inverse(z.to(torch.float64))

    def split(self, z) -> tuple:
        """Split (..., dim) into (z̄ (..., macro_dim), ẑ (..., latent_dim))."""
        return z[..., : self.macro_dim], z[..., self.macro_dim :]

    # ------------------------------------------------------------------ dynamics
    @torch.no_grad()
    def rollout(
        self,
        z0,
        steps: int,
        samples: int = 1,
        dt: Optional[float] = None,
        seed: Optional[int] = None,
        rows: Optional[tuple[int, int]] = None,
        allow_large: bool = False,
    ) -> Tensor:
        """Extrapolate the scaled state.

        Arguments:
            z0: (dim,) scaled initial state (copied to ``samples`` members) or (K, dim).
            steps: number of steps.
            samples: ensemble size K (ignored when z0 is (K, dim)).
            dt: step in ps (default: the training frame spacing ``model.dt``).
            seed: seed for the SDE noise (None: torch's global generator).
            rows: ``(start, total)``: the K members are members ``[start, start + K)`` of
                an ensemble of ``total``; the SDE noise is drawn for all ``total`` and this
                slice kept, so the members equal those of the whole ensemble's rollout
                (None: the members are the whole ensemble).
            allow_large: run a rollout over the memory bound of :mod:`openmm_closure.budget`.

        Returns:
            (K, steps + 1, dim) scaled states; ``model.unscale`` maps them to raw units.
        """
        from ..budget import check_rollout, check_seed
        if isinstance(steps, bool) or int(steps) != steps or steps < 0:
            raise ValueError(f"steps must be an integer >= 0, got {steps!r}")
        steps = int(steps)
        if isinstance(samples, bool) or int(samples) != samples or samples < 1:
            raise ValueError(f"samples must be an integer >= 1, got {samples!r}")
        if dt is not None and not (math.isfinite(float(dt)) and float(dt) > 0):
            raise ValueError(f"dt must be a finite time step > 0 ps, got {dt!r}")
        check_seed(seed)
        z0 = torch.as_tensor(z0).to(device=self.device, dtype=self.dtype)
        total = int(rows[1]) if rows is not None else (int(samples) if z0.dim() == 1 else z0.shape[0])
        check_rollout(steps, total, self.dim, allow_large)
        if z0.dim() == 1:
            z0 = z0.unsqueeze(0).expand(int(samples), -1).contiguous()
        if z0.shape[-1] != self.dim:
            raise ValueError(f"z0 has {z0.shape[-1]} components, this model's state has {self.dim}")
        dt = self.dt if dt is None else float(dt)
        from ..couple.fast_rollout import rollout_noise

        noise = rollout_noise(self, steps, z0.shape[0], seed, rows)  # None for an ODE
        return self.dynamics.rollout(z0, steps, dt, noise)

    # ------------------------------------------------------------------ decoding
    @torch.no_grad()
    def sample_positions(self, zhat, n: int, species: Optional[int] = None) -> Tensor:
        """Draw n positions (n, in_features) in nm from the decoded density p(x | ẑ, s).

        With a centring encoder (``config["encoder"]["center"]``) the density is that of
        the centred set: add the centre (e.g. the conserved centre of mass) yourself.

        Arguments:
            zhat: (d,) closure variables (unscaled, as returned by :meth:`encode`).
            n: number of points.
            species: species index (multi-species models).
        """
        if self.decoder is None:
            raise ValueError("this model has no closure variables and no decoder (method no-closure)")
        z = torch.as_tensor(zhat).to(device=self.device, dtype=self.dtype)
        sp = None if species is None else torch.tensor(int(species), device=self.device)
        x = self.decoder.sample(z, n, sp)
        return self.encoder.coords.inverse(x.to(torch.float64))


def save_model(model: ClosureModel, directory, history: Optional[dict] = None) -> Path:
    """Write ``config.json``, ``model.pt`` (and ``history.json``) atomically into ``directory``."""
    from ..integrity import RECORD

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    (d / RECORD).unlink(missing_ok=True)  # a model half-written over another never passes its check
    cfg = dict(model.config)
    cfg["format_version"] = FORMAT_VERSION
    save_torch_atomic(d / WEIGHTS, {k: v.detach().cpu() for k, v in model.state_dict().items()})
    cfg["sha256"] = {WEIGHTS: sha256_file(d / WEIGHTS)}  # checked by load_model
    if history is not None:
        _atomic_json(d / HISTORY, history)
    _atomic_json(d / CONFIG, cfg)
    from ..integrity import RECORD, seal

    # written last: every file load_model reads, config.json included
    seal(d, [CONFIG, WEIGHTS], kind="model")
    return d


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def check_model_dir(path) -> dict:
    """Validate a model directory and return its ``config.json`` dict.

    Checks the integrity record (``integrity.json``: the sha256 of ``config.json`` and
    ``model.pt``, the files :func:`load_model` reads; see :mod:`openmm_closure.integrity`), then that
    ``config.json`` parses and passes the schema check of its values
    (:func:`openmm_closure.learn.model_config.check_values`).

    Raises:
        FileNotFoundError: not a model directory, ``model.pt`` or the integrity record missing.
        ValueError: a file was edited, truncated or swapped (``config.json`` included), or
            ``config.json`` is malformed or holds a value out of range (the key is named).
    """
    from ..integrity import RECORD, check_record
    from .model_config import check_values

    d = Path(path)
    if not (d / CONFIG).is_file():
        raise FileNotFoundError(f"{d} is not a model directory: {CONFIG} is missing")
    if not (d / WEIGHTS).is_file():
        raise FileNotFoundError(f"{d} is not a complete model directory: {WEIGHTS} is missing")
    check_record(d, RECORD, kind="model", required=(CONFIG, WEIGHTS),
                 fix="train it again (or, for a model written before integrity records whose files you "
                     "trust, call openmm_closure.integrity.seal_model_dir on it)")
    try:
        with open(d / CONFIG) as f:
            cfg = json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{d / CONFIG} is not valid JSON ({exc})") from exc
    if not isinstance(cfg, dict):
        raise ValueError(f"{d / CONFIG} does not hold a JSON object")
    hashes = cfg.get("sha256")
    if hashes is not None:
        if not isinstance(hashes, dict):
            raise ValueError(f"{d / CONFIG}: 'sha256' must map file names to hashes")
        check_hashes(d, hashes, "model directory")
    try:
        check_values(cfg)
    except ValueError as exc:
        raise ValueError(f"{d / CONFIG} is malformed: {exc}") from None
    return cfg


def resolve_device(device="auto") -> torch.device:
    """The torch device a ``--device`` value names: ``"auto"`` is CUDA when torch sees
    a GPU and the CPU otherwise; anything else is passed to :class:`torch.device`.

    Raises:
        RuntimeError: ``"cuda"`` (or ``"cuda:N"``) where torch sees no GPU.

    Example:
        >>> resolve_device("cpu")
        device(type='cpu')
    """
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {str(device)!r} requested but torch sees no CUDA device; use cpu or auto")
    return dev


def load_model(path, device="cpu") -> ClosureModel:
    """Rebuild a :class:`ClosureModel` from a model directory.

    Arguments:
        path: model directory (see module docstring).
        device: torch device ("cpu", "cuda", ...), or "auto" (:func:`resolve_device`).

    Returns:
        The model in eval mode on ``device``.
    """
    d = Path(path)
    if not (d / CONFIG).is_file():
        raise FileNotFoundError(f"{d} is not a model directory: {CONFIG} is missing")
    if not (d / WEIGHTS).is_file():
        raise FileNotFoundError(f"{d} is not a complete model directory: {WEIGHTS} is missing")
    cfg = check_model_dir(d)
    fv = cfg.get("format_version", 0)
    if isinstance(fv, bool) or not isinstance(fv, int):
        raise ValueError(f"{d / CONFIG}: key 'format_version' must be an integer, got {fv!r}")
    if fv > FORMAT_VERSION:
        raise ValueError(
            f"{d} has model format {cfg.get('format_version')}, this version reads up to {FORMAT_VERSION}"
        )
    cfg = {k: v for k, v in cfg.items() if k != "sha256"}
    try:
        model = ClosureModel(cfg)  # the dict as written: model.config keeps its keys
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{d / CONFIG} is malformed ({type(exc).__name__}: {_first_line(exc)})") from exc
    try:
        state = torch.load(d / WEIGHTS, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle payloads and damaged archives alike
        raise ValueError(f"{d / WEIGHTS} is not a plain weights file ({_first_line(exc)})") from exc
    model.load_state_dict(state)
    return model.to(resolve_device(device)).eval()
