"""Pluggable saliency scorers (SPEC §13): frame_diff by hand, all-equal rows under dynamic-K, random, each scorer's
frame, stream and sequence forms built from its registry declaration."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from spirl.params import SCORERS
from spirl.saliency.error_maps import ErrorMapSettings, error_map, in_space
from spirl.saliency.mae import MAEConfig, MaskedAutoencoder, patchify
from spirl.saliency.mr import normalized_maps
from spirl.saliency.registry import spec
from spirl.saliency.scorers import build_scorer
from spirl.saliency.scorers.base import ScorerModels
from spirl.saliency.scorers.frame_difference import FrameDiffStreamScorer, frame_diff
from spirl.saliency.scorers.uniform_noise import random_scores
from spirl.saliency.selection import dynamic_k_batched
from spirl.saliency.wu.model import WuAttention
from spirl.saliency.wu.scores import patch_scores

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


def _mae(size: int, seed: int = 0) -> MaskedAutoencoder:
    return MaskedAutoencoder(MAEConfig(img_size=size), generator=torch.Generator().manual_seed(seed)).eval()


SETTINGS = ErrorMapSettings("normalized", 10**6, None)


def _scorer(name: str, mae: MaskedAutoencoder, **models):
    """The scorer the registry declares as `name`, scoring with `mae` and the other models given."""
    return build_scorer(spec(name), ScorerModels(mae, SETTINGS, **models))


def test_spec_names_the_key_and_the_allowed_values():
    assert SCORERS == ("mae_surround", "mae_untrained", "frame_diff", "random", "wu_mask")
    for name in SCORERS:
        assert spec(name).name == name
    for bad in ("mae", "Frame_Diff", "", None, 3):
        with pytest.raises(ValueError, match=r"saliency\.scorer must be one of .*'frame_diff'.*'wu_mask'"):
            spec(bad)


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


def test_frame_form_of_each_scorer():
    """Each declaration's frame form computes its own scores, with the model it declares (trained MAE, untrained
    MAE, Wu mask) and the inputs it declares (previous frames, the caller's generator); the others are ignored."""
    rng = np.random.default_rng(2)
    frames = rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    previous = rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    has = torch.tensor([True, False])
    mae, untrained, wu = _mae(32, 0), _mae(32, 7), WuAttention(torch.Generator().manual_seed(4))
    settings = ErrorMapSettings("normalized", 10**6, None)
    models = ScorerModels(mae, settings, untrained=untrained, wu=wu)
    score = {name: build_scorer(spec(name), models).frames(frames, previous, has, torch.Generator().manual_seed(3))
             for name in SCORERS}
    torch.testing.assert_close(score["mae_surround"], error_map(mae, frames, settings), atol=0, rtol=0)
    torch.testing.assert_close(score["mae_untrained"], error_map(untrained, frames, settings), atol=0, rtol=0)
    assert not torch.equal(score["mae_surround"], score["mae_untrained"])  # the two MAEs are not mixed up
    torch.testing.assert_close(score["frame_diff"], frame_diff(frames, previous, 8, has), atol=0, rtol=0)
    assert (score["frame_diff"][0] > 0).all() and (score["frame_diff"][1] == 0).all()  # row 1 starts an episode
    torch.testing.assert_close(score["random"], random_scores(2, 16, torch.Generator().manual_seed(3)), atol=0, rtol=0)
    torch.testing.assert_close(score["wu_mask"], patch_scores(wu, frames, 32, 8), atol=0, rtol=0)
    assert all(s.shape == (2, 16) and s.dtype == torch.float32 for s in score.values())
    # what does not compare frames or draw numbers ignores previous frames and generators
    for name in ("mae_surround", "wu_mask"):
        torch.testing.assert_close(build_scorer(spec(name), models).frames(frames), score[name], atol=0, rtol=0)


def test_a_scorer_without_what_it_declares_is_refused():
    frames = np.zeros((2, 32, 32, 3), dtype=np.uint8)
    mae, settings = _mae(32), ErrorMapSettings("normalized", 10**6, None)
    with pytest.raises(ValueError, match="seeded stream: pass its torch.Generator"):
        _scorer("random", mae).frames(frames)
    with pytest.raises(ValueError, match="'wu_mask' scores with the game's trained Wu mask"):
        _scorer("wu_mask", mae)
    with pytest.raises(ValueError, match="'mae_untrained' scores with the game's untrained MAE"):
        _scorer("mae_untrained", mae)
    with pytest.raises(ValueError, match="ScorerModels.mae must be the game's MaskedAutoencoder"):
        ScorerModels(None, settings)
    with pytest.raises(ValueError, match=r"untrained MAE's \(frame, patch\) size \(48, 8\) differs"):
        ScorerModels(mae, settings, untrained=_mae(48))
    with pytest.raises(ValueError, match="computes 'frame_difference'"):  # a declaration and an implementation
        type(_scorer("random", mae))(spec("frame_diff"), ScorerModels(mae, settings))


def test_stream_form_equals_the_frame_form_frame_by_frame():
    """One env's stream through each scorer's stream form scores what its frame form gives with that env's
    previous frame (none at an episode start) and, for random, that stream's own seeded generator."""
    from spirl.common.seeding import derive_seed
    from spirl.saliency.registry import SEED_KEY

    rng = np.random.default_rng(6)
    frames = rng.integers(0, 256, (4, 24, 24, 3), dtype=np.uint8)
    frames[2, :16] = frames[1, :16]  # the top two patch rows unchanged: incremental maps reuse the top row's E
    starts = [True, False, True, False]
    mae, untrained, wu = _mae(24, 0), _mae(24, 7), WuAttention(torch.Generator().manual_seed(4))
    settings = ErrorMapSettings("normalized", 10**6, None)
    for incremental in (False, True):
        models = ScorerModels(mae, settings, incremental, untrained, wu)
        for name in SCORERS:
            scorer = build_scorer(spec(name), models)
            stream = scorer.stream()
            got = torch.cat([stream(frames[t:t + 1], ["env"], [starts[t]]) for t in range(4)])
            rows, generator = [], None
            for t in range(4):
                seed = derive_seed(0, SEED_KEY, repr("env"), t)  # the random stream reseeds at each start
                generator = torch.Generator().manual_seed(seed) if starts[t] else generator
                rows.append(scorer.frames(frames[t:t + 1], frames[t - 1:t] if t else None,
                                          torch.tensor([not starts[t]]) if t else None, generator))
            tol = 1e-5 if incremental else 0  # incremental maps: the same E to float rounding
            torch.testing.assert_close(got, torch.cat(rows), atol=tol, rtol=tol, msg=name)


def test_sequence_form_matches_the_stream_form_and_does_not_depend_on_the_batch():
    """The mr stage's ordered-archive scores (Scorer.sequence) equal what one env's stream scorer sees frame by
    frame (episode starts included), whatever the batch size; random draws row after row."""
    rng = np.random.default_rng(5)
    frames = rng.integers(0, 256, (9, 16, 16, 3), dtype=np.uint8)
    frames[4] = frames[3]  # a still frame: all-equal scores
    starts = np.array([True, False, False, False, False, True, False, False, False])
    stream = FrameDiffStreamScorer(8)
    expected = torch.cat([stream(frames[i:i + 1], ["env"], [bool(starts[i])]) for i in range(9)]).numpy()
    diff = _scorer("frame_diff", _mae(16))
    for batch in (1, 2, 4, 9):
        got = diff.sequence(frames, starts, batch)
        np.testing.assert_array_equal(got.scores, expected)
        assert got.arrays.keys() == {"scores"} and got.arrays["scores"] is got.scores and got.recomputed_share is None
    assert (expected[[0, 4, 5]] == 0).all() and (expected[[1, 2, 3, 6, 7, 8]] > 0).all()
    noise = _scorer("random", _mae(16))
    draws = [noise.sequence(frames, starts, b, torch.Generator().manual_seed(3)).scores for b in (2, 9)]
    np.testing.assert_array_equal(draws[0], draws[1])
    np.testing.assert_array_equal(draws[0], random_scores(9, 4, torch.Generator().manual_seed(3)).numpy())
    with pytest.raises(ValueError, match=r"one flag per frame \(9\)"):
        diff.sequence(frames, starts[:8], 4)


@pytest.mark.parametrize("space", ["normalized", "raw"])
@pytest.mark.parametrize("incremental", [False, True])
def test_mae_sequence_form_is_the_mr_stages_error_maps(space, incremental):
    """An MAE scorer's sequence form is spirl.saliency.mr.normalized_maps (incremental along the archive when
    saliency.incremental) in saliency.error_space: the numbers the mr stage always had."""
    rng = np.random.default_rng(8)
    frames = rng.integers(0, 256, (5, 24, 24, 3), dtype=np.uint8)
    frames[2, :16] = frames[1, :16]  # the top two patch rows unchanged: incremental maps reuse the top row's E
    starts = np.array([True, False, False, True, False])
    mae, untrained = _mae(24, 0), _mae(24, 7)
    settings = ErrorMapSettings(space, 10**6, None)
    models = ScorerModels(mae, settings, incremental, untrained)
    for name, model in (("mae_surround", mae), ("mae_untrained", untrained)):
        got = build_scorer(spec(name), models).sequence(frames, starts, 2)
        errors, variances, share = normalized_maps(model, frames, 2, dataclasses.replace(settings, space="normalized"),
                                                   starts if incremental else None)
        np.testing.assert_array_equal(got.arrays["errors_normalized"], errors)
        np.testing.assert_array_equal(got.arrays["patch_variance"], variances)
        np.testing.assert_array_equal(got.scores, in_space(errors, variances, space, mae.config.norm_pix_eps))
        assert got.recomputed_share == share and (share < 1) == incremental
