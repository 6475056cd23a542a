"""Per-system facts in one place: observables, model defaults and the paper's metric.

Torch-free and OpenMM-free, so the physics side, the trainer, the evaluation and the
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

from dataclasses import dataclass
from typing import Optional

__all__ = [
    "SystemFacts",
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


#: the built-in systems. particles2d: pair forces only (translation invariant, energy
#: MRE, deterministic ODE); lj-mixing: walls fix where the particles are (no centring),
#: one closure variable per species, mixing MMD; polymer: the flow is taken about the
#: chain's centre (centring on), extension metric
CATALOG: dict[str, SystemFacts] = {
    "particles2d": SystemFacts("particles2d", ("energy",), 2, 2, "ode", True, "mre", "energy MRE"),
    "lj-mixing": SystemFacts("lj-mixing", ("R_AB", "R_BA"), 2, None, "sde", False, "mmd", "mixing MMD"),
    "polymer": SystemFacts("polymer", ("extension",), 3, 2, "sde", True, "extension", "extension mean |Δ|"),
}

#: names of the built-in systems
SYSTEMS: tuple[str, ...] = tuple(CATALOG)

#: coordinates per particle of each built-in system
IN_FEATURES: dict[str, int] = {k: v.in_features for k, v in CATALOG.items() if v.in_features}

_CUSTOM = SystemFacts("custom")


def facts(system: Optional[str]) -> SystemFacts:
    """The facts of ``system``; a system not in :data:`CATALOG` gets the generic ones
    (no default observables, d = 2, SDE, no centring, MRE)."""
    return CATALOG.get(str(system), _CUSTOM) if system is not None else _CUSTOM


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
