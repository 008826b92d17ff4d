"""The per-frame representation of each variant (spirl.agents.represent): what runs on every new frame, per scorer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spirl.agents import represent as T
from spirl.agents.agent import frame_spec
from spirl.common.seeding import derive_seed
from spirl.params import REPO_ROOT, load_params, resolve_variant
from spirl.saliency import registry
from spirl.saliency.error_maps import ErrorMapSettings, embed_selected, error_map
from spirl.saliency.mae import MAEConfig, MaskedAutoencoder
from spirl.saliency.scorers import build_scorer
from spirl.saliency.scorers import mae_error as S
from spirl.saliency.scorers.base import ScorerModels
from spirl.saliency.scorers.uniform_noise import random_scores
from spirl.saliency.selection import select_batched

SETTINGS = ErrorMapSettings("normalized", 100, None)


def make_scorer(params, mae, settings, *, untrained=None, wu=None):
    """The stream scorer of params.saliency.scorer, built from its registry declaration with these models."""
    models = ScorerModels(mae, settings, params.saliency.incremental, untrained, wu)
    return build_scorer(registry.spec(params.saliency.scorer), models).stream()


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
    reps = T.make_represent(spec, params, mae, 16, make_scorer(params, mae, SETTINGS))(frames)  # [3, 16, 64]
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
    reps = T.make_represent(spec, params, mae, k_max, make_scorer(params, mae, SETTINGS))(frames)
    assert seen == [SETTINGS]
    indices, counts = select_batched(error_map(mae, frames, SETTINGS), params.saliency.selection, k_max, 1.0)
    np.testing.assert_array_equal(reps, embed_selected(mae, frames, indices, counts, k_max).numpy())


def _with_scorer(params, scorer: str):
    from spirl.params import replace

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
    from spirl.saliency.wu.model import WuAttention
    from spirl.saliency.wu.scores import patch_scores

    params, mae, spec, _ = _setup("spirl", 5)
    params = _with_scorer(params, scorer)
    untrained = MaskedAutoencoder(MAEConfig(img_size=32), generator=torch.Generator().manual_seed(7)).eval()
    wu = WuAttention(generator=torch.Generator().manual_seed(0)).eval()
    frames = _moving_stream(3)
    make = lambda: make_scorer(params, mae, SETTINGS, untrained=untrained, wu=wu)  # noqa: E731
    reps = T.make_represent(spec, params, mae, 5, make())(frames, ["a", "b", "c"], [True, True, True])
    expected_scores = {
        "mae_surround": error_map(mae, frames, SETTINGS), "mae_untrained": error_map(untrained, frames, SETTINGS),
        "frame_diff": torch.zeros(3, 16),  # every frame starts its stream: all-equal scores
        "random": torch.cat([random_scores(1, 16, torch.Generator().manual_seed(
            derive_seed(0, registry.SEED_KEY, repr(k), 0))) for k in "abc"]),
        "wu_mask": patch_scores(wu, frames, 32, 8)}[scorer]
    indices, counts = select_batched(expected_scores, "dynamic", 5, 1.0)
    np.testing.assert_array_equal(reps, embed_selected(mae, frames, indices, counts, 5).numpy())


def test_frame_diff_follows_the_sprite_and_survives_a_checkpoint():
    """frame_diff scores the patches the sprite left and entered; a stream's previous frame goes through state()
    and restore() (a resumed run), so the resumed scores equal the uninterrupted ones."""
    params, mae, _, _ = _setup("spirl", 5)
    frames = _moving_stream(4)
    scorer = make_scorer(_with_scorer(params, "frame_diff"), mae, SETTINGS)
    first = scorer(frames[:1], ["env"], [True])
    assert torch.all(first == 0)  # an episode start: all equal
    second = scorer(frames[1:2], ["env"], [False])[0].reshape(4, 4)
    assert (second > 0).nonzero().tolist() == [[1, 0]]  # the sprite (rows 12-15, cols 2-7) lies in patch (1, 0)
    assert second[1, 0] == pytest.approx(np.abs(frames[1, 8:16, 0:8].astype(float) - frames[0, 8:16, 0:8]).mean()
                                         / 255, rel=1e-6)
    saved = scorer.state("env")
    fresh = make_scorer(_with_scorer(params, "frame_diff"), mae, SETTINGS)
    fresh.restore("env", saved)
    torch.testing.assert_close(fresh(frames[2:3], ["env"], [False]), scorer(frames[2:3], ["env"], [False]),
                               rtol=0, atol=0)


def test_random_scores_depend_only_on_the_stream_and_resume_exactly():
    params, mae, _, _ = _setup("spirl", 5)
    frames = _moving_stream(6)
    one = make_scorer(_with_scorer(params, "random"), mae, SETTINGS)
    two = make_scorer(_with_scorer(params, "random"), mae, SETTINGS)
    starts = [True, False, False, True, False, False]
    alone = torch.cat([one(frames[t:t + 1], ["run"], [starts[t]]) for t in range(6)])
    together = torch.cat([two(np.stack([frames[t], frames[t]]), ["other", "run"], [starts[t]] * 2)[1:]
                          for t in range(6)])
    torch.testing.assert_close(alone, together, rtol=0, atol=0)  # another stream beside it changes nothing
    assert not torch.equal(alone[0], alone[3])  # a new episode draws on, it does not replay the first
    three = make_scorer(_with_scorer(params, "random"), mae, SETTINGS)
    for t in range(2):
        three(frames[t:t + 1], ["run"], [starts[t]])
    four = make_scorer(_with_scorer(params, "random"), mae, SETTINGS)
    four.restore("run", three.state("run"))
    resumed = torch.cat([four(frames[t:t + 1], ["run"], [starts[t]]) for t in range(2, 6)])
    torch.testing.assert_close(resumed, alone[2:], rtol=0, atol=0)


def _trained_like(params, size: int = 32) -> MaskedAutoencoder:
    """An MAE of the params' architecture at `size` px (random weights), as a run would load it."""
    from spirl.saliency.pretrain import mae_config

    return MaskedAutoencoder(mae_config(params.mae, size), generator=torch.Generator().manual_seed(0)).eval()


