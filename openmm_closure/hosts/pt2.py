r"""``torch.export`` + AOTInductor packages (``.pt2``): the successor of TorchScript for C++.

Three packages, each loaded in C++ by ``torch::inductor::AOTIModelPackageLoader`` and
called with ``run(std::vector<at::Tensor>)`` (float32 CPU tensors; CUDA packages need a
GPU at export time, not built here):

- ``encoder.aoti.pt2``: ``(positions (n, 3) float32 nm, types (n,) int64) -> [(d,) ẑ]``,
  n dynamic (>= 2).
- ``dynamics.aoti.pt2``: a fixed-steps rollout on the *scaled* state,
  ``(z0 (K, D) float32, noise (steps, K, D) float32 N(0, 1)) -> [(K, steps + 1, D)]``,
  K dynamic, ``steps`` and ``dt`` baked in (the metadata says which). The noise is an
  input so the rollout is a pure function (an ODE ignores it); a data-dependent step
  count does not export.
- ``collective_variable.aoti.pt2``: ``(positions (n, 3) float32 nm, closure_k () kJ/mol,
  closure_target ()) -> [() energy kJ/mol, () ẑ_c]``. AOTInductor packages hold no
  autograd graph: hosts that need forces use the TorchScript profiles.

Metadata: the same JSON as the TorchScript files, beside the package
(``*.aoti.json``) and inside it (AOTInductor metadata key ``metadata.json``, read in C++
by ``loader.get_metadata()``).

AOTInductor compiles C++ with the system compiler (``$CXX``, default ``g++``): without
one :func:`find_compiler` raises a ValueError naming what is missing.
"""

import json
import os
import shutil
from pathlib import Path
from typing import Optional

import torch
from torch import Tensor, nn

from .common import EncoderCore

__all__ = ["find_compiler", "RolloutFixed", "BiasPt2", "export_pt2", "load_pt2_metadata"]

FILES = {"encoder": "encoder.aoti.pt2", "dynamics": "dynamics.aoti.pt2",
         "collective_variable": "collective_variable.aoti.pt2"}
METADATA = "metadata.json"


def find_compiler() -> str:
    """The C++ compiler AOTInductor will use (``$CXX`` or ``g++``, as torch looks it up).

    Raises:
        ValueError: no such program.
    """
    cxx = os.environ.get("CXX", "g++")
    found = shutil.which(cxx)
    if found is None:
        where = f"CXX={cxx}" if "CXX" in os.environ else "g++ on PATH"
        raise ValueError(f"--format pt2 needs a C++ compiler for AOTInductor: {where} was not found "
                         "(install g++ or set CXX to a C++ compiler)")
    return found


class RolloutFixed(nn.Module):
    """A rollout of a fixed number of steps with the noise as an input.

    Arguments:
        dynamics: the model's dynamics (a deep copy is taken).
        steps: number of steps (>= 1).
        dt: step in ps.
    """

    def __init__(self, dynamics: nn.Module, steps: int, dt: float):
        super().__init__()
        import copy

        if int(steps) < 1:
            raise ValueError(f"rollout steps must be >= 1, got {steps}")
        self.dynamics = copy.deepcopy(dynamics)
        self.steps = int(steps)
        self.dt = float(dt)

    def forward(self, z0: Tensor, noise: Tensor) -> Tensor:
        """(K, D) scaled z0, (steps, K, D) noise -> (K, steps + 1, D) scaled states."""
        # the one rollout loop (the dynamics' own); an ODE ignores the noise
        return self.dynamics.rollout(z0, self.steps, self.dt, noise if self.dynamics.stochastic else None)


class BiasPt2(nn.Module):
    """Harmonic bias ``0.5 k (ẑ_c - target)²`` with k and target as () inputs.

    Arguments:
        encoder: the model's set encoder.
        component: biased closure component c.
        types: (n,) baked species or None (one species, any n).
    """

    def __init__(self, encoder: nn.Module, component: int, types: Optional[Tensor]):
        super().__init__()
        self.core = EncoderCore(encoder)
        self.component = int(component)
        self.register_buffer("types", torch.zeros(0, dtype=torch.long) if types is None else types.clone())
        self.fixed = types is not None

    def forward(self, positions: Tensor, closure_k: Tensor, closure_target: Tensor):
        """Returns (() energy kJ/mol, () ẑ_c), dtype of positions."""
        types = self.types if self.fixed else torch.zeros(positions.shape[0], dtype=torch.long)
        zc = self.core(positions, types)[self.component].to(positions.dtype)
        return 0.5 * closure_k * (zc - closure_target) ** 2, zc


