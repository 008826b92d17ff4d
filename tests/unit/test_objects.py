"""Object recall (SPEC §14): box -> patch geometry, recall / precision / random recall / lift with bootstrap CIs,
the object file layout, and the object collector's frame and RAM timing."""

from __future__ import annotations

import importlib.util
import itertools
from fractions import Fraction

import numpy as np
import pytest

from spirl.common.seeding import derive_seed
from spirl.envs.atari import AtariEnv
from spirl.envs.object_files import pack_objects, unpack_objects
from spirl.envs.objects import ObjectBox, box_patches, grid_side
from spirl.envs.recall import (
    MOTION_GROUPS,
    frame_metrics,
    motion_groups,
    random_hit_probability,
    random_selection_masks,
    recall_report,
    selection_mask,
    selection_masks,
)
from spirl.params import REPO_ROOT, load_params

PAPER = {"frame_px": 96, "patch_px": 8}  # 12 x 12 grid, N = 144
SMOKE = {"frame_px": 40, "patch_px": 8}  # conf/smoke.yaml: 5 x 5 grid of 8-px patches, N = 25


def patches(box, geometry) -> list[int]:
    """Sorted indices of the patches one box touches."""
    return np.flatnonzero(box_patches(box, **geometry)).tolist()


# ---------------------------------------------------------------- geometry


def test_box_patches_hand_worked_96px():
    # x: [10, 18) * 96/160 = [6, 10.8) -> columns 0, 1; y: [20, 38) * 96/210 = [9.14, 17.37) -> rows 1, 2
    assert patches((10, 20, 8, 18), PAPER) == [12, 13, 24, 25]
    # x = 40 maps to frame pixel 24 exactly, the left edge of column 3: half-open, so [0, 24) is columns 0-2 only
    assert patches((0, 0, 40, 1), PAPER) == [0, 1, 2]
    assert patches((40, 0, 1, 1), PAPER) == [3]
    # y = 35 maps to frame pixel 16 exactly, the top edge of row 2
    assert patches((0, 0, 1, 35), PAPER) == [0, 12]
    assert patches((0, 35, 1, 1), PAPER) == [24]
    # the last column and row; a box hanging off the screen touches only the on-screen patches
    assert patches((159, 209, 1, 1), PAPER) == [143]
    assert patches((-5, 0, 8, 1), PAPER) == [0]
    assert patches((158, 0, 8, 1), PAPER) == [11]
    assert patches((170, 0, 8, 8), PAPER) == []
    assert patches((0, 0, 160, 210), PAPER) == list(range(144))


def test_box_patches_hand_worked_40px():
    # x: [30, 38) * 40/160 = [7.5, 9.5) -> columns 0, 1; y: [100, 118) * 40/210 = [19.05, 22.48) -> row 2
    assert patches((30, 100, 8, 18), SMOKE) == [10, 11]
    # x = 32 -> frame pixel 8 (column edge), y = 42 -> frame pixel 8 (row edge)
    assert patches((0, 0, 32, 42), SMOKE) == [0]
    assert patches((32, 42, 1, 1), SMOKE) == [6]
    assert patches((31, 41, 2, 2), SMOKE) == [0, 1, 5, 6]
    assert patches((130, 180, 20, 8), SMOKE) == [24]
    assert patches((0, 0, 160, 210), SMOKE) == list(range(25))


def test_box_patches_shapes_and_size_zero_boxes():
    boxes = [(10, 20, 8, 18), (10, 20, 0, 18), (10, 20, 8, 0), (10, 20, -3, 5)]
    out = box_patches(boxes, **PAPER)
    assert out.shape == (4, 144) and out.dtype == np.bool_
    assert out[0].sum() == 4 and not out[1:].any()
    assert box_patches(np.zeros((0, 4)), **SMOKE).shape == (0, 25)
    assert box_patches([], **SMOKE).shape == (0, 25)
    with pytest.raises(ValueError, match="divide"):
        box_patches((0, 0, 1, 1), frame_px=96, patch_px=7)
    with pytest.raises(ValueError, match=r"\[M, 4\]"):
        box_patches([(0, 0, 1)], **PAPER)


