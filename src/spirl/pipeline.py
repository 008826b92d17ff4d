"""The job plan that Snakemake and DVC share: stages, paths, commands, targets (DESIGN §4).

Snakemake's rules (workflow/rules/*.smk) and the generated dvc.yaml files (src/sync_dvc_yaml.py)
both take every command, output, upstream file and code dependency from here, so the two tools run
identical jobs; tests/integration/test_dag_consistency.py checks Snakemake's real plan against DVC.
"""

from __future__ import annotations

import json
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from spirl.config import (
    ConfigError,
    Params,
    params_from_dict,
    read_params,
    resolve_variant,
    to_plain,
    validate_schema,
)

PARAMS_FILE = "params.yaml"
LIBRARY_CORE = ("src/spirl/__init__.py", "src/spirl/cli.py", "src/spirl/config.py", "src/spirl/io.py",
                "src/spirl/runinfo.py", "src/spirl/seeding.py")


def overlay_file(profile: str) -> str:
    """The conf/ overlay that defines a profile (conf/full.yaml is a no-op)."""
    return f"conf/{profile}.yaml"


def param_files(profile: str) -> tuple[str, str]:
    """The parameter files every job of a profile reads, in merge order."""
    return (PARAMS_FILE, overlay_file(profile))


def dvc_file(profile: str) -> str:
    """Where DVC's mirror of a profile lives: the paper profile at the root, others under pipelines/."""
    return "dvc.yaml" if profile == "full" else f"pipelines/{profile}/dvc.yaml"


@dataclass(frozen=True)
class Stage:
    """One kind of job: a script, its code, its wildcards, and path templates.

    Templates use {profile} and the stage's wildcards. An input template with a wildcard the stage lacks
    gathers that file over the job's runs ({variant}), tables ({table}) or games ({game}): Fig. 8 reads
    every game's mr.json, a table every eval.json of its runs.
    Each input/output NAME becomes the script's --in-NAME/--out-NAME option; `work` (a scratch folder
    for resume checkpoints, not a declared output) becomes --work.
    """

    name: str
    script: str
    library: tuple[str, ...]
    wildcards: tuple[str, ...]
    inputs: Mapping[str, str]
    outputs: Mapping[str, str]
    sections: tuple[str, ...]
    log: str
    work: str | None = None
    options: Mapping[str, str] = field(default_factory=dict)  # fixed --name value options of every job
    published: bool = False  # writes outside the profile's folders: only the root dvc.yaml declares it

    @property
    def code(self) -> tuple[str, ...]:
        """Code dependencies: the script, the library modules it uses, and the shared core."""
        return tuple(dict.fromkeys((self.script, *self.library, *LIBRARY_CORE)))


MAE_LIBRARY = ("src/spirl/mae.py", "src/spirl/saliency.py", "src/spirl/selection.py", "src/spirl/pretrain.py",
               "src/spirl/runtime.py", "src/spirl/plots.py")

COLLECT = Stage(
    name="collect",
    script="src/collect_frames.py",
    library=("src/spirl/atari.py", "src/spirl/collect.py"),
    wildcards=("game",),
    inputs={},
    outputs={"frames": "data/{profile}/frames/{game}/frames.npz", "run": "data/{profile}/frames/{game}/run.json"},
    sections=("atari", "collect"),
    log="work/{profile}/logs/collect/{game}.log",
)

PRETRAIN_MAE = Stage(
    name="pretrain_mae",
    script="src/pretrain_mae.py",
    library=MAE_LIBRARY,
    wildcards=("game",),
    inputs={"frames": COLLECT.outputs["frames"]},
    outputs={"model": "data/{profile}/mae/{game}/model.npz", "loss-csv": "data/{profile}/mae/{game}/loss.csv",
             "loss-png": "data/{profile}/mae/{game}/loss.png", "run": "data/{profile}/mae/{game}/run.json"},
    sections=("mae", "runtime"),
    log="work/{profile}/logs/pretrain_mae/{game}.log",
    work="work/{profile}/mae/{game}",
)

