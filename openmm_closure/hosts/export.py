r"""Export a trained model to TorchScript for C++ hosts and OpenMM (the library side of
``openmm-closure export``).

Export directory (written by :func:`export_model`)::

    EXPORT_DIR/
      encoder.pt                 TorchScript encoder, see ExportedEncoder
      encoder.json               its metadata (also inside encoder.pt)
      dynamics.pt                TorchScript dynamics + state scaler, see ExportedDynamics
      dynamics.json              its metadata (also inside dynamics.pt)
      collective_variable.pt     TorchScript bias for openmm-torch's TorchForce, see ClosureBias
      collective_variable.json   its metadata (also inside collective_variable.pt)
      closure_cv_<c>.pt          with --cv: TorchForce whose energy is ẑ_c, see hosts/cv.py
      closure_cv_<c>.json        its metadata (also inside closure_cv_<c>.pt)
      export.json                index: sha256 of every file above that this export wrote
                                 (written last; checked by load_exported / check_export_dir)

An export is written into a staging directory beside ``EXPORT_DIR``, indexed, and swapped
in whole: a failed export leaves the previous one intact, and a re-export leaves none of
the previous export's files (files no export wrote are the user's and stay). Loading a
``.pt`` from a path checks it against the index and the operator allow-list
(:func:`load_exported`).
Host profiles (``--host plumed``, ``--host gromacs``, ``--format pt2``) add their files
to the same directory and index: see :mod:`openmm_closure.hosts`.

Every ``.pt`` file carries its metadata as ``metadata.json`` in ``_extra_files``
(``torch.jit.load(path, _extra_files={"metadata.json": ""})`` in Python,
``torch::jit::ExtraFilesMap`` in C++). The metadata keys: ``format_version`` (export
format, :data:`EXPORT_FORMAT_VERSION`), ``model_format_version``, ``package_version``,
``kind`` ("encoder" | "dynamics" | "collective_variable"), ``system``, ``species``,
``n_species``, ``in_features``, ``latent_dim`` (d), ``observables`` (names of z̄),
``observable_params`` (their parameters, as in the model's config),
``names`` (names of the state components ``[z̄, ẑ]``), ``macro_dim``, ``dim``,
``epsilon``, ``dt`` (ps), ``coordinate_range`` (``lo``/``hi`` in nm mapped to [-1, 1]
before the encoder; ``centered_per_set``: each set's centroid is subtracted first, inside
the exported module, so ẑ is translation invariant), ``state_range`` (``lo``/``hi`` of ``[z̄, ẑ]`` in raw units mapped to
[-1, 1]), ``dynamics`` (the dynamics hyperparameters, ``kind`` "ode"/"sde"), ``units``,
``dtype`` of the weights, ``versions`` (``torch``, ``libtorch_cxx11_abi``, ``openmm``,
``openmm_closure``, ``python`` of the exporting environment), ``inputs`` / ``outputs`` (the
call the file expects: name, shape, dtype, units of each argument), ``records_sha256``
(digest of the file's TorchScript records; see :mod:`openmm_closure.provenance` and
``openmm-closure info``), and for the collective variable ``component``,
``force_constant``, ``target``, ``n_particles``, ``atom_subset``, ``global_parameters``
(the defaults of ``closure_k`` and ``closure_target``) and
``uses_periodic_boundary_conditions`` (the file takes the box).

Module entry points:

- ``encoder.pt``: ``forward(positions (n, 3) nm any float dtype, types (n,) int64, box
  (3, 3) nm or None) -> (d,)``, the raw ẑ exactly as :meth:`ClosureModel.encode` returns
  it (weights dtype); with a periodic system's box, ẑ does not change when a particle is
  moved by a box vector.
- ``dynamics.pt``: on the *scaled* state z (..., D), D = ``dim``:
  ``forward(z)`` = ``drift(z)`` (per ps), ``diffusion(z)`` (per sqrt(ps); zeros for an
  ODE), ``step(z, dt, noise)`` (one RK4 / Euler–Maruyama step; ``noise`` (..., D)
  standard normal, ignored by an ODE), ``rollout(z0 (K, D), steps, dt, noise (steps, K,
  D) or None) -> (K, steps + 1, D)``, ``scale(raw)`` / ``unscale(z)`` between raw
  ``[z̄, ẑ]`` and scaled states; attributes ``dt``, ``dim``, ``macro_dim``,
  ``latent_dim``, ``stochastic``, ``names``. Outputs have the dtype of the input.
- ``collective_variable.pt``: ``forward(positions (n, 3) nm, closure_k, closure_target)
  -> ()`` energy in kJ/mol, the harmonic bias ``0.5 k (ẑ_c - target)²`` on closure
  component c. ``closure_k`` (kJ/mol) and ``closure_target`` are openmm-torch global
  parameters (() tensors; omitted, the export's ``force_constant`` and ``target`` are
  used): :func:`openmm_closure.couple.torchforce.closure_torch_force` adds them to a
  ``TorchForce`` with those defaults, and ``context.setParameter("closure_target", v)``
  moves an umbrella window or a steered target without re-exporting. With the species
  of every particle baked in (TorchForce passes only positions). A one-species model
  accepts any n; a multi-species model needs ``types`` at export and then accepts that
  n only. Attributes ``component``, ``force_constant`` (kJ/mol), ``target``; the
  method ``collective_variable(positions)`` returns ẑ_c itself.
  Exported with ``periodic=True`` (``export --periodic``; models that centre each set):
  ``forward(positions, box (3, 3) nm, closure_k, closure_target)``, the order in which
  openmm-torch calls a ``TorchForce`` with ``setUsesPeriodicBoundaryConditions(True)``
  (``closure_torch_force`` turns it on from the metadata key
  ``uses_periodic_boundary_conditions``); the particles seen are put at their images
  nearest the set's periodic centre before encoding, as ``encoder.pt`` does with a box, so
  the energy does not change when a particle moves by a box vector
  (:class:`PeriodicClosureBias`; ``collective_variable(positions, box)``).

Example:
    >>> from openmm_closure.hosts.export import export_model
    >>> export_model("models/p2d", "exported/p2d")                      # doctest: +SKIP
    >>> enc = torch.jit.load("exported/p2d/encoder.pt")                  # doctest: +SKIP
    >>> enc(torch.rand(300, 3), torch.zeros(300, dtype=torch.long))      # doctest: +SKIP

    $ openmm-closure export --model models/p2d --out exported/p2d --component 0 --force-constant 100
"""

