"""Reading runs back (spirl.reporting.scores): eval schedules, final metrics, run completeness, tidy rows, bins.

Every expected number is worked out by hand in the test; the smoke profile's regimes are
100k: 300 env steps, one evaluation at 300 (final_mean); 400k: 400 env steps, evaluations at 200 and 400
(best_median); eval.n_envs = 2; train.learn_start_env_steps = 100.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from spirl.params import REPO_ROOT, load_params
from spirl.reporting.scores import (
    RunResult,
    bin_means,
    episode_rows,
    expected_eval_steps,
    load_run,
    online_env_steps,
    run_rows,
)
from spirl.training.metrics import final_metric


@pytest.fixture(scope="module")
def smoke():
    return load_params([REPO_ROOT / "params.yaml", REPO_ROOT / "conf" / "smoke.yaml"])


@pytest.fixture(scope="module")
def full():
    return load_params([REPO_ROOT / "params.yaml"])


def write_run(root, key, points, *, named=None, run_json=True, wall=12.5):
    """Write eval.json (naming `named` or `key`) and, if asked, run.json under root; return their paths."""
    variant, regime, game, seed = named or key
    root.mkdir(parents=True, exist_ok=True)
    eval_path, run_path = root / "eval.json", root / "run.json"
    eval_path.write_text(json.dumps({"variant": variant, "regime": regime, "game": game, "seed": int(seed),
                                     "metric": "final_mean", "points": points}))
    if run_json:
        run_path.write_text(json.dumps({"wall_time_s": wall, "device": {"cpu_count": 2}, "device_used": "cpu"}))
    return eval_path, run_path


def point(step, returns):
    return {"env_step": step, "returns": list(returns), "lengths": [10] * len(returns),
            "finished": [True] * len(returns)}


KEY = ("spirl", "100k", "Frostbite", "0")


# ----------------------------------------------------------------------------------------------
# Schedules
# ----------------------------------------------------------------------------------------------


def test_expected_eval_steps_hand_cases():
    assert expected_eval_steps(400_000, 50_000) == [50_000, 100_000, 150_000, 200_000, 250_000, 300_000,
                                                    350_000, 400_000]
    assert len(expected_eval_steps(400_000, 50_000)) == 8
    assert expected_eval_steps(300, 200) == [200, 300]
    assert expected_eval_steps(300, 300) == [300]
    assert expected_eval_steps(200, 300) == [200]  # evaluation period longer than the run: only the end


def test_online_env_steps_prefill_vs_spirl(smoke, full):
    # smoke: 100k regime = 300 env steps; DE-Rainbow-P's replay pre-fill replaces the 100 warm-up steps
    assert online_env_steps(smoke, "spirl", "100k") == 300
    assert online_env_steps(smoke, "de_rainbow", "100k") == 300
    assert online_env_steps(smoke, "de_rainbow_p", "100k") == 300 - 100
    # full: 100K - 1.6K warm-up = 98.4K own env steps (SPEC §9.5, Tab. 12)
    assert online_env_steps(full, "spirl", "100k") == 100_000
    assert online_env_steps(full, "de_rainbow_p", "100k") == 98_400
    assert online_env_steps(full, "spirl", "400k") == 400_000


# ----------------------------------------------------------------------------------------------
# Final metric
# ----------------------------------------------------------------------------------------------

POINTS = [point(100, [1.0, 2.0, 30.0]),   # mean 11, median 2
          point(200, [5.0, 6.0, 7.0]),    # mean 6,  median 6
          point(300, [0.0, 4.0, 2.0])]    # mean 2,  median 2


def test_final_mean_is_the_mean_of_the_last_point():
    assert final_metric(POINTS, "final_mean") == pytest.approx((0.0 + 4.0 + 2.0) / 3)


def test_best_median_is_the_max_over_points_of_the_median():
    assert final_metric(POINTS, "best_median") == pytest.approx(6.0)  # not the best mean (11) nor the last
    # even number of episodes: median = mean of the two middle returns
    assert final_metric([point(1, [1.0, 9.0]), point(2, [4.0, 4.0])], "best_median") == pytest.approx(5.0)


def test_final_metric_rejects_unknown_metric_and_no_points():
    with pytest.raises(ValueError, match="unknown metric"):
        final_metric(POINTS, "best_mean")
    with pytest.raises(ValueError):
        final_metric([], "final_mean")


# ----------------------------------------------------------------------------------------------
# load_run
# ----------------------------------------------------------------------------------------------


def test_load_run_complete(tmp_path, smoke):
    e, r = write_run(tmp_path, KEY, [point(300, [10.0, 31.0])], wall=3600.0)
    res = load_run(KEY, e, r, smoke)
    assert res.status == "complete" and res.complete and res.reason == ""
    assert res.key == KEY and res.metric == "final_mean"
    assert res.score == pytest.approx(20.5)  # (10 + 31) / 2
    assert res.wall_time_s == 3600.0 and res.device == "cpu"
    assert len(res.points) == 1


def test_load_run_complete_400k_uses_best_median(tmp_path, smoke):
    key = ("spirl", "400k", "Seaquest", "1")
    e, r = write_run(tmp_path, key, [point(200, [10.0, 30.0]), point(400, [0.0, 2.0])])
    res = load_run(key, e, r, smoke)
    assert res.status == "complete" and res.metric == "best_median"
    assert res.score == pytest.approx(20.0)  # medians 20 and 1


def test_load_run_prefill_schedule(tmp_path, smoke):
    # DE-Rainbow-P runs 300 - 100 = 200 env steps itself, so it evaluates at 200, not 300
    key = ("de_rainbow_p", "100k", "Frostbite", "0")
    e, r = write_run(tmp_path / "ok", key, [point(200, [1.0, 3.0])])
    assert load_run(key, e, r, smoke).status == "complete"
    e, r = write_run(tmp_path / "bad", key, [point(300, [1.0, 3.0])])
    assert load_run(key, e, r, smoke).status == "incomplete"


def test_load_run_missing(tmp_path, smoke):
    res = load_run(KEY, tmp_path / "eval.json", tmp_path / "run.json", smoke)
    assert res.status == "missing" and not res.complete
    assert "eval.json" in res.reason
    assert math.isnan(res.score) and res.points == ()


@pytest.mark.parametrize("case", ["steps", "n_returns", "nan", "other_run", "no_run_json", "extra_point"])
def test_load_run_incomplete(tmp_path, smoke, case):
    points, named, run_json = [point(300, [1.0, 2.0])], None, True
    if case == "steps":
        points = [point(200, [1.0, 2.0])]
    elif case == "n_returns":
        points = [point(300, [1.0, 2.0, 3.0])]
    elif case == "nan":
        points = [point(300, [1.0, float("nan")])]
    elif case == "other_run":
        named = ("spirl", "100k", "Frostbite", "1")
    elif case == "no_run_json":
        run_json = False
    elif case == "extra_point":
        points = [point(300, [1.0, 2.0]), point(600, [1.0, 2.0])]
    e, r = write_run(tmp_path, KEY, points, named=named, run_json=run_json)
    res = load_run(KEY, e, r, smoke)
    assert res.status == "incomplete" and not res.complete
    assert math.isnan(res.score)
    assert res.reason
    expected_words = {"steps": "env steps [200]", "n_returns": "3 episode returns", "nan": "non-finite",
                      "other_run": "belongs to run", "no_run_json": str(r), "extra_point": "[300, 600]"}
    assert expected_words[case] in res.reason


def test_load_run_unreadable_eval_json(tmp_path, smoke):
    (tmp_path / "eval.json").write_text("{not json")
    res = load_run(KEY, tmp_path / "eval.json", tmp_path / "run.json", smoke)
    assert res.status == "incomplete" and "unreadable" in res.reason and math.isnan(res.score)



def test_load_run_eval_json_not_an_object(tmp_path, smoke):
    (tmp_path / "eval.json").write_text("[]")
    res = load_run(KEY, tmp_path / "eval.json", tmp_path / "run.json", smoke)
    assert res.status == "incomplete" and math.isnan(res.score)

# ----------------------------------------------------------------------------------------------
# Tidy rows
# ----------------------------------------------------------------------------------------------


def test_episode_and_run_rows_tiny_case():
    done = RunResult(("spirl", "400k", "Seaquest", "0"), "complete", "", "best_median", 7.5,
                     (point(200, [1.0, 2.0]), point(400, [7.0, 8.0])))
    gone = RunResult(("spirl", "400k", "Seaquest", "1"), "missing", "no eval.json", "best_median", math.nan)
    ep = episode_rows([done, gone])
    base = {"variant": "spirl", "regime": "400k", "game": "Seaquest", "seed": "0"}
    assert ep == [{**base, "env_step": 200, "episode": 0, "return": 1.0},
                  {**base, "env_step": 200, "episode": 1, "return": 2.0},
                  {**base, "env_step": 400, "episode": 0, "return": 7.0},
                  {**base, "env_step": 400, "episode": 1, "return": 8.0}]
    assert run_rows([done, gone]) == [
        {**base, "status": "complete", "metric": "best_median", "score": 7.5, "n_points": 2, "reason": ""},
        {**base, "seed": "1", "status": "missing", "metric": "best_median", "score": "", "n_points": 0,
         "reason": "no eval.json"}]


# ----------------------------------------------------------------------------------------------
# bin_means
# ----------------------------------------------------------------------------------------------


def test_bin_means_hand_case():
    edges = [0, 10, 20, 30, 40]  # bins (0,10] (10,20] (20,30] (30,40]
    steps = [5, 10, 11, 20, 35, 40, 0, 41]
    values = [1.0, 3.0, 10.0, 20.0, 7.0, 9.0, 100.0, 100.0]
    # (0,10]: steps 5, 10 -> (1 + 3) / 2 = 2   (10 sits on an edge: it belongs to the lower bin)
    # (10,20]: 11, 20 -> (10 + 20) / 2 = 15
    # (20,30]: nothing -> nan
    # (30,40]: 35, 40 -> (7 + 9) / 2 = 8
    # step 0 (= the first edge, not > it) and 41 (past the last edge) fall in no bin
    out = bin_means(steps, values, edges)
    assert out.shape == (4,)
    np.testing.assert_allclose(out, [2.0, 15.0, np.nan, 8.0])


def test_bin_means_boundary_belongs_to_lower_bin():
    out = bin_means([20.0], [1.0], [0.0, 20.0, 40.0])
    assert out[0] == 1.0 and math.isnan(out[1])
    out = bin_means([20.000001], [1.0], [0.0, 20.0, 40.0])
    assert math.isnan(out[0]) and out[1] == 1.0
