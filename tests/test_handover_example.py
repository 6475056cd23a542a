"""examples/closure_handover.py runs end to end at small sizes and writes its files."""

import csv
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_closure_handover_example(tmp_path):
    out = tmp_path / "h"
    args = ["--out", str(out), "--box", "8", "--replicas", "3", "--train-frames", "6", "--epochs", "2",
            "--md-frames", "2", "--horizon-frames", "3", "--after-frames", "2", "--samples", "4",
            "--platform", "CPU"]
    res = subprocess.run([sys.executable, str(ROOT / "examples" / "closure_handover.py"), *args],
                         capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr[-3000:]
    assert "lift: observables" in res.stdout and "surrogate: 4 members" in res.stdout
    with open(out / "timeline.csv") as f:
        sources = [r["source"] for r in csv.DictReader(f)]
    assert sources == ["md"] * 3 + ["surrogate"] * 3 + ["lift"] + ["md"] * 2
    with open(out / "closure.csv") as f:
        rows = list(csv.reader(f))
    assert rows[0][:4] == ["step", "time_ps", "R_AB", "R_BA"] and len(rows) > 3
    assert (out / "timeline.png").stat().st_size > 1000
