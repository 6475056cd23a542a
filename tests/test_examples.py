"""The runnable scripts users copy from: every ``examples/*.py`` and ``benchmarks/paper_table.py
--scale smoke`` run to the end (``slow``: ``pytest -m slow tests/test_examples.py``).

Each script runs as a user runs it: a subprocess in a fresh working directory. What it
prints and writes is read back.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _run(script: Path, args: list[str], cwd: Path, timeout: int = 600) -> str:
    res = subprocess.run([sys.executable, str(script), *args], cwd=cwd, capture_output=True, text=True,
                         timeout=timeout, env=ENV)
    assert res.returncode == 0, f"{script.name} failed:\n{res.stderr[-3000:]}"
    return res.stdout


def _attach_reporters(tmp: Path, models) -> None:
    out = _run(ROOT / "examples" / "attach_reporters.py", [], tmp)
    assert "trajectory.h5: 10 frames, 256 atoms" in out  # one report every 200 of 2000 steps
    from openmm_closure.data import read_replica

    rep = read_replica(tmp / "trajectory.h5")
    assert rep.positions.shape == (10, 256, 3) and set(rep.observables) == {"R_AB", "R_BA"}
    table = np.genfromtxt(tmp / "macro.csv", delimiter=",", names=True)
    assert len(table) == 10  # the two reporters saw the same frames and agree on the ratios
    np.testing.assert_allclose(table["R_AB"], rep.observables["R_AB"], rtol=1e-12)
    np.testing.assert_allclose(table["R_BA"], rep.observables["R_BA"], rtol=1e-12)


def _closure_handover(tmp: Path, models) -> None:
    out = _run(ROOT / "examples" / "closure_handover.py",
               ["--out", str(tmp / "h"), "--box", "8", "--replicas", "3", "--train-frames", "6", "--epochs", "2",
                "--md-frames", "2", "--horizon-frames", "3", "--after-frames", "2", "--samples", "4",
                "--platform", "CPU"], tmp)
    assert "surrogate: 4 members" in out and (tmp / "h" / "timeline.csv").is_file()


def _torchforce_bias(tmp: Path, models) -> None:
    out = _run(ROOT / "examples" / "torchforce_bias.py",
               ["--model", str(models["particles2d"]), "--out", str(tmp / "x"), "--steps", "5",
                "--platform", "Reference"], tmp)
    assert "bias energy" in out and (tmp / "x" / "collective_variable.pt").is_file()


#: the metadynamics example at test size: a tiny model trained in the script, 300 MD steps
METAD_SMALL = ["--n-particles", "12", "--train-replicas", "4", "--train-steps", "20", "--epochs", "2",
               "--steps", "300", "--pace", "20", "--platform", "CPU"]


def _metadynamics_closure(tmp: Path, models) -> None:
    out = _run(ROOT / "examples" / "metadynamics_closure.py", ["--out", str(tmp / "m"), *METAD_SMALL], tmp)
    assert "15 hills deposited" in out
    table = np.genfromtxt(tmp / "m" / "free_energy.csv", delimiter=",", names=True)
    fe = table["free_energy_kJ_per_mol"]
    assert len(fe) == 101 and np.all(np.isfinite(fe)) and fe.min() == 0.0 and fe.max() > 0.1
    png = (tmp / "m" / "free_energy.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def _your_own_system(tmp: Path, models, size: str = "default") -> None:
    """The walk-through at ``size``: small in the default suite, the documented size under slow."""
    out = _run(ROOT / "examples" / "your_own_system.py", ["--out", str(tmp / "o"), "--size", size,
                                                          "--platform", "Reference" if size == "small" else "CPU"],
               tmp)
    replicas, frames, solute = (4, 9, 6) if size == "small" else (12, 41, 10)
    assert f"ingested: Dataset(system='custom', replicas={replicas}, frames={frames}, n=[{solute}])" in out
    assert "no-closure" in out and "surrogate: 8 members" in out and f"live ẑ: {frames - 1} rows" in out
    from openmm_closure.data import load

    ds = load(tmp / "o" / "train")  # the example's own observable, each frame's box, the subset only
    assert ds.manifest["observables"] == ["solute_rg"] and ds.manifest["periodic"] is True
    r = ds.replica(0)
    assert r.box.shape == (frames, 3, 3) and np.ptp(r.box[:, 0, 0]) > 0  # the barostat moved the box
    metrics = json.loads((tmp / "o" / "metrics.json").read_text())
    assert np.isfinite(metrics["closure"]) and np.isfinite(metrics["no_closure"])


#: every example script and how the test runs it (small sizes where the script takes them)
EXAMPLES = {"attach_reporters.py": _attach_reporters, "closure_handover.py": _closure_handover,
            "torchforce_bias.py": _torchforce_bias, "metadynamics_closure.py": _metadynamics_closure,
            "your_own_system.py": _your_own_system}


def test_every_example_is_run_here():
    assert sorted(p.name for p in (ROOT / "examples").glob("*.py")) == sorted(EXAMPLES)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_example_runs(name, tmp_path, simulated_models):
    EXAMPLES[name](tmp_path, simulated_models)


def test_your_own_system_example_at_small_size(tmp_path):
    """The user's-own-system walk-through end to end at its small size (seconds); the slow
    run (test_example_runs) takes the documented default size."""
    _your_own_system(tmp_path, None, size="small")


def test_metadynamics_example_at_small_size(tmp_path):
    """The metadynamics example in the default suite: trains its tiny model, deposits 15 hills
    on the exported closure CV, writes a finite free-energy profile and its PNG."""
    _metadynamics_closure(tmp_path, None)


@pytest.mark.slow
def test_paper_table_smoke(tmp_path):
    out = _run(ROOT / "benchmarks" / "paper_table.py",
               ["--scale", "smoke", "--out", str(tmp_path / "pt"), "--workers", "1", "--no-progress"], tmp_path)
    res = json.loads((tmp_path / "pt" / "results.json").read_text())
    assert res["scale"] == "smoke"
    assert "| ours |" in out and "energy MRE" in out and "mixing MMD" in out
    ours = {(r["system"], r["regime"]): r for r in res["rows"] if r["method"] == "ours"}
    assert set(ours) == {(s, g) for s in ("particles2d", "lj-mixing") for g in ("in-dst", "diff-init", "diff-N")}
    assert all(r["status"] == "ok" and np.isfinite(r["value"]) for r in ours.values())
    # the same table selecting stage 2 on a set at another particle number too
    _run(ROOT / "benchmarks" / "paper_table.py",
         ["--scale", "smoke", "--out", str(tmp_path / "pt"), "--workers", "1", "--no-progress",
          "--systems", "lj-mixing", "--methods", "ours", "--seeds", "1", "--select-other-n"], tmp_path)
    sel = json.loads((tmp_path / "pt" / "results-select.json").read_text())
    assert "walls': [26.0, 5.5]" in sel["sizes"] and all(r["status"] == "ok" for r in sel["rows"] if r["method"] == "ours")
    cfg = (tmp_path / "pt" / "models-select" / "lj-mixing" / "ours" / "train_config.toml").read_text()
    assert str(tmp_path / "pt" / "data" / "lj-mixing" / "select") in cfg


def test_paper_table_parallel_training_equals_serial(tmp_path):
    """``--simulate-only`` writes the datasets and no model; ``--jobs 2`` (spawned processes,
    one torch thread each) trains the same models as the in-process loop: equal metrics."""
    import shutil

    args = ["--scale", "smoke", "--systems", "particles2d", "--methods", "no-closure,ours", "--seeds", "1",
            "--workers", "1", "--no-progress"]
    _run(ROOT / "benchmarks" / "paper_table.py", args + ["--out", str(tmp_path / "a"), "--simulate-only"], tmp_path)
    assert (tmp_path / "a" / "data" / "particles2d" / "test-diff-N" / "manifest.json").is_file()
    assert not (tmp_path / "a" / "models").exists() and not (tmp_path / "a" / "results.json").exists()
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    _run(ROOT / "benchmarks" / "paper_table.py", args + ["--out", str(tmp_path / "a")], tmp_path)
    _run(ROOT / "benchmarks" / "paper_table.py", args + ["--out", str(tmp_path / "b"), "--jobs", "2"], tmp_path)

    def values(d):
        rows = json.loads((tmp_path / d / "results.json").read_text())["rows"]
        return {(r["method"], r["regime"]): r["value"] for r in rows}

    a, b = values("a"), values("b")
    assert set(a) == set(b) and {m for m, _ in a} >= {"ours", "no-closure"}
    for key in a:
        assert a[key] == pytest.approx(b[key], rel=1e-6), key


def test_paper_table_prints_the_floor_beside_the_mixing_rows():
    """The floor column holds each MMD row's perfect-model floor and never wins a row;
    the energy rows, which have no finite-ensemble floor, show a dash."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("paper_table", ROOT / "benchmarks" / "paper_table.py")
    pt = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pt)
    rows = [{"system": s, "method": m, "regime": "in-dst", "seed": k, "status": "ok", "value": v + 1e-4 * k}
            for s, vals in (("lj-mixing", {"ours": 2e-2, "inve": 3e-2}), ("particles2d", {"ours": 4e-4, "inve": 5e-4}))
            for m, v in vals.items() for k in (0, 1)]
    for r in rows:  # the mixing rows carry the spread at the last frame (two observables)
        if r["system"] == "lj-mixing":
            r["extra"] = {"spread_ratio": [1.0 + r["seed"], 2.0 + r["seed"]] if r["method"] == "ours" else [1.1, 1.3]}
    floors = {"lj-mixing": {"perfect_model": {"in-dst": 5.7e-3}, "samples": 4,
                            "two_ensembles": {"value": 1.1e-2, "sizes": [64, 64]}}}
    text = pt.tables(rows, ["particles2d", "lj-mixing"], floors)
    ours_part = text.split("The paper")[0]
    lines: dict = {}
    for ln in ours_part.splitlines():  # the first table's rows (the spread table repeats the row names)
        if ln.startswith("| "):
            lines.setdefault(ln.split(" |")[0], ln)
    assert lines["| task, regime"].endswith("| floor (perfect model) |")
    mix = lines["| mixing MMD, in-dst"].split(" | ")
    assert mix[-1] == "5.70e-03 |" and "**2.00e-02 ± 5.0e-05**" in lines["| mixing MMD, in-dst"]
    assert lines["| energy MRE, in-dst"].endswith("| — |")
    assert "ours / floor = 3.5" in text  # the verdict line relates ours to the floor
    assert "floor (perfect model)" not in text.split("The paper")[-1]
    # the spread table: ours' seeds average (1+2)/2 = 1.5 and (2+3)/2 = 2.5, mean 2.0; InvE 1.2
    assert "| mixing MMD, in-dst | InvE" not in text and "| regime | InvE | ours |" in text
    assert "| mixing MMD, in-dst | 1.20 (1.20, 1.20) | 2.00 (1.50, 2.50) |" in text  # the paper's table has no such column
