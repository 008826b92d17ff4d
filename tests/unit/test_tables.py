"""The paper's tables from runs (spirl.reporting.tables, src/make_tables.py), on fake run files with chosen returns.

Profile: smoke (games Frostbite, Seaquest; 100k = one evaluation at env step 300, final_mean; 400k =
evaluations at 200 and 400, best_median; DE-Rainbow-P evaluates at 300 - 100 = 200; 2 eval envs), with
3 seeds for spirl and 2 for de_rainbow (de_rainbow_p keeps 1). Every expected number is computed by hand below.
"""

from __future__ import annotations

import copy
import csv
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from spirl.params import REPO_ROOT, params_from_dict, read_params
from spirl.reporting import tables as T
from spirl.reporting.scores import RUN_FIELDS, load_run
from spirl.reporting.table_parts import pretraining_time_rows
from spirl.reporting.tables import build_table, read_reference, table_columns, to_markdown
from spirl.workflow.plan import table_runs

REFERENCE = REPO_ROOT / "data" / "reference" / "paper_scores.csv"
RAW = read_params([REPO_ROOT / "params.yaml", REPO_ROOT / "conf" / "smoke.yaml"])

# (variant, regime, game) -> seed -> the returns [2 envs] at each scheduled evaluation point
RETURNS = {
    # 100k final_mean: 150, 400, 650 -> mean 400, std sqrt((250^2 + 0 + 250^2) / 2) = 250
    ("spirl", "100k", "Frostbite"): {0: [[100, 200]], 1: [[300, 500]], 2: [[600, 700]]},
    # 60, 90, 120 -> mean 90, std sqrt((30^2 + 0 + 30^2) / 2) = 30
    ("spirl", "100k", "Seaquest"): {0: [[50, 70]], 1: [[80, 100]], 2: [[110, 130]]},
    # 400k best_median: max(200, 150) = 200, max(500, 100) = 500, max(0, 800) = 800 -> mean 500, std 300
    # (final_mean would give 150, 100, 800 -> 350)
    ("spirl", "400k", "Frostbite"): {0: [[100, 300], [150, 150]], 1: [[400, 600], [100, 100]],
                                     2: [[0, 0], [700, 900]]},
    # seed 2 missing: max(20, 50) = 50, max(110, 90) = 110 -> mean 80, std sqrt(30^2 + 30^2) = 42.4264
    ("spirl", "400k", "Seaquest"): {0: [[10, 30], [40, 60]], 1: [[100, 120], [90, 90]]},
    # de_rainbow Frostbite: both seeds missing. Seaquest: 250, 450 -> mean 350, std sqrt(2 * 100^2) = 141.4214
    ("de_rainbow", "100k", "Seaquest"): {0: [[200, 300]], 1: [[400, 500]]},
    # de_rainbow_p: one seed, 40 and 80
    ("de_rainbow_p", "100k", "Frostbite"): {0: [[30, 50]]},
    ("de_rainbow_p", "100k", "Seaquest"): {0: [[70, 90]]},
}
STEPS = {"100k": [300], "400k": [200, 400]}
# human-normalisation (reference file): Frostbite random 65.2, human 4334.7; Seaquest random 68.4, human 42054.7
F_SPAN, S_SPAN = 4334.7 - 65.2, 42054.7 - 68.4


def make_params(**report):
    raw = copy.deepcopy(RAW)
    raw["experiment"]["variants"]["spirl"]["n_seeds"] = 3
    raw["experiment"]["variants"]["de_rainbow"]["n_seeds"] = 2
    raw["report"].update(report)
    return params_from_dict(raw)


def write_run(root, key, returns_per_point, steps):
    variant, regime, game, seed = key
    root.mkdir(parents=True, exist_ok=True)
    points = [{"env_step": s, "returns": [float(x) for x in rets], "lengths": [5] * len(rets),
               "finished": [True] * len(rets)} for s, rets in zip(steps, returns_per_point, strict=True)]
    (root / "eval.json").write_text(json.dumps({"variant": variant, "regime": regime, "game": game,
                                                "seed": int(seed), "metric": "m", "points": points}))
    (root / "run.json").write_text(json.dumps({"wall_time_s": 60.0, "device": {"cpu_count": 2}}))


