"""The mr estimate (SPEC §6): mr* and the K/N histogram, the stage's summary and its candidates (§12 #4, #5)."""

from __future__ import annotations

import numpy as np
import pytest

from spirl.params import REPO_ROOT, load_params
from spirl.saliency.mr import CANDIDATE_KEYS, candidates, k_ratio_histogram, mr_star, summarize_ks, uncapped_ks
from spirl.saliency.selection import dynamic_k


@pytest.fixture(scope="module")
def params():
    return load_params([REPO_ROOT / "params.yaml"])


def test_mr_star_hand_cases():
    # N = 144: candidate K_max are 7, 14, 21, 28, 36 (25%), 43 (30%), 50 (35%), ... 136 (95%).
    ks = np.array([20] * 999 + [43])
    assert mr_star(ks, 144) == (0.30, 1.0)  # at 25%: 999/1000 = 99.9% is not MORE than 99.9%
    assert mr_star(np.array([20] * 999 + [44]), 144) == (0.35, 1.0)
    ks = np.array([36] * 9991 + [43] * 9)
    assert mr_star(ks, 144) == (0.25, 0.9991)  # 9,991 / 10,000 > 99.9%
    ks = np.array([36] * 9990 + [43] * 10)
    assert mr_star(ks, 144) == (0.30, 1.0)  # 9,990 / 10,000 = 99.9% exactly: not enough
    assert mr_star(np.array([29] * 3 + [28] * 997), 144, coverage=0.99) == (0.20, 0.997)
    assert mr_star(np.array([137] * 1000), 144) == (1.0, 1.0)  # nothing <= 95% (K_max 136) qualifies
    assert mr_star(np.array([2] * 10), 144) == (0.05, 1.0)
    with pytest.raises(ValueError, match="ks must lie"):
        mr_star(np.array([0, 5]), 144)


def test_k_ratio_histogram_bins_are_right_closed():
    edges, counts = k_ratio_histogram(np.array([1, 1, 2, 3, 5, 6, 10]), 10)
    np.testing.assert_array_equal(edges, np.arange(21) / 20)
    assert counts.dtype == np.int64 and counts.shape == (20,) and counts.sum() == 7
    # K/N: 0.1 -> (5%, 10%] (bin 1), 0.2 -> bin 3, 0.3 -> bin 5, 0.5 -> bin 9, 0.6 -> bin 11, 1.0 -> bin 19
    assert {j: int(c) for j, c in enumerate(counts) if c} == {1: 2, 3: 1, 5: 1, 9: 1, 11: 1, 19: 1}
    _, counts = k_ratio_histogram(np.array([7, 8, 72, 73, 144]), 144)
    # 7/144 = 4.9% -> bin 0; 8/144 = 5.6% -> bin 1; 72/144 = 50% exactly -> bin 9; 73/144 -> bin 10
    assert {j: int(c) for j, c in enumerate(counts) if c} == {0: 1, 1: 1, 9: 1, 10: 1, 19: 1}
    edges, counts = k_ratio_histogram(np.array([1, 2, 3, 4]), 4, bin_width=0.25)
    assert edges.tolist() == [0.0, 0.25, 0.5, 0.75, 1.0] and counts.tolist() == [1, 1, 1, 1]
    with pytest.raises(ValueError, match="bin width"):
        k_ratio_histogram(np.array([1]), 4, bin_width=0.3)


def test_summary_of_hand_made_ks(params):
    ks = np.array([10] * 998 + [30, 60])  # N = 144: K/N 6.9%, 20.8%, 41.7%
    s = summarize_ks(ks, 144, "Frostbite", params)
    # mr* = the smallest 5% step covering MORE than 99.9% of frames: 10% covers 998/1000 (99.8%) -> no;
    # 25% (K_max 36) covers 999/1000 = 99.9%, not more -> no; 45% (K_max 64) covers all -> yes
    assert (s["mr_star"], s["coverage_at_mr_star"]) == (0.45, 1.0)
    assert (s["k_max_paper_adopted"], s["coverage_at_paper_adopted"]) == (50, 0.999)  # 35% of 144 -> 50
    assert (s["k_mean"], s["k_median"], s["k_min_seen"], s["k_max_seen"]) == (10.07, 10.0, 10, 60)
    assert sum(s["counts"]) == 1000 and s["mr_star_paper"] == 0.40


def test_uncapped_ks_follow_the_rule_per_frame():
    errors = np.random.default_rng(0).gamma(0.5, size=(20, 144)).astype(np.float32)
    assert uncapped_ks(errors, 1.0).tolist() == [len(dynamic_k(e, 144, 1.0)) for e in errors]
    assert uncapped_ks(np.zeros((0, 144), np.float32), 1.0).shape == (0,)


def test_candidates_vary_space_and_xscale_on_the_same_maps(params):
    rng = np.random.default_rng(1)
    errors = rng.gamma(0.5, size=(50, 144)).astype(np.float32)
    variances = rng.gamma(2.0, 0.01, size=(50, 144)).astype(np.float32)
    out = candidates(errors, variances, params, "Frostbite", 1e-6)
    assert [(c["error_space"], c["xscale"]) for c in out] == [("normalized", 1.0), ("normalized", 2.0),
                                                              ("raw", 1.0), ("raw", 2.0)]
    assert all(set(CANDIDATE_KEYS) <= set(c) for c in out)
    assert out[0]["k_mean"] == summarize_ks(uncapped_ks(errors, 1.0), 144, "Frostbite", params)["k_mean"]
    raw = uncapped_ks(errors * (variances + np.float32(1e-6)), 2.0)
    assert out[3]["k_mean"] == pytest.approx(raw.mean())
    assert out[1]["k_mean"] < out[0]["k_mean"]  # a steeper target slope (45 degrees) keeps fewer patches
