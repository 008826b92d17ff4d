"""DVC's mirror of the plan: the dvc.yaml of a profile, one stage per job with the plan's command, deps and outs.

src/sync_dvc_yaml.py writes it (dvc.yaml for the paper profile, pipelines/<profile>/dvc.yaml for the others);
tests/integration/test_dag.py checks the committed files are current and equal Snakemake's plan.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from spirl.params import Params
from spirl.workflow.plan import PARAMS_FILE, jobs, overlay_file

# Profiles whose reports/<profile>/ folder is committed to git as evidence a reader sees without running anything
# (DVC still runs and locks those outputs, but with `cache: false`: tracked by git, not by DVC's cache).
EVIDENCE_PROFILES = ("desk",)


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
        evidence = f"reports/{profile}/" if profile in EVIDENCE_PROFILES else None
        stage["outs"] = [{path: {"cache": False}} if evidence and path.startswith(evidence) else path
                         for path in job.outputs.values()]
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
