"""polymer: equilibrium chain statistics, stretching in extensional flow, serialisation."""

import numpy as np
import openmm
import pytest

from openmm_closure.md.integrators import ExtensionalFlowBrownianIntegrator
from openmm_closure.systems import build
from openmm_closure.systems.polymer import fene_mean_square_bond, measure_relaxation_time

N_BEADS, N_CHAINS = 10, 40


@pytest.fixture(scope="module")
def ideal_chains():
    # 40 independent ideal FENE chains (no excluded volume) in one system, no flow
    return build(
        "polymer", n_particles=N_BEADS, n_chains=N_CHAINS, excluded_volume=False, weissenberg=0.0,
        steps=30_000, n_frames=301, equilibration_steps=2000, dt=0.0005, seed=11,
    )


def test_fene_bond_quadrature_limits():
    # a stiff FENE spring is harmonic: <b^2> -> 3 kT / k
    assert fene_mean_square_bond(k=3000.0, r0=50.0) == pytest.approx(3.0 / 3000.0, rel=1e-3)


def test_mean_square_end_to_end_matches_ideal_chain(ideal_chains):
    sim = ideal_chains.make_simulation("CPU")
    r2, b2 = [], []
    for _ in range(300):
        sim.step(100)
        x = sim.context.getState(getPositions=True).getPositions(asNumpy=True)._value
        x = x.reshape(N_CHAINS, N_BEADS, 3)
        r2.append(((x[:, -1] - x[:, 0]) ** 2).sum(-1))
        b2.append((np.diff(x, axis=1) ** 2).sum(-1).mean(-1))
    r2, b2 = np.asarray(r2), np.asarray(b2)
    # bonds of a chain with bond potentials only are independent and isotropic:
    # <R^2> = (N - 1) <b^2>, <b^2> from the FENE Boltzmann weight by quadrature
    expected_b2 = fene_mean_square_bond(30.0, 1.5, 1.0)
    expected_r2 = (N_BEADS - 1) * expected_b2
    se = r2.mean(0).std(ddof=1) / np.sqrt(N_CHAINS)  # chains are independent samples
    assert abs(r2.mean() - expected_r2) < max(4 * se, 0.0) and abs(r2.mean() / expected_r2 - 1) < 0.05
    # Euler-Maruyama bias on the stiff bond mode at dt = 0.0005 is ~1.5%
    assert b2.mean() == pytest.approx(expected_b2, rel=0.03)


def test_relaxation_time_matches_rouse_modes(ideal_chains):
    tau = measure_relaxation_time(ideal_chains, steps=30_000, sample_every=20, platform="CPU")
    # discrete Rouse chain with the harmonic spring of the same <b^2>: the normalised
    # end-to-end autocorrelation is e^T exp(-k A t / zeta) A^+ e / e^T A^+ e
    n, k = N_BEADS, 3.0 / fene_mean_square_bond(30.0, 1.5, 1.0)
    lap = np.diag(np.r_[1.0, 2.0 * np.ones(n - 2), 1.0]) - np.eye(n, k=1) - np.eye(n, k=-1)
    w, v = np.linalg.eigh(lap)
    e = np.zeros(n)
    e[0], e[-1] = -1.0, 1.0
    c = (v.T @ e) ** 2
    keep = w > 1e-9
    t = np.linspace(0, 2, 20001)
    acf = (c[keep] / w[keep] * np.exp(-np.outer(t, k * w[keep]))).sum(1) / (c[keep] / w[keep]).sum()
    expected = t[np.argmax(acf < np.exp(-1))]
    assert tau == pytest.approx(expected, rel=0.15)


