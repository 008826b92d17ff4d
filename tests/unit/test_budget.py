"""A run's patch budget K_max (spirl.saliency.budget.run_budget, SPEC §5-§6), by hand."""

from __future__ import annotations

import pytest

from spirl.params import REPO_ROOT, ConfigError, load_params, replace, resolve_variant
from spirl.saliency.budget import Budget, estimated_mr_star, run_budget

RECORD = {"stage": "estimate_mr", "result": {"mr_star": 0.55}}


@pytest.fixture(scope="module")
def params():
    return load_params([REPO_ROOT / "params.yaml"])


def test_the_papers_adopted_ratios_give_the_released_k_max(params):
    """144 patches (96 px, 8-px patches): the released K_max 50 / 43 / 28 / 43 = floor(144 · 0.35 / 0.30 / 0.20 /
    0.30)."""
    got = {game: run_budget(params.saliency, game, 144, RECORD) for game in ("Frostbite", "MsPacman", "Seaquest",
                                                                           "BattleZone")}
    assert got == {"Frostbite": (0.35, 50), "MsPacman": (0.30, 43), "Seaquest": (0.20, 28), "BattleZone": (0.30, 43)}
    assert isinstance(got["Frostbite"], Budget) and got["Frostbite"].k_max == 50
    # the smoke profile's 40-px frames: 25 patches, floor(25 · 0.35) = 8 and floor(25 · 0.20) = 5
    assert run_budget(params.saliency, "Frostbite", 25, None) == (0.35, 8)
    assert run_budget(params.saliency, "Seaquest", 25, None) == (0.20, 5)


def test_a_variants_ratio_overrides_the_papers(params):
    assert run_budget(resolve_variant(params, "spirl_mr50_cls").saliency, "Seaquest", 144, None) == (0.5, 72)
    # Tab. 3: mr* 0.40 of Frostbite, -0.05 / +0.05: floor(144 · 0.35) = 50, floor(144 · 0.45) = 64.8 -> 64
    assert run_budget(resolve_variant(params, "spirl_star_m5").saliency, "Frostbite", 144, None) == (0.35, 50)
    assert run_budget(resolve_variant(params, "fixed_k_star_p5").saliency, "Frostbite", 144, None) == (0.45, 64)
    # "auto": the estimated mr* of the game's record, floor(144 · 0.55) = 79.2 -> 79
    auto = replace(params.saliency, mr="auto")
    assert run_budget(auto, "Frostbite", 144, RECORD) == (0.55, 79)
    with pytest.raises(ConfigError, match="'auto' needs the estimated mr"):
        run_budget(auto, "Frostbite", 144, None)


def test_all_keeps_every_patch_unless_the_budget_is_for_another_selection(params):
    mae_all = resolve_variant(params, "mae_all").saliency
    assert mae_all.selection == "all"
    assert run_budget(mae_all, "Frostbite", 144, None) == (0.35, 144)
    assert run_budget(mae_all, "Frostbite", 144, None, selection="dynamic") == (0.35, 50)  # the dynamic-K cap
    assert run_budget(params.saliency, "Frostbite", 144, None, selection="all") == (0.35, 144)


def test_bad_input_is_named(params):
    with pytest.raises(ConfigError, match=r"saliency\.selection must be one of \('dynamic', 'fixed', 'all'\), "
                                          r"got 'top'"):
        run_budget(params.saliency, "Frostbite", 144, None, selection="top")
    with pytest.raises(ValueError, match="num_patches must be a positive integer, got 0"):
        run_budget(params.saliency, "Frostbite", 0, None)
    for record in ({}, {"result": {}}, {"result": {"mr_star": 1.5}}, {"result": {"mr_star": "0.4"}}, []):
        with pytest.raises(ConfigError, match=r"result\.mr_star must be a ratio in \(0, 1\]"):
            estimated_mr_star(record)
    assert estimated_mr_star(RECORD) == 0.55 and estimated_mr_star(None) is None
