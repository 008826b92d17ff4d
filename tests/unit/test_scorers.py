"""Pluggable saliency scorers (SPEC §13): frame_diff by hand, all-equal rows under dynamic-K, random, dispatch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spirl.saliency.error_maps import ErrorMapSettings, error_map
from spirl.saliency.mae import MAEConfig, MaskedAutoencoder, patchify
from spirl.saliency.scorers import SCORERS, check_scorer, frame_diff, random_scores, score_frames
from spirl.saliency.selection import dynamic_k_batched
from spirl.saliency.wu import WuAttention, patch_scores

BACKGROUND, SPRITE = 20, 230


def _scene(box: tuple[int, int], size: int = 96) -> np.ndarray:
    """One uint8 frame [size, size, 3]: flat background with an 8×8 sprite whose top-left corner is `box`."""
    frame = np.full((size, size, 3), BACKGROUND, dtype=np.uint8)
    y, x = box
    frame[y:y + 8, x:x + 8] = SPRITE
    return frame


def _box_patches(box: tuple[int, int], patch: int = 8, grid: int = 12) -> set[int]:
    """Row-major indices of the patches an 8×8 box at `box` overlaps."""
    y, x = box
    rows, cols = range(y // patch, (y + 7) // patch + 1), range(x // patch, (x + 7) // patch + 1)
    return {r * grid + c for r in rows for c in cols}


def test_check_scorer_names_the_key_and_the_allowed_values():
    assert SCORERS == ("mae_surround", "mae_untrained", "frame_diff", "random", "wu_mask")
    for name in SCORERS:
        assert check_scorer(name) == name
    for bad in ("mae", "Frame_Diff", "", None, 3):
        with pytest.raises(ValueError, match=r"saliency\.scorer must be one of .*'frame_diff'.*'wu_mask'"):
            check_scorer(bad)


def test_frame_diff_hand_values_and_patch_order():
    # 16x32 frames, 8x8 patches: grid 2 rows x 4 columns, patch index = row*4 + col
    prev = np.zeros((1, 16, 32, 3), dtype=np.uint8)
    cur = prev.copy()
    cur[0, 0:4, 8:16, 0] = 255  # patch (0, 1): 32 of its 192 values change by 1.0 -> 1/6
    cur[0, 8:16, 24:32, :] = 51  # patch (1, 3): every value changes by 0.2 -> 0.2
    prev[0, 8, 0, 2] = 255  # patch (1, 0): one value goes 1.0 -> 0, |.| = 1 -> 1/192
    scores = frame_diff(cur, prev, 8)
    assert scores.shape == (1, 8) and scores.dtype == torch.float32
    expected = torch.tensor([[0, 1 / 6, 0, 0, 1 / 192, 0, 0, 0.2]], dtype=torch.float32)
    torch.testing.assert_close(scores, expected, atol=1e-7, rtol=1e-6)
    # symmetric in time, and numpy / torch inputs agree
    torch.testing.assert_close(frame_diff(torch.from_numpy(prev), torch.from_numpy(cur), 8), expected)


def test_frame_diff_uses_the_mae_patch_order():
    # the mean |diff| of patch p is exactly the mean of patchify(|diff|)[p], for random frames
    rng = np.random.default_rng(0)
    cur, prev = rng.integers(0, 256, (2, 3, 96, 96, 3), dtype=np.uint8)
    scores = frame_diff(cur, prev, 8)
    diff = torch.from_numpy(np.abs(cur.astype(np.float64) - prev)).permute(0, 3, 1, 2) / 255.0
    torch.testing.assert_close(scores.double(), patchify(diff, 8).mean(-1), atol=1e-6, rtol=1e-6)
    # patch (r, c) painted with value r*12 + c against a black previous frame scores (r*12 + c) / 255
    painted = np.zeros((1, 96, 96, 3), dtype=np.uint8)
    for r in range(12):
        for c in range(12):
            painted[0, r * 8:(r + 1) * 8, c * 8:(c + 1) * 8] = r * 12 + c
    torch.testing.assert_close(frame_diff(painted, np.zeros_like(painted), 8)[0], torch.arange(144.0) / 255.0)


def test_frame_diff_follows_a_moving_sprite():
    old, new = (20, 36), (23, 41)  # moves 3 down, 5 right
    scores = frame_diff(_scene(new)[None], _scene(old)[None], 8)[0]  # [144]
    moved = _box_patches(old) | _box_patches(new)
    assert set(torch.nonzero(scores).flatten().tolist()) == moved  # exactly the patches it left and entered
    assert set(torch.topk(scores, len(moved)).indices.tolist()) == moved
    # by hand: a pixel inside exactly one of the two boxes changes by (230 - 20) / 255 in all 3 channels
    inside_old = np.zeros((96, 96), bool)
    inside_old[20:28, 36:44] = True
    inside_new = np.zeros((96, 96), bool)
    inside_new[23:31, 41:49] = True
    changed = (inside_old ^ inside_new).reshape(12, 8, 12, 8).sum(axis=(1, 3)).reshape(144)  # pixels per patch
    expected = torch.from_numpy(changed / 64.0 * (SPRITE - BACKGROUND) / 255.0).float()
    torch.testing.assert_close(scores, expected, atol=1e-7, rtol=1e-6)


@pytest.mark.parametrize("k_max", [2, 28, 43, 144])
def test_all_equal_rows_keep_k_max(k_max):
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, (4, 96, 96, 3), dtype=np.uint8)
    previous = rng.integers(0, 256, (4, 96, 96, 3), dtype=np.uint8)
    previous[2] = frames[2]  # no motion in row 2
    has_previous = np.array([True, False, True, False])  # rows 1 and 3: episode starts (stale buffer ignored)
    scores = frame_diff(frames, previous, 8, has_previous)
    assert torch.equal(scores[1:4], torch.zeros(3, 144))
    assert (scores[0] > 0).all()
    torch.testing.assert_close(scores[0], frame_diff(frames[:1], previous[:1], 8)[0], atol=0, rtol=0)
    indices, counts = dynamic_k_batched(scores, k_max)
    assert counts[1:].tolist() == [k_max] * 3  # all equal -> K = K_max (SPEC §5)
    for row in (1, 2, 3):  # the stable sort's last K_max: the highest patch indices
        assert indices[row].tolist() == list(range(144 - k_max, 144))
    # no previous frame at all: every row all-equal
    assert torch.equal(frame_diff(frames, None, 8), torch.zeros(4, 144))
    assert dynamic_k_batched(frame_diff(frames, None, 8), k_max)[1].tolist() == [k_max] * 4


def test_frame_diff_rejects_bad_inputs():
    frames = np.zeros((2, 16, 16, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="previous is None"):
        frame_diff(frames, None, 8, np.array([True, False]))
    with pytest.raises(ValueError, match="has_previous must be bool"):
        frame_diff(frames, frames, 8, np.array([1, 0]))
    with pytest.raises(ValueError, match="has_previous must be bool"):
        frame_diff(frames, frames, 8, np.array([True]))
    with pytest.raises(ValueError, match="shape of frames"):
        frame_diff(frames, frames[:1], 8)
    with pytest.raises(ValueError, match="patch_size"):
        frame_diff(frames, frames, 5)
    with pytest.raises(ValueError, match="uint8"):
        frame_diff(frames.astype(np.float32), frames, 8)


def test_random_scores_come_from_their_generator_only():
    state = torch.random.get_rng_state()
    a = random_scores(3, 144, torch.Generator().manual_seed(7))
    b = random_scores(3, 144, torch.Generator().manual_seed(7))
    c = random_scores(3, 144, torch.Generator().manual_seed(8))
    assert torch.equal(torch.random.get_rng_state(), state)  # the global RNG is untouched
    assert a.shape == (3, 144) and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert ((a >= 0) & (a < 1)).all()
    gen = torch.Generator().manual_seed(7)
    first, second = random_scores(3, 144, gen), random_scores(3, 144, gen)
    assert torch.equal(first, a) and not torch.equal(second, a)  # the stream advances
    # i.i.d. uniform: mean ~ 1/2, variance ~ 1/12 over many draws
    many = random_scores(200, 144, torch.Generator().manual_seed(9))
    assert abs(many.mean().item() - 0.5) < 0.01 and abs(many.var().item() - 1 / 12) < 0.005
    with pytest.raises(TypeError, match="torch.Generator"):
        random_scores(3, 144, None)


def test_score_frames_dispatches_to_each_scorer():
    rng = np.random.default_rng(2)
    frames = rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    previous = rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    mae = MaskedAutoencoder(MAEConfig(img_size=32), generator=torch.Generator().manual_seed(0))
    settings = ErrorMapSettings("normalized", 10**6, None)
    for name in ("mae_surround", "mae_untrained"):
        got = score_frames(name, frames, 8, mae=mae, error_settings=settings)
        torch.testing.assert_close(got, error_map(mae, frames, settings), atol=0, rtol=0)
    got = score_frames("frame_diff", frames, 8, previous=previous, has_previous=np.array([True, False]))
    torch.testing.assert_close(got, frame_diff(frames, previous, 8, np.array([True, False])), atol=0, rtol=0)
    got = score_frames("random", frames, 8, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(got, random_scores(2, 16, torch.Generator().manual_seed(3)), atol=0, rtol=0)
    wu = WuAttention(torch.Generator().manual_seed(4))
    got = score_frames("wu_mask", frames, 8, wu_model=wu)
    assert got.shape == (2, 16)
    torch.testing.assert_close(got, patch_scores(wu, frames, 32, 8), atol=0, rtol=0)
    with pytest.raises(ValueError, match="needs the MAE"):
        score_frames("mae_surround", frames, 8)
    with pytest.raises(ValueError, match="needs the run's torch.Generator"):
        score_frames("random", frames, 8)
    with pytest.raises(ValueError, match="needs the trained Wu"):
        score_frames("wu_mask", frames, 8)
    with pytest.raises(ValueError, match=r"saliency\.scorer"):
        score_frames("saliency", frames, 8)


def test_sequence_scores_match_the_stream_scorer_and_do_not_depend_on_the_batch():
    """The mr stage's ordered-archive scores (scorers.sequence_scores) equal what one env's stream scorer sees
    frame by frame (episode starts included), whatever the batch size; random draws row after row."""
    from spirl.saliency.scorers import FrameDiffStreamScorer, random_scores, sequence_scores

    rng = np.random.default_rng(5)
    frames = rng.integers(0, 256, (9, 16, 16, 3), dtype=np.uint8)
    frames[4] = frames[3]  # a still frame: all-equal scores
    starts = np.array([True, False, False, False, False, True, False, False, False])
    stream = FrameDiffStreamScorer(8)
    expected = torch.cat([stream(frames[i:i + 1], ["env"], [bool(starts[i])]) for i in range(9)]).numpy()
    for batch in (1, 2, 4, 9):
        got = sequence_scores("frame_diff", frames, starts, 8, batch)
        np.testing.assert_array_equal(got, expected)
    assert (expected[[0, 4, 5]] == 0).all() and (expected[[1, 2, 3, 6, 7, 8]] > 0).all()
    draws = [sequence_scores("random", frames, starts, 8, b, generator=torch.Generator().manual_seed(3))
             for b in (2, 9)]
    np.testing.assert_array_equal(draws[0], draws[1])
    np.testing.assert_array_equal(draws[0], random_scores(9, 4, torch.Generator().manual_seed(3)).numpy())
    with pytest.raises(ValueError, match="frame_diff, random or wu_mask"):
        sequence_scores("mae_surround", frames, starts, 8, 4)
