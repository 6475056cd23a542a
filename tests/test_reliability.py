"""Reliability: hostile but realistic inputs get one clear error, never code execution, a
silently wrong model, a lost replica or a traceback. One test (or a few) per finding."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from openmm_closure import load_model
from openmm_closure.cli import main
from openmm_closure.data import ArrayDataset, fingerprint, load, replica_filename
from openmm_closure.fileio import LOCK_FILE, atomic_write_bytes, file_mode

from conftest import contracting_clusters

pytestmark = [
    pytest.mark.usefixtures("one_torch_thread"),
    pytest.mark.filterwarnings("ignore:.*torch.jit.* is deprecated:DeprecationWarning"),
]

TINY = ["--samples", "8", "--flow-transforms", "1", "--flow-hidden", "8,8", "--dynamics-hidden", "8,8",
        "--batch-size", "4", "--batch-size-stage2", "8", "--no-progress", "--val-fraction", "0.25",
        "--epochs", "2", "--device", "cpu"]
SIM = ["--replicas", "2", "--n-particles", "20", "--platform", "Reference", "--no-progress",
       "--param", "steps=8", "--param", "report_interval=4"]


def _one_line_error(capsys, rc, *words):
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for w in words:
        assert w in err, err
    return err


def _lj_dataset(path, n=12, dt=0.4, seed=0):
    rng = np.random.default_rng(seed)
    r, f = 4, 4
    pos = (rng.random((r, f, n, 3)) * 5).astype(np.float32)
    pos[..., 2] = 0
    types = (np.arange(n) % 2).astype(np.int64)
    obs = {"R_AB": rng.random((r, f)), "R_BA": rng.random((r, f))}
    ArrayDataset(pos, types, np.arange(f) * dt, obs,
                 {"system": "lj-mixing", "observables": ["R_AB", "R_BA"], "params": {"cutoff": 1.0}}).save(path)
    return path


@pytest.fixture(scope="module")
def lj_model(tmp_path_factory):
    """A tiny trained two-species (SDE) model directory."""
    base = tmp_path_factory.mktemp("rel")
    _lj_dataset(base / "ds")
    torch.set_num_threads(1)
    assert main(["train", "--data", str(base / "ds"), "--out", str(base / "model"), *TINY]) == 0
    return base / "model"


# ------------------------------------------------------------------ 1. code from a checkpoint
class _Payload:
    """Unpickling this object would create ``marker`` (builtins.open(marker, 'w'))."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_crafted_checkpoint_does_not_run_its_payload(lj_model, tmp_path, capsys):
    _lj_dataset(tmp_path / "ds")
    out = tmp_path / "run"
    out.mkdir()
    marker = tmp_path / "PWNED"
    torch.save({"stage": 1, "epoch": 1, "model": {}, "config": {}, "x": _Payload(marker)}, out / "checkpoint.pt")
    rc = main(["train", "--data", str(tmp_path / "ds"), "--out", str(out), "--resume", *TINY])
    _one_line_error(capsys, rc, "not a plain training checkpoint")
    assert not marker.exists()
    # the same payload inside model.pt of a model directory (a config without hashes)
    mdir = tmp_path / "model"
    mdir.mkdir()
    cfg = json.loads((lj_model / "config.json").read_text())
    cfg.pop("sha256")
    (mdir / "config.json").write_text(json.dumps(cfg))
    torch.save({"x": _Payload(marker)}, mdir / "model.pt")
    with pytest.raises(FileNotFoundError, match="no integrity.json"):  # not a model openmm-closure wrote
        load_model(mdir)
    from openmm_closure.integrity import seal_model_dir

    seal_model_dir(mdir)  # even with a record over the crafted files, the payload never runs
    with pytest.raises(ValueError, match="not a plain weights file"):
        load_model(mdir)
    assert not marker.exists()
    (mdir / "config.json").write_text("{}")
    seal_model_dir(mdir)
    with pytest.raises(ValueError, match="config.json is malformed"):
        load_model(mdir)


def test_no_pickle_loading_in_the_package():
    root = Path(__file__).resolve().parents[1] / "openmm_closure"
    for p in root.rglob("*.py"):
        text = p.read_text()
        assert "weights_only=False" not in text, p
        assert "import pickle" not in text, p


