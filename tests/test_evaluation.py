"""``openmm-closure evaluate``: report files, metric values, N/A for AE-Aug on another n,
the permutation overlay, and bad input."""

import json

import numpy as np
import pytest
from conftest import contracting_clusters

from openmm_closure.evaluate import metrics
from openmm_closure.cli import main
from openmm_closure.data import ArrayDataset
from openmm_closure.evaluate.evaluation import evaluate, markdown_table, metric_kind
from openmm_closure.learn.model import load_model
from openmm_closure.md.observables import neighbour_ratios
from openmm_closure.learn.training import TrainConfig, train_on

F = 8


def _particles(n, reps, seed):
    return contracting_clusters(n, reps, F, seed)


def _mixture(reps, seed, n=16):
    rng = np.random.default_rng(seed)
    pos = np.zeros((reps, F, n, 3), dtype=np.float32)
    types = np.repeat([0, 1], n // 2)
    for r in range(reps):
        x = rng.uniform(0, 4, size=(n, 2))
        x[types == 1, 0] += 1.0
        for f in range(F):
            x = x + rng.normal(scale=0.1, size=x.shape)
            pos[r, f, :, :2] = x
    ab, ba = neighbour_ratios(pos.astype(np.float64), types, cutoff=2.5)
    return ArrayDataset(pos, types, np.arange(F) * 0.4, {"R_AB": ab, "R_BA": ba},
                        {"system": "lj-mixing", "observables": ["R_AB", "R_BA"], "species": ["A", "B"],
                         "params": {"cutoff": 2.5}, "regime": "in-dst"})


def _cfg(out, method, **kw):
    base = dict(data="", out=str(out), method=method, epochs_stage1=1, epochs_stage2=3, batch_size=8,
                samples=32, flow_transforms=1, flow_hidden=(16, 16), encoder_hidden=(16, 16),
                encoder_embed=16, dynamics_hidden=(16, 16), progress=False)
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    train_on(_particles(10, 5, 0), _cfg(root / "ours", "ours"))
    train_on(_particles(10, 5, 0), _cfg(root / "aug", "ae-aug"))
    train_on(_particles(10, 5, 0), _cfg(root / "none", "no-closure"))
    _particles(10, 3, 1).save(root / "test")
    _particles(14, 3, 2).save(root / "test-diffN")
    return root


def test_report_files_and_mre_value(setup, tmp_path):
    res = evaluate(setup / "ours", setup / "test", tmp_path / "rep", permutations=4)
    assert res["status"] == "ok" and res["metric"] == "mre"
    for name in ("metrics.json", "metrics.md", "trajectories.png", "metric_over_time.png", "permutation.png"):
        assert (tmp_path / "rep" / name).stat().st_size > 0, name
    on_disk = json.loads((tmp_path / "rep" / "metrics.json").read_text())
    assert on_disk["value"] == pytest.approx(res["value"])
    assert np.sum(res["over_time"]) == pytest.approx(res["value"], rel=1e-9)
    assert len(res["over_time"]) == F and res["n_trajectories"] == 3
    assert "| ours | test | in-dst | MRE |" in (tmp_path / "rep" / "metrics.md").read_text()


def test_mre_is_recomputed_from_an_independent_rollout(setup, tmp_path):
    from openmm_closure import load_model
    from openmm_closure.data import load

    res = evaluate(setup / "ours", setup / "test", tmp_path / "rep", permutations=0, plots=False)
    model, ds = load_model(setup / "ours"), load(setup / "test")
    preds = []
    for r in range(len(ds)):
        z0 = model.state(np.asarray(ds.positions[r, 0]), ds.types[r])
        preds.append(model.unscale(model.rollout(z0, F - 1))[0, :, 0].numpy())
    # the scale: the whole training set (every replica, before the validation split)
    train_e = _particles(10, 5, 0).observables["energy"]
    lo, hi = float(train_e.min()), float(train_e.max())
    assert model.config["observable_range"] == {"lo": [pytest.approx(lo)], "hi": [pytest.approx(hi)]}
    assert res["metric_scale"] == "whole training set"
    expected = metrics.mre(np.stack(preds), ds.observables["energy"], lo, hi)
    assert res["value"] == pytest.approx(expected, rel=1e-6)
    # the rollouts that leave the training range of z, counted on the same independent rollouts
    from openmm_closure.couple.guard import bound

    limit = bound(model)
    scaled = [model.rollout(model.state(np.asarray(ds.positions[r, 0]), ds.types[r]), F - 1)[0].numpy()
              for r in range(len(ds))]
    out = [r for r in range(len(ds)) if not (np.abs(scaled[r]) <= limit).all()]
    largest = max(float(np.abs(z).max()) for z in scaled)
    diverged = sum(bool((np.abs(z) > 10).any()) for z in scaled)
    assert res["out_of_range"] == {"rollouts": len(out), "of": len(ds), "limit": limit, "trajectories": out,
                                   "diverged": diverged, "max_abs": pytest.approx(largest, rel=1e-5)}


def test_members_out_flags_every_member_that_leaves_the_range_once():
    from openmm_closure.couple.guard import members_out

    z = np.zeros((4, 5, 2))
    z[1, 3, 0] = 1.3     # out for one step, then back
    z[2, 4, 1] = -1.2    # out on the last step, negative side
    z[3, 0, 0] = np.nan  # non-finite counts as out
    assert members_out(z, 1.25).tolist() == [False, True, False, True]
    assert members_out(z, 1.1).tolist() == [False, True, True, True]
    assert members_out(np.zeros((2, 3, 1)), 1.0).tolist() == [False, False]


def test_permutation_overlay_ours_on_top_aug_apart(setup, tmp_path):
    ours = evaluate(setup / "ours", setup / "test", tmp_path / "o", permutations=5, plots=False)
    aug = evaluate(setup / "aug", setup / "test", tmp_path / "a", permutations=5, plots=False)
    assert ours["permutation_spread"] < 1e-6
    assert ours["permutation_curve_spread"] < 1e-6
    assert aug["permutation_spread"] > 1e-4


def test_ae_aug_on_another_particle_number_is_na_with_reason(setup, tmp_path):
    aug = evaluate(setup / "aug", setup / "test-diffN", tmp_path / "a")
    assert aug["status"] == "n/a" and aug["value"] is None
    assert "10 particles" in aug["reason"]
    assert "N/A" in (tmp_path / "a" / "metrics.md").read_text()
    ours = evaluate(setup / "ours", setup / "test-diffN", tmp_path / "o", plots=False)
    assert ours["status"] == "ok" and np.isfinite(ours["value"])


def test_mmd_path_for_the_mixture(tmp_path):
    train_on(_mixture(5, 0), _cfg(tmp_path / "m", "ours"))
    _mixture(3, 1).save(tmp_path / "mt")
    res = evaluate(tmp_path / "m", tmp_path / "mt", tmp_path / "rep", samples=3, permutations=0, plots=False)
    assert res["metric"] == "mmd" and res["samples"] == 3
    assert res["value"] == pytest.approx(np.mean(res["over_time"]))
    # recompute by hand: the same rollout through the public model API, then the biased
    # MMD² written out with plain numpy (independent of metrics.mmd2)
    import torch

    model, ds = load_model(tmp_path / "m"), _mixture(3, 1)
    z0 = np.stack([model.state(np.asarray(ds.positions[r, 0], dtype=np.float64), ds.types[r])
                   .double().numpy() for r in range(3)])
    traj = model.rollout(torch.as_tensor(np.repeat(z0, 3, axis=0)), F - 1, dt=0.4, seed=0)
    pred = model.unscale(traj).numpy()[..., : model.macro_dim]             # (9, F, 2)
    true = np.stack([ds.observables["R_AB"], ds.observables["R_BA"]], -1)  # (3, F, 2)

    def k(a, b, s):
        return np.exp(-((a[:, None] - b[None]) ** 2).sum(-1) / (2 * s * s))

    by_hand = [np.mean([k(p, p, s).mean() + k(t, t, s).mean() - 2 * k(p, t, s).mean()
                        for s in metrics.MMD_SIGMAS]) for p, t in zip(pred.transpose(1, 0, 2), true.transpose(1, 0, 2))]
    assert res["over_time"] == pytest.approx(by_hand, rel=1e-6, abs=1e-12)
    # the spread ratio at the last frame, from the same hand rollout
    assert res["extra"]["spread_ratio"] == pytest.approx(list(pred[:, -1].std(0) / true[:, -1].std(0)), rel=1e-6)
    assert "Spread at the last frame" in (tmp_path / "rep" / "metrics.md").read_text()
    # calibration: the spread ratio at every frame and the interval coverage, by hand
    cal = res["extra"]["calibration"]
    sd_ratio = pred.std(0) / true.std(0)  # (F, 2)
    assert np.asarray(cal["spread_ratio_over_time"][1:], dtype=float) == pytest.approx(sd_ratio[1:], rel=1e-6)
    lo, hi = np.quantile(pred[:, 1:], 0.25, axis=0), np.quantile(pred[:, 1:], 0.75, axis=0)
    inside = ((true[:, 1:] >= lo) & (true[:, 1:] <= hi)).mean()
    assert cal["coverage_50"] == pytest.approx(inside)
    assert cal["outside_band"] == [bool(not 0.8 <= v <= 1.25) for v in sd_ratio[-1]]
    assert "Calibration: central 50% intervals hold" in (tmp_path / "rep" / "metrics.md").read_text()
    # frame 0: every member starts at its replica's z̄, so the two ensembles coincide
    assert res["over_time"][0] < 1e-9 < max(res["over_time"])


def test_cli_and_bad_input(setup, tmp_path, capsys):
    rc = main(["evaluate", "--model", str(setup / "ours"), "--data", str(setup / "test"),
               "--out", str(tmp_path / "cli"), "--no-plots"])
    assert rc == 0
    assert "| ours |" in capsys.readouterr().out
    assert main(["evaluate", "--model", str(setup / "ours"), "--data", str(tmp_path / "nope"),
                 "--out", str(tmp_path / "x")]) == 2
    assert main(["evaluate", "--model", str(tmp_path / "nope"), "--data", str(setup / "test"),
                 "--out", str(tmp_path / "x")]) == 2
    _mixture(2, 3).save(tmp_path / "mix")
    with pytest.raises(ValueError, match="trained on 'particles2d'"):
        evaluate(setup / "ours", tmp_path / "mix", tmp_path / "y")


def test_metric_kind_and_table():
    assert metric_kind("particles2d", ["energy"]) == "mre"
    assert metric_kind("lj-mixing", ["R_AB", "R_BA"]) == "mmd"
    assert metric_kind("polymer", ["extension"]) == "extension"
    text = markdown_table([{"method": "ae-aug", "status": "n/a", "reason": "tied to n", "metric": "mre",
                            "value": None, "data_name": "t", "regime": "diff-N"}])
    assert "N/A" in text and "tied to n" in text


def test_no_closure_model_and_calibration_rows(setup, tmp_path):
    """no-closure: stage 2 only (same loop, best-validation selection) on z̄ alone; evaluate
    reports the no-closure, mean-curve and constant rows, recomputed here independently."""
    from openmm_closure import load_model
    from openmm_closure.data import load

    nc = load_model(setup / "none")
    hist = json.loads((setup / "none" / "history.json").read_text())
    assert nc.latent_dim == 0 and nc.dim == 1 and nc.decoder is None
    ours_hist = json.loads((setup / "ours" / "history.json").read_text())
    assert hist["stage1"] == [] and len(hist["stage2"]) == len(ours_hist["stage2"]) == 3
    res = evaluate(setup / "ours", setup / "test", tmp_path / "rep", permutations=0, plots=False,
                   no_closure=setup / "none")
    cal = res["calibration"]
    ds, train = load(setup / "test"), _particles(10, 5, 0)
    true = ds.observables["energy"]
    lo, hi = train.observables["energy"].min(), train.observables["energy"].max()
    # no-closure: its own rollout from z̄(0)
    preds = [nc.unscale(nc.rollout(nc.state(np.asarray(ds.positions[r, 0]), ds.types[r]), F - 1))[0, :, 0].numpy()
             for r in range(len(ds))]
    assert cal["no-closure"]["value"] == pytest.approx(metrics.mre(np.stack(preds), true, lo, hi), rel=1e-6)
    mean_curve = train.observables["energy"].mean(0)
    shifted = true[:, :1] + (mean_curve - mean_curve[0])[None]
    assert cal["mean-curve"]["value"] == pytest.approx(metrics.mre(shifted, true, lo, hi), rel=1e-9)
    flat = np.repeat(mean_curve[None], len(ds), axis=0)
    assert cal["mean-curve-unshifted"]["value"] == pytest.approx(metrics.mre(flat, true, lo, hi), rel=1e-9)
    const = np.repeat(true[:, :1], F, axis=1)
    assert cal["constant"]["value"] == pytest.approx(metrics.mre(const, true, lo, hi), rel=1e-9)
    md = (tmp_path / "rep" / "metrics.md").read_text()
    for row in ("| no-closure |", "| mean-curve |", "| constant |", "Reading: ẑ"):
        assert row in md, row
    diag = res["closure_diagnostic"]
    assert set(diag["r2"]) == {"zhat_0", "zhat_1"} and len(diag["within_fraction"]) == 2
    # the no-closure model evaluates alone too (no diagnostic, no permutation overlay)
    alone = evaluate(setup / "none", setup / "test", tmp_path / "nc", plots=False)
    assert alone["status"] == "ok" and alone["closure_diagnostic"] is None
    assert alone["value"] == pytest.approx(cal["no-closure"]["value"], rel=1e-6)


def test_mixture_calibration_rows_are_mmd(tmp_path):
    train_on(_mixture(5, 0), _cfg(tmp_path / "m", "ours", epochs_stage2=1))
    _mixture(3, 1).save(tmp_path / "mt")
    res = evaluate(tmp_path / "m", tmp_path / "mt", tmp_path / "rep", samples=2, permutations=0, plots=False)
    ds = _mixture(3, 1)
    true = np.stack([ds.observables["R_AB"], ds.observables["R_BA"]], -1)
    const = np.repeat(true[:, :1], F, axis=1)
    assert res["calibration"]["constant"]["value"] == pytest.approx(
        float(np.mean(metrics.mmd_over_time(const, true))), rel=1e-9)
    # the mean curve of the training observables, shifted to each test start: by hand
    mean_curve = np.asarray(load_model(tmp_path / "m").config["observable_mean_curve"])  # (T, 2)
    shifted = true[:, :1] + (mean_curve[None] - mean_curve[None, :1])
    assert res["calibration"]["mean-curve"]["value"] == pytest.approx(
        float(np.mean(metrics.mmd_over_time(shifted, true))), rel=1e-9)
    # every replica has the same species fractions here: a constant statistic is dropped
    assert "fraction_0" not in res["closure_diagnostic"]["statistics"]


def test_old_model_without_new_keys_falls_back_with_a_warning(setup, tmp_path):
    """A model saved before centring and the whole-training-set range: loads uncentred, and
    evaluate scales the MRE by the state scaler's range with a warning."""
    import shutil

    from openmm_closure import load_model

    old = tmp_path / "old"
    shutil.copytree(setup / "ours", old)
    cfg = json.loads((old / "config.json").read_text())
    for key in ("observable_range", "observable_mean_curve"):
        cfg.pop(key)
    cfg["encoder"].pop("center")
    (old / "config.json").write_text(json.dumps(cfg))
    from openmm_closure.integrity import seal_model_dir

    seal_model_dir(old)  # an older model whose files we trust
    model = load_model(old)
    assert model.encoder.center is False
    with pytest.warns(UserWarning, match="predates observable_range"):
        res = evaluate(old, setup / "test", tmp_path / "rep", permutations=0, plots=False, diagnostic=False)
    assert res["metric_scale"].startswith("training replicas after")
    assert res["calibration"]["mean-curve"]["value"] is None and res["calibration"]["constant"]["value"] > 0
    assert "predates observable_range" in (tmp_path / "rep" / "metrics.md").read_text()


def test_no_closure_model_exports_its_dynamics_only(setup, tmp_path):
    """A no-closure model has nothing to encode: export writes dynamics.pt alone (equal to
    the eager rollout), says why the other files are missing, and refuses host profiles."""
    import torch

    from openmm_closure.hosts.export import check_export_dir, export_model

    paths = export_model(setup / "none", tmp_path / "x")
    assert paths["encoder"] is None and paths["collective_variable"] is None
    assert "no closure variables" in paths["skipped"]
    assert sorted(p.name for p in (tmp_path / "x").glob("*.pt")) == ["dynamics.pt"]
    check_export_dir(tmp_path / "x")
    model = load_model(setup / "none")
    dyn = torch.jit.load(str(tmp_path / "x" / "dynamics.pt"))
    z0 = torch.tensor([0.3], dtype=torch.float64)
    eager = model.rollout(z0, steps=5, samples=1)[0].double()
    got = dyn.rollout(z0.float().reshape(1, 1), 5, model.dt).double()
    assert torch.allclose(got.reshape(eager.shape), eager, atol=1e-5)
    with pytest.raises(ValueError, match="no closure variables"):
        export_model(setup / "none", tmp_path / "y", hosts=["plumed"])


def test_divergent_rollouts_are_counted_beyond_ten_scaled_units():
    """A rollout counts as divergent when any component passes |z_scaled| = 10 (or is not
    finite) at any frame; one leaving the training range only is out of range, not divergent."""
    from openmm_closure.evaluate.evaluation import _out_of_range

    class Scaled:  # raw states that are already scaled: the counting is the subject
        config = {"ood_margin": 0.25}

        @staticmethod
        def scale(raw):
            return raw

    z = np.zeros((6, 5, 2))
    z[1, 3, 0] = 2.0        # out of range only
    z[2, 4, 1] = -10.5      # divergent
    z[4, 2, 0] = np.nan     # divergent (not finite)
    res = _out_of_range(Scaled(), z, k=2)
    assert res["rollouts"] == 3 and res["trajectories"] == [0, 1, 2]
    assert res["diverged"] == 2 and res["max_abs"] == 10.5  # the largest finite value
