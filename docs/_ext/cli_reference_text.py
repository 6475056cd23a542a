"""The text of the CLI reference, generated from the ``openmm-closure`` argument parsers.

:func:`cli_reference_rst` renders one section per subcommand of
:data:`openmm_closure.cli.COMMANDS`: its description, usage line and a table of every
argument with its help text (defaults included, as ``--help`` prints them). The Sphinx
directive in ``cli_reference.py`` parses it into the CLI reference page; the test suite
reads it to check that every subcommand and flag is listed. No Sphinx import here.
"""

from __future__ import annotations

import argparse

__all__ = ["cli_reference_rst"]

_SPECIAL = "\\*`|_<>[]"


def _escape(text: str) -> str:
    """Plain text for reStructuredText (no markup, no references)."""
    out = "".join("\\" + c if c in _SPECIAL else c for c in " ".join(str(text).split()))
    return out


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _invocation(action: argparse.Action, formatter: argparse.HelpFormatter) -> str:
    if not action.option_strings:
        return formatter._metavar_formatter(action, action.dest)(1)[0]
    if action.nargs == 0:
        return ", ".join(action.option_strings)
    metavar = formatter._format_args(action, action.dest.upper())
    return ", ".join(f"{o} {metavar}" for o in action.option_strings)


def _table(parser: argparse.ArgumentParser) -> list[str]:
    formatter = parser._get_formatter()
    lines = [".. list-table::", "   :header-rows: 1", "   :widths: 35 65", "",
             "   * - argument", "     - meaning"]
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction) or action.help == argparse.SUPPRESS:
            continue
        text = formatter._expand_help(action) if action.help else ""
        if getattr(action, "required", False) and action.option_strings:
            text = "required. " + text
        lines += [f"   * - ``{_invocation(action, formatter)}``", f"     - {_escape(text)}"]
    return lines


def _usage(parser: argparse.ArgumentParser) -> list[str]:
    usage = parser.format_usage().strip()
    return [".. code-block:: text", ""] + ["   " + line for line in usage.splitlines()] + [""]


def cli_reference_rst() -> str:
    """The reStructuredText of the whole CLI reference (every subcommand and flag)."""
    from openmm_closure.cli import COMMANDS, build_parser

    top = build_parser()
    lines = _usage(top) + _table(top) + [""]
    subs = _subparsers(top)
    for name in COMMANDS:
        if name not in subs:
            continue
        p = subs[name]
        title = f"openmm-closure {name}"
        lines += [title, "-" * len(title), "", _escape(p.description or ""), ""]
        lines += _usage(p) + _table(p) + [""]
        if p.epilog:
            lines += [_escape(p.epilog), ""]
    return "\n".join(lines) + "\n"
