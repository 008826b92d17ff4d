"""bench/bf16_agreement.py's measures of agreement between two precisions' error maps, on hand-made maps."""

from __future__ import annotations

import torch


def test_ranks_follow_the_stable_sort(load_bench):
    bench = load_bench("bf16_agreement")
    errors = torch.tensor([[3.0, 1.0, 2.0, 1.0]])
    assert bench.ranks(errors).tolist() == [[3, 0, 2, 1]]  # the tie 1.0 keeps index order


def test_agreement_of_equal_and_of_swapped_maps(load_bench):
    bench = load_bench("bf16_agreement")
    base = torch.tensor([[0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 2.0, 9.0],
                         [0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 2.0, 9.0]])
    same = bench.agreement(base, base.clone(), 3, 1.0)
    assert same["identical_share"] == 1.0 and same["mean_jaccard"] == 1.0 and same["largest_rank_change"] == 0
    assert same["mean_abs_k_difference"] == 0.0
    other = base.clone()
    other[1, 4], other[1, 5] = 1.0, 0.0  # frame 1: patches 4 and 5 swap their errors
    assert bench.selection_sets(base, 3, 1.0)[1] == {5, 6, 7} and bench.selection_sets(other, 3, 1.0)[1] == {4, 6, 7}
    swapped = bench.agreement(base, other, 3, 1.0)
    assert swapped["identical_share"] == 0.5 and swapped["largest_rank_change"] == 1  # patch 4: rank 5 -> 4
    assert swapped["mean_jaccard"] == (1.0 + 2 / 4) / 2 and swapped["min_jaccard"] == 0.5  # {5,6,7} vs {4,6,7}
