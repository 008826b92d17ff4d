"""Benchmark: do bf16 error maps select the patches fp32 error maps select? And how fast is each, on 1 and 2 threads?

    python bench/bf16_agreement.py --params params.yaml conf/desk.yaml --game Frostbite \\
        --model data/desk/mae/Frostbite/model.npz --frames data/desk/frames/Frostbite/frames.npz \\
        --n-frames 1000 --out bench/results/bf16-agreement-Frostbite-cpu.json

Agreement (issue 28, item 1): the first --n-frames frames of the archive (playing order), full error maps from the
given MAE in fp32 and under bf16 autocast (runtime.saliency_precision's two values), then dynamic-K (SPEC §5) capped
at the game's adopted K_max and uncapped (K_max = N). Per cap: the share of frames whose selected sets are
identical, the mean Jaccard index of the sets, the largest change of a patch's rank (by error, among the patches
either precision selects), and the mean |K_bf16 − K_fp32|; plus the relative difference of the error values.
The rule (stated here and in the record): bf16 may serve a CPU run as a named deviation only if the capped selection
is identical on at least 99% of frames.

Throughput (item 2): incremental error maps (spirl.saliency.incremental, as a training env computes them) over
--speed-frames consecutive frames, fp32 and bf16, on 1 and 2 torch threads. Timings depend on what else runs on the
cores: the record keeps the load average before and after.
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
from spirl.params import load_params
from spirl.saliency.error_maps import error_map, error_map_settings
from spirl.saliency.incremental import IncrementalErrorMaps
from spirl.saliency.pretrain import load_model
from spirl.saliency.selection import dynamic_k_batched, k_max_from_ratio

IDENTICAL_SHARE_RULE = 0.99  # capped selections identical on >= 99% of frames: bf16 may serve as a named deviation


def selection_sets(errors: torch.Tensor, k_max: int, xscale: float) -> list[frozenset[int]]:
    """Each frame's dynamic-K selected patch set."""
    indices, counts = dynamic_k_batched(errors, k_max, xscale)
    return [frozenset(row[:count].tolist()) for row, count in zip(indices, counts.tolist(), strict=True)]


def ranks(errors: torch.Tensor) -> torch.Tensor:
    """[B, N] rank of each patch by error (0 = smallest; ties by index, as the selection's stable sort)."""
    order = torch.sort(errors.double(), dim=1, stable=True).indices
    out = torch.empty_like(order)
    out.scatter_(1, order, torch.arange(errors.shape[1]).expand_as(order).contiguous())
    return out


def agreement(fp32: torch.Tensor, bf16: torch.Tensor, k_max: int, xscale: float) -> dict:
    """Selection agreement of two precisions' error maps [B, N] under dynamic-K capped at k_max."""
    a, b = selection_sets(fp32, k_max, xscale), selection_sets(bf16, k_max, xscale)
    rank_a, rank_b = ranks(fp32), ranks(bf16)
    jaccard, worst = [], 0
    for f, (sa, sb) in enumerate(zip(a, b, strict=True)):
        jaccard.append(len(sa & sb) / len(sa | sb))
        union = sorted(sa | sb)
        worst = max(worst, int((rank_a[f, union] - rank_b[f, union]).abs().max()))
    return {"k_max": k_max, "identical_share": float(np.mean([sa == sb for sa, sb in zip(a, b, strict=True)])),
            "mean_jaccard": float(np.mean(jaccard)), "min_jaccard": float(np.min(jaccard)),
            "largest_rank_change": worst, "mean_k_fp32": float(np.mean([len(s) for s in a])),
            "mean_abs_k_difference": float(np.mean([abs(len(sa) - len(sb)) for sa, sb in zip(a, b, strict=True)]))}


def full_maps(model, frames: np.ndarray, settings, batch: int) -> tuple[torch.Tensor, float]:
    """Error maps of all frames, `batch` per call, and the wall seconds per frame."""
    start, parts = time.perf_counter(), []
    for i in range(0, len(frames), batch):
        parts.append(error_map(model, frames[i:i + batch], settings).float().cpu())
    return torch.cat(parts), (time.perf_counter() - start) / len(frames)