def _compile(module: nn.Module, args: tuple, dynamic_shapes, path: Path, metadata: dict) -> None:
    import warnings

    with warnings.catch_warnings(), _quiet_logs("torch._inductor.scheduler", "torch.export.pt2_archive._package"):
        # torch.export's own deprecation notices (pytree internals); Inductor's log of the
        # code generation error the fallback handles; the loader's note that a scalar
        # package was built on a vector CPU (it runs on any x86-64 CPU)
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"(torch|copyreg)")
        _compile_quiet(module, args, dynamic_shapes, path, metadata)


class _quiet_logs:
    """Raise the named loggers above CRITICAL for a ``with`` block."""

    def __init__(self, *names: str):
        import logging

        self._loggers = [logging.getLogger(n) for n in names]
        self._levels: list = []

    def __enter__(self):
        import logging

        self._levels = [lg.level for lg in self._loggers]
        for lg in self._loggers:
            lg.setLevel(logging.CRITICAL + 1)
        return self

    def __exit__(self, *exc):
        for lg, level in zip(self._loggers, self._levels):
            lg.setLevel(level)


def _compile_quiet(module: nn.Module, args: tuple, dynamic_shapes, path: Path, metadata: dict) -> None:
    from ..fileio import atomic_write_bytes

    module = module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    from ..provenance import stamp

    text = json.dumps(stamp(metadata), indent=2, sort_keys=True) + "\n"
    try:
        ep = torch.export.export(module, args, dynamic_shapes=dynamic_shapes, strict=False)
    except Exception as exc:
        raise RuntimeError(f"torch.export cannot export {path.name}: {str(exc).splitlines()[0]}") from exc
    tmp = path.with_name("." + path.stem + ".partial.pt2")
    base = {"aot_inductor.metadata": {METADATA: text}}
    try:
        try:
            torch._inductor.aoti_compile_and_package(ep, package_path=str(tmp), inductor_configs=base)
        except Exception as exc:
            if not _vectoriser_failed(exc):
                raise
            # Inductor's vectorising C++ generator asserts on a scatter whose index and value
            # do not vary along the vectorised loop (the member count of the one set, on
            # AVX-512 CPUs): generate the scalar C++ of the same graph instead
            torch._inductor.aoti_compile_and_package(ep, package_path=str(tmp),
                                                     inductor_configs={**base, "cpp.simdlen": 1})
    except Exception as exc:
        tmp.unlink(missing_ok=True)
        raise RuntimeError(f"AOTInductor cannot compile {path.name}: {_compiler_message(exc)}") from exc
    os.replace(tmp, path)
    atomic_write_bytes(path.with_name(path.name.replace(".pt2", ".json")), text.encode())


def _chain(exc: BaseException):
    """``exc`` and the exceptions it was raised from."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _vectoriser_failed(exc: BaseException) -> bool:
    """Whether Inductor's code generation asserted (``InductorError: AssertionError`` from
    the vectorising CPU generator, ``torch/_inductor/codegen/cpp.py``); any other failure
    is the user's to see."""
    for e in _chain(exc):
        if isinstance(e, AssertionError):
            return True
        if type(e).__name__ == "InductorError" and str(e).lstrip().startswith("AssertionError"):
            return True
    return False


def _compiler_message(exc: BaseException) -> str:
    """One line saying why AOTInductor failed: the C++ compiler named when it is the cause."""
    for e in _chain(exc):
        if type(e).__name__ in ("InvalidCxxCompiler", "CppCompileError"):
            cxx = os.environ.get("CXX", "g++")
            return (f"the C++ compiler {cxx!r} failed ({type(e).__name__}); set CXX to a working C++ "
                    "compiler (g++ or clang++)")
    first = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {first[0]}" if first else type(exc).__name__


def load_pt2_metadata(path) -> dict:
    """The metadata stored inside a ``.pt2`` package written here."""
    loader = torch._inductor.aoti_load_package(str(path))
    meta = loader.get_metadata()
    if METADATA not in meta:
        raise ValueError(f"{path} carries no {METADATA}; was it written by openmm-closure export?")
    return json.loads(meta[METADATA])


