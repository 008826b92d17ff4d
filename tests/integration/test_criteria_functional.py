"""Issue 13's functional test of the saliency criteria (SPEC §13-§14) on synthetic moving sprites.

A flat scene holds 18 static decoys (low-contrast checkered squares: strong structure once a patch is normalised,
as the MAE sees it, but only a few grey levels from the background) and 2 bright sprites that move and bounce.
The sprites are the dynamic objects, the decoys static ones. Selected by dynamic K capped at K_max, `frame_diff`
and a Wu mask trained for a few steps (saliency.wu.training.train_step, SPEC §13 settings, batch 8) find the sprites
(recall >= 0.9), while `random` and `mae_untrained` land near chance (recall < 0.9, lift near 1): the metric
separates criteria that see motion from those that do not. The untrained Wu mask does not reach 0.9 either, so
the training is what finds the sprites.

Then src/saliency_quality.py and src/quality_table.py end to end, as subprocesses, on a tiny synthetic archive:
8 frames of 40 px (5 x 5 patches) with previous frames, OCAtari-style objects packed with pack_objects, an MAE
saved with saliency.pretrain.save_model, a Wu model saved with saliency.wu.training.save_model and an mr.json. The
JSON's numbers are checked against a direct computation from the building blocks (each scorer's score function per
batch, the random scores from derive_seed(criteria.seed, registry.SEED_KEY, game), dynamic K at
K_max = floor(N * mr*), recall_report with the job's bootstrap seed), then the table's CSV and Markdown against the
JSONs.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

from spirl.common.io import write_json, write_npz
from spirl.common.seeding import derive_seed
from spirl.envs.object_files import pack_objects, unpack_objects
from spirl.envs.objects import ObjectBox
from spirl.envs.recall import MOTION_GROUPS, motion_groups, recall_report
from spirl.params import REPO_ROOT, load_params, resolve_mr
from spirl.saliency.error_maps import ErrorMapSettings, error_map, error_map_settings
from spirl.saliency.pretrain import load_model, save_model, untrained_mae
from spirl.saliency.quality import quality_markdown, quality_rows
from spirl.saliency.registry import SEED_KEY
from spirl.saliency.scorers.frame_difference import frame_diff
from spirl.saliency.scorers.uniform_noise import random_scores
from spirl.saliency.selection import k_max_from_ratio, select_batched
from spirl.saliency.wu.data import gray_frames, pair_indices
from spirl.saliency.wu.model import WuAttention, WuSettings
from spirl.saliency.wu.scores import patch_scores
from spirl.saliency.wu.training import load_model as load_wu
from spirl.saliency.wu.training import save_model as save_wu
from spirl.saliency.wu.training import train_step

SIZE, PATCH = 48, 8  # a 6 x 6 grid, N = 36
K_MAX = k_max_from_ratio(36, 0.25)  # 9
SPRITE, DECOY = 5, 6  # sides in pixels
SPRITE_RGB = (240, 235, 220)
BACKGROUND_RGB = (60, 62, 58)
DECOY_RGB = ((72, 66, 60), (50, 56, 62))  # the two squares of the checker: a few grey levels off the background
WU_STEPS = 8


def scene(seed: int = 0) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """The static background with its decoys: uint8 [S, S, 3] and the decoys' (x, y)."""
    rng = np.random.default_rng(seed)
    decoy = np.empty((DECOY, DECOY, 3), np.uint8)
    decoy[:] = DECOY_RGB[0]
    decoy[::2, ::2] = decoy[1::2, 1::2] = DECOY_RGB[1]
    background = np.empty((SIZE, SIZE, 3), np.uint8)
    background[:] = BACKGROUND_RGB
    where = []
    for cell in rng.choice(36, 18, replace=False):
        row, col = divmod(int(cell), 6)
        y, x = row * PATCH + int(rng.integers(0, 3)), col * PATCH + int(rng.integers(0, 3))
        background[y:y + DECOY, x:x + DECOY] = decoy
        where.append((x, y))
    return background, where


