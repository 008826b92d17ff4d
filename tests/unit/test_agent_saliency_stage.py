"""The agent_saliency stage's own pieces (SPEC §16): boxes on the frame grid, the frames it picks, the table's lifts."""

from __future__ import annotations

import importlib.util
import math

import numpy as np

from spirl.envs.objects import ObjectBox
from spirl.params import REPO_ROOT


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "src" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_dynamic_boxes_are_scaled_to_the_frame_and_rounded_outwards():
    stage = _script("agent_saliency")
    objects = [ObjectBox("Player", (40.0, 105.0, 8.0, 21.0), True), ObjectBox("Score", (0.0, 0.0, 20.0, 10.0), False)]
    # 96-px frame: x scale 96/160 = 0.6, y scale 96/210; x 24..28.8 -> 24..29, y 48..57.6 -> 48..58
    assert stage.frame_boxes(objects, 96) == [(24, 48, 5, 10)]


def test_picked_frames_have_full_stacks_and_a_moving_object():
    stage = _script("agent_saliency")
    stacks = np.ones((6, 4, 8, 8, 3), np.uint8)
    stacks[1, 0] = 0  # an episode's start: a padding frame
    player, floe = ObjectBox("Player", (1.0, 1.0, 2.0, 2.0), True), ObjectBox("House", (1.0, 1.0, 2.0, 2.0), False)
    objects = [[player], [player], [floe], [player], [player], [player]]
    assert stage.pick_frames(stacks, objects, 2).tolist() == [0, 5]
    assert stage.pick_frames(stacks, objects, 10).tolist() == [0, 3, 4, 5]


def test_table_rows_give_lifts_over_a_uniform_map():
    table = _script("agent_saliency_table")
    record = {"wildcards": {"variant": "spirl", "regime": "100k", "game": "Frostbite", "seed": 0}, "wall_time_s": 3.0,
              "result": {"n_frames": 6, "mean": {"objects_share": 0.3, "objects_area": 0.1, "selected_share": 0.6,
                                                 "selected_area": 0.4}}}
    pixels = {**record, "result": {"n_frames": 6, "mean": {"objects_share": 0.05, "objects_area": 0.1}}}
    rows = table.table_rows([record, pixels])
    assert math.isclose(rows[0]["objects_lift"], 3.0) and math.isclose(rows[0]["selected_lift"], 1.5)
    assert math.isclose(rows[1]["objects_lift"], 0.5) and math.isnan(rows[1]["selected_lift"])
    text = table.markdown(rows, "desk")
    assert "0.30 (0.10; ×3.0)" in text and "| — |" in text
    assert "fig_agent_saliency/spirl/100k/Frostbite/0.png" in text


def test_a_run_without_a_record_is_named_not_filled(tmp_path):
    table = _script("agent_saliency_table")
    path = tmp_path / "results/desk/agent_saliency/divst_all/100k/Frostbite/0.json"
    record = {"wildcards": {"variant": "spirl", "regime": "100k", "game": "Frostbite", "seed": 0}, "wall_time_s": 3.0,
              "result": {"n_frames": 6, "mean": {"objects_share": 0.3, "objects_area": 0.1}}}
    rows = table.table_rows([table.missing_row(path), record])
    assert rows[0]["variant"] == "divst_all" and rows[0]["seed"] == "0" and math.isnan(rows[0]["objects_share"])
    assert set(rows[0]) == set(rows[1])  # one CSV header fits both
    table.write_csv(rows, tmp_path / "t.csv")
    assert (tmp_path / "t.csv").read_text().count("\n") == 3
    assert "| divst_all 100k Frostbite seed 0 | — | — (missing: no record" in table.markdown(rows, "desk")
