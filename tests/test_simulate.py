"""The simulate command: determinism, SIGKILL + resume, parallel workers, bad input."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from openmm_closure.data import load, replica_filename
from openmm_closure.md.simulate import parse_param, replica_seed, simulate_ensemble
from conftest import assert_same_dataset

ARGS = ["particles2d", "--replicas", "6", "--n-particles", "60", "--seed", "3",
        "--platform", "Reference", "--param", "steps=300", "--param", "report_interval=1",
        "--no-progress"]


def _cli(out, *extra):
    return [sys.executable, "-m", "openmm_closure.cli", "simulate", *ARGS, "--out", str(out), *extra]


def test_replica_seed():
    seeds = [replica_seed(7, i) for i in range(100)]
    assert seeds == [replica_seed(7, i) for i in range(100)]
    assert len(set(seeds)) == 100 and all(0 < s < 2**31 for s in seeds)
    assert replica_seed(8, 0) != replica_seed(7, 0)


def test_parse_param():
    assert parse_param("steps=20") == ("steps", 20)
    assert parse_param("walls=[32, 26]") == ("walls", [32, 26])
    assert parse_param("relax-platform=CPU") == ("relax_platform", "CPU")
    with pytest.raises(ValueError):
        parse_param("steps")


def test_sigkill_then_resume_equals_uninterrupted(tmp_path):
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    subprocess.run(_cli(ref), check=True, capture_output=True, timeout=120)

    proc = subprocess.Popen(_cli(cut), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while not (cut / replica_filename(1)).exists():
        assert proc.poll() is None, "simulate finished before it could be killed"
        assert time.time() < deadline
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = sorted(p.name for p in cut.glob("replica_?????.h5"))
    assert 2 <= len(finished) < 6, finished           # killed part-way
    assert not json.loads((cut / "manifest.json").read_text())["complete"]

    r = subprocess.run(_cli(cut), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert not list(cut.glob("*.part.h5"))
    assert_same_dataset(ref, cut)


def test_workers_match_serial(tmp_path):
    kw = dict(n_particles=20, seed=5, platform="Reference", progress=False, steps=10, report_interval=2)
    simulate_ensemble("particles2d", tmp_path / "w1", 3, workers=1, **kw)
    simulate_ensemble("particles2d", tmp_path / "w2", 3, workers=2, **kw)
    assert_same_dataset(tmp_path / "w1", tmp_path / "w2")
    ds = load(tmp_path / "w1")
    assert ds.positions.shape == (3, 6, 20, 3)
    assert ds.manifest["seeds"] == [replica_seed(5, i) for i in range(3)]
    # frame 0 is the initial state of the builder
    from openmm_closure.systems import build

    spec = build("particles2d", n_particles=20, seed=replica_seed(5, 1), steps=10, report_interval=2)
    np.testing.assert_allclose(ds.positions[1, 0], spec.positions, atol=1e-6)
    # rerunning a finished dataset does no work and changes nothing
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "w1").glob("replica_*.h5")}
    simulate_ensemble("particles2d", tmp_path / "w1", 3, workers=1, **kw)
    assert before == {p.name: p.stat().st_mtime_ns for p in (tmp_path / "w1").glob("replica_*.h5")}


def test_different_dataset_in_out_dir_is_refused(tmp_path):
    out = tmp_path / "d"
    kw = dict(n_particles=10, seed=1, platform="Reference", progress=False, steps=4, report_interval=2)
    simulate_ensemble("particles2d", out, 2, **kw)
    snapshot = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(FileExistsError, match="different dataset"):
        simulate_ensemble("lj-mixing", out, 2, platform="Reference", progress=False)
    with pytest.raises(FileExistsError, match="different dataset"):
        simulate_ensemble("particles2d", out, 2, **{**kw, "seed": 2})
    r = subprocess.run([sys.executable, "-m", "openmm_closure.cli", "simulate", "polymer", "--out", str(out),
                        "--replicas", "1", "--no-progress"], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "different dataset" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert snapshot == {p.name: p.read_bytes() for p in out.iterdir()}


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="unknown system"):
        simulate_ensemble("argon", tmp_path / "x", 1, progress=False)
    with pytest.raises(ValueError, match="replicas"):
        simulate_ensemble("particles2d", tmp_path / "x", 0, progress=False)
    with pytest.raises(ValueError, match="unknown parameter"):
        simulate_ensemble("particles2d", tmp_path / "x", 1, progress=False, platform="Reference", bogus=1)
    assert not (tmp_path / "x").exists()