@pytest.mark.parametrize(("variant", "k_max", "scorer"), [
    ("spirl", 5, S.MAEStreamScorer),  # Frostbite's adopted mr 0.35: floor(16 * 0.35) = 5
    ("spirl_mr50_cls", 8, S.MAEStreamScorer),  # the variant's own ratio 0.5: 8 of 16
    ("fixed_k_star", 6, S.MAEStreamScorer),  # Tab. 3's mr* 0.40: floor(16 * 0.40) = 6
    ("spirl_star_m5", 5, S.MAEStreamScorer),  # 0.40 - 0.05 = 0.35: 5
    ("mae_all", 16, None),  # every patch, nothing scored
])
def test_representation_for_run_gives_the_budget_and_the_scorer(variant, k_max, scorer):
    params = resolve_variant(load_params([REPO_ROOT / "params.yaml"]), variant)
    mae = _trained_like(params)
    run = T.representation_for_run(params, "spirl", "Frostbite", mae, {"result": {"mr_star": 0.6}})
    assert run.k_max == run.budget.k_max == k_max and run.represent.k_max == k_max
    assert run.spec.kind == "embeddings" and run.spec.shape == (k_max, mae.config.encoder_dim)
    assert (run.scorer is None) if scorer is None else isinstance(run.scorer, scorer)
    assert run.represent.scorer is run.scorer
    assert run.budget.mr == {"spirl": 0.35, "spirl_mr50_cls": 0.5, "fixed_k_star": 0.4, "spirl_star_m5": 0.35,
                             "mae_all": 0.35}[variant]


def test_representation_for_run_is_the_represent_of_its_parts(tmp_path):
    """The run's Represent is make_represent with the declared scorer: the same embeddings; mr "auto" reads the
    record; a pixel variant has no budget and no scorer; the Wu mask is read from wu_path, never guessed."""
    from spirl.params import ConfigError, replace
    from spirl.saliency.error_maps import error_map_settings
    from spirl.saliency.scorers.wu_attention import WuStreamScorer
    from spirl.saliency.wu.model import WuAttention
    from spirl.saliency.wu.training import save_model

    params = resolve_variant(load_params([REPO_ROOT / "params.yaml"]), "spirl_framediff")
    params = replace(params, saliency=replace(params.saliency, mr="auto"))
    mae, frames = _trained_like(params), _moving_stream(3)
    run = T.representation_for_run(params, "spirl", "Seaquest", mae, {"result": {"mr_star": 0.45}})
    assert run.budget == (0.45, 7)  # floor(16 * 0.45)
    expected = T.make_represent(run.spec, params, mae, 7, make_scorer(params, mae, error_map_settings(params, mae)))
    for t in range(3):  # one env's stream: frame_diff compares each frame with the one before it
        got = run.represent(frames[t:t + 1], ["env"], [t == 0])
        np.testing.assert_array_equal(got, expected(frames[t:t + 1], ["env"], [t == 0]))
        assert (np.abs(got).sum(-1) > 0).sum() == 7  # K_max rows filled (here dynamic K keeps K_max every frame)
    pixels = T.representation_for_run(params, "de_rainbow", "Seaquest", None, None)
    assert pixels.budget is None and pixels.scorer is None and pixels.k_max == 0 and pixels.spec.kind == "gray84"
    wu_params = resolve_variant(load_params([REPO_ROOT / "params.yaml"]), "spirl_wu")
    with pytest.raises(ConfigError, match="--in-wu"):
        T.representation_for_run(wu_params, "spirl", "Seaquest", mae, None)
    save_model(WuAttention(torch.Generator().manual_seed(2)), tmp_path / "wu.npz")
    with_wu = T.representation_for_run(wu_params, "spirl", "Seaquest", mae, None, tmp_path / "wu.npz")
    assert isinstance(with_wu.scorer, WuStreamScorer) and with_wu.budget == (0.2, 3)  # Seaquest's adopted 0.20
    with pytest.raises(ConfigError, match="--in-model"):
        T.representation_for_run(params, "spirl", "Seaquest", None, None)


def test_saliency_threads_give_the_one_thread_selection_and_leave_the_count():
    """runtime.saliency_threads: the representation on 2 threads selects what 1 thread selects (the embeddings equal
    to float rounding), and the process's thread count (the learner's) is back afterwards."""
    from spirl.params import replace

    params, mae, spec, _ = _setup("spirl", 5)
    frames = _moving_stream(4)
    before = torch.get_num_threads()
    reps = {}
    for threads in (1, 2):
        p = replace(params, runtime=replace(params.runtime, saliency_threads=threads))
        represent = T.make_represent(spec, p, mae, 5, make_scorer(p, mae, SETTINGS))
        reps[threads] = np.concatenate([represent(frames[i:i + 1], ["s"], [i == 0]) for i in range(4)])
        assert torch.get_num_threads() == before
    np.testing.assert_array_equal(reps[1] != 0, reps[2] != 0)  # the same patches kept in the same rows
    np.testing.assert_allclose(reps[1], reps[2], rtol=1e-5, atol=1e-6)
