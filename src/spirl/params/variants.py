"""Rules across sections (games, variants, regimes and tables refer to each other), a variant's parameters
(SPEC §9: a base method + overrides) and the maximal ratio mr a run uses (SPEC §6)."""

from __future__ import annotations

from typing import Any

from spirl.params.errors import ConfigError, validate
from spirl.params.model import OVERRIDABLE, Params, SaliencyParams
from spirl.params.values import to_plain


def check_consistency(params: Params) -> None:
    """Games, variants, regimes and tables must refer to each other consistently."""
    exp = params.experiment
    for section, mapping in [
        ("collect.frames_per_game", params.collect.frames_per_game),
        ("saliency.paper_mr", params.saliency.paper_mr),
        ("saliency.paper_mr_star", params.saliency.paper_mr_star),
    ]:
        for game in exp.games:
            if game not in mapping:
                raise ConfigError(f"missing key {section}.{game}: every game in experiment.games needs one")
    for name, table in exp.tables.items():
        if table.games != "all":
            for game in table.games:
                if game not in exp.games:
                    raise ConfigError(
                        f"experiment.tables.{name}.games has {game!r}; allowed: {', '.join(exp.games)}"
                    )
        for i, run in enumerate(table.runs):
            where = f"experiment.tables.{name}.runs[{i}]"
            table_games = exp.games if table.games == "all" else table.games
            for game in () if run.games == "all" else run.games:
                if game not in table_games:
                    raise ConfigError(f"{where}.games has {game!r}; allowed (the table's games): "
                                      f"{', '.join(table_games)}")
            if run.variant not in exp.variants:
                raise ConfigError(f"{where}.variant = {run.variant!r}; allowed: {', '.join(exp.variants)}")
            if run.regime not in params.train.regimes:
                raise ConfigError(f"{where}.regime = {run.regime!r}; allowed: {', '.join(params.train.regimes)}")
    for name in exp.variants:
        resolved = resolve_variant(params, name)
        aggregator, base = resolved.agent.aggregator, exp.variants[name].base
        if aggregator != "cls_per_frame" and base != "spirl":
            raise ConfigError(f"experiment.variants.{name}: agent.aggregator {aggregator!r} aggregates MAE patch "
                              f"tokens; base {base!r} has none (allowed: cls_per_frame)")
        if aggregator == "divided_st" and resolved.saliency.selection != "all":
            raise ConfigError(f"experiment.variants.{name}: agent.aggregator 'divided_st' attends over every patch "
                              f"position of every frame; it needs saliency.selection 'all', got "
                              f"{resolved.saliency.selection!r}")
    if exp.build_tables != "all":
        for name in exp.build_tables:
            if name not in exp.tables:
                raise ConfigError(f"experiment.build_tables has {name!r}; allowed: {', '.join(exp.tables)}")
    probed = params.agent_saliency.variants
    for name in () if probed == "all" else probed:
        if name not in exp.variants:
            raise ConfigError(f"agent_saliency.variants has {name!r}; allowed: {', '.join(exp.variants)}")
    if exp.saliency_games != "all":
        for game in exp.saliency_games:
            if game not in exp.games:
                raise ConfigError(f"experiment.saliency_games has {game!r}; allowed: {', '.join(exp.games)}")
    for name in exp.built_tables:  # a SPIRL-base run needs its game's MAE and mr
        table = exp.tables[name]
        for run in table.runs:
            games = [g for g in (exp.games if table.games == "all" else table.games) if run.runs_on(g)]
            if exp.variants[run.variant].base == "spirl" and not set(games) <= set(exp.mae_games):
                raise ConfigError(
                    f"experiment.tables.{name} trains {run.variant!r} (base spirl) on {list(games)}, but "
                    f"experiment.saliency_games = {list(exp.mae_games)} builds no MAE for "
                    f"{sorted(set(games) - set(exp.mae_games))}; add them or use 'all'")
    if "criteria" in exp.built_tables:  # SPEC §14: each compared game needs its list of dynamic object categories
        table = exp.tables["criteria"]
        for game in exp.games if table.games == "all" else table.games:
            if game not in params.criteria.dynamic_categories:
                raise ConfigError(f"missing key criteria.dynamic_categories.{game}: experiment.tables.criteria "
                                  f"compares scorers on {game}; list its moving OCAtari categories")


def resolve_variant(params: Params, variant: str) -> Params:
    """Params with the variant's base method and overrides applied (SPEC §9), strictly re-checked."""
    if variant not in params.experiment.variants:
        raise ConfigError(f"unknown variant {variant!r}; allowed: {', '.join(params.experiment.variants)}")
    spec = params.experiment.variants[variant]
    changes: dict[str, Any] = {}
    for section, values in spec.overrides.items():
        cls = OVERRIDABLE.get(section)
        where = f"experiment.variants.{variant}.overrides.{section}"
        if cls is None:
            raise ConfigError(f"{where}: section cannot be overridden; allowed: {', '.join(OVERRIDABLE)}")
        current = changes.get(section, getattr(params, section))
        changes[section] = validate(cls, {**to_plain(current), **to_plain(values)}, where)
    return params.model_copy(update=changes) if changes else params


def resolve_mr(saliency: SaliencyParams, game: str, estimated_mr_star: float | None = None) -> float:
    """The maximal ratio mr a run uses (SPEC §6): saliency.mr (+ saliency.mr_offset) for `game`.

    saliency.mr: "paper" (the adopted published ratio), "paper_star" (Tab. 3's mr*), "auto" (the
    mr* estimated from the pre-training frames, passed in) or a ratio. Rounded to 1e-6.
    """
    if saliency.mr == "paper":
        base = saliency.paper_mr[game]
    elif saliency.mr == "paper_star":
        base = saliency.paper_mr_star[game]
    elif saliency.mr == "auto":
        if estimated_mr_star is None:
            raise ConfigError("saliency.mr = 'auto' needs the estimated mr* of " + game + " (estimate_mr output)")
        base = estimated_mr_star
    else:
        base = float(saliency.mr)
    ratio = round(base + saliency.mr_offset, 6)
    if not 0 < ratio <= 1:
        raise ConfigError(f"saliency.mr {saliency.mr!r} + saliency.mr_offset {saliency.mr_offset} gives {ratio} for "
                          f"{game}; allowed: a ratio in (0, 1]")
    return ratio