import copy
import json
import os
from pathlib import Path
from typing import Any, List, Optional, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from ..couple.fast_rollout import ExportedDynamics  # the compiled engine lives beside the model; re-exported here
from ..models.periodic import periodic_image
from .scripting import METADATA, save_script
from ..species import check_species, state_names

__all__ = [
    "EXPORT_FORMAT_VERSION",
    "ExportedEncoder",
    "ExportedDynamics",
    "ClosureBias",
    "PeriodicClosureBias",
    "export_model",
    "load_exported",
    "read_metadata",
    "check_export_dir",
    "check_export_types",
    "INDEX",
]

EXPORT_FORMAT_VERSION = 1
FILES = {"encoder": "encoder.pt", "dynamics": "dynamics.pt", "collective_variable": "collective_variable.pt"}
#: the export's index: every file it wrote with its sha256, written last
INDEX = "export.json"


class ExportedEncoder(nn.Module):
    """The encoder of a closure model as one TorchScript-able module.

    Arguments:
        encoder: the model's set encoder (``model.encoder``; a deep copy is taken).
    """

    latent_dim: int
    n_species: int
    in_features: int

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = copy.deepcopy(encoder)
        self.latent_dim = int(encoder.latent_dim)
        self.n_species = int(encoder.n_species)
        self.in_features = int(encoder.in_features)

    def forward(self, positions: Tensor, types: Tensor, box: Optional[Tensor] = None) -> Tensor:
        """Closure variables of one configuration.

        Arguments:
            positions: (n, 3) positions in nm, any float dtype (2D models use x, y).
            types: (n,) int64 species indices in ``[0, n_species)``.
            box: (3, 3) box vectors in nm (rows a, b, c) of a periodic system: each
                particle is first put at its image nearest the set's periodic centre
                (:func:`openmm_closure.models.periodic.periodic_image`), so ẑ does not
                change when a particle moves by a box vector; None: positions as given.

        Returns:
            (d,) raw ẑ (dimensionless) in the weights' dtype.
        """
        if box is not None:
            positions = periodic_image(positions, box)
        return self.encoder(positions, types)


