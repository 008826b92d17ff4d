"""Report sections (spirl.reporting.report): run times over resumes, the MAE and mr tables, missing records named."""

from __future__ import annotations

import json

from spirl.reporting.report import image_lines, run_section, saliency_section

STATUS = [{"variant": "de_rainbow", "regime": "100k", "game": "Seaquest", "seed": "0", "status": "complete",
           "metric": "final_mean", "score": "512.5"},
          {"variant": "de_rainbow", "regime": "100k", "game": "BattleZone", "seed": "0", "status": "missing",
           "metric": "final_mean", "score": ""}]


def _record(**extra):
    return {"wall_time_s": 1800.0, "timing_s": {"learn": 1000.0, "env": 100.0}, "updates_per_s": 30.0,
            "device": {"cpu_count": 2}, "device_used": "cpu", **extra}


def test_run_rows_use_the_total_over_resumes_and_name_a_missing_run():
    records = {("de_rainbow", "100k", "Seaquest", "0"): _record(
        wall_time_total_s=5400.0, timing_total_s={"learn": 3600.0, "env": 360.0}, peak_memory_mb={"host": 812.5},
        cpu_time_total_s=4320.0)}
    lines = run_section(STATUS, records)
    row = next(line for line in lines if "Seaquest" in line)
    assert "| 512.5 | 1.50 | 1.20 | 0.100 | 0.000 | 0.000 | 0.000 | 1.000 |" in row and "812.5" in row
    records = {("de_rainbow", "100k", "Seaquest", "0"): _record()}  # one process, before totals were recorded
    row = next(line for line in run_section(STATUS, records) if "Seaquest" in line)
    assert "| 512.5 | 0.50 | — | 0.028 |" in row  # CPU time not recorded: a dash, never a guess
    records = {("de_rainbow", "100k", "Seaquest", "0"): _record(resumed=True)}  # resumed: earlier time unknown
    row = next(line for line in run_section(STATUS, records) if "Seaquest" in line)
    assert "0.50 (last process only)" in row
    assert any("BattleZone" in line and "missing" in line for line in lines)


def test_mae_and_mr_tables(tmp_path):
    mae = tmp_path / "mae" / "Frostbite" / "run.json"
    mae.parent.mkdir(parents=True)
    mae.write_text(json.dumps({"wildcards": {"game": "Frostbite"}, "n_frames": 5000, "epochs": 50, "final_loss": 0.03,
                               "wall_time_s": 1.8, "resumed_after_epoch": 50, "device": {"cpu_count": 2}}))
    lines = saliency_section([mae], [tmp_path / "loss.png"], [tmp_path / "mr" / "Frostbite" / "mr.json"], tmp_path)
    text = "\n".join(lines)
    assert "unknown (resumed after epoch 50; this process 2 s)" in text  # never a made-up total
    assert "| Frostbite | missing (" in text  # the mr estimate not made yet
    assert "loss.png` missing" in text
    shown = image_lines([mae], tmp_path, "x")
    assert shown == ["![x: run](mae/Frostbite/run.json)"]
