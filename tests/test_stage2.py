"""Stage 2 you can trust: the diffusion from the data, confinement, rollout-scored
selection, stage-2 seeds, step and horizon; each against an analytic value or an
independent run."""

import json
import math
import shutil

import numpy as np
import pytest
import torch

from openmm_closure.cli import main
from openmm_closure.models.dynamics import ODEDynamics, SDEDynamics
from openmm_closure.learn.training import path_loss
from test_dynamics import ou_transitions
from test_training import SMALL, _weights
from test_training_throughput import _dataset  # (r, f, n) lj-mixing-shaped random data

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ----------------------------------------------------------------------- the diffusion
def test_data_scaled_diffusion_identifies_an_ou_process():
    """dz = -Θ z dt + s dW with s² far below the reference's fixed floor 0.01 in these
    units: the data-scaled diffusion recovers s within 10% (the fixed floor cannot)."""
    torch.manual_seed(0)
    theta, s = np.array([1.0, 2.0]), np.array([0.05, 0.03])  # s² = 2.5e-3, 9e-4 per ps
    dt = 0.02
    z0, z1 = ou_transitions(theta, s, dt, 2000, 20)
    dyn = SDEDynamics(2, hidden=(32, 32), dt=dt, diffusion="data", bound=1.25, restore_rate=10.0)
    dyn.set_data_scale(((z1 - z0).var(0) / dt).double())
    opt = torch.optim.Adam(dyn.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    for step in range(800):
        for g in opt.param_groups:
            g["lr"] = 3e-3 * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * step / 800)))
        idx = torch.randint(0, len(z0), (4096,), generator=gen)
        loss = dyn.loss(z0[idx], z1[idx], dt)
        opt.zero_grad()
        loss.backward()
        opt.step()
    pts = torch.tensor([[0.5, 0.0], [-0.5, 0.3], [0.4, -0.4], [0.0, 0.5], [-0.3, -0.3]])
    with torch.no_grad():
        sig = dyn.diffusion(pts).numpy()
    assert np.abs(sig / s - 1).max() < 0.10, sig
    fixed = SDEDynamics(2, dt=dt, sigma0_sq=0.01)
    assert (fixed.diffusion(pts) >= 0.1 - 1e-7).all()  # the old floor: at least 2x s everywhere


def test_the_floor_is_a_fraction_of_the_data_variance():
    dyn = SDEDynamics(3, hidden=(8,), diffusion="data", floor_fraction=0.02)
    v = torch.tensor([1e-2, 1e-4, 1e-7], dtype=torch.float64)
    dyn.set_data_scale(v)
    with torch.no_grad():
        dyn.diffusion_net[-1].bias.fill_(-60.0)  # the network asks for nothing
        dyn.diffusion_net[-1].weight.zero_()
        var = dyn.variance(torch.randn(5, 3))
    assert torch.allclose(var.double(), 0.02 * v.expand(5, 3).to(var.dtype).double(), rtol=1e-5)
    with pytest.raises(ValueError, match="3 finite values > 0"):
        dyn.set_data_scale(torch.tensor([1.0, 0.0, 1.0]))
    with pytest.raises(ValueError, match="floor_fraction"):
        SDEDynamics(2, diffusion="data", floor_fraction=0.0)


# ----------------------------------------------------------------------- confinement
def _constant_drift(dyn, g):
    """Make the drift network output the constant g (a drift that pushes out forever)."""
    with torch.no_grad():
        for p in dyn.drift_net.parameters():
            p.zero_()
        dyn.drift_net.net[-1].bias.fill_(g)


@pytest.mark.parametrize("kind", ["ode", "sde"])
def test_confinement_bounds_a_drift_that_pushes_out(kind):
    """A constant outward drift G: without the box z grows as G t; with it the excess over
    the box settles at dt G q / (1 - q), q = exp(-κ dt) (the exact fixed point of the
    step), for any step size, from any start."""
    torch.manual_seed(0)
    g, b, dt = 5.0, 1.25, 0.1
    rate = 1.0 / (5 * dt)
    cls = ODEDynamics if kind == "ode" else SDEDynamics
    extra = {} if kind == "ode" else {"sigma0_sq": 1e-12}
    plain = cls(2, hidden=(8,), dt=dt, **extra)
    boxed = cls(2, hidden=(8,), dt=dt, bound=b, restore_rate=rate, **extra)
    for d in (plain, boxed):
        _constant_drift(d, g)
        if kind == "sde":
            with torch.no_grad():
                for p in d.diffusion_net.parameters():
                    p.zero_()
    z0 = torch.tensor([[-1.5, -1.5], [1.2, 1.2], [50.0, -50.0]])
    with torch.no_grad():
        for step in (dt, 10 * dt, 100 * dt):  # 100 dt: κ dt = 20, unstable for an explicit term
            q = math.exp(-rate * step)
            fixed = b + step * g * q / (1 - q)
            traj = boxed.rollout(z0, 400, step)
            assert torch.isfinite(traj).all()
            assert traj[:, -1].numpy() == pytest.approx(np.full((3, 2), fixed), rel=1e-5)
            assert traj.abs().max() <= max(50.0, fixed) + 1e-4
        far = plain.rollout(z0, 400, dt)
    assert far[:, -1].numpy() == pytest.approx((z0 + 400 * dt * g).numpy(), rel=1e-5)  # runs away as G t


