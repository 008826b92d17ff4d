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


# Every method stage, plus one run of each kind (SPIRL; DE-Rainbow with the replay pre-fill): the whole smoke
# DAG with all its training runs is `make smoke` (minutes), too long for the test suite.
RUNS = [{"variant": "spirl", "regime": "100k", "game": "Seaquest", "seed": "0"},
        {"variant": "de_rainbow_p", "regime": "100k", "game": "Frostbite", "seed": "0"}]


def test_snakemake_then_dvc_build_identical_data_and_agree(repo):
    params = load_params([repo / f for f in param_files("smoke")])
    planned = [job for job in jobs(params) if job.stage.name != "train" or dict(job.wildcards) in RUNS]
    assert len([job for job in planned if job.stage.name == "train"]) == len(RUNS)
    outputs = [p for job in planned for p in job.outputs.values()]
    stages = [f"pipelines/smoke/dvc.yaml:{job.name}" for job in planned]
    smk = [str(BIN / "snakemake"), "-j2", *outputs, "--configfile", "conf/smoke.yaml"]

    # 1. Snakemake builds the method's stages and the two runs from an empty workspace
    _run(smk, repo)
    assert all((repo / p).is_file() for p in outputs)
    by_snakemake = _digests(repo, outputs)

    # 2. the sync step records Snakemake's outputs in DVC's lock: DVC has nothing to do
    _run([str(BIN / "dvc"), "commit", "-f", *stages], repo)
    assert "up to date" in _run([str(BIN / "dvc"), "status", *stages], repo)

    # 3. DVC re-runs jobs (forced, scratch checkpoints removed) with the same command: the same bytes
    shutil.rmtree(repo / "work" / "smoke" / "mae")
    shutil.rmtree(repo / "work" / "smoke" / "runs")
    for stage in ["collect-Frostbite", "pretrain_mae-Frostbite", "train-de_rainbow_p-100k-Frostbite-0"]:
        _run([str(BIN / "dvc"), "repro", "--force", "--single-item", f"pipelines/smoke/dvc.yaml:{stage}"], repo)
    assert _digests(repo, outputs) == by_snakemake

    # 4. after the other sync step (snakemake --touch), neither tool has anything to do
    _run([*smk[:1], "-j1", "--touch", *smk[2:]], repo)
    assert "Nothing to be done" in _run([*smk[:1], "-n", *smk[2:]], repo)
    assert "up to date" in _run([str(BIN / "dvc"), "status", *stages], repo)

    # 5. a params change that affects collection makes both tools plan the jobs again
    smoke = repo / "conf" / "smoke.yaml"
    smoke.write_text(smoke.read_text().replace("Frostbite: 500", "Frostbite: 400"))
    plan = _run([*smk[:1], "-n", *smk[2:]], repo)
    assert "collect" in plan and "Nothing to be done" not in plan
    status = _run([str(BIN / "dvc"), "status", *stages], repo)
    assert "changed deps" in status and "collect" in status
