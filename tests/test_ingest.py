"""``ingest``: reporter files of a user's own system -> a dataset -> train -> evaluate."""

import json

import numpy as np
import pytest

from openmm_closure.md import observables as ob
from openmm_closure.cli import main
from openmm_closure.data import ingest, load, read_replica
from openmm_closure.periodic import periodic_image_np
from openmm_closure.reporters import DatasetReporter

from test_user_reporters import _solute_rg, lj_fluid


def run_replica(path, seed, interval=5, steps=30, observables=("test_rg",), solvent=("S",), **params):
    sim = lj_fluid(seed=seed, solvent_names=solvent)
    rep = DatasetReporter(path, interval, observables=observables, **params)
    sim.reporters.append(rep)
    sim.step(steps)
    rep.close()
    return path


@pytest.fixture
def rg():
    ob.register("test_rg", _solute_rg, units="nanometers", species=0)
    yield
    ob.OBSERVABLES.unregister("test_rg")


def test_ingest_keeps_every_frame_and_records_what_was_given(tmp_path, rg):
    files = [run_replica(tmp_path / f"r{i}.h5", seed=i) for i in range(2)]
    assert main(["ingest", *map(str, files), "--out", str(tmp_path / "ds"), "--regime", "hot", "cold",
                 "--seeds", "11", "12"]) == 0
    ds = load(tmp_path / "ds")
    m = ds.manifest
    assert (len(ds), ds.n_frames, m["system"], m["regimes"], m["seeds"]) == (2, 6, "custom", ["hot", "cold"], [11, 12])
    assert m["observables"] == ["test_rg"] and m["params"] == {"species": 0} and m["periodic"] is True
    assert m["dt_frame"] == pytest.approx(0.02, rel=1e-5)
    for i, f in enumerate(files):
        a, b = read_replica(f), ds.replica(i)
        # stored at each particle's image nearest the solute's periodic centre: the same set
        np.testing.assert_allclose(b.positions, periodic_image_np(a.positions, a.box), atol=2e-6)
        shift = np.einsum("fni,fij->fnj", b.positions - a.positions, np.linalg.inv(a.box))
        np.testing.assert_allclose(shift, np.round(shift), atol=1e-4)  # whole box vectors only
        np.testing.assert_array_equal(a.box, b.box)
        np.testing.assert_array_equal(a.observables["test_rg"], b.observables["test_rg"])
    with pytest.raises(FileExistsError, match="overwrite"):
        ingest(files, tmp_path / "ds")


def _err(capsys, *args):
    assert main(["ingest", *map(str, args)]) != 0
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    return err


def test_ingest_refuses_mixed_files_in_one_line(tmp_path, rg, capsys):
    base = run_replica(tmp_path / "base.h5", 0)
    out = tmp_path / "ds"
    species = run_replica(tmp_path / "species.h5", 1, solvent=("S", "T"))
    assert "species" in _err(capsys, base, species, "--out", out)
    obs = run_replica(tmp_path / "obs.h5", 1, observables=("test_rg", "R_AB"), cutoff=0.6)
    assert "observables" in _err(capsys, base, obs, "--out", out)
    spacing = run_replica(tmp_path / "spacing.h5", 1, interval=10, steps=60)
    assert "ps apart" in _err(capsys, base, spacing, "--out", out)
    longer = run_replica(tmp_path / "longer.h5", 1, steps=40)
    assert "--frames" in _err(capsys, base, longer, "--out", out)
    assert main(["ingest", str(base), str(longer), "--out", str(out), "--frames", "6"]) == 0
    params = run_replica(tmp_path / "params.h5", 1, species=1)
    assert "observable parameters" in _err(capsys, base, params, "--out", tmp_path / "ds2")
    data = base.read_bytes()
    (tmp_path / "killed.h5").write_bytes(data[: len(data) // 2])
    assert "killed" in _err(capsys, base, tmp_path / "killed.h5", "--out", tmp_path / "ds2")
    assert not (tmp_path / "ds2").exists()


def test_registered_observable_round_trips_to_evaluate(tmp_path, rg):
    """reporter -> ingest -> train -> evaluate, the observable known only by its name."""
    import torch

    from openmm_closure.evaluate.evaluation import evaluate
    from openmm_closure.learn.model import load_model
    from openmm_closure.learn.training import TrainConfig, train

    files = [run_replica(tmp_path / f"r{i}.h5", seed=i) for i in range(4)]
    ingest(files, tmp_path / "ds")
    torch.set_num_threads(1)
    cfg = TrainConfig(data=str(tmp_path / "ds"), out=str(tmp_path / "model"), epochs_stage1=1, epochs_stage2=1,
                      samples=8, flow_transforms=1, flow_hidden=(8, 8), dynamics_hidden=(8, 8),
                      encoder_hidden=(16,), encoder_embed=8, batch_size=4, batch_size_stage2=8,
                      val_fraction=0.25, progress=False, device="cpu", seed=1)
    train(cfg)
    model = load_model(tmp_path / "model")
    assert model.observables == ["test_rg"] and model.config["observable_params"] == {"species": 0}
    r = read_replica(files[0])
    # the model recomputes the observable by name: the stored values come back
    np.testing.assert_allclose(model.macro(r.positions, r.types, box=r.box)[:, 0], r.observables["test_rg"],
                               rtol=1e-5)
    res = evaluate(tmp_path / "model", tmp_path / "ds", tmp_path / "eval", plots=False, diagnostic=False,
                   permutations=0)
    assert res["observables"] == ["test_rg"] and res["status"] == "ok"
    assert np.isfinite(res["value"])
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["observables"] == ["test_rg"]


def test_render_an_ingested_3d_dataset(tmp_path, rg):
    """render works on any 3D particle set: every frame drawn, the solute visible in each."""
    from PIL import Image

    from openmm_closure.video.render import particle_render_config
    from openmm_closure.video.frames import render_frames

    files = [run_replica(tmp_path / "r0.h5", seed=0), run_replica(tmp_path / "r1.h5", seed=1)]
    ingest(files, tmp_path / "ds")
    assert main(["render", str(tmp_path / "ds"), "--replica", "1", "--out", str(tmp_path / "v.gif")]) == 0
    with Image.open(tmp_path / "v.gif") as im:
        assert im.n_frames == 6
    pos = load(tmp_path / "ds").replica(1).positions
    images = render_frames(pos, particle_render_config(pos))
    assert images.shape[0] == 6 and all(img.max() > 0.5 for img in images)
