"""ẑ of a periodic system: unchanged when particles move by box vectors (2D and 3D,
orthorhombic and triclinic), the same through the exported encoder and the reporter, and
an atom subset encoded as the subset's positions alone."""

import numpy as np
import pytest
import torch

from openmm_closure.models.periodic import periodic_image
from openmm_closure.periodic import periodic_image_np

BOXES = {
    "orthorhombic": np.diag([3.0, 2.5, 2.8]),
    "triclinic": np.array([[3.0, 0.0, 0.0], [0.9, 2.5, 0.0], [-0.7, 0.6, 2.8]]),  # OpenMM's reduced form
}


def tiny_model(out, dims, periodic=False, n=12):
    """A tiny model trained in about a second on random 2D or 3D sets of two species."""
    from openmm_closure.data import ArrayDataset
    from openmm_closure.learn.training import TrainConfig, train_on

    rng = np.random.default_rng(0)
    pos = rng.random((4, 5, n, 3)) * 2.5
    if dims == 2:
        pos[..., 2] = 0
    types = (np.arange(n) % 2).astype(np.int64)
    ds = ArrayDataset(pos, types, np.arange(5) * 0.02, {"extension": pos.max(-2)[..., 0] - pos.min(-2)[..., 0]},
                      {"system": "custom", "observables": ["extension"], "periodic": periodic},
                      species_names=["A", "B"])
    cfg = TrainConfig(data="", out=str(out), epochs_stage1=1, epochs_stage2=1, samples=8, flow_transforms=1,
                      flow_hidden=(8, 8), dynamics_hidden=(8, 8), encoder_hidden=(16,), encoder_embed=8,
                      batch_size=4, batch_size_stage2=8, val_fraction=0.25, progress=False, device="cpu", seed=1)
    torch.set_num_threads(1)
    return train_on(ds, cfg)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return {d: tiny_model(tmp_path_factory.mktemp(f"m{d}"), d) for d in (2, 3)}


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("shape", sorted(BOXES))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_zhat_unchanged_when_particles_move_by_box_vectors(models, dims, shape, dtype):
    model = models[dims]
    assert model.in_features == dims
    box = BOXES[shape].copy()
    if dims == 2:  # a 2D system's box: a and b in the plane
        box[2] = [0.0, 0.0, 2.8]
        box[:2, 2] = 0.0
    rng = np.random.default_rng(dims * 10 + len(shape))
    n = 12
    frac = rng.random((n, 3)) * np.array([1.0, 1.0, 1.0 if dims == 3 else 0.0])
    x = frac @ box
    types = np.arange(n) % 2
    z0 = model.encode(x.astype(dtype), types, box=box)
    for trial in range(5):
        moved = x.copy()
        who = rng.choice(n, size=rng.integers(1, n + 1), replace=False)
        k = rng.integers(-3, 4, size=(len(who), 3))
        if dims == 2:
            k[:, 2] = 0
        moved[who] += k @ box
        z = model.encode(moved.astype(dtype), types, box=box)
        np.testing.assert_allclose(z, z0, atol=1e-5, rtol=0)
        perm = rng.permutation(n)
        np.testing.assert_allclose(model.encode(moved[perm].astype(dtype), types[perm], box=box), z0,
                                   atol=1e-5, rtol=0)
    # without the box, moving a particle by a box vector does change ẑ: the test can fail
    moved = x.copy()
    moved[0] += box[0]
    assert np.abs(model.encode(moved, types) - model.encode(x, types)).max() > 1e-4


def test_numpy_and_torch_images_agree_and_are_idempotent():
    rng = np.random.default_rng(1)
    box = np.stack([BOXES["triclinic"]] * 3)
    x = rng.normal(size=(3, 20, 3)) * 4
    a = periodic_image_np(x, box)
    b = periodic_image(torch.from_numpy(x), torch.from_numpy(box)).numpy()
    np.testing.assert_allclose(a, b, atol=1e-12)
    np.testing.assert_allclose(periodic_image_np(a, box), a, atol=1e-12)
    shift = np.einsum("fni,fij->fnj", a - x, np.linalg.inv(box))
    np.testing.assert_allclose(shift, np.round(shift), atol=1e-9)  # only whole box vectors


def test_exported_encoder_takes_the_box(models):
    from openmm_closure.hosts.export import ExportedEncoder

    model = models[3]
    scripted = torch.jit.script(ExportedEncoder(model.encoder).eval())
    box = BOXES["triclinic"]
    x = np.random.default_rng(2).random((12, 3)) @ box
    types = np.arange(12) % 2
    got = scripted(torch.from_numpy(x), torch.from_numpy(types), torch.from_numpy(box)).double().numpy()
    np.testing.assert_allclose(got, model.encode(x, types, box=box), atol=1e-6)
    got = scripted(torch.from_numpy(x), torch.from_numpy(types)).double().numpy()  # old calls: as before
    np.testing.assert_allclose(got, model.encode(x, types), atol=1e-6)