class ClosureBias(nn.Module):
    r"""Harmonic bias on one closure variable, for openmm-torch's ``TorchForce``.

    .. math:: E(X) = \tfrac12 k\,(\hat z_c(X) - \hat z^\ast)^2

    Arguments:
        encoder: the model's set encoder (a deep copy is taken).
        component: index c of the biased closure variable, ``0 <= c < d``.
        force_constant: k in kJ/mol (ẑ is dimensionless).
        target: ẑ* (raw encoder units).
        types: (n,) species of every particle (of the subset, with ``atom_subset``), or
            None for a one-species model (then any number of particles is accepted).
        species, system: the model's species names and system (for error messages).
        atom_subset: (m,) indices of the particles the bias sees, baked in (OpenMM's
            ``atomSubset`` convention; the others feel no force); None: every particle.
    """

    component: int
    force_constant: float
    target: float
    n_particles: int
    types: Tensor
    use_subset: bool

    def __init__(
        self,
        encoder: nn.Module,
        component: int = 0,
        force_constant: float = 1.0,
        target: float = 0.0,
        types: Optional[Any] = None,
        species: Optional[Sequence[str]] = None,
        system: Optional[str] = None,
        atom_subset: Optional[Any] = None,
    ):
        super().__init__()
        from .cv import check_atom_subset

        subset = check_atom_subset(atom_subset)
        self.use_subset = subset is not None
        self.register_buffer("subset", torch.zeros(0, dtype=torch.long) if subset is None
                             else torch.from_numpy(subset.copy()))
        d = int(encoder.latent_dim)
        if not 0 <= int(component) < d:
            raise ValueError(f"component must be in [0, {d}), got {component}")
        if not np.isfinite(force_constant) or not np.isfinite(target):
            raise ValueError("force_constant and target must be finite")
        self.encoder = copy.deepcopy(encoder)
        self.component = int(component)
        self.force_constant = float(force_constant)
        self.target = float(target)
        if types is None:
            if int(encoder.n_species) != 1:
                raise ValueError(
                    f"the model has {encoder.n_species} species: pass the species of every particle (types)"
                )
            self.n_particles = -1
            t = torch.zeros(0, dtype=torch.long)
        else:
            t = np.asarray(types).reshape(-1)
            if t.size == 0:
                raise ValueError(
                    f"types must be species indices in [0, {encoder.n_species}) for every particle"
                )
            t = torch.from_numpy(check_species(t, int(encoder.n_species), species, system))
            self.n_particles = int(t.numel())
            if subset is not None and self.n_particles != subset.size:
                raise ValueError(f"types gives {self.n_particles} species for an atom subset of {subset.size} particles")
        self.register_buffer("types", t)

    def _types(self, positions: Tensor) -> Tensor:
        if self.n_particles < 0:
            return torch.zeros(positions.shape[0], dtype=torch.long, device=positions.device)
        if positions.shape[0] != self.n_particles:
            raise ValueError(
                "this collective variable was exported for " + str(self.n_particles)
                + " particles, got " + str(positions.shape[0])
            )
        return self.types.to(positions.device)

    def _seen(self, positions: Tensor) -> Tensor:
        """The particles the bias sees: the baked-in atom subset of ``positions``, or all."""
        if self.use_subset:
            if int(self.subset.max()) >= positions.shape[0]:
                raise ValueError("this collective variable's atom subset needs at least "
                                 + str(int(self.subset.max()) + 1) + " particles, got " + str(positions.shape[0]))
            positions = positions.index_select(0, self.subset.to(positions.device))
        return positions

    def _component(self, positions: Tensor) -> Tensor:
        return self.encoder(positions, self._types(positions))[self.component]

    def _energy(self, cv: Tensor, positions: Tensor, closure_k: Optional[Tensor],
                closure_target: Optional[Tensor]) -> Tensor:
        cv = cv.to(positions.dtype)
        k = torch.tensor(self.force_constant, dtype=positions.dtype, device=positions.device)
        t = torch.tensor(self.target, dtype=positions.dtype, device=positions.device)
        if closure_k is not None:
            k = closure_k.to(dtype=positions.dtype, device=positions.device).reshape(())
        if closure_target is not None:
            t = closure_target.to(dtype=positions.dtype, device=positions.device).reshape(())
        return 0.5 * k * (cv - t) ** 2

    @torch.jit.export
    def collective_variable(self, positions: Tensor) -> Tensor:
        """ẑ_c of positions (n, 3) in nm (of every particle of the System when an atom
        subset is baked in): a () tensor (dimensionless)."""
        return self._component(self._seen(positions))

    def forward(self, positions: Tensor, closure_k: Optional[Tensor] = None,
                closure_target: Optional[Tensor] = None) -> Tensor:
        """Bias energy.

        Arguments:
            positions: (n, 3) positions in nm, float32 or float64 (as OpenMM passes them).
            closure_k: () force constant k in kJ/mol, the TorchForce global parameter
                ``closure_k`` (None: the export's ``force_constant``).
            closure_target: () target ẑ*, the TorchForce global parameter
                ``closure_target`` (None: the export's ``target``).

        Returns:
            () energy in kJ/mol, dtype of ``positions``.
        """
        return self._energy(self.collective_variable(positions), positions, closure_k, closure_target)


