"""simulate/evaluate --scheduler: real Dask clusters, real worker processes, real files.

- a LocalCluster gives the same dataset as the process pool, bitwise (particles2d on the
  Reference platform), per replica and per batch;
- a worker killed (SIGKILL) while it writes a replica: the task runs again elsewhere and
  the dataset is complete and equal;
- evaluate on a scheduler gives the metrics of the local evaluation (ODE and SDE);
- jobqueue: the job script a SLURM/PBS cluster would submit, built from dask's
  configuration, and one end-to-end run where a stand-in ``sbatch`` starts the job script
  at once on this machine (a real dask-jobqueue cluster and a real worker, no queue);
- bad input: an unreachable scheduler, the extra not installed, options that do not fit.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("distributed")
pytest.importorskip("dask_jobqueue")

from openmm_closure.cli import main as cli_main  # noqa: E402
from openmm_closure.data import load  # noqa: E402
from openmm_closure.md.simulate import simulate_ensemble  # noqa: E402
from conftest import assert_same_dataset

#: deterministic, bitwise-reproducible (Reference), about a second a replica
ARGS = ["particles2d", "--replicas", "4", "--n-particles", "40", "--seed", "3", "--platform", "Reference",
        "--param", "steps=100", "--param", "report_interval=1", "--no-progress"]
ROOT = Path(__file__).resolve().parents[1]
EXTRA = "pip install 'openmm-closure[cluster]'"


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The process-pool dataset (--workers 2) every scheduler must reproduce."""
    out = tmp_path_factory.mktemp("pool") / "ref"
    assert cli_main(["simulate", *ARGS, "--out", str(out), "--workers", "2"]) == 0
    return out


@pytest.fixture(scope="module")
def client():
    """A LocalCluster of two worker processes (each under a nanny that restarts it)."""
    import logging

    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                      silence_logs=logging.CRITICAL) as cluster, Client(cluster) as c:
        yield c


def test_local_scheduler_equals_the_process_pool(reference, tmp_path):
    out = tmp_path / "local"
    assert cli_main(["simulate", *ARGS, "--out", str(out), "--workers", "2", "--scheduler", "local"]) == 0
    assert_same_dataset(reference, out)


