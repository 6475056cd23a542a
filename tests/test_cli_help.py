"""The command line explains itself: every option of every subcommand has help text that
shows its default, ``--device`` means one thing everywhere, ``train --config`` /
``--print-config`` take and give every train option, the model directory stores the
options of its run, and the CLI reference page of the docs lists every subcommand and flag.

The parsers are walked from :data:`openmm_closure.cli.COMMANDS`, so a new subcommand or
flag is covered without touching this file.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
from pathlib import Path

import pytest

from openmm_closure.cli import COMMANDS, build_parser, main

ROOT = Path(__file__).resolve().parents[1]


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("the CLI has no subcommands")


@pytest.fixture(scope="module")
def parsers() -> dict[str, argparse.ArgumentParser]:
    return _subparsers(build_parser())


def _arguments(parser: argparse.ArgumentParser):
    return [a for a in parser._actions if not isinstance(a, argparse._HelpAction)]


def _shown(default) -> str | None:
    """How --help should print a default, or None when there is nothing to show."""
    if default is None or default is argparse.SUPPRESS or isinstance(default, bool) or default == []:
        return None
    if isinstance(default, (list, tuple)):
        return ",".join(map(str, default))
    return str(default)


def test_every_subcommand_is_configured(parsers):
    assert set(parsers) == set(COMMANDS)
    for name, p in parsers.items():
        assert p.description, name
        assert _arguments(p), f"{name} has no arguments"


def test_every_option_has_help(parsers):
    missing = [f"{name} {a.option_strings[0] if a.option_strings else a.dest}"
               for name, p in parsers.items() for a in _arguments(p)
               if not (a.help or "").strip() or a.help == argparse.SUPPRESS]
    assert not missing, f"options without help text: {missing}"


def test_every_default_is_shown(parsers):
    hidden = []
    for name, p in parsers.items():
        formatter = p._get_formatter()
        for a in _arguments(p):
            shown = _shown(a.default)
            if a.option_strings and shown is not None and shown not in formatter._expand_help(a):
                hidden.append(f"{name} {a.option_strings[0]} (default {shown})")
    assert not hidden, f"defaults --help does not show: {hidden}"


def test_help_prints_every_flag(capsys):
    for name in COMMANDS:
        with pytest.raises(SystemExit) as stop:
            main([name, "--help"])
        assert stop.value.code == 0
        out = capsys.readouterr().out
        for a in _arguments(_subparsers(build_parser(name))[name]):
            for flag in a.option_strings:
                assert flag in out, (name, flag)
    assert "(default: 0.001)" in " ".join(_help_of("train", capsys).split())  # --lr


def _help_of(name, capsys) -> str:
    with pytest.raises(SystemExit):
        main([name, "--help"])
    return capsys.readouterr().out


def test_version(capsys):
    from openmm_closure import __version__

    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.strip() == f"openmm-closure {__version__}"


def test_device_means_one_thing(parsers):
    devices = {name: a for name, p in parsers.items() for a in p._actions if a.dest == "device"}
    assert {"train", "evaluate", "rollout"} <= set(devices)
    ref = devices["train"]
    for name, a in devices.items():
        assert (a.option_strings, tuple(a.choices), a.default, a.help) == \
            (ref.option_strings, tuple(ref.choices), ref.default, ref.help), name
    assert tuple(ref.choices) == ("auto", "cpu", "cuda") and ref.default == "auto"


def test_device_auto_is_resolved_and_cuda_is_not_faked():
    import torch

    from openmm_closure.learn.model import resolve_device

    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="no CUDA device"):
            resolve_device("cuda")


def test_every_training_option_is_a_train_flag(parsers):
    from openmm_closure.learn.training import TrainConfig

    dests = {a.dest for a in parsers["train"]._actions}
    fields = {f.name for f in dataclasses.fields(TrainConfig)} - {"progress"}  # --no-progress
    assert fields <= dests, f"TrainConfig fields without a train flag: {sorted(fields - dests)}"


def _print_config(args, capsys) -> str:
    assert main(["train", "--print-config", *args]) == 0
    return capsys.readouterr().out


def test_print_config_round_trips_through_config(tmp_path, capsys):
    from openmm_closure.learn.config_file import parse_toml

    text = _print_config(["--data", "d", "--out", "o", "--lr", "3e-4", "--flow-hidden", "32,32", "--amp",
                          "--no-center", "--frames-per-trajectory", "5"], capsys)
    values = parse_toml(text)
    assert values["lr"] == 3e-4 and values["flow_hidden"] == [32, 32] and values["amp"] is True
    assert values["center"] is False and values["frames_per_trajectory"] == 5 and "latent_dim" not in values
    path = tmp_path / "run.toml"
    path.write_text(text)
    assert _print_config(["--config", str(path)], capsys) == text
    # flags on the command line win over the file, wherever they stand
    again = parse_toml(_print_config(["--lr", "1e-2", "--config", str(path), "--flow-hidden", "8"], capsys))
    assert again["lr"] == 1e-2 and again["flow_hidden"] == [8] and again["amp"] is True


def test_config_keys_take_dashes_or_underscores(tmp_path, capsys):
    from openmm_closure.learn.config_file import parse_toml

    path = tmp_path / "run.toml"
    path.write_text('epochs-stage1 = 3\nsigma0_sq = 1e-4\nmethod = "inve"\n')
    values = parse_toml(_print_config(["--config", str(path)], capsys))
    assert (values["epochs_stage1"], values["sigma0_sq"], values["method"]) == (3, 1e-4, "inve")


@pytest.mark.parametrize("text, message", [
    ("foo = 1\n", "unknown key 'foo'"),
    ('lr = "fast"\n', "lr = 'fast'"),
    ("epochs_stage1 = 2.5\n", "expected an integer"),
    ('method = "best"\n', "choose from"),
    ("amp = 1\n", "expected true or false"),
    ("lr = [1, 2]\n", "takes one value"),
    ("lr = \n", "not valid TOML"),
])
def test_bad_config_file_is_one_line(tmp_path, capsys, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    assert main(["train", "--config", str(path), "--data", "d", "--out", "o"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err and str(path) in err


def test_train_needs_data_and_out(capsys):
    assert main(["train", "--data", "d"]) == 2
    assert "--out is required" in capsys.readouterr().err


def test_model_directory_stores_the_run_options_and_they_repeat_it(tmp_path, one_torch_thread):
    """A run driven by a config file writes train_config.toml beside config.json; training
    again from that file gives the same weights, bitwise."""
    import torch

    from openmm_closure.learn.config_file import read_toml
    from test_training import _dataset

    _dataset(tmp_path / "ds")
    (tmp_path / "run.toml").write_text(
        f'data = "{tmp_path / "ds"}"\nsamples = 16\nflow_transforms = 1\nflow_hidden = [8, 8]\n'
        'dynamics_hidden = [8, 8]\nbatch_size = 4\nbatch_size_stage2 = 8\nval_fraction = 0.25\n'
        'epochs_stage1 = 1\nepochs_stage2 = 1\nseed = 5\nno_progress = true\n')
    first, second = tmp_path / "m1", tmp_path / "m2"
    assert main(["train", "--config", str(tmp_path / "run.toml"), "--out", str(first)]) == 0
    stored = read_toml(first / "train_config.toml")
    assert stored["seed"] == 5 and stored["flow_hidden"] == [8, 8] and stored["out"] == str(first)
    assert "resume" not in stored and (first / "config.json").is_file()
    assert main(["train", "--config", str(first / "train_config.toml"), "--out", str(second),
                 "--no-progress"]) == 0
    a = torch.load(first / "model.pt", weights_only=True)
    b = torch.load(second / "model.pt", weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _cli_reference() -> str:
    sys.path.insert(0, str(ROOT / "docs" / "_ext"))
    try:
        from cli_reference_text import cli_reference_rst
    finally:
        sys.path.pop(0)
    return cli_reference_rst()


def test_cli_reference_page_lists_every_subcommand_and_flag(parsers):
    page = (ROOT / "docs" / "cli.md").read_text()
    assert re.search(r"^\.\. cli-reference::", page, re.M), "docs/cli.md does not render the generated reference"
    text = _cli_reference()
    for name, p in parsers.items():
        assert f"openmm-closure {name}\n" in text, name
        section = text.split(f"openmm-closure {name}\n", 1)[1]
        nxt = [f"openmm-closure {other}\n" for other in COMMANDS if other != name]
        for marker in nxt:
            section = section.split(marker, 1)[0]
        for a in _arguments(p):
            for flag in a.option_strings:
                assert re.search(r"``[^`]*(?<![\w-])" + re.escape(flag) + r"(?![\w-])", section), (name, flag)
    built = ROOT / "docs" / "_build" / "html" / "cli.html"
    sources = [ROOT / "docs" / "cli.md", *(ROOT / "openmm_closure" / "commands").glob("*.py")]
    if built.is_file() and built.stat().st_mtime > max(f.stat().st_mtime for f in sources):
        html = built.read_text()
        for name, p in parsers.items():
            for a in _arguments(p):
                for flag in a.option_strings:
                    assert flag in html, (name, flag)


def test_api_reference_documents_every_module():
    from test_imports import MODULES

    pages = "\n".join(p.read_text() for p in (ROOT / "docs" / "api").glob("*.md"))
    documented = set(re.findall(r"automodule:: (\S+)", pages))
    wanted = {m for m in MODULES if not m.startswith(("openmm_closure.cli", "openmm_closure.commands"))}
    assert not wanted - documented, f"modules missing from docs/api/*.md: {sorted(wanted - documented)}"
    assert not documented - set(MODULES), f"docs/api/*.md names modules that do not exist: {documented - set(MODULES)}"