class PeriodicClosureBias(ClosureBias):
    r""":class:`ClosureBias` of a periodic system: it takes the box, as openmm-torch passes
    it to a ``TorchForce`` with ``setUsesPeriodicBoundaryConditions(True)``
    (``forward(positions, box, closure_k, closure_target)``).

    The particles it sees are first put at their images nearest the set's periodic centre
    (:func:`openmm_closure.models.periodic.periodic_image`, as ``model.encode(..., box=)``
    and ``encoder.pt`` do), so the energy does not change when OpenMM moves a particle by
    a box vector. Only for models that centre each set (translation invariant ẑ).

    Arguments: as :class:`ClosureBias`.

    Raises:
        ValueError: the model reads absolute positions (it does not centre each set).
    """

    def __init__(self, encoder: nn.Module, *args: Any, **kwargs: Any):
        if not bool(getattr(encoder, "center", False)):
            raise ValueError("--periodic: this model reads absolute positions (it does not centre each set), "
                             "so its closure variables are not defined under periodic wrapping")
        super().__init__(encoder, *args, **kwargs)

    def _image(self, positions: Tensor, box: Optional[Tensor]) -> Tensor:
        if box is None or box.dim() != 2 or box.shape[0] != 3 or box.shape[1] != 3:
            raise ValueError("this collective variable was exported with periodic=True and takes the (3, 3) box "
                             "after the positions: call TorchForce.setUsesPeriodicBoundaryConditions(True)")
        return periodic_image(self._seen(positions), box.to(positions.device))

    @torch.jit.export
    def collective_variable(self, positions: Tensor, box: Optional[Tensor] = None) -> Tensor:
        """ẑ_c of positions (n, 3) in nm (of every particle of the System when an atom
        subset is baked in) in the periodic box (3, 3) nm: a () tensor (dimensionless)."""
        return self._component(self._image(positions, box))

    def forward(self, positions: Tensor, box: Optional[Tensor] = None, closure_k: Optional[Tensor] = None,
                closure_target: Optional[Tensor] = None) -> Tensor:
        """Bias energy.

        Arguments:
            positions: (n, 3) positions in nm, float32 or float64 (as OpenMM passes them).
            box: (3, 3) periodic box vectors in nm (rows a, b, c), as TorchForce passes
                them with periodic boundary conditions on (required).
            closure_k, closure_target: as :meth:`ClosureBias.forward`.

        Returns:
            () energy in kJ/mol, dtype of ``positions``.
        """
        return self._energy(self._component(self._image(positions, box)), positions, closure_k, closure_target)