ESTIMATE_MR = Stage(
    name="estimate_mr",
    script="src/estimate_mr.py",
    library=MAE_LIBRARY,
    wildcards=("game",),
    inputs={"model": PRETRAIN_MAE.outputs["model"], "frames": COLLECT.outputs["frames"]},
    outputs={"mr": "results/{profile}/mr/{game}/mr.json", "ks": "results/{profile}/mr/{game}/ks.npz"},
    sections=("saliency", "runtime"),
    log="work/{profile}/logs/estimate_mr/{game}.log",
)

SALIENCY_FIGURES = Stage(
    name="saliency_figures",
    script="src/saliency_figures.py",
    library=MAE_LIBRARY,
    wildcards=("game",),
    inputs={"model": PRETRAIN_MAE.outputs["model"], "frames": COLLECT.outputs["frames"],
            "mr": ESTIMATE_MR.outputs["mr"]},
    outputs={"fig2": "reports/{profile}/fig2/{game}.png", "fig3": "reports/{profile}/fig3/{game}.png"},
    sections=("saliency", "report", "runtime"),
    log="work/{profile}/logs/saliency_figures/{game}.log",
)

FIG8 = Stage(
    name="fig8",
    script="src/make_fig8.py",
    library=("src/spirl/plots.py",),
    wildcards=(),
    inputs={"mr": ESTIMATE_MR.outputs["mr"]},
    outputs={"fig8": "reports/{profile}/fig8.png"},
    sections=("saliency",),
    log="work/{profile}/logs/fig8.log",
)

RUN_DIR = "{profile}/runs/{variant}/{regime}/{game}/{seed}"

TRAIN = Stage(
    name="train",
    script="src/train_agent.py",
    library=(*MAE_LIBRARY, "src/spirl/atari.py", "src/spirl/agent.py", "src/spirl/networks.py",
             "src/spirl/rainbow.py", "src/spirl/replay.py", "src/spirl/evaluation.py", "src/spirl/train.py"),
    wildcards=("variant", "regime", "game", "seed"),
    inputs={"model": PRETRAIN_MAE.outputs["model"], "mr": ESTIMATE_MR.outputs["mr"],
            "frames": COLLECT.outputs["frames"]},
    outputs={"eval": f"results/{RUN_DIR}/eval.json", "progress": f"results/{RUN_DIR}/progress.csv",
             "run": f"results/{RUN_DIR}/run.json", "weights": f"results/{RUN_DIR}/weights.npz"},
    sections=("atari", "saliency", "agent", "replay", "train", "eval", "runtime", "experiment.variants.{variant}"),
    log="work/{profile}/logs/train/{variant}-{regime}-{game}-{seed}.log",
    work=f"work/{RUN_DIR}",
)

REFERENCE = "data/reference/paper_scores.csv"
REPORT_LIBRARY = ("src/spirl/scores.py", "src/spirl/reporting.py", "src/spirl/plots.py")

AGGREGATE = Stage(
    name="aggregate",
    script="src/aggregate_scores.py",
    library=REPORT_LIBRARY,
    wildcards=(),
    inputs={"eval": TRAIN.outputs["eval"], "run": TRAIN.outputs["run"]},
    outputs={"scores": "results/{profile}/scores.csv", "runs": "results/{profile}/runs.csv"},
    sections=("experiment", "train", "eval", "replay"),
    log="work/{profile}/logs/aggregate.log",
)

TABLE = Stage(
    name="table",
    script="src/make_tables.py",
    library=(*REPORT_LIBRARY, "src/spirl/tables.py"),
    wildcards=("table",),
    inputs={"eval": TRAIN.outputs["eval"], "run": TRAIN.outputs["run"], "reference": REFERENCE,
            "mae-run": PRETRAIN_MAE.outputs["run"]},
    outputs={"csv": "results/{profile}/tables/{table}.csv", "md": "results/{profile}/tables/{table}.md"},
    sections=("experiment", "train", "eval", "replay", "report"),
    log="work/{profile}/logs/table/{table}.log",
)

PUBLISH = Stage(
    name="publish",
    script="src/publish_table.py",
    library=("src/spirl/pipeline.py",),
    wildcards=("table",),
    inputs={"csv": TABLE.outputs["csv"], "md": TABLE.outputs["md"]},
    outputs={"csv": "results/{table}.csv", "md": "results/{table}.md"},
    sections=("experiment.profile",),
    log="work/{profile}/logs/publish/{table}.log",
    published=True,
)

