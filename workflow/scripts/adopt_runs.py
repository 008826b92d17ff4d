#!/usr/bin/env python3
"""Adopt finished runs of one variant as seeds of another when they ran with the other's effective parameters.

    python workflow/scripts/adopt_runs.py --profile desk \\
        --source reports/desk/results/investigate/de_rainbow_released_priority --variant de_rainbow \\
        --regime 100k --games Frostbite BattleZone --seeds 0 1

For each (game, seed) it reads the source run's run.json and compares, section by section, the parameters the run
recorded with the target variant's as the profile resolves them now: every section a training job depends on
(spirl.workflow.stages.TRAIN.sections, less the variant's own declaration: its overrides are how it got its values,
not values). Any difference stops it, naming the key paths. When all are equal it writes the run's eval.json,
progress.csv and run.json under results/<profile>/runs/<variant>/<regime>/<game>/<seed>/ with the run's identity
changed to the target and an `adopted_from` block saying what it was: the source variant and files, the seed
streams it actually used (derived from the source variant's name, so they differ from the target's own seed
streams: an independent draw of the same configuration, not the target's seed reproduced), and the sections
compared. The returns and curves are copied unchanged. It never writes over a file that exists.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))

from spirl.params import load_params, resolve_variant, to_plain  # noqa: E402
from spirl.workflow.plan import param_files  # noqa: E402
from spirl.workflow.stages import TRAIN  # noqa: E402

COMPARED = tuple(s for s in TRAIN.sections if not s.startswith("experiment."))  # the run's effective values


def differences(recorded: object, current: object, path: str) -> list[str]:
    """Key paths where two plain values differ (dicts compared key by key)."""
    if isinstance(recorded, dict) and isinstance(current, dict):
        out = []
        for key in sorted(set(recorded) | set(current)):
            if key not in recorded or key not in current:
                out.append(f"{path}.{key} ({'only now' if key in current else 'only recorded'})")
            else:
                out += differences(recorded[key], current[key], f"{path}.{key}")
        return out
    return [] if recorded == current else [f"{path}: recorded {recorded!r}, now {current!r}"]


def adopt(source_dir: Path, target_dir: Path, target: dict, variant: str, compared: tuple[str, ...]) -> None:
    """Write one adopted run (see the module docstring); ValueError when its parameters differ."""
    run = json.loads((source_dir / "run.json").read_text())
    diff = [d for section in compared for d in differences(run["params"].get(section), target[section], section)]
    if diff:
        raise ValueError(f"{source_dir}: not adopted, its parameters differ from {variant!r}'s: " + "; ".join(diff))
    existing = [name for name in ("eval.json", "progress.csv", "run.json") if (target_dir / name).exists()]
    if existing:
        raise FileExistsError(f"{target_dir}: {', '.join(existing)} exist; nothing written")
    evaluation = json.loads((source_dir / "eval.json").read_text())
    block = {"variant": evaluation["variant"], "files": os.path.relpath(source_dir, ROOT),
             "seed_streams": run["seeds"], "sections_equal": list(compared),
             "note": "seed streams derived from the source variant's name: an independent draw of the same "
                     "configuration, not this variant's own seed streams"}
    target_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source_dir / "progress.csv", target_dir / "progress.csv")
    with (target_dir / "progress.csv").open() as fh:  # a readable CSV, as copied
        next(csv.reader(fh))
    run["wildcards"] = {**run["wildcards"], "variant": variant}
    (target_dir / "run.json").write_text(json.dumps({**run, "adopted_from": block}, indent=2) + "\n")
    (target_dir / "eval.json").write_text(json.dumps({**evaluation, "variant": variant, "adopted_from": block},
                                                     indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", required=True)
    parser.add_argument("--source", type=Path, required=True, help="<source variant folder>, holding <regime>/...")
    parser.add_argument("--variant", required=True, help="the variant the runs are adopted as")
    parser.add_argument("--regime", required=True)
    parser.add_argument("--games", nargs="+", required=True)
    parser.add_argument("--seeds", nargs="+", type=int, required=True)
    args = parser.parse_args(argv)
    params = load_params([ROOT / f for f in param_files(args.profile)])
    target = to_plain(resolve_variant(params, args.variant))
    source = (ROOT / args.source).resolve()
    for game in args.games:
        for seed in args.seeds:
            out = ROOT / "results" / args.profile / "runs" / args.variant / args.regime / game / str(seed)
            adopt(source / args.regime / game / str(seed), out, target, args.variant, COMPARED)
            print(f"adopted {source.name}/{args.regime}/{game}/{seed} as {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