# ---------------------------------------------------------------------------- writing
def _common_metadata(model, model_dir: Path) -> dict:
    from .. import __version__
    from ..learn.model_config import FORMAT_VERSION, UNITS

    c = model.spec  # the typed config.json: one fallback per key
    enc_lo = model.encoder.coords.lo.detach().cpu().double().tolist()
    enc_hi = model.encoder.coords.hi.detach().cpu().double().tolist()
    return {
        "format_version": EXPORT_FORMAT_VERSION,
        "model_format_version": int(FORMAT_VERSION if c.format_version is None else c.format_version),
        "package_version": __version__,
        "model_package_version": c.package_version,
        "source_model": model_dir.name,
        "method": c.method,
        "system": c.system,
        "species": list(c.species),
        "n_species": model.n_species,
        "in_features": model.in_features,
        "latent_dim": model.latent_dim,
        "observables": list(model.observables),
        "observable_params": dict(c.observable_params),
        "names": state_names(model.observables, model.latent_dim),
        "macro_dim": model.macro_dim,
        "dim": model.dim,
        "epsilon": model.epsilon,
        "dt": model.dt,
        "encoder": dict(c.encoder),
        "dynamics": dict(c.dynamics),
        "coordinate_range": {"lo": enc_lo, "hi": enc_hi, "units": "nm", "maps_to": [-1.0, 1.0],
                             "centered_per_set": bool(getattr(model.encoder, "center", False))},
        "state_range": {
            "lo": model.state_scaler.lo.detach().cpu().double().tolist(),
            "hi": model.state_scaler.hi.detach().cpu().double().tolist(),
            "maps_to": [-1.0, 1.0],
        },
        "units": {**UNITS, "zhat": "dimensionless (raw encoder output)", "energy": "kJ/mol"},
        "dtype": str(model.dtype).replace("torch.", ""),
        # trained on a periodic dataset: pass the box to encoder.pt (forward(positions, types, box))
        "periodic": model.periodic,
    }


def _load_model_checked(model_dir: Path):
    from ..learn.model import load_model

    if not model_dir.exists():
        raise ValueError(f"model directory {model_dir} does not exist")
    if not model_dir.is_dir():
        raise ValueError(f"{model_dir} is not a directory")
    try:
        model = load_model(model_dir, device="cpu")
    except FileNotFoundError as exc:
        raise ValueError(f"cannot export {model_dir}: {exc}") from exc
    except Exception as exc:  # malformed config.json or model.pt, unknown format version
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"cannot export {model_dir}: malformed model directory ({first})") from exc
    return model


