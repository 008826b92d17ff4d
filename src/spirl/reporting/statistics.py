"""Aggregate statistics for the report: normalisation, IQM, optimality gap, stratified bootstrap CIs.

All functions are small and pure (numpy only). Score matrices are [runs, games]; every random function takes an
explicit `numpy.random.Generator` so results are reproducible from a seed.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

AGGREGATE_NOTE = (
    "Aggregates (median, IQM, mean, optimality gap) here are over this profile's games only (the paper's 4 games "
    "at most); they are not comparable with published 26-game Atari-100k aggregates."
)

Statistic = Callable[[np.ndarray], float]
PairStatistic = Callable[[np.ndarray, np.ndarray], float]


def normalize(scores, random, human) -> np.ndarray:
    """Human-normalised scores.

    Args:
        scores: any shape [..., games]; random, human: scalars or [games] (broadcast over the last axis).
    Returns:
        (scores - random) / (human - random), same shape as the broadcast inputs.
    """
    scores, random, human = (np.asarray(a, dtype=float) for a in (scores, random, human))
    span = human - random
    if np.any(span == 0):
        raise ValueError("human score equals random score for some game; normalisation is undefined")
    return (scores - random) / span


def mean_std(values) -> tuple[float, float]:
    """Mean and sample standard deviation of all entries.

    Args:
        values: any shape, n entries (n >= 1).
    Returns:
        (mean, std) with std = sqrt(sum((v - mean)^2) / (n - 1)); std is nan when n < 2.
    """
    v = np.asarray(values, dtype=float).ravel()
    if v.size == 0:
        raise ValueError("mean_std of an empty set of values")
    std = float(np.std(v, ddof=1)) if v.size > 1 else float("nan")
    return float(np.mean(v)), std


def iqm(x) -> float:
    """Interquartile mean over all entries (25% trimmed mean).

    Args:
        x: any shape (e.g. [runs, games]), n entries.
    Returns:
        mean of sorted(x.ravel())[k : n - k] with k = floor(0.25 n).
    """
    v = np.sort(np.asarray(x, dtype=float).ravel())
    if v.size == 0:
        raise ValueError("iqm of an empty array")
    k = int(0.25 * v.size)
    return float(np.mean(v[k : v.size - k]))


def optimality_gap(x, gamma: float = 1.0) -> float:
    """Mean shortfall from the target score gamma.

    Args:
        x: any shape; gamma: target (normalised) score.
    Returns:
        mean over all entries of gamma - min(x, gamma).
    """
    v = np.asarray(x, dtype=float)
    return float(np.mean(gamma - np.minimum(v, gamma)))


def aggregate_median(x) -> float:
    """Median over games of the per-game mean over runs.

    Args:
        x: [runs, games].
    Returns:
        median_g(mean_r x[r, g]).
    """
    return float(np.median(np.asarray(x, dtype=float).mean(axis=0)))


def aggregate_mean(x) -> float:
    """Mean over games of the per-game mean over runs.

    Args:
        x: [runs, games].
    Returns:
        mean_g(mean_r x[r, g]).
    """
    return float(np.mean(np.asarray(x, dtype=float).mean(axis=0)))


def probability_of_improvement(x, y) -> float:
    """Probability that a run of X beats a run of Y on the same game, averaged over games.

    Args:
        x: [runs_x, games]; y: [runs_y, games] (same games, same order).
    Returns:
        mean_g [ P(X_g > Y_g) + 0.5 P(X_g = Y_g) ] over all (i, j) run pairs, i.e. mean_g U_g / (n_x n_y).
    """
    x, y = _as_matrix(x, "x"), _as_matrix(y, "y")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"games differ: x has {x.shape[1]}, y has {y.shape[1]}")
    a, b = x[:, None, :], y[None, :, :]
    per_game = (a > b).mean(axis=(0, 1)) + 0.5 * (a == b).mean(axis=(0, 1))
    return float(per_game.mean())


def stratified_bootstrap(x, statistic: Statistic, reps: int, rng: np.random.Generator) -> np.ndarray:
    """Bootstrap replicates of a statistic, resampling runs with replacement independently within each game.

    Args:
        x: [runs, games], no NaN; statistic: [runs, games] -> float; reps: number of replicates.
    Returns:
        [reps] values statistic(x[idx[:, g], g] for each g), idx[r, g] ~ Uniform{0..runs-1} i.i.d.
    """
    x = _as_matrix(x, "x")
    return np.array([statistic(_resample(x, rng)) for _ in range(reps)], dtype=float)


def stratified_bootstrap_pair(x, y, statistic: PairStatistic, reps: int, rng: np.random.Generator) -> np.ndarray:
    """Bootstrap replicates of a two-sample statistic; x and y are resampled independently, stratified by game.

    Args:
        x: [runs_x, games]; y: [runs_y, games]; statistic: (x*, y*) -> float; reps: number of replicates.
    Returns:
        [reps] values statistic(x*, y*), each of x*, y* resampled as in `stratified_bootstrap`.
    """
    x, y = _as_matrix(x, "x"), _as_matrix(y, "y")
    return np.array([statistic(_resample(x, rng), _resample(y, rng)) for _ in range(reps)], dtype=float)


def percentile_interval(samples, level: float) -> tuple[float, float]:
    """Percentile confidence interval of bootstrap samples.

    Args:
        samples: [reps]; level: coverage in (0, 1), e.g. 0.95.
    Returns:
        (q(a), q(1 - a)) with a = (1 - level) / 2 and q the linear-interpolation quantile.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    alpha = (1 - level) / 2
    low, high = np.quantile(np.asarray(samples, dtype=float), [alpha, 1 - alpha])
    return float(low), float(high)


