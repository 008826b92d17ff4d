"""Which runs and games a profile's tables need (DESIGN §4): the training runs, the games whose frames, MAEs, Wu
masks, mr estimates and object frames are built, and what each run reads; spirl.workflow.plan turns them into jobs."""

from __future__ import annotations

from collections.abc import Iterable

from spirl.params import Params, resolve_variant
from spirl.saliency import registry
from spirl.workflow.stages import ESTIMATE_MR, ESTIMATE_MR_SCORER, FIG6_RUN


def needed_games(params: Params) -> list[str]:
    """Games that some built table needs, in experiment.games order (their frames are collected)."""
    wanted: set[str] = set()
    for name in params.experiment.built_tables:
        table = params.experiment.tables[name]
        wanted.update(params.experiment.games if table.games == "all" else table.games)
    return [g for g in params.experiment.games if g in wanted]


def saliency_games(params: Params) -> list[str]:
    """Needed games whose MAE, mr estimate and Figs. 2, 3 are built (experiment.saliency_games); Fig. 8 spans them."""
    return [g for g in needed_games(params) if g in params.experiment.mae_games]


def train_input_names(params: Params, variant: str) -> tuple[str, ...]:
    """What a run reads: the game's MAE and mr estimate (spirl base; its scorer's, see train_job), its Wu mask
    (a scorer that scores with it), its frames (replay pre-fill)."""
    resolved = resolve_variant(params, variant)
    names = ("model", "mr") if params.experiment.variants[variant].base == "spirl" else ()
    names += ("wu",) if names and reads_wu([resolved.saliency.scorer]) else ()
    return names + (("frames",) if resolved.replay.prefill == "pretraining" else ())


def variant_scorer(params: Params, variant: str) -> str | None:
    """The saliency scorer a variant's runs select patches with (None: a de_rainbow base, no selection)."""
    if params.experiment.variants[variant].base != "spirl":
        return None
    return resolve_variant(params, variant).saliency.scorer


def reads_wu(scorers: Iterable[str]) -> bool:
    """Whether a job that scores with any of `scorers` reads the game's trained Wu mask."""
    return any(registry.spec(s).needs_wu for s in scorers)


OTHER_SCORERS = tuple(name for name, spec in registry.SPECS.items() if not spec.paper)
"""The scorers besides the paper's criterion (SPEC §4): each one's mr estimate is an ESTIMATE_MR_SCORER job."""


def scorer_mr_template(scorer: str) -> str:
    """Where a scorer's mr estimate lives: ESTIMATE_MR's for the paper's scorer, ESTIMATE_MR_SCORER's for others."""
    stage = ESTIMATE_MR if registry.spec(scorer).paper else ESTIMATE_MR_SCORER
    return stage.outputs["mr"].replace("{scorer}", scorer)


def criteria_games(params: Params) -> list[str]:
    """Games whose saliency criteria are compared against OCAtari's objects (SPEC §14): the games of
    experiment.tables.criteria that have an MAE, when the profile builds that table; else none."""
    if "criteria" not in params.experiment.built_tables:
        return []
    spec, mae = params.experiment.tables["criteria"], set(saliency_games(params))
    games = params.experiment.games if spec.games == "all" else spec.games
    return [g for g in params.experiment.games if g in games and g in mae]


def scorer_mr_jobs(params: Params) -> list[tuple[str, str]]:
    """(game, scorer) of every other scorer's mr estimate (SPEC §13): the compared scorers on the criteria games,
    and the scorer of every planned run of a scorer variant."""
    pairs = {(g, s): None for g in criteria_games(params) for s in params.criteria.scorers if s in OTHER_SCORERS}
    for run in training_runs(params):
        scorer = variant_scorer(params, run["variant"])
        if scorer in OTHER_SCORERS:
            pairs[(run["game"], scorer)] = None
    return sorted(pairs, key=lambda p: (params.experiment.games.index(p[0]), params.criteria.scorers.index(p[1])
                                        if p[1] in params.criteria.scorers else 99, p[1]))


def wu_games(params: Params) -> list[str]:
    """Games whose Wu mask is trained: those with the mr estimate of a scorer that reads it (hence the criteria
    games when criteria.scorers has such a scorer, and every game of a run that selects with one)."""
    games = {g for g, s in scorer_mr_jobs(params) if reads_wu([s])}
    games.update(criteria_games(params) if reads_wu(params.criteria.scorers) else ())
    return [g for g in params.experiment.games if g in games]


def table_runs(params: Params, table: str) -> list[dict[str, str]]:
    """Every (variant, regime, game, seed) that one table needs, in a stable order."""
    exp, spec, runs = params.experiment, params.experiment.tables[table], []
    games = exp.games if spec.games == "all" else spec.games
    for run in spec.runs:
        for game in filter(run.runs_on, games):
            for seed in range(exp.variants[run.variant].n_seeds):
                runs.append({"variant": run.variant, "regime": run.regime, "game": game, "seed": str(seed)})
    return runs


def training_runs(params: Params) -> list[dict[str, str]]:
    """Every (variant, regime, game, seed) that the requested tables need, once, in a stable order."""
    runs = {}
    for table in params.experiment.built_tables:
        for run in table_runs(params, table):
            runs[tuple(run.values())] = run
    return list(runs.values())


def seed_group_label(seeds: tuple[str, ...]) -> str:
    """The seed wildcard of a job of several seeds: "FIRST-LAST" for consecutive seeds (its DVC name, log name)."""
    first, last = int(seeds[0]), int(seeds[-1])
    if [int(s) for s in seeds] != list(range(first, last + 1)):
        raise ValueError(f"a job's seeds must be consecutive, got {seeds}")
    return f"{first}-{last}"


def fig6_games(params: Params) -> list[str]:
    """Games with a Fig. 6: those where the tables train the run Fig. 6 shows (FIG6_RUN)."""
    planned = {(r["variant"], r["regime"], r["game"], r["seed"]) for r in training_runs(params)}
    v = FIG6_RUN
    return [g for g in saliency_games(params) if (v["variant"], v["regime"], g, v["seed"]) in planned]


def agent_saliency_runs(params: Params) -> list[dict[str, str]]:
    """The runs whose agent saliency is measured (SPEC §16): seed 0 of every planned (variant, regime, game) on a
    game with OCAtari's object frames (criteria_games), of the variants agent_saliency.variants names."""
    games, wanted = set(criteria_games(params)), params.agent_saliency.variants
    return [run for run in training_runs(params) if run["seed"] == "0" and run["game"] in games
            and (wanted == "all" or run["variant"] in wanted)]