FIGURES = Stage(
    name="figures",
    script="src/make_figures.py",
    library=(*REPORT_LIBRARY, "src/spirl/report_plots.py"),
    wildcards=(),
    inputs={"runs": AGGREGATE.outputs["runs"], "progress": TRAIN.outputs["progress"], "reference": REFERENCE},
    outputs={"curves": "reports/{profile}/learning_curves.png", "intervals": "reports/{profile}/intervals.png",
             "profile": "reports/{profile}/performance_profile.png"},
    sections=("experiment", "train", "report"),
    log="work/{profile}/logs/figures.log",
)

FIG6_RUN = {"variant": "spirl", "regime": "100k", "seed": "0"}  # Fig. 6 shows the paper's SPIRL agent

FIG6 = Stage(
    name="fig6",
    script="src/make_fig6.py",
    library=(*MAE_LIBRARY, "src/spirl/agent.py", "src/spirl/networks.py", "src/spirl/rainbow.py",
             "src/spirl/train.py", "src/spirl/attention.py"),
    wildcards=("game",),
    inputs={"frames": COLLECT.outputs["frames"], "model": PRETRAIN_MAE.outputs["model"],
            "mr": ESTIMATE_MR.outputs["mr"],
            "weights": TRAIN.outputs["weights"].replace("{variant}/{regime}", "spirl/100k").replace("{seed}", "0")},
    outputs={"figure": "reports/{profile}/fig6/{game}.png"},
    sections=("atari", "saliency", "agent", "report", "runtime", "experiment.variants.spirl"),
    log="work/{profile}/logs/fig6/{game}.log",
    options={"variant": FIG6_RUN["variant"]},
)

REPORT = Stage(
    name="report",
    script="src/make_report.py",
    library=(*REPORT_LIBRARY, "src/spirl/tables.py", "src/spirl/timing.py"),
    wildcards=(),
    inputs={"tables": TABLE.outputs["md"], "runs": AGGREGATE.outputs["runs"], "train-run": TRAIN.outputs["run"],
            "collect-run": COLLECT.outputs["run"], "mae-run": PRETRAIN_MAE.outputs["run"],
            "fig2": SALIENCY_FIGURES.outputs["fig2"], "fig3": SALIENCY_FIGURES.outputs["fig3"],
            "fig8": FIG8.outputs["fig8"], "fig6": FIG6.outputs["figure"], **FIGURES.outputs, "bench": "bench/results"},
    outputs={"report": "reports/{profile}/report.md"},
    sections=("experiment", "train", "report", "runtime"),
    log="work/{profile}/logs/report.log",
)

STAGES: dict[str, Stage] = {s.name: s for s in (COLLECT, PRETRAIN_MAE, ESTIMATE_MR, SALIENCY_FIGURES, FIG8, TRAIN,
                                                 AGGREGATE, TABLE, PUBLISH, FIGURES, FIG6, REPORT)}


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

    @property
    def name(self) -> str:
        """Stable job name, e.g. collect-Frostbite (DVC's stage name: letters, digits, _ and - only)."""
        return "-".join([self.stage.name, *(self.wildcards[w] for w in self.stage.wildcards)])

    @property
    def inputs(self) -> dict[str, list[str]]:
        return expand_inputs(self.stage, self.profile, self.wildcards, self)

    @property
    def outputs(self) -> dict[str, str]:
        return {k: fill(v, self.profile, self.wildcards) for k, v in self.stage.outputs.items()}

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
        free = _free(template, stage)
        if "variant" in free or "seed" in free:
            spans = list(job.runs) if job else []
        elif "table" in free:
            spans = [{"table": t} for t in (job.tables if job else ())]
        elif "game" in free:
            spans = [{"game": g} for g in (job.games if job else ())]
        else:
            spans = [{}]
        out[name] = [fill(template, profile, {**wildcards, **span}) for span in spans]
    return out


