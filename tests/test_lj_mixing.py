"""lj-mixing: NVE energy conservation, NVT temperature, walls, and the ForceField XML path."""

import numpy as np
import openmm
import pytest
from conftest import potential_energy
from openmm import app

from openmm_closure.md.integrators import WalledLangevinIntegrator
from openmm_closure.systems import build
from openmm_closure.systems.lj_mixing import LJ_EPSILON, LJ_SIGMA, lattice_positions

WALLS = (20.0, 20.0)  # 225 atoms: fast, still many-body


def _state(ctx):
    s = ctx.getState(getEnergy=True, getPositions=True, getVelocities=True)
    return (
        s.getPotentialEnergy()._value + s.getKineticEnergy()._value,
        s.getKineticEnergy()._value,
        s.getPositions(asNumpy=True)._value,
        s.getVelocities(asNumpy=True)._value,
    )


def test_reference_sizes():
    assert len(lattice_positions((32.0, 32.0), 0.5)) == 529
    assert len(lattice_positions((32.0, 26.0), 0.5)) == 437


def test_nve_segment_conserves_energy(platform_name):
    spec = build("lj-mixing", walls=WALLS, relax_steps=0, seed=3)
    n = spec.n_particles
    nve = WalledLangevinIntegrator(0.002, n, (0, 0, -1e6), (*WALLS, 1e6), friction=0.0)
    ctx = openmm.Context(spec.system, nve, openmm.Platform.getPlatformByName(platform_name))
    ctx.setPositions(spec.positions)
    ctx.setVelocities(spec.velocities)
    energies = []
    for _ in range(60):  # 3,000 steps = 6 ps, the reference relaxation length
        nve.step(50)
        energies.append(_state(ctx)[0])
    energies = np.asarray(energies) / n
    # bound: total energy stays within 5e-3 kJ/mol per atom of its start (measured ~1.5e-3,
    # from the force jump at the LJ cutoff), and no systematic drift above 1e-3 per atom per ps
    assert np.abs(energies - energies[0]).max() < 5e-3
    slope = np.polyfit(np.arange(len(energies)) * 0.1, energies, 1)[0]
    assert abs(slope) < 1e-3


def test_nvt_temperature_and_walls():
    spec = build("lj-mixing", walls=WALLS, relax_steps=1000, seed=4, steps=10_000, report_interval=50)
    sim = spec.make_simulation("CPU")
    n = spec.n_particles
    sim.step(1000)
    kinetic, inside = [], []
    for _ in range(200):
        sim.step(50)
        _, ke, x, v = _state(sim.context)
        kinetic.append(ke)
        inside.append(np.all((x[:, 0] >= 0) & (x[:, 0] <= WALLS[0]) & (x[:, 1] >= 0) & (x[:, 1] <= WALLS[1])))
        assert np.all(x[:, 2] == 0) and np.all(v[:, 2] == 0), "motion left the plane"
    # 2D: <KE> = N kT (two degrees of freedom per atom), kT = 1 kJ/mol
    temperature = np.mean(kinetic) / n
    assert temperature == pytest.approx(1.0, rel=0.05)
    assert all(inside), "an atom left the walled box"


def test_types_split_at_half_l():
    spec = build("lj-mixing", walls=WALLS, relax_steps=200, seed=5, half_l=9.0)
    x = spec.positions[:, 0]
    assert np.all((x < 9.0) == (spec.types == 0))
    assert [a.name for a in spec.topology.atoms()] == ["AB"[t] for t in spec.types]
    for regime, lo, hi in (("in-dst", 10, 22), ("diff-init", 8, 24)):
        for seed in range(5):
            h = build("lj-mixing", walls=(32, 32), relax_steps=0, regime=regime, seed=seed).params["half_l"]
            assert lo <= h <= hi
            if regime == "diff-init":
                assert not 10 < h < 22
    # a smaller box scales the intervals with Lx, so both species exist
    for seed in range(5):
        small = build("lj-mixing", walls=(12, 12), relax_steps=0, seed=seed)
        assert 12 * 10 / 32 <= small.params["half_l"] <= 12 * 22 / 32
        assert set(small.types) == {0, 1}
    with pytest.raises(ValueError, match="half_l"):
        build("lj-mixing", walls=(12, 12), relax_steps=0, half_l=20.0)


def test_forcefield_xml_matches_builder_and_pair_table():
    spec = build("lj-mixing", walls=WALLS, relax_steps=500, seed=6, half_l=10.0)
    ff = app.ForceField("lj_binary_mixture.xml")
    system = ff.createSystem(spec.topology, nonbondedMethod=app.CutoffNonPeriodic, nonbondedCutoff=2.5)
    energies = [potential_energy(s, spec.positions) for s in (spec.system, system)]
    assert energies[0] == pytest.approx(energies[1], rel=1e-12)
    assert all(system.getParticleMass(i)._value == 1.0 for i in range(system.getNumParticles()))
    # brute-force LJ with the per-pair table, cut and shifted at 2.5
    x, t = spec.positions, spec.types
    i, j = np.triu_indices(len(x), 1)
    r = np.linalg.norm(x[i] - x[j], axis=1)
    eps, sig = LJ_EPSILON[t[i], t[j]], LJ_SIGMA[t[i], t[j]]
    lj = 4 * eps * ((sig / r) ** 12 - (sig / r) ** 6 - (sig / 2.5) ** 12 + (sig / 2.5) ** 6)
    assert energies[0] == pytest.approx(np.sum(lj[r < 2.5]), rel=1e-9)


@pytest.mark.parametrize(
    "kwargs, word",
    [
        (dict(walls=(4.0, 32.0)), "walls"),
        (dict(n_particles=0), "n_particles"),
        (dict(n_particles=10_000), "n_particles"),
        (dict(regime="sideways"), "regime"),
        (dict(dt=-1), "dt"),
    ],
)
def test_bad_input_names_parameter(kwargs, word):
    with pytest.raises(ValueError, match=word):
        build("lj-mixing", relax_steps=0, **kwargs)