def episode(background: np.ndarray, n: int, seed: int) -> tuple[np.ndarray, list[list[tuple[int, int]]]]:
    """n frames of two sprites moving at constant speed (1.5-3 px per step and axis), bouncing off the edges.

    Returns: frames uint8 [n, S, S, 3]; per frame the sprites' (x, y).
    """
    rng = np.random.default_rng(seed)
    pos = rng.uniform(0, SIZE - SPRITE, (2, 2))
    vel = rng.choice([-1.0, 1.0], (2, 2)) * rng.uniform(1.5, 3.0, (2, 2))
    frames, sprites = np.empty((n, SIZE, SIZE, 3), np.uint8), []
    for t in range(n):
        frames[t] = background
        corners = [(int(round(x)), int(round(y))) for x, y in pos]
        for x, y in corners:
            frames[t, y:y + SPRITE, x:x + SPRITE] = SPRITE_RGB
        sprites.append(corners)
        pos += vel
        bounce = (pos < 0) | (pos > SIZE - SPRITE)
        vel[bounce] *= -1
        pos = np.clip(pos, 0, SIZE - SPRITE)
    return frames, sprites


@pytest.fixture(scope="module")
def sprites():
    """Evaluation frames 1..24 of one episode with their previous frames and objects (boxes in frame pixels)."""
    background, decoys = scene()
    frames, corners = episode(background, 25, seed=99)
    objects = [[ObjectBox("Sprite", (x, y, SPRITE, SPRITE), True) for x, y in c]
               + [ObjectBox("Decoy", (x, y, DECOY, DECOY), False) for x, y in decoys] for c in corners[1:]]
    return {"background": background, "frames": frames[1:], "previous": frames[:-1], "objects": objects}


def recall_of(scores: torch.Tensor, objects) -> dict:
    """Dynamic K (capped at K_max) on the scores, then the object report (boxes are in frame pixels)."""
    indices, _ = select_batched(scores, "dynamic", K_MAX, 1.0)
    return recall_report(indices.cpu().numpy(), objects, frame_px=SIZE, patch_px=PATCH, screen_hw=(SIZE, SIZE),
                         rng=np.random.default_rng(0), n_boot=0)


def test_frame_diff_selects_the_moving_sprites(sprites):
    scores = frame_diff(sprites["frames"], sprites["previous"], PATCH)
    report = recall_of(scores, sprites["objects"])
    assert report["recall"]["value"] >= 0.9
    assert report["lift"]["value"] > 1.5


def test_random_and_untrained_mae_do_not(sprites):
    params = load_params([REPO_ROOT / "params.yaml"])
    mae = untrained_mae(params.mae, "Frostbite", SIZE)
    settings = ErrorMapSettings("normalized", 4096, None)
    for name, scores in (
        ("random", random_scores(len(sprites["frames"]), 36, torch.Generator().manual_seed(3))),
        ("mae_untrained", error_map(mae, sprites["frames"], settings)),
    ):
        report = recall_of(scores, sprites["objects"])
        assert report["recall"]["value"] < 0.9, name
        assert 0.6 < report["lift"]["value"] < 1.4, (name, report["lift"])


def test_briefly_trained_wu_mask_selects_the_moving_sprites(sprites):
    # training frames: 4 other episodes of the same scene, pairs 1..60 steps apart within an episode
    train = np.concatenate([episode(sprites["background"], 48, seed)[0] for seed in range(1, 5)])
    episodes = np.repeat(np.arange(4), 48)
    gray = gray_frames(train)
    model = WuAttention(torch.Generator().manual_seed(0))
    before = recall_of(patch_scores(model, sprites["frames"], SIZE, PATCH), sprites["objects"])
    settings = WuSettings(batch_size=8)  # SPEC §13's δ, λ_m, lr and max gap; a small batch for a CPU test
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr)
    pairs = torch.Generator().manual_seed(1)
    for _ in range(WU_STEPS):
        source, target = pair_indices(episodes, settings.batch_size, settings.max_gap, pairs)
        terms = train_step(model, optimizer, gray, source, target, settings)
        assert torch.isfinite(terms.total)
    after = recall_of(patch_scores(model, sprites["frames"], SIZE, PATCH), sprites["objects"])
    assert after["recall"]["value"] >= 0.9
    assert before["recall"]["value"] < 0.9  # the training, not the architecture, finds the sprites


# ---------------------------------------------------------------- saliency_quality.py and quality_table.py

E2E_SIZE, N_FRAMES, BATCH = 40, 8, 3
MR_STAR = 0.55  # saliency.mr auto: K_max = floor(25 * 0.55) = 13
GAMES = {"Frostbite": ("Player", "Bird"), "Seaquest": ("Player", "Shark")}  # two dynamic categories each
STARTS = (0, 5)  # frames without a previous frame (episode starts)


