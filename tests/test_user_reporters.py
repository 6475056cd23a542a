"""Reporters on a user's own system: a 3D periodic LJ fluid under a barostat, a box stored
per frame, ``append=`` after a restart, ``atomSubset=``, and observables a user registers."""

import numpy as np
import pytest

import openmm
from openmm import app, unit

from openmm_closure.md import observables as ob
from openmm_closure.data import read_replica, replica_lengths
from openmm_closure.reporters import DatasetReporter, MacroReporter

L = 2.2  # nm


def lj_fluid(n_side=3, solvent_names=("S",), seed=3, barostat=True, triclinic=False):
    """n_side**3 LJ atoms on a lattice in a periodic box; the first 4 are solute "A"."""
    top = app.Topology()
    chain = top.addChain()
    g = (np.arange(n_side) + 0.5) * (L / n_side)
    pos = np.array([[x, y, z] for x in g for y in g for z in g])
    system = openmm.System()
    nb = openmm.NonbondedForce()
    nb.setNonbondedMethod(openmm.NonbondedForce.CutoffPeriodic)
    nb.setCutoffDistance(0.9)
    for i in range(len(pos)):
        name = "A" if i < 4 else solvent_names[i % len(solvent_names)]
        top.addAtom(name, None, top.addResidue(name, chain))
        system.addParticle(39.9)
        nb.addParticle(0.0, 0.34, 0.99)
    a, b, c = openmm.Vec3(L, 0, 0), openmm.Vec3(0, L, 0), openmm.Vec3(0, 0, L)
    if triclinic:
        b = openmm.Vec3(0.3, L, 0)
    system.setDefaultPeriodicBoxVectors(a, b, c)
    top.setPeriodicBoxVectors((a, b, c))
    system.addForce(nb)
    if barostat:
        baro = openmm.MonteCarloBarostat(200.0 * unit.bar, 120.0, 1)
        baro.setRandomNumberSeed(seed)
        system.addForce(baro)
    integ = openmm.LangevinMiddleIntegrator(120.0, 5.0, 0.004)
    integ.setRandomNumberSeed(seed)
    sim = app.Simulation(top, system, integ, openmm.Platform.getPlatformByName("Reference"))
    sim.context.setPositions(pos)
    sim.context.setVelocitiesToTemperature(120.0, seed)
    return sim


class BoxRecorder:
    """The box vectors (nm) the Simulation's State has at each report."""

    def __init__(self, interval):
        self.interval, self.boxes = interval, []

    def describeNextReport(self, simulation):
        return {"steps": self.interval - simulation.currentStep % self.interval,
                "periodic": False, "include": ["positions"]}

    def report(self, simulation, state):
        self.boxes.append(np.asarray(state.getPeriodicBoxVectors(asNumpy=True).value_in_unit(unit.nanometer)))


def test_box_stored_per_frame_under_a_barostat(tmp_path):
    import mdtraj

    sim = lj_fluid()
    rec = BoxRecorder(2)
    rep = DatasetReporter(tmp_path / "t.h5", 2, observables=("R_AB",), cutoff=0.6)
    sim.reporters += [rec, rep]
    sim.step(20)
    rep.close()
    want = np.array(rec.boxes)
    assert len(want) == 10 and np.ptp(want[:, 0, 0]) > 1e-4  # the barostat moved the box
    r = read_replica(tmp_path / "t.h5")
    np.testing.assert_array_equal(r.box, want)  # exactly, float64
    traj = mdtraj.load(str(tmp_path / "t.h5"))
    np.testing.assert_allclose(traj.unitcell_vectors, want, rtol=1e-5, atol=1e-5)


def test_triclinic_box_read_back(tmp_path):
    import mdtraj

    sim = lj_fluid(barostat=False, triclinic=True)
    rep = DatasetReporter(tmp_path / "t.h5", 5)
    sim.reporters.append(rep)
    sim.step(10)
    rep.close()
    want = np.array([[L, 0, 0], [0.3, L, 0], [0, 0, L]])
    np.testing.assert_allclose(read_replica(tmp_path / "t.h5").box, [want, want], atol=1e-12)
    np.testing.assert_allclose(mdtraj.load(str(tmp_path / "t.h5")).unitcell_vectors, [want, want], atol=1e-5)


class PositionRecorder(BoxRecorder):
    """Positions and boxes (nm) the Simulation's State has at each report."""

    def __init__(self, interval):
        super().__init__(interval)
        self.pos = []

    def report(self, simulation, state):
        super().report(simulation, state)
        self.pos.append(np.asarray(state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)))