def test_inside_the_box_the_dynamics_is_the_networks_alone():
    torch.manual_seed(1)
    plain = SDEDynamics(3, hidden=(16,), dt=0.05, sigma0_sq=1e-4)
    boxed = SDEDynamics(3, hidden=(16,), dt=0.05, sigma0_sq=1e-4, bound=1.25, restore_rate=4.0)
    boxed.load_state_dict(plain.state_dict())
    z0 = torch.rand(6, 3) * 0.2 - 0.1
    noise = torch.randn(20, 6, 3)
    with torch.no_grad():
        a, b = plain.rollout(z0, 20, 0.05, noise), boxed.rollout(z0, 20, 0.05, noise)
    assert a.abs().max() < 1.25  # the test is meaningful only if the path stays inside
    assert torch.equal(a, b)
    assert torch.equal(plain.drift(z0), boxed.drift(z0))


# ----------------------------------------------------------------------- multi-step objective
class _OU:
    """dz = -θ z dt + s dW stepped exactly: a stand-in dynamics for the scoring rule."""

    stochastic = True

    def __init__(self, theta, s):
        self.theta, self.s = theta, s

    def step(self, z, dt, noise):
        a = math.exp(-self.theta * dt)
        return a * z + self.s * math.sqrt((1 - a * a) / (2 * self.theta)) * noise


def test_energy_score_is_lowest_for_the_true_diffusion():
    """The SDE path objective is a proper scoring rule: on paths of an OU process it
    scores the true noise level below half and twice that level."""
    rng = np.random.default_rng(0)
    theta, s, dt, h = 1.0, 0.3, 0.1, 6
    true = _OU(theta, s)
    z = torch.tensor(rng.uniform(-1, 1, (4000, 2)))
    path = [z]
    for _ in range(h):
        z = true.step(z, dt, torch.tensor(rng.standard_normal(z.shape)))
        path.append(z)
    w = torch.stack(path, 1)
    scores = {f: float(path_loss(_OU(theta, f * s), w, dt, torch.Generator().manual_seed(1), members=16))
              for f in (0.5, 1.0, 2.0)}
    assert scores[1.0] < scores[0.5] and scores[1.0] < scores[2.0], scores


def test_unrolled_ode_error_vanishes_for_the_true_flow():
    dyn = ODEDynamics(1, hidden=(4,), dt=0.1)
    lin = torch.nn.Linear(1, 1)  # g(z) = -z exactly
    with torch.no_grad():
        lin.weight.fill_(-1.0)
        lin.bias.zero_()
    dyn.drift_net = lin
    t = torch.arange(5, dtype=torch.float64) * 0.1
    w = (torch.linspace(-1, 1, 7, dtype=torch.float64)[:, None] * torch.exp(-t)[None]).unsqueeze(-1)
    dyn = dyn.double()
    with torch.no_grad():
        assert float(path_loss(dyn, w, 0.1, torch.Generator())) < 1e-9  # RK4's error only
        assert float(path_loss(dyn, w * torch.exp(0.5 * t)[None, :, None], 0.1, torch.Generator())) > 1e-3


