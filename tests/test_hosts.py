"""Host profiles (PLUMED PYTORCH_MODEL, GROMACS Colvars torchANN, .pt2): a compiled C++ harness calls
each saved model the way its host's source does and must match the eager model.

Tolerance: ẑ, energies and forces to 1e-5 relative to max(1, |value|): the hosts compute
in float32, like the eager reference here (float32 weights, float32 positions)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import build_cpp_example, train_tiny_model

from openmm_closure import load_model
from openmm_closure.cli import main
from openmm_closure.hosts.export import check_export_dir, export_model

ROOT = Path(__file__).resolve().parents[1]
N = 12  # particles of the lj-mixing model's baked species
TOL = 1e-5
pytestmark = [
    pytest.mark.filterwarnings("ignore:.*torch.jit.* is deprecated:DeprecationWarning"),
    pytest.mark.usefixtures("one_torch_thread"),
]


def _types(name):
    return (np.arange(N) % 2).astype(np.int64) if name == "lj-mixing" else None


@pytest.fixture(scope="module")
def host_models(tmp_path_factory):
    """name -> (model dir, export dir with the PLUMED and GROMACS profiles)."""
    base = tmp_path_factory.mktemp("hosts")
    out = {}
    for name in ("particles2d", "lj-mixing"):
        d = train_tiny_model(base / f"model-{name}", name)
        export_model(d, base / f"export-{name}", types=_types(name), hosts=["plumed", "gromacs"],
                     component=1, force_constant=250.0, target=0.2)
        out[name] = (d, base / f"export-{name}")
    return out


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    """Build examples/cpp's host_harness once (about 40-80 s on two shared cores)."""
    return build_cpp_example(tmp_path_factory.mktemp("harness-build"), target="host_harness", timeout=600)


def _write_tensors(path: Path, tensors) -> None:
    lines = []
    for kind, t in tensors:
        a = np.asarray(t)
        lines.append(f"tensor {kind} {a.ndim} " + " ".join(str(d) for d in a.shape))
        lines.append(" ".join(repr(float(v)) for v in a.reshape(-1)))
    path.write_text("\n".join(lines) + "\n")


def _run(harness, mode, model, inp):
    # a .pt2 package's kernels link libtorch.so: the loader finds it through LD_LIBRARY_PATH
    lib = os.path.join(os.path.dirname(torch.__file__), "lib")
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "LD_LIBRARY_PATH": os.pathsep.join(filter(None, [lib, os.environ.get("LD_LIBRARY_PATH")]))}
    res = subprocess.run([str(harness), mode, str(model), str(inp)], capture_output=True, text=True,
                         timeout=120, env=env)
    out = {}
    for line in res.stdout.splitlines():
        parts = line.split()
        ndim = int(parts[1])
        shape = tuple(int(v) for v in parts[2:2 + ndim])
        out[parts[0]] = np.array([float(v) for v in parts[2 + ndim:]]).reshape(shape)
    return res, out


def _config(model, n, seed):
    rng = np.random.default_rng(seed)
    pos = np.zeros((n, 3))
    pos[:, :2] = rng.random((n, 2)) * 4
    return pos, (np.arange(n) % model.n_species).astype(np.int64)


def _close(got, want, tol=TOL):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape
    assert np.all(np.abs(got - want) <= tol * np.maximum(1.0, np.abs(want))), np.abs(got - want).max()


