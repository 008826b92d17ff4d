"""The report of a profile: provenance, every table beside the paper, every figure, run status, time.

PYTHONHASHSEED=0 python src/make_report.py --params params.yaml conf/full.yaml --in-tables TABLE.md ... \
    --in-runs results/full/runs.csv --in-train-run RUN/run.json ... --in-collect-run ... \
    --in-mae-run ... --in-mae-loss ... --in-mr ... --in-fig2 ... --in-fig3 ... --in-fig8 ... [--in-fig6 ...] \
    --in-curves ... --in-intervals ... --in-profile ... \
    --in-bench bench/results --out-report reports/full/report.md
"""

from __future__ import annotations

import csv
import os
import re
from collections import Counter
from pathlib import Path

from spirl.cli import base_parser, setup_logging
from spirl.config import load_params
from spirl.io import atomic_path, read_json_if_exists
from spirl.pipeline import table_runs, training_runs
from spirl.runinfo import git_commit
from spirl.scores import RUN_FIELDS
from spirl.tables import device_name
from spirl.timing import bench_run_times, estimate_hours, stage_hours, total_seconds

FIGURES = ("fig2", "fig3", "fig8", "fig6", "curves", "intervals", "profile")


def image_lines(paths: list[Path], report_dir: Path, caption: str) -> list[str]:
    """Markdown images of the figures that exist; a figure not made yet (make report-now) is named as missing."""
    return [f"![{caption}: {p.stem}]({os.path.relpath(p, report_dir)})" if p.is_file()
            else f"- {caption}: {p.stem}: not made yet (`{p}` missing)" for p in paths]


PARTS = ("env", "represent", "act", "replay", "learn", "eval", "checkpoint")


