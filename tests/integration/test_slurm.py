"""The cluster path, run for real: a one-node SLURM cluster (workflow/scripts/slurm_cluster.sh, Debian's slurm 22.05)
executes a slice of the smoke DAG through `snakemake --workflow-profile profiles/slurm`.

The slice crosses every rule kind (frame collection, MAE pre-training, the mr estimate, Figs. 2/3/8, one SPIRL
training run, aggregate, a table and its published copy, the figures, Fig. 6, the report: 12 jobs) in a scratch copy
of the repo whose smoke overlay is shrunk (one game, a 32-px frame, a 600-step run checkpointed every 100 steps,
Tab. 14 narrowed to its SPIRL column). The profile is the documented one, unchanged; two command-line flags fit it
to this cluster: `--slurm-status-command squeue` (the cluster logs finished jobs to a file for `sacct -c`, it has no
slurmdbd for plain `sacct`) and `--slurm-init-seconds-before-status-checks 4` (seconds-long jobs; the
plugin then waits 10 s longer at each check that finds no job finished). The node offers a
fake `gres gpu:2`, so the profile's GPU partition and `--gpus=1` are scheduled for real (the jobs run on the CPU).

Three Snakemake runs, two of them on the cluster at the same time:
- local: the slice with plain `snakemake -j2` (the reference bytes);
- cluster: the same slice through SLURM; once the training job has written its first checkpoint, the test
  `scancel`s it: the profile's retries resubmit it and it resumes from the checkpoint;
- bad: MAE pre-training with a bad parameter (mae.batch_size 512 > the 200 collected frames), which the config
  guards cannot know and the job rejects: it fails once per attempt, each time with its log in Snakemake's output.
The checks: every job went through sbatch (sacct -c lists each, in the partition, with the time limit, CPUs, memory
and GPU the profile asks for); the cluster's outputs are byte-identical to the local ones (wall-time records aside);
the cancelled run resumed and ends byte-identical; the bad job failed retries + 1 times, loudly; and stopping the
cluster leaves no daemon running.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from spirl.params import REPO_ROOT as ROOT
from spirl.params import load_params
from spirl.workflow.plan import jobs, param_files

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
ENV = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "PYTHONHASHSEED": "0"}
SCRIPT = ROOT / "workflow" / "scripts" / "slurm_cluster.sh"
PROFILE = yaml.safe_load((ROOT / "profiles" / "slurm" / "config.yaml").read_text())
COPY = ["Snakefile", "params.yaml", "pyproject.toml"]
COPY_DIRS = ["workflow", "src", "conf", "profiles", "bench", "data/reference"]
# outputs that record wall time (mr.json: its estimate is compared on its own)
TIMED = ("run.json", "mr.json", "table1.csv", "table1.md", "report.md")
DAEMONS = ("munged", "slurmctld", "slurmd", "slurmstepd")
TOTAL_STEPS, CHECKPOINT_EVERY = 600, 100
RUN = "spirl/100k/Seaquest/0"

SLICE = {
    "experiment": {"games": ["Seaquest"], "build_tables": ["table14"],
                   "tables": {"table14": {"runs": [{"variant": "spirl", "regime": "100k"}]}}},
    "atari": {"frame_size_px": 32, "max_episode_agent_steps": 30},
    "collect": {"frames_per_game": {"Seaquest": 200}},
    "mae": {"epochs": 1, "warmup_epochs": 0},
    "train": {"learn_start_env_steps": 20, "target_update_updates": 10,
              "checkpoint_every_env_steps": CHECKPOINT_EVERY,
              "regimes": {"100k": {"total_env_steps": TOTAL_STEPS, "replay_capacity_transitions": TOTAL_STEPS,
                                   "eval_every_env_steps": 300}}},
    "eval": {"n_envs": 1},
    "report": {"bootstrap_reps": 50, "fig2_frames": 1, "fig3_frames": 2, "fig6_frames": 1},
}
BAD = {"mae": {"batch_size": 512}}  # valid for the parameter model and the config checks; only the job sees 200 frames
BAD_ERROR = "ValueError: 200 frames are fewer than one batch of 512 (mae.batch_size)"
SLURM_FLAGS = ["--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "4"]


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(base.get(k, {}), v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return out


def _scratch(root: Path, overlay: dict) -> Path:
    """A copy of the pipeline whose conf/smoke.yaml is the smoke overlay with `overlay` merged in."""
    root.mkdir(parents=True)
    for name in COPY:
        shutil.copy(ROOT / name, root / name)
    for name in COPY_DIRS:
        shutil.copytree(ROOT / name, root / name, ignore=shutil.ignore_patterns("__pycache__", "tmp", "cache"))
    smoke = root / "conf" / "smoke.yaml"
    smoke.write_text(yaml.safe_dump(_merge(yaml.safe_load(smoke.read_text()), overlay), sort_keys=False))
    return root


def _processes() -> list[tuple[str, str, str]]:
    """(pid, name, command line) of every running process; one that ends while being read is skipped."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            name = (proc / "comm").read_text().strip()
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:  # not a process, or it just ended
            continue
        found.append((proc.name, name, cmd))
    return found


