"""Patch selection: dynamic-K (SPEC §5), fixed-K, MAE-All, K_max from a ratio and the Lorenz curve."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spirl.saliency.selection import (
    _two_step_slopes,
    all_patches,
    all_patches_batched,
    cumulative_error_curve,
    dynamic_k,
    dynamic_k_batched,
    fixed_k,
    fixed_k_batched,
    k_max_from_ratio,
    select_batched,
)

# SPEC §5 worked example, N = 10, xscale / N = 0.1.
EXAMPLE = [0.02, 0.50, 0.01, 0.03, 0.90, 0.02, 0.04, 0.30, 0.05, 0.13]
N144 = 144
K_MAXES = (50, 43, 28, 72, 144)  # released K_max per game, mr = 50%, and no cap


def _random_frames(rng: np.random.Generator, per_family: int, n: int = N144) -> np.ndarray:
    """[9 * per_family, n] float64 error maps from families with ties, heavy tails, zeros and constant rows."""
    f = per_family
    families = [
        rng.random((f, n)),
        rng.exponential(1.0, (f, n)),
        rng.pareto(1.1, (f, n)),  # heavy tail: a few patches hold most of the error
        rng.lognormal(0.0, 3.0, (f, n)),
        rng.integers(0, 5, (f, n)).astype(np.float64),  # many ties
        rng.choice([0.01, 0.02, 0.05, 0.1, 0.3], (f, n)),  # decimal ties, like the worked example
        rng.random((f, n)) * (rng.random((f, n)) < 0.05),  # mostly exact zeros
        np.repeat(rng.random((f, 1)), n, axis=1),  # all equal
        np.zeros((f, n)),  # all zero
    ]
    return np.concatenate(families, axis=0)


# ---------------------------------------------------------------- worked example (SPEC §5)


def test_worked_example_sort_q_and_two_step_slopes():
    order, q, d = _two_step_slopes(np.array(EXAMPLE))
    assert order.tolist() == [2, 0, 5, 3, 6, 8, 9, 7, 1, 4]  # 0 before 5: stable sort
    assert order.dtype == np.int64 and q.dtype == np.float64 and d.dtype == np.float64
    np.testing.assert_allclose(q, [0.005, 0.010, 0.010, 0.015, 0.020, 0.025, 0.065, 0.150, 0.250, 0.450],
                               rtol=0, atol=1e-12)
    # D_0 (not printed in the SPEC), then the SPEC's D_1..D_8
    np.testing.assert_allclose(d, [0.015, 0.020, 0.025, 0.035, 0.045, 0.090, 0.215, 0.400, 0.700],
                               rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    ("k_max", "expected"),
    [(10, [8, 9, 7, 1, 4]), (9, [8, 9, 7, 1, 4]), (5, [8, 9, 7, 1, 4]), (4, [9, 7, 1, 4]), (3, [7, 1, 4]),
     (2, [1, 4])],
)
def test_worked_example_selection(k_max, expected):
    for errors in (EXAMPLE, np.array(EXAMPLE), torch.tensor(EXAMPLE), torch.tensor(EXAMPLE, dtype=torch.float32)):
        got = dynamic_k(errors, k_max)
        assert got.dtype == np.int64 and got.tolist() == expected


def test_worked_example_batched_padding_and_counts():
    batch = torch.tensor([EXAMPLE, EXAMPLE[::-1]], dtype=torch.float64)
    idx, counts = dynamic_k_batched(batch, 10)
    assert idx.dtype == torch.int64 and counts.dtype == torch.int64 and idx.shape == (2, 10)
    assert idx[0].tolist() == [8, 9, 7, 1, 4, -1, -1, -1, -1, -1]
    assert idx[1].tolist() == [9 - i for i in [8, 9, 7, 1, 4]] + [-1] * 5  # reversed patch order
    assert counts.tolist() == [5, 5]
    for k_max, expected in [(4, [9, 7, 1, 4]), (3, [7, 1, 4])]:
        idx, counts = dynamic_k_batched(batch[:1], k_max)
        assert idx.tolist() == [expected] and counts.tolist() == [k_max]


def test_xscale_two_keeps_fewer_patches_on_the_example():
    # target slope 0.2: |D - 0.2| is smallest at D_6 = 0.215, so k* = 6, K = 4 (vs K = 5 at xscale 1)
    assert dynamic_k(EXAMPLE, 10, xscale=2.0).tolist() == [9, 7, 1, 4]
    assert dynamic_k(EXAMPLE, 10, xscale=0.5).tolist() == [6, 8, 9, 7, 1, 4]  # target 0.05: D_4 = 0.045


def test_k_is_non_increasing_in_xscale():
    frames = _random_frames(np.random.default_rng(1), 20)
    for e in frames:
        ks = [len(dynamic_k(e, N144, xscale)) for xscale in (0.25, 0.5, 1.0, 2.0, 4.0)]
        assert ks == sorted(ks, reverse=True)


# ---------------------------------------------------------------- invariants


def test_bounds_and_selected_set_on_random_frames():
    frames = _random_frames(np.random.default_rng(2), 30)
    for e in frames:
        stable_order = np.argsort(e, kind="stable")
        for k_max in K_MAXES:
            sel = dynamic_k(e, k_max)
            assert 2 <= len(sel) <= k_max
            assert sel.tolist() == stable_order[N144 - len(sel):].tolist()  # K largest, ascending, stable
            assert np.all(np.diff(e[sel]) >= 0)


@pytest.mark.parametrize("value", [0.0, 1e-300, 0.3, 7.0])
@pytest.mark.parametrize(("n", "k_max"), [(2, 2), (10, 4), (10, 10), (144, 50), (144, 144)])
def test_all_equal_and_all_zero_errors_give_k_max(value, n, k_max):
    e = np.full(n, value)
    assert dynamic_k(e, k_max).tolist() == list(range(n - k_max, n))  # the highest indices win the ties
    idx, counts = dynamic_k_batched(torch.from_numpy(np.stack([e, e])), k_max)
    assert counts.tolist() == [k_max, k_max] and idx[0].tolist() == list(range(n - k_max, n))
    np.testing.assert_array_equal(cumulative_error_curve(e)[-1], 1.0)


def test_ties_are_broken_by_patch_index():
    # sorted (stable): patches 0, 1, 2, 4 (q = 0.1 each), then 3 (q = 0.6); D = 0.2 0.2 0.2 0.7, target 0.2
    e = [0.1, 0.1, 0.1, 0.6, 0.1]
    assert dynamic_k(e, 5).tolist() == [0, 1, 2, 4, 3]  # first minimiser k* = 0
    assert dynamic_k(e, 3).tolist() == [2, 4, 3]  # window {2, 3}: k* = 2 splits the tie by index
    idx, counts = dynamic_k_batched(torch.tensor([e]), 3)
    assert idx.tolist() == [[2, 4, 3]] and counts.tolist() == [3]
    assert fixed_k(e, 2).tolist() == [4, 3] and fixed_k(e, 3).tolist() == [2, 4, 3]


def test_invalid_arguments_raise():
    with pytest.raises(ValueError, match=r"k_max=1 is outside the allowed range \[2, N=10\]"):
        dynamic_k(EXAMPLE, 1)
    with pytest.raises(ValueError, match=r"k_max=11 is outside the allowed range \[2, N=10\]"):
        dynamic_k_batched(torch.tensor([EXAMPLE]), 11)
    with pytest.raises(ValueError, match="k_max must be an int"):
        dynamic_k(EXAMPLE, 4.0)
    with pytest.raises(ValueError, match="non-negative"):
        dynamic_k([0.1, -0.2, 0.3], 2)
    with pytest.raises(ValueError, match="finite"):
        dynamic_k([0.1, float("nan"), 0.3], 2)
    with pytest.raises(ValueError, match="xscale"):
        dynamic_k(EXAMPLE, 4, xscale=0.0)
    with pytest.raises(ValueError, match=r"\[B, N\]"):
        dynamic_k_batched(torch.tensor(EXAMPLE), 4)
    with pytest.raises(ValueError, match=r"k=0 is outside the allowed range \[1, N=10\]"):
        fixed_k(EXAMPLE, 0)


# ---------------------------------------------------------------- the cap property


def test_two_step_slopes_are_non_decreasing_in_floating_point():
    # The lemma behind the cap property: q is sorted, so D_i = q_i + q_{i+1} is non-decreasing, and
    # |D_i - c| is valley-shaped; rounding is monotone, so this holds for the computed floats too.
    for e in _random_frames(np.random.default_rng(3), 50):
        _, _, d = _two_step_slopes(e)
        assert np.all(np.diff(d) >= 0.0)


@pytest.mark.parametrize(("n", "per_family"), [(12, 60), (144, 12)])
def test_cap_equals_truncating_the_uncapped_choice(n, per_family):
    # Holds with no counter-example: K_capped = min(K_uncapped, K_max), and the capped set is the
    # K_capped largest errors of the uncapped set, for EVERY K_max in [2, N] (ties, zeros, heavy tails).
    for e in _random_frames(np.random.default_rng(4), per_family, n):
        uncapped = dynamic_k(e, n)
        for k_max in range(2, n + 1):
            capped = dynamic_k(e, k_max)
            assert len(capped) == min(len(uncapped), k_max)
            assert capped.tolist() == uncapped[len(uncapped) - len(capped):].tolist()


# ---------------------------------------------------------------- torch batched == numpy reference


def _assert_batched_matches_reference(frames: np.ndarray, k_max: int, xscale: float, device: str) -> None:
    idx, counts = dynamic_k_batched(torch.from_numpy(frames).to(device), k_max, xscale)
    assert idx.shape == (frames.shape[0], k_max) and idx.dtype == torch.int64 and counts.dtype == torch.int64
    idx, counts = idx.cpu().numpy(), counts.cpu().numpy()
    for b, e in enumerate(frames):
        ref = dynamic_k(e, k_max, xscale)
        assert counts[b] == len(ref), (b, k_max)
        assert idx[b, : counts[b]].tolist() == ref.tolist(), (b, k_max)
        assert np.all(idx[b, counts[b]:] == -1)


_DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", _DEVICES)
@pytest.mark.parametrize("k_max", K_MAXES)
def test_batched_matches_reference_on_random_frames(k_max, device):
    frames = _random_frames(np.random.default_rng(5), 250)  # 2,250 frames of N = 144
    _assert_batched_matches_reference(frames, k_max, 1.0, device)
    _assert_batched_matches_reference(frames[::5], k_max, 2.0, device)
    _assert_batched_matches_reference(frames[::5].astype(np.float32), k_max, 1.0, device)


def test_batched_accepts_an_empty_batch():
    idx, counts = dynamic_k_batched(torch.zeros((0, N144)), 50)
    assert idx.shape == (0, 50) and counts.shape == (0,)


# ---------------------------------------------------------------- fixed-K, MAE-All, dispatch


def test_fixed_k_hand_case_and_batched_agreement():
    assert fixed_k(EXAMPLE, 3).tolist() == [7, 1, 4]
    assert fixed_k(EXAMPLE, 10).tolist() == [2, 0, 5, 3, 6, 8, 9, 7, 1, 4]
    frames = _random_frames(np.random.default_rng(6), 20)
    for k in (1, 28, 50, 144):
        idx, counts = fixed_k_batched(torch.from_numpy(frames), k)
        assert idx.shape == (len(frames), k) and counts.tolist() == [k] * len(frames)
        assert all(idx[b].tolist() == fixed_k(e, k).tolist() for b, e in enumerate(frames))


def test_all_patches_and_dispatch():
    assert all_patches(5).tolist() == [0, 1, 2, 3, 4] and all_patches(5).dtype == np.int64
    batch = torch.tensor([EXAMPLE, EXAMPLE[::-1]])
    idx, counts = all_patches_batched(batch)
    assert idx.tolist() == [list(range(10))] * 2 and counts.tolist() == [10, 10]
    assert torch.equal(select_batched(batch, "all", 10, 1.0)[0], idx)
    with pytest.raises(ValueError, match="k_max must equal N=10"):
        select_batched(batch, "all", 4, 1.0)
    idx, counts = select_batched(batch, "dynamic", 4, 1.0)
    assert idx[0].tolist() == [9, 7, 1, 4] and counts[0] == 4
    idx, counts = select_batched(batch, "dynamic", 10, 2.0)
    assert counts[0] == 4
    idx, counts = select_batched(batch, "fixed", 3, 1.0)
    assert idx[0].tolist() == [7, 1, 4] and counts.tolist() == [3, 3]
    with pytest.raises(ValueError, match="method"):
        select_batched(batch, "top", 3, 1.0)


# ---------------------------------------------------------------- ratios, mr*, histogram, Lorenz curve


def test_k_max_from_ratio():
    assert [k_max_from_ratio(144, r) for r in (0.35, 0.3, 0.2, 0.3, 0.5)] == [50, 43, 28, 43, 72]
    assert k_max_from_ratio(144, 1.0) == 144 and k_max_from_ratio(144, 0.05) == 7
    assert k_max_from_ratio(144, 0.35 + 0.05) == 57  # 0.39999999999999997 is read as 2/5
    assert k_max_from_ratio(144, 1 / 3) == 48
    assert k_max_from_ratio(10, 0.7) == 7 and k_max_from_ratio(100, 0.29) == 29  # 100 * 0.29 = 28.999...
    for bad in (0.0, -0.1, 1.01):
        with pytest.raises(ValueError, match="ratio"):
            k_max_from_ratio(144, bad)


def test_cumulative_error_curve():
    np.testing.assert_allclose(cumulative_error_curve([3.0, 1.0, 0.0, 4.0]), [0.0, 0.125, 0.5, 1.0], atol=1e-15)
    np.testing.assert_array_equal(cumulative_error_curve(np.zeros(4)), [0.25, 0.5, 0.75, 1.0])
    curve = cumulative_error_curve(np.array(EXAMPLE))
    np.testing.assert_allclose(curve[[0, 4, 9]], [0.005, 0.06, 1.0], atol=1e-12)
    for e in _random_frames(np.random.default_rng(7), 5):
        c = cumulative_error_curve(torch.from_numpy(e))
        assert c.shape == (N144,) and c[-1] == 1.0 and np.all(np.diff(c) >= 0)
