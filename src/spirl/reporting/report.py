"""Sections of the report (src/make_report.py): the runs with their time by part, the MAE pre-training and mr
(with the candidate readings of the rule and the effect of training on K), and figures."""

from __future__ import annotations

import os
from pathlib import Path

from spirl.common.io import read_json_if_exists
from spirl.reporting.scores import RUN_FIELDS
from spirl.reporting.table_parts import device_name
from spirl.reporting.timing import total_seconds


def image_lines(paths: list[Path], report_dir: Path, caption: str) -> list[str]:
    """Markdown images of the figures that exist; a figure not made yet (make report-now) is named as missing."""
    return [f"![{caption}: {p.stem}]({os.path.relpath(p, report_dir)})" if p.is_file()
            else f"- {caption}: {p.stem}: not made yet (`{p}` missing)" for p in paths]


PARTS = ("env", "represent", "act", "replay", "learn", "eval", "checkpoint")


def run_section(status: list[dict], records: dict) -> list[str]:
    """One row per run: its final metric, wall hours over every process that trained it, by part, the learner's
    updates/s and peak host memory (from its run.json)."""
    lines = ["## Runs", "", "| run | status | metric | score | wall hours | CPU hours | " + " | ".join(PARTS)
             + " (hours) | updates/s | peak host MiB | device |", "|---" * (9 + len(PARTS)) + "|"]
    for row in status:
        rec = records.get(tuple(row[f] for f in RUN_FIELDS))
        name = f"{row['variant']} {row['regime']} {row['game']} seed {row['seed']}"
        score = f"{float(row['score']):.1f}" if row["score"] != "" else "—"
        if rec is None:
            lines.append(f"| {name} | {row['status']} | {row['metric']} | {score} |" + " |" * (5 + len(PARTS)))
            continue
        total = total_seconds(rec)  # None: resumed, the earlier processes' time not recorded
        note = "" if total is not None else " (last process only)"
        total = total if total is not None else rec["wall_time_s"]
        parts = rec.get("timing_total_s") or rec["timing_s"]
        hours = [f"{parts.get(p, 0.0) / 3600:.3f}" for p in PARTS]
        cpu = rec.get("cpu_time_total_s")
        cpu = "—" if cpu is None else f"{cpu / 3600:.2f}"
        lines.append(f"| {name} | {row['status']} | {row['metric']} | {score} | {total / 3600:.2f}{note} | {cpu} | "
                     + " | ".join(hours) + f" | {rec['updates_per_s']:.1f} | "
                     f"{rec.get('peak_memory_mb', {}).get('host', '—')} | {device_name(rec)} |")
    return [*lines, "", "Parts: the group's clock (a job of several seeds shares it); wall hours are this seed's "
            "share; CPU hours are the training process's CPU time over every process that trained the run (one "
            "thread: one core's hours, unaffected by other load on the machine; — where a checkpoint predates "
            "their recording). Scores: final_mean = mean of the last evaluation's episodes; best_median = max over "
            "evaluation points of the median.", ""]


