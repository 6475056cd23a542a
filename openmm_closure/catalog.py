"""Per-system facts in one place: the system registry, observables, model defaults and
the paper's metric.

Every system is one :class:`SystemRecord` in :data:`SYSTEM_REGISTRY` (builder, batched
builder, regimes, facts, cheap test parameters); :data:`CATALOG`, :data:`SYSTEMS`,
``systems.SYSTEMS`` and ``simulate.REGIMES`` are views of it. Torch-free and OpenMM-free, so the physics side, the trainer, the evaluation and the
benchmarks read the same table. A dataset of a system not listed here ("custom") gets
the generic fallbacks of :func:`facts`.

Example:
    >>> facts("lj-mixing").observables
    ('R_AB', 'R_BA')
    >>> default_latent_dim("lj-mixing", n_species=2), default_dynamics("particles2d")
    (2, 'ode')
    >>> facts("my-system").metric
    'mre'
"""

import importlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Optional, Union

from .registry import Registry

__all__ = [
    "SystemFacts",
    "SystemRecord",
    "SYSTEM_REGISTRY",
    "CATALOG",
    "SYSTEMS",
    "IN_FEATURES",
    "facts",
    "default_latent_dim",
    "default_dynamics",
    "default_center",
]


@dataclass(frozen=True)
class SystemFacts:
    """What the package knows about one built-in system.

    Attributes:
        name: the system's name (``systems.build(name)``, the manifest's ``system``).
        observables: default macroscopic observables z̄, in order.
        in_features: coordinates used per particle (2 for 2D systems); None: infer from data.
        latent_dim: default closure dimension d; None: one per species.
        dynamics: default dynamics kind, ``"ode"`` or ``"sde"``.
        center: encoder centring default (True where the physics is translation invariant).
        metric: the paper's metric, ``"mre"``, ``"mmd"`` or ``"extension"``.
        metric_label: how a table names that row (e.g. "energy MRE").
    """

    name: str
    observables: tuple[str, ...] = ()
    in_features: Optional[int] = None
    latent_dim: Optional[int] = 2
    dynamics: str = "sde"
    center: bool = False
    metric: str = "mre"
    metric_label: str = "MRE"


@dataclass(frozen=True)
class SystemRecord:
    """Everything the package knows about one system: the registry's record.

    Attributes:
        facts: the :class:`SystemFacts` (``facts.name`` is the system's name).
        builder: ``builder(*, n_particles, regime, seed, **params) -> SimulationSpec``, or
            its ``"module:attribute"`` path (imported on first use, so this module stays
            OpenMM-free).
        regimes: the ``--regime`` names the builder accepts, the default first.
        batched: ``batched(specs, method) -> BatchedSystem`` packing replicas into one
            Context (or its path); None: ``simulate --batch`` runs the replicas one by one.
        test_params: builder parameters of a cheap run (a few particles and frames) for tests.
    """

    facts: SystemFacts
    builder: Union[Callable[..., Any], str]
    regimes: tuple[str, ...] = ("in-dst",)
    batched: Union[Callable[..., Any], str, None] = None
    test_params: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.facts.name

    def build_fn(self) -> Callable[..., Any]:
        """The builder itself (a path is imported now)."""
        return _resolve(self.builder)

    def batched_fn(self) -> Optional[Callable[..., Any]]:
        """The batched builder itself, or None."""
        return None if self.batched is None else _resolve(self.batched)


def _resolve(target: Union[Callable[..., Any], str]) -> Callable[..., Any]:
    if callable(target):
        return target
    module, _, attr = str(target).partition(":")
    return getattr(importlib.import_module(module), attr)


def _check_record(name: str, record: Any) -> None:
    if not isinstance(record, SystemRecord):
        raise ValueError(f"system {name!r}: a registered system is a catalog.SystemRecord, got {type(record).__name__}")
    if record.name != name:
        raise ValueError(f"system {name!r}: its facts are named {record.name!r}")
    if not record.regimes:
        raise ValueError(f"system {name!r}: name at least one regime")


#: name -> :class:`SystemRecord`; other packages add systems under the entry-point group
#: ``openmm_closure.systems`` (the entry point names a SystemRecord)
SYSTEM_REGISTRY = Registry("system", group="openmm_closure.systems", check=_check_record)

