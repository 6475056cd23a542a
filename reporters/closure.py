"""ClosureReporter: the closure variables ẑ of a running simulation, from an exported encoder.

Every ``reportInterval`` steps the reporter feeds the current positions to the model's
TorchScript encoder (the same ``encoder.pt`` a C++ host loads) and writes one row: step,
time (ps), every observable z̄ the model was trained with, and ẑ.

Example:
    >>> from openmm_closure.reporters import ClosureReporter
    >>> sim.reporters.append(ClosureReporter("closure.csv", 100, "exported/p2d/encoder.pt"))  # doctest: +SKIP
    >>> sim.step(10_000)                                                                       # doctest: +SKIP

torch is imported when the reporter is created, not when this module is imported.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from openmm_closure.species import check_species, latent_names

from openmm_closure.md.observables import param_names

from .base import ObservableReporter

__all__ = ["ClosureReporter", "load_encoder", "match_species"]


def load_encoder(model: Any, device: str = "cpu") -> tuple[Any, dict]:
    """The scripted encoder and its metadata, from an exported file or a model.

    Arguments:
        model: path of an exported ``encoder.pt`` (or ``collective_variable.pt``), a
            model directory (``openmm-closure train``; exported in memory), or a
            :class:`~openmm_closure.learn.model.ClosureModel`.
        device: torch device of the returned module.

    Returns:
        ``(module, metadata)``: a TorchScript module ``forward(positions (n, 3) nm,
        types (n,) int64) -> (d,)`` (for a collective variable: ``collective_variable
        (positions) -> ()``) and the metadata dict of the export (see
        :mod:`openmm_closure.hosts.export`).

    Raises:
        ValueError: a path that is neither an exported model file nor a model directory, or
            an exported file that fails its checks (its sha256 against the export index
            ``export.json``, its operators against
            :data:`openmm_closure.hosts.allowlist.ALLOWED_OPERATORS`).
    """
    from openmm_closure.learn.model import ClosureModel, load_model

    if isinstance(model, ClosureModel):
        return _script_encoder(model, Path(str(model.config.get("system", "model"))), device)
    path = Path(os.fspath(model))
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ValueError(
                f"{path} is neither an exported encoder (.pt) nor a model directory (no config.json): "
                "pass encoder.pt from `openmm-closure export` or a directory from `openmm-closure train`"
            )
        return _script_encoder(load_model(path, device="cpu"), path, device)
    if not path.is_file():
        raise ValueError(f"{path} does not exist: pass an exported encoder.pt or a model directory")
    from openmm_closure.hosts.export import load_exported

    try:  # a TorchScript file is a program: its hash against the export index, its operators
        module, meta = load_exported(path, map_location=device)  # against the allow-list
    except (OSError, ValueError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()
        raise ValueError(
            f"ClosureReporter: cannot use {path} as an exported encoder: {first[0] if first else type(exc).__name__}"
        ) from None
    if not meta or meta.get("kind") not in ("encoder", "collective_variable"):
        raise ValueError(
            f"{path} is not an exported encoder (metadata kind {None if not meta else meta.get('kind')!r}): "
            "pass encoder.pt from `openmm-closure export`"
        )
    return module, meta


def _script_encoder(model: Any, source: Path, device: str) -> tuple[Any, dict]:
    import warnings

    import torch

    from openmm_closure.hosts.export import ExportedEncoder, _common_metadata

    meta = {**_common_metadata(model, source), "kind": "encoder"}
    module = ExportedEncoder(model.encoder).eval()
    for p in module.parameters():
        p.requires_grad_(False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        scripted = torch.jit.script(module)
    return scripted.to(device), meta


def match_species(atom_names: Sequence[str], species: Sequence[str]) -> np.ndarray:
    """Species index (n,) int64 of every atom, by name, in the order of the model's ``species``.

    A model without species names (one species, or names "0", "1", ...) takes every atom
    as species 0 when it has one species.

    Raises:
        ValueError: atom names the model does not know, or a species of the model that the
            topology lacks (each naming the fix: pass ``types=``).
    """
    species = [str(s) for s in species]
    names = [str(a) for a in atom_names]
    unnamed = species == [str(i) for i in range(len(species))]
    if len(species) <= 1 and (unnamed or not species):
        return np.zeros(len(names), dtype=np.int64)
    if unnamed:
        raise ValueError(
            f"this model knows {len(species)} species without names: pass types= (species index of every atom)"
        )
    index = {s: i for i, s in enumerate(species)}
    unknown = sorted(set(names) - set(index))
    if unknown:
        raise ValueError(
            f"atom names {unknown} are not species of this model {species}: rename the atoms or pass types="
        )
    missing = [s for s in species if s not in set(names)]
    if missing:
        raise ValueError(
            f"the model's species {missing} are missing from the topology (atom names {sorted(set(names))}): "
            "simulate a system with every species of the model, or pass types= explicitly"
        )
    return np.array([index[s] for s in names], dtype=np.int64)


class ClosureReporter(ObservableReporter):
    """Report z̄ and the closure variables ẑ of any ``openmm.app.Simulation``.

    Arguments:
        file: output path; ``.csv`` (header ``step,time_ps,<observables>,zhat_0,...``) or
            ``.h5``/``.hdf5`` (a table ``/closure`` with the same columns). A writable text
            file object is accepted as CSV.
        reportInterval: steps between reports (positive int).
        model: a model directory (the safe default: weights only; the export is made in
            memory), a ClosureModel, or an exported ``encoder.pt`` in its export directory
            (a TorchScript program: loaded only when its sha256 matches ``export.json`` and
            every operator is one our exports use, see
            :mod:`openmm_closure.hosts.allowlist`).
        types: (n,) int species index per atom in the model's order; default: the
            topology's atom names matched to the model's species names.
        observables: names of z̄ to report (default: the model's observables; ``()`` for none).
        overwrite: replace an existing ``file`` (default: refuse with FileExistsError).
        append: continue an existing ``file`` after a restart (same columns; a missing
            file is started), as OpenMM's reporters do.
        atomSubset: indices of the atoms the model encodes (default: all), e.g. the solute
            of a solvated system; the other atoms' names need not be species of the model.

    Raises:
        ValueError: bad interval or file name, or a path that is neither an exported
            encoder nor a model directory (in ``__init__``); at the first report, species
            that do not match, or a particle count a species-baked export cannot take; at
            any report, non-finite coordinates or ẑ.
    """

    def __init__(
        self,
        file: str | os.PathLike | Any,
        reportInterval: int,
        model: Any,
        types: Sequence[int] | np.ndarray | None = None,
        observables: Sequence[str] | None = None,
        overwrite: bool = False,
        append: bool = False,
        atomSubset: Sequence[int] | np.ndarray | None = None,
    ) -> None:
        if hasattr(file, "write"):
            fmt = "csv"
        else:
            ext = os.path.splitext(os.fspath(file))[1].lower()
            if ext not in (".csv", ".h5", ".hdf5"):
                raise ValueError(f"ClosureReporter: file must end in .csv, .h5 or .hdf5, got {file!r}")
            fmt = "csv" if ext == ".csv" else "h5"
        self._module, self._meta = load_encoder(model, device="cpu")
        obs = list(self._meta.get("observables", [])) if observables is None else list(observables)
        # the model records its dataset's builder parameters; the observables take a few of them
        known = param_names(obs)
        params = {k: v for k, v in (self._meta.get("observable_params") or {}).items() if k in known}
        super().__init__(file, reportInterval, obs, types, params, overwrite, append, atomSubset)
        self._format = fmt
        self._kind = self._meta.get("kind", "encoder")
        if self._kind == "collective_variable":
            self._zhat_names = [f"zhat_{int(self._meta.get('component', 0))}"]
        else:
            self._zhat_names = latent_names(int(self._meta["latent_dim"]))
        self._device = "cpu"
        self._out = None
        self._own = False

    @property
    def metadata(self) -> dict:
        """The export metadata of the encoder (system, species, observables, ...)."""
        return dict(self._meta)

    @property
    def columns(self) -> tuple[str, ...]:
        """Column names of the output: step, time_ps, observables, ẑ."""
        return ("step", "time_ps") + tuple(self._observables) + tuple(self._zhat_names)

    def _setup(self, simulation) -> None:
        import torch

        atoms = self._atoms(simulation)
        n = len(atoms)
        if self._types is None:
            self._types = match_species([a.name for a in atoms], self._meta.get("species") or [])
        elif len(self._types) != n:
            raise ValueError(f"types has {len(self._types)} entries but the "
                             f"{'atom subset' if self._subset is not None else 'topology'} has {n} atoms")
        self._types = check_species(self._types, int(self._meta.get("n_species", 1)),
                                    self._meta.get("species"), self._meta.get("system"))
        baked = self._meta.get("n_particles")
        if self._kind == "collective_variable" and baked is not None and int(baked) != n:
            raise ValueError(
                f"this collective variable was exported with the species of {baked} particles; the simulation "
                f"has {n}: export it again with --types for this system, or use encoder.pt"
            )
        self._periodic = bool(simulation.system.usesPeriodicBoundaryConditions())
        if simulation.context.getPlatform().getName() == "CUDA" and torch.cuda.is_available():
            self._device = "cuda"
            self._module = self._module.to("cuda")
        self._types_t = torch.as_tensor(self._types, dtype=torch.long, device=self._device)
        self._open_rows(self.columns, "closure", attrs={"species": list(self._meta.get("species") or []),
                                                        "system": str(self._meta.get("system"))})
        self._ready = True

    def zhat(self, positions: np.ndarray, box: np.ndarray | None = None) -> np.ndarray:
        """ẑ (d,) float64 of positions (n, 3) in nm with the reporter's species; ``box``
        (3, 3) nm: a periodic system's box, passed to an encoder trained on a periodic
        dataset (ẑ then does not change when a particle moves by a box vector)."""
        import torch

        with torch.no_grad():
            x = torch.as_tensor(positions, dtype=torch.float64, device=self._device)
            if self._kind == "collective_variable":
                z = self._module.collective_variable(x).reshape(1)
            elif box is not None and self._meta.get("periodic"):
                b = torch.as_tensor(np.asarray(box), dtype=torch.float64, device=self._device)
                z = self._module(x, self._types_t, b)
            else:
                z = self._module(x, self._types_t)
        return z.detach().double().cpu().numpy()

    def report(self, simulation, state) -> None:
        """Encode the positions of ``state`` and append one row."""
        from openmm import unit

        x, values = self._begin_report(simulation, state)
        z = self.zhat(x, self._box(state))
        if not np.all(np.isfinite(z)):
            raise ValueError(f"ClosureReporter: the encoder returned non-finite ẑ at step {simulation.currentStep}")
        t = float(state.getTime().value_in_unit(unit.picosecond))
        row = [t] + [values[k] for k in self._observables] + [float(v) for v in z]
        self._write_row("closure", simulation.currentStep, row)

    def close(self) -> None:
        """Close the output file (idempotent; a file object passed in is left open)."""
        if self._closed:
            return
        self._closed = True
        if self._out is not None and self._own:
            self._out.close()
