r"""Closure variables as OpenMM collective variables (``openmm-closure export --cv``).

One TorchScript file per closure component, ``closure_cv_<c>.pt``, whose *energy* is the
variable itself: ``E(X) = ẑ_c(X)`` (dimensionless; OpenMM reads it as kJ/mol), and one per
differentiable observable of the model, ``observable_cv_<name>.pt`` (``energy``,
``extension``, ``end_to_end_x``; the neighbour ratios ``R_AB``/``R_BA`` count neighbours
within a hard cutoff and have no useful gradient, so they get none). That is
what ``openmm.CustomCVForce`` and ``openmm.app.metadynamics.BiasVariable`` take: a Force
whose energy is the collective variable. openmm-torch's ``TorchForce`` calls
``forward(positions)`` with the (N, 3) positions of *every* particle of the System in nm
(float64 on the Reference and CPU platforms, float32 on CUDA with single precision), and
``forward(positions, box)`` with the (3, 3) box vectors in nm when
``setUsesPeriodicBoundaryConditions(True)`` (openmm-torch ``TorchForceImpl.cpp`` and its
platform kernels); forces are ``-∂E/∂positions`` by autograd.

Options baked in at export:

- ``atom_subset``: the particles the closure variable sees (OpenMM's ``atomSubset=``
  convention, indices into the System); the rest get no force. None: every particle.
- ``types``: the species of each particle seen (required for a multi-species model; a
  one-species model without a subset accepts any N).
- ``periodic``: the file takes the box too; each seen particle is moved by box vectors to
  its image nearest the set's periodic centre before encoding
  (:func:`openmm_closure.models.periodic.periodic_image`, as ``model.encode(..., box=)``),
  so ẑ does not jump when OpenMM wraps a particle into the box. Only for models that
  centre each set (translation invariant ẑ): a model that reads absolute positions
  (walls) has no periodic box to wrap in.

The encoder keeps the weights' dtype; ẑ is returned in the dtype of ``positions``.

Example:
    >>> from openmm_closure.couple.torchforce import closure_bias_variable      # doctest: +SKIP
    >>> cv = closure_bias_variable("exported/p2d/closure_cv_0.pt", -1.0, 1.0, 0.05)  # doctest: +SKIP
    >>> meta = Metadynamics(system, [cv], 300 * kelvin, 5.0, 1.0, 100)   # doctest: +SKIP
"""

from pathlib import Path
from typing import Any, List, Optional

import numpy as np
import torch
from torch import Tensor, nn

from ..models.periodic import periodic_image
from .common import EncoderCore

__all__ = ["ClosureCV", "ObservableCV", "DIFFERENTIABLE_OBSERVABLES", "observable_cv_file", "make_whole", "seen_particles",
           "cv_file", "is_cv_file", "check_atom_subset", "write_cvs", "validate_cv", "parse_atom_subset",
           "stale_cv_files"]

#: file name of component c
PATTERN = "closure_cv_{}.pt"


def cv_file(component: int) -> str:
    """File name of the CV of closure component ``component``."""
    return PATTERN.format(int(component))


def is_cv_file(name: str) -> bool:
    """Whether ``name`` is a CV file or its JSON (``closure_cv_<c>`` / ``observable_cv_<name>``,
    ``.pt`` / ``.json``)."""
    stem, _, ext = name.rpartition(".")
    if ext not in ("pt", "json"):
        return False
    if stem.startswith("closure_cv_"):
        return stem[len("closure_cv_"):].isdigit()
    return stem.startswith("observable_cv_") and len(stem) > len("observable_cv_")


