#!/usr/bin/env python3
"""Keep the desk profile's run records as committed evidence under reports/desk/, and put them back from there.

save     copies the records a reader needs from results/desk/ and data/desk/ to reports/desk/results/ and
         reports/desk/data/ (same relative paths; an older copy there is replaced): each run's eval.json,
         progress.csv and run.json, the mr estimates (mr.json), the tables (tables/), runs.csv, the saliency-quality
         results, the MAE's and Wu mask's loss.csv and run.json, and the run.json of the collected frames and
         objects. Never frames, models, weights or K histograms (*.npz).
restore  copies everything under reports/desk/results/ and reports/desk/data/ back to results/desk/ and data/desk/,
         never over a file that exists, so that `make desk-restore report-now PROFILE=desk` on a fresh clone (or
         after the work folders were lost) rebuilds the tables and the report from the records. A run restored
         without its weights is still re-run by `make desk`.

`make desk-evidence` and `make desk-restore` call it, from the repository root; it needs only the standard library.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

PROFILE = "desk"
KINDS = ("results", "data")  # the two folders a profile's records live in: <kind>/desk/ <-> reports/desk/<kind>/

RESULT_FILES = ("eval.json", "progress.csv", "run.json", "mr.json", "runs.csv")  # under results/desk/, at any depth
MODEL_FILES = ("loss.csv", "run.json")  # under data/desk/mae/ and data/desk/wu/
MODELS = ("mae", "wu")
COLLECTIONS = ("frames", "objects")  # under data/desk/<collection>/: their run.json only


def is_record(kind: str, path: PurePosixPath) -> bool:
    """Whether a file (its path relative to <kind>/desk/) is a record that `save` keeps."""
    top, inside = path.parts[0], len(path.parts) > 1
    if kind == "results":
        return path.name in RESULT_FILES or (top == "tables" and inside) or top.startswith("saliency_quality")
    return inside and ((top in MODELS and path.name in MODEL_FILES)
                       or (top in COLLECTIONS and path.name == "run.json"))


def files_under(folder: Path) -> Iterator[PurePosixPath]:
    """Every file under `folder` (symbolic links not followed into), as a path relative to it, in sorted order."""
    for here, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            yield PurePosixPath(Path(here, name).relative_to(folder).as_posix())


def save(root: Path) -> int:
    """Copy the records to reports/desk/ (replacing older copies); the number copied."""
    sources = {kind: root / kind / PROFILE for kind in KINDS}
    missing = [str(s.relative_to(root)) for s in sources.values() if not s.is_dir()]
    if missing:
        raise FileNotFoundError(f"nothing to save: {', '.join(missing)} does not exist (run `make desk` first)")
    copied = 0
    for kind, source in sources.items():
        target = root / "reports" / PROFILE / kind
        target.mkdir(parents=True, exist_ok=True)
        for path in files_under(source):
            if is_record(kind, path):
                (target / path).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(source / path, target / path)
                copied += 1
    return copied


def restore(root: Path) -> tuple[int, int]:
    """Copy every file under reports/desk/results|data/ to results|data/desk/ where no file of that name exists;
    (files copied, files left alone because they exist)."""
    sources = {kind: root / "reports" / PROFILE / kind for kind in KINDS}
    missing = [str(s.relative_to(root)) for s in sources.values() if not s.is_dir()]
    if missing:
        raise FileNotFoundError(f"nothing to restore: {', '.join(missing)} does not exist (`make desk-evidence` "
                                "writes it)")
    copied = kept = 0
    for kind, source in sources.items():
        target = root / kind / PROFILE
        for here, dirs, files in os.walk(source):
            dirs.sort()
            folder = target / Path(here).relative_to(source)
            if folder.exists() and not folder.is_dir():
                raise NotADirectoryError(f"cannot restore {Path(here).relative_to(root)}/ into {folder}: a file "
                                         "of that name exists")
            folder.mkdir(parents=True, exist_ok=True)
            for name in sorted(files):
                if os.path.lexists(folder / name):
                    kept += 1
                else:
                    shutil.copy(Path(here, name), folder / name, follow_symlinks=False)
                    copied += 1
    return copied, kept


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    parser.add_argument("action", choices=("save", "restore"), help="save the records, or restore them")
    parser.add_argument("--root", type=Path, default=Path("."),
                        help="the repository root (default: the current folder)")
    args = parser.parse_args(argv)
    root = args.root.resolve()
    try:
        if args.action == "save":
            print(f"saved {save(root)} records under reports/{PROFILE}/")
        else:
            copied, kept = restore(root)
            print(f"restored {copied} records to results/{PROFILE}/ and data/{PROFILE}/; left {kept} that exist alone")
    except OSError as err:
        print(f"desk_evidence.py {args.action}: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
