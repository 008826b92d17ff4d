"""A run's final metric (SPEC §10): the one number a training run reports, in its eval.json (`score`, what `dvc
metrics show` lists) and in the tables (runs.csv). Torch-free, so reading runs back does not load torch."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def final_metric(points: Sequence[Mapping], metric: str) -> float:
    """SPEC §10: final_mean = mean return of the last evaluation; best_median = max over points of the median.

    Args:
        points: evaluation points in env-step order, each with "returns" [n_envs].
        metric: "final_mean" | "best_median".
    """
    if not points:
        raise ValueError("final_metric needs at least one evaluation point")
    if metric == "final_mean":
        return float(np.mean(points[-1]["returns"]))
    if metric == "best_median":
        return float(max(np.median(p["returns"]) for p in points))
    raise ValueError(f"unknown metric {metric!r}; allowed: final_mean, best_median")