def test_append_continues_after_a_restart(tmp_path):
    """Run 10 steps, restart from a checkpoint in a new Simulation and run 10 more: the
    files hold every frame of both runs once, in order, with one header."""
    names = ("R_AB",)

    def reporters(**kw):
        return [DatasetReporter(tmp_path / "t.h5", 5, observables=names, cutoff=0.6, **kw),
                MacroReporter(tmp_path / "m.csv", 5, observables=names, cutoff=0.6, **kw),
                MacroReporter(tmp_path / "m.h5", 5, observables=names, cutoff=0.6, **kw)]

    first, rec = lj_fluid(), PositionRecorder(5)
    reps = reporters()
    first.reporters += [rec] + reps
    first.step(10)
    [r.close() for r in reps]
    checkpoint = first.context.createCheckpoint()
    with pytest.raises(FileExistsError, match="append=True"):
        DatasetReporter(tmp_path / "t.h5", 5)
    second = lj_fluid()
    second.context.loadCheckpoint(checkpoint)
    second.currentStep = 10
    reps = reporters(append=True)
    second.reporters += [rec] + reps
    second.step(10)
    [r.close() for r in reps]
    r = read_replica(tmp_path / "t.h5")
    assert r.n_frames == 4
    np.testing.assert_allclose(r.positions, np.array(rec.pos), atol=1e-6)
    np.testing.assert_array_equal(r.box, np.array(rec.boxes))
    np.testing.assert_allclose(r.times, [0.02, 0.04, 0.06, 0.08], rtol=1e-6)
    want = ob.compute(names, np.array(rec.pos), r.types, cutoff=0.6, box=np.array(rec.boxes)[0])["R_AB"]
    np.testing.assert_allclose(r.observables["R_AB"][:1], want[:1], rtol=1e-6)
    lines = (tmp_path / "m.csv").read_text().splitlines()
    assert lines[0] == "step,time_ps,R_AB" and [int(x.split(",")[0]) for x in lines[1:]] == [5, 10, 15, 20]
    import tables

    with tables.open_file(str(tmp_path / "m.h5")) as h:
        assert h.root.macro.col("step").tolist() == [5, 10, 15, 20]
        np.testing.assert_allclose(h.root.macro.col("R_AB"), r.observables["R_AB"], rtol=1e-12)


def test_append_refuses_another_file(tmp_path):
    sim = lj_fluid(barostat=False)
    rep = DatasetReporter(tmp_path / "t.h5", 5, observables=("R_AB",), cutoff=0.6)
    sim.reporters.append(rep)
    sim.step(5)
    rep.close()
    other = DatasetReporter(tmp_path / "t.h5", 5, observables=("R_BA",), cutoff=0.6, append=True)
    with pytest.raises(ValueError, match="cannot append .*observables"):
        other.report(sim, sim.context.getState(getPositions=True))


def test_atom_subset(tmp_path):
    """The subset's atoms only, in its order; the solvent's names need not be species."""
    sim = lj_fluid(solvent_names=("S", "T"), barostat=False)
    subset = [3, 0, 2, 1, 10, 12]
    rep = DatasetReporter(tmp_path / "t.h5", 5, atomSubset=subset)
    sim.reporters.append(rep)
    sim.step(5)
    rep.close()
    x = sim.context.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(unit.nanometer)
    r = read_replica(tmp_path / "t.h5")
    np.testing.assert_allclose(r.positions[0], np.asarray(x)[subset], atol=1e-6)
    assert r.species_names == ["A", "S"] and r.types.tolist() == [0, 0, 0, 0, 1, 1]  # no "T" in the subset


@pytest.mark.parametrize("subset,match", [([0, 1, 1], "repeats the atom index 1"), ([0, -2], "negative"),
                                          ([], "non-empty"), ([0.5, 1], "atom indices")])
def test_atom_subset_bad_in_init(tmp_path, subset, match):
    with pytest.raises(ValueError, match=match):
        MacroReporter(tmp_path / "m.csv", 5, observables=("R_AB",), atomSubset=subset)


def test_atom_subset_out_of_range_at_first_report(tmp_path):
    sim = lj_fluid(barostat=False)
    rep = DatasetReporter(tmp_path / "t.h5", 5, atomSubset=[0, 27])
    sim.reporters.append(rep)
    with pytest.raises(ValueError, match="index 27 is out of range for 27 atoms"):
        sim.step(5)
    assert not (tmp_path / "t.h5").exists()


def _solute_rg(positions, box, types, species=0):
    """Radius of gyration of one species about its periodic centre (minimum image), nm."""
    x = positions[types == species]
    if box is None:
        d = x - x.mean(0)
    else:
        inv = np.linalg.inv(box)
        d = x - x[0]
        d -= np.round(d @ inv) @ box
        d -= d.mean(0)
    return float(np.sqrt((d ** 2).sum(1).mean()))


