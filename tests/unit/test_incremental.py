"""Incremental error maps (saliency.incremental): only changed 3x3 blocks recomputed, equal to full recomputation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spirl.saliency.error_maps import ErrorMapSettings, error_map
from spirl.saliency.incremental import IncrementalErrorMaps, changed_blocks
from spirl.saliency.mae import MAEConfig, MaskedAutoencoder
from spirl.saliency.selection import dynamic_k_batched

SETTINGS = ErrorMapSettings("normalized", 50, None)  # small passes: the batching differs from a full map's


def _model(seed: int = 0) -> MaskedAutoencoder:
    gen = torch.Generator().manual_seed(seed)
    model = MaskedAutoencoder(MAEConfig(img_size=48), generator=gen)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
    return model.eval()


def _episode(rng: np.random.Generator, length: int) -> np.ndarray:
    """A static textured background, a 6x6 sprite moving 3 px a step, and a score digit that changes sometimes."""
    background = rng.integers(0, 80, (48, 48, 3), dtype=np.uint8)
    frames = np.repeat(background[None], length, axis=0)
    for t in range(length):
        r, c = 20 + (t % 3), (3 * t) % 40
        frames[t, r:r + 6, c:c + 6] = (230, 40, 40)
        frames[t, 0:5, 40:46] = 255 if (t // 4) % 2 else 120  # score area, changes every 4 steps
    return frames


def test_changed_blocks_hand_worked():
    previous = np.zeros((2, 24, 24, 3), np.uint8)  # 3x3 grid of 8-px patches
    frames = previous.copy()
    frames[0, 1, 2, 0] = 1  # one byte of patch (0, 0): targets (0,0), (0,1), (1,0), (1,1)
    frames[1, 23, 12, 2] = 7  # patch (2, 1): every target of rows 1-2
    got = changed_blocks(previous, frames, 8)
    assert np.flatnonzero(got[0]).tolist() == [0, 1, 3, 4]
    assert np.flatnonzero(got[1]).tolist() == [3, 4, 5, 6, 7, 8]
    assert not changed_blocks(previous, previous, 8).any()


def test_incremental_maps_equal_full_recomputation_across_episodes_and_a_resume():
    model = _model()
    rng = np.random.default_rng(0)
    # two envs (streams), each playing an episode of 6 frames, then a new episode (start flag) of 4 frames
    episodes = [[_episode(rng, 6), _episode(rng, 4)] for _ in range(2)]
    inc, checked, resumed_at = IncrementalErrorMaps(model, SETTINGS), 0, 4
    for e in range(2):
        for t in range(len(episodes[0][e])):
            if (e, t) == (0, resumed_at):  # a checkpoint and a resume into a fresh object
                saved = {s: inc.state(s) for s in ("env0", "env1")}
                inc = IncrementalErrorMaps(model, SETTINGS)
                for s, state in saved.items():
                    inc.restore(s, state)
            frames = np.stack([episodes[i][e][t] for i in range(2)])
            got = inc(frames, ["env0", "env1"], [t == 0, t == 0])
            full = error_map(model, frames, ErrorMapSettings("normalized", 10**6, None))
            torch.testing.assert_close(got, full, atol=1e-6, rtol=1e-6)
            for k_max in (36, 12):
                assert torch.equal(dynamic_k_batched(got, k_max, 1.0)[0], dynamic_k_batched(full, k_max, 1.0)[0])
            checked += 1
    assert checked == 10
    assert 0.1 < inc.recompute_share < 0.9  # most of the frame was reused, the sprite's blocks recomputed


def test_a_start_flag_or_an_unknown_stream_recomputes_everything(monkeypatch):
    model = _model(1)
    frames = _episode(np.random.default_rng(1), 2)
    inc = IncrementalErrorMaps(model, SETTINGS)
    inc(frames[:1], ["a"], [True])
    counts = []
    original = error_map

    def spy(model, frames, settings, recompute=None):
        counts.append(int(recompute.sum()))
        return original(model, frames, settings, recompute)

    monkeypatch.setattr("spirl.saliency.incremental.error_map", spy)
    inc(frames[:1], ["a"], [False])  # the same frame again: nothing changed
    inc(frames[1:], ["a"], [True])  # an episode start: everything
    inc(frames[1:], ["b"], [False])  # a stream never seen: everything
    assert counts == [0, 36, 36]
    with pytest.raises(ValueError, match="distinct streams"):
        inc(frames, ["a", "a"], [False, False])


def test_an_ordered_stream_in_passes_equals_full_maps():
    from spirl.saliency.incremental import sequence_error_maps

    model = _model(2)
    rng = np.random.default_rng(2)
    frames = np.concatenate([_episode(rng, 5), _episode(rng, 4)])  # two episodes back to back
    starts = np.zeros(9, bool)
    starts[[0, 5]] = True
    full = error_map(model, frames, ErrorMapSettings("normalized", 10**6, None)).numpy()
    for batch in (1, 4, 9):  # passes end inside and across episodes
        errors, share = sequence_error_maps(model, frames, starts, SETTINGS, batch)
        np.testing.assert_allclose(errors, full, atol=1e-6, rtol=1e-6)
        assert 0.3 < share < 1.0
    # without the start flags, the second episode's first frame is compared with the first episode's last frame:
    # still exact (E depends only on the pixels), only the share changes
    errors, _ = sequence_error_maps(model, frames, np.zeros(9, bool), SETTINGS, 4)
    np.testing.assert_allclose(errors, full, atol=1e-6, rtol=1e-6)