def test_extensional_flow_stretches_along_x_not_y():
    spec = build("polymer", n_particles=20, weissenberg=10.0, strain=4.0, n_frames=5, equilibration_steps=5000, seed=1)
    sim = spec.make_simulation("CPU")
    x0 = spec.positions
    sim.step(spec.n_steps)
    x1 = sim.context.getState(getPositions=True).getPositions(asNumpy=True)._value
    contour = 19 * 0.97
    span0, span1 = np.ptp(x0, axis=0), np.ptp(x1, axis=0)
    assert span1[0] > 0.8 * contour and span1[0] > 2 * span0[0]
    assert span1[1] < span0[1] and span1[1] < 0.25 * span1[0]
    # the flow is about the centre of mass, which only diffuses (D = kT / (N zeta),
    # rms ~0.7 nm per axis here) instead of being advected away as exp(strain) grows
    assert np.linalg.norm(x1.mean(0)) < 5.0


def test_no_flow_keeps_coil():
    spec = build("polymer", n_particles=20, weissenberg=0.0, steps=20_000, n_frames=3, equilibration_steps=2000, seed=2)
    sim = spec.make_simulation("CPU")
    sim.step(spec.n_steps)
    x1 = sim.context.getState(getPositions=True).getPositions(asNumpy=True)._value
    assert np.ptp(x1[:, 0]) < 0.6 * 19 * 0.97


def test_integrator_round_trips_through_xml_serializer():
    spec = build("polymer", n_particles=12, weissenberg=5.0, strain=1.0, n_frames=3, equilibration_steps=100, seed=4)
    original = spec.new_integrator()
    copy = openmm.XmlSerializer.deserialize(openmm.XmlSerializer.serialize(original))
    assert copy.getGlobalVariableByName("strain_rate") == pytest.approx(spec.params["strain_rate"])
    assert [tuple(v) for v in copy.getPerDofVariableByName("flow")] == [(1.0, -1.0, 0.0)] * 12
    ref = openmm.Platform.getPlatformByName("Reference")
    finals = []
    for integrator in (original, copy):
        ctx = openmm.Context(spec.system, integrator, ref)
        ctx.setPositions(spec.positions)
        integrator.step(200)
        finals.append(ctx.getState(getPositions=True).getPositions(asNumpy=True)._value)
    assert np.array_equal(finals[0], finals[1])


def test_test_sets_share_one_start_and_differ_in_start_extension():
    spans = {}
    for regime in ("slow", "medium", "fast"):
        a = build("polymer", n_particles=30, regime=regime, seed=1, strain=1.0, n_frames=3, equilibration_steps=500)
        b = build("polymer", n_particles=30, regime=regime, seed=2, strain=1.0, n_frames=3, equilibration_steps=500)
        assert np.allclose(a.positions, b.positions)  # one conformation per test set
        assert a.params["noise_seed"] != b.params["noise_seed"]  # only the noise differs
        spans[regime] = np.ptp(a.positions[:, 0])
    assert spans["slow"] < spans["medium"] < spans["fast"]
    # the starts are ranked as the flow sees them, after the flow-free relaxation: with the
    # polymer pipeline's small chain, ranking before it gave medium and fast one extension
    # (4.550 and 4.559 nm); now 2.24 < 4.22 < 4.79 nm
    small = dict(n_particles=20, repulsion="soft", dt=0.002, strain=6.0, n_frames=3, equilibration_steps=20_000)
    x0 = {r: np.ptp(build("polymer", regime=r, seed=1, **small).positions[:, 0]) for r in ("slow", "medium", "fast")}
    assert x0["slow"] + 0.5 < x0["medium"] < x0["fast"] - 0.3, x0
    x = build("polymer", n_particles=30, seed=1, strain=1.0, n_frames=3, equilibration_steps=10).positions
    y = build("polymer", n_particles=30, seed=2, strain=1.0, n_frames=3, equilibration_steps=10).positions
    assert not np.allclose(x, y)  # in-dst starts differ per replica


def test_flow_integrator_rejects_bad_values():
    with pytest.raises(ValueError, match="dt"):
        ExtensionalFlowBrownianIntegrator(0.0, 3)
    with pytest.raises(ValueError, match="weissenberg"):
        build("polymer", n_particles=5, weissenberg=-1.0)
    with pytest.raises(ValueError, match="n_particles"):
        build("polymer", n_particles=0)
