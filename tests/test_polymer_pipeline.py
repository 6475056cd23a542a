"""The polymer pipeline at a tiny size: simulate -> render -> train -> evaluate -> video."""

import json

import numpy as np
import pytest

from openmm_closure.cli import main
from openmm_closure.data import load
from openmm_closure.video.pixel_dataset import default_render_config, render_dataset
from openmm_closure.md.simulate import simulate_ensemble

TINY = dict(n_particles=8, weissenberg=2.0, relaxation_time=1.0, strain=2.0, n_frames=6, dt=0.002, repulsion="soft",
            equilibration_steps=200)


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    root = tmp_path_factory.mktemp("polymer")
    train = simulate_ensemble("polymer", root / "train", replicas=4, platform="CPU", progress=False, **TINY)
    test = simulate_ensemble("polymer", root / "fast", replicas=2, regime="fast", platform="CPU",
                             progress=False, **TINY)
    cfg = default_render_config(load(train).manifest, n_pixels=48)
    return root, train, test, cfg, render_dataset(train, config=cfg), render_dataset(test, config=cfg)


def test_rendered_dataset_reads_like_a_particle_dataset(datasets):
    _, train, _, cfg, pix, _ = datasets
    src, ds = load(train), load(pix)
    assert pix.name == "train-pixels" and pix.parent == train.parent  # beside its source
    assert len(ds) == len(src) and ds.n_frames == src.n_frames
    assert ds.n_particles == [48] * len(ds)
    p = np.asarray(ds.positions[0])
    assert p.shape == (src.n_frames, 48, 3) and np.abs(p).max() <= 1.0
    np.testing.assert_array_equal(ds.observables["extension"], src.observables["extension"])
    m = ds.manifest
    assert m["representation"] == "pixels" and m["spatial_dim"] == 3 and m["system"] == "polymer"
    assert m["render"]["source"] == str(train) and m["render"]["n_pixels"] == 48
    assert (m["render"]["height"], m["render"]["width"]) == cfg.shape


def test_train_evaluate_and_video(datasets, tmp_path):
    root, _, test, _, pix, test_pix = datasets
    model = tmp_path / "m"
    rc = main(["train", "--data", str(pix), "--out", str(model), "--epochs-stage1", "1", "--epochs-stage2", "2",
               "--samples", "32", "--flow-transforms", "1", "--flow-hidden", "8,8", "--dynamics-hidden", "8,8",
               "--threads", "1", "--no-progress", "--val-fraction", "0"])
    assert rc == 0
    cfg = json.loads((model / "config.json").read_text())
    assert cfg["in_features"] == 3 and cfg["manifest"]["representation"] == "pixels"
    rep = tmp_path / "rep"
    assert main(["evaluate", "--model", str(model), "--data", str(test_pix), "--out", str(rep),
                 "--samples", "4", "--no-plots", "--permutations", "3"]) == 0
    res = json.loads((rep / "metrics.json").read_text())
    assert res["status"] == "ok" and res["metric"] == "extension" and np.isfinite(res["value"])
    # the starting extension is read from the rendered trajectory, not from pixel columns
    true0 = load(test).observables["extension"][:, 0]
    assert res["extra"]["pred_mean"][0] == pytest.approx(true0.mean(), rel=1e-6)
    assert res["permutation_spread"] < 1e-5
    # positions test data against a pixel model: refused with a clear line
    assert main(["evaluate", "--model", str(model), "--data", str(test), "--out", str(tmp_path / "x")]) == 2
    gif = tmp_path / "chain.gif"
    assert main(["render", str(test), "--replica", "1", "--out", str(gif), "--model", str(model),
                 "--samples", "4", "--video-scale", "0.3"]) == 0
    from PIL import Image

    with Image.open(gif) as im:
        assert im.n_frames == load(test).n_frames


def test_render_refuses_a_dataset_without_a_polymer(tmp_path, capsys):
    d = simulate_ensemble("particles2d", tmp_path / "p2d", replicas=1, n_particles=10, steps=2, progress=False)
    assert main(["render", str(d), "--pixels"]) == 2
    assert "not a polymer" in capsys.readouterr().err
    with pytest.raises(ValueError, match="not a polymer"):
        render_dataset(d)


def test_render_refuses_an_unwritable_video_path_before_work(datasets, capsys):
    _, _, test, _, _, test_pix = datasets
    assert main(["render", str(test), "--out", str(test.parent / "chain.xyz")]) == 2
    assert "no video encoder writes '.xyz'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="already a rendered pixel dataset"):
        render_dataset(test_pix)


