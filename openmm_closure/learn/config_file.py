"""Flat TOML configuration files: ``train --config FILE.toml`` reads one, ``train
--print-config`` and every training run write one (``train_config.toml`` in the model
directory).

Standard library only. Reading uses :mod:`tomllib` (Python 3.11+; ``tomli`` on 3.10);
writing covers what a configuration holds: one table of strings, integers, floats,
booleans and lists of them. ``None`` has no TOML form: such a key is written as a
comment, and reading the file back leaves it at its default.

Example:
    >>> text = toml_text({"method": "ours", "epsilon": 0.01, "flow_hidden": [128, 128],
    ...                   "latent_dim": None}, header="a training run")
    >>> print(text, end="")
    # a training run
    method = "ours"
    epsilon = 0.01
    flow_hidden = [128, 128]
    # latent_dim: not set (the default applies)
    >>> parse_toml(text)
    {'method': 'ours', 'epsilon': 0.01, 'flow_hidden': [128, 128]}
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Mapping, Optional

from ..fileio import atomic_write_bytes

__all__ = ["parse_toml", "read_toml", "toml_text", "write_toml"]


def _tomllib():
    try:
        import tomllib
    except ImportError:  # Python 3.10
        try:
            import tomli as tomllib
        except ImportError as exc:
            raise ImportError("reading TOML on Python 3.10 needs tomli: pip install tomli") from exc
    return tomllib


def parse_toml(text: str, where: str = "TOML text") -> dict:
    """The table of a TOML document.

    Raises:
        ValueError: ``text`` is not valid TOML (the message names ``where`` and the line).
    """
    lib = _tomllib()
    try:
        return lib.loads(text)
    except lib.TOMLDecodeError as exc:
        raise ValueError(f"{where} is not valid TOML ({exc})") from exc


def read_toml(path: str | os.PathLike) -> dict:
    """The table of the TOML file ``path``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not UTF-8 or not valid TOML.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{p} is not a UTF-8 text file") from exc
    return parse_toml(text, str(p))


def _value(key: str, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(key, v) for v in value) + "]"
    raise TypeError(f"{key}: a {type(value).__name__} has no TOML form here")


def toml_text(values: Mapping[str, Any], header: Optional[str] = None) -> str:
    """One flat TOML table, a ``key = value`` line per entry in the order given.

    Arguments:
        values: bare TOML keys (letters, digits, underscores, dashes) mapped to
            strings, integers, floats, booleans, lists or tuples of them, or None
            (written as a comment, so the key keeps its default when read back).
        header: comment lines put first, each prefixed with ``#`` and a space.

    Returns:
        The document, ending with a newline.

    Raises:
        TypeError: a value of another type.
    """
    lines = [f"# {h}" if h else "#" for h in (header.splitlines() if header else [])]
    for key, value in values.items():
        if value is None:
            lines.append(f"# {key}: not set (the default applies)")
        else:
            lines.append(f"{key} = {_value(key, value)}")
    return "\n".join(lines) + "\n"


def write_toml(path: str | os.PathLike, values: Mapping[str, Any], header: Optional[str] = None) -> Path:
    """Write :func:`toml_text` of ``values`` to ``path`` atomically; returns the path."""
    p = Path(path)
    atomic_write_bytes(p, toml_text(values, header).encode("utf-8"))
    return p