def saliency_section(mae_runs: list[Path], losses: list[Path], mrs: list[Path], report_dir: Path) -> list[str]:
    """The MAE pre-training of each game (epochs, frames, final loss, hours, loss curve) and its mr estimate
    (uncapped dynamic-K statistics, mr*, coverage) beside the paper's mr* and adopted mr (SPEC §3, §6)."""
    if not mae_runs:
        return []
    lines = ["## MAE pre-training and the maximal ratio mr", "",
             "| game | frames | epochs | final loss | wall hours | device |", "|---|---|---|---|---|---|"]
    for path in mae_runs:
        rec = read_json_if_exists(path)
        if rec is None:
            lines.append(f"| {path.parent.name} | missing ({path}) | | | | |")
            continue
        total = total_seconds(rec)
        hours = f"{total / 3600:.2f}" if total is not None else \
            f"unknown (resumed after epoch {rec.get('resumed_after_epoch')}; this process {rec['wall_time_s']:.0f} s)"
        lines.append(f"| {rec['wildcards']['game']} | {rec['n_frames']} | {rec['epochs']} | "
                     f"{rec['final_loss']:.4f} | {hours} | {device_name(rec)} |")
    lines += ["", *image_lines(losses, report_dir, "MAE loss curve"), "",
              "Uncapped dynamic K on every pre-training frame (SPEC §6); mr* = the smallest 5% step covering more "
              "than 99.9% of frames.", "",
              "| game | frames | K mean | K median | K min–max | mr* (here) | coverage at mr* | paper mr* | "
              "paper adopted mr (K_max) | coverage at adopted K_max | frames/s |", "|---" * 11 + "|"]
    for path in mrs:
        rec = read_json_if_exists(path)
        if rec is None:
            lines.append(f"| {path.parent.name} | missing ({path}) |" + " |" * 9)
            continue
        r = rec["result"]
        lines.append(f"| {r['game']} | {r['n_frames']} | {r['k_mean']:.1f} | {r['k_median']:.0f} | "
                     f"{r['k_min_seen']}–{r['k_max_seen']} of {r['num_patches']} | {r['mr_star']:.2f} | "
                     f"{r['coverage_at_mr_star']:.4f} | {r['mr_star_paper']:.2f} | {r['mr_paper_adopted']:.2f} "
                     f"({r['k_max_paper_adopted']}) | {r['coverage_at_paper_adopted']:.4f} | "
                     f"{rec['frames_per_s']:.2f} |")
    return lines + [""] + candidate_lines(mrs)


def training_vs_k(bench: Path, profile: str) -> list[str]:
    """K and mr* of MAEs at different stages of training on the same frames (bench/mr_candidates.py results made
    with this profile), per reading of the rule: does more pre-training lower K?"""
    lines = []
    for path in sorted(bench.glob("mr-candidates-*.json")):
        doc = read_json_if_exists(path)
        if Path(doc["settings"]["params"][-1]).stem != profile:
            continue
        s = doc["settings"]
        lines += [f"MAE training and K ({s['game']}, {s['n_frames']} pre-training frames, every {s['frame_step']}th; "
                  f"`{path}`): K mean / mr* per reading of the rule.", "",
                  "| MAE | epochs done | loss | normalized, xscale 1 | normalized, 2 | raw, 1 | raw, 2 |",
                  "|---|---|---|---|---|---|---|"]
        for r in doc["results"]:
            cells = {(c["error_space"], c["xscale"]): f"{c['k_mean']:.1f} / {c['mr_star']:.2f}"
                     for c in r["candidates"]}
            loss = f"{r['loss']:.4f}" if "loss" in r else "—"
            lines.append(f"| {r['model']} | {r.get('epochs_completed', '—')} | {loss} | " + " | ".join(
                cells.get(k, "—") for k in (("normalized", 1.0), ("normalized", 2.0), ("raw", 1.0), ("raw", 2.0)))
                + " |")
        lines.append("")
    return lines


def candidate_lines(mrs: list[Path]) -> list[str]:
    """mr* under each candidate reading of the rule (error space x xscale), from the same error maps (mr.json)."""
    rows = []
    for path in mrs:
        rec = read_json_if_exists(path)
        for c in (rec or {}).get("result", {}).get("candidates", []):
            rows.append(f"| {rec['result']['game']} | {c['error_space']} | {c['xscale']:g} | {c['k_mean']:.1f} | "
                        f"{c['k_min_seen']}–{c['k_max_seen']} | {c['mr_star']:.2f} | "
                        f"{c['coverage_at_paper_adopted']:.4f} |")
    if not rows:
        return []
    return ["Why K runs high: the same error maps under the rule's two readings (SPEC §12 #4: error in normalised "
            "or raw [0, 1] pixels; #5: the two-step slope compared with xscale/N, xscale 1 as released, 2 = a true "
            "45°). The default is normalized, xscale 1.", "",
            "| game | error space | xscale | K mean | K min–max | mr* | coverage at the adopted K_max |",
            "|---|---|---|---|---|---|---|", *rows, ""]