def write_fixture_runs(base, params, table, returns):
    """Write the runs that `returns` holds under base/...; return the (eval, run) paths of every table run."""
    paths = []
    for run in table_runs(params, table):
        key = tuple(run[f] for f in RUN_FIELDS)
        root = base.joinpath(*key)
        seeds = returns.get(key[:3], {})
        if int(key[3]) in seeds:
            steps = [200] if key[0] == "de_rainbow_p" else STEPS[key[1]]
            write_run(root, key, seeds[int(key[3])], steps)
        paths.append((key, root / "eval.json", root / "run.json"))
    return paths


@pytest.fixture(scope="module")
def reference():
    return read_reference(REFERENCE)


@pytest.fixture(scope="module")
def table2_results(tmp_path_factory):
    params = make_params()
    base = tmp_path_factory.mktemp("runs")
    return {key: load_run(key, e, r, params) for key, e, r in write_fixture_runs(base, params, "table2", RETURNS)}


@pytest.fixture(scope="module")
def table2(table2_results, reference):
    return build_table("table2", make_params(), table2_results, reference)


def cell(cells, game, method, part="scores"):
    found = [c for c in cells if c["game"] == game and c["method"] == method and c["part"] == part]
    assert len(found) == 1, (game, method, [(c["game"], c["method"]) for c in cells])
    return found[0]


# ----------------------------------------------------------------------------------------------
# Table 2
# ----------------------------------------------------------------------------------------------


def test_table2_columns_in_paper_order(reference):
    labels = [c.label for c in table_columns("table2", make_params(), reference)]
    assert labels == ["SimPLe", "Transporter", "DE-Rainbow", "DE-Rainbow-P", "SPIRL, 100K", "PermaKey",
                      "SPIRL, 400K"]


@pytest.mark.parametrize(("game", "method", "mean", "std", "n", "n_expected"), [
    ("Frostbite", "SPIRL, 100K", 400.0, 250.0, 3, 3),
    ("Seaquest", "SPIRL, 100K", 90.0, 30.0, 3, 3),
    ("Frostbite", "SPIRL, 400K", 500.0, 300.0, 3, 3),
    ("Seaquest", "SPIRL, 400K", 80.0, math.sqrt(30.0**2 + 30.0**2), 2, 3),
    ("Seaquest", "DE-Rainbow", 350.0, math.sqrt(2 * 100.0**2), 2, 2),
    ("Frostbite", "DE-Rainbow-P", 40.0, None, 1, 1),
    ("Seaquest", "DE-Rainbow-P", 80.0, None, 1, 1),
])
def test_table2_measured_cells(table2, game, method, mean, std, n, n_expected):
    c = cell(table2, game, method)
    assert c["mean"] == pytest.approx(mean, abs=5e-4)
    assert c["std"] == "" if std is None else c["std"] == pytest.approx(std, abs=5e-4)
    assert (c["n_seeds"], c["n_expected"]) == (n, n_expected)
    if n == 1:  # a single seed has no spread to resample: no interval is shown
        assert c["ci_low"] == c["ci_high"] == ""
    else:
        assert c["ci_low"] <= c["mean"] <= c["ci_high"]


def test_table2_metric_per_regime(table2):
    assert cell(table2, "Frostbite", "SPIRL, 100K")["metric"] == "final_mean"
    assert cell(table2, "Frostbite", "SPIRL, 400K")["metric"] == "best_median"
    assert cell(table2, "Frostbite", "SPIRL, 400K")["regime"] == "400k"


def test_table2_paper_numbers(table2):
    c = cell(table2, "Frostbite", "DE-Rainbow")
    assert (c["paper_mean"], c["paper_std"]) == (341.4, 277.8)
    c = cell(table2, "Seaquest", "SPIRL, 400K")
    assert (c["paper_mean"], c["paper_std"]) == (534.0, 88.2)
    c = cell(table2, "Frostbite", "SPIRL, 100K")
    assert (c["paper_mean"], c["paper_std"]) == (669.5, 731.7)
    assert c["paper_source"] == "SPIRL paper Tab. 2"


