"""ClosureReporter on a plain openmm.app script: ẑ equals model.encode of the same frames."""

import csv
import os

import numpy as np
import openmm
import pytest
from openmm import app, unit

from conftest import SMALL_SYSTEMS
from openmm_closure import load_model, systems
from openmm_closure.hosts.export import export_model
from openmm_closure.reporters import ClosureReporter

pytestmark = [
    pytest.mark.filterwarnings("ignore:.*torch.jit.* is deprecated:DeprecationWarning"),
    pytest.mark.usefixtures("one_torch_thread"),
]


class _Frames:
    """A reporter that keeps the positions (nm) of every report."""

    def __init__(self, interval):
        self.interval, self.frames = interval, []

    def describeNextReport(self, simulation):
        return {"steps": self.interval - simulation.currentStep % self.interval, "periodic": False,
                "include": ["positions"]}

    def report(self, simulation, state):
        self.frames.append(state.getPositions(asNumpy=True).value_in_unit(unit.nanometer).copy())


@pytest.mark.parametrize("name", ["particles2d", "lj-mixing"])
@pytest.mark.parametrize("ext", ["csv", "h5"])
def test_reporter_zhat_equals_model_encode(simulated_models, tmp_path, name, ext):
    model_dir = simulated_models[name]
    model = load_model(model_dir)
    export_model(model_dir, tmp_path / "x")
    spec = systems.build(name, seed=11, **SMALL_SYSTEMS[name])
    # a plain openmm.app script: Simulation, reporters, step
    sim = app.Simulation(spec.topology, spec.system, spec.new_integrator(),
                         openmm.Platform.getPlatformByName("CPU"))
    sim.context.setPositions(spec.positions)
    interval = spec.report_interval
    rep = ClosureReporter(tmp_path / f"closure.{ext}", interval, tmp_path / "x" / "encoder.pt")
    frames = _Frames(interval)
    sim.reporters += [rep, frames]
    sim.step(5 * interval)
    rep.close()
    pos = np.stack(frames.frames)
    if ext == "csv":
        with open(tmp_path / "closure.csv") as f:
            rows = list(csv.reader(f))
        header, data = rows[0], np.array(rows[1:], dtype=float)
    else:
        import tables

        with tables.open_file(str(tmp_path / "closure.h5")) as f:
            tab = f.root.closure.read()
            header = list(tab.dtype.names)
            data = np.stack([tab[c].astype(float) for c in header], axis=1)
    zcols = [f"zhat_{i}" for i in range(model.latent_dim)]
    assert header == ["step", "time_ps"] + model.observables + zcols
    assert len(data) == 5 and np.array_equal(data[:, 0], np.arange(1, 6) * interval)
    types = spec.types  # atom names A/B -> the model's species order
    want = model.encode(pos, types)
    got = data[:, 2 + model.macro_dim:]
    assert np.abs(want).max() > 1e-3
    assert np.allclose(got, want, rtol=0, atol=1e-5)
    assert np.allclose(data[:, 2:2 + model.macro_dim], model.macro(pos, types), rtol=1e-10, atol=1e-12)
    # the model directory (exported in memory) gives the same numbers
    sim2 = app.Simulation(spec.topology, spec.system, spec.new_integrator(),
                          openmm.Platform.getPlatformByName("CPU"))
    sim2.context.setPositions(pos[-1])
    rep2 = ClosureReporter(tmp_path / "again.csv", 1, model_dir)
    rep2.report(sim2, sim2.context.getState(getPositions=True))
    rep2.close()
    again = np.loadtxt(tmp_path / "again.csv", delimiter=",", skiprows=1)
    assert np.allclose(again[2 + model.macro_dim:], want[-1], atol=1e-5)


def test_reporter_bad_input(simulated_models, tmp_path):
    model_dir = simulated_models["lj-mixing"]
    export_model(model_dir, tmp_path / "x")
    enc = tmp_path / "x" / "encoder.pt"
    with pytest.raises(ValueError, match="csv, .h5 or .hdf5"):
        ClosureReporter(tmp_path / "c.txt", 10, enc)
    with pytest.raises(ValueError, match="reportInterval"):
        ClosureReporter(tmp_path / "c.csv", 0, enc)
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    for bad in (tmp_path / "junk.pt", tmp_path, tmp_path / "missing.pt"):
        with pytest.raises(ValueError, match="encoder") as info:
            ClosureReporter(tmp_path / "c.csv", 10, bad)
        assert "\n" not in str(info.value)
    # a topology whose atoms lack species B of the model
    spec = systems.build("lj-mixing", seed=3, **SMALL_SYSTEMS["lj-mixing"])
    names = ["A"] * spec.n_particles
    from openmm_closure.systems.spec import single_atom_topology

    sim = app.Simulation(single_atom_topology(names), spec.system, spec.new_integrator(),
                         openmm.Platform.getPlatformByName("Reference"))
    sim.context.setPositions(spec.positions)
    rep = ClosureReporter(tmp_path / "c.csv", 1, enc)
    with pytest.raises(ValueError, match=r"species \['B'\] are missing from the topology.*types="):
        rep.report(sim, sim.context.getState(getPositions=True))
    # atom names the model does not know
    sim = app.Simulation(single_atom_topology(["X"] * spec.n_particles), spec.system, spec.new_integrator(),
                         openmm.Platform.getPlatformByName("Reference"))
    sim.context.setPositions(spec.positions)
    with pytest.raises(ValueError, match=r"\['X'\] are not species of this model"):
        ClosureReporter(tmp_path / "d.csv", 1, enc).report(sim, sim.context.getState(getPositions=True))
    # NaN coordinates
    sim = app.Simulation(spec.topology, spec.system, spec.new_integrator(),
                         openmm.Platform.getPlatformByName("Reference"))
    pos = np.array(spec.positions)
    pos[3, 0] = np.nan
    sim.context.setPositions(pos)
    with pytest.raises(ValueError, match="non-finite"):
        ClosureReporter(tmp_path / "e.csv", 1, enc).report(sim, sim.context.getState(getPositions=True))


def test_reporter_species_baked_count(simulated_models, tmp_path):
    """collective_variable.pt has the species of n particles baked in: another n is refused."""
    model_dir = simulated_models["lj-mixing"]
    spec = systems.build("lj-mixing", seed=3, **SMALL_SYSTEMS["lj-mixing"])
    export_model(model_dir, tmp_path / "x", types=spec.types[:-2])
    sim = app.Simulation(spec.topology, spec.system, spec.new_integrator(),
                         openmm.Platform.getPlatformByName("Reference"))
    sim.context.setPositions(spec.positions)
    rep = ClosureReporter(tmp_path / "c.csv", 1, tmp_path / "x" / "collective_variable.pt")
    with pytest.raises(ValueError, match=f"exported with the species of {spec.n_particles - 2} particles"):
        rep.report(sim, sim.context.getState(getPositions=True))


def test_reporters_import_no_torch():
    import subprocess
    import sys

    code = "import sys, openmm_closure.reporters; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "False"