def incremental_speed(model, frames: np.ndarray, starts: np.ndarray, settings, threads: int) -> float:
    """Seconds per frame of incremental error maps over consecutive frames on `threads` torch threads."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        maps = IncrementalErrorMaps(model, settings)
        maps(frames[:1], ["env"], [True])  # warm-up
        start = time.perf_counter()
        for i in range(1, len(frames)):
            maps(frames[i:i + 1], ["env"], [bool(starts[i])])
        return (time.perf_counter() - start) / (len(frames) - 1)
    finally:
        torch.set_num_threads(before)


def speeds(model, frames: np.ndarray, starts: np.ndarray, fp32, bf16) -> dict[str, float]:
    """Seconds per frame of incremental error maps, fp32 and bf16, on 1 and 2 threads (interleaved by precision)."""
    return {f"{name}_{threads}_threads_s_per_frame": incremental_speed(model, frames, starts, settings, threads)
            for name, settings in (("fp32", fp32), ("bf16", bf16)) for threads in (1, 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", nargs="+", type=Path, required=True)
    parser.add_argument("--game", required=True)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--frames", type=Path, required=True)
    parser.add_argument("--n-frames", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=16, help="frames per error-map call (agreement part)")
    parser.add_argument("--speed-frames", type=int, default=100, help="consecutive frames per throughput timing")
    parser.add_argument("--speed-only", action="store_true",
                        help="only the incremental throughput (item 2), e.g. again on an idle machine")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    params = load_params(args.params)
    torch.set_num_threads(params.runtime.torch_threads)
    model = load_model(args.model)
    with np.load(args.frames) as data:
        frames, episodes = data["frames"][: args.n_frames], data["episodes"][: args.n_frames]
    starts = np.r_[True, episodes[1:] != episodes[:-1]]
    fp32 = dataclasses.replace(error_map_settings(params, model), dtype=None)
    bf16 = dataclasses.replace(fp32, dtype=torch.bfloat16)
    load = [os.getloadavg()[0]]
    if args.speed_only:
        speed = speeds(model, frames[: args.speed_frames], starts[: args.speed_frames], fp32, bf16)
        load.append(os.getloadavg()[0])
        emit_bench({"bench": "bf16_speed", "game": args.game,
                    "settings": {"params": [str(p) for p in args.params], "model": str(args.model),
                                 "frames": str(args.frames), "speed_frames": min(args.speed_frames, len(frames)),
                                 "load_average_1min_before_after": load},
                    "results": {"incremental": speed, "two_thread_speedup": {
                        name: speed[f"{name}_1_threads_s_per_frame"] / speed[f"{name}_2_threads_s_per_frame"]
                        for name in ("fp32", "bf16")}}, "device": {"torch_device": "cpu"}}, args.out)
        return 0
    maps_fp32, s_fp32 = full_maps(model, frames, fp32, args.batch)
    maps_bf16, s_bf16 = full_maps(model, frames, bf16, args.batch)
    n = model.config.num_patches
    k_max = k_max_from_ratio(n, params.saliency.paper_mr[args.game])
    xscale = params.saliency.xscale
    relative = ((maps_bf16 - maps_fp32).abs() / maps_fp32.abs().clamp_min(1e-12)).flatten()
    capped = agreement(maps_fp32, maps_bf16, k_max, xscale)
    result = {"capped": capped, "uncapped": agreement(maps_fp32, maps_bf16, n, xscale),
              "error_relative_difference": {"median": float(relative.median()),
                                            "p99": float(torch.quantile(relative[:1_000_000], 0.99)),
                                            "max": float(relative.max())},
              "full_maps_s_per_frame": {"fp32": s_fp32, "bf16": s_bf16, "speedup": s_fp32 / s_bf16}}
    speed_frames = frames[: args.speed_frames]
    speed = speeds(model, speed_frames, starts[: args.speed_frames], fp32, bf16)
    load.append(os.getloadavg()[0])
    result["incremental"] = speed
    result["rule"] = (f"bf16 may serve a CPU run as a named deviation only if the capped selection is identical on "
                      f">= {IDENTICAL_SHARE_RULE:.0%} of frames")
    result["bf16_allowed"] = capped["identical_share"] >= IDENTICAL_SHARE_RULE
    emit_bench({"bench": "bf16_agreement", "game": args.game,
                "settings": {"params": [str(p) for p in args.params], "model": str(args.model),
                             "frames": str(args.frames), "n_frames": len(frames), "batch": args.batch,
                             "speed_frames": len(speed_frames), "xscale": xscale,
                             "error_space": fp32.space, "load_average_1min_before_after": load},
                "results": result, "device": {"torch_device": "cpu"}}, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
