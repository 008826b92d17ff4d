"""The whole DAG (every table, every figure, the report) from an empty workspace, with Snakemake and with DVC.

In a scratch copy of the repo whose smoke overlay is shrunk further (one game, a 32-px frame, runs of
60-80 env steps, one eval env; two spirl seeds trained in one job, runtime.seeds_per_job: 2) so both tools
can build everything in CI minutes; `make smoke` runs the real smoke profile. The copy holds the smoke profile's
DVC file alone: DVC parses every dvc.yaml of a repo on each command (the paper profile's has 800 stages), which
tripled the time of `dvc exp run` and `dvc exp show` here; tests/integration/test_dag.py loads all of them together.
The checks:
1. `snakemake -j2` builds every target from nothing, including results/table<N>.csv and the report;
2. after the sync step (`dvc commit`), `dvc status` has nothing to do;
3. `dvc repro` from an empty workspace builds the same bytes (wall-time artefacts aside);
4. after the other sync step (`make sync-smk`), `snakemake -n` and `dvc status` both have nothing to do;
5. the DVC remote (what `make dvc-remote` sets): `dvc push`, then a fresh clone's `dvc pull` restores every
   artefact byte for byte, `dvc status` is clean there, and after the sync step Snakemake has nothing to do;
6. a params change makes both tools plan the affected jobs again, and `dvc exp run -S` runs it as an experiment
   that `dvc exp show` lists with its params;
7. DVC shows the results: `dvc metrics show` and `dvc exp show` (the workspace, its commit and the experiment) list
   every training run's final score, equal to runs.csv's, and `dvc plots show` every declared curve (each run's
   learning curve, the pre-training losses, the tables) with its x and y columns and the file's rows.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from spirl.params import REPO_ROOT as ROOT
from spirl.params import load_params
from spirl.workflow.dvc import METRICS, PLOTS, dvc_file
from spirl.workflow.plan import TRAIN, Job, fill, jobs, param_files

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
ENV = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "PYTHONHASHSEED": "0"}
COPY = ["Snakefile", "params.yaml", "pyproject.toml", ".gitignore", ".dvcignore"]
COPY_DIRS = ["workflow", "src", "conf", "profiles", ".dvc", "bench", "data/reference"]
# Outputs that record wall time (they differ between any two executions); everything else is byte-identical.
TIMED = ("run.json", "table1.csv", "table1.md", "report.md")

TINY = {
    "experiment": {"games": ["Seaquest"], "variants": {"spirl": {"n_seeds": 2},  # spirl: seeds 0-1 in one job
                                                       # mlr learns (30 steps of 2 updates); der_mlr, mlr_base: plumbing
                                                       "mlr": {"overrides": {"train": {"learn_start_env_steps": 30}}}},
                   # the criteria stages with three scorers and one scorer variant (the others: test_train, unit)
                   "tables": {"criteria": {"runs": [{"variant": "spirl", "regime": "100k"},
                                                    {"variant": "spirl_wu", "regime": "100k"}]},
                              # one run each of the MLR and space-time tables (their other variants: unit tests and
                              # `make smoke`)
                              "table_mlr": {"runs": [{"variant": "mlr", "regime": "100k"}]},
                              "table_st": {"runs": [{"variant": "divst_all", "regime": "100k"}]}}},
    "atari": {"frame_size_px": 32, "max_episode_agent_steps": 30},
    "collect": {"frames_per_game": {"Seaquest": 200}},
    "mae": {"epochs": 1, "warmup_epochs": 0},
    "train": {"learn_start_env_steps": 20, "target_update_updates": 10, "checkpoint_every_env_steps": 50,
              "regimes": {"100k": {"total_env_steps": 60, "replay_capacity_transitions": 60,
                                   "eval_every_env_steps": 60},
                          "400k": {"total_env_steps": 80, "replay_capacity_transitions": 80,
                                   "eval_every_env_steps": 40}}},
    "eval": {"n_envs": 1},
    "agent_saliency": {"variants": ["spirl", "de_rainbow"], "frames": 1, "stride": 8},  # a SPIRL and a pixel agent
    "wu": {"pair_samples": 256, "checkpoint_every_updates": 2},  # 4 updates of 64
    "criteria": {"object_frames": 6, "object_every": 2, "scorers": ["mae_surround", "frame_diff", "wu_mask"]},
    "report": {"bootstrap_reps": 50, "fig2_frames": 1, "fig3_frames": 2, "fig6_frames": 1},
    "runtime": {"seeds_per_job": 2},
}


def _run(args: list[str], cwd: Path) -> str:
    proc = subprocess.run(args, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{args}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc.stdout + proc.stderr


def _json(args: list[str], cwd: Path) -> object:
    """The JSON a command prints on stdout (DVC's warnings go to stderr)."""
    proc = subprocess.run(args, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{args}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return json.loads(proc.stdout)


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(base.get(k, {}), v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return out


def _digests(root: Path, paths: list[str]) -> dict[str, str]:
    return {p: hashlib.sha256((root / p).read_bytes()).hexdigest() for p in paths if not p.endswith(TIMED)}


def _clean(root: Path) -> None:
    """An empty workspace: no data, results, reports or scratch (the committed reference file stays)."""
    for name in ("results", "reports", "work", "data/smoke"):
        shutil.rmtree(root / name, ignore_errors=True)
    for name in ("dvc.lock", "pipelines/smoke/dvc.lock"):
        (root / name).unlink(missing_ok=True)


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """A git + DVC working copy of the pipeline with the tiny smoke overlay and its regenerated dvc.yaml."""
    root = tmp_path_factory.mktemp("smoke")
    for name in COPY:
        shutil.copy(ROOT / name, root / name)
    for name in COPY_DIRS:
        shutil.copytree(ROOT / name, root / name,
                        ignore=shutil.ignore_patterns("__pycache__", "*.lock", "tmp", "cache", "config.local"))
    smoke = root / "conf" / "smoke.yaml"
    smoke.write_text(yaml.safe_dump(_merge(yaml.safe_load(smoke.read_text()), TINY), sort_keys=False))
    objects_env = ROOT / ".venv-objects"  # the OCAtari environment `make setup` builds (the objects stage's Python)
    if not (objects_env / "bin" / "python").exists():
        pytest.fail(f"{objects_env} is missing: run `make setup` (it builds the OCAtari environment)")
    (root / ".venv-objects").symlink_to(objects_env)
    _run([sys.executable, "src/sync_dvc_yaml.py", "--profile", "smoke"], root)  # the smoke profile's alone
    assert [p.relative_to(root).as_posix() for p in root.rglob("dvc.yaml")] == [dvc_file("smoke")]
    _run(["git", "init", "-q"], root)
    _run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "add", "-A"], root)
    _run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "copy"], root)
    return root


