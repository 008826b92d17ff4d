"""Benchmark: the wall time of one whole training run, split into env, represent (saliency or gray frames),
act, replay, learn, eval and checkpoint, as measured inside src/train_agent.py.

    python bench/run.py --params params.yaml conf/smoke.yaml --variant spirl --regime 100k --game Seaquest \\
        --model data/smoke/mae/Seaquest/model.npz --mr results/smoke/mr/Seaquest/mr.json \\
        --out bench/results/run-spirl-smoke-cpu.json

The run goes to a temporary folder (no resume: a fresh run every time); --keep DIR keeps its eval.json,
progress.csv and run.json. --seeds S trains seeds seed..seed+S-1 in one job (runtime.seeds_per_job); then
wall_time_s is each seed's share of the job (job_wall_time_s the whole), and --keep keeps DIR/<seed>/.
--max-seconds T stops a run that is not done after T seconds and reports how far it got (from its last
checkpoint) and the whole run's time extrapolated from that pace, marked "finished": false.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from spirl.common.runinfo import emit_bench
from spirl.params import REPO_ROOT


def unfinished(args: argparse.Namespace, checkpoint: Path, elapsed_s: float) -> dict:
    """The record of a run stopped at --max-seconds: steps reached at its last checkpoint, extrapolated time."""
    import torch

    from spirl.params import load_params, resolve_variant

    regime = resolve_variant(load_params([Path(p) for p in args.params]), args.variant).train.regimes[args.regime]
    reached = torch.load(checkpoint, map_location="cpu", weights_only=False)["run"].env_step if checkpoint.is_file() \
        else 0
    return {"bench": "run", "finished": False,
            "settings": {"params": args.params, "variant": args.variant, "regime": args.regime, "game": args.game,
                         "seed": args.seed, "seeds_per_job": args.seeds},
            "stopped_after_s": elapsed_s, "env_steps_at_last_checkpoint": int(reached),
            "env_steps": regime.total_env_steps,
            "extrapolated_job_wall_time_s": elapsed_s * regime.total_env_steps / reached if reached else None,
            "note": "stopped by --max-seconds; the extrapolation assumes the pace so far and leaves out the final "
                    "evaluation", "device": {}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", nargs="+", default=["params.yaml", "conf/full.yaml"])
    parser.add_argument("--variant", required=True)
    parser.add_argument("--regime", required=True)
    parser.add_argument("--game", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seeds", type=int, default=1, help="seeds trained together in the one job")
    parser.add_argument("--model", type=Path, default=None, help="the game's MAE (spirl variants)")
    parser.add_argument("--mr", type=Path, default=None, help="the game's mr.json (spirl variants)")
    parser.add_argument("--frames", type=Path, default=None, help="pre-training frames (replay pre-fill)")
    parser.add_argument("--max-seconds", type=float, default=None, help="stop an unfinished run after this long")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--keep", type=Path, default=None,
                        help="folder to keep the run's eval.json, progress.csv and run.json in (e.g. for the report)")
    args = parser.parse_args(argv)
    seeds = list(range(args.seed, args.seed + args.seeds))
    with tempfile.TemporaryDirectory() as tmp:
        folders = [Path(tmp) / str(seed) for seed in seeds]
        cmd = [sys.executable, "src/train_agent.py", "--params", *args.params, "--variant", args.variant,
               "--regime", args.regime, "--game", args.game, "--seed", *map(str, seeds),
               "--work", *(str(f / "work") for f in folders)]
        for name, file in (("eval", "eval.json"), ("progress", "progress.csv"), ("run", "run.json"),
                           ("weights", "weights.npz")):
            cmd += [f"--out-{name}", *(str(f / file) for f in folders)]
        for name, path in (("model", args.model), ("mr", args.mr), ("frames", args.frames)):
            if path is not None:
                cmd += [f"--in-{name}", str(path)]
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env={**os.environ, "PYTHONHASHSEED": "0"},
                                stderr=subprocess.DEVNULL)
        try:
            if proc.wait(timeout=args.max_seconds) != 0:
                raise subprocess.CalledProcessError(proc.returncode, cmd)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            emit_bench(unfinished(args, folders[0] / "work" / "checkpoint.pt", time.perf_counter() - start), args.out)
            return 0
        record = json.loads((folders[0] / "run.json").read_text())
        evals = [json.loads((f / "eval.json").read_text())["points"] for f in folders]
        if args.keep is not None:
            for seed, folder in zip(seeds, folders, strict=True):
                keep = args.keep if len(seeds) == 1 else args.keep / str(seed)
                keep.mkdir(parents=True, exist_ok=True)
                for name in ("eval.json", "progress.csv", "run.json"):
                    shutil.copy(folder / name, keep / name)
    emit_bench({"bench": "run", "settings": {"params": args.params, "variant": args.variant,
                                             "regime": args.regime, "game": args.game, "seed": args.seed,
                                             "seeds_per_job": len(seeds)},
                "wall_time_s": record["wall_time_s"], "job_wall_time_s": record["job"]["wall_time_s"],
                "timing_s": record["timing_s"], "env_steps": record["online_env_steps"], "updates": record["updates"],
                "updates_per_s": record["updates_per_s"], "k_max": record["k_max"],
                "eval_mean_returns": [[sum(p["returns"]) / len(p["returns"]) for p in points] for points in evals]
                if len(seeds) > 1 else [sum(p["returns"]) / len(p["returns"]) for p in evals[0]],
                "device": {"torch_device": record["device_used"]}}, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