def _reference_touch(box, frame_px: int, patch_px: int) -> list[int]:
    """Exact rational reference: patch (r, c) is touched iff the scaled open rectangles intersect."""
    x, y, w, h = (Fraction(v) for v in box)
    if w <= 0 or h <= 0:
        return []
    sx, sy = Fraction(frame_px, 160), Fraction(frame_px, 210)
    side = frame_px // patch_px
    out = []
    for r, c in itertools.product(range(side), range(side)):
        overlap_x = min((x + w) * sx, (c + 1) * patch_px) - max(x * sx, c * patch_px)
        overlap_y = min((y + h) * sy, (r + 1) * patch_px) - max(y * sy, r * patch_px)
        if overlap_x > 0 and overlap_y > 0:
            out.append(r * side + c)
    return out


@pytest.mark.parametrize("geometry", [PAPER, SMOKE, {"frame_px": 84, "patch_px": 12}])
def test_box_patches_matches_exact_rational_reference(geometry):
    rng = np.random.default_rng(0)
    boxes = np.column_stack([rng.integers(-20, 170, 300), rng.integers(-20, 220, 300),
                             rng.integers(-2, 60, 300), rng.integers(-2, 60, 300)])
    got = box_patches(boxes, **geometry)
    for box, row in zip(boxes, got, strict=True):
        assert np.flatnonzero(row).tolist() == _reference_touch(box, **geometry), box


# ---------------------------------------------------------------- selections and the random baseline


def test_selection_mask_accepts_indices_padding_and_masks():
    assert np.flatnonzero(selection_mask([3, 0, -1, -1], 5)).tolist() == [0, 3]
    assert selection_mask(np.array([True, False, True]), 3).tolist() == [True, False, True]
    assert not selection_mask(np.zeros(0, np.int64), 4).any()
    padded = np.array([[4, 1, -1], [0, 2, 3]])
    assert selection_masks(padded, 5).sum(axis=1).tolist() == [2, 3]
    assert selection_masks([[1], [0, 1, 2, 3]], 4).sum(axis=1).tolist() == [1, 4]
    with pytest.raises(ValueError, match="repeats"):
        selection_mask([1, 1], 4)
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        selection_mask([4], 4)
    with pytest.raises(ValueError, match="N=4"):
        selection_mask(np.ones(5, bool), 4)


def test_selection_mask_accepts_torch_tensors():
    torch = pytest.importorskip("torch")
    assert np.flatnonzero(selection_mask(torch.tensor([2, -1]), 4)).tolist() == [2]


def test_random_hit_probability_closed_form_and_enumeration():
    # 1 - C(N - m, K) / C(N, K): N = 6, K = 2, m = 2 -> 1 - 6/15
    assert random_hit_probability(2, 2, 6) == pytest.approx(0.6, abs=1e-15)
    assert random_hit_probability(0, 3, 6) == 0.0 and random_hit_probability(5, 3, 6) == 1.0
    assert random_hit_probability(1, 3, 25) == pytest.approx(3 / 25, abs=1e-15)  # m = 1: K / N
    for n, k in ((6, 2), (7, 3), (8, 5)):
        subsets = list(itertools.combinations(range(n), k))
        for m in range(n + 1):
            touched = set(range(m))
            share = sum(bool(touched & set(s)) for s in subsets) / len(subsets)
            assert random_hit_probability(m, k, n) == pytest.approx(share, abs=1e-12)
    np.testing.assert_allclose(random_hit_probability([0, 1, 2], 2, 6), [0.0, 1 / 3, 0.6], atol=1e-15)


def test_random_selection_masks_sizes_and_uniformity():
    rng = np.random.default_rng(0)
    masks = random_selection_masks(np.full(20_000, 3), 6, rng)
    assert masks.sum(axis=1).tolist() == [3] * 20_000
    np.testing.assert_allclose(masks.mean(axis=0), 0.5, atol=0.015)  # each patch kept with probability K/N


# ---------------------------------------------------------------- metrics on hand-built cases

# At 40 px: A touches patches 10, 11; B touches 0; the HUD item C touches 24.
A = ObjectBox("Player", (30, 100, 8, 18), True)
B = ObjectBox("Enemy", (4, 4, 8, 8), True)
C = ObjectBox("Score", (130, 180, 20, 8), False)


