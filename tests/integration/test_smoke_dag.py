"""The smoke DAG end to end in a scratch copy of the repo: Snakemake, then DVC, same bytes, then no-ops."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from spirl.config import REPO_ROOT as ROOT
from spirl.config import load_params
from spirl.pipeline import jobs, param_files

BIN = Path(sys.executable).parent
ENV = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "PYTHONHASHSEED": "0"}
COPY = ["Snakefile", "params.yaml", "dvc.yaml", "pyproject.toml", ".gitignore", ".dvcignore"]
COPY_DIRS = ["workflow", "src", "conf", "profiles", "pipelines", ".dvc"]


def _run(args: list[str], cwd: Path) -> str:
    proc = subprocess.run(args, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{args}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


def _digests(root: Path, paths: list[str]) -> dict[str, str]:
    """Content hashes of the outputs, except run.json files (they record wall times)."""
    return {p: hashlib.sha256((root / p).read_bytes()).hexdigest() for p in paths if not p.endswith("run.json")}


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """A git + DVC working copy of the pipeline's files, without data."""
    root = tmp_path_factory.mktemp("smoke")
    for name in COPY:
        shutil.copy(ROOT / name, root / name)
    for name in COPY_DIRS:
        shutil.copytree(ROOT / name, root / name,
                        ignore=shutil.ignore_patterns("__pycache__", "*.lock", "tmp", "cache", "config.local"))
    _run(["git", "init", "-q"], root)
    _run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "add", "-A"], root)
    _run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "copy"], root)
    return root


def test_snakemake_then_dvc_build_identical_data_and_agree(repo):
    params = load_params([repo / f for f in param_files("smoke")])
    planned = jobs(params)
    outputs = [p for job in planned for p in job.outputs.values()]
    assert {job.stage.name for job in planned} >= {"collect", "pretrain_mae", "estimate_mr", "saliency_figures",
                                                   "fig8"}

    # 1. Snakemake builds the smoke DAG from an empty workspace: every artefact of every job
    _run([str(BIN / "snakemake"), "-j2", "--configfile", "conf/smoke.yaml"], repo)
    assert all((repo / p).is_file() for p in outputs)
    by_snakemake = _digests(repo, outputs)

    # 2. the sync step records Snakemake's outputs in DVC's lock: DVC has nothing to do
    _run([str(BIN / "dvc"), "commit", "-f", "pipelines/smoke/dvc.yaml"], repo)
    assert "up to date" in _run([str(BIN / "dvc"), "status", "pipelines/smoke/dvc.yaml"], repo)

    # 3. DVC re-runs jobs (forced, scratch checkpoints removed) with the same command: the same bytes
    shutil.rmtree(repo / "work" / "smoke" / "mae")
    for stage in ["collect-Frostbite", "pretrain_mae-Frostbite"]:
        _run([str(BIN / "dvc"), "repro", "--force", "--single-item", f"pipelines/smoke/dvc.yaml:{stage}"], repo)
    assert _digests(repo, outputs) == by_snakemake

    # 4. after the other sync step (snakemake --touch), neither tool has anything to do
    _run([str(BIN / "snakemake"), "-j1", "--touch", "--configfile", "conf/smoke.yaml"], repo)
    assert "Nothing to be done" in _run([str(BIN / "snakemake"), "-n", "--configfile", "conf/smoke.yaml"], repo)
    assert "up to date" in _run([str(BIN / "dvc"), "status", "pipelines/smoke/dvc.yaml"], repo)

    # 5. a params change that affects collection makes both tools plan the jobs again
    smoke = repo / "conf" / "smoke.yaml"
    smoke.write_text(smoke.read_text().replace("Frostbite: 500", "Frostbite: 400"))
    plan = _run([str(BIN / "snakemake"), "-n", "--configfile", "conf/smoke.yaml"], repo)
    assert "collect" in plan and "Nothing to be done" not in plan
    status = _run([str(BIN / "dvc"), "status", "pipelines/smoke/dvc.yaml"], repo)
    assert "changed deps" in status and "collect" in status
