"""TorchScript files are programs: check one against the operators our own exports use.

A TorchScript ``.pt`` file carries code (every method's graph), and ``torch.jit.load``
runs a module's ``__setstate__`` while loading. A crafted file with a valid metadata block
could read or write files (``aten::from_file``, ``aten::save``), share storage with another
process or call out to anything else TorchScript can reach. So before a file from a path
is used, :func:`check_script_file`:

1. reads the archive without loading it and refuses code that runs at load time
   (a ``__setstate__`` anywhere in its ``code/``; our exports define none);
2. loads it and walks every method of every submodule (graphs inlined, nested blocks
   included) and refuses any operator outside :data:`ALLOWED_OPERATORS`, the operators
   that the exports of every encoder, dynamics and host profile this package writes use
   (listed by :func:`openmm_closure.hosts.export_operators.collect_operators`; a test
   checks the list still covers them). The file, process, network and storage-sharing operators in
   :data:`REFUSED_OPERATORS` are never allowed, whatever the list says.

A model directory (``config.json`` + ``model.pt``, weights read with
``torch.load(weights_only=True)``) holds no code at all: it is the safe default for
:class:`~openmm_closure.reporters.ClosureReporter` and
:class:`~openmm_closure.couple.handover.ClosureSimulation`.

Example:
    >>> module = check_script_file("exported/p2d/encoder.pt")   # doctest: +SKIP
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any, Iterable

__all__ = ["ALLOWED_OPERATORS", "REFUSED_OPERATORS", "UnsafeScriptError", "check_script_file",
           "script_operators"]


class UnsafeScriptError(ValueError):
    """A TorchScript file uses an operator our exports never use (or code that runs at load)."""


#: never allowed: file, process, network and storage-sharing operators (prefix match)
REFUSED_OPERATORS = (
    "aten::from_file", "aten::save", "aten::load", "aten::_load", "aten::to_file",
    "aten::_share", "aten::share_memory", "aten::_shared", "aten::set_", "aten::storage",
    "aten::untyped_storage", "aten::_storage", "aten::_new_shared", "aten::_set_",
    "prim::PythonOp", "prim::Print",
    "aten::rpc", "aten::_rpc", "aten::_to_copy_dist", "c10d::", "rpc::", "profiler::",
    "aten::_call_end_callbacks", "aten::_record_function", "aten::wait", "prim::fork", "aten::fork",
    "prim::CallFunction", "prim::CallMethod", "prim::TupleIndex_dynamic",
    "aten::file", "aten::open", "aten::system", "aten::__getitem___file",
)

#: the operators of every export this package writes: ExportedEncoder, ExportedDynamics,
#: ClosureBias and the PLUMED / GROMACS host modules, over every registered encoder kind,
#: centred or not, one or two species, 2D and 3D, ODE and SDE, MLP and OnsagerNet drift
#: (regenerate with ``python -m openmm_closure.hosts.export_operators``)
ALLOWED_OPERATORS = frozenset("""
aten::Bool aten::Float aten::Int aten::__contains__ aten::__getitem__ aten::__is__ aten::__isnot__
aten::__not__ aten::_native_multi_head_attention aten::abs aten::add aten::all aten::any aten::append
aten::arange aten::atan2 aten::baddbmm aten::bincount aten::bmm aten::cat aten::chunk aten::clamp
aten::contiguous aten::cos aten::cumsum aten::dim aten::div aten::dropout aten::empty_like aten::eq
aten::exp aten::expand aten::eye aten::floor aten::floordiv aten::format aten::full aten::ge aten::gt
aten::index aten::index_add aten::index_put aten::index_put_ aten::index_select
aten::is_autocast_enabled aten::is_floating_point aten::is_grad_enabled aten::layer_norm aten::len
aten::linalg_inv aten::linear aten::log aten::log1p aten::lt aten::masked_fill_ aten::matmul aten::max
aten::mean aten::min aten::mul aten::ne aten::neg aten::numel aten::one_hot aten::ones aten::ones_like
aten::pad aten::permute aten::pow aten::randn aten::remainder aten::repeat aten::reshape aten::round
aten::scaled_dot_product_attention aten::scatter_reduce aten::select aten::sigmoid aten::silu
aten::silu_ aten::sin aten::size aten::slice aten::softmax aten::softplus aten::sort aten::split
aten::sqrt aten::squeeze aten::stack aten::str aten::sub aten::sum aten::tensor aten::to
aten::transpose aten::tril aten::triu_indices aten::unflatten aten::unsqueeze aten::view aten::warn
aten::where aten::zeros aten::zeros_like prim::Constant prim::GetAttr prim::If prim::ListConstruct
prim::ListUnpack prim::Loop prim::RaiseException prim::TupleConstruct prim::TupleUnpack
prim::Uninitialized prim::device prim::dtype prim::is_nested prim::requires_grad prim::type
prim::unchecked_cast
""".split())


def _node_kinds(block: Any) -> Iterable[str]:
    for node in block.nodes():
        yield node.kind()
        for sub in node.blocks():
            yield from _node_kinds(sub)


def script_operators(module: Any) -> set[str]:
    """Every operator (graph node kind) of every method of ``module`` and its submodules,
    calls inlined and nested blocks included.

    Arguments:
        module: a TorchScript module (``torch.jit.script`` / ``torch.jit.load``).

    Returns:
        The set of node kinds, e.g. ``{"aten::linear", "prim::If", ...}``.
    """
    kinds: set[str] = set()
    seen: set[int] = set()

    def walk(mod: Any) -> None:
        if id(mod) in seen:
            return
        seen.add(id(mod))
        c = mod._c
        for name in c._method_names():
            kinds.update(_node_kinds(c._get_method(name).inlined_graph))
        for child in mod.children():
            walk(child)

    walk(module)
    return kinds


def _refused(kind: str) -> bool:
    return any(kind.startswith(p) for p in REFUSED_OPERATORS)


def _code_at_load(path: Path) -> str | None:
    """The first archive member whose code runs while loading (a ``__setstate__``), or None.

    Raises:
        UnsafeScriptError: not a TorchScript archive.
    """
    try:
        with zipfile.ZipFile(path) as z:
            for info in z.infolist():
                if "/code/" in f"/{info.filename}" and info.filename.endswith(".py"):
                    text = z.read(info).decode("utf-8", errors="replace")
                    if "__setstate__" in text:
                        return info.filename
    except (zipfile.BadZipFile, OSError) as exc:
        raise UnsafeScriptError(f"{path} is not a TorchScript archive ({exc})") from None
    return None


def check_script_file(path: str | os.PathLike, map_location: Any = "cpu", extra_files: dict | None = None) -> Any:
    """Load a TorchScript file after checking it runs nothing at load time, then refuse it
    unless every operator of every method is one our exports use.

    Arguments:
        path: the ``.pt`` file.
        map_location: passed to ``torch.jit.load``.
        extra_files: ``_extra_files`` dict filled by ``torch.jit.load`` (e.g. ``{"metadata.json": ""}``).

    Returns:
        The loaded module (checked).

    Raises:
        UnsafeScriptError: code that runs at load, or an operator outside
            :data:`ALLOWED_OPERATORS` (the message names the first refused one).
    """
    import torch

    path = Path(path)
    member = _code_at_load(path)
    if member is not None:
        raise UnsafeScriptError(f"{path} is refused: it defines __setstate__ ({member}), code that runs "
                                "while loading; our exports have none (export the model again)")
    try:
        module = torch.jit.load(str(path), map_location=map_location,
                                _extra_files=extra_files if extra_files is not None else {})
    except Exception as exc:
        first = str(exc).strip().splitlines()
        raise UnsafeScriptError(f"{path} is not a loadable TorchScript file "
                                f"({first[0] if first else type(exc).__name__})") from None
    ops = script_operators(module)
    bad = sorted(k for k in ops if _refused(k) or k not in ALLOWED_OPERATORS)
    if bad:
        worst = next((k for k in bad if _refused(k)), bad[0])
        raise UnsafeScriptError(
            f"{path} is refused: it calls the operator {worst} that no openmm-closure export uses "
            f"({len(bad)} such operator{'s' if len(bad) > 1 else ''}: {', '.join(bad[:5])}); a TorchScript "
            "file is a program: load the model directory instead, or export it again")
    return module
