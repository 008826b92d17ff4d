"""Report statistics: hand-worked numbers, bootstrap reproducibility and stratification."""

from __future__ import annotations

import math

import numpy as np
import pytest

from spirl.reporting import statistics as rp

# 4 runs x 2 games; game 1 scores exceed 1, so the optimality gap's clipping matters.
HAND = np.array([[0.2, 1.5],
                 [0.4, 0.9],
                 [0.1, 2.0],
                 [0.6, 1.1]])


def test_iqm_hand_case():
    # sorted: 0.1 0.2 | 0.4 0.6 0.9 1.1 | 1.5 2.0 ; n = 8, drop floor(0.25*8) = 2 from each end
    # IQM = (0.4 + 0.6 + 0.9 + 1.1) / 4 = 3.0 / 4 = 0.75
    assert rp.iqm(HAND) == pytest.approx(0.75)
    # n = 10: drop floor(2.5) = 2 each end -> mean of 2..7 = 4.5
    assert rp.iqm(np.arange(10.0).reshape(5, 2)) == pytest.approx(4.5)


def test_optimality_gap_hand_case():
    # 1 - min(x, 1): 0.8 0.6 0.9 0.4 (game 0) and 0 0.1 0 0 (game 1); sum 2.8, mean 2.8 / 8 = 0.35
    # (unclipped, mean(1 - x) would be 1 - 6.8 / 8 = 0.15)
    assert rp.optimality_gap(HAND) == pytest.approx(0.35)
    assert rp.optimality_gap(HAND, gamma=2.0) == pytest.approx(np.mean(2.0 - HAND))


def test_median_and_mean_of_per_game_means():
    # per-game means: game 0 = 1.3 / 4 = 0.325, game 1 = 5.5 / 4 = 1.375
    assert rp.aggregate_mean(HAND) == pytest.approx((0.325 + 1.375) / 2)
    assert rp.aggregate_median(HAND) == pytest.approx((0.325 + 1.375) / 2)
    assert rp.aggregate_median(np.array([[1.0, 5.0, 2.0], [3.0, 7.0, 2.0]])) == pytest.approx(2.0)


def test_probability_of_improvement_hand_case_with_tie():
    # game 0: x = 1, 2, 3 vs y = 0, 2 -> 4 wins, 1 tie of 6 pairs: 4/6 + 0.5 * 1/6 = 0.75
    # game 1: x = 5, 5, 5 vs y = 6, 6 -> no wins, no ties: 0 ; average 0.375
    x = np.array([[1.0, 5.0], [2.0, 5.0], [3.0, 5.0]])
    y = np.array([[0.0, 6.0], [2.0, 6.0]])
    assert rp.probability_of_improvement(x, y) == pytest.approx(0.375)
    assert rp.probability_of_improvement(x, y) + rp.probability_of_improvement(y, x) == pytest.approx(1.0)
    assert rp.probability_of_improvement(x, x) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="games"):
        rp.probability_of_improvement(x, y[:, :1])


def test_probability_of_improvement_is_complementary_on_random_data():
    rng = np.random.default_rng(3)
    x, y = rng.integers(0, 4, (5, 3)).astype(float), rng.integers(0, 4, (4, 3)).astype(float)
    assert rp.probability_of_improvement(x, y) + rp.probability_of_improvement(y, x) == pytest.approx(1.0)


def test_mean_std():
    mean, std = rp.mean_std([1.0, 2.0, 3.0, 4.0])
    # mean 2.5; squared deviations 2.25 0.25 0.25 2.25 -> 5 / (4 - 1)
    assert mean == pytest.approx(2.5) and std == pytest.approx(math.sqrt(5 / 3))
    mean, std = rp.mean_std([7.0])
    assert mean == 7.0 and math.isnan(std)
    with pytest.raises(ValueError):
        rp.mean_std([])


def test_normalize():
    # game 0: (10 - 0) / (20 - 0) = 0.5 ; game 1: (50 - 10) / (110 - 10) = 0.4
    out = rp.normalize([[10.0, 50.0], [20.0, 10.0]], random=[0.0, 10.0], human=[20.0, 110.0])
    np.testing.assert_allclose(out, [[0.5, 0.4], [1.0, 0.0]])
    assert rp.normalize(3.0, 1.0, 5.0) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="human"):
        rp.normalize([1.0, 2.0], random=[0.0, 3.0], human=[1.0, 3.0])