def _ours(state_dir: Path) -> list[str]:
    """Daemons of this cluster still running (their command line names its state folder), and any slurmstepd."""
    return [f"{pid} {cmd}" for pid, name, cmd in _processes()
            if name in DAEMONS and (name == "slurmstepd" or str(state_dir) in cmd)]


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    """The local run of the slice, started first: it runs while the cluster starts (and installs, on a fresh CI)."""
    repo = _scratch(tmp_path_factory.mktemp("slurm-local") / "local", SLICE)
    proc, out = _start([str(BIN / "snakemake"), "-j2", "--configfile", "conf/smoke.yaml"], repo, ENV,
                       repo.parent / "local.out")
    yield repo, (proc, out)
    if proc.poll() is None:  # the cluster could not start (a skip or an error): not left running
        proc.terminate()
        proc.wait(60)


@pytest.fixture(scope="module")
def cluster():
    """A one-node cluster of its own (state folder, ports); stopped, and checked stopped, at the end."""
    missing = [c for c in ("munged", "slurmctld", "slurmd", "sbatch", "sacct") if shutil.which(c) is None]
    if missing and os.geteuid() != 0:
        pytest.skip(f"SLURM/munge not installed ({', '.join(missing)} missing) and not root to apt-get them: "
                    "run as root, or `sudo make slurm-up` once (it installs them)")
    etc = Path("/etc/slurm/slurm.conf")
    if etc.exists() or etc.is_symlink():
        pytest.skip(f"{etc} exists ({'-> ' + os.readlink(etc) if etc.is_symlink() else 'a system install'}): "
                    "srun inside Snakemake's jobs would read it; stop that cluster first (make slurm-down)")
    # not under pytest's private (mode 700) folder: munged wants every folder above its socket searchable by all
    state = Path(tempfile.mkdtemp(prefix="spirl-slurm-test-"))
    state.chmod(0o755)
    env = {**ENV, "SLURM_LOCAL_DIR": str(state), "SLURM_FAKE_GPUS": "2", "SLURM_NODE_MEM_MB": "65536",
           "SLURMCTLD_PORT": "6937", "SLURMD_PORT": "6938", "SLURM_CONF": str(state / "etc" / "slurm.conf")}
    try:
        start = subprocess.run(["bash", str(SCRIPT), "start"], env=env, capture_output=True, text=True, timeout=900)
        assert start.returncode == 0, start.stdout + start.stderr
        yield env, state
    finally:
        stop = subprocess.run(["bash", str(SCRIPT), "stop"], env=env, capture_output=True, text=True, timeout=300)
        assert stop.returncode == 0 and not _ours(state), stop.stdout + stop.stderr + "\n".join(_ours(state))
        shutil.rmtree(state)


def _start(args: list[str], cwd: Path, env: dict, out: Path) -> tuple[subprocess.Popen, Path]:
    with out.open("w") as f:
        return subprocess.Popen(args, cwd=cwd, env=env, stdout=f, stderr=subprocess.STDOUT), out


