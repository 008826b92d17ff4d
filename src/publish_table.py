"""Publish the active profile's table at results/<table>.csv and .md (the paths users ask Snakemake for).

PYTHONHASHSEED=0 python src/publish_table.py --params params.yaml conf/smoke.yaml --table table2 \
    --in-csv results/smoke/tables/table2.csv --in-md results/smoke/tables/table2.md \
    --out-csv results/table2.csv --out-md results/table2.md
"""

from __future__ import annotations

from pathlib import Path

from spirl.common.cli import base_parser, setup_logging
from spirl.common.io import atomic_path
from spirl.params import load_params


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--table", required=True)
    for name in ("in-csv", "in-md", "out-csv", "out-md"):
        parser.add_argument(f"--{name}", type=Path, required=True)
    args = parser.parse_args()
    log = setup_logging("publish_table", args.log)
    profile = load_params(args.params).experiment.profile
    for src, dst in ((args.in_csv, args.out_csv), (args.in_md, args.out_md)):
        with atomic_path(dst) as tmp:
            tmp.write_bytes(src.read_bytes())
    log.info("%s of profile %r published at %s and %s", args.table, profile, args.out_csv, args.out_md)


if __name__ == "__main__":
    main()