def test_frame_metrics_hand_worked():
    m = frame_metrics([10, 24, 5], [A, B, C], **SMOKE)
    # recall: A hit, B missed; precision: 10 (A) and 24 (HUD) of 3 selected
    assert m["k"] == 3 and m["n_dynamic"] == 2 and m["hits"] == 1 and m["n_dropped"] == 0
    assert m["recall"] == 0.5 and m["precision"] == pytest.approx(2 / 3)
    # random recall: A (m = 2): 1 - C(23, 3) / C(25, 3) = 529/2300 = 0.23; B (m = 1): 3/25 = 0.12; mean 0.175
    assert m["random_recall"] == pytest.approx(0.175, abs=1e-15)


def test_frame_metrics_drops_invisible_objects_and_handles_empty_frames():
    zero = ObjectBox("Enemy", (50, 50, 0, 10), True)
    off = ObjectBox("Enemy", (200, 50, 8, 8), True)
    m = frame_metrics([10], [A, zero, off], **SMOKE)
    assert m["n_dynamic"] == 1 and m["n_dropped"] == 2 and m["recall"] == 1.0
    empty = frame_metrics([3], [], **SMOKE)
    assert empty["recall"] is None and empty["random_recall"] is None and empty["precision"] == 0.0


def test_report_hand_worked_single_frame():
    r = recall_report([[10, 24, 5]], [[A, B, C]], rng=np.random.default_rng(0), n_boot=50, **SMOKE)
    assert r["n_frames"] == 1 and r["n_objects"] == 3 and r["n_dynamic_objects"] == 2
    assert r["recall"]["value"] == 0.5 and r["random_recall"]["value"] == pytest.approx(0.175)
    assert r["lift"]["value"] == pytest.approx(0.5 / 0.175) and r["precision"]["value"] == pytest.approx(2 / 3)
    assert r["mean_k"]["value"] == 3.0
    assert r["recall"]["ci"] == [0.5, 0.5]  # one frame: every resample is that frame
    assert set(r["per_category"]) == {"Enemy", "Player"}  # dynamic categories only
    player, enemy = r["per_category"]["Player"], r["per_category"]["Enemy"]
    assert player["recall"]["value"] == 1.0 and player["random_recall"]["value"] == pytest.approx(0.23)
    assert player["lift"]["value"] == pytest.approx(1 / 0.23)
    assert enemy["recall"]["value"] == 0.0 and enemy["lift"]["value"] == 0.0 and enemy["n_objects"] == 1


def _random_scene(rng: np.random.Generator, n_frames: int) -> list[list[ObjectBox]]:
    """Frames with 1-3 dynamic objects (boxes 2-40 px) and one HUD box each."""
    frames = []
    for _ in range(n_frames):
        objs = [ObjectBox(str(rng.choice(["Player", "Enemy"])),
                          (int(rng.integers(0, 150)), int(rng.integers(0, 200)), int(rng.integers(2, 40)),
                           int(rng.integers(2, 40))), True) for _ in range(int(rng.integers(1, 4)))]
        frames.append([*objs, ObjectBox("Score", (60, 2, 40, 8), False)])
    return frames


def test_report_selection_covering_exactly_the_objects():
    rng = np.random.default_rng(1)
    frames = _random_scene(rng, 40)
    selections = [np.flatnonzero(box_patches([o.box for o in objs], **SMOKE).any(axis=0)) for objs in frames]
    r = recall_report(selections, frames, rng=np.random.default_rng(0), n_boot=200, **SMOKE)
    assert r["recall"]["value"] == 1.0 and r["recall"]["ci"] == [1.0, 1.0]
    assert r["precision"]["value"] == 1.0
    random = r["random_recall"]["value"]
    assert 0 < random < 1 and r["lift"]["value"] == pytest.approx(1 / random)
    assert r["mean_k"]["value"] == pytest.approx(np.mean([len(s) for s in selections]))
    assert r["per_category"]["Player"]["recall"]["value"] == 1.0