@pytest.mark.parametrize(("method", "game", "paper_mean", "paper_std"), [
    ("SimPLe", "Frostbite", 254.7, ""),
    ("Transporter", "Seaquest", 236.7, 22.2),
    ("PermaKey", "Frostbite", 657.3, 556.8),
])
def test_table2_reported_only_columns(table2, method, game, paper_mean, paper_std):
    c = cell(table2, game, method)
    assert c["status"] == "reported (not run here)"
    assert c["mean"] == "" and c["std"] == "" and c["n_seeds"] == "" and c["variant"] == ""
    assert (c["paper_mean"], c["paper_std"]) == (paper_mean, paper_std)


def test_table2_statuses(table2):
    assert cell(table2, "Frostbite", "SPIRL, 100K")["status"] == "complete"
    assert cell(table2, "Frostbite", "SPIRL, 100K")["note"] == ""
    partial = cell(table2, "Seaquest", "SPIRL, 400K")
    assert partial["status"] == "partial (2 of 3 seeds)"
    assert "seed 2 missing" in partial["note"] and "seed 0" not in partial["note"]


def test_table2_all_seeds_missing_is_never_filled(table2):
    c = cell(table2, "Frostbite", "DE-Rainbow")
    assert c["status"] == "missing"
    assert c["n_seeds"] == 0 and c["n_expected"] == 2
    assert c["mean"] == c["std"] == c["ci_low"] == c["ci_high"] == ""
    assert "seed 0 missing" in c["note"] and "seed 1 missing" in c["note"]
    assert c["paper_mean"] == 341.4  # the paper's value stays beside it


def test_table2_one_row_per_game_and_method(table2):
    scores = [c for c in table2 if c["part"] == "scores"]
    assert len(scores) == 2 * 7
    assert len({(c["game"], c["method"]) for c in scores}) == len(scores)


def test_ci_reproducible_and_seeded(table2_results, reference):
    a = cell(build_table("table2", make_params(), table2_results, reference), "Frostbite", "SPIRL, 100K")
    b = cell(build_table("table2", make_params(), table2_results, reference), "Frostbite", "SPIRL, 100K")
    assert (a["ci_low"], a["ci_high"]) == (b["ci_low"], b["ci_high"])
    assert a["ci_low"] < 400.0 < a["ci_high"]
    assert 150.0 <= a["ci_low"] and a["ci_high"] <= 650.0  # bootstrap means of {150, 400, 650}
    # few replicates, so the 2.5%/97.5% quantiles are not simply the extremes 150/650 for every seed
    c0 = cell(build_table("table2", make_params(bootstrap_reps=20, seed=0), table2_results, reference),
              "Frostbite", "SPIRL, 100K")
    c1 = cell(build_table("table2", make_params(bootstrap_reps=20, seed=1), table2_results, reference),
              "Frostbite", "SPIRL, 100K")
    assert c0["mean"] == c1["mean"] == 400.0
    assert (c0["ci_low"], c0["ci_high"]) != (c1["ci_low"], c1["ci_high"])