def test_checkpoint_holds_only_plain_types(tmp_path):
    _lj_dataset(tmp_path / "ds")
    out = tmp_path / "run"
    assert main(["train", "--data", str(tmp_path / "ds"), "--out", str(out), *TINY, "--stop-after", "1"]) == 0
    ck = torch.load(out / "checkpoint.pt", weights_only=True)  # raises on anything pickled
    assert ck["data_fingerprint"] == fingerprint(tmp_path / "ds")


# ------------------------------------------------------------------ 2. datasets: one validator
def test_incomplete_dataset_is_refused(tmp_path, capsys):
    d = _lj_dataset(tmp_path / "ds")
    m = json.loads((d / "manifest.json").read_text())
    m["complete"] = False
    (d / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ValueError, match="incomplete dataset.*complete: false"):
        load(d)
    rc = main(["train", "--data", str(d), "--out", str(tmp_path / "m"), *TINY])
    _one_line_error(capsys, rc, "incomplete")
    assert not (tmp_path / "m" / "model.pt").exists()


@pytest.mark.parametrize("other, match", [
    (dict(n=14), "particles, the manifest says"),
    (dict(dt=0.2), "dt_frame"),
])
def test_manifest_of_another_dataset_is_refused(tmp_path, other, match):
    a = _lj_dataset(tmp_path / "a")
    b = _lj_dataset(tmp_path / "b", **other)
    shutil.copy(b / "manifest.json", a / "manifest.json")
    with pytest.raises(ValueError, match=match):
        load(a)


def test_species_and_observables_checked_against_files(tmp_path):
    a = _lj_dataset(tmp_path / "a")
    m = json.loads((a / "manifest.json").read_text())
    (a / "manifest.json").write_text(json.dumps({**m, "observables": ["R_AB", "energy"]}))
    with pytest.raises(ValueError, match=r"lacks the observables \['energy'\]"):
        load(a)
    (a / "manifest.json").write_text(json.dumps({**m, "species": ["X", "Y"]}))
    with pytest.raises(ValueError, match="species"):
        load(a)
    (a / "manifest.json").write_text(json.dumps({**m, "format_version": 99}))
    with pytest.raises(ValueError, match="format_version"):
        load(a)


def test_missing_manifest_keys_come_from_the_files_not_defaults(tmp_path):
    a = _lj_dataset(tmp_path / "a")
    m = json.loads((a / "manifest.json").read_text())
    for k in ("dt_frame", "observables", "species"):
        m.pop(k, None)
    (a / "manifest.json").write_text(json.dumps(m))
    ds = load(a)
    assert ds.manifest["dt_frame"] == pytest.approx(0.4)
    assert ds.manifest["observables"] == ["R_AB", "R_BA"]
    assert ds.manifest["species"] == ["A", "B"]


def test_replica_without_coordinates_is_not_finished(tmp_path):
    import tables

    a = _lj_dataset(tmp_path / "a")
    with tables.open_file(str(a / replica_filename(1)), "w") as h:  # an empty replica
        h.create_array("/", "species", obj=np.zeros(12, dtype=np.int64))
    with pytest.raises(ValueError, match="not a finished replica"):
        load(a)
    (a / replica_filename(1)).write_bytes(b"garbage")
    with pytest.raises(ValueError, match="not a readable replica"):
        load(a)


