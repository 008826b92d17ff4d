"""The Makefile's maintenance targets and the scripts they call (workflow/scripts/).

`desk-evidence` copies a run's records (never weights, models or frames) under reports/desk/ and `desk-restore` puts
them back where the pipeline reads them without overwriting (desk_evidence.py); `tables-now` and `report-now` run
the plan's jobs of some stages (run_stages.py); `dvc-repro` (alias `dvc-smoke`) reproduces the PROFILE's dvc.yaml.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from spirl.params import REPO_ROOT, load_params
from spirl.workflow import plan as P

RUN = Path("runs/spirl/100k/Frostbite/0")
MAE, WU = Path("mae/Frostbite"), Path("wu/Frostbite")
SCRIPTS = REPO_ROOT / "workflow" / "scripts"
needs_make = pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _make(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "--no-print-directory", *args], cwd=root, check=check, capture_output=True,
                          text=True)


def _script(name: str):
    """A workflow/scripts/ script imported as a module."""
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _files(folder: Path) -> set[Path]:
    return {p.relative_to(folder) for p in folder.rglob("*") if p.is_file()}


def _checkout(tmp_path: Path) -> Path:
    """The Makefile and the evidence script in an empty folder (what the desk targets need)."""
    shutil.copy(REPO_ROOT / "Makefile", tmp_path / "Makefile")
    (tmp_path / "workflow/scripts").mkdir(parents=True)
    shutil.copy(SCRIPTS / "desk_evidence.py", tmp_path / "workflow/scripts/desk_evidence.py")
    return tmp_path


@needs_make
def test_desk_evidence_then_restore_round_trips_the_records_only(tmp_path):
    root = _checkout(tmp_path)
    records = {("results", RUN / name): f"{name} of the run" for name in ("eval.json", "progress.csv", "run.json")}
    records |= {("results", Path(p)): text for p, text in [
        ("mr/Frostbite/mr.json", "mr"), ("mr/Frostbite/frame_diff/mr.json", "mr*"), ("tables/table2.csv", "table"),
        ("tables/table2.md", "table md"), ("runs.csv", "runs"), ("saliency_quality/Frostbite.json", "recall"),
        ("saliency_quality.csv", "recall table"), ("agent_saliency/spirl/100k/Frostbite/0.json", "shares"),
        ("agent_saliency.md", "shares table")]}
    records |= {("data", Path(p)): text for p, text in [
        (MAE / "loss.csv", "loss"), (MAE / "run.json", "mae run"), (WU / "loss.csv", "wu loss"),
        (WU / "run.json", "wu run"), ("frames/Frostbite/run.json", "frames run"),
        ("objects/Frostbite/run.json", "objects run")]}
    others = [("results", RUN / "weights.npz"), ("results", Path("mr/Frostbite/ks.npz")),
              ("results", Path("scores.csv")), ("data", MAE / "model.npz"), ("data", WU / "model.npz"),
              ("data", Path("frames/Frostbite/frames.npz")), ("data", Path("objects/Frostbite/objects.npz"))]
    for (kind, path), text in records.items():
        _write(root / kind / "desk" / path, text)
    for kind, path in others:
        _write(root / kind / "desk" / path, "not a record")

    _make(root, "desk-evidence")
    reports = root / "reports/desk"
    assert _files(reports) == {Path(kind) / path for kind, path in records}  # the records, nothing else
    for (kind, path), text in records.items():
        assert (reports / kind / path).read_text() == text

    _write(root / "results/desk/runs.csv", "runs, a later aggregate")  # a second save replaces the older copy
    _make(root, "desk-evidence")
    assert (reports / "results/runs.csv").read_text() == "runs, a later aggregate"
    records["results", Path("runs.csv")] = "runs, a later aggregate"

    shutil.rmtree(root / "results")
    shutil.rmtree(root / "data")
    _write(root / "results/desk" / RUN / "eval.json", "a newer evaluation")  # exists: restore must leave it alone
    _make(root, "desk-restore")
    for (kind, path), text in records.items():
        assert (root / kind / "desk" / path).read_text() == ("a newer evaluation" if path.name == "eval.json" else text)
    assert _files(root / "results") | _files(root / "data") == {Path("desk") / path for _, path in records}
    assert not [p for p in root.rglob("*.npz")]


@needs_make
def test_desk_models_saves_the_models_or_the_wu_checkpoint_and_restore_puts_them_back(tmp_path):
    root = _checkout(tmp_path)
    _write(root / "data/desk" / MAE / "model.npz", "mae weights")
    _write(root / "work/desk" / WU / "checkpoint.pt", "wu checkpoint at update 9000")
    _write(root / "data/desk/frames/Frostbite/frames.npz", "frames: never saved")
    _write(root / "results/desk/runs.csv", "runs")  # `restore` needs the records folders too
    _write(root / "data/desk/frames/Frostbite/run.json", "frames run")
    _make(root, "desk-evidence")
    _make(root, "desk-models", "GAME=Frostbite")
    models = root / "reports/desk/models"
    assert _files(models) == {Path("data") / MAE / "model.npz", Path("work") / WU / "checkpoint.pt"}
    _write(root / "data/desk" / WU / "model.npz", "wu weights")  # training finished: the model, not the checkpoint
    shutil.rmtree(models)
    _make(root, "desk-models")
    assert _files(models) == {Path("data") / MAE / "model.npz", Path("data") / WU / "model.npz"}
    _write(models / "work" / WU / "checkpoint.pt", "an older checkpoint")
    for folder in ("data", "work", "results"):
        shutil.rmtree(root / folder)
    _write(root / "data/desk" / MAE / "model.npz", "a newer MAE")  # exists: left alone
    _make(root, "desk-restore")
    assert (root / "data/desk" / MAE / "model.npz").read_text() == "a newer MAE"
    assert (root / "data/desk" / WU / "model.npz").read_text() == "wu weights"
    assert (root / "work/desk" / WU / "checkpoint.pt").read_text() == "an older checkpoint"
    assert (root / "results/desk/runs.csv").read_text() == "runs"
    assert _make(root, "desk-models", "GAME=Seaquest", check=False).returncode != 0  # nothing of that game


@needs_make
def test_desk_evidence_without_results_fails_naming_the_folder(tmp_path):
    root = _checkout(tmp_path)
    (root / "data/desk").mkdir(parents=True)
    proc = _make(root, "desk-evidence", check=False)
    assert proc.returncode != 0 and "results/desk does not exist" in proc.stderr
    assert not (root / "reports").exists()  # nothing half-saved
    proc = _make(root, "desk-restore", check=False)
    assert proc.returncode != 0 and "reports/desk/results, reports/desk/data does not exist" in proc.stderr


def test_run_stages_runs_exactly_the_plans_jobs_of_the_stages_in_plan_order():
    """`make report-now PROFILE=desk`'s jobs are the desk plan's aggregate, table, publish, figures and report jobs."""
    stages = ["report", "aggregate", "table", "publish", "figures"]  # any order: the plan's order decides
    proc = subprocess.run([sys.executable, str(SCRIPTS / "run_stages.py"), "--profile", "desk", "--stages", *stages,
                           "--dry-run"], capture_output=True, text=True, check=True, cwd="/")
    desk = load_params([REPO_ROOT / f for f in P.param_files("desk")])
    expected = [job.cmd for job in P.jobs(desk) if job.stage.name in stages]
    assert proc.stdout.splitlines() == expected
    assert [c.split()[2] for c in expected[:2]] == ["src/aggregate_scores.py", "src/make_tables.py"]
    assert len(expected) == 1 + 2 * len(desk.experiment.built_tables) + 1 + 1


def test_run_stages_stops_at_the_first_failing_job_with_its_status(tmp_path, capsys):
    run_stages = _script("run_stages")
    log = tmp_path / "ran.txt"
    jobs = [SimpleNamespace(name=f"job{i}", cmd=f"echo {i} >> {log}" + (" && exit 3" if i == 1 else ""), log="-")
            for i in range(3)]
    assert run_stages.run(jobs) == 3
    assert log.read_text().split() == ["0", "1"]  # job2 never ran
    assert "job job1 failed (exit status 3)" in capsys.readouterr().err


@pytest.mark.parametrize(("args", "message"), [
    (["--profile", "nope", "--stages", "table"], "--profile 'nope': conf/nope.yaml does not exist; allowed: ["),
    (["--profile", "desk", "--stages", "tables"], "--stages ['tables']: not a stage; allowed: ['collect',"),
])
def test_run_stages_refuses_an_unknown_profile_or_stage(args, message):
    proc = subprocess.run([sys.executable, str(SCRIPTS / "run_stages.py"), *args], capture_output=True, text=True)
    assert proc.returncode == 2 and message in proc.stderr


@needs_make
@pytest.mark.parametrize(("target", "profile", "line"), [
    ("dvc-smoke", "smoke", "dvc repro pipelines/smoke/dvc.yaml"),
    ("dvc-smoke", "desk", "dvc repro pipelines/desk/dvc.yaml"),
    ("dvc-repro", "full", "dvc repro dvc.yaml"),
    ("report-now", "desk", "workflow/scripts/run_stages.py --profile desk --stages aggregate table publish figures "
                           "report"),
    ("tables-now", "rehearsal", "workflow/scripts/run_stages.py --profile rehearsal --stages table publish"),
])
def test_profile_targets_follow_profile(tmp_path, target, profile, line):
    shutil.copy(REPO_ROOT / "Makefile", tmp_path / "Makefile")
    (tmp_path / "pyproject.toml").touch()  # what `setup` depends on (make -n only prints its recipe)
    out = _make(tmp_path, "-n", target, f"PROFILE={profile}").stdout.splitlines()
    assert [s for s in out if s.endswith(line)] != [], out


@pytest.mark.parametrize("name", ["desk_evidence", "run_stages", "adopt_runs"])
def test_scripts_explain_themselves(name):
    proc = subprocess.run([sys.executable, str(SCRIPTS / f"{name}.py"), "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.startswith("usage:")


def test_adopt_runs_copies_a_run_whose_parameters_equal_the_target_and_refuses_others(tmp_path):
    import json

    adopt_runs = _script("adopt_runs")
    assert adopt_runs.differences({"a": {"b": 1, "c": 2}}, {"a": {"b": 1, "c": 3, "d": 4}}, "s") == \
        ["s.a.c: recorded 2, now 3", "s.a.d (only now)"]
    target = {"replay": {"new_priority": "one", "alpha": 0.5}, "train": {"lr": 1e-4}}
    source = tmp_path / "src" / "100k" / "Frostbite" / "0"
    source.mkdir(parents=True)
    run = {"wildcards": {"variant": "old", "seed": 0}, "seeds": {"env": 7}, "params": {**target, "wu": {"x": 1}}}
    (source / "run.json").write_text(json.dumps(run))
    (source / "eval.json").write_text(json.dumps({"variant": "old", "seed": 0, "score": 242.8}))
    (source / "progress.csv").write_text("env_step,episode\n1,0\n")
    out = tmp_path / "out"
    adopt_runs.adopt(source, out, target, "de_rainbow", ("replay", "train"))  # `wu` is not compared
    evaluation, record = json.loads((out / "eval.json").read_text()), json.loads((out / "run.json").read_text())
    assert (evaluation["variant"], evaluation["score"], record["wildcards"]["variant"]) == ("de_rainbow", 242.8,
                                                                                            "de_rainbow")
    assert evaluation["adopted_from"]["variant"] == "old" and record["adopted_from"]["seed_streams"] == {"env": 7}
    assert (out / "progress.csv").read_text() == (source / "progress.csv").read_text()
    with pytest.raises(FileExistsError, match="nothing written"):
        adopt_runs.adopt(source, out, target, "de_rainbow", ("replay", "train"))
    other = {**target, "replay": {"new_priority": "max", "alpha": 0.5}}
    with pytest.raises(ValueError, match=r"replay.new_priority: recorded 'one', now 'max'"):
        adopt_runs.adopt(source, tmp_path / "elsewhere", other, "de_rainbow", ("replay", "train"))
    assert not (tmp_path / "elsewhere").exists()
