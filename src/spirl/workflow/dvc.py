"""DVC's mirror of the plan: the dvc.yaml of a profile, one stage per job with the plan's command, deps and outs.

src/sync_dvc_yaml.py writes it (dvc.yaml for the paper profile, pipelines/<profile>/dvc.yaml for the others);
tests/integration/test_dag.py checks the committed files are current and equal Snakemake's plan.

The results DVC shows are declared where their stage writes them (each is still that stage's output, cached,
pushed and pulled like the others): every training run's eval.json is a metrics file (its `score`, SPEC §10's
final metric, with the run's names; `dvc metrics show`, `dvc exp show`), and the CSVs that are curves or
comparisons are plots (`dvc plots show`): each run's learning curve (progress.csv), the MAE's and Wu's
pre-training losses, and each table (ours against the paper's value, one point per row).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from spirl.params import Params
from spirl.workflow.plan import PARAMS_FILE, Job, fill, jobs, overlay_file

# Profiles whose reports/<profile>/ folder is committed to git as evidence a reader sees without running anything
# (DVC still runs and locks those outputs, but with `cache: false`: tracked by git, not by DVC's cache).
EVIDENCE_PROFILES = ("desk",)

# Outputs declared as DVC metrics, by stage and output name: JSON whose numeric scalars DVC shows.
METRICS: dict[str, tuple[str, ...]] = {"train": ("eval",)}

# Outputs declared as DVC plots, by stage and output name: CSVs with the columns DVC draws.
PLOTS: dict[str, dict[str, dict[str, str]]] = {
    "train": {"progress": {"x": "env_step", "y": "return_raw"}},  # each training episode's return where it ended
    "pretrain_mae": {"loss-csv": {"x": "epoch", "y": "loss", "title": "MAE pre-training loss"}},
    "pretrain_wu": {"loss-csv": {"x": "epoch", "y": "loss", "title": "Wu mask pre-training loss"}},
    "table": {"csv": {"x": "paper_mean", "y": "mean", "template": "scatter", "x_label": "the paper's mean",
                      "y_label": "this pipeline's mean", "title": "this pipeline against the paper"}},
}


def dvc_file(profile: str) -> str:
    """Where DVC's mirror of a profile lives: the paper profile at the root, others under pipelines/."""
    return "dvc.yaml" if profile == "full" else f"pipelines/{profile}/dvc.yaml"


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
        stage.update(_outputs(job))
        stages[job.name] = stage
    return {"stages": stages}


def _outputs(job: Job) -> dict[str, list]:
    """A job's outs, metrics and plots (a path is in one of them; only the non-empty lists)."""
    evidence = f"reports/{job.profile}/" if job.profile in EVIDENCE_PROFILES else None
    names = {fill(template, job.profile, wc): name for name, template in job.stage.outputs.items()
             for wc in job.seed_wildcards}  # a job of several seeds: each seed's paths
    out: dict[str, list] = {"outs": [], "metrics": [], "plots": []}
    for path in job.outputs.values():
        name = names[path]
        props = dict(PLOTS.get(job.stage.name, {}).get(name, {}))
        if evidence and path.startswith(evidence):
            props["cache"] = False
        kind = ("metrics" if name in METRICS.get(job.stage.name, ()) else
                "plots" if name in PLOTS.get(job.stage.name, {}) else "outs")
        out[kind].append({path: props} if props else path)
    return {kind: paths for kind, paths in out.items() if paths}


def _has_key(tree: Mapping, dotted: str) -> bool:
    """Whether a nested mapping holds the dotted key path."""
    node = tree
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False
        node = node[part]
    return True