# ------------------------------------------------------------------ 3. two simulates on one --out
def test_two_simulate_processes_on_one_out(tmp_path):
    out = tmp_path / "d"
    out.mkdir()
    stale = out / "replica_00000.h5.999999-dead.part.h5"  # left by a killed run
    stale.write_bytes(b"x")
    env = {**os.environ, "HDF5_USE_FILE_LOCKING": "FALSE", "OMP_NUM_THREADS": "1"}
    args = [sys.executable, "-m", "openmm_closure.cli", "simulate", "particles2d", "--out", str(out),
            "--replicas", "3", "--n-particles", "40", "--seed", "4", "--platform", "Reference",
            "--param", "steps=600", "--param", "report_interval=100", "--no-progress"]
    first = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not ((out / LOCK_FILE).exists() and (out / LOCK_FILE).read_text().strip() == str(first.pid)):
        assert first.poll() is None, first.communicate()
        assert time.time() < deadline
        time.sleep(0.02)
    second = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
    assert first.poll() is None, "the first run ended before the second started; make it longer"
    o, e = first.communicate(timeout=300)
    assert first.returncode == 0, e
    assert second.returncode == 2, second.stderr
    assert f"in use by another simulate run (pid {first.pid})" in second.stderr
    assert len(second.stderr.strip().splitlines()) == 1
    assert not stale.exists() and not list(out.glob("*.part.h5"))
    # the dataset equals one simulated alone
    from openmm_closure.md.simulate import simulate_ensemble

    ref = simulate_ensemble("particles2d", tmp_path / "ref", 3, n_particles=40, seed=4, platform="Reference",
                            progress=False, steps=600, report_interval=100)
    a, b = load(out), load(ref)
    assert a.manifest["complete"] and len(a) == 3
    for i in range(3):
        np.testing.assert_array_equal(a.positions[i], b.positions[i])
    # now free: the same command resumes (nothing to do) and succeeds
    r = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def test_rejected_param_leaves_nothing_behind(tmp_path, capsys):
    out = tmp_path / "d"
    rc = main(["simulate", "particles2d", "--out", str(out), *SIM, "--param", "steps=-3"])
    _one_line_error(capsys, rc, "steps")
    assert not out.exists()
    rc = main(["simulate", "particles2d", "--out", str(out), *SIM, "--param", "steps=4"])
    _one_line_error(capsys, rc, "--param steps given twice")
    assert not out.exists()
    assert main(["simulate", "particles2d", "--out", str(out), *SIM]) == 0
    assert len(load(out)) == 2


def test_cpu_runs_with_one_seed_are_bitwise_equal(tmp_path):
    from openmm_closure.md.simulate import simulate_ensemble
    from openmm_closure.systems import build

    sim = build("lj-mixing", n_particles=64, seed=1, steps=10, report_interval=5).make_simulation("CPU", True)
    plat = sim.context.getPlatform()
    assert plat.getPropertyValue(sim.context, "DeterministicForces") == "true"
    assert plat.getPropertyValue(sim.context, "Threads") == "1"
    kw = dict(n_particles=64, seed=2, platform="CPU", progress=False, steps=200, report_interval=50)
    simulate_ensemble("lj-mixing", tmp_path / "a", 1, **kw)
    simulate_ensemble("lj-mixing", tmp_path / "b", 1, **kw)
    np.testing.assert_array_equal(load(tmp_path / "a").positions[0], load(tmp_path / "b").positions[0])


