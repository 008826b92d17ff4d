"""Compare two builds' tables file by file: byte-identical, or which cells differ (wall-time cells set apart).

A refactoring must leave every table the same for the same seeds. Wall time (Table 1's pre-training hours) differs
between any two executions; its rows are reported separately and do not count as a difference.

    python workflow/scripts/compare_tables.py BEFORE/results/smoke/tables AFTER/results/smoke/tables [--json OUT]

Exit status 0 when the tables agree (wall time aside), 1 otherwise.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import sys
from pathlib import Path

WALL_TIME_METRIC = "wall time"  # the `metric` of cells that record a measured time


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def compare_csv(before: Path, after: Path) -> dict:
    """Cells of two tidy table CSVs: rows that differ outside wall time, and whether wall-time rows differ."""
    old, new = _rows(before), _rows(after)
    timed = [i for i, r in enumerate(old) if r.get("metric") == WALL_TIME_METRIC]
    if len(old) != len(new):
        return {"rows_before": len(old), "rows_after": len(new), "differing_rows": None, "wall_time_rows": timed}
    differing = [i for i, (a, b) in enumerate(zip(old, new, strict=True))
                 if a != b and a.get("metric") != WALL_TIME_METRIC]
    return {"differing_rows": differing, "wall_time_rows": timed,
            "wall_time_rows_differ": any(old[i] != new[i] for i in timed)}


def compare(before_dir: Path, after_dir: Path) -> dict:
    """Every table file of either folder: its bytes' hashes, identical or not, and for CSVs the differing rows."""
    names = sorted({p.name for p in before_dir.iterdir()} | {p.name for p in after_dir.iterdir()})
    files = {}
    for name in names:
        a, b = before_dir / name, after_dir / name
        if not (a.is_file() and b.is_file()):
            files[name] = {"missing_in": "before" if not a.is_file() else "after"}
            continue
        entry = {"sha256_before": _sha(a), "sha256_after": _sha(b)}
        entry["identical"] = entry["sha256_before"] == entry["sha256_after"]
        if name.endswith(".csv") and not entry["identical"]:
            entry.update(compare_csv(a, b))
        files[name] = entry
    agree = all(f.get("identical") or (f.get("differing_rows") == []) for f in files.values())
    return {"before": str(before_dir), "after": str(after_dir), "agree_except_wall_time": agree, "files": files}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("before", type=Path, help="the tables folder of the first build")
    parser.add_argument("after", type=Path, help="the tables folder of the second build")
    parser.add_argument("--json", type=Path, default=None, help="also write the comparison here")
    args = parser.parse_args()
    for folder in (args.before, args.after):
        if not folder.is_dir():
            parser.error(f"{folder} is not a folder of tables")
    result = compare(args.before, args.after)
    text = json.dumps(result, indent=2) + "\n"
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text)
    print(text, end="")
    sys.exit(0 if result["agree_except_wall_time"] else 1)


if __name__ == "__main__":
    main()