# ---------------------------------------------------------------------------- PLUMED
@pytest.mark.parametrize("name", ["particles2d", "lj-mixing"])
def test_plumed_harness_matches_eager(host_models, harness, tmp_path, name):
    model_dir, export_dir = host_models[name]
    model = load_model(model_dir)
    n = N if name == "lj-mixing" else 21  # one species: any number of atoms
    pos, types = _config(model, n, 3)
    _write_tensors(tmp_path / "in.txt", [("f64", pos)])
    res, out = _run(harness, "plumed", export_dir / "plumed_model.pt", tmp_path / "in.txt")
    assert res.returncode == 0, res.stderr
    x = torch.tensor(pos, dtype=torch.float32, requires_grad=True)
    want = model.encoder(x, torch.tensor(types))
    assert out["out"].shape == (1, model.latent_dim)
    _close(out["out"][0], want.detach().numpy())
    for j in range(model.latent_dim):
        (g,) = torch.autograd.grad(want[j], x, retain_graph=True)
        assert np.abs(g.numpy()).max() > 0
        _close(out[f"grad_{j}"].reshape(n, 3), g.numpy())
    # the plumed.dat fragment names the file, every coordinate in order, a PRINT and the examples
    dat = (export_dir / "plumed_model.dat").read_text()
    n_dat = N  # baked species: exactly N; one species: any n, the fragment lists the trained count (N)
    assert dat.count(": POSITION ATOM=") == n_dat and "length nm" in dat
    line = next(ln for ln in dat.splitlines() if "PYTORCH_MODEL" in ln)
    args = line.split("ARG=")[1].split(",")
    assert "FILE=plumed_model.pt" in line and args[:4] == ["p1.x", "p1.y", "p1.z", "p2.x"] and len(args) == 3 * n_dat
    assert "PRINT" in dat and "# restraint: RESTRAINT ARG=closure.node-0" in dat and "METAD ARG=closure.node-0" in dat
    meta = json.loads((export_dir / "plumed_model.json").read_text())
    assert meta["kind"] == "plumed" and meta["outputs"] == [f"node-{j}" for j in range(model.latent_dim)]


# ---------------------------------------------------------------------------- GROMACS
@pytest.mark.parametrize("mode", ["colvars", "colvars-f64"])
@pytest.mark.parametrize("name", ["particles2d", "lj-mixing"])
def test_gromacs_colvars_harness_matches_eager(host_models, harness, tmp_path, name, mode):
    """colvars_model.pt called as Colvars' torchANN does inside GROMACS (float32, and float64
    with doubleInputTensor): each m_output_index j is ẑ_j, its gradient that of the eager model."""
    model_dir, export_dir = host_models[name]
    model = load_model(model_dir)
    n = N if name == "lj-mixing" else 19
    pos, types = _config(model, n, 4)
    _write_tensors(tmp_path / "in.txt", [("f64", pos)])
    res, out = _run(harness, mode, export_dir / "colvars_model.pt", tmp_path / "in.txt")
    assert res.returncode == 0, res.stderr
    x = torch.tensor(pos, dtype=torch.float32, requires_grad=True)
    want = model.encoder(x, torch.tensor(types))
    for j in range(model.latent_dim):
        (g,) = torch.autograd.grad(want[j], x, retain_graph=True)
        _close(out[f"value_{j}"], float(want[j].detach()))
        assert np.abs(g.numpy()).max() > 0
        _close(out[f"grad_{j}"].reshape(n, 3), g.numpy(), tol=TOL * max(1.0, float(g.abs().max())))
    assert not any(k.startswith("value_") and int(k.split("_")[1]) >= model.latent_dim for k in out)


@pytest.mark.parametrize("name", ["particles2d", "lj-mixing"])
def test_gromacs_colvars_config_and_mdp(host_models, name):
    """The Colvars config: one torchANN colvar per closure component on the same atoms in
    order, the harmonic bias on the exported component with its k and centre; the .mdp lines
    switch Colvars on (no nnpot option anywhere: the force field stays)."""
    model_dir, export_dir = host_models[name]
    model = load_model(model_dir)
    cfg = (export_dir / "gromacs_colvars.dat").read_text()
    n = N if name == "lj-mixing" else 16
    live = [ln.split("#")[0].strip() for ln in cfg.splitlines() if ln.split("#")[0].strip()]
    names = [ln.split()[1] for ln in live if ln.startswith("name ") and ln != "name closure_restraint"]
    assert names == [f"zhat_{j}" for j in range(model.latent_dim)]
    assert [ln for ln in live if ln.startswith("m_output_index")] == \
        [f"m_output_index {j}" for j in range(model.latent_dim)]
    assert live.count("modelFile colvars_model.pt") == model.latent_dim
    atoms = [ln for ln in live if ln.startswith("atoms {")]
    assert len(atoms) == model.latent_dim
    assert all(a == "atoms { atomNumbers " + " ".join(str(i) for i in range(1, n + 1)) + " }" for a in atoms)
    harmonic = live[live.index("harmonic {"):]
    assert harmonic[:5] == ["harmonic {", "name closure_restraint", "colvars zhat_1", "centers 0.2",
                            "forceConstant 250.0"]
    assert "doubleInputTensor no" in live and not any("nnpot" in ln for ln in live)
    mdp = (export_dir / "gromacs_colvars.mdp").read_text()
    assert "colvars-active      = yes" in mdp and "colvars-configfile  = gromacs_colvars.dat" in mdp
    assert not any(ln.strip().startswith("nnpot") for ln in mdp.splitlines())
    meta = json.loads((export_dir / "colvars_model.json").read_text())
    assert meta["kind"] == "gromacs-colvars" and "colvarcomp_torchann.cpp" in meta["host"]


