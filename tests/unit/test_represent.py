"""The per-frame representation of each variant (spirl.agents.represent): what runs on every new frame, per scorer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spirl.agents import represent as T
from spirl.agents.agent import frame_spec
from spirl.params import REPO_ROOT, load_params, resolve_variant
from spirl.saliency import scorers as S
from spirl.saliency.error_maps import ErrorMapSettings, embed_selected, error_map
from spirl.saliency.mae import MAEConfig, MaskedAutoencoder
from spirl.saliency.selection import select_batched

SETTINGS = ErrorMapSettings("normalized", 100, None)


def _setup(variant: str, k_max: int):
    params = resolve_variant(load_params([REPO_ROOT / "params.yaml"]), variant)
    mae = MaskedAutoencoder(MAEConfig(img_size=32), generator=torch.Generator().manual_seed(0)).eval()
    spec = frame_spec("spirl", params.agent, k_max, 64, 32, "float32")
    frames = np.random.default_rng(1).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    return params, mae, spec, frames


def test_mae_all_computes_no_error_map(monkeypatch):
    """MAE-All keeps all N patches: an error map (~31 GFLOP a frame at 96 px) would be computed and ignored."""
    params, mae, spec, frames = _setup("mae_all", 16)

    def forbidden(*args, **kwargs):
        raise AssertionError("mae_all must not compute an error map")

    monkeypatch.setattr(S, "error_map", forbidden)
    reps = T.make_represent(spec, params, mae, 16, T.make_scorer(params, mae, SETTINGS))(frames)  # [3, 16, 64]
    everything = torch.arange(16).expand(3, 16)
    expected = embed_selected(mae, frames, everything, torch.full((3,), 16), 16).numpy()
    np.testing.assert_array_equal(reps, expected)
    assert (np.abs(reps).sum(-1) > 0).all()  # no padding: every patch is kept


@pytest.mark.parametrize(("variant", "k_max"), [("spirl", 5), ("fixed_k_star", 4)])
def test_selecting_variants_use_the_error_map_they_are_given(monkeypatch, variant, k_max):
    params, mae, spec, frames = _setup(variant, k_max)
    seen = []

    def spy(model, batch, settings):
        seen.append(settings)
        return error_map(model, batch, settings)

    monkeypatch.setattr(S, "error_map", spy)
    reps = T.make_represent(spec, params, mae, k_max, T.make_scorer(params, mae, SETTINGS))(frames)
    assert seen == [SETTINGS]
    indices, counts = select_batched(error_map(mae, frames, SETTINGS), params.saliency.selection, k_max, 1.0)
    np.testing.assert_array_equal(reps, embed_selected(mae, frames, indices, counts, k_max).numpy())


def _with_scorer(params, scorer: str):
    from dataclasses import replace

    return replace(params, saliency=replace(params.saliency, scorer=scorer))


def _moving_stream(n: int, size: int = 32, seed: int = 3) -> np.ndarray:
    """n frames of one env: a static random background and a bright 4x4 sprite moving right 2 px a frame."""
    rng = np.random.default_rng(seed)
    background = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
    frames = np.repeat(background[None], n, axis=0)
    for t in range(n):
        frames[t, 12:16, 2 + 2 * t:6 + 2 * t] = 255
    return frames


@pytest.mark.parametrize("scorer", ["mae_surround", "mae_untrained", "frame_diff", "random", "wu_mask"])
def test_every_scorer_selects_from_its_own_scores(scorer):
    """Represent = the scorer's scores -> dynamic-K at K_max -> the MAE encoder's embedding (shared by all)."""
    from spirl.saliency.wu import WuAttention, patch_scores

    params, mae, spec, _ = _setup("spirl", 5)
    params = _with_scorer(params, scorer)
    untrained = MaskedAutoencoder(MAEConfig(img_size=32), generator=torch.Generator().manual_seed(7)).eval()
    wu = WuAttention(generator=torch.Generator().manual_seed(0)).eval()
    frames = _moving_stream(3)
    make = lambda: T.make_scorer(params, mae, SETTINGS, untrained=untrained, wu=wu)  # noqa: E731
    reps = T.make_represent(spec, params, mae, 5, make())(frames, ["a", "b", "c"], [True, True, True])
    expected_scores = {
        "mae_surround": error_map(mae, frames, SETTINGS), "mae_untrained": error_map(untrained, frames, SETTINGS),
        "frame_diff": torch.zeros(3, 16),  # every frame starts its stream: all-equal scores
        "random": torch.cat([S.random_scores(1, 16, torch.Generator().manual_seed(
            S.derive_seed(0, S.RANDOM_SEED_KEY, repr(k), 0))) for k in "abc"]),
        "wu_mask": patch_scores(wu, frames, 32, 8)}[scorer]
    indices, counts = select_batched(expected_scores, "dynamic", 5, 1.0)
    np.testing.assert_array_equal(reps, embed_selected(mae, frames, indices, counts, 5).numpy())


def test_frame_diff_follows_the_sprite_and_survives_a_checkpoint():
    """frame_diff scores the patches the sprite left and entered; a stream's previous frame goes through state()
    and restore() (a resumed run), so the resumed scores equal the uninterrupted ones."""
    params, mae, _, _ = _setup("spirl", 5)
    frames = _moving_stream(4)
    scorer = T.make_scorer(_with_scorer(params, "frame_diff"), mae, SETTINGS)
    first = scorer(frames[:1], ["env"], [True])
    assert torch.all(first == 0)  # an episode start: all equal
    second = scorer(frames[1:2], ["env"], [False])[0].reshape(4, 4)
    assert (second > 0).nonzero().tolist() == [[1, 0]]  # the sprite (rows 12-15, cols 2-7) lies in patch (1, 0)
    assert second[1, 0] == pytest.approx(np.abs(frames[1, 8:16, 0:8].astype(float) - frames[0, 8:16, 0:8]).mean()
                                         / 255, rel=1e-6)
    saved = scorer.state("env")
    fresh = T.make_scorer(_with_scorer(params, "frame_diff"), mae, SETTINGS)
    fresh.restore("env", saved)
    torch.testing.assert_close(fresh(frames[2:3], ["env"], [False]), scorer(frames[2:3], ["env"], [False]),
                               rtol=0, atol=0)


def test_random_scores_depend_only_on_the_stream_and_resume_exactly():
    params, mae, _, _ = _setup("spirl", 5)
    frames = _moving_stream(6)
    one = T.make_scorer(_with_scorer(params, "random"), mae, SETTINGS)
    two = T.make_scorer(_with_scorer(params, "random"), mae, SETTINGS)
    starts = [True, False, False, True, False, False]
    alone = torch.cat([one(frames[t:t + 1], ["run"], [starts[t]]) for t in range(6)])
    together = torch.cat([two(np.stack([frames[t], frames[t]]), ["other", "run"], [starts[t]] * 2)[1:]
                          for t in range(6)])
    torch.testing.assert_close(alone, together, rtol=0, atol=0)  # another stream beside it changes nothing
    assert not torch.equal(alone[0], alone[3])  # a new episode draws on, it does not replay the first
    three = T.make_scorer(_with_scorer(params, "random"), mae, SETTINGS)
    for t in range(2):
        three(frames[t:t + 1], ["run"], [starts[t]])
    four = T.make_scorer(_with_scorer(params, "random"), mae, SETTINGS)
    four.restore("run", three.state("run"))
    resumed = torch.cat([four(frames[t:t + 1], ["run"], [starts[t]]) for t in range(2, 6)])
    torch.testing.assert_close(resumed, alone[2:], rtol=0, atol=0)
