"""The report of a profile: provenance, every table beside the paper, every figure, run status, time.

PYTHONHASHSEED=0 python src/make_report.py --params params.yaml conf/full.yaml --in-tables TABLE.md ... \
    --in-runs results/full/runs.csv --in-train-run RUN/run.json ... --in-collect-run ... \
    --in-mae-run ... --in-mae-loss ... --in-mr ... --in-fig2 ... --in-fig3 ... --in-fig8 ... [--in-fig6 ...] \
    --in-curves ... --in-intervals ... --in-profile ... [--in-quality-md ... --in-quality-fig ... --in-wu-loss ...
    --in-wu-masks ...] \
    --in-bench bench/results --out-report reports/full/report.md
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from pathlib import Path

from spirl.common.cli import base_parser, setup_logging
from spirl.common.io import atomic_path, read_json_if_exists
from spirl.common.runinfo import git_commit
from spirl.params import load_params
from spirl.reporting.report import image_lines, run_section, saliency_section, training_vs_k
from spirl.reporting.scores import RUN_FIELDS
from spirl.reporting.table_parts import device_name
from spirl.reporting.timing import bench_run_times, estimate_hours, stage_hours
from spirl.workflow.plan import table_runs, training_runs

FIGURES = ("fig2", "fig3", "fig8", "fig6", "curves", "intervals", "profile")
CRITERIA = ("quality-md", "quality-fig", "wu-loss", "wu-masks")  # SPEC §13-§14, when the profile builds them
PROBES = ("agent-saliency-md",)  # SPEC §16: what the trained agents look at, when the profile measures it


def criteria_section(args, report_dir: Path) -> list[str]:
    """SPEC §13-§14: the scorers' object recall table, its figures and the Wu mask's training, if built."""
    if not args.in_quality_md and not args.in_wu_loss:
        return []
    lines = ["## Saliency criteria (SPEC §13-§14)", "",
             "Each scorer ranks the same frames' patches; dynamic-K at the game's adopted K_max keeps the top ones. "
             "Recall: share of the game's moving OCAtari objects (criteria.dynamic_categories) touching a kept patch; "
             "lift: recall over that of K random patches per frame (about 1 means no better than chance). The "
             "agents' returns per scorer are in the criteria table under Tables.", ""]
    for path in args.in_quality_md:
        lines += [re.sub(r"^#+ ", "### ", path.read_text(), flags=re.M) if path.is_file()
                  else f"- the saliency-quality table is not made yet (`{path}` missing)", ""]
    for name, caption in (("quality-fig", "selected patches (outlined) on the object boxes, per scorer"),
                          ("wu-masks", "Wu et al.'s mask on real frames"), ("wu-loss", "Wu mask training loss")):
        paths = getattr(args, f"in_{name.replace('-', '_')}")
        if paths:
            lines += [f"### {caption}", "", *image_lines(paths, report_dir, caption), ""]
    return lines


def agent_saliency_section(args) -> list[str]:
    """SPEC §16: the agent-saliency table (its figures are linked from it, relative to the report), if built."""
    lines = []
    for path in args.in_agent_saliency_md:
        lines += [path.read_text() if path.is_file() else f"- the agent-saliency table is not made yet (`{path}` "
                  "missing)", ""]
    return lines


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    for name in ("tables", "train-run", "collect-run", "mae-run", "mae-loss", "mr", *FIGURES, *CRITERIA, *PROBES):
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
    lines += training_vs_k(args.in_bench, profile)
    lines += criteria_section(args, args.out_report.parent)
    lines += agent_saliency_section(args)
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