def parse_atom_subset(text: str) -> np.ndarray:
    """``--atom-subset``: a ``.npy`` file of indices, or a list such as ``0,1,5-9``.

    Returns:
        (m,) int64 indices.

    Raises:
        ValueError: unreadable file or malformed list (one line naming the value).
    """
    if text.endswith(".npy"):
        try:
            return np.asarray(np.load(text)).reshape(-1)
        except OSError as exc:
            raise ValueError(f"--atom-subset {text}: cannot read ({exc})") from exc
    out: List[int] = []
    try:
        for part in text.split(","):
            lo, sep, hi = part.strip().partition("-")
            out += list(range(int(lo), int(hi) + 1)) if sep else [int(lo)]
    except ValueError:
        raise ValueError(f"--atom-subset {text!r}: expected a .npy file or indices such as 0,1,5-9") from None
    return np.asarray(out, dtype=np.int64)


def check_atom_subset(atom_subset: Optional[Any]) -> Optional[np.ndarray]:
    """(m,) int64 distinct particle indices >= 0, or None.

    Raises:
        ValueError: empty, negative, repeated or non-integer indices.
    """
    if atom_subset is None:
        return None
    a = np.asarray(atom_subset)
    if a.ndim != 1 or a.size == 0 or not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"--atom-subset must be a non-empty list of particle indices, got {atom_subset!r}")
    if int(a.min()) < 0 or len(np.unique(a)) != a.size:
        raise ValueError("--atom-subset indices must be distinct and >= 0")
    return a.astype(np.int64)


def make_whole(x: Tensor, box: Tensor) -> Tensor:
    """Each row of x (m, 3) nm at its minimum image relative to row 0, for OpenMM's reduced,
    lower-triangular box (rows a, b, c; a along x, b in the xy plane)."""
    b = box.to(x.dtype)
    d = x - x[0:1]
    d = d - b[2].unsqueeze(0) * torch.round(d[:, 2:3] / b[2, 2])
    d = d - b[1].unsqueeze(0) * torch.round(d[:, 1:2] / b[1, 1])
    d = d - b[0].unsqueeze(0) * torch.round(d[:, 0:1] / b[0, 0])
    return x[0:1] + d


def seen_particles(positions: Tensor, box: Optional[Tensor], subset: Tensor, use_subset: bool,
                   periodic: bool) -> Tensor:
    """The particles a CV sees: (N, 3) nm positions checked, the atom subset taken (when
    ``use_subset``), the set made whole with the box (when ``periodic``); (m, 3)."""
    if positions.dim() != 2 or positions.shape[1] != 3:
        raise ValueError("positions must have shape (N, 3)")
    x = positions
    if use_subset:
        if int(subset.max()) >= positions.shape[0]:
            raise ValueError("this collective variable's atom subset needs at least "
                             + str(int(subset.max()) + 1) + " particles, got " + str(positions.shape[0]))
        x = positions.index_select(0, subset.to(positions.device))
    if periodic:
        if box is None:
            raise ValueError("this collective variable was exported with periodic=True: "
                             "call TorchForce.setUsesPeriodicBoundaryConditions(True)")
        # the image model.encode(..., box=) takes: each particle nearest the set's periodic centre
        x = periodic_image(x, box.to(positions.device))
    return x


