"""The pipeline's stages: for each kind of job, its script, code, wildcards, path templates and params sections.

src/spirl/workflow/plan.py turns these into concrete jobs for a profile (DESIGN §4); the Snakemake rules and the
generated dvc.yaml files both read them from there.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from spirl.workflow.imports import code_files


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
    wildcards: tuple[str, ...]
    inputs: Mapping[str, str]
    outputs: Mapping[str, str]
    sections: tuple[str, ...]
    log: str
    work: str | None = None
    options: Mapping[str, str] = field(default_factory=dict)  # fixed --name value options of every job
    published: bool = False  # writes outside the profile's folders: only the root dvc.yaml declares it
    mae_inputs: tuple[str, ...] = ()  # gathering inputs that span only the games with an MAE (saliency_games)
    interpreter: str = "python"  # the Python that runs the script (OBJECTS: the isolated OCAtari environment)
    torch: bool = False  # the script runs torch (spirl.common.runtime.setup_torch): its job takes runtime.torch_threads
    #                      cores and one GPU token (Snakemake's `gpu` resource) when the device is a GPU

    @property
    def code(self) -> tuple[str, ...]:
        """Code dependencies: the script and every spirl module it runs (its static import closure)."""
        return code_files(self.script)



COLLECT = Stage(
    name="collect",
    script="src/collect_frames.py",
    wildcards=("game",),
    inputs={},
    outputs={"frames": "data/{profile}/frames/{game}/frames.npz", "run": "data/{profile}/frames/{game}/run.json"},
    sections=("atari", "collect"),
    log="work/{profile}/logs/collect/{game}.log",
)

PRETRAIN_MAE = Stage(
    name="pretrain_mae",
    script="src/pretrain_mae.py",
    wildcards=("game",),
    inputs={"frames": COLLECT.outputs["frames"]},
    outputs={"model": "data/{profile}/mae/{game}/model.npz", "loss-csv": "data/{profile}/mae/{game}/loss.csv",
             "loss-png": "reports/{profile}/mae_loss/{game}.png", "run": "data/{profile}/mae/{game}/run.json"},
    sections=("mae", "runtime"),
    log="work/{profile}/logs/pretrain_mae/{game}.log",
    work="work/{profile}/mae/{game}",
    torch=True,
)

ESTIMATE_MR = Stage(
    name="estimate_mr",
    script="src/estimate_mr.py",
    wildcards=("game",),
    inputs={"model": PRETRAIN_MAE.outputs["model"], "frames": COLLECT.outputs["frames"]},
    outputs={"mr": "results/{profile}/mr/{game}/mr.json", "ks": "results/{profile}/mr/{game}/ks.npz"},
    sections=("saliency", "runtime"),
    log="work/{profile}/logs/estimate_mr/{game}.log",
    torch=True,
)

SALIENCY_FIGURES = Stage(
    name="saliency_figures",
    script="src/saliency_figures.py",
    wildcards=("game",),
    inputs={"model": PRETRAIN_MAE.outputs["model"], "frames": COLLECT.outputs["frames"],
            "mr": ESTIMATE_MR.outputs["mr"]},
    outputs={"fig2": "reports/{profile}/fig2/{game}.png", "fig3": "reports/{profile}/fig3/{game}.png"},
    sections=("saliency", "report", "runtime"),
    log="work/{profile}/logs/saliency_figures/{game}.log",
    torch=True,
)

PRETRAIN_WU = Stage(
    name="pretrain_wu",
    script="src/pretrain_wu.py",
    wildcards=("game",),
    inputs={"frames": COLLECT.outputs["frames"]},
    outputs={"model": "data/{profile}/wu/{game}/model.npz", "loss-csv": "data/{profile}/wu/{game}/loss.csv",
             "loss-png": "reports/{profile}/wu_loss/{game}.png", "masks": "reports/{profile}/wu_masks/{game}.png",
             "run": "data/{profile}/wu/{game}/run.json"},
    sections=("wu", "runtime"),
    log="work/{profile}/logs/pretrain_wu/{game}.log",
    work="work/{profile}/wu/{game}",
    torch=True,
)


# SPEC §13: each other scorer's K histogram and mr* from the same pre-training frames (the paper's criterion's is
# ESTIMATE_MR's; spirl.workflow.plan.OTHER_SCORERS are the {scorer} values)
ESTIMATE_MR_SCORER = Stage(
    name="estimate_mr_scorer",
    script="src/estimate_mr.py",
    wildcards=("game", "scorer"),
    inputs={"model": PRETRAIN_MAE.outputs["model"], "frames": COLLECT.outputs["frames"],
            "wu": PRETRAIN_WU.outputs["model"]},
    outputs={"mr": "results/{profile}/mr/{game}/{scorer}/mr.json", "ks": "results/{profile}/mr/{game}/{scorer}/ks.npz"},
    sections=("mae", "saliency", "criteria.seed", "runtime"),
    log="work/{profile}/logs/estimate_mr/{game}-{scorer}.log",
    torch=True,
)

# SPEC §14: random-policy frames with OCAtari's RAM object boxes, in the isolated environment `make setup` builds
OBJECTS = Stage(
    name="objects",
    script="src/collect_objects.py",
    wildcards=("game",),
    inputs={},
    outputs={"frames": "data/{profile}/objects/{game}/frames.npz",
             "objects": "data/{profile}/objects/{game}/objects.npz", "run": "data/{profile}/objects/{game}/run.json"},
    sections=("atari", "collect", "criteria"),
    log="work/{profile}/logs/objects/{game}.log",
    interpreter=".venv-objects/bin/python",
)

SALIENCY_QUALITY = Stage(
    name="saliency_quality",
    script="src/saliency_quality.py",
    wildcards=("game",),
    inputs={"frames": OBJECTS.outputs["frames"], "objects": OBJECTS.outputs["objects"],
            "model": PRETRAIN_MAE.outputs["model"], "mr": ESTIMATE_MR.outputs["mr"],
            "wu": PRETRAIN_WU.outputs["model"]},
    outputs={"json": "results/{profile}/saliency_quality/{game}.json",
             "figure": "reports/{profile}/saliency_quality/{game}.png"},
    sections=("mae", "saliency", "criteria", "report", "runtime"),
    log="work/{profile}/logs/saliency_quality/{game}.log",
    torch=True,
)

QUALITY_TABLE = Stage(
    name="quality_table",
    script="src/quality_table.py",
    wildcards=(),
    inputs={"quality": SALIENCY_QUALITY.outputs["json"]},
    outputs={"csv": "results/{profile}/saliency_quality.csv", "md": "results/{profile}/saliency_quality.md"},
    sections=("criteria", "report", "experiment.profile"),
    log="work/{profile}/logs/quality_table.log",
)

FIG8 = Stage(
    name="fig8",
    script="src/make_fig8.py",
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
    wildcards=("variant", "regime", "game", "seed"),
    inputs={"model": PRETRAIN_MAE.outputs["model"], "mr": ESTIMATE_MR.outputs["mr"],
            "wu": PRETRAIN_WU.outputs["model"], "frames": COLLECT.outputs["frames"]},
    outputs={"eval": f"results/{RUN_DIR}/eval.json", "progress": f"results/{RUN_DIR}/progress.csv",
             "run": f"results/{RUN_DIR}/run.json", "weights": f"results/{RUN_DIR}/weights.npz"},
    sections=("atari", "saliency", "agent", "replay", "train", "mlr", "eval", "runtime",
              "experiment.variants.{variant}"),
    log="work/{profile}/logs/train/{variant}-{regime}-{game}-{seed}.log",
    work=f"work/{RUN_DIR}",
    torch=True,
)

REFERENCE = "data/reference/paper_scores.csv"

AGGREGATE = Stage(
    name="aggregate",
    script="src/aggregate_scores.py",
    wildcards=(),
    inputs={"eval": TRAIN.outputs["eval"], "run": TRAIN.outputs["run"]},
    outputs={"scores": "results/{profile}/scores.csv", "runs": "results/{profile}/runs.csv"},
    sections=("experiment", "train", "eval", "replay"),
    log="work/{profile}/logs/aggregate.log",
)

TABLE = Stage(
    name="table",
    script="src/make_tables.py",
    wildcards=("table",),
    inputs={"eval": TRAIN.outputs["eval"], "run": TRAIN.outputs["run"], "reference": REFERENCE,
            "mae-run": PRETRAIN_MAE.outputs["run"], "quality": SALIENCY_QUALITY.outputs["json"]},
    outputs={"csv": "results/{profile}/tables/{table}.csv", "md": "results/{profile}/tables/{table}.md"},
    sections=("experiment", "train", "eval", "replay", "report"),
    log="work/{profile}/logs/table/{table}.log",
)

PUBLISH = Stage(
    name="publish",
    script="src/publish_table.py",
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
    wildcards=("game",),
    inputs={"frames": COLLECT.outputs["frames"], "model": PRETRAIN_MAE.outputs["model"],
            "mr": ESTIMATE_MR.outputs["mr"],
            "weights": TRAIN.outputs["weights"].replace("{variant}/{regime}", "spirl/100k").replace("{seed}", "0")},
    outputs={"figure": "reports/{profile}/fig6/{game}.png"},
    sections=("atari", "saliency", "agent", "report", "runtime", "experiment.variants.spirl"),
    log="work/{profile}/logs/fig6/{game}.log",
    options={"variant": FIG6_RUN["variant"]},
    torch=True,
)

AGENT_SALIENCY = Stage(
    name="agent_saliency",
    script="src/agent_saliency.py",
    wildcards=("variant", "regime", "game", "seed"),
    inputs={"weights": TRAIN.outputs["weights"], "run": TRAIN.outputs["run"], "frames": OBJECTS.outputs["frames"],
            "objects": OBJECTS.outputs["objects"], "model": PRETRAIN_MAE.outputs["model"],
            "mr": ESTIMATE_MR.outputs["mr"], "wu": PRETRAIN_WU.outputs["model"]},
    outputs={"json": "results/{profile}/agent_saliency/{variant}/{regime}/{game}/{seed}.json",
             "figure": "reports/{profile}/fig_agent_saliency/{variant}/{regime}/{game}/{seed}.png"},
    sections=("atari", "mae", "saliency", "agent", "criteria.dynamic_categories", "agent_saliency", "runtime",
              "experiment.variants.{variant}"),
    log="work/{profile}/logs/agent_saliency/{variant}-{regime}-{game}-{seed}.log",
    torch=True,
)

AGENT_SALIENCY_TABLE = Stage(
    name="agent_saliency_table",
    script="src/agent_saliency_table.py",
    wildcards=(),
    inputs={"json": AGENT_SALIENCY.outputs["json"]},
    outputs={"csv": "results/{profile}/agent_saliency.csv", "md": "results/{profile}/agent_saliency.md"},
    sections=("experiment.profile",),
    log="work/{profile}/logs/agent_saliency_table.log",
)

REPORT = Stage(
    name="report",
    script="src/make_report.py",
    wildcards=(),
    inputs={"tables": TABLE.outputs["md"], "runs": AGGREGATE.outputs["runs"], "train-run": TRAIN.outputs["run"],
            "collect-run": COLLECT.outputs["run"], "mae-run": PRETRAIN_MAE.outputs["run"],
            "mae-loss": PRETRAIN_MAE.outputs["loss-png"], "mr": ESTIMATE_MR.outputs["mr"],
            "fig2": SALIENCY_FIGURES.outputs["fig2"], "fig3": SALIENCY_FIGURES.outputs["fig3"],
            "fig8": FIG8.outputs["fig8"], "fig6": FIG6.outputs["figure"], **FIGURES.outputs, "bench": "bench/results",
            "quality-md": QUALITY_TABLE.outputs["md"], "quality-fig": SALIENCY_QUALITY.outputs["figure"],
            "wu-loss": PRETRAIN_WU.outputs["loss-png"], "wu-masks": PRETRAIN_WU.outputs["masks"],
            "agent-saliency-md": AGENT_SALIENCY_TABLE.outputs["md"]},
    outputs={"report": "reports/{profile}/report.md"},
    sections=("experiment", "train", "saliency", "criteria", "report", "runtime"),
    log="work/{profile}/logs/report.log",
    mae_inputs=("mae-run", "mae-loss", "mr", "fig2", "fig3", "fig8", "fig6", "quality-fig", "wu-loss", "wu-masks"),
)

STAGES: dict[str, Stage] = {s.name: s for s in (COLLECT, PRETRAIN_MAE, ESTIMATE_MR, SALIENCY_FIGURES, PRETRAIN_WU,
                                                 ESTIMATE_MR_SCORER, OBJECTS, SALIENCY_QUALITY, QUALITY_TABLE, FIG8,
                                                 TRAIN, AGGREGATE, TABLE, PUBLISH, FIGURES, FIG6, AGENT_SALIENCY,
                                                 AGENT_SALIENCY_TABLE, REPORT)}