def test_report_selection_avoiding_the_objects_has_lift_zero():
    frames = [[A, B]] * 5
    r = recall_report([[2, 3, 4]] * 5, frames, rng=np.random.default_rng(0), n_boot=20, **SMOKE)
    assert r["recall"]["value"] == 0.0 and r["lift"]["value"] == 0.0 and r["precision"]["value"] == 0.0


def test_report_random_selection_has_lift_near_one():
    """The metric's own control (SPEC §14): K uniform patches per frame land at lift ~ 1, with 1 inside the CI."""
    rng = np.random.default_rng(2)
    frames = _random_scene(rng, 3000)
    ks = rng.integers(2, 11, len(frames))
    selections = random_selection_masks(ks, grid_side(**SMOKE) ** 2, rng)
    r = recall_report(selections, frames, rng=np.random.default_rng(3), n_boot=1000, **SMOKE)
    assert r["n_dynamic_objects"] > 5000
    assert r["lift"]["value"] == pytest.approx(1.0, abs=0.05)
    low, high = r["lift"]["ci"]
    assert low < 1.0 < high and high - low < 0.1
    assert r["mean_k"]["value"] == pytest.approx(ks.mean())
    for cat in ("Player", "Enemy"):
        assert r["per_category"][cat]["lift"]["value"] == pytest.approx(1.0, abs=0.08)


def test_report_bootstrap_is_seeded_and_brackets_the_estimate():
    rng = np.random.default_rng(4)
    frames = _random_scene(rng, 200)
    selections = random_selection_masks(rng.integers(2, 11, 200), 25, rng)
    one = recall_report(selections, frames, rng=np.random.default_rng(7), n_boot=300, **SMOKE)
    two = recall_report(selections, frames, rng=np.random.default_rng(7), n_boot=300, **SMOKE)
    other = recall_report(selections, frames, rng=np.random.default_rng(8), n_boot=300, **SMOKE)
    assert one == two and one["recall"]["ci"] != other["recall"]["ci"]
    assert one["recall"]["value"] == other["recall"]["value"]
    for key in ("recall", "random_recall", "lift", "precision", "mean_k"):
        low, high = one[key]["ci"]
        assert low <= one[key]["value"] <= high
    no_ci = recall_report(selections, frames, rng=np.random.default_rng(7), n_boot=0, **SMOKE)
    assert no_ci["recall"]["ci"] == [None, None] and no_ci["recall"]["value"] == one["recall"]["value"]


def test_report_identical_frames_collapse_the_interval_and_padding_is_ignored():
    padded = np.array([[10, 24, 5, -1, -1]] * 6)
    r = recall_report(padded, [[A, B, C]] * 6, rng=np.random.default_rng(0), n_boot=100, **SMOKE)
    assert r["lift"]["ci"] == [pytest.approx(0.5 / 0.175)] * 2 and r["mean_k"]["value"] == 3.0


def test_report_rejects_mismatched_inputs():
    with pytest.raises(ValueError, match="object lists"):
        recall_report([[1]], [[A], [B]], rng=np.random.default_rng(0), **SMOKE)
    with pytest.raises(ValueError, match="at least one frame"):
        recall_report(np.zeros((0, 25), bool), [], rng=np.random.default_rng(0), **SMOKE)


# ---------------------------------------------------------------- object files


def test_motion_groups_by_hand():
    # 16×16 frames of 8-px patches (a 2 × 2 grid) from a 210×160 screen; a dynamic object's box covers the top-left
    # patch, a static one the bottom-right patch
    frames = np.zeros((5, 16, 16, 3), dtype=np.uint8)
    previous = frames.copy()
    player, house = ("Player", (0, 0, 40, 40), True), ("House", (120, 160, 40, 50), False)
    frames[0, 3, 4, 1] = 9  # one channel of one pixel on the player's patch changed
    frames[1, 12, 12] = 9  # only the static item's patch changed
    # frame 2: nothing changed; frame 3: a changed pixel, but it is an episode's first frame
    frames[3, 3, 4] = 9
    frames[4, 12, 2] = 9  # bottom-left patch changed, and the dynamic object sits there in this frame
    objects = [[player, house], [player, house], [player], [player], [("Player", (0, 150, 40, 60), True)]]
    groups = motion_groups(frames, previous, np.array([True, True, True, False, True]), objects, patch_px=8)
    assert [MOTION_GROUPS[g] for g in groups] == ["objects_moved", "elsewhere_only", "no_motion", "no_previous",
                                                  "objects_moved"]
    with pytest.raises(ValueError, match="same frames"):
        motion_groups(frames, previous[:4], np.ones(5, bool), objects, patch_px=8)


