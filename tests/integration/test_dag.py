"""The DAG: Snakemake's real plan equals DVC's stages, and bad params stop Snakemake before any job."""

from __future__ import annotations

import copy
import functools
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from spirl.params import REPO_ROOT as ROOT
from spirl.params import load_params
from spirl.workflow.dvc import dvc_file
from spirl.workflow.plan import STAGES, TRAIN, fill, jobs, param_files, table_runs

BIN = Path(sys.executable).parent
ENV = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "PYTHONHASHSEED": "0"}
PROFILES = ["full", "smoke", "desk"]


def _run(args: list[str], cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=300)


def snakemake_plan(profile: str, cwd: Path = ROOT, targets: tuple[str, ...] = ()) -> dict[frozenset, dict]:
    """Jobs of `snakemake -n -p --forceall [targets]` keyed by their output set: rule, inputs, command (a copy:
    each plan is asked of Snakemake once per module, the paper profile's taking seconds)."""
    return copy.deepcopy(_snakemake_plan(profile, cwd, targets))


@functools.cache
def _snakemake_plan(profile: str, cwd: Path, targets: tuple[str, ...]) -> dict[frozenset, dict]:
    args = [str(BIN / "snakemake"), *targets, "-n", "-p", "--forceall", "-c1"]
    if profile != "full":
        args += ["--configfile", f"conf/{profile}.yaml"]
    proc = _run(args, cwd)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    jobs: dict[frozenset, dict] = {}
    for block in re.split(r"\n(?=(?:local)?rule \w+:\n)", proc.stdout + proc.stderr):
        head = re.match(r"(?:local)?rule (\w+):\n", block)
        if not head or head.group(1) == "all":
            continue
        fields = dict(re.findall(r"^    (\w+): (.*)$", block, flags=re.M))
        cmd = re.search(r"^Shell command: (.*)$", block, flags=re.M)
        outputs = frozenset(fields["output"].split(", "))
        jobs[outputs] = {"rule": head.group(1), "inputs": set(fields.get("input", "").split(", ")) - {""},
                         "cmd": cmd.group(1).strip() if cmd else None}
    return jobs


def dvc_plan(profile: str, root: Path = ROOT) -> dict[frozenset, dict]:
    """Stages of the profile's DVC file keyed by their output set: name, deps, params, command, and the outputs
    DVC shows (metrics: paths; plots: path -> x, y), and which outputs are cached."""
    target = str((root / dvc_file(profile)).resolve())
    return {outputs: stage for outputs, (path, stage) in _dvc_stages(root).items() if path == target}


@functools.cache
def _dvc_stages(root: Path) -> dict[frozenset, tuple[str, dict]]:
    """Every stage of every DVC file under root (one load of DVC's index), with the file it is in."""
    from dvc.dependency.param import ParamsDependency
    from dvc.repo import Repo

    stages: dict[frozenset, tuple[str, dict]] = {}
    rel = lambda p: os.path.relpath(p, root)  # noqa: E731
    with Repo(str(root)) as repo:
        for stage in repo.index.stages:
            deps = {rel(d.fs_path) for d in stage.deps if not isinstance(d, ParamsDependency)}
            params = {rel(d.fs_path): set(d.params) for d in stage.deps if isinstance(d, ParamsDependency)}
            outputs = frozenset(rel(o.fs_path) for o in stage.outs)
            stages[outputs] = (str(Path(stage.dvcfile.path).resolve()), {
                "name": stage.name, "deps": deps, "params": params, "cmd": stage.cmd,
                "metrics": {rel(o.fs_path) for o in stage.outs if o.metric},
                "plots": {rel(o.fs_path): {k: o.plot.get(k) for k in ("x", "y")} if isinstance(o.plot, dict) else {}
                          for o in stage.outs if o.plot},
                "uncached": {rel(o.fs_path) for o in stage.outs if not o.use_cache}})
    return stages


def test_committed_dvc_files_are_current():
    proc = _run([sys.executable, "src/sync_dvc_yaml.py", "--check"])
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("profile", PROFILES)
def test_snakemake_and_dvc_plan_the_same_jobs(profile):
    smk, dvc = snakemake_plan(profile), dvc_plan(profile)
    assert smk, "Snakemake planned no job"
    if profile != "full":  # the published copies (results/tableN.*) belong to the paper profile's dvc.yaml
        published = {o for o, j in smk.items() if STAGES[j["rule"]].published}
        assert len(published) == len(load_params([ROOT / f for f in param_files(profile)]).experiment.built_tables)
        smk = {o: j for o, j in smk.items() if o not in published}
    assert set(smk) == set(dvc), "outputs differ"
    for outputs, job in smk.items():
        stage = dvc[outputs]
        assert job["cmd"] == stage["cmd"], (job["cmd"], stage["cmd"])
        assert job["inputs"] == stage["deps"], (outputs, job["inputs"] ^ stage["deps"])
        assert f"--params {' '.join(param_files(profile))} " in job["cmd"]
        rule_stage = STAGES[job["rule"]]
        assert set(rule_stage.code) <= stage["deps"]
        wildcards = {w: re.search(rf"--{w} (\S+)", job["cmd"]).group(1) for w in rule_stage.wildcards}
        assert stage["params"]["params.yaml"] == {s.format(**wildcards) for s in rule_stage.sections}


