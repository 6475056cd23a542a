"""Reliability, round three: the surfaces added since round two (live coupling, hosts,
scheduler, render, model files) tried as a hostile or careless user would. One test (or a
few) per finding; each asserts what happens now: one clear line, a refused file, an
untouched target, a previous export intact, an estimate before long work."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import train_tiny_model

from openmm_closure import load_model
from openmm_closure.cli import main

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [
    pytest.mark.usefixtures("one_torch_thread"),
    pytest.mark.filterwarnings("ignore:.*torch.jit.* is deprecated:DeprecationWarning"),
]

TINY = ["--samples", "8", "--flow-transforms", "1", "--flow-hidden", "8,8", "--dynamics-hidden", "8,8",
        "--batch-size", "4", "--batch-size-stage2", "8", "--no-progress",
        "--val-fraction", "0.25", "--epochs", "2", "--device", "cpu"]


def _one_line(capsys, rc, *words):
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for w in words:
        assert w in err, err
    return err


def _lj_dataset(path, n=12, seed=0, species=None, nan=False):
    from openmm_closure.data import ArrayDataset

    rng = np.random.default_rng(seed)
    pos = (rng.random((4, 4, n, 3)) * 5).astype(np.float32)
    pos[..., 2] = 0
    if nan:
        pos[1, 2, 3, 0] = np.nan
    types = (np.arange(n) % 2).astype(np.int64)
    obs = {"R_AB": rng.random((4, 4)), "R_BA": rng.random((4, 4))}
    man = {"system": "lj-mixing", "observables": ["R_AB", "R_BA"], "params": {"cutoff": 1.0}}
    if species is not None:
        man["species"] = species
    ArrayDataset(pos, types, np.arange(4) * 0.4, obs, man).save(path)
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """name -> a tiny trained model directory (particles2d: one species, ODE; lj-mixing: two
    species named A and B, SDE, trained by the CLI on a dataset directory)."""
    base = tmp_path_factory.mktemp("round3")
    torch.set_num_threads(1)
    lj = base / "lj-mixing"
    assert main(["train", "--data", str(_lj_dataset(base / "lj-data")), "--out", str(lj), *TINY]) == 0
    return {"particles2d": train_tiny_model(base / "particles2d", "particles2d"), "lj-mixing": lj}


@pytest.fixture(scope="module")
def exports(models, tmp_path_factory):
    """name -> an export directory of that model (lj-mixing with its species baked in)."""
    from openmm_closure.hosts.export import export_model

    base = tmp_path_factory.mktemp("round3-exports")
    out = {}
    for name, d in models.items():
        types = (np.arange(12) % 2) if name == "lj-mixing" else None
        export_model(d, base / name, types=types, hosts=["plumed"])
        out[name] = base / name
    return out


def _p2d_simulation(n=12):
    from openmm_closure import systems

    return systems.build("particles2d", n_particles=n, seed=1, steps=10, report_interval=5).make_simulation("Reference")


# ------------------------------------------------------------------ code from a file
class _Evil(torch.nn.Module):
    """forward overwrites bytes of ``target`` through a storage mapped from the file."""

    def __init__(self, target: str, n: int):
        super().__init__()
        self.target = target
        self.n = n

    def forward(self, positions: torch.Tensor, types: torch.Tensor) -> torch.Tensor:
        t = torch.from_file(self.target, True, self.n, dtype=torch.uint8).fill_(65)
        return torch.zeros(2) + t[:2].float() * 0


def _crafted_export(exports, tmp_path, module):
    """A copy of a real export whose encoder.pt is ``module`` (valid kind=encoder metadata)
    and whose index lists the crafted file's own hash: only the operators can give it away."""
    from openmm_closure.fileio import sha256_file
    from openmm_closure.hosts.scripting import METADATA

    d = tmp_path / "crafted"
    shutil.copytree(exports["particles2d"], d)
    meta = (d / "encoder.json").read_text()
    torch.jit.save(torch.jit.script(module), str(d / "encoder.pt"), _extra_files={METADATA: meta})
    index = json.loads((d / "export.json").read_text())
    index["sha256"]["encoder.pt"] = sha256_file(d / "encoder.pt")
    (d / "export.json").write_text(json.dumps(index))
    return d / "encoder.pt"