# ------------------------------------------------------------------ 4. exports and model files
def test_reexport_leaves_no_stale_bias_and_hashes_are_checked(lj_model, tmp_path, capsys):
    from openmm_closure.hosts.export import check_export_dir, export_model, load_exported

    out = tmp_path / "exp"
    paths = export_model(lj_model, out, types=np.arange(12) % 2)
    assert paths["collective_variable"] is not None
    stale = (out / "collective_variable.pt").read_bytes()
    paths = export_model(lj_model, out)  # a multi-species model without --types: no bias
    assert paths["collective_variable"] is None
    assert not (out / "collective_variable.pt").exists() and not (out / "collective_variable.json").exists()
    check_export_dir(out)
    mod, meta = load_exported(out / "encoder.pt")
    assert meta["kind"] == "encoder"
    (out / "collective_variable.pt").write_bytes(stale)  # copied back by hand
    with pytest.raises(ValueError, match="not part of this export"):
        check_export_dir(out)
    (out / "collective_variable.pt").unlink()
    data = (out / "encoder.pt").read_bytes()
    (out / "encoder.pt").write_bytes(data[: len(data) // 2])  # truncated
    with pytest.raises(ValueError, match="encoder.pt does not match the sha256"):
        load_exported(out / "encoder.pt")
    for name in ("encoder.pt", "dynamics.json", "export.json"):
        assert (out / name).stat().st_mode & 0o777 == file_mode() or name == "encoder.pt"


def test_edited_model_file_is_reported(lj_model, tmp_path, capsys):
    m = tmp_path / "m"
    shutil.copytree(lj_model, m)
    for name in ("model.pt", "config.json"):
        assert (m / name).stat().st_mode & 0o777 == file_mode()
    data = bytearray((m / "model.pt").read_bytes())
    data[-100] ^= 1
    (m / "model.pt").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="model.pt does not match the sha256"):
        load_model(m)
    rc = main(["export", "--model", str(m), "--out", str(tmp_path / "e")])
    _one_line_error(capsys, rc, "sha256")


def test_files_get_the_ordinary_mode(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "a", b"1")
        assert (tmp_path / "a").stat().st_mode & 0o777 == 0o644
        os.umask(0o077)
        atomic_write_bytes(tmp_path / "b", b"1")
        assert (tmp_path / "b").stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(old)


# ------------------------------------------------------------------ 5. resume with other data
def test_resume_refuses_a_different_dataset(tmp_path, capsys):
    a = _lj_dataset(tmp_path / "a")
    b = _lj_dataset(tmp_path / "b", seed=1)
    out = str(tmp_path / "run")
    assert main(["train", "--data", str(a), "--out", out, *TINY, "--stop-after", "1"]) == 0
    capsys.readouterr()
    rc = main(["train", "--data", str(b), "--out", out, *TINY, "--resume"])
    _one_line_error(capsys, rc, "different dataset")
    moved = tmp_path / "moved"
    shutil.copytree(a, moved)  # the same dataset elsewhere: the fingerprint is path-independent
    assert main(["train", "--data", str(moved), "--out", out, *TINY, "--resume"]) == 0


# ------------------------------------------------------------------ CLI: one line, exit 2 / 130
def test_oserrors_are_one_line(tmp_path, capsys):
    afile = tmp_path / "file"
    afile.write_text("x")
    rc = main(["simulate", "particles2d", "--out", str(afile), *SIM])
    _one_line_error(capsys, rc, "is a file")
    _lj_dataset(tmp_path / "ds")
    rc = main(["train", "--data", str(tmp_path / "ds"), "--out", str(afile), *TINY])
    _one_line_error(capsys, rc)
    rc = main(["simulate", "particles2d", "--out", "/dev/null/d", *SIM])
    _one_line_error(capsys, rc, "/dev/null")
    rc = main(["evaluate", "--model", str(afile), "--data", str(tmp_path / "ds"), "--out", str(tmp_path / "r")])
    _one_line_error(capsys, rc)
    if os.geteuid() != 0:  # root writes anywhere
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o555)
        rc = main(["simulate", "particles2d", "--out", str(ro / "d"), *SIM])
        _one_line_error(capsys, rc, "Permission denied")
    with pytest.raises(FileExistsError):  # --debug: the traceback, for a bug report
        main(["--debug", "simulate", "particles2d", "--out", str(afile), *SIM])


def test_sigint_exits_130_without_traceback(tmp_path):
    args = [sys.executable, "-m", "openmm_closure.cli", "simulate", "particles2d", "--out", str(tmp_path / "d"),
            "--replicas", "50", "--n-particles", "40", "--platform", "Reference", "--no-progress",
            "--param", "steps=2000", "--param", "report_interval=100"]
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not (tmp_path / "d" / "manifest.json").exists():
        assert p.poll() is None and time.time() < deadline
        time.sleep(0.02)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    assert "Traceback" not in err and err.strip().splitlines() == ["openmm-closure: interrupted"]


# ------------------------------------------------------------------ model API and other arguments
def test_encode_refuses_non_integer_species_and_wide_positions(lj_model):
    model = load_model(lj_model)
    pos = np.random.default_rng(0).random((12, 3)) * 4
    types = np.arange(12) % 2
    with pytest.raises(ValueError, match="non-integer"):
        model.encode(pos, types * 0.9)
    np.testing.assert_array_equal(model.encode(pos, types.astype(float)), model.encode(pos, types))
    with pytest.raises(ValueError, match="positions must have shape"):
        model.encode(np.random.rand(12, 5), types)
    with pytest.raises(ValueError, match="positions must have shape"):
        model.encode(np.random.rand(2, 2, 12, 3), types)


@pytest.mark.parametrize("kw, match", [
    (dict(samples=-1), "samples"), (dict(samples=0), "samples"), (dict(dt=-1.0), "dt"),
    (dict(dt=0.0), "dt"), (dict(steps=-1), "steps"), (dict(steps=2.5), "steps"),
])
def test_rollout_arguments(lj_model, kw, match):
    model = load_model(lj_model)
    args = {"steps": 3, **kw}
    with pytest.raises(ValueError, match=match):
        model.rollout(torch.zeros(model.dim), **args)


