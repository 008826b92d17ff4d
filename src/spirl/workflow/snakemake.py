"""Snakemake's side of the plan: the params values a rule compares to decide a re-run, GPU tokens, and the check
that Snakemake's merged config is exactly the files the jobs read."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from spirl.params import ConfigError, Params, params_from_dict, read_params, to_plain
from spirl.workflow.plan import overlay_file, param_files
from spirl.workflow.stages import Stage


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
    params_from_dict(raw, source=source)
    files = [root / f for f in param_files(profile)]
    if not files[1].is_file():
        raise ConfigError(f"experiment.profile = {profile!r} but {files[1]} does not exist; add it to conf/")
    ours = read_params(files)
    if ours != raw:
        raise ConfigError(
            f"the config Snakemake sees differs from {' + '.join(param_files(profile))}; put every change in "
            f"{overlay_file(profile)} (or a new conf/ profile) instead of --config or another --configfile"
        )
    # The jobs' own reading of the same files: equal as mappings, and in the same key order (Snakemake merges a
    # conf/ overlay's keys first, e.g. an overlay's experiment.tables entry before params.yaml's; the order of
    # tables and runs decides the order of a gathering job's inputs, which its script pairs with its own runs).
    return params_from_dict(ours, source=source)