class ClosureCV(nn.Module):
    """ẑ_c of (a subset of) the System's particles, as openmm-torch's ``TorchForce`` energy.

    Arguments:
        encoder: the model's set encoder (a deep copy is taken).
        component: closure component c, ``0 <= c < d``.
        types: (m,) species of the seen particles, or None for a one-species model.
        atom_subset: (m,) indices of the seen particles in the System, or None (all).
        periodic: make the set whole with the box before encoding (see module docstring).
    """

    component: int
    n_particles: int
    periodic: bool
    use_subset: bool

    def __init__(self, encoder: nn.Module, component: int, types: Optional[Tensor] = None,
                 atom_subset: Optional[Any] = None, periodic: bool = False):
        super().__init__()
        d = int(encoder.latent_dim)
        if not 0 <= int(component) < d:
            raise ValueError(f"component must be in [0, {d}), got {component}")
        self.core = EncoderCore(encoder)
        self.component = int(component)
        self.periodic = bool(periodic)
        subset = check_atom_subset(atom_subset)
        self.use_subset = subset is not None
        m = -1 if subset is None else int(subset.size)
        if types is not None:
            t = torch.as_tensor(np.asarray(types), dtype=torch.long).reshape(-1)
            if m >= 0 and t.numel() != m:
                raise ValueError(f"--types gives {t.numel()} species for an --atom-subset of {m} particles")
            m = int(t.numel())
        elif int(encoder.n_species) != 1:
            raise ValueError(f"--cv: the model has {encoder.n_species} species; pass the species of every "
                             "particle it sees with --types")
        else:  # one species: zeros for a fixed subset, built per call otherwise
            t = torch.zeros(max(m, 0), dtype=torch.long)
        self.n_particles = m
        self.register_buffer("types", t.clone())
        self.register_buffer("subset", torch.zeros(0, dtype=torch.long) if subset is None
                             else torch.from_numpy(subset.copy()))

    def forward(self, positions: Tensor, box: Optional[Tensor] = None) -> Tensor:
        """The closure variable.

        Arguments:
            positions: (N, 3) positions of every particle of the System in nm, float32 or
                float64.
            box: (3, 3) periodic box vectors in nm (rows a, b, c), passed by TorchForce
                when it uses periodic boundary conditions; used only by a periodic export.

        Returns:
            () ẑ_c (dimensionless; OpenMM reads it as an energy), dtype of ``positions``.
        """
        x = seen_particles(positions, box, self.subset, self.use_subset, self.periodic)
        n = x.shape[0]
        if self.n_particles >= 0:
            if n != self.n_particles:
                raise ValueError("this collective variable was exported for " + str(self.n_particles)
                                 + " particles, got " + str(n))
            types = self.types.to(positions.device)
        else:
            types = torch.zeros(n, dtype=torch.long, device=positions.device)
        return self.core(x, types)[self.component].to(positions.dtype)


#: observables with a differentiable TorchScript form (R_AB / R_BA count neighbours within a
#: hard cutoff: piecewise constant, no useful gradient)
DIFFERENTIABLE_OBSERVABLES = ("energy", "extension", "end_to_end_x")


def observable_cv_file(name: str) -> str:
    """File name of the CV of observable ``name``."""
    return f"observable_cv_{name}.pt"


class ObservableCV(nn.Module):
    """A macroscopic observable z̄ as the TorchForce energy, the same function as
    :mod:`openmm_closure.md.observables` computes in numpy:

    - ``energy``: mean pair energy ``Σ_{i<j} P(r_ij) / (n (n - 1) / 2)`` in the xy plane,
      ``P(r) = (1/a) log cosh(a (1 - r)) + b (1 - r)`` (kJ/mol);
    - ``extension``: ``max x - min x`` (nm; its gradient acts on the two extreme beads);
    - ``end_to_end_x``: x of the last seen particle minus x of the first (nm).

    Arguments:
        name: one of :data:`DIFFERENTIABLE_OBSERVABLES`.
        a, b: pair potential parameters (``energy``).
        atom_subset: (m,) seen particles in System order, or None (all).
        periodic: make the seen set whole with the box first.
    """

    kind: int
    a: float
    b: float
    periodic: bool
    use_subset: bool

    def __init__(self, name: str, a: float = 4.0, b: float = 0.1, atom_subset: Optional[Any] = None,
                 periodic: bool = False):
        super().__init__()
        if name not in DIFFERENTIABLE_OBSERVABLES:
            raise ValueError(f"observable {name!r} has no differentiable CV; choose from "
                             f"{', '.join(DIFFERENTIABLE_OBSERVABLES)}")
        self.kind = DIFFERENTIABLE_OBSERVABLES.index(name)
        self.a, self.b = float(a), float(b)
        self.periodic = bool(periodic)
        subset = check_atom_subset(atom_subset)
        self.use_subset = subset is not None
        self.register_buffer("subset", torch.zeros(0, dtype=torch.long) if subset is None
                             else torch.from_numpy(subset.copy()))

    def forward(self, positions: Tensor, box: Optional[Tensor] = None) -> Tensor:
        """The observable of (N, 3) nm positions (float32/float64), () in their dtype."""
        x = seen_particles(positions, box, self.subset, self.use_subset, self.periodic)
        if self.kind == 0:
            n = x.shape[0]
            if n < 2:
                raise ValueError("the mean pair energy needs at least 2 particles")
            ij = torch.triu_indices(n, n, 1, device=x.device)
            d = x[ij[0], :2] - x[ij[1], :2]
            r = torch.sqrt((d * d).sum(dim=1))
            u = self.a * (1.0 - r)
            log_cosh = u.abs() + torch.log1p(torch.exp(-2.0 * u.abs())) - 0.6931471805599453
            return (log_cosh / self.a + self.b * (1.0 - r)).mean()
        if self.kind == 1:
            return x[:, 0].max() - x[:, 0].min()
        return x[-1, 0] - x[0, 0]