def run_section(status: list[dict], records: dict) -> list[str]:
    """One row per run: its final metric, wall hours over every process that trained it, by part, the learner's
    updates/s and peak host memory (from its run.json)."""
    lines = ["## Runs", "", "| run | status | metric | score | wall hours | " + " | ".join(PARTS)
             + " (hours) | updates/s | peak host MiB | device |", "|---" * (9 + len(PARTS)) + "|"]
    for row in status:
        rec = records.get(tuple(row[f] for f in RUN_FIELDS))
        name = f"{row['variant']} {row['regime']} {row['game']} seed {row['seed']}"
        score = f"{float(row['score']):.1f}" if row["score"] != "" else "—"
        if rec is None:
            lines.append(f"| {name} | {row['status']} | {row['metric']} | {score} |" + " |" * (5 + len(PARTS)))
            continue
        total, parts = rec.get("wall_time_total_s"), rec.get("timing_total_s")
        note = "" if total is not None else " (last process only)"
        total, parts = (total, parts) if total is not None else (rec["wall_time_s"], rec["timing_s"])
        hours = [f"{parts.get(p, 0.0) / 3600:.3f}" for p in PARTS]
        lines.append(f"| {name} | {row['status']} | {row['metric']} | {score} | {total / 3600:.2f}{note} | "
                     + " | ".join(hours) + f" | {rec['updates_per_s']:.1f} | "
                     f"{rec.get('peak_memory_mb', {}).get('host', '—')} | {device_name(rec)} |")
    return [*lines, "", "Parts: the group's clock (a job of several seeds shares it); wall hours are this seed's "
            "share. Scores: final_mean = mean of the last evaluation's episodes; best_median = max over "
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
    return lines + [""]


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    for name in ("tables", "train-run", "collect-run", "mae-run", "mae-loss", "mr", *FIGURES):
        parser.add_argument(f"--in-{name}", nargs="*", type=Path, default=[])
    parser.add_argument("--in-runs", type=Path, required=True)
    parser.add_argument("--in-bench", type=Path, required=True)
    parser.add_argument("--out-report", type=Path, required=True)
    args = parser.parse_args()
    log = setup_logging("make_report", args.log)
    params = load_params(args.params)
    profile, runs = params.experiment.profile, training_runs(params)
    with args.in_runs.open(newline="") as fh:
        status = list(csv.DictReader(fh))
    records = {tuple(r[f] for f in RUN_FIELDS): read_json_if_exists(p)
               for r, p in zip(runs, args.in_train_run, strict=True)}
    devices = sorted({device_name(r) for r in records.values() if r})
    stages = {"collect": [read_json_if_exists(p) for p in args.in_collect_run],
              "pretrain_mae": [read_json_if_exists(p) for p in args.in_mae_run],
              "train": list(records.values())}
    counts = Counter(r["status"] for r in status)
    lines = [f"# SPIRL reproduction report: profile `{profile}`", "",
             f"- commit `{git_commit()}`; parameters `{' + '.join(str(p) for p in args.params)}`",
             f"- games {list(params.experiment.games)}; seeds per variant: " + ", ".join(
                 f"{v} {params.experiment.variants[v].n_seeds}" for v in dict.fromkeys(r["variant"] for r in runs)),
             f"- runs: {len(status)} ({', '.join(f'{k} {n}' for k, n in sorted(counts.items()))}); devices: "
             + "; ".join(devices), "", "## Time", "", "| stage | jobs | wall hours (sum) |", "|---|---|---|"]
    for stage, recs in stages.items():
        hours, n = stage_hours(recs)
        lines.append(f"| {stage} | {n} | {hours:.3f} |")
    total = sum(stage_hours(recs)[0] for recs in stages.values())
    lines += [f"| **total** | | **{total:.3f}** |", "",
              "Device hours measured by this profile's jobs (sum of their run.json wall times).", "",
              "## Expected device hours per table (from the committed run benchmarks, `bench/results/run-*.json`)", ""]
    bench = bench_run_times(args.in_bench, params)
    lines += ["| table | runs | runs with a benchmark | estimated hours | benchmark device |", "|---|---|---|---|---|"]
    for table in params.experiment.built_tables:
        est = estimate_hours(table_runs(params, table), bench, params)
        hours = f"{est['hours']:.2f}" if est["matched"] else "not measured"
        lines.append(f"| {table} | {est['runs']} | {est['matched']} | {hours} | {est['devices'] or '—'} |")
    lines += ["", "Runs without a benchmark of the same profile, base method and regime are not estimated; "
              "GPU benchmarks of the paper profile come from `bench/run.py` on a GPU.", ""]
    lines += run_section(status, records)
    lines += saliency_section(args.in_mae_run, args.in_mae_loss, args.in_mr, args.out_report.parent)
    lines += ["## Tables", ""]
    for path in args.in_tables:
        lines += [re.sub(r"^## ", "### ", path.read_text(), flags=re.M), ""]  # one level below "## Tables"
    bad = [r for r in status if r["status"] != "complete"]
    if bad:
        lines += ["## Runs that are not complete", ""] + [
            f"- {r['variant']} {r['regime']} {r['game']} seed {r['seed']}: {r['status']}: {r['reason']}" for r in bad]
        lines.append("")
    lines += ["## Figures", ""]
    report_dir = args.out_report.parent
    captions = {"fig2": "Fig. 2", "fig3": "Fig. 3", "fig8": "Fig. 8", "fig6": "Fig. 6 (policy attention)",
                "curves": "learning curves", "intervals": "aggregate intervals", "profile": "performance profile"}
    for name in FIGURES:
        paths = getattr(args, f"in_{name}")
        if paths:
            lines += [f"### {captions[name]}", "", *image_lines(paths, report_dir, captions[name]), ""]
    with atomic_path(args.out_report) as tmp:
        tmp.write_text("\n".join(lines))
    log.info("report of profile %r: %d tables, %d runs (%s)", profile, len(args.in_tables), len(status),
             dict(counts))


if __name__ == "__main__":
    main()
