"""particles2d in OpenMM against an independent numpy implementation of SPEC §3A."""

import numpy as np
import pytest
from conftest import potential_energy

from openmm_closure.systems import build
from openmm_closure.systems.particles2d import numpy_gradient_flow


@pytest.mark.parametrize("n", [300, 123])
def test_openmm_trajectory_equals_numpy(platform_name, n):
    spec = build("particles2d", n_particles=n, seed=7)
    sim = spec.make_simulation(platform_name)
    ref = numpy_gradient_flow(spec.positions, 4.0, 0.1, 0.02, 300)
    frames = []
    for step in range(0, 301, 50):
        if step:
            sim.step(50)
        pos = sim.context.getState(getPositions=True).getPositions(asNumpy=True)._value
        frames.append(pos)
    frames = np.asarray(frames)
    assert np.all(frames[:, :, 2] == 0.0), "particles left the plane"
    expected = ref[::50]
    # the particles really move: the test would catch a frozen integrator
    assert np.abs(expected[-1] - expected[0]).max() > 0.05
    rel = np.abs(frames[:, :, :2] - expected).max() / np.abs(expected).max()
    assert rel < 1e-5, f"relative deviation {rel:.2e}"


def test_gradient_flow_lowers_energy():
    spec = build("particles2d", n_particles=100, seed=3)
    sim = spec.make_simulation("Reference")
    e0 = sim.context.getState(getEnergy=True).getPotentialEnergy()._value
    sim.step(100)
    e1 = sim.context.getState(getEnergy=True).getPotentialEnergy()._value
    assert e1 < e0


def test_regimes_set_mixture_and_size():
    assert build("particles2d", regime="diff-N").n_particles == 400
    assert build("particles2d").params["components"] == 2
    assert build("particles2d", regime="diff-init").params["components"] == 3
    a = build("particles2d", n_particles=50, seed=1).positions
    b = build("particles2d", n_particles=50, seed=1).positions
    c = build("particles2d", n_particles=50, seed=2).positions
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_forcefield_xml_matches_builder():
    from openmm import app

    spec = build("particles2d", n_particles=40, seed=5)
    ff = app.ForceField("interacting_particles_2d.xml")
    system = ff.createSystem(spec.topology, nonbondedMethod=app.NoCutoff)
    energies = [
        potential_energy(spec.system, spec.positions),
        potential_energy(system, spec.positions, {"ip_inv_n": 1.0 / 40}),
    ]
    assert energies[0] == pytest.approx(energies[1], rel=1e-12)
    # the mean pair energy of SPEC §3A, brute force: E * N / (N(N-1)/2)
    x = spec.positions[:, :2]
    r = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))[np.triu_indices(40, 1)]
    u = 4.0 * (1 - r)
    pair = np.log(np.cosh(u)) / 4.0 + 0.1 * (1 - r)
    assert energies[0] == pytest.approx(pair.sum() / 40, rel=1e-10)