def test_iqm_aggregate_row(table2):
    agg = cell(table2, "IQM (human-normalised)", "SPIRL, 100K", part="aggregate")
    # 6 normalised scores (3 seeds x 2 games); IQM drops floor(0.25 * 6) = 1 from each end.
    f = [(150 - 65.2) / F_SPAN, (400 - 65.2) / F_SPAN, (650 - 65.2) / F_SPAN]   # 0.0199, 0.0784, 0.1370
    s = [(60 - 68.4) / S_SPAN, (90 - 68.4) / S_SPAN, (120 - 68.4) / S_SPAN]     # -0.0002, 0.0005, 0.0012
    # sorted: s0 < s1 < s2 < f0 < f1 < f2 -> keep s1, s2, f0, f1
    expected = (s[1] + s[2] + f[0] + f[1]) / 4
    assert expected == pytest.approx(0.0250, abs=1e-4)
    assert agg["mean"] == pytest.approx(expected, abs=5e-4)
    assert agg["status"] == "complete" and agg["n_seeds"] == 3 and agg["unit"] == "human-normalised"
    assert agg["ci_low"] <= agg["mean"] <= agg["ci_high"]
    # one seed per game: IQM of 2 entries = their mean
    p = cell(table2, "IQM (human-normalised)", "DE-Rainbow-P", part="aggregate")
    assert p["mean"] == pytest.approx(((40 - 65.2) / F_SPAN + (80 - 68.4) / S_SPAN) / 2, abs=5e-4)


@pytest.mark.parametrize("method", ["SPIRL, 400K", "DE-Rainbow"])
def test_iqm_not_computed_with_unequal_seeds(table2, method):
    # SPIRL 400K: 3 complete seeds on Frostbite, 2 on Seaquest; DE-Rainbow: 0 and 2
    agg = cell(table2, "IQM (human-normalised)", method, part="aggregate")
    assert agg["status"].startswith("not computed")
    assert agg["mean"] == ""


def test_no_aggregate_for_reported_columns(table2):
    methods = {c["method"] for c in table2 if c["part"] == "aggregate"}
    assert methods == {"DE-Rainbow", "DE-Rainbow-P", "SPIRL, 100K", "SPIRL, 400K"}


def test_markdown(table2):
    md = to_markdown("table2", table2, "smoke")
    for heading in ("SimPLe", "Transporter", "DE-Rainbow", "DE-Rainbow-P", "SPIRL, 100K", "PermaKey", "SPIRL, 400K"):
        assert f"| {heading} |" in md
    assert "⚠ partial (2 of 3 seeds)" in md
    assert "— (missing)" in md
    assert "**400.0** (250.0) n=3/3" in md
    assert "paper: 341.4 (277.8)" in md and "reported: 254.7" in md
    assert "seed 2 missing" in md  # the partial cell's note


def test_cells_and_notes_name_the_priority_rule_and_adopted_seeds(table2_results, reference):
    import dataclasses

    complete = sorted(k for k, r in table2_results.items() if r.complete and k[0] == "de_rainbow")
    game = complete[0][2]  # a DE-Rainbow cell with complete seeds in the fixture
    results = {}
    for key, run in table2_results.items():
        rule = "max" if key[0] == "spirl" else "one"
        adopted = "de_rainbow_released_priority" if key[0] == "de_rainbow" and key[2] == game else ""
        results[key] = dataclasses.replace(run, new_priority=rule, adopted_from=adopted)
    cells = build_table("table2", make_params(), results, reference)
    mine = cell(cells, game, "DE-Rainbow")
    seeds = [k[3] for k in complete if k[2] == game]
    assert mine["new_priority"] == "one" and mine["n_seeds"] == len(seeds) >= 1
    assert mine["adopted"] == "; ".join(f"seed {s} from de_rainbow_released_priority" for s in seeds)
    assert all(c["adopted"] == "" for c in cells if c["game"] != game)
    md = to_markdown("table2", cells, "smoke")
    rule_line = next(line for line in md.splitlines() if line.startswith("- new transitions' replay priority"))
    assert "DE-Rainbow: one" in rule_line and "SPIRL, 100K: max" in rule_line
    assert f"- {game}, DE-Rainbow: {mine['adopted']} (the same parameters" in md
    mixed = {**results, complete[0]: dataclasses.replace(results[complete[0]], new_priority="max")}
    assert cell(build_table("table2", make_params(), mixed, reference), game, "DE-Rainbow")["new_priority"] \
        == "max, one"  # a cell whose seeds ran under different rules says so


# ----------------------------------------------------------------------------------------------
# Table 1 (left): pre-training time
# ----------------------------------------------------------------------------------------------