@pytest.mark.parametrize("profile", PROFILES)
def test_dvc_shows_each_runs_score_and_curve(profile):
    """In DVC's own loading of the profile's file: every training run's eval.json is a metrics file and its
    progress.csv a plot (x env_step, y return_raw), each table's CSV and pre-training loss a plot; all of them
    cached (pushed and pulled like the other outputs); only the evidence profile's reports/ are left uncached."""
    params = load_params([ROOT / f for f in param_files(profile)])
    planned = [j for j in jobs(params) if profile == "full" or not j.stage.published]
    dvc = dvc_plan(profile)
    metrics = {p for s in dvc.values() for p in s["metrics"]}
    plots = {p: xy for s in dvc.values() for p, xy in s["plots"].items()}
    train = [wc for j in planned if j.stage is TRAIN for wc in j.seed_wildcards]
    assert metrics == {fill(TRAIN.outputs["eval"], profile, wc) for wc in train}
    assert len(metrics) == len(train) > 0
    expected = {fill(TRAIN.outputs["progress"], profile, wc): {"x": "env_step", "y": "return_raw"} for wc in train}
    for job in planned:
        if job.stage.name == "table":
            expected[job.outputs["csv"]] = {"x": "paper_mean", "y": "mean"}
        if job.stage.name in ("pretrain_mae", "pretrain_wu"):
            expected[job.outputs["loss-csv"]] = {"x": "epoch", "y": "loss"}
    assert plots == expected
    uncached = {p for s in dvc.values() for p in s["uncached"]}
    assert uncached == ({p for j in planned for p in j.outputs.values() if p.startswith("reports/desk/")}
                        if profile == "desk" else set())
    assert not uncached & (metrics | set(plots))