def export_pt2(model, out: Path, meta: dict, *, component: int, force_constant: float, target: float,
               types: Optional[Tensor], steps: int, probe) -> list:
    """Write the three ``.pt2`` packages and validate each against the eager model.

    Arguments:
        model: the loaded ClosureModel (CPU).
        out: export directory.
        meta: the common metadata of this export.
        component, force_constant, target: the bias (as for ``collective_variable.pt``).
        types: (n,) baked species for the bias, or None (one species); a multi-species
            model without types gets no bias package.
        steps: rollout steps baked into ``dynamics.aoti.pt2``.
        probe: (n, 3) nm validation configuration.

    Returns:
        The written package paths.

    Raises:
        ValueError: no C++ compiler (before anything is written).
        RuntimeError: a package disagrees with the eager model.
    """
    find_compiler()
    import logging

    # torch's C++ extension helper logs a CUDA_HOME notice on import, irrelevant to a CPU package
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    n = len(probe)
    pos = torch.as_tensor(probe, dtype=torch.float32)
    t_probe = types if types is not None else torch.zeros(n, dtype=torch.long)
    written = []
    pt2_meta = {"device": "cpu", "aoti": True}
    # encoder
    enc = EncoderCore(model.encoder).float()
    dim_n = torch.export.Dim("n", min=2, max=1 << 20)
    path = out / FILES["encoder"]
    _compile(enc, (pos, t_probe), ({0: dim_n}, {0: dim_n}), path,
             {**meta, **pt2_meta, "kind": "encoder",
              "call": "run({positions (n,3) float32 nm, types (n,) int64}) -> {(d,) zhat}"})
    want = model.encoder(pos, t_probe).float()
    _check(path, [pos, t_probe], [want])
    written.append(path)
    # dynamics
    roll = RolloutFixed(model.dynamics, steps, model.dt).float()
    k = 2
    g = torch.Generator().manual_seed(0)
    z0 = (torch.rand(k, model.dim, generator=g) * 2 - 1).float()
    noise = torch.randn(steps, k, model.dim, generator=g).float()
    dim_k = torch.export.Dim("k", min=1, max=1 << 16)
    path = out / FILES["dynamics"]
    _compile(roll, (z0, noise), ({0: dim_k}, {1: dim_k}), path,
             {**meta, **pt2_meta, "kind": "dynamics", "rollout_steps": int(steps), "rollout_dt": float(model.dt),
              "call": "run({z0 (K,D) float32 scaled, noise (steps,K,D) float32}) -> {(K,steps+1,D) scaled}"})
    with torch.no_grad():  # the eager rollout, in the model's dtype
        zd, nd = z0.to(model.dtype), noise.to(model.dtype)
        want = model.dynamics.rollout(zd, steps, model.dt, nd if model.dynamics.stochastic else None)
    _check(path, [z0, noise], [want])
    written.append(path)
    # bias
    if types is not None or model.n_species == 1:
        bias = BiasPt2(model.encoder, component, types).float()
        kt = (torch.tensor(float(force_constant)), torch.tensor(float(target)))
        shapes = ({0: dim_n}, None, None) if types is None else None
        path = out / FILES["collective_variable"]
        _compile(bias, (pos, *kt), shapes, path,
                 {**meta, **pt2_meta, "kind": "collective_variable", "component": int(component),
                  "force_constant": float(force_constant), "target": float(target),
                  "n_particles": None if types is None else int(types.numel()),
                  "call": "run({positions (n,3) float32 nm, closure_k () kJ/mol, closure_target ()}) "
                          "-> {() energy kJ/mol, () zhat_c}"})
        zc = model.encoder(pos, t_probe)[component].float()
        _check(path, [pos, *kt], [0.5 * kt[0] * (zc - kt[1]) ** 2, zc])
        written.append(path)
    return written


def _check(path: Path, inputs: list, want: list, atol: float = 1e-5) -> None:
    with _quiet_logs("torch.export.pt2_archive._package"):
        loader = torch._inductor.aoti_load_package(str(path))
    with torch.no_grad():
        got = loader(*inputs)
    got = list(got) if isinstance(got, (list, tuple)) else [got]
    for g, w in zip(got, want):
        dev = float(((g.double() - w.detach().double()).abs() / w.detach().double().abs().clamp(min=1.0)).max())
        if tuple(g.shape) != tuple(w.shape) or dev > atol:
            raise RuntimeError(f"{path.name}: the AOTInductor package differs from the eager model ({dev:.3g})")
