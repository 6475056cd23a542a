"""CONTRIBUTING.md stays true: every ``python`` code block of it runs.

The blocks (one worked example per extension kind) are written to files and run in
order, each in a fresh namespace, in one subprocess (their registrations stay out of this test session).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", (ROOT / "CONTRIBUTING.md").read_text(), flags=re.S)


def test_every_extension_kind_has_a_worked_example():
    text = (ROOT / "CONTRIBUTING.md").read_text()
    blocks = _blocks()
    for registry in ("SYSTEM_REGISTRY", "register(\"rg\"", "DYNAMICS", "register_encoder", "OBJECTIVES", "METRIC_KINDS", "HOSTS"):
        assert any(registry in b for b in blocks), registry
    assert all(len(b.strip().splitlines()) <= 25 for b in blocks)
    assert "openmm_closure.systems" in text and "entry-points" in text


def test_contributing_examples_run(tmp_path):
    blocks = _blocks()
    files = []
    for i, code in enumerate(blocks):  # files, not strings: TorchScript reads a class's source
        files.append(tmp_path / f"contributing_block_{i}.py")
        files[-1].write_text(code)
    runner = ("import runpy, sys\n"
              "for path in sys.argv[1:]:\n"
              "    runpy.run_path(path, run_name='__main__')\n"
              "print('ran', len(sys.argv) - 1)\n")
    res = subprocess.run([sys.executable, "-c", runner, *map(str, files)], capture_output=True, text=True,
                         env=dict(os.environ, OMP_NUM_THREADS="1"), timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.split() == ["ran", str(len(blocks))]
