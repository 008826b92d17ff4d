"""The Snakemake profiles plan the right jobs with the right resources (dry runs: no GPU or SLURM needed).

A dry run with `executor: slurm` loads the SLURM plugin and its settings but submits nothing and calls no
SLURM command, so profiles/slurm is checked here on a machine without sbatch, sinfo or sacct.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from spirl.params import REPO_ROOT as ROOT
from spirl.params import load_params
from spirl.workflow.plan import STAGES, param_files, table_runs
from spirl.workflow.snakemake import gpu_tokens

BIN = Path(sys.executable).parent
ENV = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "PYTHONHASHSEED": "0"}
TORCH_RULES = {"pretrain_mae", "estimate_mr", "saliency_figures", "train", "fig6"}
PAPER_TABLE2 = {"collect": 4, "pretrain_mae": 4, "estimate_mr": 4, "train": 100, "table": 1, "publish": 1}


@functools.cache
def dry_run(profile: str, *targets: str, smoke: bool = False, cwd: Path = ROOT
            ) -> tuple[Counter, tuple[tuple[str, dict, int], ...]]:
    """`snakemake --workflow-profile profiles/<profile> -n --forceall [targets]`: job stats, (rule, resources,
    threads) of each job."""
    if profile == "slurm":
        assert importlib.util.find_spec("snakemake_executor_plugin_slurm"), "pip install -e '.[dev]' (SLURM plugin)"
    args = [str(BIN / "snakemake"), "--workflow-profile", f"profiles/{profile}", "-n", "--forceall", *targets]
    if smoke:
        args += ["--configfile", "conf/smoke.yaml"]  # after the targets: --configfile takes several files
    proc = subprocess.run(args, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    table = re.search(r"^Job stats:\njob +count\n[- ]+\n(.*?)^total +(\d+)$", out, flags=re.M | re.S)
    stats = Counter({rule: int(n) for rule, n in re.findall(r"^(\w+) +(\d+)$", table.group(1), flags=re.M)})
    assert sum(stats.values()) == int(table.group(2))
    jobs = []
    for rule, body in re.findall(r"^(?:local)?rule (\w+):\n(.*?)(?=^\S)", out, flags=re.M | re.S):
        res = re.search(r"^    resources: (.*)$", body, flags=re.M)
        threads = re.search(r"^    threads: (\d+)$", body, flags=re.M)  # shown when more than 1
        jobs.append((rule, dict(kv.split("=", 1) for kv in res.group(1).split(", ")) if res else {},
                     int(threads.group(1)) if threads else 1))
    assert Counter(rule for rule, _, _ in jobs) == stats
    return stats, tuple(jobs)


def gpus(jobs, torch: bool) -> list[int]:
    """The `gpu` resource of each torch job (torch=True) or of each other job (0 when a job names none)."""
    return [int(res.get("gpu", 0)) for rule, res, _ in jobs if (rule in TORCH_RULES) == torch]


def expected_tokens(profile: str, params_profile: str) -> int:
    """GPU tokens per torch job: 1 under SLURM (set-resources), else what runtime.device gives on this machine."""
    return 1 if profile == "slurm" else gpu_tokens(load_params([ROOT / f for f in param_files(params_profile)]))


def table2_jobs(params_profile: str) -> dict[str, int]:
    """Jobs `results/table2.csv` needs from scratch: per game collect, MAE and mr; its runs; the table; publish."""
    if params_profile == "full":
        return PAPER_TABLE2
    params = load_params([ROOT / f for f in param_files(params_profile)])
    runs = table_runs(params, "table2")
    n_games = len({r["game"] for r in runs})
    return {"collect": n_games, "pretrain_mae": n_games, "estimate_mr": n_games, "train": len(runs), "table": 1,
            "publish": 1}


@pytest.mark.parametrize("smoke", [False, True], ids=["paper", "smoke"])
@pytest.mark.parametrize("profile", ["workstation", "slurm"])
def test_profile_plans_table2_with_one_gpu_token_per_torch_job(profile, smoke):
    stats, jobs = dry_run(profile, "results/table2.csv", smoke=smoke)
    params_profile = "smoke" if smoke else "full"
    assert stats == table2_jobs(params_profile)
    n_torch = stats["train"] + stats["pretrain_mae"] + stats["estimate_mr"]
    assert gpus(jobs, torch=True) == [expected_tokens(profile, params_profile)] * n_torch
    assert set(gpus(jobs, torch=False)) == {0}  # collect and the tables take no GPU


@pytest.mark.parametrize("profile", ["workstation", "slurm"])
def test_smoke_dag_plans_every_torch_rule_with_a_gpu_token(profile):
    stats, jobs = dry_run(profile, smoke=True)
    assert TORCH_RULES <= set(stats)
    n_torch = sum(stats[r] for r in TORCH_RULES)
    assert gpus(jobs, torch=True) == [expected_tokens(profile, "smoke")] * n_torch
    assert set(gpus(jobs, torch=False)) == {0}


def test_slurm_profile_gives_every_job_a_partition_wall_time_memory_and_cpus():
    _, jobs = dry_run("slurm", "results/table2.csv", smoke=False)
    for rule, res, _ in jobs:
        torch_job = rule in TORCH_RULES
        assert res["slurm_partition"] == ("gpu" if torch_job else "cpu"), (rule, res)
        assert int(res["runtime"]) >= (1440 if rule == "train" else 60), (rule, res)
        assert int(res["mem_mb"]) >= (32000 if torch_job else 8000), (rule, res)
        assert res["cpus_per_task"] == "1", (rule, res)  # the rule's threads: runtime.torch_threads = 1


def copy_pipeline(root: Path, **params_lines: tuple[str, str]) -> Path:
    """The pipeline's files in `root`, each (line start, replacement) of params.yaml replaced."""
    for name in ["Snakefile", "params.yaml"]:
        shutil.copy(ROOT / name, root / name)
    for name in ["workflow", "src", "conf", "profiles", "data/reference"]:
        shutil.copytree(ROOT / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    (root / "bench/results").mkdir(parents=True)  # the report's input folder (its benchmark records)
    text = (root / "params.yaml").read_text()
    for key, (old, new) in params_lines.items():
        assert text.count(old) == 1, key
        text = text.replace(old, new)
    (root / "params.yaml").write_text(text)
    return root


def test_slurm_resources_of_train_apply_to_every_seed_group_rule(tmp_path):
    """runtime.seeds_per_job: 4 makes one rule per seed group; each still gets `train`'s SLURM resources."""
    root = copy_pipeline(tmp_path, seeds_per_job=("seeds_per_job: 1 ", "seeds_per_job: 4 "))
    stats, jobs = dry_run("slurm", "results/table2.csv", cwd=root)
    groups = {rule: n for rule, n in stats.items() if rule.startswith("train")}
    assert groups == {"train_seeds_0_3": 16, "train_seeds_4_7": 4, "train_seeds_8_9": 4, "train_seeds_4_4": 12}
    for rule, res, _ in jobs:
        if rule.startswith("train"):
            assert (res["slurm_partition"], res["gpu"], res["runtime"], res["mem_mb"]) == ("gpu", "1", "1440",
                                                                                          "32000"), (rule, res)


def test_workstation_profile_bounds_gpu_jobs_by_a_gpu_resource():
    import yaml

    profile = yaml.safe_load((ROOT / "profiles/workstation/config.yaml").read_text())
    limits = dict(r.split("=") for r in profile["resources"])
    assert int(limits["gpu"]) >= 1 and profile["retries"] >= 1 and profile["rerun-incomplete"]


def test_each_stage_is_a_rule_and_its_torch_flag_gives_threads_and_a_gpu_token(tmp_path):
    """One rule per stage, named after it; a torch stage's jobs (Stage.torch) take runtime.torch_threads cores and
    one GPU token (device cuda), every other job one core and no token."""
    root = copy_pipeline(tmp_path, torch_threads=("torch_threads: 1 ", "torch_threads: 3 "),
                         device=("device: auto ", "device: cuda "))
    stats, jobs = dry_run("workstation", smoke=True, cwd=root)  # cores: 16, so threads are not capped
    assert set(stats) == {*STAGES, "all"}
    for rule, res, threads in jobs:
        if rule != "all":
            torch_job = STAGES[rule].torch
            assert (threads, int(res.get("gpu", 0))) == ((3, 1) if torch_job else (1, 0)), (rule, res, threads)
