"""The objects stage (SPEC §14) through its own environment, .venv-objects (`make setup` builds it).

src/collect_objects.py runs as the pipeline runs it (`.venv-objects/bin/python`, PYTHONHASHSEED=0, from the
repository root) on a tiny size for Frostbite; the main environment then replays the same seeds through the
project's wrapper and checks frames, previous frames, has_previous and steps exactly, and the objects' layout and
plausibility. A second check runs OCAtari's RAM extraction for all four games.

Skipped only when .venv-objects is absent and SPIRL_REQUIRE_OBJECTS is unset; with SPIRL_REQUIRE_OBJECTS set
(CI) a missing environment fails.
"""

from __future__ import annotations

import json
import os
import subprocess

import numpy as np
import pytest
import yaml

from spirl.common.seeding import derive_seed
from spirl.envs.atari import make_env
from spirl.envs.object_files import unpack_objects
from spirl.envs.objects import box_patches
from spirl.params import REPO_ROOT, load_params

OBJECTS_PY = REPO_ROOT / ".venv-objects" / "bin" / "python"
PROFILE = [REPO_ROOT / "params.yaml", REPO_ROOT / "conf" / "smoke.yaml"]  # 40-px frames, 150-step episodes
N_FRAMES, EVERY = 160, 2  # 319 agent steps: at least two episodes end (truncation at 150 steps)


def objects_python() -> str:
    """The objects environment's interpreter; skip (or fail under SPIRL_REQUIRE_OBJECTS) if there is none."""
    if OBJECTS_PY.exists():
        return str(OBJECTS_PY)
    if os.environ.get("SPIRL_REQUIRE_OBJECTS"):
        pytest.fail(f"SPIRL_REQUIRE_OBJECTS is set but {OBJECTS_PY} does not exist (run `make setup`)")
    pytest.skip(".venv-objects is absent (make setup builds it; set SPIRL_REQUIRE_OBJECTS to fail instead)")