def _finish(proc: subprocess.Popen, out: Path, deadline: float) -> tuple[int, str]:
    try:
        rc = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        proc.terminate()
        proc.wait(60)
        pytest.fail(f"{proc.args} timed out:\n{out.read_text()[-6000:]}")
    return rc, out.read_text()


def _cancel_training_after_first_checkpoint(repo: Path, env: dict, proc: subprocess.Popen, deadline: float) -> str:
    """Wait until the cluster's training job has written its first checkpoint, then scancel it; its SLURM id."""
    checkpoint = repo / "work" / "smoke" / "runs" / RUN / "checkpoint.pt"
    while time.monotonic() < deadline and proc.poll() is None:
        if checkpoint.is_file():
            queue = subprocess.run(["squeue", "-h", "-t", "R", "-o", "%i|%k|%Z"], env=env, capture_output=True,
                                   text=True, check=True).stdout
            ids = [i for i, comment, workdir in (line.split("|") for line in queue.splitlines())
                   if comment.startswith("rule_train") and workdir == str(repo)]
            assert len(ids) == 1, queue
            subprocess.run(["scancel", ids[0]], env=env, check=True)
            return ids[0]
        time.sleep(0.2)
    pytest.fail(f"no checkpoint {checkpoint} while the cluster run lasted")


@pytest.fixture(scope="module")
def runs(local, cluster, tmp_path_factory):
    """The three runs (local, cluster with the drill, bad parameter on the cluster), and what SLURM recorded."""
    env, state = cluster
    base = tmp_path_factory.mktemp("slurm-runs")
    on_cluster, bad = _scratch(base / "cluster", SLICE), _scratch(base / "bad", _merge(SLICE, BAD))
    on_slurm = [str(BIN / "snakemake"), "--workflow-profile", "profiles/slurm", *SLURM_FLAGS]
    deadline = time.monotonic() + 1200
    t0 = time.monotonic()
    procs = {
        "cluster": _start([*on_slurm, "--configfile", "conf/smoke.yaml"], on_cluster, env, base / "cluster.out"),
        "bad": _start([*on_slurm, "data/smoke/mae/Seaquest/model.npz", "--configfile", "conf/smoke.yaml"], bad, env,
                      base / "bad.out"),
        "local": local[1],
    }
    cancelled = _cancel_training_after_first_checkpoint(on_cluster, env, procs["cluster"][0], deadline)
    done = {name: _finish(*proc, deadline) for name, proc in procs.items()}
    print(f"\nthe cluster runs took {time.monotonic() - t0:.0f} s")
    # what SLURM knows, read before MinJobAge (10 min) drops finished jobs from slurmctld
    sacct = subprocess.run(["sacct", "-c", "-P", "-o", "jobid,jobname,partition,state,timelimit,ncpus,workdir,elapsed"],
                           env=env, capture_output=True, text=True, check=True).stdout.splitlines()
    header = sacct[0].split("|")
    records = {row["JobID"]: row for row in (dict(zip(header, line.split("|"), strict=True)) for line in sacct[1:])}
    jobcomp = (state / "log" / "jobcomp.txt").read_text()
    for job_id, row in records.items():
        row["Tres"] = re.search(rf"^JobId={job_id} .* Tres=(\S*)", jobcomp, flags=re.M).group(1)
        shown = subprocess.run(["scontrol", "show", "job", job_id], env=env, capture_output=True, text=True).stdout
        row["Comment"] = (re.findall(r"Comment=(\S+)", shown) or [""])[0]
        row["TresPerJob"] = (re.findall(r"TresPerJob=(\S+)", shown) or [""])[0]
    for job_id, row in records.items():  # shown with -s, or in a failure's captured output
        print(job_id, Path(row["WorkDir"]).name, row["Comment"], row["State"], row["Elapsed"])
    return {"dirs": {"local": local[0], "cluster": on_cluster, "bad": bad}, "rc": {k: v[0] for k, v in done.items()},
            "out": {k: v[1] for k, v in done.items()}, "sacct": records, "cancelled": cancelled}


