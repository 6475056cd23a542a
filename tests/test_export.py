"""Export: TorchScript modules equal the eager model, metadata, the compiled C++ host, TorchForce."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import build_cpp_example, train_tiny_model

from openmm_closure import load_model
from openmm_closure.cli import main
from openmm_closure.hosts.export import export_model, read_metadata

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [
    pytest.mark.filterwarnings("ignore:.*torch.jit.* is deprecated:DeprecationWarning"),
    pytest.mark.usefixtures("one_torch_thread"),
]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """name -> (model dir, export dir) for a particles2d (ODE) and an lj-mixing (SDE) model."""
    base = tmp_path_factory.mktemp("export")
    out = {}
    for name in ("particles2d", "lj-mixing"):
        d = train_tiny_model(base / f"model-{name}", name)
        n = 12
        types = (np.arange(n) % 2) if name == "lj-mixing" else None
        export_model(d, base / f"export-{name}", types=types)
        out[name] = (d, base / f"export-{name}")
    return out


def _config(n, model, seed):
    rng = np.random.default_rng(seed)
    pos = rng.random((n, 3)) * 4
    pos[:, 2] = 0
    return pos, (np.arange(n) % model.n_species).astype(np.int64)


# ---------------------------------------------------------------------------- encoder, dynamics
@pytest.mark.parametrize("name", ["particles2d", "lj-mixing"])
def test_encoder_matches_eager_and_metadata(models, name):
    model_dir, export_dir = models[name]
    model = load_model(model_dir)
    enc = torch.jit.load(str(export_dir / "encoder.pt"))
    for n in (12, 37):
        pos, types = _config(n, model, n)
        for dtype in (torch.float32, torch.float64):
            x = torch.tensor(pos, dtype=dtype)
            t = torch.tensor(types)
            got = enc(x, t)
            want = model.encode(x, t)
            assert got.shape == (model.latent_dim,)
            assert torch.allclose(got.double(), want.double(), rtol=0, atol=1e-6), (n, dtype)
            assert np.allclose(got.double().numpy(), model.encode(pos, types), rtol=0, atol=1e-6)
    # a permutation of the particles changes nothing
    perm = np.random.default_rng(3).permutation(37)
    assert torch.allclose(enc(torch.tensor(pos[perm]), torch.tensor(types[perm])),
                          enc(torch.tensor(pos), torch.tensor(types)), atol=1e-6)
    with pytest.raises(torch.jit.Error, match="species index out of range"):
        enc(torch.tensor(pos), torch.full((37,), model.n_species))

    inside = read_metadata(export_dir / "encoder.pt")
    beside = json.loads((export_dir / "encoder.json").read_text())
    assert inside == beside
    assert inside["kind"] == "encoder" and inside["format_version"] == 1
    assert inside["latent_dim"] == model.latent_dim and inside["n_species"] == model.n_species
    assert inside["species"] == model.config["species"] and inside["epsilon"] == model.epsilon
    assert inside["observables"] == model.observables and inside["units"]["positions"] == "nm"
    assert np.allclose(inside["coordinate_range"]["lo"], model.encoder.coords.lo.numpy())
    assert np.allclose(inside["coordinate_range"]["hi"], model.encoder.coords.hi.numpy())
    assert inside["package_version"]
    for f in ("dynamics", "collective_variable"):
        if (export_dir / f"{f}.pt").exists():
            assert read_metadata(export_dir / f"{f}.pt") == json.loads((export_dir / f"{f}.json").read_text())


@pytest.mark.parametrize("name", ["particles2d", "lj-mixing"])
def test_dynamics_matches_eager_rollout(models, name):
    model_dir, export_dir = models[name]
    model = load_model(model_dir)
    dyn = torch.jit.load(str(export_dir / "dynamics.pt"))
    meta = read_metadata(export_dir / "dynamics.pt")
    assert dyn.dim == model.dim == meta["dim"] and dyn.macro_dim == model.macro_dim
    assert dyn.stochastic == (name == "lj-mixing") and dyn.dt == pytest.approx(model.dt)
    assert list(dyn.names) == meta["names"] == model.observables + [f"zhat_{i}" for i in range(model.latent_dim)]
    assert np.allclose(meta["state_range"]["lo"], model.state_scaler.lo.numpy())

    pos, types = _config(12, model, 0)
    z0 = model.state(pos, types)
    steps, k, seed = 6, 3, 5
    # the eager rollout draws its noise like this (see ClosureModel.rollout)
    noise = torch.randn((steps, k, model.dim), generator=torch.Generator().manual_seed(seed),
                        dtype=torch.float64).to(model.dtype)
    z0k = z0.unsqueeze(0).expand(k, -1).contiguous()
    eager = model.rollout(z0, steps, samples=k, seed=seed)
    got = dyn.rollout(z0k, steps, model.dt, noise)
    assert got.shape == (k, steps + 1, model.dim)
    assert torch.allclose(got, eager, rtol=0, atol=1e-6)
    # float64 in, float64 out, same numbers
    got64 = dyn.rollout(z0k.double(), steps, model.dt, noise.double())
    assert got64.dtype == torch.float64 and torch.allclose(got64.float(), eager, atol=1e-6)
    # step, drift, diffusion, scale / unscale
    assert torch.allclose(dyn.step(z0k, model.dt, noise[0]), eager[:, 1], atol=1e-6)
    assert torch.allclose(dyn(z0k), model.dynamics.drift(z0k), atol=1e-7)
    assert torch.allclose(dyn.diffusion(z0k), model.dynamics.diffusion(z0k), atol=1e-7)
    raw = model.unscale(eager)
    assert torch.allclose(dyn.unscale(eager.double()), raw, atol=1e-12)
    assert torch.allclose(dyn.scale(raw), eager.double(), atol=1e-6)


def test_export_refuses_bad_model_dir(models, tmp_path, capsys):
    model_dir, _ = models["particles2d"]
    with pytest.raises(ValueError, match="does not exist"):
        export_model(tmp_path / "missing", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="config.json is missing"):
        export_model(tmp_path / "empty", tmp_path / "out")
    bad = tmp_path / "bad"
    shutil.copytree(model_dir, bad)
    (bad / "model.pt").write_bytes(b"not a state dict")
    with pytest.raises(ValueError, match="malformed"):
        export_model(bad, tmp_path / "out")
    shutil.copy(model_dir / "model.pt", bad / "model.pt")
    (bad / "config.json").write_text("{ truncated")
    with pytest.raises(ValueError, match="malformed"):
        export_model(bad, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing written for a bad model
    with pytest.raises(ValueError, match="component"):
        export_model(model_dir, tmp_path / "out", component=5)

    rc = main(["export", "--model", str(tmp_path / "missing"), "--out", str(tmp_path / "o2")])
    err = capsys.readouterr().err
    assert rc == 2 and "does not exist" in err and err.strip().count("\n") == 0


def test_export_cli(models, tmp_path, capsys):
    model_dir, _ = models["lj-mixing"]
    assert main(["export", "--model", str(model_dir), "--out", str(tmp_path / "a")]) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "a" / "encoder.pt").exists() and (tmp_path / "a" / "dynamics.json").exists()
    assert not (tmp_path / "a" / "collective_variable.pt").exists() and "--types" in out
    np.save(tmp_path / "types.npy", np.arange(12) % 2)
    assert main(["export", "--model", str(model_dir), "--out", str(tmp_path / "b"), "--types",
                 str(tmp_path / "types.npy"), "--component", "1", "--force-constant", "3"]) == 0
    meta = read_metadata(tmp_path / "b" / "collective_variable.pt")
    assert meta["component"] == 1 and meta["force_constant"] == 3.0 and meta["n_particles"] == 12
    cv = torch.jit.load(str(tmp_path / "b" / "collective_variable.pt"))
    model = load_model(model_dir)
    pos, types = _config(12, model, 1)
    zc = float(model.encode(pos, types)[1])
    with torch.no_grad():
        assert float(cv(torch.tensor(pos))) == pytest.approx(0.5 * 3.0 * zc ** 2, rel=1e-5)
        with pytest.raises(torch.jit.Error, match="exported for 12 particles"):
            cv(torch.rand(13, 3))


# ---------------------------------------------------------------------------- C++ host
@pytest.fixture(scope="module")
def cpp_host(tmp_path_factory):
    """Build examples/cpp once per test module; skip only without a toolchain."""
    return build_cpp_example(tmp_path_factory.mktemp("cpp-build"))


def _write_host_input(path: Path, pos: np.ndarray, types: np.ndarray, zbar: np.ndarray) -> None:
    lines = ["# written by tests/test_export.py", f"{len(pos)} {len(zbar)}"]
    lines += [f"{x!r} {y!r} {z!r} {int(t)}" for (x, y, z), t in zip(pos.tolist(), types)]
    lines.append(" ".join(repr(float(v)) for v in zbar))
    path.write_text("\n".join(lines) + "\n")


def _parse_host(stdout: str) -> dict:
    out = {"steps": []}
    for line in stdout.splitlines():
        parts = line.split()
        if parts and parts[0] == "zhat":
            out["zhat"] = np.array([float(v) for v in parts[1:]])
        elif parts and parts[0] == "names":
            out["names"] = parts[1:]
        elif parts and parts[0] == "step":
            out["steps"].append([float(v) for v in parts[2:]])
    out["steps"] = np.array(out["steps"])
    return out


@pytest.mark.parametrize("name", ["particles2d", "lj-mixing"])
def test_cpp_host_matches_python(models, cpp_host, tmp_path, name):
    model_dir, export_dir = models[name]
    model = load_model(model_dir)
    pos, types = _config(29, model, 7)
    zbar = model.macro(pos, types)
    _write_host_input(tmp_path / "config.txt", pos, types, zbar)
    steps, samples = 4, 2
    res = subprocess.run([str(cpp_host), str(export_dir / "encoder.pt"), str(export_dir / "dynamics.pt"),
                          str(tmp_path / "config.txt"), str(steps), str(samples), "0"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    got = _parse_host(res.stdout)
    zhat = model.encode(pos, types)
    assert np.allclose(got["zhat"], zhat, rtol=0, atol=1e-5)
    assert got["names"] == model.observables + [f"zhat_{i}" for i in range(model.latent_dim)]
    table = got["steps"]  # (T, 1 + 2D): time, means, stds
    assert table.shape == (steps + 1, 1 + 2 * model.dim)
    assert np.allclose(table[:, 0], np.arange(steps + 1) * model.dt)
    if name == "particles2d":  # deterministic: the whole rollout equals Python's
        want = model.unscale(model.rollout(model.state(pos, types), steps, samples=1))[0].numpy()
        assert np.allclose(table[:, 1:1 + model.dim], want, rtol=1e-5, atol=1e-6)
        assert np.all(table[:, 1 + model.dim:] == 0)
    else:  # stochastic: starts at the encoded state, spreads
        assert np.allclose(table[0, 1 + model.macro_dim:1 + model.dim], zhat, atol=1e-5)
        assert np.all(table[-1, 1 + model.dim:] > 0)

    # the header: each model's kind and the versions it was exported with
    header = [ln for ln in res.stdout.splitlines() if ln.startswith("# ") and ": kind " in ln]
    assert len(header) == 2 and ": kind encoder, system " + name in header[0]
    assert f"torch {torch.__version__}, libtorch C++11 ABI " in header[0] and ": kind dynamics" in header[1]

    # bad input: one line on stderr, exit code 1
    (tmp_path / "bad.txt").write_text("3 0\n0 0 0 0\n")
    res = subprocess.run([str(cpp_host), str(export_dir / "encoder.pt"), str(export_dir / "dynamics.pt"),
                          str(tmp_path / "bad.txt")], capture_output=True, text=True, timeout=60)
    assert res.returncode == 1 and "end of file" in res.stderr and res.stderr.strip().count("\n") == 0


# ---------------------------------------------------------------------------- TorchForce
@pytest.mark.parametrize("platform", ["Reference", "CPU"])
def test_torchforce_energy_and_forces(models, tmp_path, platform):
    import openmm
    import openmmtorch
    from openmm_closure import systems

    model_dir, _ = models["particles2d"]
    model = load_model(model_dir)
    spec = systems.build("particles2d", n_particles=24, steps=2, seed=4)
    pos = np.asarray(spec.positions, dtype=np.float64) * 3.0  # spread over the training range
    component, k = 1, 250.0
    target = float(model.encode(pos, spec.types)[component]) + 0.3
    export_model(model_dir, tmp_path / "x", component=component, force_constant=k, target=target)

    system = spec.system
    force = openmmtorch.TorchForce(str(tmp_path / "x" / "collective_variable.pt"))
    force.setForceGroup(7)
    system.addForce(force)
    ctx = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName(platform))
    ctx.setPositions(pos)
    state = ctx.getState(getEnergy=True, getForces=True, groups={7})
    energy = state.getPotentialEnergy().value_in_unit(openmm.unit.kilojoule_per_mole)
    forces = np.asarray(state.getForces(asNumpy=True).value_in_unit(
        openmm.unit.kilojoule_per_mole / openmm.unit.nanometer))

    # the eager model: E = 0.5 k (ẑ_c - target)², F = -∂E/∂x by autograd
    x = torch.tensor(pos, requires_grad=True)
    zc = model.encoder(x, torch.as_tensor(spec.types, dtype=torch.long))[component].double()
    e = 0.5 * k * (zc - target) ** 2
    (grad,) = torch.autograd.grad(e, x)
    e, zc = e.detach(), zc.detach()
    want_f = -grad.numpy()
    assert energy > 1.0
    assert energy == pytest.approx(float(e), rel=1e-4)
    assert np.abs(want_f).max() > 0
    assert np.allclose(forces, want_f, rtol=0, atol=1e-4 * np.abs(want_f).max())
    assert np.all(forces[:, 2] == 0)  # 2D: the bias never pushes along z
    # the scripted module itself gives the same energy for float32 and float64 positions
    cv = torch.jit.load(str(tmp_path / "x" / "collective_variable.pt"))
    for dtype in (torch.float32, torch.float64):
        assert float(cv(torch.tensor(pos, dtype=dtype))) == pytest.approx(float(e), rel=1e-4)
    assert float(cv.collective_variable(torch.tensor(pos))) == pytest.approx(float(zc), abs=1e-6)


def test_torchforce_example_runs(models, tmp_path):
    model_dir, _ = models["particles2d"]
    res = subprocess.run([sys.executable, str(ROOT / "examples" / "torchforce_bias.py"), "--model", str(model_dir),
                          "--out", str(tmp_path / "x"), "--steps", "5", "--platform", "Reference",
                          "--move-target"],
                         capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr[-2000:]
    assert "bias energy" in res.stdout and "closure_target ->" in res.stdout
    assert (tmp_path / "x" / "collective_variable.pt").exists()


@pytest.mark.parametrize("platform", ["Reference", "CPU"])
def test_torchforce_global_parameters(models, tmp_path, platform):
    """closure_k and closure_target are TorchForce globals: setParameter moves the bias, no re-export."""
    import openmm
    import openmmtorch  # noqa: F401  (registers TorchForce with OpenMM)
    from openmm_closure import systems
    from openmm_closure.couple.torchforce import closure_torch_force

    model_dir, _ = models["particles2d"]
    model = load_model(model_dir)
    spec = systems.build("particles2d", n_particles=20, steps=2, seed=5)
    pos = np.asarray(spec.positions, dtype=np.float64) * 3.0
    k0, t0 = 40.0, 0.1
    export_model(model_dir, tmp_path / "x", component=0, force_constant=k0, target=t0)
    path = tmp_path / "x" / "collective_variable.pt"
    meta = read_metadata(path)
    assert meta["global_parameters"] == {"closure_k": k0, "closure_target": t0}
    force = closure_torch_force(path)
    assert [force.getGlobalParameterName(i) for i in range(force.getNumGlobalParameters())] == \
        ["closure_k", "closure_target"]
    force.setForceGroup(5)
    spec.system.addForce(force)
    ctx = openmm.Context(spec.system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName(platform))
    ctx.setPositions(pos)
    zc = float(model.encode(pos, spec.types)[0])

    def energy():
        return ctx.getState(getEnergy=True, groups={5}).getPotentialEnergy().value_in_unit(
            openmm.unit.kilojoule_per_mole)

    assert energy() == pytest.approx(0.5 * k0 * (zc - t0) ** 2, rel=1e-5, abs=1e-5)
    for k, target in ((k0, zc + 0.25), (k0, zc - 0.7), (123.0, zc + 0.5)):
        ctx.setParameter("closure_k", k)
        ctx.setParameter("closure_target", target)
        assert energy() == pytest.approx(0.5 * k * (zc - target) ** 2, rel=1e-5, abs=1e-5)
    ctx.setParameter("closure_target", zc)
    assert abs(energy()) < 1e-5
    # the scripted module alone: globals as () tensors, defaults when omitted
    cv = torch.jit.load(str(path))
    x = torch.tensor(pos)
    assert float(cv(x)) == pytest.approx(0.5 * k0 * (zc - t0) ** 2, rel=1e-5)
    assert float(cv(x, torch.tensor(2.0), torch.tensor(zc + 1.0))) == pytest.approx(1.0, rel=1e-5)


def test_centred_model_translation_invariant_eager_and_exported(models):
    """particles2d models centre each set by default: model.encode, encoder.pt and
    collective_variable.pt give the same ẑ (bias energy) for randomly translated sets;
    lj-mixing models (walls) do not centre."""
    model_dir, export_dir = models["particles2d"]
    model = load_model(model_dir)
    assert model.config["encoder"]["center"] is True
    assert load_model(models["lj-mixing"][0]).config["encoder"]["center"] is False
    assert read_metadata(export_dir / "encoder.pt")["coordinate_range"]["centered_per_set"] is True
    enc = torch.jit.load(str(export_dir / "encoder.pt"))
    cv = torch.jit.load(str(export_dir / "collective_variable.pt"))
    pos, types = _config(30, model, 7)
    ref = model.encode(pos, types)
    ref_cv = float(cv(torch.tensor(pos)))
    rng = np.random.default_rng(8)
    for _ in range(10):
        shifted = pos + np.r_[rng.uniform(-20, 20, 2), 0.0]
        assert np.abs(model.encode(shifted, types) - ref).max() <= 1e-5
        got = enc(torch.tensor(shifted), torch.tensor(types)).double().numpy()
        assert np.abs(got - ref).max() <= 1e-5
        assert abs(float(cv(torch.tensor(shifted))) - ref_cv) <= 1e-5 * max(1.0, abs(ref_cv))


def test_cpp_host_refuses_another_torch(models, cpp_host, tmp_path):
    """An encoder whose metadata records another torch (or C++ ABI) is refused in one line."""
    from openmm_closure.hosts.export import ExportedEncoder
    from openmm_closure.hosts.scripting import save_script

    model_dir, export_dir = models["particles2d"]
    model = load_model(model_dir)
    meta = read_metadata(export_dir / "encoder.pt")
    base = {k: v for k, v in meta.items() if k not in ("versions", "records_sha256")}
    pos, types = _config(10, model, 3)
    _write_host_input(tmp_path / "config.txt", pos, types, model.macro(pos, types))
    abi = meta["versions"]["libtorch_cxx11_abi"]
    for versions, needle in (({**meta["versions"], "torch": "1.8.2"}, "exported with torch 1.8.2"),
                             ({**meta["versions"], "libtorch_cxx11_abi": not abi}, f"C++11 ABI {str(not abi).lower()}")):
        save_script(ExportedEncoder(model.encoder), tmp_path / "old.pt", {**base, "versions": versions})
        res = subprocess.run([str(cpp_host), str(tmp_path / "old.pt"), str(export_dir / "dynamics.pt"),
                              str(tmp_path / "config.txt")], capture_output=True, text=True, timeout=60)
        assert res.returncode == 1 and needle in res.stderr and "matching libtorch" in res.stderr, res.stderr
        assert res.stderr.strip().count("\n") == 0 and "zhat" not in res.stdout