def run_objects_python(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONHASHSEED": "0", "PYGAME_HIDE_SUPPORT_PROMPT": "1"}
    return subprocess.run([objects_python(), *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=300, **kwargs)


@pytest.fixture(scope="module")
def stage(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("objects")
    overlay = tmp / "sizes.yaml"
    overlay.write_text(yaml.safe_dump({"criteria": {"object_frames": N_FRAMES, "object_every": EVERY}}))
    out = {"frames": tmp / "objects" / "Frostbite" / "frames.npz", "objects": tmp / "objects" / "Frostbite" /
           "objects.npz", "run": tmp / "objects" / "Frostbite" / "run.json", "log": tmp / "logs" / "Frostbite.log"}
    proc = run_objects_python(["src/collect_objects.py", "--params", *map(str, PROFILE), str(overlay),
                               "--game", "Frostbite", "--out-frames", str(out["frames"]), "--out-objects",
                               str(out["objects"]), "--out-run", str(out["run"]), "--log", str(out["log"])])
    assert proc.returncode == 0, proc.stderr[-3000:]
    with np.load(out["frames"]) as data:
        arrays = dict(data)
    with np.load(out["objects"]) as data:
        packed = dict(data)
    return {"arrays": arrays, "packed": packed, "run": json.loads(out["run"].read_text()), "log": out["log"],
            "params": load_params([*PROFILE, overlay])}


def test_frames_previous_and_has_previous_match_a_replay(stage):
    a, params = stage["arrays"], stage["params"]
    size = params.atari.frame_size_px
    assert a["frames"].shape == a["previous"].shape == (N_FRAMES, size, size, 3)
    assert a["frames"].dtype == a["previous"].dtype == np.uint8 and a["has_previous"].dtype == bool
    assert a["steps"].tolist() == list(range(0, N_FRAMES * EVERY, EVERY))
    seeds = {k: derive_seed(params.criteria.seed, "objects", "Frostbite", k) for k in ("env", "policy")}
    assert stage["run"]["seeds"] == seeds
    # replay: same env and policy seeds through the main environment's wrapper
    env = make_env("Frostbite", seeds["env"], "train", params.atari)
    rng = np.random.Generator(np.random.PCG64(seeds["policy"]))
    env.reset()
    previous, episode, ends = None, 0, 0
    for step in range(int(a["steps"][-1]) + 1):
        frame = env.frame
        if step % EVERY == 0:
            i = step // EVERY
            np.testing.assert_array_equal(a["frames"][i], frame)
            assert a["episodes"][i] == episode
            assert a["has_previous"][i] == (previous is not None), step
            np.testing.assert_array_equal(a["previous"][i], previous if previous is not None else 0)
        _, _, terminated, truncated, _ = env.step(int(rng.integers(env.n_actions)))
        previous = frame
        if terminated or truncated:
            episode, ends, previous = episode + 1, ends + 1, None
            env.reset(hard=params.collect.first_life_only)
    env.close()
    assert ends >= 2 and a["episodes"][-1] == ends  # the episode boundaries were exercised
    assert not a["has_previous"][0] and a["has_previous"].sum() >= N_FRAMES - 1 - ends
    assert stage["run"]["n_without_previous"] == int((~a["has_previous"]).sum())


def test_objects_layout_and_plausibility(stage):
    packed, params, frames = stage["packed"], stage["params"], stage["arrays"]["frames"]
    assert packed["offsets"].shape == (N_FRAMES + 1,) and packed["offsets"][0] == 0
    assert np.all(np.diff(packed["offsets"]) >= 1) and packed["offsets"][-1] == len(packed["boxes"])
    assert packed["boxes"].dtype == np.int16 and packed["hud"].dtype == bool
    dynamic = params.criteria.dynamic_categories["Frostbite"]
    objects = unpack_objects(packed, dynamic)
    names = {o.category for frame in objects for o in frame}
    assert {"Player", "Score", "FloatingBlock"} <= names
    assert any(o.dynamic for frame in objects for o in frame)
    hud_names = {str(packed["categories"][c]) for c, h in zip(packed["category"], packed["hud"], strict=True) if h}
    assert "Score" in hud_names and not hud_names & {"Player", "FloatingBlock"}
    run = stage["run"]
    assert run["ocatari_version"] == "2.2.1" and run["numpy_version"].startswith("1.")
    assert run["params"]["objects"] == {"n_frames": N_FRAMES, "every": EVERY, "ocatari_mode": "ram", "hud": True}
    assert sum(run["category_counts"]["scene"].values()) + sum(run["category_counts"]["hud"].values()) == \
        len(packed["boxes"])
    # the player's box lies on the player: the frame pixels under it are not one flat colour
    size = params.atari.frame_size_px
    players = [(f, o.box) for f, frame in enumerate(objects) for o in frame if o.category == "Player"]
    assert len(players) >= N_FRAMES // 2
    textured = 0
    for f, box in players:
        touched = box_patches(box, frame_px=size, patch_px=1).reshape(size, size)  # 1-px patches = pixels
        textured += len(np.unique(frames[f][touched], axis=0)) >= 2
    assert textured >= 0.9 * len(players)
    assert stage["log"].read_text().count("collecting") == 1


def test_ocatari_ram_objects_for_all_four_games():
    script = """
import json, sys
import numpy as np
import importlib.util
spec = importlib.util.spec_from_file_location("co", "src/collect_objects.py")
co = importlib.util.module_from_spec(spec); spec.loader.exec_module(co)
from spirl.envs.atari import AtariEnv
out = {}
for game in ("Frostbite", "MsPacman", "Seaquest", "BattleZone"):
    env = AtariEnv(game, seed=0, mode="train", frame_size_px=40, frame_skip=4, frame_stack=4, max_noops=30,
                   max_episode_agent_steps=27000, fire_on_reset=True)
    arrays, objects = co.collect_with_objects(env, co.RamObjects(game), 3, 4, np.random.default_rng(0), True, False)
    out[game] = {"objects": objects[-1], "has_previous": arrays["has_previous"].tolist()}
json.dump(out, sys.stdout)
"""
    proc = run_objects_python(["-c", script])
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    for game, found in result.items():
        players = [o for o in found["objects"] if o[0] == "Player"]
        assert len(players) == 1 and not players[0][2], (game, found["objects"])
        x, y, w, h = players[0][1]
        assert w > 0 and h > 0 and -10 <= x < 160 and -10 <= y < 210, (game, players)
        assert found["has_previous"] == [False, True, True], game
