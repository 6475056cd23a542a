"""``train`` under ``torchrun`` (DistributedDataParallel on gloo, CPU): real torchrun
processes, no mocks.

- two processes over a global batch train the same weights as one process (to 1e-6),
  through uneven and empty shares, and differ from one process on twice the batch (the
  baselines too, and one torchrun process equals the plain run bitwise, under ``-m slow``);
- (slow) a checkpoint resumes with another process count, to rounding;
- a two-process run killed (torchrun and its workers, SIGKILL) after its first
  checkpoint resumes under torchrun to the uninterrupted run's weights, bitwise;
- bad input (fewer training sets than processes, a global batch smaller than the
  process count, an incomplete torchrun environment) gets one clear line.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from openmm_closure.cli import main
from openmm_closure.data import ArrayDataset
from openmm_closure.learn.distributed import TORCHRUN_VARIABLES, Distributed, share
from openmm_closure.learn.training import TrainConfig, _check_world, load_checkpoint

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ROOT = Path(__file__).resolve().parents[1]
#: 3 training replicas x 4 frames = 12 stage-1 sets, 9 stage-2 pairs: with --batch-size 11
#: the last stage-1 batch holds 1 set (rank 1's share is empty); with --batch-size-stage2 4
#: the stage-2 steps are 4, 4, 1 pairs
SMALL = ["--samples", "16", "--flow-transforms", "1", "--flow-hidden", "8,8", "--dynamics-hidden", "8,8",
         "--batch-size", "11", "--batch-size-stage2", "4", "--val-fraction", "0.25", "--device", "cpu",
         "--threads", "1", "--no-progress"]


def _dataset(path, replicas=4, frames=4, n=12):
    rng = np.random.default_rng(0)
    pos = (rng.random((replicas, frames, n, 3)) * 5).astype(np.float32)
    pos[..., 2] = 0
    types = (np.arange(n) % 2).astype(np.int64)
    obs = {"R_AB": rng.random((replicas, frames)), "R_BA": rng.random((replicas, frames))}
    ArrayDataset(pos, types, np.arange(frames) * 0.4, obs,
                 {"system": "lj-mixing", "observables": ["R_AB", "R_BA"], "params": {"cutoff": 1.0}}).save(path)
    return path


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return _dataset(tmp_path_factory.mktemp("ddp") / "ds")


def _env():
    env = {k: v for k, v in os.environ.items() if k not in TORCHRUN_VARIABLES}
    env.update(OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return env


def _torchrun_cmd(nproc, args):
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--standalone",
            "-m", "openmm_closure.cli", *args]


def _torchrun(nproc, args, timeout=300):
    return subprocess.run(_torchrun_cmd(nproc, args), capture_output=True, text=True, timeout=timeout,
                          env=_env(), cwd=ROOT)


def _weights(d):
    return torch.load(Path(d) / "model.pt", weights_only=True)


def _max_diff(a, b):
    assert a.keys() == b.keys()
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a if a[k].numel())


def _error_lines(stderr):
    return [line for line in stderr.splitlines() if line.startswith("openmm-closure train: error:")]


def test_share_splits_in_order_without_loss():
    for n in range(0, 12):
        for p in range(1, 5):
            parts = [share(n, r, p) for r in range(p)]
            assert parts[0][0] == 0 and parts[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(parts, parts[1:]))  # contiguous, in rank order
            sizes = [b - a for a, b in parts]
            assert max(sizes) - min(sizes) <= 1


BASE = ["--epochs-stage1", "2", "--epochs-stage2", "4", "--seed", "3", *SMALL]


@pytest.fixture(scope="module")
def two_process_run(dataset, tmp_path_factory):
    """The model directory of an uninterrupted two-process run on ``dataset``."""
    out = tmp_path_factory.mktemp("ddp-full") / "model"
    res = _torchrun(2, ["train", "--data", str(dataset), *BASE, "--out", str(out)])
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.count("model written to") == 1  # rank 0 reports
    return out


def test_two_processes_train_what_one_process_trains(dataset, two_process_run, tmp_path):
    import json

    base = ["train", "--data", str(dataset), *BASE]
    assert main([*base, "--out", str(tmp_path / "p1")]) == 0  # plain, one process
    p1, p2 = _weights(tmp_path / "p1"), _weights(two_process_run)
    # the SDE's data scale is a statistic of the encoded frames, which each run encodes in
    # float32: it agrees to rounding, relative (1e-5 measured); every weight to 1e-6
    assert torch.allclose(p1["dynamics.data_var"], p2["dynamics.data_var"], rtol=1e-4, atol=0)
    assert _max_diff(*({k: v for k, v in w.items() if k != "dynamics.data_var"} for w in (p1, p2))) <= 1e-6
    # the losses both runs logged are the whole batch's means
    h1 = json.loads((tmp_path / "p1" / "history.json").read_text())
    h2 = json.loads((two_process_run / "history.json").read_text())
    for stage, epochs in (("stage1", 2), ("stage2", 4)):
        assert len(h1[stage]) == len(h2[stage]) == epochs
        for a, b in zip(h1[stage], h2[stage]):
            assert a["train"] == pytest.approx(b["train"], rel=1e-5)
            assert a["val"] == pytest.approx(b["val"], rel=1e-5)
    assert h1.get("stage2_best_epoch") == h2.get("stage2_best_epoch")
    # the comparison sees the batch semantics: one process on twice the batch (what a
    # per-process --batch-size would mean) trains other weights
    assert main([*[a if a != "11" else "22" for a in base], "--out", str(tmp_path / "p1x2")]) == 0
    assert _max_diff(_weights(tmp_path / "p1x2"), p2) > 1e-4


@pytest.mark.slow
def test_one_torchrun_process_is_the_plain_run_bitwise(dataset, tmp_path):
    base = ["train", "--data", str(dataset), *BASE]
    res = _torchrun(1, [*base, "--out", str(tmp_path / "t1")])
    assert res.returncode == 0, res.stderr[-3000:]
    assert main([*base, "--out", str(tmp_path / "p1")]) == 0
    a, b = _weights(tmp_path / "p1"), _weights(tmp_path / "t1")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_resume_across_process_counts(dataset, two_process_run, tmp_path):
    # a two-process checkpoint resumed by one plain process, and the other way round:
    # equal to the uninterrupted two-process run to rounding
    base = ["train", "--data", str(dataset), *BASE]
    a, b = tmp_path / "two-then-one", tmp_path / "one-then-two"
    assert _torchrun(2, [*base, "--out", str(a), "--stop-after", "3"]).returncode == 0
    assert main([*base, "--out", str(a), "--resume"]) == 0
    assert main([*base, "--out", str(b), "--stop-after", "1"]) == 0
    res = _torchrun(2, [*base, "--out", str(b), "--resume"])
    assert res.returncode == 0, res.stderr[-3000:]
    full = _weights(two_process_run)
    assert _max_diff(_weights(a), full) <= 1e-6 and _max_diff(_weights(b), full) <= 1e-6


@pytest.mark.slow
@pytest.mark.parametrize("method", ["ae-aug", "inve", "ae-inve-cd"])
def test_baselines_train_the_same_with_two_processes(dataset, tmp_path, method):
    # ae-aug (random permutations) and inve (random frame pairs) draw for the whole batch
    # and keep their share's draws; ae-inve-cd is deterministic
    base = ["train", "--data", str(dataset), "--method", method, "--epochs-stage1", "2", "--epochs-stage2", "1",
            "--seed", "3", *SMALL]
    res = _torchrun(2, [*base, "--out", str(tmp_path / "p2")])
    assert res.returncode == 0, res.stderr[-3000:]
    assert main([*base, "--out", str(tmp_path / "p1")]) == 0
    assert _max_diff(_weights(tmp_path / "p1"), _weights(tmp_path / "p2")) <= 1e-6


def _children(pid):
    """The pids whose parent is ``pid`` (torchrun starts each worker in its own session)."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry.name))
    return out


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds torchrun's workers through /proc")
def test_resume_after_kill_matches_uninterrupted(dataset, two_process_run, tmp_path):
    base = ["train", "--data", str(dataset), *BASE]

    out = tmp_path / "cut"
    proc = subprocess.Popen(_torchrun_cmd(2, [*base, "--out", str(out)]), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=_env(), cwd=ROOT, start_new_session=True)
    try:
        deadline = time.time() + 240
        while not (out / "checkpoint.pt").exists():
            assert proc.poll() is None and time.time() < deadline, "no checkpoint before the run ended"
            time.sleep(0.02)
        workers = _children(proc.pid)
        assert len(workers) == 2
        for pid in workers:  # the whole job dies at once, as on a lost node
            os.kill(pid, signal.SIGKILL)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    ck = load_checkpoint(out / "checkpoint.pt")
    assert not ck["done"] and not (out / "model.pt").exists()  # really interrupted
    assert ck["world_size"] == 2 and len(ck["rng_ranks"]) == 2  # every process's RNG state

    res = _torchrun(2, [*base, "--out", str(out), "--resume"])
    assert res.returncode == 0, res.stderr[-3000:]
    a, b = _weights(two_process_run), _weights(out)
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def _one_line(res, *words):
    lines = _error_lines(res.stderr)
    assert res.returncode != 0 and lines, res.stderr[-3000:]
    assert len(set(lines)) == 1, lines  # every process says the same one line
    for w in words:
        assert w in lines[0], lines[0]
    # no traceback from the package's own code (torchrun adds its own failure report)
    assert "openmm_closure" + os.sep not in "".join(
        line for line in res.stderr.splitlines() if line.strip().startswith("File ")), res.stderr[-3000:]
    return lines[0]