def export_model(
    model_dir,
    out_dir,
    *,
    component: int = 0,
    force_constant: float = 1.0,
    target: float = 0.0,
    types: Optional[Any] = None,
    hosts: Sequence[str] = (),
    formats: Sequence[str] = (),
    rollout_steps: int = 10,
    cv: bool = False,
    atom_subset: Optional[Any] = None,
    periodic: bool = False,
) -> dict:
    """Export a model directory to TorchScript (see the module docstring for the format).

    Arguments:
        model_dir: model directory written by ``openmm-closure train``.
        out_dir: export directory (created; files in it are replaced).
        component: closure component c biased by ``collective_variable.pt``.
        force_constant: k of the bias in kJ/mol.
        target: ẑ* of the bias (raw encoder units).
        types: (n,) int species of every particle, baked into the bias (required for a
            multi-species model to write ``collective_variable.pt``; None for one species).
        hosts: host profiles to write besides (``"plumed"``, ``"gromacs"``), see
            :mod:`openmm_closure.hosts`.
        formats: ``"pt2"`` adds the AOTInductor packages (TorchScript is always written).
        rollout_steps: steps baked into the ``.pt2`` rollout.
        cv: also write ``closure_cv_<c>.pt`` for every closure component c, whose
            TorchForce energy is ẑ_c itself (for ``CustomCVForce`` / ``BiasVariable``; see
            :mod:`openmm_closure.hosts.cv`).
        atom_subset: (m,) indices of the particles the bias and the CVs see (None: all),
            baked in; ``types`` are then the subset's.
        periodic: ``collective_variable.pt`` (and the CVs, with ``cv``) take the periodic
            box and put each seen particle at its image nearest the set's periodic centre
            before encoding (:class:`PeriodicClosureBias`; centring models only).

    Returns:
        ``{"encoder": path, "dynamics": path, "collective_variable": path or None,
        "skipped": reason or None, "hosts": [paths of the host profiles' files],
        "cv": [paths of the closure CVs]}``.

    Raises:
        ValueError: the model directory is missing or malformed, or bad bias options.
    """
    model_dir, out = Path(model_dir), Path(out_dir)
    if "pt2" in formats and (isinstance(rollout_steps, bool) or int(rollout_steps) != rollout_steps
                             or int(rollout_steps) < 1):
        raise ValueError(f"--rollout-steps must be an integer >= 1 (steps baked into the .pt2 rollout), "
                         f"got {rollout_steps!r}")
    model = _load_model_checked(model_dir)
    if types is not None:
        types = check_export_types(model, types)
    if model.latent_dim == 0:  # a no-closure model: dynamics on z̄ alone, nothing to encode
        if hosts or [f for f in formats if f != "torchscript"]:
            raise ValueError("the model has no closure variables (method no-closure): host profiles "
                             "and .pt2 packages need ẑ; export it without --host/--format")
        cv_skip: Optional[str] = ("encoder.pt and collective_variable.pt not written: the model has no "
                                  "closure variables (method no-closure); dynamics.pt is its whole export")
    elif types is None and model.n_species != 1:
        cv_skip: Optional[str] = (
            f"collective_variable.pt not written: the model has {model.n_species} species, "
            "pass the species of every particle (--types)"
        )
    else:
        cv_skip = None
    # validate the bias options before writing anything
    bias = None
    if cv_skip is None:
        bias = (PeriodicClosureBias if periodic else ClosureBias)(
            model.encoder, component, force_constant, target, types,
            species=model.spec.species_names, system=model.spec.system, atom_subset=atom_subset)
    elif model.latent_dim > 0 and not 0 <= int(component) < model.latent_dim:
        raise ValueError(f"component must be in [0, {model.latent_dim}), got {component}")
    from .profiles import check_host_options, write_hosts

    check_host_options(model, hosts, formats, types)
    if cv:
        from .cv import ClosureCV

        if model.latent_dim == 0:
            raise ValueError("--cv: the model has no closure variables (method no-closure)")
        ClosureCV(model.encoder, 0, None if types is None else torch.as_tensor(np.asarray(types)).reshape(-1),
                  atom_subset, periodic)  # validates subset and types before anything is written
    elif periodic and bias is None:
        raise ValueError(f"--periodic applies to collective_variable.pt and the closure CVs (--cv), and "
                         f"neither is written: {cv_skip}")

    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--out {out} is a file, not a directory; choose another --out")
    if out.is_symlink():  # a link to a directory: the export goes where it points
        out = out.resolve()
    # everything is written into a staging directory beside --out and swapped in whole
    # once complete and indexed: a failed export leaves the previous one as it was
    import shutil
    import tempfile

    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.export-"))
    try:
        os.chmod(stage, 0o777 & ~_umask())
        paths = _write_export(model, model_dir, stage, bias=bias, cv_skip=cv_skip, component=component,
                              force_constant=force_constant, target=target, types=types, hosts=hosts,
                              formats=formats, rollout_steps=rollout_steps, cv=cv, atom_subset=atom_subset,
                              periodic=periodic)
        _swap_in(stage, out)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    for key in FILES:
        if paths.get(key) is not None:
            paths[key] = out / Path(paths[key]).name
    paths["hosts"] = [out / Path(p).name for p in paths["hosts"]]
    paths["cv"] = [out / Path(p).name for p in paths["cv"]]
    return paths


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _write_export(model, model_dir: Path, out: Path, *, bias, cv_skip, component, force_constant, target,
                  types, hosts, formats, rollout_steps, cv=False, atom_subset=None, periodic=False) -> dict:
    """Write every file of one export into the (empty, staging) directory ``out`` and its index."""
    from .profiles import write_hosts

    meta = _common_metadata(model, model_dir)
    paths: dict = {"collective_variable": None, "skipped": cv_skip}
    paths["encoder"] = None
    if model.latent_dim > 0:
        save_script(ExportedEncoder(model.encoder), out / FILES["encoder"], {**meta, "kind": "encoder"})
        paths["encoder"] = out / FILES["encoder"]
    dyn = ExportedDynamics(model.dynamics, model.state_scaler, meta["names"], model.macro_dim, model.dt)
    save_script(dyn, out / FILES["dynamics"], {**meta, "kind": "dynamics"})
    paths["dynamics"] = out / FILES["dynamics"]
    if bias is not None:
        cv_meta = {
            **meta, "kind": "collective_variable", "component": bias.component,
            "force_constant": bias.force_constant, "target": bias.target,
            "n_particles": None if bias.n_particles < 0 else bias.n_particles,
            "atom_subset": None if not bias.use_subset else bias.subset.tolist(),
            "energy": "0.5 * closure_k * (zhat[component] - closure_target)**2, kJ/mol",
            "global_parameters": {"closure_k": bias.force_constant, "closure_target": bias.target},
            # forward(positions, box, closure_k, closure_target): TorchForce.setUsesPeriodicBoundaryConditions(True)
            "uses_periodic_boundary_conditions": bool(periodic),
        }
        if periodic:
            from ..provenance import CONTRACTS

            pos, *params = CONTRACTS["collective_variable"]["inputs"]
            box = {"name": "box", "shape": [3, 3], "dtype": "float32|float64", "units": "nm (rows a, b, c)"}
            cv_meta["inputs"] = [pos, box, *params]
        save_script(bias, out / FILES["collective_variable"], cv_meta)
        paths["collective_variable"] = out / FILES["collective_variable"]
    paths["hosts"] = write_hosts(model, out, meta, hosts=hosts, formats=formats, component=component,
                                 force_constant=force_constant, target=target, types=types,
                                 rollout_steps=rollout_steps)
    paths["cv"] = []
    if cv:
        from .cv import write_cvs

        paths["cv"] = write_cvs(model, out, meta, types=types, atom_subset=atom_subset, periodic=periodic)
    _finish_export_dir(out, [paths[k] for k in FILES if paths.get(k) is not None] + paths["hosts"] + paths["cv"])
    return paths