def test_crafted_torchscript_is_refused_and_its_target_untouched(exports, tmp_path):
    from openmm_closure.hosts.export import load_exported
    from openmm_closure.reporters import ClosureReporter

    target = tmp_path / "unrelated.txt"
    target.write_text("precious data\n")
    path = _crafted_export(exports, tmp_path, _Evil(str(target), 8))
    sim = _p2d_simulation()
    with pytest.raises(ValueError) as info:
        rep = ClosureReporter(tmp_path / "c.csv", 5, path, types=np.zeros(12, np.int64))
        sim.reporters.append(rep)
        sim.step(10)
    msg = str(info.value)
    assert len(msg.splitlines()) == 1 and "aten::from_file" in msg and "refused" in msg, msg
    with pytest.raises(ValueError, match="aten::from_file"):
        load_exported(path)
    assert target.read_text() == "precious data\n"  # nothing of it ran
    assert not (tmp_path / "c.csv").exists()


class _SetState(torch.nn.Module):
    """Code that would run while the file is loaded (TorchScript calls __setstate__)."""

    def __init__(self, target: str):
        super().__init__()
        self.target = target

    def forward(self, positions: torch.Tensor, types: torch.Tensor) -> torch.Tensor:
        return torch.zeros(2)

    @torch.jit.export
    def __getstate__(self):
        return (self.target, self.training)

    @torch.jit.export
    def __setstate__(self, state: tuple[str, bool]):
        self.target = state[0]
        self.training = state[1]
        torch.from_file(self.target, True, 8, dtype=torch.uint8).fill_(66)


def test_code_that_runs_at_load_is_refused_before_loading(exports, tmp_path):
    from openmm_closure.hosts.export import load_exported

    target = tmp_path / "unrelated.txt"
    target.write_text("precious data\n")
    path = _crafted_export(exports, tmp_path, _SetState(str(target)))
    with pytest.raises(ValueError, match="__setstate__"):
        load_exported(path)
    assert target.read_text() == "precious data\n"


def test_allow_list_covers_every_export_and_refuses_file_operators():
    from openmm_closure.hosts.allowlist import ALLOWED_OPERATORS, REFUSED_OPERATORS
    from openmm_closure.hosts.export_operators import collect_operators

    used = collect_operators()
    assert "aten::linear" in used and used <= ALLOWED_OPERATORS, sorted(used - ALLOWED_OPERATORS)
    assert not [k for k in ALLOWED_OPERATORS if any(k.startswith(p) for p in REFUSED_OPERATORS)]


# ------------------------------------------------------------------ silently wrong results
def test_closure_reporter_checks_the_export_index(exports, tmp_path):
    """Another model's encoder.pt copied into an export directory is refused by the reporter
    (as load_exported refuses it), and a .pt without its index is not loaded at all."""
    from openmm_closure.reporters import ClosureReporter

    d = tmp_path / "mixed"
    shutil.copytree(exports["lj-mixing"], d)
    shutil.copy(exports["particles2d"] / "encoder.pt", d / "encoder.pt")
    with pytest.raises(ValueError, match="encoder.pt does not match the sha256"):
        ClosureReporter(tmp_path / "c.csv", 5, d / "encoder.pt")
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(exports["lj-mixing"] / "encoder.pt", alone / "encoder.pt")
    with pytest.raises(ValueError, match="no export.json beside it"):
        ClosureReporter(tmp_path / "c.csv", 5, alone / "encoder.pt")
    ClosureReporter(tmp_path / "c.csv", 5, exports["lj-mixing"] / "encoder.pt").close()  # the real one loads