def validate_cv(path: Path, encoder: nn.Module, probe: np.ndarray, types: Optional[Tensor],
                atom_subset: Optional[np.ndarray], component: int, rtol: float = 1e-5) -> float:
    """Load ``path`` and call it as TorchForce does (float32 and float64 positions, with
    autograd); compare ẑ_c and its gradient with the eager encoder.

    Arguments:
        path: the saved module.
        encoder: the model's encoder.
        probe: (N, 3) nm System positions.
        types: (m,) baked species or None.
        atom_subset: (m,) seen particles or None.
        component: c.
        rtol: tolerance relative to max(1, |value|).

    Returns:
        The largest deviation found.

    Raises:
        RuntimeError: the saved module disagrees with the eager model.
    """
    module = torch.jit.load(str(path), map_location="cpu")
    meta_box = torch.eye(3, dtype=torch.float64) * 1e3  # periodic files: a box far larger than the set
    seen = np.arange(len(probe)) if atom_subset is None else atom_subset
    t = torch.zeros(len(seen), dtype=torch.long) if types is None else types
    worst = 0.0
    for dtype in (torch.float32, torch.float64):
        x = torch.tensor(probe, dtype=dtype, requires_grad=True)
        got = module(x, meta_box.to(dtype))
        (g,) = torch.autograd.grad(got, x)
        p = torch.tensor(probe[seen], dtype=dtype, requires_grad=True)
        want = encoder(p, t)[component]
        (gw,) = torch.autograd.grad(want, p)
        gfull = torch.zeros_like(g)
        gfull[torch.as_tensor(seen)] = gw.to(dtype)
        scale = max(1.0, float(gw.abs().max()))
        got, want = got.detach(), want.detach()
        dev = max(abs(float(got) - float(want)) / max(1.0, abs(float(want))),
                  float((g - gfull).abs().max()) / scale)
        if got.dtype != dtype or dev > rtol:
            raise RuntimeError(f"{path.name}: TorchForce-style call differs from the eager model "
                               f"by {dev:.3g} (> {rtol}) for {dtype}")
        worst = max(worst, dev)
    return worst