def test_pretraining_time_rows(reference):
    params = make_params()
    rows = pretraining_time_rows(params, {"Frostbite": {"wall_time_s": 3600.0, "device": {"cpu_count": 2}},
                                          "Seaquest": {"wall_time_s": 7200.0, "device": {"cpu_count": 2}}},
                                 reference)
    by = {(r["game"], r["method"]): r for r in rows}
    assert by[("Frostbite", "SPIRL (this pipeline)")]["mean"] == 1.0
    assert by[("Seaquest", "SPIRL (this pipeline)")]["mean"] == 2.0
    assert "2 cores" in by[("Seaquest", "SPIRL (this pipeline)")]["note"]
    ours = by[("mean of games", "SPIRL (this pipeline)")]
    assert ours["mean"] == 1.5 and ours["paper_mean"] == 1.6 and ours["status"] == "complete"
    for method, hours in (("Transporter", 25.9), ("PermaKey", 50.7)):
        r = by[("mean of games", method)]
        assert r["paper_mean"] == hours and r["status"] == "reported (not run here)" and r["mean"] == ""
    assert all(r["unit"] == "hours" and r["part"] == "pre-training time" for r in rows)


def test_pretraining_time_rows_missing_record(reference):
    rows = pretraining_time_rows(make_params(), {"Frostbite": {"wall_time_s": 3600.0, "device": {}},
                                                 "Seaquest": None}, reference)
    by = {(r["game"], r["method"]): r for r in rows}
    assert by[("Seaquest", "SPIRL (this pipeline)")]["status"] == "missing"
    assert by[("Seaquest", "SPIRL (this pipeline)")]["mean"] == ""
    ours = by[("mean of games", "SPIRL (this pipeline)")]
    assert ours["status"] == "missing" and ours["mean"] == ""  # no mean over a subset of games


# ----------------------------------------------------------------------------------------------
# src/make_tables.py end to end (table14: Seaquest; spirl, spirl_pad_trainable, spirl_pad_masked)
# ----------------------------------------------------------------------------------------------

T14 = {("spirl", "100k", "Seaquest"): {0: [[500, 600]]},                 # 550
       ("spirl_pad_trainable", "100k", "Seaquest"): {0: [[100, 140]]},   # 120
       ("spirl_pad_masked", "100k", "Seaquest"): {0: [[7, 8]]}}          # 7.5


def run_make_tables(tmp_path, evals, runs):
    cmd = [sys.executable, "src/make_tables.py", "--params", "params.yaml", "conf/smoke.yaml", "--table", "table14",
           "--in-eval", *map(str, evals), "--in-run", *map(str, runs), "--in-reference", str(REFERENCE),
           "--out-csv", str(tmp_path / "table14.csv"), "--out-md", str(tmp_path / "table14.md")]
    return subprocess.run(cmd, cwd=REPO_ROOT, env={**os.environ, "PYTHONHASHSEED": "0"}, capture_output=True,
                          text=True, timeout=120)