@pytest.mark.parametrize("flag", [["--max-trajectories", "0"], ["--max-trajectories", "-1"], ["--samples", "0"]])
def test_evaluate_arguments(lj_model, tmp_path, capsys, flag):
    _lj_dataset(tmp_path / "ds")
    rc = main(["evaluate", "--model", str(lj_model), "--data", str(tmp_path / "ds"),
               "--out", str(tmp_path / "r"), "--no-plots", *flag])
    _one_line_error(capsys, rc, flag[0].lstrip("-").replace("-", "_"))
    assert not (tmp_path / "r").exists()


def test_evaluate_and_rollout_refuse_to_overwrite(lj_model, tmp_path, capsys):
    ds = _lj_dataset(tmp_path / "ds")
    rep = tmp_path / "r"
    base = ["evaluate", "--model", str(lj_model), "--data", str(ds), "--out", str(rep), "--no-plots"]
    assert main(base) == 0
    before = (rep / "metrics.json").read_bytes()
    _one_line_error(capsys, main(base), "--overwrite")
    assert (rep / "metrics.json").read_bytes() == before
    assert main([*base, "--overwrite"]) == 0
    out = tmp_path / "roll.csv"
    out.write_text("precious")
    roll = ["rollout", "--model", str(lj_model), "--data", str(ds), "--steps", "2", "--out", str(out)]
    _one_line_error(capsys, main(roll), "--overwrite")
    assert out.read_text() == "precious"
    assert main([*roll, "--overwrite"]) == 0 and out.read_text().startswith("time_ps")


def test_flow_transforms_zero_is_a_value_error(tmp_path, capsys):
    _lj_dataset(tmp_path / "ds")
    rc = main(["train", "--data", str(tmp_path / "ds"), "--out", str(tmp_path / "m"), *TINY,
               "--flow-transforms", "0"])
    _one_line_error(capsys, rc, "--flow-transforms")


def test_reporters_refuse_typos_one_species_pairs_and_overwriting(tmp_path):
    from openmm_closure.reporters import DatasetReporter, MacroReporter
    from openmm_closure.systems import build

    with pytest.raises(ValueError, match="unknown keyword.*cutof"):
        MacroReporter(tmp_path / "m.csv", 5, cutof=2.5)
    with pytest.raises(ValueError, match="unknown keyword"):
        DatasetReporter(tmp_path / "d.h5", 5, bx=[1, 1, 1])
    sim = build("particles2d", n_particles=10, seed=1, steps=10, report_interval=5).make_simulation("Reference")
    sim.reporters.append(MacroReporter(tmp_path / "m.csv", 5, observables=("R_AB", "R_BA")))
    with pytest.raises(ValueError, match="need two species"):
        sim.step(5)
    for cls, name in ((MacroReporter, "x.csv"), (DatasetReporter, "x.h5")):
        (tmp_path / name).write_text("precious")
        with pytest.raises(FileExistsError, match="overwrite=True"):
            cls(tmp_path / name, 5)
        cls(tmp_path / name, 5, overwrite=True).close()


def test_two_trainings_in_one_directory_are_refused(tmp_path, capsys):
    """A train run holds its --out: a second run into it (say, two scripts resuming the same
    checkpoint) gets one line naming the holder, and nothing of the first is touched."""
    from openmm_closure.fileio import DirectoryLock

    data = contracting_clusters(20, 3, 6).save(tmp_path / "data")
    out = tmp_path / "model"
    holder = DirectoryLock(out, "another train run").acquire()  # as a running train holds it
    try:
        (out / "checkpoint.pt").write_bytes(b"not touched")
        assert main(["train", "--data", str(data), "--out", str(out), "--resume", "--epochs-stage1", "1",
                     "--epochs-stage2", "1"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"in use by another train run (pid {os.getpid()})" in err[0]
        assert (out / "checkpoint.pt").read_bytes() == b"not touched"
    finally:
        holder.release()
    # released: an empty directory holding only the lock file is a fresh run, not a bad --resume
    (out / "checkpoint.pt").unlink()
    assert main(["train", "--data", str(data), "--out", str(out), "--resume", "--epochs-stage1", "1",
                 "--epochs-stage2", "1", "--samples", "16", "--flow-transforms", "1", "--no-progress"]) == 0
    assert (out / "model.pt").exists()
