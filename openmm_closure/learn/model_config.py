"""The model configuration (``config.json`` of a model directory) as one typed object.

Training builds a :class:`ModelConfig`; :func:`openmm_closure.learn.model.load_model`, the
model itself and the exporters read it, so each key has one fallback, here, for the
``config.json`` files written before the key existed. Torch-free.

Example:
    >>> cfg = ModelConfig.from_dict({"in_features": 2, "n_species": 1, "latent_dim": 2})
    >>> cfg.encoder_kind, cfg.dynamics_kind, cfg.dt, cfg.center
    ('deepset', 'ode', 1.0, False)
    >>> ModelConfig.from_dict(cfg.to_dict()) == cfg
    True
"""

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Optional

__all__ = ["ModelConfig", "FORMAT_VERSION", "UNITS", "check_values"]

#: the model directory format this version writes (and the newest it reads)
FORMAT_VERSION = 1

#: units of a model's quantities, stored in ``config.json``
UNITS = {
    "positions": "nm",
    "time": "ps",
    "epsilon": "normalised coordinates ([-1, 1] over the training range)",
    "state": "dimensionless, each component min-max scaled to [-1, 1]",
}

_REQUIRED = ("in_features", "n_species", "latent_dim")


@dataclass
class ModelConfig:
    """Everything needed to rebuild a :class:`~openmm_closure.learn.model.ClosureModel`.

    Required keys: ``in_features`` (coordinates per particle), ``n_species``,
    ``latent_dim`` (d = dim ẑ; 0 only with ``encoder.kind = "none"``). Every other field
    has the fallback older files get (``None``: the key is absent and stays absent when
    written back). Units: ``dt`` ps (the dynamics' time step: ``stage2_step`` frame spacings), ``epsilon`` normalised coordinates.

    Attributes:
        encoder, decoder, dynamics: module hyperparameters (``encoder["kind"]`` default
            ``"deepset"``, ``dynamics["kind"]`` default ``"ode"``).
        observables: names of z̄ in order; ``observable_params`` their keyword arguments.
        observable_range: ``{"lo", "hi"}`` of each observable over the whole training set.
        observable_mean_curve: (F, M) training-set mean of the observables per frame.
        extra: keys this version does not know, kept so a round trip loses nothing.
    """

    in_features: int
    n_species: int
    latent_dim: int
    format_version: Optional[int] = None
    package_version: Optional[str] = None
    method: str = "ours"
    system: Optional[str] = None
    species: list = field(default_factory=list)
    epsilon: float = 0.01
    samples: Optional[int] = None
    observables: list = field(default_factory=list)
    observable_params: dict = field(default_factory=dict)
    ood_margin: Optional[float] = None
    dt: float = 1.0
    encoder: dict = field(default_factory=dict)
    decoder: dict = field(default_factory=dict)
    dynamics: dict = field(default_factory=lambda: {"kind": "ode"})
    units: Optional[dict] = None
    observable_range: Optional[dict] = None
    observable_mean_curve: Optional[list] = None
    manifest: Optional[dict] = None
    training: Optional[dict] = None
    extra: dict = field(default_factory=dict)
    #: fields that took their fallback in :meth:`from_dict` (left out again by :meth:`to_dict`)
    defaulted: frozenset = field(default=frozenset(), compare=False, repr=False)

    # ------------------------------------------------------------------ conversion
    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        """Read a ``config.json`` dict of any version written so far.

        Raises:
            KeyError: a required key is missing.
            TypeError, ValueError: a key has a value of the wrong kind.
        """
        if not isinstance(d, dict):
            raise TypeError(f"a model configuration is a JSON object, got {type(d).__name__}")
        missing = [k for k in _REQUIRED if k not in d]
        if missing:
            raise KeyError(", ".join(missing))
        names = {f.name for f in dataclasses.fields(cls)} - {"extra", "defaulted"}
        known = {k: copy.deepcopy(v) for k, v in d.items() if k in names and v is not None}
        extra = {k: copy.deepcopy(v) for k, v in d.items() if k not in names}
        for k in _REQUIRED:
            known[k] = int(known[k])
        for k, kind in (("encoder", dict), ("decoder", dict), ("dynamics", dict),
                        ("observable_params", dict)):
            if k in known and not isinstance(known[k], kind):
                raise TypeError(f"{k!r} must be a JSON object, got {type(known[k]).__name__}")
        if "species" in known:
            known["species"] = list(known["species"] or [])
        if "observables" in known:
            known["observables"] = list(known["observables"])
        for k in ("epsilon", "dt"):
            if k in known:
                known[k] = float(known[k])
        return cls(**known, extra=extra, defaulted=frozenset(names - set(known)))

    def to_dict(self) -> dict:
        """The ``config.json`` dict: every field that is set (a file read by :meth:`from_dict`
        gets back exactly its keys), and the unknown keys."""
        out = {}
        for f in dataclasses.fields(self):
            if f.name in ("extra", "defaulted") or f.name in self.defaulted:
                continue
            v = getattr(self, f.name)
            if v is not None:
                out[f.name] = copy.deepcopy(v)
        out.update(copy.deepcopy(self.extra))
        return out

    # ------------------------------------------------------------------ derived facts
    @property
    def encoder_kind(self) -> str:
        """Registered encoder kind (``"deepset"`` when the file does not say)."""
        return str(self.encoder.get("kind", "deepset"))

    @property
    def encoder_kwargs(self) -> dict:
        """Keyword arguments of the encoder class (``encoder`` without ``kind``)."""
        return {k: v for k, v in self.encoder.items() if k != "kind"}

    @property
    def dynamics_kind(self) -> str:
        """``"ode"`` or ``"sde"`` (``"ode"`` when the file does not say)."""
        return str(self.dynamics.get("kind", "ode"))

    @property
    def dynamics_kwargs(self) -> dict:
        """Keyword arguments of the dynamics (``dynamics`` without ``kind``)."""
        return {k: v for k, v in self.dynamics.items() if k != "kind"}

    @property
    def center(self) -> bool:
        """Whether the encoder centres each set (absent in older models: False)."""
        return bool(self.encoder.get("center", False))

    @property
    def species_names(self) -> list:
        """Species names; the indices as strings when the file has none."""
        return [str(s) for s in self.species] if self.species else [str(i) for i in range(self.n_species)]

    def get(self, key: str, default: Any = None) -> Any:
        """Dict-style read of a field or an unknown key (for code written against the dict)."""
        if key in self.extra:
            return self.extra[key]
        v = getattr(self, key, None) if key not in ("extra", "defaulted") else None
        return default if v is None else v


