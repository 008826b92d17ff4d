#!/usr/bin/env python3
"""Keep the desk profile's run records as committed evidence under reports/desk/, and put them back from there.

save     copies the records a reader needs from results/desk/ and data/desk/ to reports/desk/results/ and
         reports/desk/data/ (same relative paths; an older copy there is replaced): each run's eval.json,
         progress.csv and run.json, the mr estimates (mr.json), the tables (tables/), runs.csv, the saliency-quality
         results, the agent-saliency shares and table, the MAE's and Wu mask's loss.csv and run.json, and the
         run.json of the collected frames and objects. Never frames, models, weights or K histograms (*.npz).
save-models  copies one game's small trained models to reports/desk/models/: the MAE and the Wu mask
         (data/desk/mae|wu/<game>/model.npz, a few MB each), and while the Wu mask is still training its resume
         checkpoint (work/desk/wu/<game>/checkpoint.pt: weights, optimiser and pair sampler). The exception to
         "no models in git" that the desk allows, so a later sitting restores them instead of training again.
restore  copies everything under reports/desk/results/ and reports/desk/data/ back to results/desk/ and data/desk/,
         and under reports/desk/models/<kind>/ back to <kind>/desk/, never over a file that exists, so that
         `make desk-restore report-now PROFILE=desk` on a fresh clone (or after the work folders were lost) rebuilds
         the tables and the report from the records, and the stages after the models start from them. A run
         restored without its weights is still re-run by `make desk`.

`make desk-evidence`, `make desk-models` and `make desk-restore` call it, from the repository root; it needs only
the standard library.
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
SAVED_MODELS = (("data", "mae/{game}/model.npz"), ("data", "wu/{game}/model.npz"))  # save-models: <kind>/desk/...
WU_CHECKPOINT = ("work", "wu/{game}/checkpoint.pt")  # saved while the Wu mask has no model.npz yet


def is_record(kind: str, path: PurePosixPath) -> bool:
    """Whether a file (its path relative to <kind>/desk/) is a record that `save` keeps."""
    top, inside = path.parts[0], len(path.parts) > 1
    if kind == "results":
        return (path.name in RESULT_FILES or (top == "tables" and inside) or top.startswith("saliency_quality")
                or top.startswith("agent_saliency"))  # the probed runs' shares and their table (SPEC §16)
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


def save_models(root: Path, game: str) -> list[str]:
    """Copy `game`'s MAE and Wu mask (and the Wu mask's checkpoint while it has no model) to reports/desk/models/;
    the paths copied. FileNotFoundError when there is nothing of the game to save."""
    wanted = list(SAVED_MODELS)
    if not (root / "data" / PROFILE / SAVED_MODELS[1][1].format(game=game)).is_file():
        wanted.append(WU_CHECKPOINT)
    copied = []
    for kind, template in wanted:
        path = template.format(game=game)
        source, target = root / kind / PROFILE / path, root / "reports" / PROFILE / "models" / kind / path
        if source.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, target)
            copied.append(str(target.relative_to(root)))
    if not copied:
        raise FileNotFoundError(f"no model of {game} to save under data/{PROFILE}/ or work/{PROFILE}/")
    return copied


def restore(root: Path) -> tuple[int, int]:
    """Copy every file under reports/desk/results|data/ to results|data/desk/, and under reports/desk/models/<kind>/
    to <kind>/desk/, where no file of that name exists; (files copied, files left alone because they exist)."""
    sources = {kind: root / "reports" / PROFILE / kind for kind in KINDS}
    missing = [str(s.relative_to(root)) for s in sources.values() if not s.is_dir()]
    if missing:
        raise FileNotFoundError(f"nothing to restore: {', '.join(missing)} does not exist (`make desk-evidence` "
                                "writes it)")
    models = root / "reports" / PROFILE / "models"
    if models.is_dir():
        sources |= {f"models/{kind.name}": kind for kind in sorted(models.iterdir()) if kind.is_dir()}
    copied = kept = 0
    for kind, source in sources.items():
        target = root / kind.removeprefix("models/") / PROFILE
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
    parser.add_argument("action", choices=("save", "save-models", "restore"),
                        help="save the records, save one game's models, or restore them all")
    parser.add_argument("--game", default="Frostbite", help="save-models: the game (default Frostbite)")
    parser.add_argument("--root", type=Path, default=Path("."),
                        help="the repository root (default: the current folder)")
    args = parser.parse_args(argv)
    root = args.root.resolve()
    try:
        if args.action == "save":
            print(f"saved {save(root)} records under reports/{PROFILE}/")
        elif args.action == "save-models":
            print("saved " + ", ".join(save_models(root, args.game)))
        else:
            copied, kept = restore(root)
            print(f"restored {copied} records to results/{PROFILE}/ and data/{PROFILE}/; left {kept} that exist alone")
    except OSError as err:
        print(f"desk_evidence.py {args.action}: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
