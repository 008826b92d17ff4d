"""The job plan that Snakemake and DVC share: jobs, paths, commands, targets (DESIGN §4).

Snakemake's rules (workflow/rules/*.smk) and the generated dvc.yaml files (src/sync_dvc_yaml.py)
both take every command, output, upstream file and code dependency from here, so the two tools run
identical jobs; tests/integration/test_dag.py checks Snakemake's real plan against DVC. The kinds of
job (stages) are defined in spirl.workflow.stages.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass, field

from spirl.params import Params
from spirl.workflow.runs import (  # re-exported: the rules and tests use plan.training_runs etc.
    OTHER_SCORERS,
    agent_saliency_runs,
    criteria_games,
    fig6_games,
    needed_games,
    reads_wu,
    saliency_games,
    scorer_mr_jobs,
    scorer_mr_template,
    seed_group_label,
    table_runs,
    train_input_names,
    training_runs,
    variant_scorer,
    wu_games,
)
from spirl.workflow.stages import (  # re-exported: the rules and tests use plan.TRAIN etc.
    AGENT_SALIENCY,
    AGENT_SALIENCY_TABLE,
    AGGREGATE,
    COLLECT,
    ESTIMATE_MR,
    ESTIMATE_MR_SCORER,
    FIG6,
    FIG6_RUN,
    FIG8,
    FIGURES,
    OBJECTS,
    PRETRAIN_MAE,
    PRETRAIN_WU,
    PUBLISH,
    QUALITY_TABLE,
    REPORT,
    SALIENCY_FIGURES,
    SALIENCY_QUALITY,
    STAGES,
    TABLE,
    TRAIN,
    Stage,
)

PARAMS_FILE = "params.yaml"


def overlay_file(profile: str) -> str:
    """The conf/ overlay that defines a profile (conf/full.yaml is a no-op)."""
    return f"conf/{profile}.yaml"


def param_files(profile: str) -> tuple[str, str]:
    """The parameter files every job of a profile reads, in merge order."""
    return (PARAMS_FILE, overlay_file(profile))


__all__ = ["AGENT_SALIENCY", "AGENT_SALIENCY_TABLE", "AGGREGATE", "COLLECT", "ESTIMATE_MR", "ESTIMATE_MR_SCORER",
           "FIG6", "FIG6_RUN", "FIG8", "FIGURES", "OBJECTS", "PRETRAIN_MAE", "PRETRAIN_WU", "PUBLISH", "QUALITY_TABLE",
           "REPORT", "SALIENCY_FIGURES", "SALIENCY_QUALITY", "STAGES", "TABLE", "TRAIN", "Stage", "OTHER_SCORERS",
           "agent_saliency_runs", "criteria_games", "fig6_games", "needed_games", "reads_wu", "saliency_games",
           "scorer_mr_jobs", "scorer_mr_template", "seed_group_label", "table_runs", "train_input_names",
           "training_runs", "variant_scorer", "wu_games"]


@dataclass(frozen=True)
class Job:
    """One concrete job: a stage with its wildcards filled for one profile."""

    stage: Stage
    profile: str
    wildcards: Mapping[str, str]
    games: tuple[str, ...] = ()  # the games a gathering input spans
    input_names: tuple[str, ...] | None = None  # the stage inputs this job reads (None: all)
    runs: tuple[Mapping[str, str], ...] = ()  # the runs a gathering input spans
    tables: tuple[str, ...] = ()  # the tables a gathering input spans
    seeds: tuple[str, ...] = ()  # a TRAIN job of several seeds (runtime.seeds_per_job): its seeds; wildcards' seed
    #                              is then the group's label, e.g. "0-4"
    mae_games: tuple[str, ...] = ()  # the games that the stage's mae_inputs span (the report's MAE records, figures)
    input_templates: Mapping[str, str] = field(default_factory=dict)  # inputs read from another stage's output (a
    #                                  scorer variant's run reads its scorer's mr estimate, not the MAE's)

    @property
    def seed_wildcards(self) -> list[dict[str, str]]:
        """The wildcards of each seed the job trains (one entry for an ordinary job)."""
        if not self.seeds:
            return [dict(self.wildcards)]
        return [{**self.wildcards, "seed": seed} for seed in self.seeds]

    @property
    def name(self) -> str:
        """Stable job name, e.g. collect-Frostbite (DVC's stage name: letters, digits, _ and - only)."""
        return "-".join([self.stage.name, *(self.wildcards[w] for w in self.stage.wildcards)])

    @property
    def inputs(self) -> dict[str, list[str]]:
        return expand_inputs(self.stage, self.profile, self.wildcards, self)

    @property
    def outputs(self) -> dict[str, str]:
        """Output paths by name; a job of several seeds names them NAME-SEED (eval-0, eval-1, ...)."""
        if not self.seeds:
            return {k: fill(v, self.profile, self.wildcards) for k, v in self.stage.outputs.items()}
        return {f"{k}-{wc['seed']}": fill(v, self.profile, wc) for k, v in self.stage.outputs.items()
                for wc in self.seed_wildcards}

    @property
    def log(self) -> str:
        return fill(self.stage.log, self.profile, self.wildcards)

    @property
    def cmd(self) -> str:
        return command(self.stage, self.profile, self.wildcards, self)

    @property
    def sections(self) -> list[str]:
        """The params keys the job reads (dotted paths, e.g. experiment.variants.spirl)."""
        return [fill(section, self.profile, self.wildcards) for section in self.stage.sections]


def fill(template: str, profile: str, wildcards: Mapping[str, str]) -> str:
    """A path template with the profile and wildcards filled in."""
    return template.format(profile=profile, **wildcards)


def _free(template: str, stage: Stage) -> set[str]:
    """The template's wildcards that the stage does not have (gathered over the job's runs/tables/games)."""
    names = {name for _, name, _, _ in string.Formatter().parse(template) if name}
    return names - {"profile"} - set(stage.wildcards)


def expand_inputs(stage: Stage, profile: str, wildcards: Mapping[str, str], job: Job | None = None
                  ) -> dict[str, list[str]]:
    """Input paths by name; a template with wildcards the stage lacks spans the job's runs, tables or games."""
    out = {}
    for name, template in stage.inputs.items():
        if job is not None and job.input_names is not None and name not in job.input_names:
            continue
        if job is not None:
            template = job.input_templates.get(name, template)
        free = _free(template, stage)
        if "variant" in free or "seed" in free:
            spans = list(job.runs) if job else []
        elif "table" in free:
            spans = [{"table": t} for t in (job.tables if job else ())]
        elif "game" in free:
            span_games = (job.mae_games if name in stage.mae_inputs else job.games) if job else ()
            spans = [{"game": g} for g in span_games]
        else:
            spans = [{}]
        out[name] = [fill(template, profile, {**wildcards, **span}) for span in spans]
    return out


def command(stage: Stage, profile: str, wildcards: Mapping[str, str], job: Job | None = None) -> str:
    """The exact shell command of a job, identical in Snakemake and DVC."""
    parts = ["PYTHONHASHSEED=0", stage.interpreter, stage.script, "--params", *param_files(profile)]
    each = job.seed_wildcards if job is not None else [dict(wildcards)]  # several seeds: one value per seed

    def values(template: str) -> str:
        return " ".join(fill(template, profile, wc) for wc in each)

    parts += [f"--{w} {' '.join(dict.fromkeys(wc[w] for wc in each))}" for w in stage.wildcards]  # seed: 1 or more
    parts += [f"--{k} {v}" for k, v in stage.options.items()]
    inputs = expand_inputs(stage, profile, wildcards, job)
    parts += [f"--in-{k} {' '.join(v)}" for k, v in inputs.items()]
    parts += [f"--out-{k} {values(v)}" for k, v in stage.outputs.items()]
    if stage.work is not None:
        parts += [f"--work {values(stage.work)}"]
    parts += [f"--log {fill(stage.log, profile, wildcards)}"]
    return " ".join(parts)


def train_jobs(params: Params) -> list[Job]:
    """The training jobs: one per run, or with runtime.seeds_per_job = S > 1, one per S consecutive seeds of a
    (variant, regime, game) (the last group may be smaller), trained together in one process."""
    per_job, groups = params.runtime.seeds_per_job, {}
    for run in training_runs(params):
        groups.setdefault((run["variant"], run["regime"], run["game"]), []).append(run["seed"])
    out = []
    for (variant, regime, game), seeds in groups.items():
        for start in range(0, len(seeds), per_job):
            chunk = tuple(seeds[start:start + per_job])
            label = chunk[0] if per_job == 1 else seed_group_label(chunk)
            out.append(train_job(params, {"variant": variant, "regime": regime, "game": game, "seed": label}))
    return out


def agent_saliency_job(params: Params, wildcards: Mapping[str, str]) -> Job:
    """A run's agent-saliency job: it reads what the run's representation reads (train_job), the run's weights and
    record, and the game's object frames."""
    train = train_job(params, wildcards)
    names = ("weights", "run", "frames", "objects", *(n for n in train.input_names if n != "frames"))
    return Job(AGENT_SALIENCY, params.experiment.profile, dict(wildcards), input_names=names,
               input_templates=train.input_templates)


def train_job(params: Params, wildcards: Mapping[str, str]) -> Job:
    """The TRAIN job of a run ("seed": "3") or of a group of seeds ("seed": "0-4", seeds 0..4)."""
    wc, names = dict(wildcards), train_input_names(params, wildcards["variant"])
    first, _, last = wc["seed"].partition("-")
    seeds = tuple(str(s) for s in range(int(first), int(last) + 1)) if last else ()
    scorer = variant_scorer(params, wc["variant"])
    templates = {"mr": scorer_mr_template(scorer)} if scorer is not None else {}  # its scorer's mr estimate
    return Job(TRAIN, params.experiment.profile, wc, input_names=names, seeds=seeds, input_templates=templates)


def seed_groups(params: Params) -> dict[tuple[str, ...], list[str]]:
    """With runtime.seeds_per_job > 1: each distinct seed group -> the variants trained in such groups
    (Snakemake has one rule per group, constrained to those variants)."""
    groups: dict[tuple[str, ...], list[str]] = {}
    for job in train_jobs(params):
        if job.seeds:
            variants = groups.setdefault(job.seeds, [])
            if job.wildcards["variant"] not in variants:
                variants.append(job.wildcards["variant"])
    return groups


def table_job(params: Params, table: str, stage: Stage) -> Job:
    """A table's job (TABLE or PUBLISH): its runs, and for Tab. 1 the MAE pre-training records of its games."""
    runs = tuple(table_runs(params, table))
    games = tuple(dict.fromkeys(r["game"] for r in runs))
    names = None if stage is not TABLE else ("eval", "run", "reference", *(("mae-run",) if table == "table1" else ()),
                                             *(("quality",) if table == "criteria" else ()))
    if stage is TABLE and table == "criteria":  # the object recall of the criteria games beside the returns
        games = tuple(criteria_games(params))
    return Job(stage, params.experiment.profile, {"table": table}, games, names, runs)


def jobs(params: Params) -> list[Job]:
    """Every job the requested tables need, for the params' profile, in a stable order."""
    profile, games, mae_games = params.experiment.profile, needed_games(params), tuple(saliency_games(params))
    runs, tables = tuple(training_runs(params)), params.experiment.built_tables
    per_game = [Job(COLLECT, profile, {"game": g}) for g in games]
    per_game += [Job(stage, profile, {"game": g}) for stage in (PRETRAIN_MAE, ESTIMATE_MR, SALIENCY_FIGURES)
                 for g in mae_games]
    fig8 = [Job(FIG8, profile, {}, mae_games)] if mae_games else []
    per_game += [Job(PRETRAIN_WU, profile, {"game": g}) for g in wu_games(params)]
    per_game += [scorer_mr_job(params, g, s) for g, s in scorer_mr_jobs(params)]
    crit = criteria_games(params)
    per_game += [Job(OBJECTS, profile, {"game": g}) for g in crit]
    per_game += [quality_job(params, g) for g in crit]
    fig8 += [Job(QUALITY_TABLE, profile, {}, tuple(crit))] if crit else []
    train = train_jobs(params)
    report = [Job(AGGREGATE, profile, {}, runs=runs),
              *(table_job(params, t, stage) for stage in (TABLE, PUBLISH) for t in tables),
              Job(FIGURES, profile, {}, runs=runs),
              *(Job(FIG6, profile, {"game": g}) for g in fig6_games(params)),
              *(agent_saliency_job(params, run) for run in agent_saliency_runs(params)),
              *([Job(AGENT_SALIENCY_TABLE, profile, {}, runs=tuple(agent_saliency_runs(params)))]
                if agent_saliency_runs(params) else []),
              report_job(params)]
    return [*per_game, *fig8, *train, *report]


def scorer_mr_job(params: Params, game: str, scorer: str) -> Job:
    """The mr estimate of one other scorer on one game (the game's Wu mask only for a scorer that reads it)."""
    names = ("model", "frames", *(("wu",) if reads_wu([scorer]) else ()))
    return Job(ESTIMATE_MR_SCORER, params.experiment.profile, {"game": game, "scorer": scorer}, input_names=names)


def quality_job(params: Params, game: str) -> Job:
    """A game's saliency-quality job (the Wu mask only when criteria.scorers compares a scorer that reads it)."""
    names = ("frames", "objects", "model", "mr", *(("wu",) if reads_wu(params.criteria.scorers) else ()))
    return Job(SALIENCY_QUALITY, params.experiment.profile, {"game": game}, input_names=names)


def report_job(params: Params) -> Job:
    """The report's job: every table, figure and run record (Fig. 6 only if every MAE game has one; the MAE's
    records and figures, Fig. 8 and the mr estimates only where MAEs are built)."""
    games, mae_games = tuple(needed_games(params)), tuple(saliency_games(params))
    crit, wu = criteria_games(params), wu_games(params)
    optional = {"fig6": fig6_games(params) == list(mae_games), "quality-md": bool(crit),
                "agent-saliency-md": bool(agent_saliency_runs(params)),
                "quality-fig": bool(crit) and crit == list(mae_games),
                "wu-loss": bool(wu) and wu == list(mae_games), "wu-masks": bool(wu) and wu == list(mae_games)}
    names = tuple(n for n in REPORT.inputs
                  if optional.get(n, True) and (n not in REPORT.mae_inputs or mae_games))
    return Job(REPORT, params.experiment.profile, {}, games, names, tuple(training_runs(params)),
               params.experiment.built_tables, mae_games=mae_games)


def job_for(params: Params, stage: Stage, wildcards: Mapping[str, str]) -> Job:
    """The job of `stage` with `wildcards` (Snakemake's input and command functions call this)."""
    wc, profile, games = dict(wildcards), params.experiment.profile, tuple(needed_games(params))
    if stage is FIG8:
        return Job(stage, profile, wc, tuple(saliency_games(params)))
    if stage is QUALITY_TABLE:
        return Job(stage, profile, wc, tuple(criteria_games(params)))
    if stage is ESTIMATE_MR_SCORER:
        return scorer_mr_job(params, wc["game"], wc["scorer"])
    if stage is SALIENCY_QUALITY:
        return quality_job(params, wc["game"])
    if stage in (TABLE, PUBLISH):
        return table_job(params, wc["table"], stage)
    if stage is TRAIN:  # an ordinary job, or a group's ("seed" = its label, e.g. "0-4")
        return train_job(params, wc)
    if stage is REPORT:
        return report_job(params)
    if stage is AGENT_SALIENCY:
        return agent_saliency_job(params, wc)
    if stage is AGENT_SALIENCY_TABLE:
        return Job(stage, profile, wc, runs=tuple(agent_saliency_runs(params)))
    if stage in (AGGREGATE, FIGURES):
        return Job(stage, profile, wc, runs=tuple(training_runs(params)))
    return Job(stage, profile, wc, games)


def targets(params: Params) -> list[str]:
    """The final outputs of the DAG (Snakemake's rule all)."""
    return [path for job in jobs(params) for path in job.outputs.values()]