@pytest.fixture
def registered():
    ob.register("test_rg", _solute_rg, units="nanometers", species=0)
    ob.register("test_bad_shape", lambda x, box, types: x[:, 0], units="nanometers")
    ob.register("test_nan", lambda x, box, types: np.nan, units="nanometers")
    yield
    for name in ("test_rg", "test_bad_shape", "test_nan"):
        ob.OBSERVABLES.unregister(name)


def test_registered_observable_in_reporters(tmp_path, registered):
    import tables

    sim = lj_fluid()
    rec = BoxRecorder(5)
    rep = DatasetReporter(tmp_path / "t.h5", 5, observables=("test_rg",), atomSubset=range(8), species=0)
    macro = MacroReporter(tmp_path / "m.csv", 5, observables=("test_rg",), atomSubset=range(8))
    sim.reporters += [rec, rep, macro]
    sim.step(10)
    rep.close(), macro.close()
    r = read_replica(tmp_path / "t.h5")
    want = [_solute_rg(r.positions[k].astype(np.float64), rec.boxes[k], r.types) for k in range(2)]
    np.testing.assert_allclose(r.observables["test_rg"], want, rtol=1e-5)
    rows = np.genfromtxt(tmp_path / "m.csv", delimiter=",", names=True)
    np.testing.assert_allclose(rows["test_rg"], want, rtol=1e-5)
    with tables.open_file(str(tmp_path / "t.h5")) as h:
        assert h.root.observables.test_rg.attrs["units"] == "nanometers"
    with pytest.raises(ValueError, match=r"unknown keyword\(s\) \['spcies'\]"):
        MacroReporter(tmp_path / "x.csv", 5, observables=("test_rg",), spcies=1)


@pytest.mark.parametrize("name,match", [("test_bad_shape", r"returned shape \(27,\) at frame 0"),
                                        ("test_nan", "returned nan at frame 0")])
def test_bad_observable_named_at_the_step(tmp_path, registered, name, match):
    sim = lj_fluid(barostat=False)
    rep = MacroReporter(tmp_path / "m.csv", 5, observables=(name,))
    sim.reporters.append(rep)
    with pytest.raises(ValueError, match=f"at step 5: observable '{name}' {match}") as info:
        sim.step(5)
    assert "\n" not in str(info.value)


def test_killed_run_is_one_line(tmp_path):
    import tables

    sim = lj_fluid(barostat=False)
    rep = DatasetReporter(tmp_path / "t.h5", 5, observables=("R_AB",), cutoff=0.6)
    sim.reporters.append(rep)
    sim.step(10)
    rep.close()
    assert replica_lengths(tmp_path / "t.h5") == {"frames": 2, "particles": 27}
    with tables.open_file(str(tmp_path / "t.h5"), "a") as h:  # killed between two arrays' writes
        h.root.coordinates.append(h.root.coordinates[-1:])
    with pytest.raises(ValueError, match=r"incomplete: 3 frames of coordinates but 2 of time"):
        replica_lengths(tmp_path / "t.h5")
    with pytest.raises(ValueError, match="incomplete"):
        DatasetReporter(tmp_path / "t.h5", 5, append=True, observables=("R_AB",), cutoff=0.6).report(
            sim, sim.context.getState(getPositions=True))
    data = (tmp_path / "t.h5").read_bytes()
    (tmp_path / "cut.h5").write_bytes(data[: len(data) // 2])  # killed before the file was closed
    with pytest.raises(ValueError, match="not a readable trajectory file") as info:
        replica_lengths(tmp_path / "cut.h5")
    assert "\n" not in str(info.value)


def test_observable_from_an_entry_point(tmp_path, monkeypatch):
    """Another package's observable, declared in its metadata, is loaded when first named."""
    (tmp_path / "my_obs_pkg.py").write_text(
        "import numpy as np\n"
        "from openmm_closure.md.observables import Observable\n"
        "MEAN_X = Observable(fn=lambda x, box, types, shift=0.0: float(x[:, 0].mean()) + shift,\n"
        "                    units='nanometers', defaults={'shift': 0.0})\n")
    info = tmp_path / "my_obs_pkg-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: my-obs-pkg\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[openmm_closure.observables]\ntest_mean_x = my_obs_pkg:MEAN_X\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(ob.OBSERVABLES, "_pending", None)  # look the entry points up again
    try:
        assert "test_mean_x" in ob.OBSERVABLES.names() and "my_obs_pkg" not in __import__("sys").modules
        x = np.arange(12.0).reshape(4, 3)
        assert ob.compute(["test_mean_x"], x, np.zeros(4, int), shift=1.0)["test_mean_x"] == 4.5 + 1.0
        assert ob.units_of("test_mean_x") == "nanometers" and "shift" in ob.param_names(["test_mean_x"])
    finally:
        ob.OBSERVABLES.unregister("test_mean_x")
        ob.OBSERVABLES._pending = None