def _swap_in(stage: Path, out: Path) -> None:
    """Put the complete export ``stage`` in place of ``out``.

    Files of ``out`` that no export wrote (not in its index, not export files) are the
    user's: they move into the new export directory. The old directory is renamed aside
    first and removed last, so a failure in between puts it back.
    """
    import shutil

    from ..fileio import LOCK_FILE, unique_temp_name
    from .profiles import host_files

    if not out.exists():
        os.rename(stage, out)
        return
    ours = set(host_files()) | {INDEX} | set(FILES.values()) | {Path(f).with_suffix(".json").name for f in FILES.values()}
    try:
        ours |= set(json.loads((out / INDEX).read_text()).get("sha256", {}))
    except (OSError, ValueError, AttributeError):
        pass
    for entry in out.iterdir():
        if entry.name not in ours and entry.name != LOCK_FILE and not (stage / entry.name).exists() \
                and not entry.name.endswith((".tmp", ".partial.pt2")):
            os.rename(entry, stage / entry.name)  # the user's own files stay with the export
    old = unique_temp_name(out, ".old")
    os.rename(out, old)
    try:
        os.rename(stage, out)
    except BaseException:
        os.rename(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)


def check_export_types(model, types) -> np.ndarray:
    """The species of every particle given for an export (``--types``), checked against the
    model: integer indices of the model's species, at least two particles, and every
    species of the model present (a two-species model's bias needs both).

    Returns:
        (n,) int64.

    Raises:
        ValueError: one line naming ``--types``, the model's species and what was given.
    """
    c = model.spec
    names = c.species_names
    t = np.asarray(types)
    if t.ndim != 1:
        raise ValueError(f"--types must be one species index per particle (a 1-D array), got shape {t.shape}")
    try:
        t = check_species(t, model.n_species, names, c.system)
    except ValueError as exc:
        raise ValueError(f"--types: {exc}") from None
    if t.size < 2:
        raise ValueError(f"--types lists {t.size} particle(s); the encoder needs a set of at least 2")
    missing = [names[k] for k in range(model.n_species) if not (t == k).any()]
    if missing:
        raise ValueError(f"--types has no particle of species {missing} of this model (trained on "
                         f"{c.system or 'its dataset'!r} with species {names}); pass the species of every "
                         "particle of the simulated system")
    return t


