"""Write and validate the host profiles of one export (``export --host/--format``).

:data:`HOSTS` is the registry of export hosts: ``--host NAME`` calls its
:class:`HostProfile`'s ``write``; other packages add hosts under the entry-point group
``openmm_closure.hosts``.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, List, Optional, Sequence

import torch

from . import gromacs, plumed, pt2
from ..registry import Registry
from .common import baked_types, probe_positions

__all__ = ["HostProfile", "HOSTS", "FORMATS", "HOST_FILES", "host_files", "REFUSED_HOSTS", "write_hosts",
           "check_host_options"]


@dataclass(frozen=True)
class HostProfile:
    """One export host.

    Attributes:
        write: ``write(model, out, meta, *, types, n, probe, types_probe, component,
            force_constant, target) -> [written paths]``: writes the host's files into the
            export directory ``out`` and checks each by calling it the way the host does
            (``types``: (n,) baked species or None; ``probe``: (n, 3) nm positions).
        files: every file name it may write (a re-export removes the ones it did not write).
    """

    write: Callable[..., List[Path]]
    files: tuple[str, ...]


def _check_host(name: str, record: Any) -> None:
    if not isinstance(record, HostProfile):
        raise ValueError(f"host {name!r}: register a hosts.profiles.HostProfile, got {type(record).__name__}")


#: ``--host`` choices (TorchForce is always written: ``collective_variable.pt``)
HOSTS = Registry("export host", group="openmm_closure.hosts", check=_check_host)
#: ``--format`` choices (TorchScript is always written: every other part reads it)
FORMATS = Registry("export format", group=None)
FORMATS.register("torchscript", "TorchScript .pt (always written)")
FORMATS.register("pt2", "AOTInductor .pt2 (hosts/pt2.py)")
#: ``--host`` values that are refused, with the one-line reason
REFUSED_HOSTS = {"gromacs-nnpot": gromacs.NNPOT_REFUSAL}


def check_host_options(model, hosts: Sequence[str], formats: Sequence[str], types: Optional[Any]):
    """Validate the options before anything is written.

    Returns:
        (n,) int64 baked species or None.

    Raises:
        ValueError: an unknown host or format, a multi-species model without types for a
            host that passes no species, or no C++ compiler for ``pt2``.
    """
    for h in hosts:
        if h in REFUSED_HOSTS:
            raise ValueError(REFUSED_HOSTS[h])
        if h not in HOSTS:
            raise ValueError(f"unknown --host {h!r}; choose from {', '.join(HOSTS.names())}")
    for f in formats:
        if f not in FORMATS:
            raise ValueError(f"unknown --format {f!r}; choose from {', '.join(FORMATS.names())}")
    t = None
    for h in hosts:
        t = baked_types(model.encoder, types, h)
    if types is not None and t is None:
        t = baked_types(model.encoder, types, "pt2")
    if "pt2" in formats:
        pt2.find_compiler()
    return t


def _trained_count(model, fallback: int) -> int:
    """The particle count of the model's training replicas (the first one's), else ``fallback``."""
    counts = ((model.config.get("manifest") or {}).get("n_particles") or [])
    try:
        return int(counts[0]) if counts and int(counts[0]) > 0 else fallback
    except (TypeError, ValueError):
        return fallback


def write_hosts(model, out: Path, meta: dict, *, hosts: Sequence[str] = (), formats: Sequence[str] = (),
                component: int = 0, force_constant: float = 1.0, target: float = 0.0,
                types: Optional[Any] = None, rollout_steps: int = 10) -> List[Path]:
    """Write the asked host profiles into ``out``; each is loaded back and called the way
    its host calls it, and compared with the eager model (ẑ, energies and forces to 1e-5
    relative to max(1, |value|), float32).

    Arguments:
        model: the loaded ClosureModel (CPU).
        out: the export directory.
        meta: the common metadata of this export (:func:`openmm_closure.hosts.export._common_metadata`).
        hosts: subset of :data:`HOSTS`.
        formats: subset of :data:`FORMATS`.
        component, force_constant, target: the harmonic bias (GROMACS' Colvars config, pt2).
        types: (n,) species of every particle (required for a multi-species model).
        rollout_steps: steps baked into the ``.pt2`` rollout.

    Returns:
        The written files (each ``X.pt``/``X.pt2`` has its ``X.json`` beside it).
    """
    t = check_host_options(model, hosts, formats, types)
    n = int(t.numel()) if t is not None else 16
    probe = probe_positions(meta, n)
    t_probe = t if t is not None else torch.zeros(n, dtype=torch.long)
    written: List[Path] = []
    for h in hosts:
        written += HOSTS[h].write(model, out, meta, types=t, n=n, probe=probe, types_probe=t_probe,
                                  component=component, force_constant=force_constant, target=target)
    if "pt2" in formats:
        written += pt2.export_pt2(model, out, meta, component=component, force_constant=force_constant,
                                  target=target, types=t, steps=rollout_steps, probe=probe)
    return written


_UNITS = {"positions": "nm", "energy": "kJ/mol", "zhat": "dimensionless (raw encoder output)"}


def _write_plumed(model, out: Path, meta: dict, *, types, n, probe, types_probe, component, force_constant,
                  target) -> List[Path]:
    """PLUMED ``PYTORCH_MODEL`` (src/pytorch/PytorchModel.cpp) and its input fragment."""
    from ..fileio import atomic_write_bytes
    from .scripting import save_script

    t = types
    path = out / plumed.FILE
    save_script(plumed.PlumedClosure(model.encoder, t), path,
                {**meta, "kind": "plumed", "host": "PLUMED PYTORCH_MODEL (src/pytorch/PytorchModel.cpp)",
                 "n_particles": None if t is None else n, "outputs": [f"node-{j}" for j in range(model.latent_dim)],
                 "input": "(1, 3n) float32: x, y, z of each listed atom in nm", "host_units": _UNITS})
    plumed.validate_plumed(path, model.encoder, probe, types_probe)
    listed = n if t is not None else _trained_count(model, n)
    atomic_write_bytes(out / plumed.FRAGMENT, plumed.plumed_input(
        listed, model.latent_dim, plumed.FILE, force_constant=force_constant, target=target,
        any_n=t is None).encode())
    return [path, out / plumed.FRAGMENT]


def _write_gromacs(model, out: Path, meta: dict, *, types, n, probe, types_probe, component, force_constant,
                   target) -> List[Path]:
    """GROMACS through Colvars torchANN: the PLUMED module's calling convention."""
    from ..fileio import atomic_write_bytes
    from .scripting import save_script

    t = types
    path = out / gromacs.FILE
    save_script(plumed.PlumedClosure(model.encoder, t), path,
                {**meta, "kind": "gromacs-colvars",
                 "host": "GROMACS Colvars torchANN (src/external/colvars/colvarcomp_torchann.cpp)",
                 "n_particles": None if t is None else n,
                 "outputs": [f"m_output_index {j}" for j in range(model.latent_dim)],
                 "input": "(1, 3n) float32 (float64 with doubleInputTensor): x, y, z of each atom in nm",
                 "host_units": _UNITS})
    gromacs.validate_colvars(path, model.encoder, probe, types_probe)
    names = meta["names"][model.macro_dim:]
    atomic_write_bytes(out / gromacs.CONFIG, gromacs.colvars_config(
        n, model.latent_dim, names, gromacs.FILE, component=component, force_constant=force_constant,
        target=target).encode())
    atomic_write_bytes(out / gromacs.MDP, gromacs.mdp_lines(gromacs.CONFIG).encode())
    return [path, out / gromacs.CONFIG, out / gromacs.MDP]


HOSTS.register("plumed", HostProfile(_write_plumed, (plumed.FILE, plumed.FILE.replace(".pt", ".json"),
                                                     plumed.FRAGMENT)))
HOSTS.register("gromacs", HostProfile(_write_gromacs, (gromacs.FILE, gromacs.FILE.replace(".pt", ".json"),
                                                       gromacs.CONFIG, gromacs.MDP)))


def host_files() -> tuple[str, ...]:
    """Every file a host profile may write: the registered hosts' (a plugin's once it is
    loaded), the former NNPot profile's and the .pt2 files."""
    files = [f for name in HOSTS.names() if name in HOSTS._entries for f in HOSTS[name].files]
    return tuple(dict.fromkeys(files + ["nnpot_model.pt", "nnpot_model.json", "nnpot_model.mdp",
                                        *pt2.FILES.values(), *(f.replace(".pt2", ".json") for f in pt2.FILES.values())]))


#: every file the built-in host profiles may write (a re-export removes the ones it does not
#: write; :func:`host_files` adds the files of hosts registered since)
HOST_FILES = host_files()