def draw(frame: np.ndarray, box, rgb) -> None:
    """Fill a screen-space box's rectangle in a E2E_SIZE-px frame."""
    x, y, w, h = box
    x0, x1 = int(x * E2E_SIZE / 160), int(np.ceil((x + w) * E2E_SIZE / 160))
    y0, y1 = int(y * E2E_SIZE / 210), int(np.ceil((y + h) * E2E_SIZE / 210))
    frame[max(y0, 0):y1, max(x0, 0):x1] = rgb


def archive(movers: tuple[str, str], seed: int) -> tuple[dict, list[list]]:
    """Frames (with previous / has_previous) and per-frame objects: two moving dynamic objects, a static house and a
    HUD score; the frame before each frame is the same scene one step earlier."""
    rng = np.random.default_rng(seed)
    houses = (100, 60, 24, 20)
    score = (60, 5, 30, 8)

    def scene(t: int) -> tuple[np.ndarray, list]:
        frame = np.full((E2E_SIZE, E2E_SIZE, 3), (30, 40, 90), np.uint8)
        frame[E2E_SIZE // 2:] = (20, 90, 40)
        objs = [("House", houses, False), ("Score", score, True)]
        draw(frame, houses, (200, 120, 60))
        draw(frame, score, (250, 250, 250))
        for k, name in enumerate(movers):
            box = (10 + 9 * t + 40 * k, 30 + 11 * k + 5 * (t % 4), 8, 12)
            draw(frame, box, (255, 220, 30) if k == 0 else (220, 60, 60))
            objs.append((name, box, False))
        return frame, objs

    frames, previous, objects = [], [], []
    for t in range(N_FRAMES):
        frame, objs = scene(t)
        before, _ = scene(t - 1)
        frames.append(frame + rng.integers(0, 3, frame.shape, dtype=np.uint8))  # a little noise: no flat patches
        previous.append(before if t not in STARTS else np.zeros_like(before))
        objects.append(objs)
    has_previous = np.array([t not in STARTS for t in range(N_FRAMES)])
    return {"frames": np.stack(frames), "previous": np.stack(previous), "has_previous": has_previous,
            "steps": np.arange(N_FRAMES, dtype=np.int64) * 10, "episodes": np.zeros(N_FRAMES, np.int32)}, objects


@pytest.fixture(scope="module")
def quality_job(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("quality")
    overlay = tmp / "overlay.yaml"
    overlay.write_text(yaml.safe_dump({
        "experiment": {"games": list(GAMES)},
        "saliency": {"mr": "auto", "batch_frames": BATCH},
        "report": {"bootstrap_reps": 50},
        "runtime": {"device": "cpu"},
        "criteria": {"scorers": ["mae_surround", "mae_untrained", "frame_diff", "random", "wu_mask"],
                     "dynamic_categories": {g: list(c) for g, c in GAMES.items()}},
    }))
    param_files = [REPO_ROOT / "params.yaml", REPO_ROOT / "conf" / "smoke.yaml", overlay]
    params = load_params(param_files)
    assert params.atari.frame_size_px == E2E_SIZE
    # a "trained" MAE that differs from both games' untrained ones (MsPacman's init seed), and a Wu model
    save_model(untrained_mae(params.mae, "MsPacman", E2E_SIZE), tmp / "model.npz")
    save_wu(WuAttention(torch.Generator().manual_seed(5)), tmp / "wu.npz")
    write_json(tmp / "mr.json", {"stage": "estimate_mr", "result": {"mr_star": MR_STAR}})
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    outs = {}
    for i, (game, movers) in enumerate(GAMES.items()):
        arrays, objects = archive(movers, seed=i)
        write_npz(tmp / game / "frames.npz", arrays)
        write_npz(tmp / game / "objects.npz", pack_objects(objects))
        outs[game] = {"json": tmp / "quality" / f"{game}.json", "figure": tmp / "figures" / f"{game}.png"}
        cmd = [sys.executable, "src/saliency_quality.py", "--params", *map(str, param_files), "--game", game,
               "--in-frames", str(tmp / game / "frames.npz"), "--in-objects", str(tmp / game / "objects.npz"),
               "--in-model", str(tmp / "model.npz"), "--in-mr", str(tmp / "mr.json"), "--in-wu", str(tmp / "wu.npz"),
               "--out-json", str(outs[game]["json"]), "--out-figure", str(outs[game]["figure"]),
               "--log", str(tmp / "logs" / f"{game}.log")]
        proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
    table = {"csv": tmp / "saliency_quality.csv", "md": tmp / "saliency_quality.md"}
    cmd = [sys.executable, "src/quality_table.py", "--params", *map(str, param_files),
           "--in-quality", *(str(o["json"]) for o in outs.values()), "--out-csv", str(table["csv"]),
           "--out-md", str(table["md"])]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {"tmp": tmp, "params": params, "outs": outs, "table": table}


def direct_reports(tmp, params, game: str) -> dict[str, dict]:
    """The recall reports computed here from the building blocks, as saliency_quality.py is specified."""
    with np.load(tmp / game / "frames.npz") as data:
        frames, previous, has_previous = data["frames"], data["previous"], data["has_previous"]
    with np.load(tmp / game / "objects.npz") as data:
        objects = unpack_objects(data, params.criteria.dynamic_categories[game])
    mae = load_model(tmp / "model.npz")
    settings = error_map_settings(params, mae)
    k_max = k_max_from_ratio(25, resolve_mr(params.saliency, game, MR_STAR))
    untrained, wu = untrained_mae(params.mae, game, E2E_SIZE), load_wu(tmp / "wu.npz")
    generator = torch.Generator().manual_seed(derive_seed(params.criteria.seed, SEED_KEY, game))  # drawn on and on
    score = {"mae_surround": lambda part: error_map(mae, frames[part], settings),
             "mae_untrained": lambda part: error_map(untrained, frames[part], settings),
             "frame_diff": lambda part: frame_diff(frames[part], previous[part], 8, has_previous[part]),
             "random": lambda part: random_scores(len(frames[part]), 25, generator),
             "wu_mask": lambda part: patch_scores(wu, frames[part], E2E_SIZE, 8)}
    groups = motion_groups(frames, previous, has_previous, objects, patch_px=8)
    reports = {}
    for scorer in params.criteria.scorers:
        parts = []
        for start in range(0, N_FRAMES, BATCH):  # saliency.batch_frames frames per call, in order
            parts.append(score[scorer](slice(start, start + BATCH)))
        indices, _ = select_batched(torch.cat(parts), "dynamic", k_max, params.saliency.xscale)
        report = lambda rows, indices=indices: recall_report(  # noqa: E731
            indices.numpy()[rows], [objects[r] for r in rows], frame_px=E2E_SIZE, patch_px=8,
            n_boot=params.report.bootstrap_reps, ci_level=params.report.ci_level,
            rng=np.random.default_rng(derive_seed(params.report.seed, "saliency-quality", game)))
        reports[scorer] = report(np.arange(N_FRAMES))
        by_motion = {}
        for g, name in enumerate(MOTION_GROUPS):
            rows = np.flatnonzero(groups == g)
            part = report(rows) if len(rows) else {}
            by_motion[name] = {"n_frames": len(rows), **{k: part[k] for k in part if k in
                                                         ("n_dynamic_objects", "recall", "lift", "mean_k")}}
        reports[scorer]["by_motion"] = by_motion
    return reports


def test_json_matches_a_direct_computation(quality_job):
    params = quality_job["params"]
    for game, movers in GAMES.items():
        record = json.loads(quality_job["outs"][game]["json"].read_text())
        result = record["result"]
        assert record["stage"] == "saliency_quality" and record["wildcards"]["game"] == game
        assert result["k_max"] == 13 and result["mr"] == MR_STAR and result["num_patches"] == 25
        assert result["n_frames"] == N_FRAMES and result["n_with_previous"] == N_FRAMES - len(STARTS)
        assert result["dynamic_categories"] == list(movers)
        assert result["scorer_order"] == list(params.criteria.scorers)
        assert set(result["scorers"]) == set(params.criteria.scorers)
        expected = direct_reports(quality_job["tmp"], params, game)
        for scorer, got in result["scorers"].items():
            assert got["seconds"] > 0 and got["frames_per_s"] == pytest.approx(N_FRAMES / got["seconds"])
            mine = {k: v for k, v in got.items() if k not in ("seconds", "frames_per_s")}
            assert mine == json.loads(json.dumps(expected[scorer])), (game, scorer)
            assert set(got["per_category"]) == set(movers)
            assert got["n_dynamic_objects"] == 2 * N_FRAMES and got["recall"]["ci"][0] <= got["recall"]["value"]
        # the scorers differ where they should: frame_diff finds both movers in every frame with a previous frame
        assert result["scorers"]["frame_diff"]["recall"]["value"] >= (N_FRAMES - len(STARTS)) / N_FRAMES
        assert result["scorers"]["frame_diff"]["lift"]["value"] > 1.2
        timeless = {s: {k: v for k, v in r.items() if k not in ("seconds", "frames_per_s")}
                    for s, r in result["scorers"].items()}
        assert timeless["mae_surround"] != timeless["mae_untrained"]  # the two MAEs are not mixed up
        png = quality_job["outs"][game]["figure"].read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_wu_model_is_required_only_with_wu_mask(quality_job, tmp_path):
    tmp = quality_job["tmp"]
    overlay = tmp_path / "no_wu.yaml"
    overlay.write_text(yaml.safe_dump({"criteria": {"scorers": ["frame_diff", "wu_mask"]}}))
    cmd = [sys.executable, "src/saliency_quality.py", "--params", str(REPO_ROOT / "params.yaml"),
           str(REPO_ROOT / "conf" / "smoke.yaml"), str(overlay), "--game", "Frostbite",
           "--in-frames", str(tmp / "Frostbite" / "frames.npz"), "--in-objects", str(tmp / "Frostbite" / "objects.npz"),
           "--in-model", str(tmp / "model.npz"), "--in-mr", str(tmp / "mr.json"),
           "--out-json", str(tmp_path / "q.json"), "--out-figure", str(tmp_path / "q.png")]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env={**os.environ, "PYTHONHASHSEED": "0"}, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode != 0 and "--in-wu" in proc.stderr
    assert not (tmp_path / "q.json").exists()


def test_table_csv_and_markdown(quality_job):
    records = [json.loads(quality_job["outs"][game]["json"].read_text()) for game in GAMES]
    with quality_job["table"]["csv"].open() as fh:
        rows = list(csv.DictReader(fh))
    scorers = list(quality_job["params"].criteria.scorers)
    assert [(r["game"], r["scorer"]) for r in rows] == [(g, s) for g in GAMES for s in scorers]
    for row in rows:
        rep = next(r for r in records if r["result"]["game"] == row["game"])["result"]["scorers"][row["scorer"]]
        for stat in ("recall", "lift", "precision", "mean_k"):
            assert float(row[stat]) == rep[stat]["value"]
            assert float(row[f"{stat}_ci_low"]) == rep[stat]["ci"][0]
            assert float(row[f"{stat}_ci_high"]) == rep[stat]["ci"][1]
        assert int(row["n_frames"]) == N_FRAMES and int(row["k_max"]) == 13
        for category in ("Player", "Bird", "Shark"):
            entry = rep["per_category"].get(category)
            assert row[f"recall_{category}"] == ("" if entry is None else str(entry["recall"]["value"]))
    md = quality_job["table"]["md"].read_text()
    assert md == quality_markdown(quality_rows(records), "smoke", 0.95)
    lines = [line for line in md.splitlines() if line.startswith("| Frostbite") or line.startswith("| Seaquest")]
    lines, motion_lines = lines[:len(rows)], lines[len(rows):]  # the table, then recall by motion group
    assert len(motion_lines) == len(rows)
    for rec in records:
        res = rec["result"]
        assert sum(res["motion_frames"].values()) == res["n_frames"] == N_FRAMES
        assert res["motion_frames"]["no_previous"] == res["n_frames"] - res["n_with_previous"]
        for rep in res["scorers"].values():
            assert {g: part["n_frames"] for g, part in rep["by_motion"].items()} == res["motion_frames"]
    for row in rows:
        assert sum(int(row[f"frames_{g}"]) for g in ("objects_moved", "elsewhere_only", "no_motion",
                                                     "no_previous")) == N_FRAMES
    fd = next(r for r in records if r["result"]["game"] == "Frostbite")["result"]["scorers"]["frame_diff"]
    recall = f"{fd['recall']['value']:.3f} [{fd['recall']['ci'][0]:.3f}, {fd['recall']['ci'][1]:.3f}]"
    assert any(line.startswith("| Frostbite | frame_diff | " + recall) for line in lines)
