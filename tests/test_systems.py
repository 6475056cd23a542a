"""systems.build: common contract, rebuild from params, bad input, ForceField XML for the polymer."""

import json

import numpy as np
import pytest
from conftest import potential_energy
from openmm import app

from openmm_closure.systems import SYSTEMS, build, rebuild

SMALL = {
    "particles2d": dict(n_particles=20, steps=10),
    "lj-mixing": dict(walls=(12.0, 12.0), relax_steps=20, steps=40, report_interval=20),
    "polymer": dict(n_particles=8, strain=0.5, n_frames=3, equilibration_steps=20),
}


@pytest.mark.parametrize("name", sorted(SYSTEMS))
def test_spec_contract(name):
    spec = build(name, seed=3, **SMALL[name])
    n = spec.n_particles
    assert spec.positions.shape == (n, 3) and spec.types.shape == (n,) and spec.types.dtype == np.int64
    assert spec.system.getNumParticles() == n == spec.topology.getNumAtoms()
    assert [a.name for a in spec.topology.atoms()] == [spec.species[t] for t in spec.types]
    assert spec.n_frames >= 2 and spec.report_interval >= 1
    json.dumps(spec.params)  # everything needed to reproduce it, as JSON
    # two integrators for two contexts, each stepping the same physics
    sim = spec.make_simulation("Reference")
    sim.step(spec.report_interval)
    assert np.all(np.isfinite(sim.context.getState(getPositions=True).getPositions(asNumpy=True)._value))


@pytest.mark.parametrize("name", sorted(SYSTEMS))
def test_rebuild_from_params_reproduces_the_spec(name):
    spec = build(name, seed=5, **SMALL[name])
    again = rebuild(json.loads(json.dumps(spec.params)))
    assert np.allclose(again.positions, spec.positions, atol=1e-6)
    assert np.array_equal(again.types, spec.types)
    assert again.params == spec.params


def test_unknown_system():
    with pytest.raises(ValueError, match="unknown system 'argon'"):
        build("argon")


@pytest.mark.parametrize("name", sorted(SYSTEMS))
@pytest.mark.parametrize("n", [0, -3])
def test_non_positive_n(name, n):
    with pytest.raises(ValueError, match="n_particles"):
        build(name, n_particles=n)


def test_unknown_parameter_is_named():
    with pytest.raises(ValueError, match="temperature"):
        build("particles2d", temperature=300)


def test_unknown_platform_is_clear():
    spec = build("particles2d", **SMALL["particles2d"])
    with pytest.raises(ValueError, match="platform"):
        spec.make_simulation("Metal")


def test_polymer_forcefield_xml_matches_builder():
    spec = build("polymer", n_particles=15, strain=0.5, n_frames=3, equilibration_steps=200, seed=2)
    ff = app.ForceField("bead_spring_polymer.xml")
    system = ff.createSystem(spec.topology, nonbondedMethod=app.CutoffNonPeriodic, nonbondedCutoff=2 ** (1 / 6))
    energies = [potential_energy(s, spec.positions) for s in (spec.system, system)]
    assert energies[0] == pytest.approx(energies[1], rel=1e-12)
    # FENE of the 14 bonds + WCA (repulsive, >= 0) from an independent formula
    x = spec.positions
    b = np.linalg.norm(np.diff(x, axis=0), axis=1)
    fene = np.sum(-0.5 * 30 * 1.5**2 * np.log(1 - (b / 1.5) ** 2))
    i, j = np.triu_indices(15, 1)
    r = np.linalg.norm(x[i] - x[j], axis=1)
    r = r[r < 2 ** (1 / 6)]
    wca = np.sum(4 * (r**-12 - r**-6) + 1)
    assert energies[0] == pytest.approx(fene + wca, rel=1e-9)
