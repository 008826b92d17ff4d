"""The pretrain_wu stage as the DAG runs it, on a tiny synthetic archive of moving sprites: every output exists and is
valid, the briefly trained mask is higher on the sprite than on the static frame, and a SIGKILLed run resumes to the
same bytes."""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.image import imread

from spirl.common.nn import parameter_count
from spirl.common.seeding import derive_seed
from spirl.params import REPO_ROOT as ROOT
from spirl.saliency.wu.model import WuAttention
from spirl.saliency.wu.scores import patch_scores
from spirl.saliency.wu.training import load_model

GAME, SIZE, PATCH, SPRITE_PX = "Frostbite", 48, 8, 8
BACKGROUND, HUD, BLOCK, SPRITE = 20, 140, 90, 230
EPISODES, LENGTH = 6, 20  # 120 frames
# batch 4, 480 pair-samples of 120 frames: 120 updates (30 per epoch), a checkpoint every 25 (and at each epoch's end)
OVERLAY = """
wu: {batch_size: 4, pair_samples: 480, checkpoint_every_updates: 25}
runtime: {device: cpu, torch_threads: 1}
"""
OUTPUTS = {"model": "model.npz", "loss-csv": "loss.csv", "loss-png": "loss.png", "masks": "masks.png",
           "run": "run.json"}


