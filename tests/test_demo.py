"""``openmm-closure demo`` runs end to end at a reduced size and writes its table."""

import json
import subprocess
import sys

import numpy as np
import pytest


def test_demo_quick_runs_end_to_end(tmp_path):
    out = tmp_path / "demo"
    cmd = [sys.executable, "-m", "openmm_closure.cli", "demo", "--quick", "--out", str(out),
           "--workers", "1", "--threads", "1", "--no-progress"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    table = out / "report" / "metrics.md"
    assert table.is_file()
    assert "| ours | test | in-dst | MRE |" in table.read_text()
    assert "| ours | test | in-dst | MRE |" in proc.stdout
    res = json.loads((out / "report" / "metrics.json").read_text())
    assert res["status"] == "ok" and np.isfinite(res["value"])
    # the headline: the mean over trajectories, and the sum of the per-frame contributions
    assert res["value"] == pytest.approx(np.sum(res["over_time"]), rel=1e-9)
    assert res["value"] == pytest.approx(np.mean(res["extra"]["mre_per_trajectory"]), rel=1e-9)
    v = res["value"]
    shown = f"{v:.3g}" if abs(v) >= 1e-2 else f"{v:.2e}"
    assert f"| MRE | {shown} |" in table.read_text()
    for name in ("trajectories", "metric_over_time", "permutation"):
        assert (out / "report" / f"{name}.png").is_file()
        assert f"{name}: " in proc.stdout
    assert res["permutation_spread"] < 1e-6  # the closure variables ignore the particle order
    # a rerun resumes from the cache: no replica simulated again (the replica files are
    # untouched) and no epoch trained again (every epoch rewrites the checkpoint)
    cached = sorted((out / "data").rglob("replica_*.h5")) + [out / "model" / "checkpoint.pt"]
    assert len(cached) == 6 + 3 + 1 and all(p.is_file() for p in cached)
    before = {p: p.stat().st_mtime_ns for p in cached}
    proc2 = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc2.returncode == 0, proc2.stderr[-2000:]
    assert {p: p.stat().st_mtime_ns for p in cached} == before
    assert json.loads((out / "report" / "metrics.json").read_text())["value"] == pytest.approx(res["value"])


def test_demo_rejects_bad_sizes(tmp_path):
    from openmm_closure.cli import main

    assert main(["demo", "--quick", "--out", str(tmp_path / "d"), "--threads", "0"]) == 2