def _submitted(out: str) -> dict[str, str]:
    """SLURM job id -> rule, from Snakemake's 'submitted with SLURM jobid' lines (the log path names the rule)."""
    return {job_id: rule for job_id, rule in
            re.findall(r"has been submitted with SLURM jobid (\d+) \(log: \S*/slurm_logs/rule_(\w+)/", out)}


def _expected(rule: str) -> dict[str, str]:
    """What profiles/slurm asks for a rule: default-resources, then its set-resources."""
    res = {**PROFILE["default-resources"], **PROFILE["set-resources"].get(rule, {})}
    return {"partition": res["slurm_partition"], "timelimit": str(res["runtime"]), "mem": f"mem={res['mem_mb']}M",
            "gpus": "gres:gpu:1" if res.get("gpu") else ""}


def _digests(root: Path, paths: list[str]) -> dict[str, str]:
    return {p: hashlib.sha256((root / p).read_bytes()).hexdigest() for p in paths if not p.endswith(TIMED)}


def test_every_job_of_the_slice_went_through_sbatch_with_the_profiles_resources(runs):
    out, repo = runs["out"]["cluster"], runs["dirs"]["cluster"]
    assert runs["rc"]["cluster"] == 0, out[-8000:]
    assert runs["rc"]["local"] == 0, runs["out"]["local"][-8000:]
    stats = dict(re.findall(r"^(\w+) +(\d+)$", out.split("Job stats:", 1)[1].split("\n\n", 1)[0], flags=re.M))
    assert stats.pop("total") == "13"
    rules = {"collect", "pretrain_mae", "estimate_mr", "saliency_figures", "fig8", "train", "aggregate", "table",
             "publish", "figures", "fig6", "report"}
    assert stats == {**dict.fromkeys(rules, "1"), "all": "1"}, stats
    submitted = _submitted(out)
    train_ids = sorted((i for i, rule in submitted.items() if rule == "train"), key=int)
    assert sorted(submitted.values()) == sorted([*rules, "train"])  # every rule once, the cancelled train twice
    mine = {i: row for i, row in runs["sacct"].items() if row["WorkDir"] == str(repo)}
    assert set(mine) == set(submitted), (mine, submitted)  # sacct lists every job Snakemake submitted, no other
    for job_id, rule in submitted.items():
        row, want = mine[job_id], _expected(rule)
        assert row["Comment"].startswith(f"rule_{rule}"), row
        assert row["State"] == ("CANCELLED" if job_id == runs["cancelled"] else "COMPLETED"), row
        assert (row["Partition"], row["Timelimit"], row["NCPUS"]) == (want["partition"], want["timelimit"], "1"), row
        assert want["mem"] in row["Tres"].split(","), row
        assert row["TresPerJob"] == want["gpus"], row
    assert {mine[i]["Partition"] for i in submitted} == {"cpu", "gpu"}
    assert train_ids[0] == runs["cancelled"]


def test_cluster_outputs_are_byte_identical_to_a_local_run(runs):
    local, repo = runs["dirs"]["local"], runs["dirs"]["cluster"]
    params = load_params([repo / f for f in param_files("smoke")])
    outputs = [p for job in jobs(params) for p in job.outputs.values()]
    assert len(outputs) > 20 and all((repo / p).is_file() for p in outputs), [p for p in outputs
                                                                             if not (repo / p).is_file()]
    assert _digests(repo, outputs) == _digests(local, outputs)
    timed = ("finished_utc", "frames_per_s", "peak_memory_mb", "wall_time_s")
    mr = [{k: v for k, v in json.loads((root / "results/smoke/mr/Seaquest/mr.json").read_text()).items()
           if k not in timed} for root in (repo, local)]
    assert mr[0] == mr[1] and "mr_star" in mr[0]["result"]
    report = (repo / "reports/smoke/report.md").read_text()
    assert "Tab. 14" in report and "fig6/Seaquest.png" in report