def moving_sprites(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """48×48 RGB frames: an 8×8 sprite moving 2-3 px per step on each axis (bouncing off the walls) over a dark
    background with a static HUD bar (rows 0-3) and a static dim block. Returns frames [F, 48, 48, 3] uint8 and
    episode ids [F] int32, as spirl.envs.collect stores them."""
    rng = np.random.default_rng(seed)
    frames = np.full((EPISODES * LENGTH, SIZE, SIZE, 3), BACKGROUND, dtype=np.uint8)
    frames[:, 0:4] = HUD
    frames[:, 24:32, 0:8] = BLOCK
    for e in range(EPISODES):
        pos, vel = rng.integers(6, SIZE - SPRITE_PX, 2), rng.choice([-3, -2, 2, 3], 2)
        for i in range(LENGTH):
            frames[e * LENGTH + i, pos[0]:pos[0] + SPRITE_PX, pos[1]:pos[1] + SPRITE_PX] = SPRITE
            for axis, low in ((0, 6), (1, 0)):
                if not low <= pos[axis] + vel[axis] <= SIZE - SPRITE_PX:
                    vel[axis] = -vel[axis]
            pos = pos + vel
    return frames, np.repeat(np.arange(EPISODES), LENGTH).astype(np.int32)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("wu_inputs")
    frames, episodes = moving_sprites()
    np.savez_compressed(root / "frames.npz", frames=frames, episodes=episodes)
    (root / "test.yaml").write_text(OVERLAY)
    return root


def command(inputs: Path, out: Path) -> list[str]:
    cmd = [sys.executable, "src/pretrain_wu.py", "--params", "params.yaml", "conf/smoke.yaml",
           str(inputs / "test.yaml"), "--game", GAME, "--in-frames", str(inputs / "frames.npz"),
           "--work", str(out / "work"), "--log", str(out / "pretrain_wu.log")]
    for name, file in OUTPUTS.items():
        cmd += [f"--out-{name}", str(out / file)]
    return cmd


def run_stage(inputs: Path, out: Path) -> None:
    proc = subprocess.run(command(inputs, out), cwd=ROOT, env={**os.environ, "PYTHONHASHSEED": "0"},
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.fixture(scope="module")
def straight(inputs, tmp_path_factory) -> Path:
    """One uninterrupted run of the stage."""
    out = tmp_path_factory.mktemp("wu_straight")
    run_stage(inputs, out)
    return out


def test_outputs_exist_and_are_valid(straight):
    record = json.loads((straight / "run.json").read_text())
    assert record["stage"] == "pretrain_wu" and record["wildcards"] == {"game": GAME, "profile": "smoke"}
    assert record["seeds"] == {name: derive_seed(0, "wu", GAME, name) for name in ("init", "pairs")}
    assert record["params"]["wu"] == {"delta": 0.01, "mask_weight": 1e-3, "max_gap": 60, "lr": 1e-3, "batch_size": 4,
                                      "pair_samples": 480, "max_grad_norm": 0.5, "micro_batch": 8,
                                      "plateau": {"window_epochs": 40, "tolerance": 0.01}, "seed": 0,
                                      "checkpoint_every_updates": 25}
    assert record["planned_updates"] == 120 and record["stopped_on_plateau_at_update"] is None  # 4 rows < 2 × 40
    assert record["params"]["runtime"]["torch_threads"] == 1 and record["device_used"] == "cpu"
    assert (record["n_frames"], record["n_episodes"], record["updates"], record["updates_per_epoch"],
            record["pair_samples"]) == (120, 6, 120, 30, 480)
    assert record["parameter_count"] == 230_114 and record["resumed_after_update"] is None
    assert 0 < record["wall_time_s"] and record["wall_time_total_s"] == pytest.approx(record["wall_time_s"], abs=1e-2)
    assert "online beside A2C" in record["deviation"]

    with (straight / "loss.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["epoch", "updates", "pair_samples", "loss", "transport", "auto", "sparsity"]
    assert [int(r["updates"]) for r in rows] == [30, 60, 90, 120] and [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    for r in rows:
        terms = {k: float(r[k]) for k in ("loss", "transport", "auto", "sparsity")}
        assert all(math.isfinite(v) and v >= 0 for v in terms.values()) and terms["sparsity"] <= 1
        assert terms["loss"] == pytest.approx(terms["transport"] + terms["auto"] + 1e-3 * terms["sparsity"], rel=1e-6)
    assert float(rows[-1]["loss"]) < 0.5 * float(rows[0]["loss"])  # it learns
    assert record["final_loss"] == pytest.approx(float(rows[-1]["loss"]), rel=1e-12)
    assert record["final_terms"]["auto"] == pytest.approx(float(rows[-1]["auto"]), rel=1e-12)

    model = load_model(straight / "model.npz")
    assert isinstance(model, WuAttention) and not model.training and parameter_count(model) == 230_114
    for name in ("loss.png", "masks.png"):
        assert (straight / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        image = imread(straight / name)
        assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 400
        assert image[..., :3].std() > 0.05  # not blank
    log = (straight / "pretrain_wu.log").read_text()
    assert "checkpoint absent, training from scratch" in log and "epoch 4: update 120/120" in log
    assert (straight / "work" / "checkpoint.pt").is_file()


def test_trained_mask_is_higher_on_the_moving_sprite_than_on_the_static_frame(straight):
    frames, _ = moving_sprites()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        scores = patch_scores(load_model(straight / "model.npz"), frames, SIZE, PATCH)  # [120, 36]
        init = torch.Generator().manual_seed(derive_seed(0, "wu", GAME, "init"))
        untrained = patch_scores(WuAttention(init), frames, SIZE, PATCH)
    finally:
        torch.set_num_threads(threads)
    grid = SIZE // PATCH
    cells = frames[..., 0].reshape(len(frames), grid, PATCH, grid, PATCH)
    sprite = torch.from_numpy((cells == SPRITE).any(axis=(2, 4)).reshape(len(frames), -1))  # patches it touches
    hud = torch.zeros(grid * grid, dtype=torch.bool)
    hud[:grid] = True  # the first patch row holds the HUD bar
    on_sprite, elsewhere = scores[sprite].mean().item(), scores[~sprite].mean().item()
    on_hud = scores[~sprite & hud].mean().item()  # brighter than the background, but static
    report = f"mean Ψ score: sprite {on_sprite:.3f}, elsewhere {elsewhere:.3f} (the HUD row {on_hud:.3f})"
    # this run: sprite 0.90, elsewhere 0.64 (the HUD row still ~0.86 this early); with the seeds of 5 other game
    # names the ratio was 1.3-1.9
    assert on_sprite > 1.2 * elsewhere and on_sprite - elsewhere > 0.1, report
    before = (untrained[sprite].mean() - untrained[~sprite].mean()).item()  # this init: -0.01 (others: -0.13..0.18)
    assert on_sprite - elsewhere > before + 0.1, f"{report}; untrained gap {before:.3f}"  # learnt, not built in


def test_killed_run_resumes_to_identical_bytes(inputs, straight, tmp_path):
    out = tmp_path / "killed"
    proc = subprocess.Popen(command(inputs, out), cwd=ROOT, env={**os.environ, "PYTHONHASHSEED": "0"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = out / "work" / "checkpoint.pt"
    deadline = time.time() + 120
    while not checkpoint.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert checkpoint.exists() and not (out / "model.npz").exists()
    run_stage(inputs, out)
    for name in ("model.npz", "loss.csv"):
        assert (out / name).read_bytes() == (straight / name).read_bytes(), name
    record = json.loads((out / "run.json").read_text())
    resumed = record["resumed_after_update"]
    assert resumed in {25, 30, 50, 60, 75, 90, 100}, resumed  # a checkpoint or epoch boundary before the end
    assert record["updates"] == 120 and record["wall_time_total_s"] > record["wall_time_s"]
    assert f"resuming after update {resumed}" in (out / "pretrain_wu.log").read_text()
