"""Benchmark: seconds per update of the Wu mask's training (SPEC §13), and the time of the released budget from it.

    python bench/wu.py --params params.yaml conf/desk.yaml --frames data/desk/frames/Frostbite/frames.npz \\
        --out bench/results/wu-cpu.json

Times `spirl.saliency.wu.training.train_step` (the stage's update: `wu.batch_size` pairs sampled from one episode,
`wu.micro_batch` pairs per forward/backward pass, gradient clipping, Adam) on the given frames, one torch thread
(runtime.torch_threads), after warm-up updates, in two layouts:
  before: the default (contiguous) layout, the whole batch in one pass, as the stage ran until 2026-12;
  after:  the stage's layout now (channels-last weights, `wu.micro_batch` pairs per pass).
Goal (issue 29): one update of 64 pairs <= 0.25 s on one core, so the released ≈2M pairs (31,250 updates) fit about
two hours. Other jobs on the same cores slow it: the record says how many CPUs were busy when it ran (load average).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from pathlib import Path

import numpy as np
import torch

from spirl.common.runinfo import emit_bench
from spirl.common.runtime import setup_torch
from spirl.params import load_params
from spirl.saliency.wu.data import gray_frames, pair_indices
from spirl.saliency.wu.model import WuAttention
from spirl.saliency.wu.training import settings_from_params, total_updates, train_step


def time_updates(model: WuAttention, gray: torch.Tensor, episodes: torch.Tensor, settings, warmup: int,
                 updates: int) -> float:
    """Mean wall seconds of one train_step over `updates` updates after `warmup` ones."""
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr)
    pairs = torch.Generator().manual_seed(0)
    for i in range(warmup + updates):
        if i == warmup:
            start = time.perf_counter()
        source, target = pair_indices(episodes, settings.batch_size, settings.max_gap, pairs)
        train_step(model, optimizer, gray, source, target, settings)
    return (time.perf_counter() - start) / updates


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", nargs="+", type=Path, default=[Path("params.yaml")])
    parser.add_argument("--frames", type=Path, required=True, help="a collect stage's frames.npz")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--updates", type=int, default=20, help="timed updates per layout")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    params = load_params(args.params)
    device = setup_torch(params.runtime)
    with np.load(args.frames) as data:
        gray = gray_frames(data["frames"]).to(device)
        episodes = torch.from_numpy(data["episodes"].astype(np.int64))
    settings = settings_from_params(params.wu)
    load_before = os.getloadavg()
    results = {}
    for name, channels_last, micro in (("before", False, settings.batch_size),
                                       ("after", True, settings.micro_batch)):
        model = WuAttention(torch.Generator().manual_seed(0)).to(device)
        if channels_last:
            model.channels_last()
        layout = dataclasses.replace(settings, micro_batch=micro)
        seconds = time_updates(model, gray, episodes, layout, args.warmup, args.updates)
        results[name] = {"channels_last": channels_last, "micro_batch": micro, "s_per_update": round(seconds, 4)}
    updates = total_updates(params.wu.pair_samples, params.wu.batch_size)
    for row in results.values():
        row["released_budget_hours"] = round(row["s_per_update"] * updates / 3600, 2)
    emit_bench({"bench": "wu", "device": {"torch_device": str(device), "torch_threads": torch.get_num_threads()},
                "settings": {"params": [str(p) for p in args.params], "frames": str(args.frames),
                             "batch_size": settings.batch_size, "pair_samples": params.wu.pair_samples,
                             "updates": updates, "warmup": args.warmup, "timed_updates": args.updates,
                             "load_average_1min_before_after": [round(load_before[0], 2),
                                                                round(os.getloadavg()[0], 2)]},
                "results": results, "speedup": round(results["before"]["s_per_update"]
                                                      / results["after"]["s_per_update"], 2),
                "goal_s_per_update": 0.25}, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
