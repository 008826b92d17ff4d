"""Benchmark: the wall time of one whole training run, split into env, represent (saliency or gray frames),
act, replay, learn, eval and checkpoint, as measured inside src/train_agent.py.

    python bench/run.py --params params.yaml conf/smoke.yaml --variant spirl --regime 100k --game Seaquest \\
        --model data/smoke/mae/Seaquest/model.npz --mr results/smoke/mr/Seaquest/mr.json \\
        --out bench/results/run-spirl-smoke-cpu.json

The run goes to a temporary folder (no resume: a fresh run every time); --keep DIR keeps its eval.json,
progress.csv and run.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from spirl.config import REPO_ROOT
from spirl.runinfo import emit_bench


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", nargs="+", default=["params.yaml", "conf/full.yaml"])
    parser.add_argument("--variant", required=True)
    parser.add_argument("--regime", required=True)
    parser.add_argument("--game", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", type=Path, default=None, help="the game's MAE (spirl variants)")
    parser.add_argument("--mr", type=Path, default=None, help="the game's mr.json (spirl variants)")
    parser.add_argument("--frames", type=Path, default=None, help="pre-training frames (replay pre-fill)")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--keep", type=Path, default=None,
                        help="folder to keep the run's eval.json, progress.csv and run.json in (e.g. for the report)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        cmd = [sys.executable, "src/train_agent.py", "--params", *args.params, "--variant", args.variant,
               "--regime", args.regime, "--game", args.game, "--seed", str(args.seed), "--work", str(out / "work")]
        for name, file in (("eval", "eval.json"), ("progress", "progress.csv"), ("run", "run.json"),
                           ("weights", "weights.npz")):
            cmd += [f"--out-{name}", str(out / file)]
        for name, path in (("model", args.model), ("mr", args.mr), ("frames", args.frames)):
            if path is not None:
                cmd += [f"--in-{name}", str(path)]
        subprocess.run(cmd, cwd=REPO_ROOT, env={**os.environ, "PYTHONHASHSEED": "0"}, check=True,
                       stderr=subprocess.DEVNULL)
        record = json.loads((out / "run.json").read_text())
        evals = json.loads((out / "eval.json").read_text())["points"]
        if args.keep is not None:
            args.keep.mkdir(parents=True, exist_ok=True)
            for name in ("eval.json", "progress.csv", "run.json"):
                shutil.copy(out / name, args.keep / name)
    emit_bench({"bench": "run", "settings": {"params": args.params, "variant": args.variant,
                                             "regime": args.regime, "game": args.game, "seed": args.seed},
                "wall_time_s": record["wall_time_s"], "timing_s": record["timing_s"],
                "env_steps": record["online_env_steps"], "updates": record["updates"],
                "updates_per_s": record["updates_per_s"], "k_max": record["k_max"],
                "eval_mean_returns": [sum(p["returns"]) / len(p["returns"]) for p in evals],
                "device": {"torch_device": record["device_used"]}}, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
