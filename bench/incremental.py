"""Benchmark: full vs incremental error maps per new frame, over real frame sequences of each game.

    python bench/incremental.py --params params.yaml conf/desk.yaml --model data/desk/mae/Frostbite/model.npz \\
        --frames data/desk/frames/{game}/frames.npz --games Frostbite MsPacman Seaquest BattleZone \\
        --n-frames 100 --out bench/results/incremental-cpu.json

Per game: the first n frames of its random-policy collection, in playing order, one frame per call as a training
env sees them; the full map of each frame (error_map) against the incremental one (spirl.saliency.incremental, the frame
compared with the one before; episode starts computed in full), each with and without the first decoder block's
shortcut (SPEC §4), timed side by side in one process, with the share
of targets recomputed, the largest difference of values, and whether every frame's dynamic-K selection (at the
game's adopted K_max and uncapped) is identical. The share depends on the frames only, not on the MAE.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from spirl.common.runinfo import emit_bench
from spirl.params import load_params
from spirl.saliency.error_maps import error_map, error_map_settings
from spirl.saliency.incremental import IncrementalErrorMaps
from spirl.saliency.mr import episode_starts
from spirl.saliency.pretrain import load_model
from spirl.saliency.selection import dynamic_k_batched, k_max_from_ratio


def compare(model, frames: np.ndarray, starts: np.ndarray, settings, k_max: int) -> dict:
    """Time four ways on the same frames (interleaved, one frame per call): full and incremental maps, each with and
    without the first decoder block's shortcut; compare every map with the plain full one."""
    ways = [(name, shortcut) for name in ("full", "incremental") for shortcut in (False, True)]
    inc = {shortcut: IncrementalErrorMaps(model, settings) for shortcut in (False, True)}
    seconds = dict.fromkeys(ways, 0.0)
    worst, same = 0.0, 0
    try:
        for i in range(len(frames)):
            maps = {}
            for name, shortcut in ways:
                type(model).first_block_shortcut = shortcut
                start = time.perf_counter()
                if name == "full":
                    maps[name, shortcut] = error_map(model, frames[i:i + 1], settings)
                else:
                    maps[name, shortcut] = inc[shortcut](frames[i:i + 1], ["env"], [bool(starts[i])])
                seconds[name, shortcut] += time.perf_counter() - start
            plain = maps["full", False]
            worst = max(worst, *(float((m - plain).abs().max()) for m in maps.values()))
            n = plain.shape[1]
            same += all(torch.equal(dynamic_k_batched(plain, k, 1.0)[0], dynamic_k_batched(m, k, 1.0)[0])
                        for k in (k_max, n) for m in maps.values())
    finally:
        type(model).first_block_shortcut = True
    per_frame = {f"{name}{'' if shortcut else '_no_shortcut'}_s_per_frame": s / len(frames)
                 for (name, shortcut), s in seconds.items()}
    return {"frames": len(frames), "recompute_share": inc[True].recompute_share, **per_frame,
            "speedup": seconds["full", True] / seconds["incremental", True],
            "speedup_vs_plain_full": seconds["full", False] / seconds["incremental", True],
            "shortcut_speedup_full": seconds["full", False] / seconds["full", True],
            "max_abs_difference": worst, "identical_selections": same / len(frames)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", nargs="+", type=Path, required=True)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--frames", required=True, help="path template with {game}")
    parser.add_argument("--games", nargs="+", required=True)
    parser.add_argument("--n-frames", type=int, default=100)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    params = load_params(args.params)
    torch.set_num_threads(params.runtime.torch_threads)
    model = load_model(args.model)
    settings = error_map_settings(params, model)
    results = {}
    for game in args.games:
        with np.load(args.frames.format(game=game)) as data:
            frames, episodes = data["frames"][: args.n_frames], data["episodes"][: args.n_frames]
        k_max = k_max_from_ratio(model.config.num_patches, params.saliency.paper_mr[game])
        results[game] = compare(model, frames, episode_starts(episodes), settings, k_max)
        print(game, results[game], file=sys.stderr)
    emit_bench({"bench": "incremental", "settings": {"params": [str(p) for p in args.params],
                                                     "model": str(args.model), "frames": args.frames,
                                                     "n_frames": args.n_frames, "error_space": settings.space,
                                                     "max_sequences": settings.max_sequences},
                "results": results, "device": {"torch_threads": params.runtime.torch_threads}}, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