def test_small_chain_uses_its_measured_relaxation_time():
    from openmm_closure.systems import build
    from openmm_closure.systems.polymer import SMALL_CHAIN

    spec = build("polymer", weissenberg=5.0, strain=6.0, n_frames=3, equilibration_steps=0, **SMALL_CHAIN)
    assert spec.params["relaxation_time_source"] == "measured"
    assert spec.params["strain_rate"] * spec.params["relaxation_time"] == pytest.approx(5.0)
    # a given value still wins
    given = build("polymer", weissenberg=5.0, relaxation_time=2.0, strain=6.0, n_frames=3, equilibration_steps=0,
                  **SMALL_CHAIN)
    assert given.params["relaxation_time_source"] == "given"


def test_soft_repulsion_pushes_overlapping_beads_apart_and_not_beyond_its_range():
    import openmm

    from openmm_closure.systems import build

    spec = build("polymer", n_particles=3, repulsion="soft", soft_a=25.0, weissenberg=0.0, steps=1, n_frames=2,
                 equilibration_steps=0, excluded_volume=True)
    ctx = openmm.Context(spec.system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    # beads 0 and 2 (not bonded) at r = 0.5: energy 0.5 * 25 * 0.5^2; FENE bonds at 0.9 nm
    x = np.array([[0.0, 0.0, 0.0], [0.25, np.sqrt(0.9**2 - 0.25**2), 0.0], [0.5, 0.0, 0.0]])
    ctx.setPositions(x)
    e = ctx.getState(getEnergy=True).getPotentialEnergy()._value
    fene = -0.5 * 30 * 1.5**2 * np.log(1 - (0.9 / 1.5) ** 2)
    # soft repulsion acts between all pairs (bonded ones at 0.9 < 1 too): 0.5 a (1 - r)^2
    soft = 0.5 * 25.0 * ((1 - 0.5) ** 2 + 2 * (1 - 0.9) ** 2)
    assert e == pytest.approx(2 * fene + soft, rel=1e-6)
    x[2, 0] = 1.2
    x[1] = [0.6, np.sqrt(0.9**2 - 0.6**2), 0.0]
    ctx.setPositions(x)
    e = ctx.getState(getEnergy=True).getPotentialEnergy()._value
    assert e == pytest.approx(2 * fene + 2 * 0.5 * 25.0 * 0.1**2, rel=1e-6)
    with pytest.raises(ValueError, match="repulsion"):
        build("polymer", n_particles=3, repulsion="hard", steps=1, n_frames=2, weissenberg=0.0)


@pytest.mark.slow
def test_measured_relaxation_time_of_the_small_chain_is_reproduced():
    from openmm_closure.systems import build
    from openmm_closure.systems.polymer import MEASURED_RELAXATION_TIMES, SMALL_CHAIN, measure_relaxation_time

    spec = build("polymer", n_chains=16, weissenberg=0.0, steps=10, n_frames=2, equilibration_steps=5000, seed=9,
                 **SMALL_CHAIN)
    tau = measure_relaxation_time(spec, steps=100_000, sample_every=50, platform="CPU")
    stored = MEASURED_RELAXATION_TIMES[(20, "soft", 25.0, 30.0, 1.5, 1.0, 1.0)]
    assert tau == pytest.approx(stored, rel=0.25)  # another seed: statistical error ~10 %


def test_video_band_starts_at_the_simulated_extension(datasets, tmp_path):
    from openmm_closure.video.render import predicted_extension

    root, _, test, _, pix, _ = datasets
    model = tmp_path / "m"
    assert main(["train", "--data", str(pix), "--out", str(model), "--epochs-stage1", "1", "--epochs-stage2", "1",
                 "--samples", "16", "--flow-transforms", "1", "--flow-hidden", "8,8", "--dynamics-hidden", "8,8",
                 "--threads", "1", "--no-progress", "--val-fraction", "0"]) == 0
    r = load(test).replica(0)
    band = predicted_extension(model, r.positions[0], 3, 0.1, samples=3)
    assert band.shape == (3, 4)
    # frame 0 of every rollout is the chain's own extension (nm), not a pixel-column span
    np.testing.assert_allclose(band[:, 0], r.observables["extension"][0], rtol=1e-5)
