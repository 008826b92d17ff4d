"""Random-policy frame collection (SPEC §2): arrays, first-life-only, determinism, the script's outputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from spirl.envs.atari import make_env
from spirl.envs.collect import ARRAY_DTYPES, collect_random_frames, summarize
from spirl.params import REPO_ROOT as ROOT
from spirl.params import AtariParams

ATARI = AtariParams(frame_size_px=48, frame_skip=4, frame_stack=4, max_noops=30,
                    max_episode_agent_steps=27000, fire_on_reset=True)


class SpyEnv:
    """Records what the wrapper returned, to check the stored arrays against it."""

    def __init__(self, env):
        self.env, self.resets, self.step_obs = env, [], []

    def __getattr__(self, name):
        return getattr(self.env, name)

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self.resets.append((len(self.step_obs), kwargs, info))
        return obs, info

    def step(self, action):
        out = self.env.step(action)
        self.step_obs.append(out[0][-1].copy())
        return out


@pytest.fixture(scope="module", params=[True, False], ids=["first_life_only", "all_lives"])
def collected(request):
    env = SpyEnv(make_env("Seaquest", 7, "train", ATARI))
    arrays = collect_random_frames(env, 1500, np.random.default_rng(3), first_life_only=request.param)
    return request.param, env, arrays


def test_arrays_have_the_documented_layout(collected):
    _, env, arrays = collected
    assert set(arrays) == set(ARRAY_DTYPES)
    for name, dtype in ARRAY_DTYPES.items():
        assert arrays[name].dtype == dtype and len(arrays[name]) == 1500
    assert arrays["frames"].shape == (1500, 48, 48, 3)
    assert arrays["actions"].min() >= 0 and arrays["actions"].max() < env.n_actions
    # uniform random policy over the 18 actions: every action is used, none dominates
    counts = np.bincount(arrays["actions"], minlength=env.n_actions)
    assert counts.min() > 0 and counts.max() < 3 * 1500 / env.n_actions
    assert np.array_equal(arrays["rewards_clipped"], np.sign(arrays["rewards_raw"]).astype(np.int8))
    assert arrays["rewards_raw"].max() > 1  # raw game points are kept beside the clipped reward


def test_frames_are_the_wrappers_newest_frames(collected):
    _, env, arrays = collected
    ends = np.flatnonzero(arrays["terminals"])
    assert len(ends) >= 2, "the test needs episodes that end"
    # frames[t + 1] is the newest frame after step t, unless the episode ended at t (then a reset)
    after_step = np.stack(env.step_obs)
    cont = np.flatnonzero(~arrays["terminals"][:-1])
    assert np.array_equal(arrays["frames"][cont + 1], after_step[cont])
    # episode ids: 0, 1, ... incremented right after each terminal
    expected = np.concatenate([[0], np.cumsum(arrays["terminals"][:-1])])
    assert np.array_equal(arrays["episodes"], expected)


def test_first_life_only_hard_resets_after_each_life_loss(collected):
    first_life_only, env, arrays = collected
    later = env.resets[1:]
    assert len(later) == arrays["terminals"].sum()
    hard = [info["hard_reset"] for _, _, info in later]
    if first_life_only:
        assert all(hard)
        start_lives = env.resets[0][2]["lives"]
        assert all(info["lives"] == start_lives for _, _, info in later)
    else:
        assert not all(hard), "train mode continues the game after a life loss"


def test_summary_counts():
    arrays = {"terminals": np.array([0, 1, 0, 0, 1, 0], bool), "truncated": np.zeros(6, bool),
              "episodes": np.array([0, 0, 1, 1, 1, 2]),
              "rewards_raw": np.array([1, 2, 10, 0, 20, 5], np.float32)}
    assert summarize(arrays) == {"n_frames": 6, "n_episodes_completed": 2, "n_truncated": 0,
                                 "mean_completed_episode_raw_return": 16.5,
                                 "mean_completed_episode_length": 2.5}


# --- the script, as Snakemake and DVC run it -------------------------------------------------------


def _collect(tmp_path: Path, name: str, seed: int) -> tuple[Path, Path]:
    overlay = tmp_path / f"{name}.yaml"
    overlay.write_text("atari: {frame_size_px: 48}\n"  # pinned: the checks below do not follow conf/smoke.yaml
                       f"collect: {{seed: {seed}, frames_per_game: {{Frostbite: 400}}}}\n")
    out = tmp_path / name
    cmd = [sys.executable, "src/collect_frames.py", "--params", "params.yaml", "conf/smoke.yaml", str(overlay),
           "--game", "Frostbite", "--out-frames", str(out / "frames.npz"), "--out-run", str(out / "run.json"),
           "--log", str(out / "collect.log")]
    proc = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "PYTHONHASHSEED": "0"}, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return out / "frames.npz", out / "run.json"


def test_script_is_deterministic_and_records_its_run(tmp_path):
    frames_a, run_a = _collect(tmp_path, "a", seed=0)
    frames_b, _ = _collect(tmp_path, "b", seed=0)
    frames_c, _ = _collect(tmp_path, "c", seed=1)
    assert frames_a.read_bytes() == frames_b.read_bytes()
    assert frames_a.read_bytes() != frames_c.read_bytes()
    with np.load(frames_a) as data:
        assert data["frames"].shape == (400, 48, 48, 3) and data["frames"].dtype == np.uint8
        assert set(data.files) == set(ARRAY_DTYPES)
    run = json.loads(run_a.read_text())
    assert run["stage"] == "collect" and run["wildcards"] == {"game": "Frostbite", "profile": "smoke"}
    assert run["params"]["collect"]["frames_per_game"]["Frostbite"] == 400
    assert run["params"]["atari"]["frame_size_px"] == 48
    assert set(run["seeds"]) == {"env", "policy"} and run["seeds"]["env"] != run["seeds"]["policy"]
    assert run["summary"]["n_frames"] == 400 and run["env_steps_per_s"] > 0 and run["wall_time_s"] > 0
    assert "ale_py" in run["versions"] and "numpy" in run["versions"]
    assert frames_a.stat().st_size < 400 * 48 * 48 * 3 / 2  # stored compressed
    assert not list(frames_a.parent.glob(".*.tmp"))  # atomic write left no temporary file


def test_script_rejects_a_game_without_a_frame_count(tmp_path):
    cmd = [sys.executable, "src/collect_frames.py", "--params", "params.yaml", "--game", "Pong",
           "--out-frames", str(tmp_path / "f.npz"), "--out-run", str(tmp_path / "r.json")]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "--game 'Pong' has no collect.frames_per_game entry; allowed: Frostbite" in proc.stderr
    assert not (tmp_path / "f.npz").exists() and not (tmp_path / "r.json").exists()