def test_pack_unpack_roundtrip_and_dynamic_rule():
    frames = [[("Player", (10, 20, 8, 18), False), ("Fruit", (125, 173, 9, 10), True)],
              [],
              [("Ghost", (-3, 5, 9, 10), False), ("Fruit", (50, 60, 9, 10), False), ("Pill", (8, 7, 4, 2), False)]]
    arrays = pack_objects(frames)
    assert arrays["offsets"].tolist() == [0, 2, 2, 5]
    assert arrays["categories"].tolist() == ["Fruit", "Ghost", "Pill", "Player"]
    assert arrays["boxes"].dtype == np.int16 and arrays["boxes"].shape == (5, 4)
    out = unpack_objects(arrays, ["Player", "Ghost", "Fruit"])
    assert [len(f) for f in out] == [2, 0, 3]
    assert out[0] == [ObjectBox("Player", (10, 20, 8, 18), True), ObjectBox("Fruit", (125, 173, 9, 10), False)]
    assert out[2][0] == ObjectBox("Ghost", (-3, 5, 9, 10), True)  # negative coordinates survive
    assert out[2][1].dynamic and not out[2][2].dynamic  # a scene fruit is dynamic, the HUD fruit is not, pills never
    empty = pack_objects([[], []])
    assert empty["offsets"].tolist() == [0, 0, 0] and unpack_objects(empty, []) == [[], []]


def test_pack_objects_through_npz(tmp_path):
    from spirl.common.io import write_npz

    arrays = pack_objects([[("Shark", (20, 80, 8, 7), False)]])
    write_npz(tmp_path / "objects.npz", arrays)
    with np.load(tmp_path / "objects.npz", allow_pickle=False) as loaded:
        assert unpack_objects(loaded, ["Shark"]) == [[ObjectBox("Shark", (20, 80, 8, 7), True)]]


# ---------------------------------------------------------------- the collector (src/collect_objects.py)


