"""Measured and expected device hours: stage sums and the per-table estimate from run benchmarks; the training
clock's exclusive parts (spirl.training.run.Stopwatch)."""

from __future__ import annotations

import json
import math

import pytest

from spirl.params import REPO_ROOT, load_params
from spirl.reporting.timing import bench_run_times, estimate_hours, stage_hours
from spirl.workflow.plan import param_files, table_runs


@pytest.fixture(scope="module")
def smoke():
    return load_params([REPO_ROOT / f for f in param_files("smoke")])


def test_stage_hours_sums_the_records_that_exist():
    hours, n = stage_hours([{"wall_time_s": 1800.0}, None, {"wall_time_s": 5400.0}, {"other": 1}])
    assert (hours, n) == (2.0, 2)
    assert stage_hours([]) == (0.0, 0)


def _bench(folder, name, params, variant, regime, seconds, gpu=None):
    device = {"torch_device": "cuda" if gpu else "cpu", "cpu_count": 16}
    if gpu:
        device["gpu"] = gpu
    (folder / name).write_text(json.dumps({"bench": "run", "wall_time_s": seconds, "device": device,
                                           "settings": {"params": params, "variant": variant, "regime": regime}}))


def test_estimate_uses_the_variant_then_its_base_method_and_counts_the_rest(tmp_path, smoke):
    _bench(tmp_path, "run-spirl-smoke-gpu.json", ["params.yaml", "conf/smoke.yaml"], "spirl", "100k", 360.0, "H100")
    _bench(tmp_path, "run-de_rainbow-smoke.json", ["params.yaml", "conf/smoke.yaml"], "de_rainbow", "100k", 180.0)
    _bench(tmp_path, "run-spirl-full.json", ["params.yaml", "conf/full.yaml"], "spirl", "100k", 1e6)  # other profile
    (tmp_path / "learner-cpu.json").write_text("{}")  # not a run benchmark: ignored
    bench = bench_run_times(tmp_path, smoke)
    assert set(bench) == {("spirl", "100k"), ("de_rainbow", "100k")}
    # Tab. 2 on the smoke profile: 2 games x (de_rainbow, de_rainbow_p, spirl 100k, spirl 400k), 1 seed each
    est = estimate_hours(table_runs(smoke, "table2"), bench, smoke)
    # de_rainbow: own benchmark (180 s); de_rainbow_p: its base de_rainbow (180 s); spirl 100k: 360 s;
    # spirl 400k: no benchmark at that regime -> unmatched
    assert (est["runs"], est["matched"]) == (8, 6)
    assert math.isclose(est["hours"], 2 * (180 + 180 + 360) / 3600)
    assert est["devices"] == "H100, cpu (16 cores)"


def test_no_benchmark_of_the_profile_means_nothing_is_estimated(tmp_path, smoke):
    est = estimate_hours(table_runs(smoke, "table14"), bench_run_times(tmp_path, smoke), smoke)
    assert (est["runs"], est["matched"], est["hours"], est["devices"]) == (3, 0, 0.0, "")


def test_rehearsal_extrapolations_fill_in_where_no_run_was_measured(tmp_path, smoke):
    runs = [{"variant": "spirl", "regime": "400k", "torch_device": "cpu", "extrapolated_total_hours": 2.5},
            {"variant": "spirl", "regime": "100k", "torch_device": "cpu", "extrapolated_total_hours": 9.0},
            {"variant": "mae_all", "regime": "100k", "torch_device": "cpu", "extrapolated_total_hours": None}]
    (tmp_path / "rehearsal-cpu.json").write_text(json.dumps({
        "bench": "rehearsal", "settings": {"extrapolated_to": ["params.yaml", "conf/smoke.yaml"]}, "runs": runs,
        "device": {"cpu_count": 2}}))
    (tmp_path / "rehearsal-other.json").write_text(json.dumps({  # extrapolated to another profile: ignored
        "settings": {"extrapolated_to": ["params.yaml", "conf/full.yaml"]}, "runs": [{**runs[0], "regime": "x"}]}))
    _bench(tmp_path, "run-spirl-smoke.json", ["params.yaml", "conf/smoke.yaml"], "spirl", "100k", 360.0)
    bench = bench_run_times(tmp_path, smoke)
    assert bench == {("spirl", "400k"): (9000.0, "cpu (2 cores), rehearsal"),  # no run measured: the rehearsal's
                     ("spirl", "100k"): (360.0, "cpu (16 cores)")}  # a whole run measured beats an extrapolation


def test_total_seconds_of_resumed_jobs():
    from spirl.reporting.timing import total_seconds

    assert total_seconds({"wall_time_s": 10.0}) == 10.0  # one process
    assert total_seconds({"wall_time_s": 10.0, "wall_time_total_s": 70.0, "resumed": True}) == 70.0
    assert total_seconds({"wall_time_s": 2.0, "resumed_after_epoch": 50}) is None  # earlier processes unknown
    assert total_seconds({"wall_time_s": 2.0, "wall_time_total_s": None}) is None
    assert stage_hours([{"wall_time_s": 3600.0}, {"wall_time_s": 2.0, "resumed_after_epoch": 50}]) == (1.0, 1)


def test_stopwatch_parts_nest_exclusively(monkeypatch):
    """A part opened inside another (a checkpoint written during an evaluation) takes its seconds from the outer
    one: each second counts once, toward the innermost open part (hand-worked on a fake clock)."""
    import spirl.training.run as train

    now = [0.0]
    monkeypatch.setattr(train.time, "perf_counter", lambda: now[0])
    clock = train.Stopwatch()
    with clock("eval"):
        now[0] += 3.0
        with clock("checkpoint"):
            now[0] += 2.0
        now[0] += 4.0
        with clock("checkpoint"):
            now[0] += 1.0
    with clock("env"):
        now[0] += 0.5
    assert clock.seconds == {"eval": 7.0, "checkpoint": 3.0, "env": 0.5}
    assert sum(clock.seconds.values()) == now[0]
