"""Training runs as the DAG runs them: deterministic bytes, and a SIGKILLed run resumes to the same bytes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from spirl.params import REPO_ROOT as ROOT
from spirl.saliency.mae import MAEConfig, MaskedAutoencoder
from spirl.saliency.pretrain import save_model

OVERLAY = """
atari: {max_episode_agent_steps: 60, frame_size_px: 48}
train:
  learn_start_env_steps: 40
  checkpoint_every_env_steps: 40
  regimes: {100k: {total_env_steps: 160, replay_capacity_transitions: 160, eval_every_env_steps: 80}}
eval: {n_envs: 2}
"""
OUTPUTS = ("eval.json", "progress.csv", "weights.npz")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """A tiny overlay, a random-weight 48-px MAE and an mr estimate, for SPIRL runs."""
    root = tmp_path_factory.mktemp("inputs")
    (root / "test.yaml").write_text(OVERLAY)
    save_model(MaskedAutoencoder(MAEConfig(img_size=48), generator=torch.Generator().manual_seed(0)),
               root / "mae.npz")
    (root / "mr.json").write_text(json.dumps({"result": {"mr_star": 0.5}}))
    return root


def command(inputs: Path, out: Path, variant: str) -> list[str]:
    cmd = [sys.executable, "src/train_agent.py", "--params", "params.yaml", "conf/smoke.yaml",
           str(inputs / "test.yaml"), "--variant", variant, "--regime", "100k", "--game", "Seaquest", "--seed", "0",
           "--work", str(out / "work"), "--log", str(out / "train.log")]
    cmd += [arg for name in ("eval", "progress", "run", "weights")
            for arg in (f"--out-{name}", str(out / {"eval": "eval.json", "progress": "progress.csv",
                                                   "run": "run.json", "weights": "weights.npz"}[name]))]
    if variant.startswith("spirl"):
        cmd += ["--in-model", str(inputs / "mae.npz"), "--in-mr", str(inputs / "mr.json")]
    return cmd


def run(inputs: Path, out: Path, variant: str) -> dict[str, bytes]:
    proc = subprocess.run(command(inputs, out, variant), cwd=ROOT, env={**os.environ, "PYTHONHASHSEED": "0"},
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {name: (out / name).read_bytes() for name in OUTPUTS}


@pytest.mark.parametrize("variant", ["de_rainbow", "spirl"])
def test_same_seed_gives_identical_bytes(inputs, tmp_path, variant):
    first, second = run(inputs, tmp_path / "a", variant), run(inputs, tmp_path / "b", variant)
    assert first == second
    evals = json.loads(first["eval.json"])
    assert [p["env_step"] for p in evals["points"]] == [80, 160] and all(len(p["returns"]) == 2
                                                                         for p in evals["points"])
    record = json.loads((tmp_path / "a" / "run.json").read_text())
    assert record["updates"] == 120 and record["resumed"] is False  # one update per step after 40 random steps
    assert record["wall_time_total_s"] == pytest.approx(record["wall_time_s"], abs=1e-3)  # not resumed: one process
    assert 0 < record["cpu_time_s"] == record["cpu_time_total_s"]
    assert record["peak_memory_mb"]["host"] > 100
    assert record["timing_total_s"]["learn"] == pytest.approx(record["timing_s"]["learn"])
    with np.load(tmp_path / "a" / "weights.npz") as weights:
        assert any(k.startswith("head.") for k in weights.files)


@pytest.mark.parametrize("variant", ["de_rainbow", "spirl_framediff"])
def test_killed_run_resumes_to_identical_bytes(inputs, tmp_path, variant):
    """A SIGKILLed run resumes to the same bytes; a scorer's memory per env (frame_diff's previous frame, SPEC §13)
    goes through the checkpoint too (random's stream: tests/unit/test_represent.py)."""
    straight = run(inputs, tmp_path / "straight", variant)
    out = tmp_path / "killed"
    proc = subprocess.Popen(command(inputs, out, variant), cwd=ROOT, env={**os.environ, "PYTHONHASHSEED": "0"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = out / "work" / "checkpoint.pt"
    deadline = time.time() + 300
    while not checkpoint.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)  # let it run on past the first checkpoint
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert checkpoint.exists() and not (out / "eval.json").exists()
    resumed = run(inputs, out, variant)
    assert resumed == straight
    record = json.loads((out / "run.json").read_text())
    assert record["resumed"] is True
    # the total counts the killed process up to its checkpoint too: more than the resumed process's own time
    assert record["timing_total_s"]["env"] > record["timing_s"]["env"]
    assert record["wall_time_total_s"] > record["wall_time_s"]
    assert record["cpu_time_total_s"] > record["cpu_time_s"] > 0  # CPU seconds too, over both processes


def test_seeds_in_one_job_write_the_files_of_single_seed_jobs(inputs, tmp_path):
    """`--seed 0 1` (runtime.seeds_per_job): each seed's files as its own job's, to float tolerance for weights."""
    alone = {seed: tmp_path / f"alone{seed}" for seed in (0, 1)}
    for seed, out in alone.items():
        cmd = command(inputs, out, "de_rainbow")
        cmd[cmd.index("--seed") + 1] = str(seed)
        proc = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "PYTHONHASHSEED": "0"}, capture_output=True,
                              text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
    group = [tmp_path / "group0", tmp_path / "group1"]
    cmd = command(inputs, group[0], "de_rainbow")
    cmd[cmd.index("--seed") + 1:cmd.index("--seed") + 2] = ["0", "1"]
    for option in ("--work", *(f"--out-{name}" for name in ("eval", "progress", "run", "weights"))):
        i = cmd.index(option)
        cmd[i + 1:i + 2] = [cmd[i + 1], cmd[i + 1].replace(str(group[0]), str(group[1]))]
    proc = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "PYTHONHASHSEED": "0"}, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for seed, out in enumerate(group):
        assert (out / "eval.json").read_bytes() == (alone[seed] / "eval.json").read_bytes()
        record = json.loads((out / "run.json").read_text())
        assert record["job"]["seeds"] == [0, 1] and record["wildcards"]["seed"] == seed
        assert record["wall_time_s"] == pytest.approx(record["job"]["wall_time_s"] / 2, abs=1e-3)
        with np.load(out / "weights.npz") as got, np.load(alone[seed] / "weights.npz") as want:
            for name in want.files:
                np.testing.assert_allclose(got[name], want[name], rtol=1e-4, atol=1e-5)
    with pytest.raises(subprocess.CalledProcessError):  # one output path per seed, or a clear refusal
        subprocess.run(cmd[:cmd.index("--work") + 2] + cmd[cmd.index("--work") + 3:], cwd=ROOT, check=True,
                       capture_output=True, timeout=120)
