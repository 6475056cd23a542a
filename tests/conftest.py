"""Shared test fixtures: the OpenMM platforms to test on."""

import pytest

from openmm_closure.md.platforms import available_platforms

# Reference and CPU always; CUDA/OpenCL too where this machine has them.
PLATFORMS = [p for p in available_platforms() if p in ("Reference", "CPU", "CUDA", "OpenCL")]


@pytest.fixture(params=PLATFORMS)
def platform_name(request):
    return request.param


def potential_energy(system, positions, parameters=None):
    """Potential energy (kJ/mol) of ``system`` at ``positions`` on the Reference platform."""
    import openmm

    ctx = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    for name, value in (parameters or {}).items():
        ctx.setParameter(name, value)
    ctx.setPositions(positions)
    return ctx.getState(getEnergy=True).getPotentialEnergy()._value


@pytest.fixture
def one_torch_thread():
    """One torch thread: the model tests use small ops, and shared CI cores must not be
    oversubscribed (two threads made them several times slower there)."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def contracting_clusters(n, replicas, frames, seed=0):
    """A tiny particles2d ArrayDataset: Gaussian clusters contracting towards their centre
    (x(t) = c + (x0 - c) e^{-0.1 f}), so the mean pair energy changes over the frames."""
    import numpy as np

    from openmm_closure.data import ArrayDataset
    from openmm_closure.md.observables import mean_pair_energy

    rng = np.random.default_rng(seed)
    pos = np.zeros((replicas, frames, n, 3), dtype=np.float32)
    for r in range(replicas):
        x0 = rng.normal(scale=0.5, size=(n, 2))
        centre = x0.mean(0)
        for f in range(frames):
            pos[r, f, :, :2] = centre + (x0 - centre) * np.exp(-0.1 * f)
    return ArrayDataset(
        pos, np.zeros(n, dtype=np.int64), np.arange(frames) * 0.02,
        {"energy": mean_pair_energy(pos.astype(np.float64))},
        {"system": "particles2d", "observables": ["energy"], "regime": "in-dst", "dt_frame": 0.02},
    )


#: small simulated systems for the closure/hand-over tests: builder parameters per system
SMALL_SYSTEMS = {
    "particles2d": dict(n_particles=24, steps=40, report_interval=2),
    "lj-mixing": dict(walls=(8.0, 8.0), steps=400, report_interval=20, relax_steps=200),
}


@pytest.fixture(scope="session")
def simulated_models(tmp_path_factory):
    """name -> model directory: a tiny model trained for a few epochs on six simulated
    replicas of a small particles2d (ODE) and lj-mixing (SDE) system (about 20 s in all)."""
    import torch

    from openmm_closure.data import load
    from openmm_closure.md.simulate import simulate_ensemble
    from openmm_closure.learn.training import TrainConfig, train_on

    base = tmp_path_factory.mktemp("simulated")
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    out = {}
    try:
        for name, params in SMALL_SYSTEMS.items():
            data = simulate_ensemble(name, base / f"data-{name}", 6, seed=1, platform="CPU", progress=False, **params)
            cfg = TrainConfig(data="", out=str(base / f"model-{name}"), epochs_stage1=12, epochs_stage2=5,
                              samples=64, flow_transforms=2, flow_hidden=(16, 16), dynamics_hidden=(16, 16),
                              encoder_hidden=(16,), encoder_embed=8, batch_size=8, batch_size_stage2=16,
                              val_fraction=0.2, progress=False, device="cpu", seed=2)
            train_on(load(data), cfg)
            out[name] = base / f"model-{name}"
    finally:
        torch.set_num_threads(old)
    return out


def build_cpp_example(build_dir, target=None, timeout=300):
    """Configure and build ``examples/cpp`` against the installed torch in ``build_dir``
    and return the path of ``target`` (default: the ``closure_host`` program). Skips the
    calling test only where this machine has no cmake or C++ compiler."""
    import os
    import shutil
    import subprocess
    from pathlib import Path

    import torch

    cmake = shutil.which("cmake")
    if cmake is None or (shutil.which("c++") or shutil.which("g++")) is None:
        pytest.skip("no cmake or C++ compiler on this machine: examples/cpp cannot be built")
    root = Path(__file__).resolve().parents[1]
    cfg = subprocess.run([cmake, "-S", str(root / "examples" / "cpp"), "-B", str(build_dir),
                          f"-DTORCH_ROOT={os.path.dirname(torch.__file__)}",
                          f"-DTORCH_CXX11_ABI={int(torch._C._GLIBCXX_USE_CXX11_ABI)}"],
                         capture_output=True, text=True, timeout=120)
    assert cfg.returncode == 0, cfg.stdout + cfg.stderr
    cmd = [cmake, "--build", str(build_dir), "-j", "2"] + (["--target", target] if target else [])
    bld = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert bld.returncode == 0, bld.stdout[-3000:] + bld.stderr[-3000:]
    exe = Path(build_dir) / (target or "closure_host")
    assert exe.exists(), exe
    return exe


def train_tiny_model(out, system: str):
    """A tiny model trained in about a second: particles2d -> 1 species, ODE; lj-mixing -> 2, SDE."""
    import numpy as np
    import torch

    from openmm_closure.md import observables
    from openmm_closure.data import ArrayDataset
    from openmm_closure.learn.training import TrainConfig, train_on

    rng = np.random.default_rng(0)
    r, f, n = 4, 5, 12
    pos = (rng.random((r, f, n, 3)) * 4).astype(np.float32)
    pos[..., 2] = 0
    if system == "particles2d":
        types, names, params = np.zeros(n, np.int64), ["energy"], {"a": 4.0, "b": 0.1}
    else:
        types, names, params = (np.arange(n) % 2).astype(np.int64), ["R_AB", "R_BA"], {"cutoff": 1.0}
    obs = observables.compute(names, pos.astype(np.float64), types, **params)
    ds = ArrayDataset(pos, types, np.arange(f) * 0.02, obs,
                      {"system": system, "observables": names, "params": params})
    cfg = TrainConfig(data="", out=str(out), epochs_stage1=1, epochs_stage2=2, samples=16,
                      flow_transforms=1, flow_hidden=(8, 8), dynamics_hidden=(8, 8),
                      encoder_hidden=(16,), encoder_embed=8, batch_size=4, batch_size_stage2=8,
                      val_fraction=0.25, progress=False, device="cpu", seed=1)
    torch.set_num_threads(1)
    train_on(ds, cfg)
    return out


def assert_same_dataset(a, b, ignore=("versions",)):
    """Two dataset directories hold bitwise the same replicas (positions, times, species,
    observables) and the same manifest apart from the keys in ``ignore``; no temporaries
    (``*.part.h5``) are left in ``b``."""
    from pathlib import Path

    import numpy as np

    from openmm_closure.data import load

    da, db = load(a), load(b)
    assert len(da) == len(db)
    for i in range(len(da)):
        ra, rb = da.replica(i), db.replica(i)
        np.testing.assert_array_equal(ra.positions, rb.positions)
        np.testing.assert_array_equal(ra.times, rb.times)
        np.testing.assert_array_equal(ra.types, rb.types)
        assert ra.observables.keys() == rb.observables.keys()
        for k in ra.observables:
            np.testing.assert_array_equal(ra.observables[k], rb.observables[k])
    assert {k: v for k, v in da.manifest.items() if k not in ignore} == \
        {k: v for k, v in db.manifest.items() if k not in ignore}
    assert not list(Path(b).glob("*.part.h5"))