def command(stage: Stage, profile: str, wildcards: Mapping[str, str], job: Job | None = None) -> str:
    """The exact shell command of a job, identical in Snakemake and DVC."""
    parts = ["PYTHONHASHSEED=0", "python", stage.script, "--params", *param_files(profile)]
    parts += [f"--{w} {wildcards[w]}" for w in stage.wildcards]
    parts += [f"--{k} {v}" for k, v in stage.options.items()]
    inputs = expand_inputs(stage, profile, wildcards, job)
    parts += [f"--in-{k} {' '.join(v)}" for k, v in inputs.items()]
    parts += [f"--out-{k} {fill(v, profile, wildcards)}" for k, v in stage.outputs.items()]
    if stage.work is not None:
        parts += [f"--work {fill(stage.work, profile, wildcards)}"]
    parts += [f"--log {fill(stage.log, profile, wildcards)}"]
    return " ".join(parts)


def needed_games(params: Params) -> list[str]:
    """Games that some requested table needs, in experiment.games order."""
    wanted: set[str] = set()
    for table in params.experiment.tables.values():
        wanted.update(params.experiment.games if table.games == "all" else table.games)
    return [g for g in params.experiment.games if g in wanted]


def train_input_names(params: Params, variant: str) -> tuple[str, ...]:
    """What a run reads: the game's MAE and mr estimate (spirl base), its frames (replay pre-fill)."""
    resolved = resolve_variant(params, variant)
    names = ("model", "mr") if params.experiment.variants[variant].base == "spirl" else ()
    return names + (("frames",) if resolved.replay.prefill == "pretraining" else ())


def table_runs(params: Params, table: str) -> list[dict[str, str]]:
    """Every (variant, regime, game, seed) that one table needs, in a stable order."""
    exp, spec, runs = params.experiment, params.experiment.tables[table], []
    games = exp.games if spec.games == "all" else spec.games
    for run in spec.runs:
        for game in games:
            for seed in range(exp.variants[run.variant].n_seeds):
                runs.append({"variant": run.variant, "regime": run.regime, "game": game, "seed": str(seed)})
    return runs


def training_runs(params: Params) -> list[dict[str, str]]:
    """Every (variant, regime, game, seed) that the requested tables need, once, in a stable order."""
    runs = {}
    for table in params.experiment.tables:
        for run in table_runs(params, table):
            runs[tuple(run.values())] = run
    return list(runs.values())


def table_job(params: Params, table: str, stage: Stage) -> Job:
    """A table's job (TABLE or PUBLISH): its runs, and for Tab. 1 the MAE pre-training records of its games."""
    runs = tuple(table_runs(params, table))
    games = tuple(dict.fromkeys(r["game"] for r in runs))
    names = None if stage is not TABLE else ("eval", "run", "reference", *(("mae-run",) if table == "table1" else ()))
    return Job(stage, params.experiment.profile, {"table": table}, games, names, runs)


def fig6_games(params: Params) -> list[str]:
    """Games with a Fig. 6: those where the tables train the run Fig. 6 shows (FIG6_RUN)."""
    planned = {(r["variant"], r["regime"], r["game"], r["seed"]) for r in training_runs(params)}
    v = FIG6_RUN
    return [g for g in needed_games(params) if (v["variant"], v["regime"], g, v["seed"]) in planned]


def jobs(params: Params) -> list[Job]:
    """Every job the requested tables need, for the params' profile, in a stable order."""
    profile, games = params.experiment.profile, tuple(needed_games(params))
    runs, tables = tuple(training_runs(params)), tuple(params.experiment.tables)
    per_game = [Job(stage, profile, {"game": g}) for stage in (COLLECT, PRETRAIN_MAE, ESTIMATE_MR, SALIENCY_FIGURES)
                for g in games]
    train = [Job(TRAIN, profile, wc, input_names=train_input_names(params, wc["variant"])) for wc in runs]
    report = [Job(AGGREGATE, profile, {}, runs=runs),
              *(table_job(params, t, stage) for stage in (TABLE, PUBLISH) for t in tables),
              Job(FIGURES, profile, {}, runs=runs),
              *(Job(FIG6, profile, {"game": g}) for g in fig6_games(params)),
              report_job(params)]
    return [*per_game, Job(FIG8, profile, {}, games), *train, *report]


def report_job(params: Params) -> Job:
    """The report's job: every table, figure and run record (Fig. 6 only if every game has one)."""
    games = tuple(needed_games(params))
    names = tuple(n for n in REPORT.inputs if n != "fig6" or fig6_games(params) == list(games))
    return Job(REPORT, params.experiment.profile, {}, games, names, tuple(training_runs(params)),
               tuple(params.experiment.tables))