def test_bootstrap_is_reproducible_from_the_seed():
    x = np.random.default_rng(0).normal(size=(5, 4))
    a = rp.stratified_bootstrap(x, rp.iqm, 200, np.random.default_rng(1))
    b = rp.stratified_bootstrap(x, rp.iqm, 200, np.random.default_rng(1))
    c = rp.stratified_bootstrap(x, rp.iqm, 200, np.random.default_rng(2))
    assert a.shape == (200,)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_ci_contains_the_point_estimate():
    x = np.random.default_rng(5).normal(1.0, 0.5, size=(10, 4))
    for fn in (rp.iqm, rp.aggregate_mean, rp.aggregate_median, rp.optimality_gap):
        low, high = rp.bootstrap_ci(x, fn, 500, 0.95, np.random.default_rng(6))
        assert low <= fn(x) <= high and low < high
    est = rp.interval_estimates(x, 300, 0.95, np.random.default_rng(7))
    assert list(est) == ["Median", "IQM", "Mean", "Optimality gap"]
    for point, low, high in est.values():
        assert low <= point <= high


def test_resampling_stays_within_each_game():
    # game 0 takes values 0..4, game 1 takes 10..14: disjoint ranges
    x = np.stack([np.arange(5.0), np.arange(10.0, 15.0)], axis=1)

    def within_games(sample: np.ndarray) -> float:
        return float(np.isin(sample[:, 0], x[:, 0]).all() and np.isin(sample[:, 1], x[:, 1]).all())

    def rows_kept_together(sample: np.ndarray) -> float:
        return float(np.all(sample[:, 1] - sample[:, 0] == 10.0))

    rng = np.random.default_rng(0)
    assert rp.stratified_bootstrap(x, within_games, 100, rng).min() == 1.0
    # games are resampled independently, so a run's scores are not always drawn together
    assert rp.stratified_bootstrap(x, rows_kept_together, 100, rng).mean() < 0.5


def test_pair_bootstrap_of_probability_of_improvement():
    rng = np.random.default_rng(0)
    x, y = rng.normal(1.0, 1.0, (6, 3)), rng.normal(0.0, 1.0, (5, 3))
    reps = rp.stratified_bootstrap_pair(x, y, rp.probability_of_improvement, 200, np.random.default_rng(1))
    again = rp.stratified_bootstrap_pair(x, y, rp.probability_of_improvement, 200, np.random.default_rng(1))
    np.testing.assert_array_equal(reps, again)
    assert reps.shape == (200,) and np.all((reps >= 0) & (reps <= 1))
    low, high = rp.percentile_interval(reps, 0.95)
    assert low <= rp.probability_of_improvement(x, y) <= high


def test_single_run_per_game_collapses_to_the_point_estimate():
    x = np.array([[0.3, 1.7, 0.9]])
    reps = rp.stratified_bootstrap(x, rp.iqm, 50, np.random.default_rng(0))
    assert np.all(reps == rp.iqm(x))
    assert rp.bootstrap_ci(x, rp.iqm, 50, 0.95, np.random.default_rng(0)) == (rp.iqm(x), rp.iqm(x))


def test_nan_input_rejected():
    x = np.array([[0.1, np.nan], [0.2, 0.3]])
    with pytest.raises(ValueError, match="NaN"):
        rp.stratified_bootstrap(x, rp.iqm, 10, np.random.default_rng(0))
    with pytest.raises(ValueError, match="NaN"):
        rp.stratified_bootstrap_pair(x, x, rp.probability_of_improvement, 10, np.random.default_rng(0))


def test_percentile_interval():
    # 0..100: the 2.5% and 97.5% quantiles are 2.5 and 97.5 (linear interpolation)
    assert rp.percentile_interval(np.arange(101.0), 0.95) == pytest.approx((2.5, 97.5))
    with pytest.raises(ValueError):
        rp.percentile_interval(np.arange(5.0), 1.0)


def test_performance_profile_is_strict_at_ties():
    x = np.array([[0.0, 0.5], [1.0, 2.0]])
    # tau = 0.5: only 1.0 and 2.0 are strictly greater (0.5 is not) -> 2 / 4
    np.testing.assert_allclose(rp.performance_profile(x, [-1.0, 0.0, 0.5, 1.0, 2.0]), [1.0, 0.75, 0.5, 0.25, 0.0])


def test_aggregate_note_mentions_the_limit():
    assert "4 games" in rp.AGGREGATE_NOTE and "26" in rp.AGGREGATE_NOTE


def test_matches_rliable_when_installed():
    metrics = pytest.importorskip("rliable.metrics")
    x = np.random.default_rng(11).normal(1.0, 0.7, size=(7, 4))
    assert rp.iqm(x) == pytest.approx(metrics.aggregate_iqm(x))
    assert rp.optimality_gap(x) == pytest.approx(metrics.aggregate_optimality_gap(x, gamma=1))