_P = "openmm_closure.systems."
#: the built-in systems. particles2d: pair forces only (translation invariant, energy
#: MRE, deterministic ODE); lj-mixing: walls fix where the particles are (no centring),
#: one closure variable per species, mixing MMD; polymer: the flow is taken about the
#: chain's centre (centring on), extension metric
for _record in (
    SystemRecord(SystemFacts("particles2d", ("energy",), 2, 2, "ode", True, "mre", "energy MRE"),
                 _P + "particles2d:build_particles2d", ("in-dst", "diff-init", "diff-N"),
                 _P + "batch:build_batch", {"n_particles": 12, "steps": 20, "report_interval": 2}),
    SystemRecord(SystemFacts("lj-mixing", ("R_AB", "R_BA"), 2, None, "sde", False, "mmd", "mixing MMD"),
                 _P + "lj_mixing:build_lj_mixing", ("in-dst", "diff-init", "diff-N"),
                 _P + "batch:build_batch", {"n_particles": 64, "steps": 20, "report_interval": 2, "relax_steps": 0}),
    SystemRecord(SystemFacts("polymer", ("extension",), 3, 2, "sde", True, "extension", "extension mean |Δ|"),
                 _P + "polymer:build_polymer", ("in-dst", "slow", "medium", "fast"),
                 _P + "batch:build_batch", {"n_particles": 8, "steps": 20, "n_frames": 11,
                                             "equilibration_steps": 0}),
):
    SYSTEM_REGISTRY.register(_record.name, _record)


def _ALL(value: Any) -> bool:
    return True


class _View(Mapping):
    """A read-only mapping of the system registry (plugins included): name -> field."""

    def __init__(self, value: Callable[[SystemRecord], Any], keep: Optional[Callable[[Any], bool]] = None):
        self._value, self._keep = value, _ALL if keep is None else keep

    def __getitem__(self, name: str) -> Any:
        v = self._value(SYSTEM_REGISTRY[name])
        if not self._keep(v):
            raise KeyError(name)
        return v

    def __iter__(self) -> Iterator[str]:
        if self._keep is _ALL:  # the names alone: nothing is loaded
            return iter(SYSTEM_REGISTRY.names())
        return (n for n in SYSTEM_REGISTRY.names() if self._keep(self._value(SYSTEM_REGISTRY[n])))

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __repr__(self) -> str:
        return repr(dict(self))


class _Names(Sequence):
    """The registry's system names as a live tuple-like sequence."""

    def __getitem__(self, i):  # type: ignore[override]
        return SYSTEM_REGISTRY.names()[i]

    def __len__(self) -> int:
        return len(SYSTEM_REGISTRY.names())

    def __eq__(self, other: object) -> bool:
        return tuple(self) == (tuple(other) if isinstance(other, (tuple, list, Sequence)) else other)

    def __repr__(self) -> str:
        return repr(SYSTEM_REGISTRY.names())


#: system name -> :class:`SystemFacts` (a view of :data:`SYSTEM_REGISTRY`)
CATALOG: Mapping[str, SystemFacts] = _View(lambda r: r.facts)

#: names of the registered systems (a live view)
SYSTEMS: Sequence[str] = _Names()

#: coordinates per particle of each registered system that states it
IN_FEATURES: Mapping[str, int] = _View(lambda r: r.facts.in_features, lambda v: bool(v))

_CUSTOM = SystemFacts("custom")


def facts(system: Optional[str]) -> SystemFacts:
    """The facts of ``system``; a system not in :data:`CATALOG` gets the generic ones
    (no default observables, d = 2, SDE, no centring, MRE)."""
    if system is None or str(system) not in SYSTEM_REGISTRY:
        return _CUSTOM
    return SYSTEM_REGISTRY[str(system)].facts


def default_latent_dim(system: Optional[str], n_species: int) -> int:
    """Default closure dimension d: the system's, or one per species where it says so."""
    d = facts(system).latent_dim
    return int(n_species) if d is None else int(d)


def default_dynamics(system: Optional[str]) -> str:
    """Default dynamics kind (``"ode"`` or ``"sde"``) of a system."""
    return facts(system).dynamics


def default_center(system: Optional[str]) -> bool:
    """Whether the encoder centres each set by default (translation-invariant physics)."""
    return facts(system).center
