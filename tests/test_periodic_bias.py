"""collective_variable.pt of a periodic system (``export --periodic``): openmm-torch calls it
as ``forward(positions, box, closure_k, closure_target)``; in a real periodic Context its
energy is the harmonic bias on ẑ_c of the atom subset encoded with the box, it does not
change when particles move by box vectors, its forces are minus the gradient of the energy,
and a non-periodic export keeps its call ``forward(positions, closure_k, closure_target)``."""

import numpy as np
import pytest
import torch

from test_periodic_encode import tiny_model

pytestmark = [
    pytest.mark.filterwarnings("ignore:.*torch.jit.* is deprecated:DeprecationWarning"),
    pytest.mark.usefixtures("one_torch_thread"),
]

N = 27
SUBSET = [0, 1, 2, 3, 13, 26]
TYPES = [0, 0, 1, 1, 0, 1]
COMPONENT, K, TARGET = 1, 50.0, 0.2
#: OpenMM's reduced triclinic form (a along x, b in the xy plane)
BOX = np.array([[2.4, 0.0, 0.0], [0.5, 2.2, 0.0], [-0.6, 0.4, 2.3]])


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(model, periodic export dir, plain export dir) of a tiny periodic 3D model of two
    species, both exports biasing component 1 of the atom subset."""
    from openmm_closure.hosts.export import export_model
    from openmm_closure.learn.model import load_model

    base = tmp_path_factory.mktemp("pbias")
    torch.set_num_threads(1)
    tiny_model(base / "m", 3, periodic=True, n=6)
    opts = dict(component=COMPONENT, force_constant=K, target=TARGET, types=TYPES, atom_subset=SUBSET)
    export_model(base / "m", base / "periodic", periodic=True, **opts)
    export_model(base / "m", base / "plain", **opts)
    return load_model(base / "m"), base / "periodic", base / "plain"


def _positions(seed=0):
    """Every particle somewhere in the box; the subset a compact cluster across the box's
    corner, so OpenMM holds its particles on different sides of the box."""
    rng = np.random.default_rng(seed)
    x = rng.random((N, 3)) @ BOX
    cluster = rng.normal(scale=0.25, size=(len(SUBSET), 3))
    frac = cluster @ np.linalg.inv(BOX)
    x[SUBSET] = (frac - np.floor(frac)) @ BOX  # wrapped into the box, one cluster across its corner
    return x


def _context(path, platform="Reference"):
    import openmm

    from openmm_closure.couple.torchforce import closure_torch_force

    system = openmm.System()
    for _ in range(N):
        system.addParticle(1.0)
    system.setDefaultPeriodicBoxVectors(*[openmm.Vec3(*row) for row in BOX])
    force = closure_torch_force(path, system=system)
    system.addForce(force)
    ctx = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName(platform))
    return ctx, force


def _energy(ctx, x):
    from openmm import unit

    ctx.setPositions(x)
    return ctx.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)


def _forces(ctx, x):
    from openmm import unit

    ctx.setPositions(x)
    f = ctx.getState(getForces=True).getForces(asNumpy=True)
    return np.asarray(f.value_in_unit(unit.kilojoule_per_mole / unit.nanometer))


def _want(model, x, k=K, target=TARGET, box=BOX):
    z = model.encode(x[SUBSET], np.array(TYPES), box=box)[COMPONENT]
    return 0.5 * k * (float(z) - target) ** 2


@pytest.mark.parametrize("platform", ["Reference", "CPU"])
def test_energy_is_the_bias_on_zhat_encoded_with_the_box(exported, platform):
    model, periodic, _ = exported
    ctx, force = _context(periodic / "collective_variable.pt", platform)
    assert force.usesPeriodicBoundaryConditions()
    for seed in range(3):
        x = _positions(seed)
        assert _energy(ctx, x) == pytest.approx(_want(model, x), abs=1e-5)
    assert _want(model, x) > 1e-3  # not trivially zero
    ctx.setParameter("closure_k", 20.0)
    ctx.setParameter("closure_target", -0.3)
    assert _energy(ctx, x) == pytest.approx(_want(model, x, 20.0, -0.3), abs=1e-5)


def test_energy_unchanged_when_particles_move_by_box_vectors(exported):
    model, periodic, plain = exported
    ctx, _ = _context(periodic / "collective_variable.pt")
    x = _positions(1)
    e0 = _energy(ctx, x)
    rng = np.random.default_rng(7)
    for _ in range(6):
        moved = x.copy()
        who = rng.choice(N, size=rng.integers(1, N + 1), replace=False)
        moved[who] += rng.integers(-2, 3, size=(len(who), 3)) @ BOX
        moved[SUBSET[rng.integers(len(SUBSET))]] += BOX[rng.integers(3)]  # a solute particle at least
        assert _energy(ctx, moved) == pytest.approx(e0, abs=1e-5)
    # the non-periodic export sees where OpenMM keeps each particle: the test can fail
    plain_ctx, plain_force = _context(plain / "collective_variable.pt")
    assert not plain_force.usesPeriodicBoundaryConditions()
    assert abs(_energy(plain_ctx, moved) - _energy(plain_ctx, x)) > 1e-4


def test_forces_are_minus_the_gradient_of_the_energy(exported):
    from openmm_closure.hosts.export import PeriodicClosureBias

    model, periodic, _ = exported
    ctx, _ = _context(periodic / "collective_variable.pt")
    x = _positions(2)
    f = _forces(ctx, x)
    others = np.setdiff1d(np.arange(N), SUBSET)
    assert np.abs(f[others]).max() == 0.0 and np.abs(f[SUBSET]).max() > 1e-3
    # the autograd gradient of the eager (unscripted) bias
    eager = PeriodicClosureBias(model.encoder, COMPONENT, K, TARGET, TYPES, atom_subset=SUBSET).eval()
    xt = torch.tensor(x, requires_grad=True)
    (grad,) = torch.autograd.grad(eager(xt, torch.from_numpy(BOX)), xt)
    np.testing.assert_allclose(f, -grad.numpy(), rtol=0, atol=1e-5 * np.abs(f).max())
    # central finite differences of the Context's energy on a few coordinates (float32
    # weights: a step of 0.01 nm keeps the rounding of the energy out of the difference)
    h = 1e-2
    for i, j in [(SUBSET[0], 0), (SUBSET[2], 1), (SUBSET[4], 2), (SUBSET[5], 0)]:
        xp, xm = x.copy(), x.copy()
        xp[i, j] += h
        xm[i, j] -= h
        fd = -(_energy(ctx, xp) - _energy(ctx, xm)) / (2 * h)
        assert f[i, j] == pytest.approx(fd, rel=0, abs=5e-3 * np.abs(f).max())


def test_metadata_and_calls_of_periodic_and_plain_exports(exported):
    from openmm_closure.hosts.export import load_exported

    model, periodic, plain = exported
    mod, meta = load_exported(periodic / "collective_variable.pt")
    assert meta["uses_periodic_boundary_conditions"] is True and meta["atom_subset"] == SUBSET
    assert [a["name"] for a in meta["inputs"]] == ["positions", "box", "closure_k", "closure_target"]
    assert [a.name for a in mod.forward.schema.arguments] == ["self", "positions", "box", "closure_k",
                                                              "closure_target"]
    x = torch.from_numpy(_positions(3))
    with pytest.raises(Exception, match="setUsesPeriodicBoundaryConditions"):
        mod(x)  # a TorchForce without periodic boundary conditions passes no box
    mod, meta = load_exported(plain / "collective_variable.pt")
    assert meta["uses_periodic_boundary_conditions"] is False
    assert [a["name"] for a in meta["inputs"]] == ["positions", "closure_k", "closure_target"]
    assert [a.name for a in mod.forward.schema.arguments] == ["self", "positions", "closure_k", "closure_target"]
    want = 0.5 * K * (float(model.encode(x.numpy()[SUBSET], np.array(TYPES))[COMPONENT]) - TARGET) ** 2
    assert float(mod(x)) == pytest.approx(want, abs=1e-5)  # as before: no box, no imaging
    ctx, _ = _context(plain / "collective_variable.pt")
    assert _energy(ctx, x.numpy()) == pytest.approx(want, abs=1e-5)


def test_periodic_bias_refusals_one_line(exported, tmp_path, capsys):
    from openmm_closure.cli import main
    from openmm_closure.hosts.export import PeriodicClosureBias
    from openmm_closure.models.registry import build_encoder

    enc = build_encoder("deepset", latent_dim=2, in_features=3, n_species=1, center=False)
    with pytest.raises(ValueError, match="--periodic: this model reads absolute positions"):
        PeriodicClosureBias(enc)
    model_dir = exported[1].parent / "m"
    # two species and no --types: no collective_variable.pt and no CVs to make periodic
    assert main(["export", "--model", str(model_dir), "--out", str(tmp_path / "x"), "--periodic"]) != 0
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--periodic applies to collective_variable.pt" in err, err