def test_whole_smoke_dag_with_both_tools(repo):
    params = load_params([repo / f for f in param_files("smoke")])
    planned = jobs(params)
    names = {job.stage.name for job in planned}
    assert {"table", "publish", "figures", "fig6", "report", "aggregate"} <= names
    outputs = [p for job in planned for p in job.outputs.values()]
    smk = [str(BIN / "snakemake"), "-j2", "--configfile", "conf/smoke.yaml"]
    dvc = str(BIN / "dvc")
    pipeline = dvc_file("smoke")

    # 1. Snakemake builds everything from an empty workspace
    _run(smk, repo)
    assert all((repo / p).is_file() for p in outputs), [p for p in outputs if not (repo / p).is_file()]
    for n in (1, 2, 3, 11, 14, 15):
        assert f"Tab. {n}" in (repo / f"results/table{n}.md").read_text()
    assert "**object recall**" in (repo / "results/criteria.md").read_text()
    report = (repo / "reports/smoke/report.md").read_text()
    assert "## Tables" in report and "fig6/Seaquest.png" in report and "not complete" not in report
    assert "## Saliency criteria" in report and "saliency_quality/Seaquest.png" in report
    by_snakemake = _digests(repo, outputs)
    record = yaml.safe_load((repo / "results/smoke/runs/spirl/400k/Seaquest/1/run.json").read_text())
    assert record["job"]["seeds"] == [0, 1]  # runtime.seeds_per_job: 2 trained spirl's two seeds in one job

    # 2. the sync step records Snakemake's outputs in DVC's lock: DVC has nothing to do
    _run([dvc, "commit", "-f", pipeline], repo)
    assert "up to date" in _run([dvc, "status", pipeline], repo)

    # 3. DVC builds everything again from an empty workspace: the same bytes
    _clean(repo)
    _run([dvc, "repro", pipeline], repo)
    dvc_outputs = [p for job in planned if not job.stage.published for p in job.outputs.values()]
    assert _digests(repo, dvc_outputs) == {p: d for p, d in by_snakemake.items() if p in dvc_outputs}

    # 4. after the other sync step (make sync-smk: snakemake --touch, then the publish copies that only the
    # paper profile's dvc.yaml owns), neither tool has anything to do
    _run([*smk[:1], "-j1", "--touch", *smk[2:]], repo)
    ran = _run([*smk[:1], "-j1", *smk[2:]], repo)
    assert "rule publish:" in ran and "rule train" not in ran and "rule table:" not in ran
    assert "Nothing to be done" in _run([*smk[:1], "-n", *smk[2:]], repo)
    assert "up to date" in _run([dvc, "status", pipeline], repo)

    # 5. the DVC remote: push; a fresh clone pulls every artefact, byte for byte, and neither tool has work to do
    remote = repo.parent / f"{repo.name}-remote"
    _run([dvc, "remote", "add", "--default", "--force", "shared", str(remote)], repo)  # = make dvc-remote REMOTE=…
    _run(["git", "add", "-A"], repo)
    _run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "smoke run, remote"], repo)
    _run([dvc, "push", pipeline], repo)
    clone = repo.parent / f"{repo.name}-clone"
    _run(["git", "clone", "-q", str(repo), str(clone)], repo.parent)
    assert not (clone / "results").exists()  # git holds no artefact
    _run([dvc, "pull", pipeline], clone)
    assert _digests(clone, dvc_outputs) == _digests(repo, dvc_outputs)
    assert "up to date" in _run([dvc, "status", pipeline], clone)
    _run([*smk[:1], "-j1", "--touch", *smk[2:]], clone)  # make sync-smk
    _run([*smk[:1], "-j1", *smk[2:]], clone)
    assert "Nothing to be done" in _run([*smk[:1], "-n", *smk[2:]], clone)

    # 6. a report-params change makes both tools plan the report's jobs (and nothing upstream) again
    smoke = repo / "conf" / "smoke.yaml"
    smoke.write_text(smoke.read_text().replace("bootstrap_reps: 50", "bootstrap_reps: 60"))
    plan = _run([*smk[:1], "-n", *smk[2:]], repo)
    assert "rule table:" in plan and "rule train" not in plan and "rule collect:" not in plan
    status = _run([dvc, "status", pipeline], repo)
    assert "changed deps" in status and "table-table2" in status and "train-" not in status
    # ... and as a DVC experiment on the committed state: it re-runs only those stages and is listed with its params
    smoke.write_text(smoke.read_text().replace("bootstrap_reps: 60", "bootstrap_reps: 50"))
    ran = _run([dvc, "exp", "run", pipeline, "-n", "reps60", "-S", "conf/smoke.yaml:report.bootstrap_reps=60"], repo)
    assert f"Running stage '{pipeline}:table-table2'" in ran and f"Running stage '{pipeline}:train-" not in ran
    assert f"Stage '{pipeline}:train-spirl-100k-Seaquest-0-1' didn't change, skipping" in ran
    shown = _run([dvc, "exp", "show", "--no-pager", "--csv"], repo)
    assert "reps60" in shown and "report.bootstrap_reps" in shown

    # 7. DVC's own views list every run's final score and every declared curve
    _check_dvc_results(repo, planned)