def test_bad_input_gets_one_line(tmp_path, monkeypatch, capsys):
    ds = _dataset(tmp_path / "ds")
    base = ["train", "--data", str(ds), "--epochs", "1", *SMALL]
    # 1 training replica, every 4th frame: 1 stage-1 set per epoch for 2 processes
    few = [*base, "--frame-stride", "4", "--val-fraction", "0.75", "--out", str(tmp_path / "m1")]
    _one_line(_torchrun(2, few), "2 processes", "only 1 stage-1")
    assert not (tmp_path / "m1" / "checkpoint.pt").exists()

    # a global batch smaller than the process count (the check every process makes first)
    with pytest.raises(ValueError, match="--batch-size 1 is the global batch .* at least 2"):
        _check_world(TrainConfig(data="", out="", batch_size=1), Distributed(world=2))
    with pytest.raises(ValueError, match="--batch-size-stage2 3 .* at least 4"):
        _check_world(TrainConfig(data="", out="", batch_size=4, batch_size_stage2=3), Distributed(world=4))
    _check_world(TrainConfig(data="", out="", batch_size=1, epochs_stage1=0, epochs_stage2=0), Distributed(world=2))

    # an incomplete or garbled torchrun environment, without torchrun
    for extra, words in (({"WORLD_SIZE": "2"}, ("incomplete torchrun environment", "RANK")),
                         ({"WORLD_SIZE": "2", "RANK": "x", "LOCAL_RANK": "0"}, ("RANK='x'",)),
                         ({"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0"}, ("MASTER_ADDR",))):
        with monkeypatch.context() as m:
            for k, v in extra.items():
                m.setenv(k, v)
            m.delenv("MASTER_ADDR", raising=False)
            rc = main([*base, "--out", str(tmp_path / "m2")])
        err = capsys.readouterr().err.strip()
        assert rc == 2 and len(err.splitlines()) == 1, err
        for w in words:
            assert w in err, err