def test_gromacs_nnpot_refused_in_one_line(host_models, tmp_path, capsys):
    model_dir, _ = host_models["particles2d"]
    assert main(["export", "--model", str(model_dir), "--out", str(tmp_path / "o"), "--host", "gromacs-nnpot"]) != 0
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "NNP/MM" in err and "replace the group's force field" in err
    assert "--host gromacs" in err and not (tmp_path / "o").exists()


def test_baked_particle_count_enforced(host_models, harness, tmp_path):
    _, export_dir = host_models["lj-mixing"]
    pos = np.random.default_rng(0).random((N + 1, 3))
    _write_tensors(tmp_path / "in.txt", [("f64", pos)])
    for mode, f in (("plumed", "plumed_model.pt"), ("colvars", "colvars_model.pt")):
        res, _ = _run(harness, mode, export_dir / f, tmp_path / "in.txt")
        assert res.returncode == 1 and f"exported for {N} atoms" in res.stderr, res.stderr
        assert res.stderr.strip().count("\n") == 0
    plumed = torch.jit.load(str(export_dir / "plumed_model.pt"))
    with pytest.raises(torch.jit.Error, match=f"exported for {N} atoms"):
        plumed(torch.zeros(1, 3 * (N - 1)))


def test_host_needs_types_for_multispecies(host_models, tmp_path):
    model_dir, _ = host_models["lj-mixing"]
    for host in ("plumed", "gromacs"):
        with pytest.raises(ValueError, match=f"--host {host}: the model has 2 species.*--types"):
            export_model(model_dir, tmp_path / "o", hosts=[host])
    with pytest.raises(ValueError, match=r"species index out of range.*with 2 species"):
        export_model(model_dir, tmp_path / "o", hosts=["plumed"], types=np.full(N, 5))
    assert not (tmp_path / "o").exists()  # refused before anything was written


def test_cli_hosts_indexed_and_removed(host_models, tmp_path, capsys):
    model_dir, _ = host_models["particles2d"]
    out = tmp_path / "x"
    assert main(["export", "--model", str(model_dir), "--out", str(out), "--host", "plumed",
                 "--host", "gromacs"]) == 0
    index = check_export_dir(out)["sha256"]
    for f in ("plumed_model.pt", "plumed_model.json", "plumed_model.dat", "colvars_model.pt",
              "colvars_model.json", "gromacs_colvars.dat", "gromacs_colvars.mdp"):
        assert f in index and (out / f).exists()
    assert "wrote " + str(out / "plumed_model.dat") in capsys.readouterr().out
    (out / "plumed_model.dat").write_text("edited\n")
    with pytest.raises(ValueError):
        check_export_dir(out)
    assert main(["export", "--model", str(model_dir), "--out", str(out)]) == 0  # no --host: profiles removed
    assert not (out / "plumed_model.pt").exists() and not (out / "gromacs_colvars.mdp").exists()
    check_export_dir(out)