def test_a_cancelled_training_job_is_resubmitted_and_resumes_from_its_checkpoint(runs):
    out, repo, local = runs["out"]["cluster"], runs["dirs"]["cluster"], runs["dirs"]["local"]
    cancelled = runs["cancelled"]
    assert f"SLURM-job '{cancelled}' failed, SLURM status is: 'CANCELLED'" in out
    assert out.count("Trying to restart job") == 1
    log = (repo / "work/smoke/logs/train/spirl-100k-Seaquest-0.log").read_text()
    resumed_at = [int(s) for s in re.findall(r"resuming at env step (\d+)", log)]
    assert len(resumed_at) == 1 and 0 < resumed_at[0] < TOTAL_STEPS and resumed_at[0] % CHECKPOINT_EVERY == 0, log
    record = yaml.safe_load((repo / f"results/smoke/runs/{RUN}/run.json").read_text())
    assert record["resumed"] is True and record["online_env_steps"] == TOTAL_STEPS
    assert yaml.safe_load((local / f"results/smoke/runs/{RUN}/run.json").read_text())["resumed"] is False
    for name in ("eval.json", "progress.csv", "weights.npz"):
        assert (repo / f"results/smoke/runs/{RUN}/{name}").read_bytes() == \
            (local / f"results/smoke/runs/{RUN}/{name}").read_bytes(), name
    # the cancelled attempt's SLURM log is kept (a failed job's), under .snakemake/slurm_logs/rule_<rule>/<wildcards>/
    assert (repo / f".snakemake/slurm_logs/rule_train/spirl_100k_Seaquest_0/{cancelled}.log").is_file()
    # and nothing of it lives on: a job's Snakemake can hang in its SIGTERM handler, and once its batch shell has
    # died it is no longer a descendant SLURM finds (proctrack/linuxproc); the cluster tracks process groups
    assert _processes_naming(repo) == []


def _processes_naming(folder: Path) -> list[str]:
    """Processes whose command line names the folder (a job's Snakemake, its training script)."""
    return [f"{pid} {cmd[:300]}" for pid, _, cmd in _processes() if str(folder) in cmd]


def test_a_job_failing_for_a_real_reason_fails_once_per_retry_with_its_log_shown(runs):
    out, repo = runs["out"]["bad"], runs["dirs"]["bad"]
    attempts = PROFILE["retries"] + 1
    assert runs["rc"]["bad"] != 0 and "Exiting because a job execution failed" in out, out[-8000:]
    submitted = _submitted(out)
    failed = sorted((i for i, rule in submitted.items() if rule == "pretrain_mae"), key=int)
    assert sorted(submitted.values()) == ["collect", *["pretrain_mae"] * attempts], submitted
    assert out.count("Trying to restart job") == attempts - 1
    for job_id in failed:
        assert f"SLURM-job '{job_id}' failed, SLURM status is: 'FAILED'" in out
        assert runs["sacct"][job_id]["State"] == "FAILED"
        slurm_log = f".snakemake/slurm_logs/rule_pretrain_mae/Seaquest/{job_id}.log"
        shown = out.split(f"Logfile {repo / slurm_log}:", 1)  # show-failed-logs: the job's log in Snakemake's output
        assert len(shown) == 2 and BAD_ERROR in shown[1].split("Trying to restart job", 1)[0], job_id
        assert BAD_ERROR in (repo / slurm_log).read_text()  # and kept on disk
    assert not (repo / "data/smoke/mae/Seaquest/model.npz").exists()


def test_stopping_the_cluster_leaves_nothing_running(cluster, runs):
    env, state = cluster
    for _ in range(2):  # idempotent: the second stop finds nothing to do
        stop = subprocess.run(["bash", str(SCRIPT), "stop"], env=env, capture_output=True, text=True, timeout=300)
        assert stop.returncode == 0, stop.stdout + stop.stderr
    assert _ours(state) == []
    status = subprocess.run(["bash", str(SCRIPT), "status"], env=env, capture_output=True, text=True)
    assert status.returncode == 3, status.stdout  # 3: no daemon running
    assert not Path("/etc/slurm/slurm.conf").is_symlink()
