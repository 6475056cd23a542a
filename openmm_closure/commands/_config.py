"""``--config FILE.toml`` and ``--print-config`` for a subcommand: any flag as a TOML key.

A key is the flag's name without the leading dashes, ``-`` or ``_`` alike
(``flow-hidden`` or ``flow_hidden`` for ``--flow-hidden``). Values have the flag's type;
comma-separated flags take a list (``flow_hidden = [128, 128]``), switches a boolean
(``amp = true``), repeatable flags a list. The file's values replace the defaults and
flags given on the command line win (:func:`openmm_closure.cli.main` parses twice).
"""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_config_arguments", "config_defaults"]

_NOT_OPTIONS = {"help", "version", "config", "print_config"}


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--config FILE.toml`` and ``--print-config`` to ``parser``."""
    g = parser.add_argument_group("configuration file")
    g.add_argument("--config", default=None, metavar="FILE.toml",
                   help="read options from a TOML file, one key per flag (flow_hidden = [128, 128], amp = true); "
                        "flags on the command line override the file")
    g.add_argument("--print-config", action="store_true",
                   help="print the effective options (defaults, then --config, then flags) as TOML and exit "
                        "without running")


def _is_switch(action: argparse.Action) -> bool:
    return action.nargs == 0


def _convert(action: argparse.Action, key: str, value: Any, where: str) -> Any:
    def bad(why: str) -> ValueError:
        return ValueError(f"{where}: {key} = {value!r}: {why}")

    if isinstance(value, dict):
        raise bad("a table; options are plain keys at the top of the file")
    if _is_switch(action):
        if not isinstance(value, bool):
            raise bad("expected true or false")
        return value  # the key names the destination, so the value is stored as written
    if isinstance(action, argparse._AppendAction) or action.nargs in ("+", "*"):
        items = value if isinstance(value, list) else [value]  # a flag of several values (--select-data A B)
        return [_convert_one(action, key, v, bad) for v in items]
    if isinstance(value, list):
        if action.type is None or action.type in (int, float, str):
            raise bad("a list, but the flag takes one value")
        value = ",".join(str(v) for v in value)  # comma-separated flags (e.g. --flow-hidden 128,128)
    return _convert_one(action, key, value, bad)


def _convert_one(action: argparse.Action, key: str, value: Any, bad) -> Any:
    if isinstance(value, bool) and action.type is not None:
        raise bad("a boolean, but the flag takes a value")
    if isinstance(value, str) and action.type is not None:
        try:
            value = action.type(value)
        except (argparse.ArgumentTypeError, TypeError, ValueError) as exc:
            raise bad(str(exc) or "not a valid value") from None
    elif action.type is float and isinstance(value, (int, float)):
        value = float(value)
    elif action.type is int and not isinstance(value, int):
        raise bad("expected an integer")
    elif action.type is None and not isinstance(value, str):
        raise bad("expected a string")
    if action.choices is not None and value not in action.choices:
        raise bad(f"choose from {', '.join(map(str, action.choices))}")
    return value


def config_defaults(parser: argparse.ArgumentParser, path) -> dict:
    """The defaults the TOML file ``path`` sets for ``parser``: {dest: value}, each value
    converted and checked as the flag's own would be.

    Raises:
        ValueError: an unknown key, a value of the wrong type or not among the choices,
            or a file that is not TOML (one line naming the file and the key).
        FileNotFoundError: no such file.
    """
    from ..learn.config_file import read_toml

    where = str(path)
    table = read_toml(path)
    actions = {a.dest: a for a in parser._actions if a.dest not in _NOT_OPTIONS and a.dest != argparse.SUPPRESS}
    out = {}
    for key, value in table.items():
        dest = key.replace("-", "_")
        if dest not in actions:
            known = ", ".join(sorted(actions))
            raise ValueError(f"{where}: unknown key {key!r} (not a flag of this command; known: {known})")
        out[dest] = _convert(actions[dest], key, value, where)
    return out
