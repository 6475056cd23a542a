"""Reporters on a small LJ mixture built by hand with plain openmm.app calls."""

import numpy as np
import pytest

import openmm
from openmm import app, unit

from openmm_closure.md import observables as ob
from openmm_closure.reporters import DatasetReporter, MacroReporter

N_SIDE = 6
L = 8.0


class Recorder:
    """Stores the positions (nm) and time (ps) the Simulation has at each report."""

    def __init__(self, interval):
        self.interval, self.steps, self.pos, self.times = interval, [], [], []

    def describeNextReport(self, simulation):
        return {"steps": self.interval - simulation.currentStep % self.interval,
                "periodic": False, "include": ["positions"]}

    def report(self, simulation, state):
        self.steps.append(simulation.currentStep)
        self.pos.append(state.getPositions(asNumpy=True).value_in_unit(unit.nanometer))
        self.times.append(state.getTime().value_in_unit(unit.picosecond))


def lj_mixture(periodic, seed=1):
    """36 LJ atoms on a 2D lattice, left half A, right half B; z held near 0."""
    top = app.Topology()
    chain = top.addChain()
    xs = (np.arange(N_SIDE) + 0.5) * (L / N_SIDE)
    pos = np.array([[x, y, 0.0] for x in xs for y in xs])
    for p in pos:
        name = "A" if p[0] < L / 2 else "B"
        top.addAtom(name, None, top.addResidue(name, chain))
    system = openmm.System()
    nb = openmm.NonbondedForce()
    for p in pos:
        system.addParticle(1.0)
        nb.addParticle(0.0, 1.0, 1.0)
    nb.setCutoffDistance(2.5)
    if periodic:
        nb.setNonbondedMethod(openmm.NonbondedForce.CutoffPeriodic)
        system.setDefaultPeriodicBoxVectors(openmm.Vec3(L, 0, 0), openmm.Vec3(0, L, 0), openmm.Vec3(0, 0, L))
        top.setPeriodicBoxVectors(((L, 0, 0), (0, L, 0), (0, 0, L)))
    else:
        nb.setNonbondedMethod(openmm.NonbondedForce.CutoffNonPeriodic)
    system.addForce(nb)
    flat = openmm.CustomExternalForce("50*z^2")
    for i in range(len(pos)):
        flat.addParticle(i, [])
    system.addForce(flat)
    integ = openmm.LangevinMiddleIntegrator(120.0, 1.0, 0.002)
    integ.setRandomNumberSeed(seed)
    sim = app.Simulation(top, system, integ, openmm.Platform.getPlatformByName("Reference"))
    sim.context.setPositions(pos)
    sim.context.setVelocitiesToTemperature(120.0, seed)
    return sim, pos


@pytest.mark.parametrize("periodic,macro_ext", [(True, "csv"), (False, "h5")])
def test_reporters_roundtrip(tmp_path, periodic, macro_ext):
    import mdtraj
    import tables

    sim, pos0 = lj_mixture(periodic)
    interval = 10
    rec = Recorder(interval)
    names = ("R_AB", "R_BA", "energy")
    macro = MacroReporter(tmp_path / f"macro.{macro_ext}", interval, observables=names, cutoff=2.5)
    data = DatasetReporter(tmp_path / "traj.h5", interval, observables=names, cutoff=2.5)
    sim.reporters += [rec, macro, data]
    sim.step(60)
    macro.close()
    data.close()

    assert rec.steps == [10, 20, 30, 40, 50, 60]
    want_pos = np.array(rec.pos)
    traj = mdtraj.load(str(tmp_path / "traj.h5"))
    assert traj.n_frames == 6
    np.testing.assert_allclose(traj.xyz, want_pos, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(traj.time, rec.times, rtol=1e-6)
    assert [a.name for a in traj.topology.atoms][:: N_SIDE * 3] == ["A", "B"]

    types = (pos0[:, 0] >= L / 2).astype(np.int64)  # A left, B right
    box = (L, L, L) if periodic else None
    want = ob.compute(names, want_pos, types, cutoff=2.5, box=box)
    if periodic:  # the walled formula would give a different answer
        walled = ob.neighbour_ratios(want_pos, types, 2.5, None)[0]
        assert not np.allclose(walled, want["R_AB"])

    with tables.open_file(str(tmp_path / "traj.h5")) as h:
        np.testing.assert_array_equal(h.root.species[:], types)
        for k in names:
            np.testing.assert_allclose(h.root.observables._f_get_child(k)[:], want[k], rtol=1e-12)
        assert h.root.observables.energy.attrs["units"] == "kilojoules_per_mole"

    if macro_ext == "csv":
        rows = np.genfromtxt(tmp_path / "macro.csv", delimiter=",", names=True)
    else:
        with tables.open_file(str(tmp_path / "macro.h5")) as h:
            rows = h.root.macro.read()
    np.testing.assert_array_equal(rows["step"], rec.steps)
    np.testing.assert_allclose(rows["time_ps"], rec.times, rtol=1e-12)
    for k in names:
        np.testing.assert_allclose(rows[k], want[k], rtol=1e-12)


def test_explicit_types(tmp_path):
    import tables

    sim, _ = lj_mixture(False)
    types = np.zeros(N_SIDE**2, dtype=np.int64)
    types[::2] = 1
    rep = DatasetReporter(str(tmp_path / "t.h5"), 5, types=types, observables=("R_AB",))
    sim.reporters.append(rep)
    sim.step(10)
    rep.close()
    with tables.open_file(str(tmp_path / "t.h5")) as h:
        np.testing.assert_array_equal(h.root.species[:], types)
        assert h.root.coordinates.shape == (2, N_SIDE**2, 3)


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="unknown observable 'R_XY'"):
        MacroReporter(tmp_path / "m.csv", 10, observables=("R_XY",))
    with pytest.raises(ValueError, match="unknown observable 'bogus'"):
        DatasetReporter(tmp_path / "d.h5", 10, observables=("bogus",))
    for bad in (0, -5, 2.5, True):
        with pytest.raises(ValueError, match="reportInterval"):
            DatasetReporter(tmp_path / "d.h5", bad)
    with pytest.raises(ValueError, match=r"\.csv"):
        MacroReporter(tmp_path / "m.txt", 10)
    assert list(tmp_path.iterdir()) == []


def test_types_length_mismatch_overwrites_nothing(tmp_path):
    sim, _ = lj_mixture(True)
    out = tmp_path / "d.h5"
    out.write_bytes(b"precious")
    macro_out = tmp_path / "m.csv"
    macro_out.write_text("precious")
    for rep in (DatasetReporter(out, 5, types=[0, 1, 1], overwrite=True),
                MacroReporter(macro_out, 5, types=[0, 1], overwrite=True)):
        sim.reporters[:] = [rep]
        with pytest.raises(ValueError, match="types has .* entries but the topology has 36 atoms"):
            sim.step(5)
    assert out.read_bytes() == b"precious"
    assert macro_out.read_text() == "precious"


def test_nan_coordinates_name_the_step(tmp_path):
    sim, pos = lj_mixture(False)
    rep = DatasetReporter(tmp_path / "d.h5", 5)
    macro = MacroReporter(tmp_path / "m.csv", 5)
    sim.step(5)
    bad = pos.copy()
    bad[3, 0] = np.nan
    sim.context.setPositions(bad)
    state = sim.context.getState(getPositions=True)
    for r in (rep, macro):
        with pytest.raises(ValueError, match="non-finite coordinates at step 5"):
            r.report(sim, state)