def test_failed_reexport_leaves_the_previous_export_intact(models, tmp_path, capsys):
    """A re-export of another model that fails half-way (its .pt2 compile: a C++ compiler
    that fails) leaves the previous export as it was: same files, same bytes, its index
    checks; no staging directory is left; the failing compiler is one line."""
    from openmm_closure.hosts.export import check_export_dir, export_model, load_exported

    out = tmp_path / "exp"
    export_model(models["lj-mixing"], out, types=np.arange(12) % 2, hosts=["plumed"])
    (out / "notes.txt").write_text("mine")  # a user's file in the export directory
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    env = {**os.environ, "CXX": shutil.which("false"), "OMP_NUM_THREADS": "1",
           "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "cache")}  # torch reads CXX at import: a new process
    r = subprocess.run([sys.executable, "-m", "openmm_closure.cli", "export", "--model", str(models["particles2d"]),
                        "--out", str(out), "--format", "pt2"], capture_output=True, text=True, timeout=300,
                       cwd=ROOT, env=env)
    err = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(err) == 1 and "Traceback" not in r.stderr, r.stderr
    assert "C++ compiler" in err[0] and "CXX" in err[0] and "InvalidCxxCompiler" in err[0], err
    shutil.rmtree(tmp_path / "cache", ignore_errors=True)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    check_export_dir(out)
    assert load_exported(out / "encoder.pt")[1]["system"] == "lj-mixing"
    assert [p.name for p in tmp_path.iterdir()] == ["exp"]  # no staging directory left behind
    rc = main(["export", "--model", str(models["particles2d"]), "--out", str(out), "--format", "pt2",
               "--rollout-steps", "-1"])
    _one_line(capsys, rc, "--rollout-steps", "-1")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    # a successful re-export replaces it whole and keeps the user's file
    export_model(models["particles2d"], out)
    assert load_exported(out / "encoder.pt")[1]["system"] == "particles2d"
    assert (out / "notes.txt").read_text() == "mine" and not (out / "plumed_model.pt").exists()
    check_export_dir(out)


def test_resume_refuses_a_dataset_edited_in_place(tmp_path, capsys):
    """A replica's coordinates x1.5 after the checkpoint (file size unchanged): refused."""
    import tables

    data = _lj_dataset(tmp_path / "ds")
    out = tmp_path / "run"
    assert main(["train", "--data", str(data), "--out", str(out), *TINY, "--stop-after", "1"]) == 0
    capsys.readouterr()
    f = data / "replica_00001.h5"
    size = f.stat().st_size
    with tables.open_file(str(f), "r+") as h:
        h.root.coordinates[:] = h.root.coordinates[:] * 1.5
    assert f.stat().st_size == size
    rc = main(["train", "--data", str(data), "--out", str(out), *TINY, "--resume"])
    _one_line(capsys, rc, "replica_00001.h5", "replica_sha256")
    # the manifest's hashes dropped as well: the content fingerprint still differs
    m = json.loads((data / "manifest.json").read_text())
    m.pop("replica_sha256")
    (data / "manifest.json").write_text(json.dumps(m))
    rc = main(["train", "--data", str(data), "--out", str(out), *TINY, "--resume"])
    _one_line(capsys, rc, "different dataset", "content fingerprint")


def test_config_json_is_covered_by_the_integrity_record(models, tmp_path, capsys):
    from openmm_closure.integrity import seal_model_dir

    m = tmp_path / "m"
    shutil.copytree(models["particles2d"], m)
    cfg = json.loads((m / "config.json").read_text())
    (m / "config.json").write_text(json.dumps({k: v for k, v in cfg.items() if k != "encoder"}))
    with pytest.raises(ValueError, match="config.json does not match the sha256"):
        load_model(m)
    rc = main(["rollout", "--model", str(m), "--positions", str(_npy(tmp_path)), "--steps", "2",
               "--out", str(tmp_path / "r.csv")])
    _one_line(capsys, rc, "config.json")
    # re-sealed (as someone would who edits on purpose): the schema check names the key
    seal_model_dir(m)
    with pytest.raises(ValueError, match="key 'encoder' is missing"):
        load_model(m)
    (m / "config.json").write_text(json.dumps({**cfg, "dt": -1}))
    seal_model_dir(m)
    with pytest.raises(ValueError, match=r"key 'dt' must be a finite number > 0 \(ps, the dynamics' time step\), got -1"):
        load_model(m)
    (m / "config.json").write_text(json.dumps({**cfg, "format_version": "abc"}))
    seal_model_dir(m)
    with pytest.raises(ValueError, match="config.json: key 'format_version' must be an integer, got 'abc'"):
        load_model(m)


def _npy(tmp_path, n=12):
    p = tmp_path / "frame.npy"
    pos = np.zeros((n, 3))
    pos[:, :2] = np.random.default_rng(0).random((n, 2)) * 4
    np.save(p, pos)
    return p


def test_a_deleted_sha256_key_does_not_let_a_flipped_byte_load(models, tmp_path):
    m = tmp_path / "m"
    shutil.copytree(models["particles2d"], m)
    cfg = json.loads((m / "config.json").read_text())
    cfg.pop("sha256")
    (m / "config.json").write_text(json.dumps(cfg))
    data = bytearray((m / "model.pt").read_bytes())
    data[-100] ^= 1
    (m / "model.pt").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="does not match the sha256"):
        load_model(m)
    (m / "integrity.json").unlink()
    with pytest.raises(FileNotFoundError, match="has no integrity.json"):
        load_model(m)