def write_cvs(model, out: Path, meta: dict, *, types: Optional[Any] = None, atom_subset: Optional[Any] = None,
              periodic: bool = False) -> List[Path]:
    """Write ``closure_cv_<c>.pt`` (and its JSON) for every closure component c, each
    validated by calling it back the way TorchForce does.

    Arguments:
        model: the loaded ClosureModel (CPU).
        out: export directory.
        meta: the export's common metadata.
        types: (m,) species of the seen particles (required for a multi-species model).
        atom_subset: (m,) indices of the seen particles in the System, or None (all).
        periodic: take the box and make the set whole (centring models only).

    Returns:
        The written ``.pt`` paths (each has its ``.json`` beside it).

    Raises:
        ValueError: no closure variables, bad subset or types, periodic without centring.
    """
    from .scripting import save_script
    from .common import probe_positions

    if model.latent_dim == 0:
        raise ValueError("--cv: the model has no closure variables (method no-closure)")
    if periodic and not bool(getattr(model.encoder, "center", False)):
        raise ValueError("--periodic: this model reads absolute positions (it does not centre each set), "
                         "so its closure variables are not defined under periodic wrapping")
    subset = check_atom_subset(atom_subset)
    t = None if types is None else torch.as_tensor(np.asarray(types), dtype=torch.long).reshape(-1)
    if t is not None and (t.numel() == 0 or int(t.min()) < 0 or int(t.max()) >= model.n_species):
        raise ValueError(f"--types must be species indices in [0, {model.n_species}) for every particle")
    modules = [ClosureCV(model.encoder, c, t, subset, periodic) for c in range(model.latent_dim)]
    m = modules[0].n_particles
    n_seen = m if m >= 0 else 16
    n_system = n_seen if subset is None else max(int(subset.max()) + 1, n_seen)
    probe = probe_positions(meta, n_system)
    written = []
    for c, module in enumerate(modules):
        path = out / cv_file(c)
        save_script(module, path, {
            **meta, "kind": "closure_cv", "component": c, "name": meta["names"][model.macro_dim + c],
            "n_particles": None if m < 0 else m,
            "atom_subset": None if subset is None else subset.tolist(),
            "periodic": bool(periodic),
            "energy": "zhat[component] itself (dimensionless, read by OpenMM as kJ/mol)",
            "host": "openmm-torch TorchForce (forward(positions[, box])) for CustomCVForce / BiasVariable",
        })
        validate_cv(path, model.encoder, probe, t, subset, c)
        written.append(path)
    written += _write_observable_cvs(model, out, meta, subset, periodic, probe)
    return written


def _write_observable_cvs(model, out: Path, meta: dict, subset: Optional[np.ndarray], periodic: bool,
                          probe: np.ndarray) -> List[Path]:
    """``observable_cv_<name>.pt`` for every differentiable observable of the model, each
    checked against the numpy observable at the probe (float32 and float64)."""
    from ..md.observables import compute
    from .scripting import save_script

    params = dict(meta.get("observable_params") or {})
    written = []
    for name in model.observables:
        if name not in DIFFERENTIABLE_OBSERVABLES:
            continue
        module = ObservableCV(name, params.get("a", 4.0), params.get("b", 0.1), subset, periodic)
        path = out / observable_cv_file(name)
        save_script(module, path, {
            **meta, "kind": "observable_cv", "observable": name,
            "atom_subset": None if subset is None else subset.tolist(), "periodic": bool(periodic),
            "energy": f"the observable {name} itself (its own units, read by OpenMM as kJ/mol)",
            "host": "openmm-torch TorchForce (forward(positions[, box])) for CustomCVForce / BiasVariable",
        })
        seen = probe if subset is None else probe[subset]
        want = float(np.asarray(compute([name], seen[None], np.zeros(len(seen), dtype=np.int64), **params)[name])[0])
        loaded = torch.jit.load(str(path), map_location="cpu")
        for dtype in (torch.float32, torch.float64):
            got = float(loaded(torch.tensor(probe, dtype=dtype), torch.eye(3, dtype=dtype) * 1e3))
            if abs(got - want) > 1e-5 * max(1.0, abs(want)):
                raise RuntimeError(f"{path.name}: differs from the numpy observable {name} ({got} vs {want})")
        written.append(path)
    return written


def stale_cv_files(out: Path, keep: set) -> List[Path]:
    """CV files in ``out`` that are not in ``keep`` (names): left from an earlier export."""
    return [p for p in Path(out).iterdir() if is_cv_file(p.name) and p.name not in keep]

