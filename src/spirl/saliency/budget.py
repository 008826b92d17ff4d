"""A run's patch budget K_max (SPEC §5, §6): the most patches a selection keeps per frame.

K_max = floor(N · mr) with mr the run's maximal ratio (spirl.params.resolve_mr: saliency.mr, "paper", "paper_star",
"auto" = the game's estimated mr*, or a ratio, plus saliency.mr_offset), computed exactly by
spirl.saliency.selection.k_max_from_ratio; selection "all" (MAE-All) keeps every patch, K_max = N. Every stage that
caps a selection (training, Fig. 3, Fig. 6, object recall) takes K_max from `run_budget`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, NamedTuple

from spirl.params import SELECTIONS, ConfigError, SaliencyParams, resolve_mr
from spirl.saliency.selection import k_max_from_ratio


class Budget(NamedTuple):
    """mr: the maximal ratio the run uses (resolve_mr); k_max: its patch budget K_max."""

    mr: float
    k_max: int


def estimated_mr_star(mr_record: Mapping[str, Any] | None) -> float | None:
    """The estimated mr* in an estimate_mr record (its mr.json: result.mr_star), None without a record.

    Raises: ConfigError naming result.mr_star when the record lacks it or it is not a ratio in (0, 1].
    """
    if mr_record is None:
        return None
    result = mr_record.get("result") if isinstance(mr_record, Mapping) else None
    value = result.get("mr_star") if isinstance(result, Mapping) else None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or not 0 < value <= 1:
        raise ConfigError(f"the mr record's result.mr_star must be a ratio in (0, 1], got {value!r} "
                          "(an estimate_mr mr.json)")
    return float(value)


def run_budget(saliency: SaliencyParams, game: str, num_patches: int, mr_record: Mapping[str, Any] | None,
               selection: str | None = None) -> Budget:
    """The maximal ratio and K_max of a run on `game` whose MAE cuts a frame into num_patches patches.

    Args:
        saliency: the run's resolved params.saliency (mr, mr_offset, the published ratios, selection).
        game: the game (the published ratios are per game).
        num_patches: N, the MAE's patches per frame.
        mr_record: the game's estimate_mr record (read_json of its mr.json), or None; its result.mr_star is the
            ratio of saliency.mr "auto" (resolve_mr raises a ConfigError for "auto" without it).
        selection: the selection the budget caps (None: saliency.selection); "all" keeps every patch (K_max = N),
            "dynamic" and "fixed" cap at floor(N · mr).
    Returns: Budget(mr, k_max).
    """
    selection = saliency.selection if selection is None else selection
    if selection not in SELECTIONS:
        raise ConfigError(f"saliency.selection must be one of {SELECTIONS}, got {selection!r}")
    if isinstance(num_patches, bool) or not isinstance(num_patches, int) or num_patches < 1:
        raise ValueError(f"num_patches must be a positive integer, got {num_patches!r}")
    mr = resolve_mr(saliency, game, estimated_mr_star(mr_record))
    return Budget(mr, num_patches if selection == "all" else k_max_from_ratio(num_patches, mr))
