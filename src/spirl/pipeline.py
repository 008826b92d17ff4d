"""The job plan that Snakemake and DVC share: stages, paths, commands, targets (DESIGN §4).

Snakemake's rules (workflow/rules/*.smk) and the generated dvc.yaml files (src/sync_dvc_yaml.py)
both take every command, output, upstream file and code dependency from here, so the two tools run
identical jobs; tests/integration/test_dag_consistency.py checks Snakemake's real plan against DVC.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
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

    Templates use {profile} and the stage's wildcards. An input template that uses {game} in a stage
    without a game wildcard gathers that file from every needed game (e.g. Fig. 8 reads all games).
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

STAGES: dict[str, Stage] = {s.name: s for s in (COLLECT, PRETRAIN_MAE, ESTIMATE_MR, SALIENCY_FIGURES, FIG8, TRAIN)}


@dataclass(frozen=True)
class Job:
    """One concrete job: a stage with its wildcards filled for one profile."""

    stage: Stage
    profile: str
    wildcards: Mapping[str, str]
    games: tuple[str, ...] = ()  # the games an aggregate input gathers
    input_names: tuple[str, ...] | None = None  # the stage inputs this job reads (None: all)

    @property
    def name(self) -> str:
        """Stable job name, e.g. collect-Frostbite (DVC's stage name: letters, digits, _ and - only)."""
        return "-".join([self.stage.name, *(self.wildcards[w] for w in self.stage.wildcards)])

    @property
    def inputs(self) -> dict[str, list[str]]:
        return expand_inputs(self.stage, self.profile, self.wildcards, self.games, self.input_names)

    @property
    def outputs(self) -> dict[str, str]:
        return {k: fill(v, self.profile, self.wildcards) for k, v in self.stage.outputs.items()}

    @property
    def log(self) -> str:
        return fill(self.stage.log, self.profile, self.wildcards)

    @property
    def cmd(self) -> str:
        return command(self.stage, self.profile, self.wildcards, self.games, self.input_names)

    @property
    def sections(self) -> list[str]:
        """The params keys the job reads (dotted paths, e.g. experiment.variants.spirl)."""
        return [fill(section, self.profile, self.wildcards) for section in self.stage.sections]


def fill(template: str, profile: str, wildcards: Mapping[str, str]) -> str:
    """A path template with the profile and wildcards filled in."""
    return template.format(profile=profile, **wildcards)


def expand_inputs(stage: Stage, profile: str, wildcards: Mapping[str, str], games: Sequence[str],
                  names: Sequence[str] | None = None) -> dict[str, list[str]]:
    """Input paths by name; a {game} template in a stage without a game wildcard spans `games`."""
    out = {}
    for name, template in stage.inputs.items():
        if names is not None and name not in names:
            continue
        if "{game}" in template and "game" not in stage.wildcards:
            out[name] = [fill(template, profile, {**wildcards, "game": g}) for g in games]
        else:
            out[name] = [fill(template, profile, wildcards)]
    return out


def command(stage: Stage, profile: str, wildcards: Mapping[str, str], games: Sequence[str] = (),
            input_names: Sequence[str] | None = None) -> str:
    """The exact shell command of a job, identical in Snakemake and DVC."""
    parts = ["PYTHONHASHSEED=0", "python", stage.script, "--params", *param_files(profile)]
    parts += [f"--{w} {wildcards[w]}" for w in stage.wildcards]
    inputs = expand_inputs(stage, profile, wildcards, games, input_names)
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


def training_runs(params: Params) -> list[dict[str, str]]:
    """Every (variant, regime, game, seed) that the requested tables need, once, in a stable order."""
    exp, runs = params.experiment, {}
    for table in exp.tables.values():
        games = exp.games if table.games == "all" else table.games
        for run in table.runs:
            for game in games:
                for seed in range(exp.variants[run.variant].n_seeds):
                    key = (run.variant, run.regime, game, str(seed))
                    runs[key] = dict(zip(("variant", "regime", "game", "seed"), key, strict=True))
    return list(runs.values())


def jobs(params: Params) -> list[Job]:
    """Every job the requested tables need, for the params' profile, in a stable order."""
    profile, games = params.experiment.profile, tuple(needed_games(params))
    per_game = [Job(stage, profile, {"game": g}) for stage in (COLLECT, PRETRAIN_MAE, ESTIMATE_MR, SALIENCY_FIGURES)
                for g in games]
    train = [Job(TRAIN, profile, wc, input_names=train_input_names(params, wc["variant"]))
             for wc in training_runs(params)]
    return [*per_game, Job(FIG8, profile, {}, games), *train]


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