def test_make_tables_script(tmp_path):
    params = params_from_dict(RAW)
    paths = write_fixture_runs(tmp_path / "runs", params, "table14", T14)
    assert [k[0] for k, _, _ in paths] == ["spirl", "spirl_pad_trainable", "spirl_pad_masked"]
    proc = run_make_tables(tmp_path, [e for _, e, _ in paths], [r for _, _, r in paths])
    assert proc.returncode == 0, proc.stderr
    with (tmp_path / "table14.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    got = {r["method"]: (float(r["mean"]), r["n_seeds"], r["status"], float(r["paper_mean"])) for r in rows}
    assert got == {"Zero-Padding": (550.0, "1", "complete", 557.9),
                   "Trainable-[pad]": (120.0, "1", "complete", 491.6),
                   "Masked-Attention": (7.5, "1", "complete", 494.4)}
    md = (tmp_path / "table14.md").read_text()
    assert "| game | Zero-Padding | Trainable-[pad] | Masked-Attention |" in md
    assert "**550.0**" in md and "Profile `smoke`" in md


def test_make_tables_script_wrong_number_of_runs(tmp_path):
    params = params_from_dict(RAW)
    paths = write_fixture_runs(tmp_path / "runs", params, "table14", T14)
    proc = run_make_tables(tmp_path, [e for _, e, _ in paths[:2]], [r for _, _, r in paths])
    assert proc.returncode != 0
    assert "table14" in proc.stderr
    assert not (tmp_path / "table14.csv").exists()


def test_paper_z_places_a_measurement_in_the_papers_spread():
    from spirl.reporting.tables import paper_z

    assert paper_z(943.4, 1015.2, 124.3) == pytest.approx((943.4 - 1015.2) / 124.3)  # -0.578: within 2 std
    assert paper_z(1300.0, 341.4, 277.8) == pytest.approx(3.4507, abs=1e-4)  # outside
    assert math.isnan(paper_z(5.0, 254.7, math.nan))  # the paper printed no std (SimPLe)
    assert math.isnan(paper_z(math.nan, 341.4, 277.8))  # nothing measured
    assert math.isnan(paper_z(5.0, 1.0, 0.0))


def test_a_run_limited_to_some_games_leaves_the_others_unrequested(tmp_path, reference):
    """experiment.tables.X.runs[i].games: the other games' cells say so, and the column has no IQM row (it would
    need every game) instead of failing."""
    raw = copy.deepcopy(RAW)
    raw["experiment"]["variants"]["spirl"]["n_seeds"] = 3
    raw["experiment"]["variants"]["de_rainbow"]["n_seeds"] = 2
    raw["experiment"]["tables"]["table2"]["runs"] = [
        {"variant": "de_rainbow", "regime": "100k"}, {"variant": "spirl", "regime": "100k", "games": ["Seaquest"]}]
    params = params_from_dict(raw)
    runs = write_fixture_runs(tmp_path, params, "table2", RETURNS)
    assert [k for k, _, _ in runs if k[0] == "spirl"] == [("spirl", "100k", "Seaquest", str(s)) for s in range(3)]
    results = {key: load_run(key, e, r, params) for key, e, r in runs}
    cells = build_table("table2", params, results, reference)
    frost = cell(cells, "Frostbite", "SPIRL, 100K")
    assert frost["status"] == "not requested (experiment.tables.table2.runs: spirl 100k on other games)"
    assert "n_seeds" in cell(cells, "Seaquest", "SPIRL, 100K")
    iqm_row = cell(cells, "IQM (human-normalised)", "SPIRL, 100K", part="aggregate")
    assert iqm_row["status"] == "not computed (not requested on every game of the table)"


def test_criteria_table_reports_each_scorers_object_recall_beside_the_returns(tmp_path, reference):
    """The criteria table: the scorers' runs (SPIRL's paper value beside SPIRL, DE-Rainbow reported), then per game
    and scorer the recall / mean K / lift from the saliency_quality JSON, with CIs, and a missing game said so."""
    from spirl.reporting.table_parts import criteria_quality_rows

    params = make_params()
    scorers = {s: {"n_frames": 500, "recall": {"value": 0.5 + 0.1 * i, "ci": [0.4 + 0.1 * i, 0.6 + 0.1 * i]},
                   "mean_k": {"value": 40.0 + i, "ci": [39.0 + i, 41.0 + i]},
                   "lift": {"value": 1.0 + i, "ci": [0.9 + i, 1.1 + i]}}
               for i, s in enumerate(params.criteria.scorers)}
    scorers.pop("random")
    rows = criteria_quality_rows(params, {"Frostbite": {"result": {"scorers": scorers}}, "Seaquest": None})
    by = {(r["part"], r["game"], r["method"]): r for r in rows}
    assert len(rows) == 3 * 2 * len(params.criteria.scorers)
    wu = by[("object recall", "Frostbite", "wu_mask")]
    assert (wu["mean"], wu["ci_low"], wu["ci_high"], wu["status"]) == (0.9, 0.8, 1.0, "complete")
    assert by[("mean K", "Frostbite", "frame_diff")]["mean"] == 42.0
    assert by[("object recall", "Frostbite", "random")]["status"] == "missing"
    assert by[("object recall", "Seaquest", "mae_surround")]["note"] == "no saliency_quality record"
    assert "random not scored on Frostbite" in by[("recall lift over random patches", "Frostbite", "random")]["note"]
    text = to_markdown("criteria", rows, "test")
    assert "Saliency criteria" in text and "**object recall**" in text and "**0.900** [0.800, 1.000]" in text
    columns = [c.label for c in table_columns("criteria", params, reference)]
    assert columns[:2] == ["SPIRL", "DE-Rainbow"]
    assert columns[2:] == ["spirl_wu (100k)", "spirl_framediff (100k)", "spirl_random (100k)"]


def test_space_time_cost_rows_hand_worked():
    """table_st's cost part (SPEC §16): the Q-network's parameters and the mean learner updates/s of each column's
    complete runs over every game, with the devices; a column without complete runs says so."""
    from spirl.reporting.scores import RunResult
    from spirl.reporting.table_parts import cost_rows

    params = make_params()

    def run(variant, game, seed, parameters, rate, status="complete"):
        return (variant, "100k", game, str(seed)), RunResult((variant, "100k", game, str(seed)), status, "",
                                                             "final_mean", 1.0, (), 60.0, "cpu", "one", "",
                                                             parameters, rate)

    results = dict([run("spirl", "Frostbite", 0, 644_978, 60.0), run("spirl", "Seaquest", 0, 644_978, 30.0),
                    run("divst_all", "Frostbite", 0, 932_370, 10.0),
                    run("divst_all", "Seaquest", 0, 932_370, 99.0, status="incomplete"),
                    run("mae_all", "Frostbite", 0, None, math.nan)])
    rows = {(r["game"], r["variant"]): r for r in cost_rows("table_st", params, results)}
    assert rows[("Q-network parameters", "spirl")]["mean"] == 644_978
    assert rows[("learner updates/s", "spirl")]["mean"] == 45.0 and rows[("learner updates/s", "spirl")]["n_seeds"] == 2
    assert rows[("learner updates/s", "divst_all")]["mean"] == 10.0  # the incomplete run is left out
    assert rows[("Q-network parameters", "mae_all")]["status"] == "missing"
    assert "not recorded" in rows[("Q-network parameters", "mae_all")]["note"]
    assert rows[("learner updates/s", "jointst_spirl")]["note"] == "no complete run"
    assert "644,978" in to_markdown("table_st", list(rows.values()), "smoke")


def test_bf16_error_maps_are_named_in_the_cell_and_the_notes(tmp_path):
    """issue 28: a SPIRL-family run whose error maps ran in bf16 is a named deviation; a pixel run has no error map."""
    params = make_params()
    runs = []
    for seed, (base, precision) in enumerate([("spirl", "bf16"), ("spirl", "fp32"), ("de_rainbow", "bf16")]):
        root = tmp_path / str(seed)
        write_run(root, ("spirl", "100k", "Frostbite", str(seed)), [[100, 200]], [300])
        (root / "run.json").write_text(json.dumps({"base": base, "params": {"runtime": {"saliency_precision":
                                                                                         precision}}}))
        runs.append(load_run(("spirl", "100k", "Frostbite", str(seed)), root / "eval.json", root / "run.json", params))
    assert [r.saliency_precision for r in runs] == ["bf16", "fp32", ""]
    cell = T.measured_cell(runs, 3, 50, 0.95, np.random.default_rng(0))
    assert cell["deviation"] == "bf16 (seed 0)"
    row = {k: "" for k in T.CELL_COLUMNS} | {"table": "table1", "part": "scores", "game": "Frostbite",
                                             "method": "SPIRL", "unit": "return", "status": "complete",
                                             "deviation": cell["deviation"]}
    assert "Frostbite, SPIRL: error maps in bf16 (seed 0) (runtime.saliency_precision)" in T.to_markdown(
        "table1", [row], "desk")