def test_evaluate_checks_no_closure_species_and_nan(models, tmp_path, capsys):
    model = models["lj-mixing"]
    ok = _lj_dataset(tmp_path / "ok")
    base = ["evaluate", "--model", str(model), "--out", str(tmp_path / "r"), "--no-plots", "--permutations", "0"]
    rc = main([*base, "--data", str(ok), "--no-closure", str(model)])
    _one_line(capsys, rc, "--no-closure", "method='ours'")
    for species in (["A", "C"], ["B", "A"]):
        d = _lj_dataset(tmp_path / f"sp-{''.join(species)}", species=species)
        rc = main([*base, "--data", str(d)])
        _one_line(capsys, rc, str(species), "['A', 'B']")
    d = _lj_dataset(tmp_path / "nan", nan=True)
    rc = main([*base, "--data", str(d)])
    _one_line(capsys, rc, "replica 1", "NaN")
    assert not (tmp_path / "r").exists()


def test_encoders_refuse_an_empty_set(models, exports):
    from openmm_closure.hosts.export import load_exported

    enc, _ = load_exported(exports["particles2d"] / "encoder.pt")
    with pytest.raises(Exception, match="empty set"):
        enc(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long))
    plumed, _ = load_exported(exports["particles2d"] / "plumed_model.pt")
    with pytest.raises(Exception, match="empty set"):
        plumed(torch.zeros(1, 0))
    with pytest.raises(ValueError, match="empty set"):
        load_model(models["particles2d"]).encode(np.zeros((0, 3)), np.zeros(0, np.int64))
    # int64 positions (whole nm): encoded like model.encode encodes them, not a TorchScript trace
    ints = torch.tensor(np.random.default_rng(1).integers(0, 4, (12, 3)))
    ints[:, 2] = 0
    zeros = torch.zeros(12, dtype=torch.long)
    torch.testing.assert_close(enc(ints, zeros), enc(ints.double(), zeros))


def test_export_checks_types_and_describes_the_count(models, exports, tmp_path, capsys):
    dat = (exports["particles2d"] / "plumed_model.dat").read_text()
    assert "any number of atoms" in dat and "lists 12 (the count it was trained on)" in dat
    assert dat.count(": POSITION ATOM=") == 12  # the tiny model's 12 particles, not a probe's 16
    baked = (exports["lj-mixing"] / "plumed_model.dat").read_text()
    assert "exactly 12 atoms" in baked
    one = tmp_path / "one.npy"
    np.save(one, np.zeros(12, np.int64))
    rc = main(["export", "--model", str(models["lj-mixing"]), "--out", str(tmp_path / "e"), "--types", str(one),
               "--host", "plumed"])
    _one_line(capsys, rc, "--types", "species ['B']")
    bad = tmp_path / "bad.npy"
    np.save(bad, np.arange(12) % 3)
    rc = main(["export", "--model", str(models["lj-mixing"]), "--out", str(tmp_path / "e"), "--types", str(bad)])
    err = _one_line(capsys, rc, "--types", "'lj-mixing'")
    assert "'?'" not in err
    assert not (tmp_path / "e").exists()


# ------------------------------------------------------------------ silent overwrite
def test_closure_simulation_and_render_refuse_an_existing_file(models, tmp_path, capsys):
    from openmm_closure.couple.handover import ClosureSimulation

    timeline = tmp_path / "t.csv"
    timeline.write_text("precious")
    sim = _p2d_simulation()
    with pytest.raises(FileExistsError, match="overwrite=True"):
        ClosureSimulation(sim, models["particles2d"], file=timeline, types=np.zeros(12, np.int64))
    assert timeline.read_text() == "precious"
    cs = ClosureSimulation(sim, models["particles2d"], file=timeline, types=np.zeros(12, np.int64), overwrite=True)
    cs.step(2)
    cs.close()
    assert timeline.read_text().startswith("time_ps")
    gif = tmp_path / "v.gif"
    gif.write_bytes(b"precious")
    rc = main(["render", str(tmp_path / "no-such-dataset"), "--out", str(gif)])
    _one_line(capsys, rc, "--overwrite", str(gif))
    assert gif.read_bytes() == b"precious"