def load_collector():
    spec = importlib.util.spec_from_file_location("collect_objects", REPO_ROOT / "src" / "collect_objects.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class RamEcho:
    """Test double for RamObjects: one 'object' whose box is RAM bytes 0-3 of the last update."""

    def __init__(self):
        self.resets = 0
        self.ram = None

    def reset(self):
        self.resets += 1

    def update(self, ram):
        self.ram = np.array(ram)

    def current(self):
        return [("Ram", tuple(int(v) for v in self.ram[:4]), False)]


def small_env(game: str, seed: int) -> AtariEnv:
    return AtariEnv(game, seed=seed, mode="train", frame_size_px=40, frame_skip=4, frame_stack=4, max_noops=30,
                    max_episode_agent_steps=27_000, fire_on_reset=True)


def test_collector_keeps_every_kth_wrapper_frame_with_that_moments_ram():
    co = load_collector()
    env, tracker = small_env("Seaquest", 5), RamEcho()
    arrays, objects = co.collect_with_objects(env, tracker, 6, 3, np.random.default_rng(9), True, True)
    assert arrays["steps"].tolist() == [0, 3, 6, 9, 12, 15] and arrays["frames"].shape == (6, 40, 40, 3)
    assert arrays["screens"].shape == (6, 210, 160, 3) and len(objects) == 6
    assert arrays["previous"].shape == (6, 40, 40, 3) and arrays["previous"].dtype == np.uint8
    assert arrays["has_previous"].tolist() == [False] + [True] * 5  # step 0 is the reset frame
    assert not arrays["previous"][0].any()
    # replay the same seeds: the kept frame, raw screen and RAM are those after step t's last emulator frame, and the
    # previous frame is the newest frame after step t - 1
    replay, rng = small_env("Seaquest", 5), np.random.default_rng(9)
    replay.reset()
    last = None
    for t in range(16):
        if t % 3 == 0:
            i = t // 3
            np.testing.assert_array_equal(arrays["frames"][i], replay.frame)
            np.testing.assert_array_equal(arrays["screens"][i], replay.ale.getScreenRGB())
            assert objects[i] == [("Ram", tuple(int(v) for v in replay.ale.getRAM()[:4]), False)]
            if t > 0:
                np.testing.assert_array_equal(arrays["previous"][i], last)
                assert not np.array_equal(arrays["previous"][i], arrays["frames"][i])
        last = replay.frame
        replay.step(int(rng.integers(replay.n_actions)))
    assert tracker.resets == 1  # no episode ended in 16 steps


def test_collector_has_no_previous_frame_at_episode_starts():
    co = load_collector()
    env = AtariEnv("Frostbite", seed=2, mode="train", frame_size_px=40, frame_skip=4, frame_stack=4, max_noops=30,
                   max_episode_agent_steps=4, fire_on_reset=True)  # truncated every 4 agent steps
    arrays, _ = co.collect_with_objects(env, RamEcho(), 11, 1, np.random.default_rng(1), True, False)
    assert arrays["episodes"].tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2]
    starts = [True, False, False, False] * 2 + [True, False, False]
    assert arrays["has_previous"].tolist() == [not s for s in starts]
    assert not arrays["previous"][np.array(starts)].any()  # nothing stored where there is no previous frame
    within = np.flatnonzero(~np.array(starts))  # every = 1: the previous frame is the kept frame before
    np.testing.assert_array_equal(arrays["previous"][within], arrays["frames"][within - 1])
    # the agent's observation: the newest frame last, the one before it second-to-last, zeros before an episode
    assert arrays["stacks"].shape == (11, 4, 40, 40, 3)
    np.testing.assert_array_equal(arrays["stacks"][:, -1], arrays["frames"])
    np.testing.assert_array_equal(arrays["stacks"][within, -2], arrays["previous"][within])
    assert not arrays["stacks"][np.array(starts), :-1].any()
    np.testing.assert_array_equal(arrays["stacks"][3, :3], arrays["frames"][:3])  # a full stack: steps 0..3


def test_collector_sizes_and_seeds_from_params():
    co = load_collector()
    params = load_params([REPO_ROOT / "params.yaml"])
    assert co.object_sizes(params, None, None) == (params.criteria.object_frames, params.criteria.object_every)
    assert co.object_sizes(params, 7, 2) == (7, 2)
    seeds = co.object_seeds(params.criteria.seed, "Frostbite")
    assert seeds == {"env": derive_seed(params.criteria.seed, "objects", "Frostbite", "env"),
                     "policy": derive_seed(params.criteria.seed, "objects", "Frostbite", "policy")}
    assert seeds != co.object_seeds(params.criteria.seed, "Seaquest")
    assert seeds != co.object_seeds(params.criteria.seed + 1, "Frostbite")


def test_collector_category_counts():
    co = load_collector()
    counts = co.category_counts([[("Player", (0, 0, 1, 1), False), ("Score", (0, 0, 1, 1), True)],
                                 [("Player", (0, 0, 1, 1), False)]])
    assert counts == {"hud": {"Score": 1}, "scene": {"Player": 2}}


@pytest.mark.parametrize("game", ["Frostbite", "MsPacman", "Seaquest", "BattleZone"])
def test_ocatari_ram_objects_on_the_wrappers_emulator(game):
    """Only where OCAtari is installed (the objects environment): the player is found on the wrapper's RAM."""
    pytest.importorskip("ocatari")
    co = load_collector()
    env = small_env(game, 0)
    arrays, objects = co.collect_with_objects(env, co.RamObjects(game), 3, 4, np.random.default_rng(0), True, True)
    players = [o for o in objects[-1] if o[0] == "Player"]
    assert len(players) == 1 and not players[0][2]
    x, y, w, h = players[0][1]
    screen = arrays["screens"][-1][max(y, 0):y + h, max(x, 0):x + w].reshape(-1, 3)
    assert len(np.unique(screen, axis=0)) >= 2  # the box is not one flat background colour
    assert len(objects) == 3