def _number(d: dict, key: str, what: str, lo: float, strict: bool = True) -> None:
    import math

    v = d.get(key)
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and (v > lo if strict else v >= lo)
    if not ok:
        raise ValueError(f"key {key!r} must be {what}, got {v!r}")


def check_values(d: dict) -> None:
    """Schema check of a ``config.json`` dict as a model directory holds it: the keys
    training writes are present and every value is in its range.

    Arguments:
        d: the parsed ``config.json``.

    Raises:
        ValueError: one line naming the key and its value (e.g. ``key 'dt' must be a
            finite number > 0 (ps, the dynamics' time step), got -1``).
    """
    if not isinstance(d, dict):
        raise ValueError(f"a model configuration is a JSON object, got {type(d).__name__}")
    for key in _REQUIRED + ("dt", "encoder", "dynamics", "observables"):
        if key not in d:
            raise ValueError(f"key {key!r} is missing")
    for key, lo in (("in_features", 1), ("n_species", 1), ("latent_dim", 0)):
        v = d[key]
        if isinstance(v, bool) or not isinstance(v, int) or v < lo or (key == "in_features" and v > 3):
            rng = "1, 2 or 3" if key == "in_features" else f"an integer >= {lo}"
            raise ValueError(f"key {key!r} must be {rng}, got {v!r}")
    _number(d, "dt", "a finite number > 0 (ps, the dynamics' time step)", 0.0)
    if "epsilon" in d:
        _number(d, "epsilon", "a finite number > 0 (decoder bandwidth)", 0.0)
    if "ood_margin" in d and d["ood_margin"] is not None:
        _number(d, "ood_margin", "a finite number >= 0", 0.0, strict=False)
    from ..models.dynamics import DYNAMICS

    for key, kinds in (("encoder", None), ("dynamics", DYNAMICS.names())):
        sec = d[key]
        if not isinstance(sec, dict) or not isinstance(sec.get("kind"), str):
            raise ValueError(f"key {key!r} must be a JSON object with a 'kind', got {sec!r}")
        if kinds is not None and sec["kind"] not in kinds:
            raise ValueError(f"key '{key}.kind' must be one of {', '.join(kinds)}, got {sec['kind']!r}")
    dyn = d["dynamics"]
    for key, what, lo, strict in (("sigma0_sq", "a finite number >= 0", 0.0, False),
                                  ("floor_fraction", "a fraction in (0, 1)", 0.0, True),
                                  ("bound", "a finite number > 0 (scaled units)", 0.0, True),
                                  ("restore_rate", "a finite number >= 0 per ps", 0.0, False)):
        if key in dyn:
            try:
                _number(dyn, key, what, lo, strict)
            except ValueError:
                raise ValueError(f"key 'dynamics.{key}' must be {what}, got {dyn[key]!r}") from None
    if "floor_fraction" in dyn and not dyn["floor_fraction"] < 1:
        raise ValueError(f"key 'dynamics.floor_fraction' must be a fraction in (0, 1), got {dyn['floor_fraction']!r}")
    if "diffusion" in dyn and dyn["diffusion"] not in ("data", "floor"):
        raise ValueError(f"key 'dynamics.diffusion' must be 'data' or 'floor', got {dyn['diffusion']!r}")
    if (d["latent_dim"] == 0) != (d["encoder"]["kind"] == "none"):
        raise ValueError(f"keys 'latent_dim' ({d['latent_dim']}) and 'encoder.kind' ({d['encoder']['kind']!r}) "
                         "disagree: only the no-closure model (encoder 'none') has latent_dim 0")
    obs = d["observables"]
    if not isinstance(obs, list) or not all(isinstance(o, str) for o in obs):
        raise ValueError(f"key 'observables' must be a list of names, got {obs!r}")
    species = d.get("species")
    if species is not None and species != [] and (not isinstance(species, list) or len(species) != d["n_species"]):
        raise ValueError(f"key 'species' must list {d['n_species']} names (n_species), got {species!r}")
    if "method" in d and not isinstance(d["method"], str):
        raise ValueError(f"key 'method' must be a string, got {d['method']!r}")