def test_reporter_subset_equals_encoding_the_subset_alone(tmp_path):
    """A solvated system: the model knows the solute's species only; the reporter's ẑ of the
    atom subset equals the model's ẑ of those positions alone, with the State's box, and does
    not change when the Context holds a solute atom one box vector away."""
    import openmm
    from openmm import unit

    from openmm_closure.reporters import ClosureReporter
    from test_user_reporters import lj_fluid

    model = tiny_model(tmp_path / "m", 3, periodic=True, n=6)
    assert model.periodic
    sim = lj_fluid(barostat=False, triclinic=True)  # atoms 0-3 "A", the rest solvent "S"
    subset = [0, 1, 2, 3, 13, 26]
    types = np.array([0, 0, 1, 1, 0, 1])  # the subset's species in the model's order
    rep = ClosureReporter(tmp_path / "z.csv", 5, tmp_path / "m", atomSubset=subset, types=types)
    sim.reporters.append(rep)
    sim.step(5)
    state = sim.context.getState(getPositions=True)
    x = state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
    box = np.asarray(state.getPeriodicBoxVectors(asNumpy=True).value_in_unit(unit.nanometer))
    want = model.encode(np.asarray(x)[subset], types, box=box)
    rows = np.genfromtxt(tmp_path / "z.csv", delimiter=",", names=True)
    got = np.array([rows[f"zhat_{i}"] for i in range(model.latent_dim)]).reshape(-1)
    np.testing.assert_allclose(got, want, atol=1e-6)
    moved = np.asarray(x).copy()
    moved[13] += 2 * box[1] - box[2]
    sim.context.setPositions(moved)
    np.testing.assert_allclose(rep.zhat(moved[subset], box), want, atol=1e-5)
    rep.close()
    with pytest.raises(ValueError, match="repeats the atom index 2"):
        ClosureReporter(tmp_path / "y.csv", 5, tmp_path / "m", atomSubset=[2, 2])


def test_exported_subset_cv_equals_encoding_the_subset(tmp_path):
    """export --cv --atom-subset --periodic: in a real Context, the CV's energy is ẑ_c of the
    subset's positions alone with the State's box; a System too small for the baked-in
    subset is refused in one line."""
    import openmm
    from openmm import unit

    from openmm_closure.hosts.export import export_model
    from openmm_closure.couple.torchforce import closure_cv_force
    from test_user_reporters import lj_fluid

    tiny_model(tmp_path / "m", 3, periodic=True, n=6)
    subset, types = [0, 1, 2, 3, 13, 26], [0, 0, 1, 1, 0, 1]
    export_model(tmp_path / "m", tmp_path / "x", cv=True, atom_subset=subset, types=types, periodic=True)
    from openmm_closure.learn.model import load_model

    model = load_model(tmp_path / "m")
    sim = lj_fluid(barostat=False, triclinic=True)
    x = sim.context.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(unit.nanometer)
    x = np.asarray(x)
    x[13] += np.array([0.3, 2.2, 0.0])  # the Context holds this atom one box vector away
    box = np.array([[2.2, 0, 0], [0.3, 2.2, 0], [0, 0, 2.2]])
    system = openmm.System()
    for _ in range(27):
        system.addParticle(1.0)
    system.setDefaultPeriodicBoxVectors(*[openmm.Vec3(*row) for row in box])
    force = closure_cv_force(tmp_path / "x" / "closure_cv_1.pt", system=system)
    force.setForceGroup(1)
    system.addForce(force)
    ctx = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    ctx.setPositions(x)
    energy = ctx.getState(getEnergy=True, groups={1}).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
    want = model.encode(x[subset], np.array(types), box=box)[1]
    np.testing.assert_allclose(energy, want, atol=1e-5)
    small = openmm.System()
    for _ in range(20):
        small.addParticle(1.0)
    with pytest.raises(ValueError, match="atom_subset up to index 26; this System has 20 particles") as info:
        closure_cv_force(tmp_path / "x" / "closure_cv_1.pt", system=small)
    assert "\n" not in str(info.value)


