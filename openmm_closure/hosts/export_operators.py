"""The operators of every export this package writes: what
:data:`openmm_closure.hosts.allowlist.ALLOWED_OPERATORS` must cover.

Scripts each kind of export in memory (nothing is read from a file) and collects the
node kinds of every method's graph. ``python -m openmm_closure.hosts.export_operators``
prints them; the test suite checks the allow-list covers them.
"""

from __future__ import annotations

from typing import Any

__all__ = ["collect_operators"]


def collect_operators() -> set[str]:
    """The operators of every kind of export this package writes (scripted in memory):
    what :data:`ALLOWED_OPERATORS` must cover.

    Returns:
        The set of node kinds over every registered encoder kind (centred or not, one or
        two species, 2D and 3D), ODE and SDE dynamics with each drift and diffusion form,
        confined or not, the collective variable (periodic or not), the closure and observable CVs (with and
        without an atom subset and the periodic box) and the PLUMED / Colvars host module.
    """
    import warnings

    import torch

    from .export import ClosureBias, ExportedDynamics, ExportedEncoder, PeriodicClosureBias
    from ..models.dynamics import build_dynamics
    from ..models.normalization import MinMaxScaler
    from ..models.registry import ENCODERS, build_encoder
    from . import plumed
    from .allowlist import script_operators
    from .cv import DIFFERENTIABLE_OBSERVABLES, ClosureCV, ObservableCV

    ops: set[str] = set()

    def add(mod: Any) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                scripted = torch.jit.script(mod.eval())
            except Exception:  # an encoder TorchScript cannot compile is never exported
                return
            ops.update(script_operators(scripted))

    for kind in sorted(ENCODERS):
        if kind == "none":
            continue
        for center in (False, True):
            for n_species in (1, 2):
                for in_features in (2, 3):
                    kw = dict(latent_dim=2, in_features=in_features, n_species=n_species, center=center)
                    if kind == "flat-mlp":
                        kw["n_particles"] = 4
                    enc = build_encoder(kind, **kw)
                    types = torch.arange(4) % n_species
                    add(ExportedEncoder(enc))
                    add(ClosureBias(enc, 0, 1.0, 0.0, None if n_species == 1 else types.numpy()))
                    add(ClosureBias(enc, 0, 1.0, 0.0, types.numpy(), atom_subset=[0, 1, 2, 3]))
                    if center:  # export --periodic: the bias takes the box
                        add(PeriodicClosureBias(enc, 0, 1.0, 0.0, types.numpy(), atom_subset=[0, 1, 2, 3]))
                    add(plumed.PlumedClosure(enc, None if n_species == 1 else types))  # PLUMED, Colvars
                    for subset, periodic in ((None, False), ([0, 1, 2, 3], True)):
                        add(ClosureCV(enc, 0, None if n_species == 1 else types, subset,
                                      periodic and center))
    for name in DIFFERENTIABLE_OBSERVABLES:
        for subset, periodic in ((None, False), ([0, 1, 2], True)):
            add(ObservableCV(name, atom_subset=subset, periodic=periodic))
    for dyn_kind in ("ode", "sde"):
        for drift in ("mlp", "onsager"):
            for extra in ({}, {"diffusion": "data", "bound": 1.25, "restore_rate": 2.0}):
                if dyn_kind == "ode":
                    extra = {k: v for k, v in extra.items() if k != "diffusion"}
                dyn = build_dynamics(dyn_kind, 3, hidden=(8,), drift=drift, dt=0.1, **extra)
                add(ExportedDynamics(dyn, MinMaxScaler(3), ["a", "b", "c"], 1, 0.1))
    return ops


if __name__ == "__main__":  # print them (to refresh ALLOWED_OPERATORS)
    print(" ".join(sorted(collect_operators())))