# ------------------------------------------------------------------ hangs: estimates and the job queue
def test_horizons_beyond_the_memory_bound_are_refused_with_the_estimate(models, tmp_path, capsys):
    from openmm_closure.couple.handover import ClosureSimulation

    cs = ClosureSimulation(_p2d_simulation(), models["particles2d"], types=np.zeros(12, np.int64))
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match=r"5000000000\d steps .* TiB of memory, over the bound .*allow_large"):
        cs.extrapolate(time_ps=1e9)
    with pytest.raises(ValueError, match="seed must be an integer or None, got 'x'"):
        cs.extrapolate(steps=3, seed="x")  # an ODE model: the seed is still checked
    rc = main(["rollout", "--model", str(models["particles2d"]), "--positions", str(_npy(tmp_path)),
               "--steps", "10000000000", "--out", str(tmp_path / "r.csv")])
    _one_line(capsys, rc, "GiB of memory", "--allow-large")
    assert time.perf_counter() - t0 < 30 and not (tmp_path / "r.csv").exists()
    res = cs.extrapolate(steps=3, seed=1)  # an ordinary horizon runs
    assert res.samples.shape[1] == 4


def _jobqueue_env(tmp_path, sbatch=None):
    conf = tmp_path / "dask"
    conf.mkdir()
    (conf / "jobqueue.yaml").write_text(textwrap.dedent("""\
        jobqueue:
          slurm:
            cores: 1
            processes: 1
            memory: 1GB
            walltime: "00:05:00"
            scheduler-options:
              dashboard_address: ":0"
        """))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("python3", "sh", "sleep"):  # a PATH with no sbatch (unless given)
        if shutil.which(tool):
            (bin_dir / tool).symlink_to(shutil.which(tool))
    if sbatch is not None:
        (bin_dir / "sbatch").write_text(sbatch)
        (bin_dir / "sbatch").chmod(0o755)
    return {**os.environ, "DASK_CONFIG": str(conf), "PATH": str(bin_dir), "OMP_NUM_THREADS": "1"}


@pytest.mark.parametrize("sbatch, words", [
    (None, ["submit command 'sbatch' is not on the PATH"]),
    ("#!/bin/sh\necho 'sbatch: error: invalid partition' >&2\nexit 1\n",
     ["0 of 1 batch job(s) submitted within 2 s", "--scheduler-timeout"]),
])
def test_jobqueue_without_a_working_submit_command_is_one_line(tmp_path, sbatch, words):
    pytest.importorskip("dask_jobqueue")
    out = tmp_path / "d"
    args = [sys.executable, "-m", "openmm_closure.cli", "simulate", "particles2d", "--out", str(out),
            "--replicas", "1", "--n-particles", "10", "--platform", "Reference", "--no-progress",
            "--param", "steps=4", "--param", "report_interval=2", "--scheduler", "jobqueue", "--jobs", "1",
            "--scheduler-timeout", "2"]
    t0 = time.perf_counter()
    r = subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=ROOT,
                       env=_jobqueue_env(tmp_path, sbatch))
    err = r.stderr.strip()
    assert r.returncode == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for w in words:
        assert w in err, err
    assert time.perf_counter() - t0 < 90
    assert not out.exists()  # no manifest, no lock left behind


