"""The saliency-quality table (SPEC §14): one row per game x scorer from the per-game saliency_quality JSONs.

CSV: every number (values and CI ends, random recall, per-category recall as recall_<Category> columns,
frames/s); Markdown: spirl.saliency.quality.quality_markdown, the section the report includes.
"""

from __future__ import annotations

from pathlib import Path

from spirl.common.cli import base_parser, setup_logging
from spirl.common.io import atomic_path, read_json
from spirl.common.plots import write_csv
from spirl.params import load_params
from spirl.saliency.quality import quality_markdown, quality_rows


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--in-quality", type=Path, nargs="+", required=True,
                        help="results/<profile>/saliency_quality/<game>.json, in experiment.games order")
    parser.add_argument("--out-csv", type=Path, required=True)
    parser.add_argument("--out-md", type=Path, required=True)
    args = parser.parse_args()
    log = setup_logging("quality_table", args.log)
    params = load_params(args.params)
    records = [read_json(path) for path in args.in_quality]
    games = [rec["result"]["game"] for rec in records]
    if len(set(games)) != len(games):
        raise ValueError(f"--in-quality names a game twice: {games}")
    rows = quality_rows(records)
    write_csv(rows, args.out_csv)
    with atomic_path(args.out_md) as tmp:
        tmp.write_text(quality_markdown(rows, params.experiment.profile, params.report.ci_level))
    log.info("saliency quality: %d rows (%s x %d scorers) -> %s, %s", len(rows), ", ".join(games),
             len(rows) // max(len(games), 1), args.out_csv, args.out_md)


if __name__ == "__main__":
    main()