def test_bias_with_atom_subset_sees_the_subset_alone(tmp_path):
    """collective_variable.pt exported with --atom-subset: its CV of the whole System equals
    ẑ_c of the subset alone, the other particles feel no force, and a System too small for
    the subset is refused in one line."""
    from openmm_closure.cli import main
    from openmm_closure.hosts.export import load_exported
    from openmm_closure.learn.model import load_model

    tiny_model(tmp_path / "m", 3, n=6)
    np.save(tmp_path / "t.npy", np.array([0, 1, 0, 1, 0, 1]))
    assert main(["export", "--model", str(tmp_path / "m"), "--out", str(tmp_path / "x"), "--atom-subset",
                 "3,7-9,12,0", "--types", str(tmp_path / "t.npy"), "--component", "1"]) == 0
    module, meta = load_exported(tmp_path / "x" / "collective_variable.pt")
    assert meta["atom_subset"] == [3, 7, 8, 9, 12, 0]
    x = torch.from_numpy(np.random.default_rng(3).random((15, 3)) * 2.5).requires_grad_(True)
    model = load_model(tmp_path / "m")
    want = model.encode(x.detach().numpy()[meta["atom_subset"]], np.array([0, 1, 0, 1, 0, 1]))[1]
    cv = module.collective_variable(x)
    assert float(cv) == pytest.approx(float(want), abs=1e-5)
    energy = module(x, torch.tensor(2.0, dtype=torch.float64), torch.tensor(0.0, dtype=torch.float64))
    grad, = torch.autograd.grad(energy, x)
    others = np.setdiff1d(np.arange(15), meta["atom_subset"])
    assert float(grad[others].abs().max()) == 0.0 and float(grad[meta["atom_subset"]].abs().max()) > 0
    import openmm

    from openmm_closure.couple.torchforce import check_particle_count

    small = openmm.System()
    for _ in range(10):
        small.addParticle(1.0)
    with pytest.raises(ValueError, match="atom_subset up to index 12; this System has 10 particles"):
        check_particle_count(meta, small, "collective_variable.pt")


def test_closure_simulation_lifts_only_the_subset(tmp_path):
    """ClosureSimulation(atomSubset=): ẑ of the subset alone (with the box); a lift without
    relaxation puts back the subset's particles and leaves every other particle where it
    was; with relaxation every particle moves and the energy is finite."""
    from openmm import unit

    from openmm_closure.couple.handover import ClosureSimulation
    from test_user_reporters import lj_fluid

    model = tiny_model(tmp_path / "m", 3, periodic=True, n=6)
    subset, types = [0, 1, 2, 3, 13, 26], np.array([0, 0, 1, 1, 0, 1])
    sim = lj_fluid(barostat=False)
    cs = ClosureSimulation(sim, tmp_path / "m", reportInterval=5, atomSubset=subset, types=types)
    cs.step(5)
    state = sim.context.getState(getPositions=True)
    x = np.asarray(state.getPositions(asNumpy=True).value_in_unit(unit.nanometer))
    box = np.asarray(state.getPeriodicBoxVectors(asNumpy=True).value_in_unit(unit.nanometer))
    np.testing.assert_allclose(cs.current_state()[model.macro_dim:], model.encode(x[subset], types, box=box),
                               atol=1e-5)
    cs.extrapolate(steps=2, samples=2, seed=0)
    before = sim.context.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(unit.nanometer)
    before = np.asarray(before)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a tiny model's lift may miss its target: not the point here
        cs.lift(member=0, seed=0, minimize_iterations=0, equilibration_steps=0, min_distance=0.0)
    after = np.asarray(sim.context.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(unit.nanometer))
    others = np.setdiff1d(np.arange(len(after)), subset)
    np.testing.assert_array_equal(after[others], before[others])
    assert np.abs(after[subset] - before[subset]).max() > 1e-3
    cs.extrapolate(steps=2, samples=2, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = cs.lift(member=1, seed=1)
    relaxed = np.asarray(sim.context.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(unit.nanometer))
    assert np.abs(relaxed[others] - after[others]).max() > 0 and np.isfinite(res.energy)
    with pytest.raises(ValueError, match="out of range for 27 atoms"):
        ClosureSimulation(sim, tmp_path / "m", atomSubset=[0, 27], types=types[:2])


def test_closure_reporter_appends_after_a_restart(tmp_path):
    from openmm_closure.reporters import ClosureReporter
    from test_user_reporters import lj_fluid

    tiny_model(tmp_path / "m", 3, periodic=True, n=6)
    subset, types = [0, 1, 2, 3, 13, 26], [0, 0, 1, 1, 0, 1]
    for leg, ext in enumerate(("csv", "h5") * 2):
        sim = lj_fluid(barostat=False)
        sim.currentStep = 10 * (leg // 2)
        rep = ClosureReporter(tmp_path / f"z.{ext}", 5, tmp_path / "m", atomSubset=subset, types=types,
                              append=leg >= 2)
        sim.reporters.append(rep)
        sim.step(10)
        rep.close()
    lines = (tmp_path / "z.csv").read_text().splitlines()
    assert lines[0].startswith("step,time_ps,extension,zhat_0") and len(lines) == 5
    assert [int(r.split(",")[0]) for r in lines[1:]] == [5, 10, 15, 20]
    import tables

    with tables.open_file(str(tmp_path / "z.h5")) as h:
        assert h.root.closure.col("step").tolist() == [5, 10, 15, 20]