def test_paper_profile_plans_every_per_game_stage_for_the_four_games():
    smk = snakemake_plan("full")
    for rule in ["collect", "pretrain_mae", "estimate_mr", "saliency_figures", "pretrain_wu", "objects",
                 "saliency_quality"]:
        games = sorted(re.search(r"--game (\w+)", j["cmd"]).group(1) for j in smk.values() if j["rule"] == rule)
        assert games == ["BattleZone", "Frostbite", "MsPacman", "Seaquest"], rule
    scorers = sorted(re.search(r"--scorer (\w+)", j["cmd"]).group(1) for j in smk.values()
                     if j["rule"] == "estimate_mr_scorer")
    assert scorers == sorted(["mae_untrained", "frame_diff", "random", "wu_mask"] * 4)  # SPEC §13: one mr* each
    runs = [re.findall(r"--(variant|regime|game|seed) (\S+)", j["cmd"]) for j in smk.values() if j["rule"] == "train"]
    # Tables 1, 2, 3, 11, 14, 15; the criteria table's 3 scorer variants, the MLR table's 3 variants and the
    # space-time table's 2 aggregators, each x 4 games x 5 seeds
    assert len(runs) == 330 + 60 + 60 + 40
    seeds = {}
    for run in map(dict, runs):
        seeds.setdefault(run["variant"], set()).add(int(run["seed"]))
    assert seeds["de_rainbow"] == set(range(10)) and seeds["spirl"] == set(range(5))
    assert {len(s) for v, s in seeds.items() if v != "de_rainbow"} == {5}
    (fig8,) = [j for j in smk.values() if j["rule"] == "fig8"]
    assert all(f"results/full/mr/{g}/mr.json" in fig8["inputs"] for g in ["Frostbite", "BattleZone"])
    proc = _run([str(BIN / "dvc"), "repro", "--dry", "--force", "dvc.yaml"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    dvc_cmds = set(re.findall(r"^> (.*)$", proc.stdout, flags=re.M))
    assert dvc_cmds == {j["cmd"] for j in smk.values()}


def test_table2_plans_exactly_the_runs_table2_needs():
    """`snakemake -n results/table2.csv` with the committed params: Tab. 2's runs, nothing else trained."""
    params = load_params([ROOT / f for f in param_files("full")])
    smk = snakemake_plan("full", targets=("results/table2.csv",))
    planned = {tuple(re.search(rf"--{w} (\S+)", j["cmd"]).group(1) for w in ("variant", "regime", "game", "seed"))
               for j in smk.values() if j["rule"] == "train"}
    needed = {tuple(r.values()) for r in table_runs(params, "table2")}
    assert planned == needed
    assert len(needed) == 4 * (10 + 5 + 5 + 5)  # DE-Rainbow 10 seeds; DE-Rainbow-P, SPIRL 100K and 400K 5 each
    assert {j["rule"] for j in smk.values()} == {"collect", "pretrain_mae", "estimate_mr", "train", "table",
                                                 "publish"}


def test_seeds_per_job_groups_consecutive_seeds_into_one_job(tmp_path):
    """runtime.seeds_per_job: 4 on the paper profile: Tab. 2's 100 runs become 36 jobs (10 seeds: 0-3, 4-7, 8-9;
    5 seeds: 0-3, 4-4), each writing its seeds' usual files; Snakemake and DVC plan the same jobs."""
    root = tmp_path / "repo"
    root.mkdir()
    for name in ["Snakefile", "params.yaml", "dvc.yaml"]:
        shutil.copy(ROOT / name, root / name)
    for name in ["workflow", "src", "conf", "profiles", "pipelines", "data/reference"]:
        shutil.copytree(ROOT / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    text = (root / "params.yaml").read_text()
    (root / "params.yaml").write_text(re.sub(r"seeds_per_job: 1 ", "seeds_per_job: 4 ", text))
    assert _run([str(BIN / "dvc"), "init", "--no-scm", "-q"], cwd=root).returncode == 0
    proc = _run([sys.executable, "src/sync_dvc_yaml.py"], cwd=root)
    assert proc.returncode == 0, proc.stderr
    smk = snakemake_plan("full", cwd=root, targets=("results/table2.csv",))
    train = [j for j in smk.values() if j["rule"].startswith("train")]
    assert len(train) == 4 * (3 + 3 * 2)
    assert {j["rule"] for j in train} == {"train_seeds_0_3", "train_seeds_4_7", "train_seeds_8_9", "train_seeds_4_4"}
    runs = set()
    for job in train:
        words = job["cmd"].split()
        option = lambda name, w=words: w[w.index(name) + 1:next(  # noqa: E731
            (i for i in range(w.index(name) + 1, len(w)) if w[i].startswith("--")), len(w))]
        seeds, evals = option("--seed"), option("--out-eval")
        (variant,), (regime,), (game,) = option("--variant"), option("--regime"), option("--game")
        assert len(seeds) in (1, 2, 4) and option("--work") == [f"work/full/runs/{variant}/{regime}/{game}/{s}"
                                                                  for s in seeds]
        assert evals == [f"results/full/runs/{variant}/{regime}/{game}/{s}/eval.json" for s in seeds]
        runs |= {(variant, regime, game, s) for s in seeds}
    params = load_params([ROOT / f for f in param_files("full")])
    assert runs == {tuple(r.values()) for r in table_runs(params, "table2")}
    dvc = dvc_plan("full", root)
    for outputs, job in smk.items():
        if job["rule"].startswith("train"):
            assert dvc[outputs]["cmd"] == job["cmd"] and dvc[outputs]["deps"] == job["inputs"]


def test_outputs_are_namespaced_per_profile():
    for profile in PROFILES:
        params = load_params([ROOT / f for f in param_files(profile)])
        for outputs, job in snakemake_plan(profile).items():
            if STAGES[job["rule"]].published:  # the active profile's tables at results/tableN.csv and .md
                assert all(re.fullmatch(r"results/(table\d+|table_mlr|table_st|criteria)\.(csv|md)", o)
                           for o in outputs), outputs
                continue
            assert all(o.startswith((f"data/{profile}/", f"results/{profile}/", f"reports/{profile}/"))
                       for o in outputs), outputs
        assert params.experiment.profile == profile


# --- a bad params.yaml stops Snakemake before any job ---------------------------------------------

BAD = {
    "unknown": (lambda p: p["collect"].update(frames_per_gam={}), "frames_per_gam"),
    "mistyped": (lambda p: p["atari"].update(frame_skip="four"), "atari.frame_skip"),
    "missing": (lambda p: p["collect"].pop("first_life_only"), "first_life_only"),
}


@pytest.fixture(scope="module")
def workflow_copy(tmp_path_factory) -> Path:
    """A copy of what Snakemake reads, to break params.yaml in."""
    root = tmp_path_factory.mktemp("repo")
    for name in ["Snakefile", "params.yaml"]:
        shutil.copy(ROOT / name, root / name)
    for name in ["workflow", "src", "conf", "profiles"]:
        shutil.copytree(ROOT / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    return root


@pytest.mark.parametrize("kind", sorted(BAD))
def test_bad_params_fail_snakemake_before_any_job(workflow_copy, kind):
    mutate, key = BAD[kind]
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    mutate(params)
    (workflow_copy / "params.yaml").write_text(yaml.safe_dump(params))
    proc = _run([str(BIN / "snakemake"), "-n", "-c1"], cwd=workflow_copy)
    assert proc.returncode != 0
    assert "ConfigError" in proc.stderr + proc.stdout and key in proc.stderr + proc.stdout
    assert "Job stats" not in proc.stdout + proc.stderr
    assert not (workflow_copy / "data").exists()


def test_config_overrides_outside_conf_are_refused(workflow_copy):
    shutil.copy(ROOT / "params.yaml", workflow_copy / "params.yaml")
    (workflow_copy / "extra.yaml").write_text("collect: {seed: 3}\n")  # valid, but the jobs would not see it
    proc = _run([str(BIN / "snakemake"), "-n", "-c1", "--configfile", "extra.yaml"], cwd=workflow_copy)
    assert proc.returncode != 0
    assert "differs from params.yaml + conf/full.yaml" in proc.stdout + proc.stderr