def bootstrap_ci(x, statistic: Statistic, reps: int, level: float, rng: np.random.Generator) -> tuple[float, float]:
    """Stratified-bootstrap percentile CI of statistic(x).

    With a single run per game every replicate equals x, so the interval collapses to the point estimate.

    Args:
        x: [runs, games]; statistic: [runs, games] -> float; reps; level in (0, 1).
    Returns:
        (low, high) = percentile_interval(stratified_bootstrap(x, statistic, reps, rng), level).
    """
    return percentile_interval(stratified_bootstrap(x, statistic, reps, rng), level)


def performance_profile(x, taus) -> np.ndarray:
    """Run-score distribution: fraction of all entries strictly above each threshold.

    Args:
        x: any shape (e.g. [runs, games]); taus: [M].
    Returns:
        [M] with out[m] = mean(x > taus[m]) over all entries.
    """
    v = np.asarray(x, dtype=float).ravel()
    t = np.asarray(taus, dtype=float).ravel()
    return (v[None, :] > t[:, None]).mean(axis=1)


def bootstrap_mean_ci(values, reps: int, level: float, rng: np.random.Generator) -> tuple[float, float]:
    """Percentile CI of the mean of one sample (a single stratum), vectorised over the replicates.

    Args:
        values: [n] finite values; reps; level in (0, 1).
    Returns:
        (low, high) of the [reps] means of n draws with replacement; both equal the value when n = 1.
    """
    v = _as_matrix(np.asarray(values, dtype=float)[:, None], "values")[:, 0]
    means = v[rng.integers(0, len(v), size=(reps, len(v)))].mean(axis=1)  # [reps]
    return percentile_interval(means, level)


def interval_estimates(x, reps: int, level: float, rng: np.random.Generator) -> dict[str, tuple[float, float, float]]:
    """Point estimates and stratified-bootstrap CIs of the standard aggregates.

    Args:
        x: [runs, games] human-normalised scores; reps; level in (0, 1).
    Returns:
        {"Median", "IQM", "Mean", "Optimality gap"} -> (point, low, high); see AGGREGATE_NOTE on comparability.
    """
    x = _as_matrix(x, "x")
    metrics: dict[str, Statistic] = {"Median": aggregate_median, "IQM": iqm, "Mean": aggregate_mean,
                                     "Optimality gap": optimality_gap}
    return {name: (fn(x), *bootstrap_ci(x, fn, reps, level, rng)) for name, fn in metrics.items()}


def _as_matrix(x, name: str) -> np.ndarray:
    """Validate a [runs, games] score matrix: 2-D, non-empty, no NaN."""
    m = np.asarray(x, dtype=float)
    if m.ndim != 2 or m.shape[0] == 0 or m.shape[1] == 0:
        raise ValueError(f"{name} must be a non-empty [runs, games] matrix, got shape {m.shape}")
    if np.isnan(m).any():
        raise ValueError(f"{name} contains NaN (a missing run/game cell); drop or fill it before bootstrapping")
    return m


def _resample(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One stratified resample: rows drawn with replacement independently for each game (column)."""
    runs, games = x.shape
    idx = rng.integers(0, runs, size=(runs, games))
    return x[idx, np.arange(games)]