def _declared(planned: list[Job], kinds: dict) -> dict[str, dict]:
    """Path -> the declaration (METRICS or PLOTS entry) of each such output of the DVC-run jobs."""
    out = {}
    for job in planned:
        for name, template in job.stage.outputs.items():
            if name in kinds.get(job.stage.name, ()) and not job.stage.published:
                decl = kinds[job.stage.name]
                for wc in job.seed_wildcards:
                    out[fill(template, job.profile, wc)] = decl[name] if isinstance(decl, dict) else {}
    return out


def _axis_fields(node: object, axis: str) -> set[str]:
    """Every field a Vega-Lite spec encodes on `axis` ("x" or "y"), wherever its template nests the encoding."""
    found = set()
    if isinstance(node, dict):
        enc = node.get(axis)
        if isinstance(enc, dict) and isinstance(enc.get("field"), str):
            found.add(enc["field"])
        for value in node.values():
            found |= _axis_fields(value, axis)
    elif isinstance(node, list):
        for value in node:
            found |= _axis_fields(value, axis)
    return found


def _check_dvc_results(repo: Path, planned: list[Job]) -> None:
    """`dvc metrics show`, `dvc exp show` and `dvc plots show` (--json) on the built workspace."""
    dvc = str(BIN / "dvc")
    with (repo / "results/smoke/runs.csv").open() as f:
        runs = {tuple(r[k] for k in ("variant", "regime", "game", "seed")): r for r in csv.DictReader(f)}
    evals = _declared(planned, METRICS)
    expected = {}  # eval.json path -> the run's names, metric and final score (runs.csv: SPEC §10's final metric)
    for job in (j for j in planned if j.stage is TRAIN):
        for wc in job.seed_wildcards:
            row = runs[(wc["variant"], wc["regime"], wc["game"], wc["seed"])]
            assert row["status"] == "complete", row
            expected[fill(TRAIN.outputs["eval"], "smoke", wc)] = {
                "variant": wc["variant"], "regime": wc["regime"], "game": wc["game"], "seed": int(wc["seed"]),
                "metric": row["metric"], "score": float(row["score"])}
    assert set(evals) == set(expected) and len(expected) == len(runs)  # every run's eval.json is a metrics file
    assert {r["metric"] for r in runs.values()} == {"final_mean", "best_median"}  # both of SPEC §10's metrics

    def smoke_metrics(files: dict) -> dict:
        """The metrics of this profile's files (the other profiles' dvc.yaml declare theirs, not built here)."""
        ours = {path: result for path, result in files.items() if path.startswith("results/smoke/")}
        assert all("error" not in result for result in ours.values()), ours
        return {path: result["data"] for path, result in ours.items()}

    shown = _json([dvc, "metrics", "show", "--json"], repo)
    assert smoke_metrics(shown[""]["data"]) == expected

    rows = _json([dvc, "exp", "show", "--json", "--no-pager"], repo)  # the workspace, then HEAD with its experiments
    (workspace,) = [row for row in rows if row["rev"] == "workspace"]
    (head,) = [row for row in rows if row["rev"] != "workspace"]
    (reps60,) = [rev for exp in head["experiments"] or () for rev in exp["revs"] if rev["name"] == "reps60"]
    for row in (workspace, head, reps60):
        assert smoke_metrics(row["data"]["metrics"]) == expected, row["rev"]
    assert reps60["data"]["params"]["conf/smoke.yaml"]["data"]["report"]["bootstrap_reps"] == 60
    assert head["data"]["params"]["conf/smoke.yaml"]["data"]["report"]["bootstrap_reps"] == 50

    plots = _json([dvc, "plots", "show", "--json"], repo)
    declared = _declared(planned, PLOTS)
    progress = {fill(TRAIN.outputs["progress"], "smoke", wc) for j in planned if j.stage is TRAIN
                for wc in j.seed_wildcards}
    assert progress <= set(declared) and len(progress) == len(runs)  # every run's learning curve is a plot
    assert not [e for e in plots.get("errors", []) if e["name"] in declared], plots.get("errors")
    for path, props in declared.items():
        (plot,) = plots["data"][path]  # one plot: this path's
        content = plot["content"]
        assert _axis_fields(content, "x") == {props["x"]} and _axis_fields(content, "y") == {props["y"]}, path
        with (repo / path).open() as f:
            rows_csv = list(csv.DictReader(f))
        assert rows_csv, path
        values = [{k: v for k, v in row.items() if k != "rev"} for row in content["data"]["values"]]
        assert values == rows_csv, path  # the file's every row, its x and y columns among them