# ----------------------------------------------------------------------- training
def test_rollout_selection_over_stage2_seeds(tmp_path):
    """Two stage-2 seeds, scored every epoch: the history holds both curves, the kept
    snapshot is the one with the lowest rollout score, and the saved weights are its."""
    _dataset(tmp_path / "ds")
    out = tmp_path / "m"
    assert main(["train", "--data", str(tmp_path / "ds"), "--out", str(out), "--epochs-stage1", "1",
                 "--epochs-stage2", "3", "--stage2-seeds", "2", "--select-every", "1", "--seed", "2",
                 "--lr-stage2", "0.05", *SMALL]) == 0
    hist = json.loads((out / "history.json").read_text())
    assert hist["stage2_select"] == "rollout"
    assert [h["seed"] for h in hist["stage2"]] == [0, 0, 0, 1, 1, 1]
    scores = [h["rollout"]["score"] for h in hist["stage2"]]
    assert all(np.isfinite(scores)) and all("val" in h for h in hist["stage2"])
    i = int(np.argmin(scores))
    assert (hist["stage2_best_seed"], hist["stage2_best_epoch"]) == (i // 3, i % 3 + 1)
    assert hist["stage2_best_score"] == pytest.approx(scores[i])
    ck = torch.load(out / "checkpoint.pt", weights_only=True)
    saved = _weights(out)
    for name, value in ck["best"]["dynamics"].items():
        assert torch.equal(saved["dynamics." + name], value)
    # the two seeds start from different weights
    assert hist["stage2"][0]["train"] != hist["stage2"][3]["train"]


def test_selection_data_of_another_particle_number_joins_the_score(tmp_path):
    """--select-data: trajectories of another N also score every snapshot (never trained on);
    the kept snapshot has the lowest score pooled over the trajectories of both sets, and
    that set's score is what rolling the kept model out from its own encoding of that set
    gives."""
    from openmm_closure import load_model
    from openmm_closure.data import load
    from openmm_closure.learn.selection import rollout_score

    _dataset(tmp_path / "ds")
    _dataset(tmp_path / "other_n", r=3, n=10)
    out = tmp_path / "m"
    assert main(["train", "--data", str(tmp_path / "ds"), "--out", str(out), "--epochs-stage1", "1",
                 "--epochs-stage2", "3", "--select-every", "1", "--seed", "2", "--lr-stage2", "0.05",
                 "--select-data", str(tmp_path / "other_n"), *SMALL]) == 0
    hist = json.loads((out / "history.json").read_text())
    entries = [h["rollout"] for h in hist["stage2"]]
    assert all(len(e["sets"]) == 2 for e in entries)
    # pooled over trajectories: each set weighs its trajectory count (validation: 10 % of
    # the training replicas; the other-N set: all 3 of its replicas)
    sizes = [s["trajectories"] for s in entries[0]["sets"]]
    assert sizes[1] == 3 and 1 <= sizes[0] < 3
    for e in entries:
        scores = np.array([s["score"] for s in e["sets"]])
        assert e["score"] == pytest.approx(float((scores * sizes).sum() / sum(sizes)))
    i = int(np.argmin([e["score"] for e in entries]))
    assert hist["stage2_best_epoch"] == i + 1

    model = load_model(out)
    ds = load(tmp_path / "other_n")
    states = []
    for r in range(len(ds)):
        rep = ds.replica(r)
        zhat = model.encode(rep.positions, rep.types)  # (F, d), unscaled
        zbar = np.stack([rep.observables[k] for k in ("R_AB", "R_BA")], -1)
        states.append(np.concatenate([zbar, zhat], -1))
    z = model.state_scaler(torch.as_tensor(np.stack(states), dtype=torch.float64)).to(model.dtype)
    again = rollout_score(model, z, 1, "mmd", 4)
    assert again["score"] == pytest.approx(entries[i]["sets"][1]["score"], rel=1e-4)


@pytest.mark.parametrize("flags, make, message", [
    (["--select-data", "OTHER"], dict(obs=("R_AB",)), "observables ['R_AB'] and species"),
    (["--select-data", "OTHER", "--stage2-step", "2"], dict(f=2), "fewer than one stage-2 step"),
    (["--select-data", "OTHER", "--select", "one-step"], {}, "--select-data scores rollouts"),
    (["--select-data", "MISSING"], {}, "--select-data: dataset directory"),
    # AE-Aug's encoder is an ordered vector of the training N (12): refused before stage 1
    (["--select-data", "OTHER", "--method", "ae-aug"], {}, "AE-Aug cannot encode a different particle number"),
])
def test_bad_selection_data_gets_one_line(tmp_path, capsys, flags, make, message):
    from openmm_closure.data import ArrayDataset

    _dataset(tmp_path / "ds")
    f, obs = make.get("f", 6), make.get("obs", ("R_AB", "R_BA"))
    rng = np.random.default_rng(1)
    pos = rng.random((2, f, 10, 3)).astype(np.float32) * 5
    pos[..., 2] = 0
    ArrayDataset(pos, (np.arange(10) % 2).astype(np.int64), np.arange(f) * 0.4,
                 {k: rng.random((2, f)) for k in obs},
                 {"system": "lj-mixing", "observables": list(obs), "params": {"cutoff": 1.0}}).save(tmp_path / "other")
    flags = [str(tmp_path / "other") if v == "OTHER" else str(tmp_path / "missing") if v == "MISSING" else v
             for v in flags]
    rc = main(["train", "--data", str(tmp_path / "ds"), "--out", str(tmp_path / "m"), "--epochs", "1",
               *flags, *SMALL])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and message in err[-1] and len(err) == 1, err
    assert "--select-data" in err[-1] or "--select" in err[-1]
    assert not (tmp_path / "m" / "checkpoint.pt").exists()  # nothing trained first


def test_resume_in_the_second_stage2_seed_and_after_stage1(tmp_path):
    """A run killed in stage-2 seed 1 resumes bitwise; a finished stage 1 resumes with
    other stage-2 options and equals an uninterrupted run with those options."""
    _dataset(tmp_path / "ds")
    base = ["train", "--data", str(tmp_path / "ds"), "--epochs-stage1", "1", "--epochs-stage2", "2",
            "--stage2-seeds", "2", "--seed", "4", *SMALL]
    assert main([*base, "--out", str(tmp_path / "full")]) == 0
    full = _weights(tmp_path / "full")
    cut = tmp_path / "cut"
    assert main([*base, "--out", str(cut), "--stop-after", "4"]) == 0  # stage 1, seed 0 x2, seed 1 x1
    assert main([*base, "--out", str(cut), "--resume"]) == 0
    resumed = _weights(cut)
    assert all(torch.equal(full[k], resumed[k]) for k in full)

    other = ["--sigma0-sq", "0.001", "--stage2-step", "2", "--no-confine"]
    assert main([*base, *other, "--out", str(tmp_path / "full2")]) == 0
    stage1 = tmp_path / "s1"
    assert main([*base, "--out", str(stage1), "--stop-after", "1"]) == 0
    assert main([*base, *other, "--out", str(stage1), "--resume"]) == 0
    a, b = _weights(tmp_path / "full2"), _weights(stage1)
    assert all(torch.equal(a[k], b[k]) for k in a)
    cfg = json.loads((stage1 / "config.json").read_text())
    assert cfg["dynamics"]["diffusion"] == "floor" and "bound" not in cfg["dynamics"]
    assert cfg["dt"] == pytest.approx(0.8)  # two frame spacings of 0.4 ps
    # but a run already in stage 2 keeps its stage-2 options
    assert main([*base, "--out", str(cut), "--resume", "--stage2-seeds", "3"]) == 2


def test_stage2_step_sets_the_model_step_and_evaluate_follows(tmp_path):
    from openmm_closure import load_model
    from openmm_closure.evaluate.evaluation import evaluate

    _dataset(tmp_path / "ds", f=7)
    out = tmp_path / "m"
    assert main(["train", "--data", str(tmp_path / "ds"), "--out", str(out), "--epochs", "1",
                 "--stage2-step", "3", *SMALL]) == 0
    model = load_model(out)
    assert model.dt == pytest.approx(1.2)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["dynamics"]["diffusion"] == "data" and cfg["dynamics"]["bound"] == pytest.approx(1.25)
    assert cfg["dynamics"]["restore_rate"] == pytest.approx(1 / (5 * 1.2))
    v = model.dynamics.data_var
    assert torch.isfinite(v).all() and (v > 0).all()
    res = evaluate(out, tmp_path / "ds", tmp_path / "rep", samples=2, permutations=0, plots=False)
    assert len(res["over_time"]) == 3  # frames 0, 3, 6
    assert "note" not in res


@pytest.mark.parametrize("flags, message", [
    (["--stage2-step", "6"], "longer than the trajectories"),
    (["--stage2-step", "2", "--stage2-horizon", "3"], "longer than the trajectories"),
    (["--stage2-seeds", "0"], "--stage2-seeds must be an integer >= 1, got 0"),
    (["--stage2-seeds", "-2"], "--stage2-seeds must be an integer >= 1, got -2"),
    (["--stage2-horizon", "0"], "--stage2-horizon must be an integer >= 1"),
    (["--select-every", "0"], "--select-every must be an integer >= 1"),
    (["--diffusion-floor", "1.5"], "--diffusion-floor must be a fraction in (0, 1)"),
    (["--sigma0-sq", "-1"], "--sigma0-sq must be a finite floor > 0"),
    (["--restore-steps", "0"], "--restore-steps must be > 0"),
])
def test_bad_stage2_options_get_one_line(tmp_path, capsys, flags, message):
    _dataset(tmp_path / "ds")
    rc = main(["train", "--data", str(tmp_path / "ds"), "--out", str(tmp_path / "m"), "--epochs", "1",
               *flags, *SMALL])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and message in err[-1] and len(err) == 1, err
