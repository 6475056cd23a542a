"""The ``openmm-closure`` command line.

Each subcommand lives in its own module of :mod:`openmm_closure.commands`, which
exposes ``configure(parser)`` to add its arguments and ``run(args) -> int`` to execute.
This module only dispatches: a subcommand's module is imported only when it is chosen
(the top-level ``--help`` needs just the names).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys

__all__ = ["main", "COMMANDS", "build_parser", "HelpFormatter"]

# subcommand -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "simulate": ("openmm_closure.commands.simulate", "simulate an ensemble of replicas of one system"),
    "ingest": ("openmm_closure.commands.ingest", "build a dataset from DatasetReporter files of your own system"),
    "train": ("openmm_closure.commands.train", "train encoder + flow decoder, then the dynamics"),
    "evaluate": ("openmm_closure.commands.evaluate", "roll a model out on test data and score it"),
    "export": ("openmm_closure.commands.export",
               "export the encoder, the dynamics and a closure bias for C++ hosts (TorchScript, PLUMED, "
               "GROMACS, .pt2)"),
    "rollout": ("openmm_closure.commands.rollout", "encode a configuration and extrapolate it"),
    "demo": ("openmm_closure.commands.demo", "run the end-to-end demo"),
    "render": ("openmm_closure.commands.render", "render a dataset as a video (a polymer also as pixel sets)"),
    "info": ("openmm_closure.commands.info", "say what a model, export, exported file or dataset is, and check it"),
}


class HelpFormatter(argparse.HelpFormatter):
    """``--help`` with every option's default: ``(default: VALUE)`` is added to an
    option's help unless the text already speaks of its default, or the default is
    None, False or empty (nothing is set)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (not action.option_strings or "default" in text.lower() or default is None
                or default is argparse.SUPPRESS or isinstance(default, bool) or default == []):
            return text
        shown = ",".join(map(str, default)) if isinstance(default, (list, tuple)) else str(default)
        return f"{text} (default: {shown.replace('%', '%%')})"


def _available() -> dict[str, tuple[str, str]]:
    found = {}
    for name, (module, text) in COMMANDS.items():
        if importlib.util.find_spec(module) is not None:
            found[name] = (module, text)
    return found


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The CLI parser. Only ``command``'s module is imported to add its arguments (the
    top-level help needs just the names), so ``simulate`` never loads torch, nor
    ``train`` OpenMM's plugins, at start-up. ``None`` configures every subcommand."""
    parser = argparse.ArgumentParser(
        prog="openmm-closure",
        description="Learned permutation-invariant closure dynamics for OpenMM.",
        formatter_class=HelpFormatter,
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of an error (anywhere on the command line)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND",
                                help="the subcommand to run; openmm-closure COMMAND --help lists its options")
    sub.required = True
    for name, (module, text) in _available().items():
        p = sub.add_parser(name, help=text, description=text, formatter_class=HelpFormatter)
        if command is None or name == command:
            importlib.import_module(module).configure(p)
        p.set_defaults(_module=module)
    return parser


def _subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices[name]
    raise KeyError(name)


def _reason(exc: BaseException) -> str:
    """One line for an expected failure: OSErrors name the file and the errno text."""
    if isinstance(exc, OSError) and exc.strerror:  # raised by the OS: errno text + file
        where = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror}{where}"
    text = str(exc).strip() or type(exc).__name__
    return " ".join(text.split())  # one line


#: failures a user can cause and fix; anything else is a bug and keeps its traceback
EXPECTED_ERRORS = (ValueError, OSError, ImportError, RuntimeError)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 2 a reported error, 130 interrupted).

    Expected failures (bad values, missing or unwritable files, a full disk, a locked
    directory, ...) print one line ``openmm-closure COMMAND: error: REASON`` on stderr;
    ``--debug`` shows the traceback instead.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    chosen = next((a for a in argv if not a.startswith("-")), None)
    try:
        parser = build_parser(chosen if chosen in COMMANDS else None)
        args = parser.parse_args(argv)
        if getattr(args, "config", None) is not None:
            # a subcommand's --config FILE: its values replace the defaults, then the
            # command line is parsed again, so flags given there win
            from .commands._config import config_defaults

            subparser = _subparser(parser, args.command)
            subparser.set_defaults(**config_defaults(subparser, args.config))
            args = parser.parse_args(argv)
        module = importlib.import_module(args._module)
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        if debug:
            raise
        print("openmm-closure: interrupted", file=sys.stderr)
        return 130
    except EXPECTED_ERRORS as exc:
        if debug:
            raise
        # one-line reason, non-zero exit; the traceback is noise for a user's typo
        name = chosen if chosen in COMMANDS else None
        print(f"openmm-closure{' ' + name if name else ''}: error: {_reason(exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
