"""The paper's metrics against hand-computed values on tiny inputs."""

import numpy as np
import pytest

from openmm_closure.evaluate import metrics


def test_mmd_of_an_ensemble_against_itself_is_exactly_zero():
    x = np.random.default_rng(0).normal(size=(17, 2))
    assert metrics.mmd2(x, x) == 0.0
    traj = np.random.default_rng(1).normal(size=(9, 5, 2))
    assert np.all(metrics.mmd_over_time(traj, traj) == 0.0)
    assert metrics.mmd(traj, traj) == 0.0


def test_mmd_of_two_one_point_ensembles_has_the_closed_form():
    x, y = np.array([[0.1, 0.2]]), np.array([[0.13, 0.16]])
    d2 = 0.03**2 + 0.04**2  # |x - y|^2 = 0.0025
    expected = np.mean([2.0 - 2.0 * np.exp(-d2 / (2 * s * s)) for s in (0.01, 0.05, 0.25, 1.25)])
    assert metrics.mmd2(x, y) == pytest.approx(expected, rel=1e-12)
    # by hand for the single kernel sigma = 0.05: 2 - 2 exp(-0.0025 / 0.005) = 2 - 2 e^{-1/2}
    assert metrics.mmd2(x, y, sigmas=(0.05,)) == pytest.approx(2 - 2 * np.exp(-0.5), rel=1e-12)


def test_mmd_is_the_biased_v_statistic():
    # x = {0, 1}, y = {0}, sigma = 1, 1D: k(0,1) = e^{-1/2}
    e = np.exp(-0.5)
    kxx = (1 + 1 + 2 * e) / 4
    kyy = 1.0
    kxy = (1 + e) / 2
    assert metrics.mmd2([0.0, 1.0], [0.0], sigmas=(1.0,)) == pytest.approx(kxx + kyy - 2 * kxy, rel=1e-12)


def test_mmd_is_averaged_over_kernels_then_over_time():
    rng = np.random.default_rng(2)
    p, t = rng.normal(size=(4, 3, 2)), rng.normal(size=(6, 3, 2))
    per_t = [np.mean([metrics.mmd2(p[:, i], t[:, i], (s,)) for s in metrics.MMD_SIGMAS]) for i in range(3)]
    assert metrics.mmd(p, t) == pytest.approx(np.mean(per_t), rel=1e-12)


def test_mre_of_a_scaled_copy_is_known():
    y = np.random.default_rng(3).uniform(0.5, 2.0, size=(5, 11))
    # sum_t (c y - y)^2 / sum_t y^2 = (c - 1)^2 for every trajectory
    assert metrics.mre(1.1 * y, y) == pytest.approx(0.01, rel=1e-10)
    assert metrics.mre(y, y) == 0.0
    assert metrics.mre_over_time(0.8 * y, y).sum() == pytest.approx(0.04, rel=1e-10)


def test_mre_uses_the_training_range_scaled_to_minus_one_one():
    true = np.array([[0.0, 1.0, 2.0]])
    pred = np.array([[0.0, 1.0, 3.0]])
    # training range [0, 4]: scaled true = [-1, -0.5, 0], pred = [-1, -0.5, 0.5]
    # MRE = 0.25 / (1 + 0.25) = 0.2
    assert metrics.mre(pred, true, lo=0.0, hi=4.0) == pytest.approx(0.2, rel=1e-12)
    # two trajectories: the mean of the per-trajectory ratios
    true2 = np.vstack([true, [[4.0, 4.0, 4.0]]])  # scaled: all 1
    pred2 = np.vstack([pred, [[4.0, 4.0, 2.0]]])  # scaled: 1, 1, 0 -> 1 / 3
    assert metrics.mre(pred2, true2, 0.0, 4.0) == pytest.approx((0.2 + 1 / 3) / 2, rel=1e-12)


def test_minmax_scale_maps_the_range_onto_minus_one_one():
    assert np.allclose(metrics.minmax_scale([2.0, 3.0, 4.0], 2.0, 4.0), [-1.0, 0.0, 1.0])


def test_extension_stats_and_moment_errors():
    ext = np.array([[1.0, 2.0], [3.0, 6.0]])
    mean, std = metrics.extension_stats(ext)
    assert np.allclose(mean, [2.0, 4.0]) and np.allclose(std, [1.0, 2.0])
    err = metrics.moment_errors(ext + 1.0, ext)
    assert err["mean_abs_error_mean"] == pytest.approx(1.0)
    assert err["mean_abs_error_std"] == pytest.approx(0.0)
    assert err["rel_error_mean"] == pytest.approx(2.0 / 20.0)


def test_bad_input_is_refused():
    with pytest.raises(ValueError):
        metrics.mre(np.ones((2, 3)), np.ones((2, 4)))
    with pytest.raises(ValueError):
        metrics.mre(np.ones((1, 3)), np.zeros((1, 3)))
    with pytest.raises(ValueError):
        metrics.mmd2(np.ones((2, 2)), np.ones((2, 3)))
    with pytest.raises(ValueError):
        metrics.mmd2([np.nan], [0.0])
    with pytest.raises(ValueError):
        metrics.mmd2([1.0], [0.0], sigmas=(0.0,))


def test_metrics_do_not_import_torch_or_openmm():
    import subprocess
    import sys

    code = ("import sys, openmm_closure.evaluate.metrics; "
            "assert 'torch' not in sys.modules and 'openmm' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_mmd_floor_matches_gaussian_analytic_and_monte_carlo():
    """E[MMD²_V] of two i.i.d. ensembles = (1/n + 1/m)(1 - E k(x, x')); for x ~ N(0, s² I_D)
    E k = (σ² / (σ² + 2 s²))^(D/2) exactly; and the mean of many measured MMDs agrees."""
    rng = np.random.default_rng(7)
    s, dim, sigmas, n, m = 0.3, 2, (0.1, 0.5), 12, 20
    analytic = (1 / n + 1 / m) * np.mean([1 - (g * g / (g * g + 2 * s * s)) ** (dim / 2) for g in sigmas])
    pool = rng.normal(scale=s, size=(600, 3, dim))            # (R, T, D): three times, one law
    floor = metrics.mmd_floor(pool, n, m, sigmas=sigmas)
    assert abs(floor - analytic) < 0.03 * analytic
    draws = [metrics.mmd(rng.normal(scale=s, size=(n, 3, dim)), rng.normal(scale=s, size=(m, 3, dim)), sigmas)
             for _ in range(400)]
    se = np.std(draws) / np.sqrt(len(draws))
    assert abs(np.mean(draws) - analytic) < 4 * se
    # a real difference between the laws lifts the measured MMD above the floor
    shifted = [metrics.mmd(rng.normal(scale=s, size=(n, 3, dim)), 0.5 + rng.normal(scale=s, size=(m, 3, dim)), sigmas)
               for _ in range(20)]
    assert np.mean(shifted) > 3 * floor


def test_mmd_floor_rejects_bad_input():
    with pytest.raises(ValueError, match="R >= 2"):
        metrics.mmd_floor(np.zeros((1, 4)), 4, 4)
    with pytest.raises(ValueError, match="n must be"):
        metrics.mmd_floor(np.zeros((3, 4)), 0, 4)
    with pytest.raises(ValueError, match="NaN"):
        metrics.mmd_floor(np.full((3, 4), np.nan), 4, 4)