# ------------------------------------------------------------------ messages that name the input
def test_messages_name_the_bad_input(models, tmp_path, capsys):
    rc = main(["simulate", "particles2d", "--out", str(tmp_path / "s"), "--scheduler", "tcp://localhost:notaport"])
    _one_line(capsys, rc, "--scheduler tcp://localhost:notaport", "'notaport'")
    ds = _lj_dataset(tmp_path / "ds")
    m = json.loads((ds / "manifest.json").read_text())
    (ds / "manifest.json").write_text(json.dumps({**m, "format_version": "abc"}))
    rc = main(["train", "--data", str(ds), "--out", str(tmp_path / "m1"), *TINY])
    _one_line(capsys, rc, "manifest.json", "'format_version'", "'abc'")
    (ds / "manifest.json").write_text(json.dumps(m))
    afile = tmp_path / "afile"
    afile.write_text("x")
    for name, target in (("link-to-file", afile), ("dangling", tmp_path / "nowhere")):
        (tmp_path / name).symlink_to(target)
        rc = main(["train", "--data", str(ds), "--out", str(tmp_path / name), *TINY])
        _one_line(capsys, rc, str(tmp_path / name), "symbolic link")
    text = tmp_path / "types.txt"
    text.write_text("0 1 0 1\n")
    rc = main(["export", "--model", str(models["lj-mixing"]), "--out", str(tmp_path / "e"), "--types", str(text)])
    _one_line(capsys, rc, "--types", "types.txt")
    junk = tmp_path / "junk.npy"
    junk.write_bytes(os.urandom(256))
    rc = main(["export", "--model", str(models["lj-mixing"]), "--out", str(tmp_path / "e"), "--types", str(junk)])
    err = _one_line(capsys, rc, "--types", "junk.npy", "not a NumPy array file")
    assert "allow_pickle" not in err
    obj = tmp_path / "obj.npy"
    np.save(obj, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    rc = main(["rollout", "--model", str(models["lj-mixing"]), "--positions", str(obj), "--steps", "1",
               "--out", str(tmp_path / "r.csv")])
    err = _one_line(capsys, rc, "--positions", "Python objects")
    assert "allow_pickle" not in err


# ------------------------------------------------------------------ small
def test_small_findings(models, tmp_path, capsys):
    from openmm_closure.couple.handover import ClosureSimulation

    ds = _lj_dataset(tmp_path / "ds")
    rc = main(["train", "--data", str(ds), "--out", str(tmp_path / "m0"), *TINY, "--epochs", "0"])
    _one_line(capsys, rc, "--epochs 0", "untrained")
    assert not (tmp_path / "m0").exists()  # a failed train leaves no --out holding only its lock
    rc = main(["train", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "m1"), *TINY])
    _one_line(capsys, rc, "missing")
    assert not (tmp_path / "m1").exists()
    rc = main(["train", "--data", str(ds), "--out", str(tmp_path / "m2"), *TINY, "--resume"])
    assert rc == 0
    assert "--resume: no checkpoint.pt" in capsys.readouterr().err
    # a builder parameter that overflows the run: no temporary left
    out = tmp_path / "sim"
    rc = main(["simulate", "particles2d", "--out", str(out), "--replicas", "1", "--n-particles", "10",
               "--platform", "Reference", "--no-progress", "--param", "steps=4", "--param", "report_interval=2",
               "--param", "a=1e308"])
    _one_line(capsys, rc, "replica 0 diverged", "--param", "a=1e+308")
    assert not out.exists()  # no .part.h5, no manifest, no lock: a fresh run that finished nothing
    # ClosureSimulation after close(): refused, not dropped
    cs = ClosureSimulation(_p2d_simulation(), models["particles2d"], file=tmp_path / "t.csv",
                           types=np.zeros(12, np.int64))
    cs.step(2)
    cs.close()
    with pytest.raises(ValueError, match="after close"):
        cs.step(2)


@pytest.mark.slow
def test_pt2_export_of_a_default_width_model(tmp_path):
    """A particles2d model with the default network widths (40 particles, 1 epoch): on an
    AVX-512 CPU Inductor's vectorising code generator asserted on it; now the packages are
    written (scalar code where it must) and each matches the eager model."""
    pytest.importorskip("torch._inductor")
    if shutil.which(os.environ.get("CXX", "g++")) is None:
        pytest.skip("no C++ compiler")
    from openmm_closure.md import observables
    from openmm_closure.data import ArrayDataset
    from openmm_closure.hosts.export import check_export_dir, export_model
    from openmm_closure.learn.training import TrainConfig, train_on

    rng = np.random.default_rng(0)
    pos = (rng.random((4, 5, 40, 3)) * 4).astype(np.float32)
    pos[..., 2] = 0
    types = np.zeros(40, np.int64)
    obs = observables.compute(["energy"], pos.astype(np.float64), types, a=4.0, b=0.1)
    ds = ArrayDataset(pos, types, np.arange(5) * 0.02, obs,
                      {"system": "particles2d", "observables": ["energy"], "params": {"a": 4.0, "b": 0.1}})
    train_on(ds, TrainConfig(data="", out=str(tmp_path / "m"), epochs_stage1=1, epochs_stage2=1, samples=64,
                             progress=False, device="cpu", seed=1))
    paths = export_model(tmp_path / "m", tmp_path / "e", formats=["pt2"], rollout_steps=3)
    names = {p.name for p in paths["hosts"]}
    assert {"encoder.aoti.pt2", "dynamics.aoti.pt2", "collective_variable.aoti.pt2"} <= names
    check_export_dir(tmp_path / "e")