def test_worker_killed_mid_replica_is_retried_and_the_dataset_is_equal(reference, client, tmp_path):
    out = tmp_path / "killed"
    before = set(client.run(os.getpid).values())
    proc = subprocess.Popen([sys.executable, "-m", "openmm_closure.cli", "simulate", *ARGS, "--out", str(out),
                             "--scheduler", client.scheduler.address],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        victim, deadline = None, time.time() + 120
        while victim is None:  # a worker is writing a replica: NAME.<pid>-<random>.part.h5
            assert proc.poll() is None, proc.communicate()
            assert time.time() < deadline
            parts = list(out.glob("replica_*.part.h5")) if out.exists() else []
            pids = [int(p.name.split(".h5.")[1].split("-")[0]) for p in parts]
            victim = next((pid for pid in pids if pid in before), None)
            time.sleep(0.01)
        os.kill(victim, signal.SIGKILL)
        stdout, stderr = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    assert "4 replicas" in stdout
    # the nanny's new worker imports OpenMM and torch: seconds on an idle machine, over a
    # minute on 2 loaded cores (measured), so the wait is generous; it returns as soon as it arrives
    client.wait_for_workers(2, timeout=300)
    after = set(client.run(os.getpid).values())
    assert victim in before and victim not in after  # it really died; its nanny started another
    assert_same_dataset(reference, out)


def test_batches_as_tasks_on_a_client_and_a_complete_rerun(client, tmp_path):
    kw = dict(n_particles=20, seed=5, platform="Reference", progress=False, steps=20, report_interval=2, batch=2)
    serial = simulate_ensemble("particles2d", tmp_path / "serial", 5, **kw)
    dask = simulate_ensemble("particles2d", tmp_path / "dask", 5, scheduler=client, **kw)
    assert_same_dataset(serial, dask)
    assert load(dask).manifest["batch_sizes"] == [1, 2]  # batches {0, 1}, {2, 3}, {4}
    # a finished dataset: nothing left to run, the manifest is rewritten the same
    before = {p.name: p.stat().st_mtime_ns for p in Path(dask).glob("replica_*.h5")}
    simulate_ensemble("particles2d", tmp_path / "dask", 5, scheduler=client, **kw)
    assert before == {p.name: p.stat().st_mtime_ns for p in Path(dask).glob("replica_*.h5")}
    assert_same_dataset(serial, dask)


@pytest.mark.parametrize("name", ["particles2d", "lj-mixing"])
def test_evaluate_on_a_scheduler_equals_the_local_evaluation(simulated_models, client, tmp_path, name):
    from openmm_closure.evaluate.evaluation import evaluate

    model = simulated_models[name]
    data = model.parent / f"data-{name}"
    kw = dict(samples=3, seed=4, permutations=0, plots=False, diagnostic=False)
    here = evaluate(model, data, tmp_path / "here", **kw)
    if name == "particles2d":  # through the command line, on the scheduler's address
        argv = ["evaluate", "--model", str(model), "--data", str(data), "--out", str(tmp_path / "there"),
                "--samples", "3", "--seed", "4", "--permutations", "0", "--no-plots", "--no-diagnostic",
                "--scheduler", client.scheduler.address]
        assert cli_main(argv) == 0
        there = json.loads((tmp_path / "there" / "metrics.json").read_text())
    else:  # the library, on the client itself
        there = evaluate(model, data, tmp_path / "there", scheduler=client, **kw)
    assert here["status"] == there["status"] == "ok"
    assert here["metric"] == ("mre" if name == "particles2d" else "mmd") and here["samples"] == there["samples"]
    # six trajectories on two workers: six tasks, each one trajectory's rows of the
    # ensemble; equal to the single rollout (the SDE noise is one stream, sliced) up to
    # the last bits of float32 matrix products, whose kernels depend on the batch size
    np.testing.assert_allclose(there["value"], here["value"], rtol=1e-6, atol=0)
    np.testing.assert_allclose(there["over_time"], here["over_time"], rtol=1e-6, atol=1e-12)
    if name == "particles2d":
        np.testing.assert_allclose(there["extra"]["mre_per_trajectory"], here["extra"]["mre_per_trajectory"],
                                   rtol=1e-6)
    # and the check can fail: another seed moves the SDE ensemble
    if name == "lj-mixing":
        other = evaluate(model, data, tmp_path / "other", scheduler=client, **dict(kw, seed=5))
        assert not np.allclose(other["over_time"], here["over_time"], rtol=1e-3, atol=0)


SLURM_CONFIG = {"cores": 2, "processes": 1, "memory": "4GB", "queue": "short", "account": "closure",
                "walltime": "01:30:00", "job-script-prologue": ["export OMP_NUM_THREADS=1"],
                "scheduler-options": {"dashboard_address": ":0"}}


def _jobqueue_config(system: str, values: dict) -> dict:
    return {f"jobqueue.{system}.{k}": v for k, v in values.items()}


def test_jobqueue_builds_the_job_script_from_the_configuration():
    import dask.config

    from openmm_closure.cluster import jobqueue_cluster, jobqueue_system

    with dask.config.set(_jobqueue_config("slurm", SLURM_CONFIG)):
        assert jobqueue_system() == "slurm"  # the one section that sets cores
        with jobqueue_cluster() as cluster:
            script = cluster.job_script()
            lines = script.splitlines()
            for directive in ("#SBATCH -p short", "#SBATCH -A closure", "#SBATCH -t 01:30:00",
                              "#SBATCH --cpus-per-task=2", "#SBATCH -n 1"):
                assert directive in lines, script
            assert any(x.startswith("#SBATCH --mem=") and x.endswith("G") for x in lines), script
            assert "export OMP_NUM_THREADS=1" in lines
            worker = next(x for x in lines if "distributed.cli.dask_worker" in x)
            assert worker.startswith(f"{sys.executable} -m distributed.cli.dask_worker {cluster.scheduler_address}")
            assert "--nthreads 2" in worker and "--memory-limit 3.73GiB" in worker and "--nanny" in worker
        with jobqueue_cluster(queue="long", walltime="12:00:00") as cluster:  # overrides win
            assert "#SBATCH -p long" in cluster.job_script() and "#SBATCH -t 12:00:00" in cluster.job_script()
        # a second configured system: the choice must be explicit
        with dask.config.set(_jobqueue_config("pbs", {"cores": 4, "memory": "8GB", "queue": "batch",
                                                   "scheduler-options": {"dashboard_address": ":0"}})):
            with pytest.raises(ValueError, match="sets cores for slurm, pbs; choose one with --jobqueue-system"):
                jobqueue_system()
            with jobqueue_cluster("pbs") as cluster:
                assert "#PBS -q batch" in cluster.job_script().splitlines()
    with dask.config.set({f"jobqueue.{s}.cores": None for s in ("slurm", "pbs", "lsf", "sge")}):
        with pytest.raises(ValueError, match="sets cores for no queue system"):
            jobqueue_system()


STAND_IN_SBATCH = """\
#!/bin/sh
# stand-in for sbatch: start the job script at once on this machine, in its own session
d="$(dirname "$0")"
n=$(ls "$d" | grep -c '^job-.*\\.sh$')
cp "$1" "$d/job-$n.sh"
setsid sh "$d/job-$n.sh" > "$d/job-$n.log" 2>&1 < /dev/null &
echo $! >> "$d/pids"
echo "Submitted batch job $!"
"""
STAND_IN_SCANCEL = """\
#!/bin/sh
kill -TERM -- "-$1" 2>/dev/null
exit 0
"""


def test_jobqueue_end_to_end_from_a_jobqueue_yaml(reference, tmp_path):
    """``--scheduler jobqueue --jobs 1`` with the user's jobqueue.yaml (DASK_CONFIG): a real
    SLURMCluster submits its job script; the stand-in sbatch runs it here."""
    bin_dir, conf = tmp_path / "bin", tmp_path / "dask"
    bin_dir.mkdir()
    conf.mkdir()
    for name, text in (("sbatch", STAND_IN_SBATCH), ("scancel", STAND_IN_SCANCEL)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    (conf / "jobqueue.yaml").write_text(textwrap.dedent("""\
        jobqueue:
          slurm:
            cores: 1
            processes: 1
            memory: 2GB
            queue: closure-test
            walltime: "00:10:00"
            death-timeout: 30
            scheduler-options:
              dashboard_address: ":0"
        """))
    out = tmp_path / "jq"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DASK_CONFIG": str(conf),
           "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    try:
        r = subprocess.run([sys.executable, "-m", "openmm_closure.cli", "simulate", *ARGS, "--out", str(out),
                            "--scheduler", "jobqueue", "--jobs", "1"],
                           capture_output=True, text=True, timeout=240, cwd=ROOT, env=env)
    finally:
        for pid in (bin_dir / "pids").read_text().split() if (bin_dir / "pids").exists() else []:
            try:
                os.killpg(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
    assert r.returncode == 0, r.stderr[-3000:]
    jobs = sorted(bin_dir.glob("job-*.sh"))
    assert len(jobs) == 1  # --jobs 1
    script = jobs[0].read_text()
    assert "#SBATCH -p closure-test" in script and "#SBATCH -t 00:10:00" in script
    assert f"{sys.executable} -m distributed.cli.dask_worker tcp://" in script
    assert_same_dataset(reference, out)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_scheduler_is_one_line_within_the_timeout(tmp_path, capsys):
    address = f"tcp://127.0.0.1:{_free_port()}"
    t0 = time.perf_counter()
    rc = cli_main(["simulate", *ARGS, "--out", str(tmp_path / "x"), "--scheduler", address,
                   "--scheduler-timeout", "1"])
    elapsed = time.perf_counter() - t0
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err
    assert f"no Dask scheduler answered at {address} within 1 s" in err
    assert elapsed < 15
    assert not (tmp_path / "x").exists()  # connected before anything was written


_WITHOUT = r"""
import json, sys
sys.modules[sys.argv[1]] = None          # as if the package were not installed
from openmm_closure.cli import main
print(json.dumps(main(json.loads(sys.argv[2]))))
"""


@pytest.mark.parametrize("missing, argv, names", [
    ("distributed", ["simulate", *ARGS, "--scheduler", "local"], "dask.distributed"),
    ("dask_jobqueue", ["simulate", *ARGS, "--scheduler", "jobqueue", "--jobs", "1"], "dask-jobqueue"),
    ("distributed", ["evaluate", "--model", "nowhere", "--scheduler", "local"], "dask.distributed"),
])
def test_missing_extra_names_it(tmp_path, missing, argv, names):
    argv = list(argv) + ["--out", str(tmp_path / "out")]
    if argv[0] == "evaluate":
        argv += ["--data", str(tmp_path)]
    r = subprocess.run([sys.executable, "-c", _WITHOUT, missing, json.dumps(argv)], capture_output=True,
                       text=True, timeout=120, cwd=ROOT)
    assert r.stdout.strip().splitlines()[-1] == "2", r.stdout + r.stderr
    err = r.stderr.strip()
    assert len(err.splitlines()) == 1 and EXTRA in err and names in err, err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("extra, message", [
    (["--jobs", "2"], "--jobs applies to --scheduler jobqueue only"),
    (["--jobqueue-system", "slurm"], "--jobqueue-system applies to --scheduler jobqueue only"),
    (["--scheduler", "local", "--jobs", "2"], "--jobs applies to --scheduler jobqueue only"),
    (["--scheduler", "jobqueue"], "--scheduler jobqueue needs --jobs N"),
    (["--scheduler", "jobqueue", "--jobs", "0"], "--jobs must be an integer >= 1"),
    (["--scheduler", "jobqueue", "--jobs", "1", "--jobqueue-system", "torque"], "--jobqueue-system must be one of"),
    (["--scheduler", "tcp://127.0.0.1:1", "--workers", "2"], "--workers sets the size of --scheduler local"),
    (["--scheduler", "localhost"], "--scheduler must be local, jobqueue or a scheduler address"),
    (["--scheduler", "local", "--workers", "0"], "workers must be an integer >= 1"),
    (["--scheduler", "tcp://127.0.0.1:1", "--scheduler-timeout", "0"], "--scheduler-timeout must be"),
])
def test_bad_scheduler_options(tmp_path, capsys, extra, message):
    rc = cli_main(["simulate", *ARGS, "--out", str(tmp_path / "x"), *extra])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "x").exists()


def test_evaluate_workers_without_a_scheduler(tmp_path, capsys):
    rc = cli_main(["evaluate", "--model", "m", "--data", str(tmp_path), "--out", str(tmp_path / "r"),
                   "--workers", "2"])
    assert rc == 2 and "--workers sets the size of --scheduler local" in capsys.readouterr().err