def job_for(params: Params, stage: Stage, wildcards: Mapping[str, str]) -> Job:
    """The job of `stage` with `wildcards` (Snakemake's input and command functions call this)."""
    wc, profile, games = dict(wildcards), params.experiment.profile, tuple(needed_games(params))
    if stage in (TABLE, PUBLISH):
        return table_job(params, wc["table"], stage)
    if stage is TRAIN:
        return Job(TRAIN, profile, wc, input_names=train_input_names(params, wc["variant"]))
    if stage is REPORT:
        return report_job(params)
    if stage in (AGGREGATE, FIGURES):
        return Job(stage, profile, wc, runs=tuple(training_runs(params)))
    return Job(stage, profile, wc, games)


def targets(params: Params) -> list[str]:
    """The final outputs of the DAG (Snakemake's rule all)."""
    return [path for job in jobs(params) for path in job.outputs.values()]


def dvc_document(params: Params, overlay: Mapping) -> dict:
    """The dvc.yaml of the params' profile: one stage per job, the same command, deps and outs.

    Args:
        params: the profile's resolved params.
        overlay: the raw conf/<profile>.yaml, to list which of its sections each stage reads.
    """
    profile = params.experiment.profile
    wdir = "." if profile == "full" else "/".join(".." for _ in Path(dvc_file(profile)).parent.parts)
    stages = {}
    for job in jobs(params):
        if job.stage.published and profile != "full":
            continue  # two dvc.yaml files may not own one path: only the paper profile publishes under DVC
        stage: dict = {"cmd": job.cmd}
        if wdir != ".":
            stage["wdir"] = wdir
        stage["deps"] = [*job.stage.code, *(p for paths in job.inputs.values() for p in paths)]
        stage["params"] = [{PARAMS_FILE: job.sections}]
        overlay_sections = [s for s in job.sections if _has_key(overlay, s)]
        if overlay_sections:
            stage["params"].append({overlay_file(profile): overlay_sections})
        stage["outs"] = list(job.outputs.values())
        stages[job.name] = stage
    return {"stages": stages}


def _has_key(tree: Mapping, dotted: str) -> bool:
    """Whether a nested mapping holds the dotted key path."""
    node = tree
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False
        node = node[part]
    return True


def section_values(params: Params, stage: Stage, wildcards: Mapping[str, str] | None = None) -> str:
    """The job's parameter keys and values as canonical JSON (Snakemake re-runs a job when they change)."""
    plain, out = to_plain(params), {}
    for section in stage.sections:
        key = section.format(**(wildcards or {}))
        node = plain
        for part in key.split("."):
            node = node[part]
        out[key] = node
    return json.dumps(out, sort_keys=True)


def gpu_tokens(params: Params) -> int:
    """GPU tokens a torch job takes (Snakemake `resources: gpu`): 1 when it will run on a GPU, else 0."""
    if params.runtime.device == "cpu":
        return 0
    if params.runtime.device == "cuda":
        return 1
    import torch  # only for device "auto"

    return int(torch.cuda.is_available())


def check_snakemake_config(config: Mapping, root: Path = Path(".")) -> Params:
    """Validate Snakemake's merged config and check it is exactly params.yaml + conf/<profile>.yaml.

    Scripts receive only those two files, so a `--config` or another `--configfile` would silently
    make Snakemake and the jobs disagree; this refuses that before any job runs.
    """
    raw = to_plain(config)
    profile = raw.get("experiment", {}).get("profile", "?")
    source = f"Snakemake config ({' + '.join(param_files(profile))})"
    validate_schema(raw, source=source)
    params = params_from_dict(raw, source=source)
    files = [root / f for f in param_files(profile)]
    if not files[1].is_file():
        raise ConfigError(f"experiment.profile = {profile!r} but {files[1]} does not exist; add it to conf/")
    if read_params(files) != raw:
        raise ConfigError(
            f"the config Snakemake sees differs from {' + '.join(param_files(profile))}; put every change in "
            f"{overlay_file(profile)} (or a new conf/ profile) instead of --config or another --configfile"
        )
    return params
