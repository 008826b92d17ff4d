"""One of the paper's tables from its runs, beside the paper's numbers, as CSV (tidy cells) and Markdown.

PYTHONHASHSEED=0 python src/make_tables.py --params params.yaml conf/full.yaml --table table2 \
    --in-eval RUN/eval.json ... --in-run RUN/run.json ... --in-reference data/reference/paper_scores.csv \
    [--in-mae-run data/full/mae/GAME/run.json ...] [--in-quality results/full/saliency_quality/GAME.json ...] \
    --out-csv results/full/tables/table2.csv --out-md ....md
The runs are spirl.workflow.plan.table_runs(params, table), in that order. Missing runs are reported, not filled.
"""

from __future__ import annotations

from pathlib import Path

from spirl.common.cli import base_parser, setup_logging
from spirl.common.io import atomic_path, read_json_if_exists
from spirl.common.plots import write_csv
from spirl.params import ConfigError, load_params
from spirl.reporting.scores import RUN_FIELDS, load_run
from spirl.reporting.table_parts import cost_rows, criteria_quality_rows, pretraining_time_rows
from spirl.reporting.tables import build_table, read_reference, table_games, to_markdown
from spirl.workflow.plan import criteria_games, table_runs


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--table", required=True)
    parser.add_argument("--in-eval", nargs="*", type=Path, default=[])
    parser.add_argument("--in-run", nargs="*", type=Path, default=[])
    parser.add_argument("--in-reference", type=Path, required=True)
    parser.add_argument("--in-mae-run", nargs="*", type=Path, default=[])
    parser.add_argument("--in-quality", nargs="*", type=Path, default=[])
    parser.add_argument("--out-csv", type=Path, required=True)
    parser.add_argument("--out-md", type=Path, required=True)
    args = parser.parse_args()
    log = setup_logging("make_tables", args.log)
    params = load_params(args.params)
    if args.table not in params.experiment.tables:
        raise ConfigError(f"--table {args.table!r}: allowed {sorted(params.experiment.tables)} "
                          "(experiment.tables)")
    runs = table_runs(params, args.table)
    if not len(runs) == len(args.in_eval) == len(args.in_run):
        raise ConfigError(f"{args.table} needs {len(runs)} runs; got {len(args.in_eval)} --in-eval and "
                          f"{len(args.in_run)} --in-run files")
    results = {}
    for run, e, r in zip(runs, args.in_eval, args.in_run, strict=True):
        key = tuple(run[f] for f in RUN_FIELDS)
        results[key] = load_run(key, e, r, params)
    reference = read_reference(args.in_reference)
    cells = build_table(args.table, params, results, reference)
    if args.table == "table1":
        games = table_games("table1", params)
        if len(args.in_mae_run) != len(games):
            raise ConfigError(f"table1 needs one --in-mae-run per game {games}; got {len(args.in_mae_run)}")
        records = {g: read_json_if_exists(p) for g, p in zip(games, args.in_mae_run, strict=True)}
        cells = pretraining_time_rows(params, records, reference) + cells
    if args.table == "criteria":  # the object recall of each scorer's selection, after the returns
        games = criteria_games(params)
        if len(args.in_quality) != len(games):
            raise ConfigError(f"criteria needs one --in-quality per game {games}; got {len(args.in_quality)}")
        records = {g: read_json_if_exists(p) for g, p in zip(games, args.in_quality, strict=True)}
        cells += criteria_quality_rows(params, records)
    if args.table == "table_st":  # each agent's parameters and learner speed, after the returns
        cells += cost_rows(args.table, params, results)
    write_csv(cells, args.out_csv)
    with atomic_path(args.out_md) as tmp:
        tmp.write_text(to_markdown(args.table, cells, params.experiment.profile))
    statuses = [c["status"] for c in cells]
    log.info("%s: %d cells (%s)", args.table, len(cells),
             ", ".join(f"{s}: {statuses.count(s)}" for s in dict.fromkeys(statuses)))


if __name__ == "__main__":
    main()