def _finish_export_dir(out: Path, written: list) -> None:
    """Remove the export files this export did not write (a stale bias from another model
    must not sit beside this encoder), then write the index with every file's sha256."""
    from ..fileio import atomic_write_bytes, sha256_file

    from .profiles import host_files
    from .cv import stale_cv_files

    names = {Path(p).name for p in written} | {Path(p).with_suffix(".json").name for p in written
                                                 if Path(p).suffix in (".pt", ".pt2")}
    for p in stale_cv_files(out, names):
        p.unlink(missing_ok=True)
    for name in host_files():
        if name not in names:
            (out / name).unlink(missing_ok=True)
    for pt in FILES.values():
        for name in (pt, Path(pt).with_suffix(".json").name):
            if name not in names:
                (out / name).unlink(missing_ok=True)
    index = {"format_version": EXPORT_FORMAT_VERSION,
             "sha256": {name: sha256_file(out / name) for name in sorted(names)}}
    atomic_write_bytes(out / INDEX, (json.dumps(index, indent=2, sort_keys=True) + "\n").encode())


def check_export_dir(directory) -> dict:
    """Validate an export directory against its index (``export.json``).

    Every listed file must exist with the recorded sha256, and no export file may sit in
    the directory unlisted (left from another export).

    Returns:
        The index dict (``{"format_version", "sha256": {file name: hex digest}}``).

    Raises:
        FileNotFoundError: no index (not an export directory, or an interrupted export) or
            a listed file is missing.
        ValueError: a file was edited, truncated or left from another export.
    """
    from ..fileio import check_hashes

    d = Path(directory)
    if not (d / INDEX).is_file():
        raise FileNotFoundError(f"{d} is not a complete export directory: {INDEX} is missing "
                                "(run openmm-closure export again)")
    try:
        index = json.loads((d / INDEX).read_text())
        hashes = dict(index["sha256"])
    except Exception as exc:
        raise ValueError(f"{d / INDEX} is malformed ({exc}); run openmm-closure export again") from exc
    check_hashes(d, hashes, "export directory")
    for pt in FILES.values():
        if (d / pt).exists() and pt not in hashes:
            raise ValueError(f"export directory {d}: {pt} is not part of this export (left from "
                             "another model); remove it or export again")
    return index


def read_metadata(path) -> dict:
    """The metadata stored inside an exported ``.pt`` file (its ``metadata.json``), after
    the same checks as :func:`load_exported`."""
    _, meta = load_exported(path)
    if not meta:
        raise ValueError(f"{path} carries no {METADATA}; was it written by openmm-closure export?")
    return meta


def _check_exported_file(path: Path) -> None:
    """Check one exported file against the index of its directory (required)."""
    from ..fileio import check_hashes

    d = path.parent
    if not (d / INDEX).is_file():
        raise FileNotFoundError(
            f"{path}: no {INDEX} beside it (the export's record of every file's sha256), so its content "
            "cannot be checked; load it from the directory openmm-closure export wrote, or pass the model "
            "directory instead")
    index = check_export_dir(d)
    if path.name not in index["sha256"]:
        raise ValueError(f"export directory {d}: {path.name} is not part of this export")
    check_hashes(d, {path.name: index["sha256"][path.name]}, "export directory")


def load_exported(path, map_location: str = "cpu") -> tuple:
    """Load an exported ``.pt`` file: returns ``(scripted_module, metadata_dict)``.

    A TorchScript file is a program, so before it is used: its content must match the
    index of its export directory (:func:`check_export_dir`: an edited, truncated, stale or
    swapped file is refused), and every operator of every method must be one our own
    exports use (:func:`openmm_closure.hosts.allowlist.check_script_file`: file, process,
    network and storage-sharing operators are refused, and code that runs at load time).

    Raises:
        FileNotFoundError: no such file, or no export index beside it.
        ValueError: the file fails a check (the message names the file and the check).
    """
    from .allowlist import check_script_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"exported model {path} does not exist")
    _check_exported_file(path)
    extra = {METADATA: ""}
    module = check_script_file(path, map_location=map_location, extra_files=extra)
    try:
        meta = json.loads(extra[METADATA] or "{}")
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: its {METADATA} is not valid JSON ({exc})") from None
    return module, meta
