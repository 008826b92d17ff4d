"""Benchmark: frames per second of each saliency scorer (SPEC §13), as a training env calls it, on real frames.

    python bench/scorers.py --params params.yaml conf/desk.yaml --model data/desk/mae/Frostbite/model.npz \\
        --frames data/desk/frames/Frostbite/frames.npz [--wu data/desk/wu/Frostbite/model.npz] \\
        --n-frames 60 --out bench/results/scorers-cpu.json

The first n frames of the game's random-policy collection, in playing order, one frame per call (one env's stream,
episode starts marked), through each scorer's stream scorer (spirl.saliency.scorers: the MAE's error map incremental as
saliency.incremental says, frame_diff with its previous frame, random, Wu's mask) and then dynamic-K at the game's
adopted K_max and the MAE encoder's embedding of the kept patches (what Represent adds, the same for every scorer).
Scorers are timed interleaved, frame by frame, so a busy machine slows all of them alike; the table gives frames/s
of the scorer alone and of the whole representation. Without --wu an untrained Wu mask is timed (the same network,
so the same cost). Also: process CPU seconds, which a busy machine does not inflate.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from spirl.common.runinfo import emit_bench
from spirl.params import SCORERS, load_params
from spirl.saliency.error_maps import embed_selected, error_map_settings
from spirl.saliency.mr import episode_starts
from spirl.saliency.pretrain import load_model, untrained_mae
from spirl.saliency.registry import SPECS
from spirl.saliency.scorers import build_scorer
from spirl.saliency.scorers.base import ScorerModels
from spirl.saliency.selection import k_max_from_ratio, select_batched
from spirl.saliency.wu.model import WuAttention
from spirl.saliency.wu.training import load_model as load_wu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", nargs="+", type=Path, required=True)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--frames", type=Path, required=True)
    parser.add_argument("--game", default="Frostbite")
    parser.add_argument("--wu", type=Path, default=None)
    parser.add_argument("--n-frames", type=int, default=60)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    params = load_params(args.params)
    torch.set_num_threads(params.runtime.torch_threads)
    mae = load_model(args.model)
    settings = error_map_settings(params, mae)
    wu = load_wu(args.wu) if args.wu else WuAttention(generator=torch.Generator().manual_seed(0)).eval()
    untrained = untrained_mae(params.mae, args.game, mae.config.img_size)
    with np.load(args.frames) as data:
        frames, episodes = data["frames"][: args.n_frames], data["episodes"][: args.n_frames]
    starts = episode_starts(episodes)
    k_max = k_max_from_ratio(mae.config.num_patches, params.saliency.paper_mr[args.game])
    models = ScorerModels(mae, settings, params.saliency.incremental, untrained, wu)
    scorers = {name: build_scorer(SPECS[name], models).stream() for name in SCORERS}
    score_s, represent_s, cpu_s = (dict.fromkeys(SCORERS, 0.0) for _ in range(3))
    with torch.inference_mode():
        for i in range(len(frames)):
            frame = frames[i:i + 1]
            for name, scorer in scorers.items():
                t0, c0 = time.perf_counter(), time.process_time()
                scores = scorer(frame, ["env"], [bool(starts[i])])
                t1 = time.perf_counter()
                indices, counts = select_batched(scores, "dynamic", k_max, params.saliency.xscale)
                embed_selected(mae, frame, indices, counts, k_max)
                t2, c2 = time.perf_counter(), time.process_time()
                score_s[name] += t1 - t0
                represent_s[name] += t2 - t0
                cpu_s[name] += c2 - c0
    n = len(frames)
    results = {name: {"score_frames_per_s": n / score_s[name], "represent_frames_per_s": n / represent_s[name],
                      "score_ms_per_frame": 1e3 * score_s[name] / n,
                      "represent_ms_per_frame": 1e3 * represent_s[name] / n,
                      "represent_cpu_ms_per_frame": 1e3 * cpu_s[name] / n} for name in SCORERS}
    for name, r in results.items():
        print(f"{name:14s} score {r['score_ms_per_frame']:9.2f} ms  represent {r['represent_ms_per_frame']:9.2f} ms",
              file=sys.stderr)
    emit_bench({"bench": "scorers", "settings": {"params": [str(p) for p in args.params], "model": str(args.model),
                                                 "frames": str(args.frames), "game": args.game, "wu": str(args.wu),
                                                 "n_frames": n, "k_max": k_max,
                                                 "incremental": params.saliency.incremental},
                "results": results, "device": {"torch_threads": params.runtime.torch_threads}}, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