def test_pt2_without_compiler_clear_error(host_models, tmp_path):
    model_dir, _ = host_models["particles2d"]
    env = {**os.environ, "CXX": str(tmp_path / "no-such-c++")}
    res = subprocess.run([sys.executable, "-m", "openmm_closure.cli", "export", "--model", str(model_dir),
                          "--out", str(tmp_path / "o"), "--format", "pt2"], capture_output=True, text=True,
                         env=env, timeout=120)
    assert res.returncode == 2
    assert f"CXX={tmp_path / 'no-such-c++'} was not found" in res.stderr and "C++ compiler" in res.stderr
    assert res.stderr.strip().count("\n") == 0
    assert not (tmp_path / "o").exists()
    env = {k: v for k, v in os.environ.items() if k != "CXX"}
    env["PATH"] = str(tmp_path)  # no g++ on PATH
    res = subprocess.run([sys.executable, "-m", "openmm_closure.cli", "export", "--model", str(model_dir),
                          "--out", str(tmp_path / "o"), "--format", "pt2"], capture_output=True, text=True,
                         env=env, timeout=120)
    assert res.returncode == 2 and "g++ on PATH was not found" in res.stderr, res.stderr


# ---------------------------------------------------------------------------- .pt2
@pytest.mark.slow
@pytest.mark.parametrize("name", ["particles2d", "lj-mixing"])
def test_pt2_rollout_encoder_bias_match_eager(host_models, harness, tmp_path, name):
    """AOTInductor compiles three packages per model: about 70 s a model on two shared cores
    (empty inductor cache), so this is marked slow."""
    from openmm_closure.hosts.pt2 import load_pt2_metadata

    model_dir, _ = host_models[name]
    model = load_model(model_dir)
    out = tmp_path / "x"
    steps = 5
    export_model(model_dir, out, types=_types(name), formats=["pt2"], rollout_steps=steps,
                 component=0, force_constant=30.0, target=0.1)
    index = check_export_dir(out)["sha256"]
    for kind in ("encoder", "dynamics", "collective_variable"):
        assert f"{kind}.aoti.pt2" in index and f"{kind}.aoti.json" in index
        assert load_pt2_metadata(out / f"{kind}.aoti.pt2") == json.loads((out / f"{kind}.aoti.json").read_text())
    assert load_pt2_metadata(out / "dynamics.aoti.pt2")["rollout_steps"] == steps

    n = N if name == "lj-mixing" else 23
    pos, types = _config(model, n, 5)
    z0 = model.state(pos, types)
    k, seed = 3, 7
    # the eager rollout draws its noise like this (see ClosureModel.rollout); an ODE ignores it
    noise = torch.randn((steps, k, model.dim), generator=torch.Generator().manual_seed(seed),
                        dtype=torch.float64).to(torch.float32)
    eager = model.rollout(z0, steps, samples=k, seed=seed)
    z0k = z0.unsqueeze(0).expand(k, -1).contiguous().float()
    _write_tensors(tmp_path / "roll.txt", [("f32", z0k.numpy()), ("f32", noise.numpy())])
    res, got = _run(harness, "pt2", out / "dynamics.aoti.pt2", tmp_path / "roll.txt")
    assert res.returncode == 0, res.stderr
    assert got["meta_bytes"] > 100
    _close(got["out_0"], eager.numpy())
    if name == "lj-mixing":
        assert np.abs(np.diff(eager.numpy(), axis=0)).max() > 0  # the noise moved the samples apart

    _write_tensors(tmp_path / "enc.txt", [("f32", pos), ("i64", types)])
    res, got = _run(harness, "pt2", out / "encoder.aoti.pt2", tmp_path / "enc.txt")
    assert res.returncode == 0, res.stderr
    _close(got["out_0"], model.encode(pos, types))

    zc = float(model.encode(pos, types)[0])
    _write_tensors(tmp_path / "bias.txt", [("f32", pos), ("f32", np.array(30.0)), ("f32", np.array(zc - 0.5))])
    res, got = _run(harness, "pt2", out / "collective_variable.aoti.pt2", tmp_path / "bias.txt")
    assert res.returncode == 0, res.stderr
    _close(got["out_0"], 0.5 * 30.0 * 0.25)
    _close(got["out_1"], zc)
