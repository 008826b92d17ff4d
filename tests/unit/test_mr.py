"""The mr stage's summary and its candidates (SPEC §6, §12 #4 and #5)."""

from __future__ import annotations

import numpy as np
import pytest

from spirl.params import REPO_ROOT, load_params
from spirl.saliency.mr import CANDIDATE_KEYS, candidates, summarize_ks, uncapped_ks
from spirl.saliency.selection import dynamic_k


@pytest.fixture(scope="module")
def params():
    return load_params([REPO_ROOT / "params.yaml"])


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
