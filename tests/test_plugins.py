"""Extension points: every CLI choice list is a registry's, and a package outside this one
adds a system, an observable and a dynamics kind through entry points alone.

The plugin (``tests/plugin_pkg``: the module ``closure_trap`` and its
``closure_trap-0.1.dist-info`` with ``entry_points.txt``) is put on ``PYTHONPATH`` of
the subprocesses, so ``importlib.metadata`` finds it as an installed distribution. Then
``simulate --system trap2d --batch 4``, ``train --dynamics damped``, ``evaluate`` and
``export`` run on it end to end, and no line of ``openmm_closure/`` names it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from openmm_closure.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = ROOT / "tests" / "plugin_pkg"


def _registries() -> dict[tuple[str, str], tuple[str, ...]]:
    """(command, option dest) -> the names of the registry its choices come from."""
    from openmm_closure.catalog import SYSTEM_REGISTRY
    from openmm_closure.hosts.profiles import FORMATS, HOSTS, REFUSED_HOSTS
    from openmm_closure.models.dynamics import DRIFTS, DYNAMICS
    from openmm_closure.models.registry import ENCODERS
    from openmm_closure.learn.objectives import OBJECTIVES
    from openmm_closure.md.simulate import REGIMES

    return {
        ("simulate", "system"): SYSTEM_REGISTRY.names(),
        ("simulate", "system_option"): SYSTEM_REGISTRY.names(),
        ("simulate", "regime"): tuple(REGIMES),
        ("train", "method"): OBJECTIVES.names(),
        ("train", "dynamics"): DYNAMICS.names(),
        ("train", "drift"): DRIFTS.names(),
        ("train", "encoder"): ENCODERS.names(),
        ("export", "host"): HOSTS.names() + tuple(REFUSED_HOSTS),
        ("export", "format"): FORMATS.names(),
    }


#: choice lists that are fixed settings, not extension kinds
FIXED = {"device", "select"}


def test_every_cli_choice_list_is_a_registry():
    subs = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    wanted = _registries()
    seen = set()
    for command, parser in subs.items():
        for action in parser._actions:
            if action.choices is None or action.dest in FIXED:
                continue
            key = (command, action.dest)
            assert key in wanted, f"{command} {action.option_strings or action.dest}: choices from no registry"
            assert tuple(action.choices) == tuple(wanted[key]), key
            seen.add(key)
    assert seen == set(wanted)
    # today's encoders are all offered, not 2 of 6
    assert {"deepset", "settransformer", "none", "flat-mlp"} <= set(wanted[("train", "encoder")])


def _env() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(
        [str(PLUGIN), *filter(None, [os.environ.get("PYTHONPATH")])]))
    return env


def _cli(*args: str, timeout: int = 180) -> str:
    cmd = [sys.executable, "-m", "openmm_closure.cli", *args]
    res = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=timeout)
    assert res.returncode == 0, f"{' '.join(args[:1])}: {res.stdout[-2000:]}{res.stderr[-3000:]}"
    return res.stdout


def test_plugin_entries_appear_in_help_and_names_do_not_import_them():
    code = ("import sys, contextlib, io\n"
            "from openmm_closure.catalog import SYSTEM_REGISTRY\n"
            "from openmm_closure.models.dynamics import DYNAMICS\n"
            "names = SYSTEM_REGISTRY.names() + DYNAMICS.names()\n"
            "print('IMPORTED' if 'closure_trap' in sys.modules else 'LAZY', names)\n"
            "from openmm_closure.cli import build_parser\n"
            "buf = io.StringIO()\n"
            "for cmd in ('simulate', 'train'):\n"
            "    with contextlib.redirect_stdout(buf), contextlib.suppress(SystemExit):\n"
            "        build_parser().parse_args([cmd, '--help'])\n"
            "print(buf.getvalue())")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(), timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    first, helps = res.stdout.split("\n", 1)
    assert first.startswith("LAZY") and "'trap2d'" in first and "'damped'" in first  # listed, not imported
    assert "trap2d" in helps and "damped" in helps
    assert "damped" not in subprocess.run([sys.executable, "-m", "openmm_closure.cli", "train", "--help"],
                                          capture_output=True, text=True, timeout=120).stdout  # not installed


def test_no_line_of_the_package_names_the_plugin():
    for path in (ROOT / "openmm_closure").rglob("*.py"):
        text = path.read_text()
        for word in ("trap2d", "closure_trap", "DampedLinearODE", '"damped"', "trap_radius"):
            assert word not in text, (path, word)


def test_plugin_system_and_dynamics_end_to_end(tmp_path):
    data, model, report, export = (tmp_path / n for n in ("data", "model", "eval", "export"))
    _cli("simulate", "--system", "trap2d", "--batch", "4", "--replicas", "4", "--out", str(data),
         "--param", "steps=40", "--platform", "Reference", "--no-progress")
    manifest = json.loads((data / "manifest.json").read_text())
    assert manifest["system"] == "trap2d" and len(manifest["n_particles"]) == 4
    # the plugin's observable, found through its entry point, was computed at every frame
    # and equals its definition on the stored coordinates
    import tables

    from openmm_closure.data import replica_filename

    assert "trap_radius" in manifest["observables"], manifest["observables"]
    with tables.open_file(str(data / replica_filename(0))) as h5:
        xy = h5.root.coordinates[:][:, :, :2]
        radius = h5.get_node("/observables/trap_radius")[:]
        assert h5.get_node("/observables/trap_radius").attrs["units"] == "nanometers"
    assert np.allclose(radius, np.sqrt((xy ** 2).sum(-1)).mean(-1), rtol=1e-5, atol=1e-6)
    _cli("train", "--data", str(data), "--out", str(model), "--dynamics", "damped", "--epochs", "2",
         "--batch-size", "4", "--samples", "8", "--flow-transforms", "1", "--flow-hidden", "8,8",
         "--encoder-hidden", "8", "--encoder-embed", "8", "--no-progress", "--device", "cpu", "--threads", "1")
    config = json.loads((model / "config.json").read_text())
    assert config["dynamics"]["kind"] == "damped" and config["system"] == "trap2d"
    _cli("evaluate", "--model", str(model), "--data", str(data), "--out", str(report), "--no-plots",
         "--device", "cpu", "--permutations", "2", "--no-diagnostic")
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["status"] == "ok" and metrics["metric"] == "mre" and np.isfinite(metrics["value"])
    _cli("export", "--model", str(model), "--out", str(export))
    # the exported dynamics is the plugin's, and rolls out as the model does (in a fresh process)
    check = (
        "import torch, numpy as np\n"
        "from openmm_closure.learn.model import load_model\n"
        f"m = load_model({str(model)!r})\n"
        "assert type(m.dynamics).__name__ == 'DampedLinearODE', type(m.dynamics)\n"
        f"x = torch.jit.load({str(export / 'dynamics.pt')!r})\n"
        "z0 = torch.linspace(-0.5, 0.5, m.dim).repeat(3, 1).to(m.dtype)\n"
        "a = m.rollout(z0, 10); b = x.rollout(z0, 10, m.dt, None)\n"
        "assert not bool(x.stochastic) and torch.allclose(a, b, atol=1e-6), (a - b).abs().max()\n"
        "print('OK', float((a[:, -1] - a[:, 0]).abs().max()))\n")
    res = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, env=_env(), timeout=120)
    assert res.returncode == 0 and res.stdout.startswith("OK"), res.stdout + res.stderr[-2000:]
    assert float(res.stdout.split()[1]) > 0  # the trained linear flow moves the state


@pytest.mark.parametrize("name", ["particles2d", "lj-mixing", "polymer"])
def test_every_system_record_builds_with_its_test_parameters(name):
    from openmm_closure import catalog, systems
    from openmm_closure.md import simulate

    record = catalog.SYSTEM_REGISTRY[name]
    assert catalog.CATALOG[name] is record.facts and systems.SYSTEMS[name] is record.build_fn()
    assert set(record.regimes) <= set(simulate.REGIMES)
    params = dict(record.test_params)
    n = params.pop("n_particles")
    for regime in record.regimes:
        spec = systems.build(name, n_particles=n, regime=regime, seed=1, **params)
        assert spec.name == name and spec.positions.shape == (n, 3)
        assert spec.n_frames == 11 and spec.n_steps == 20  # cheap: a few frames
    with pytest.raises(ValueError, match="regime"):
        systems.build(name, n_particles=n, regime="no-such-regime", **params)


def test_a_batch_of_a_system_without_batched_builder_runs_one_by_one(tmp_path, monkeypatch):
    """``run_batch`` of a registered system with ``batched=None`` runs each replica as its
    own Context: the files equal the unbatched run's, bit for bit."""
    import tables

    from openmm_closure.catalog import SYSTEM_REGISTRY
    from openmm_closure.data import replica_filename
    from openmm_closure.md.simulate import replica_seed, simulate_ensemble
    from openmm_closure.md.simulate_batch import run_batch

    monkeypatch.syspath_prepend(str(PLUGIN))
    from closure_trap.observables import TRAP_RADIUS
    from closure_trap.system import TRAP

    from openmm_closure.md.observables import OBSERVABLES

    SYSTEM_REGISTRY.register("trap2d", TRAP, replace=True)
    OBSERVABLES.register("trap_radius", TRAP_RADIUS, replace=True)  # in this process: no entry point
    try:
        params = {"steps": 8, "report_interval": 4}
        one = simulate_ensemble("trap2d", tmp_path / "one", 2, platform="Reference", progress=False, batch=4,
                                **params)
        (tmp_path / "batch").mkdir()
        tasks = [{"index": i, "path": str(tmp_path / "batch" / replica_filename(i)), "system": "trap2d",
                  "regime": "in-dst", "n_particles": None, "seed": replica_seed(0, i), "platform": "Reference",
                  "params": params, "deterministic": True} for i in range(2)]
        assert len(run_batch(tasks)) == 2
    finally:
        SYSTEM_REGISTRY.unregister("trap2d")
        OBSERVABLES.unregister("trap_radius")
    for i in range(2):
        with tables.open_file(str(one / replica_filename(i))) as a, \
                tables.open_file(str(tmp_path / "batch" / replica_filename(i))) as b:
            x, y = a.root.coordinates[:], b.root.coordinates[:]
            assert x.shape == (3, 8, 3) and np.array_equal(x, y)
            assert np.abs(x[-1] - x[0]).max() > 0  # Brownian motion moved them


@pytest.mark.parametrize("encoder, method, ok", [("flat-mlp", "ours", False), ("none", "inve", False),
                                                 ("flat-mlp", "ae-aug", True), ("settransformer", "ours", True),
                                                 ("deepset-setdec", "ae-inve", False)])
def test_an_encoder_a_method_brings_itself_is_refused_elsewhere(encoder, method, ok):
    from openmm_closure.learn.training import TrainConfig

    cfg = TrainConfig(data="d", out="o", encoder=encoder, method=method)
    if ok:
        cfg.check()
    else:
        with pytest.raises(ValueError, match=f"--encoder {encoder} is the encoder --method"):
            cfg.check()
