"""Estimate the maximal ratio mr* of one game from its pre-training frames (SPEC §6, paper B.5).

Dynamic K without a cap on every pre-training frame; the 5%-bin histogram of K/N; mr* = the smallest
ratio in {5%, ..., 95%} that keeps every salient patch for more than 99.9% of frames.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from spirl.cli import base_parser, setup_logging
from spirl.config import load_params, to_plain
from spirl.io import write_json, write_npz
from spirl.pretrain import load_model
from spirl.runinfo import run_record
from spirl.runtime import autocast_dtype, setup_torch
from spirl.saliency import error_map
from spirl.selection import dynamic_k_batched, k_max_from_ratio, k_ratio_histogram, mr_star


def uncapped_ks(model, frames: np.ndarray, xscale: float, batch: int, dtype, on_batch=None) -> np.ndarray:
    """K of dynamic-K without a cap (K_max = N) for every frame [N_frames] (int64)."""
    n = model.config.num_patches
    ks = []
    for start in range(0, len(frames), batch):
        errors = error_map(model, frames[start:start + batch], dtype=dtype)  # [b, N]
        ks.append(dynamic_k_batched(errors, n, xscale)[1].cpu())
        if on_batch is not None:
            on_batch(len(errors))
    return torch.cat(ks).numpy().astype(np.int64)


def summarize_ks(ks: np.ndarray, n: int, game: str, params) -> dict:
    """mr*, its coverage, the histogram, and the published ratios for comparison."""
    sal = params.saliency
    edges, counts = k_ratio_histogram(ks, n, sal.mr_grid_step)
    star, coverage = mr_star(ks, n, sal.mr_grid_step, sal.mr_coverage)
    paper = sal.paper_mr[game]
    return {
        "game": game, "n_frames": int(len(ks)), "num_patches": n,
        "mr_star": star, "coverage_at_mr_star": coverage,
        "mr_paper_adopted": paper, "k_max_paper_adopted": k_max_from_ratio(n, paper),
        "coverage_at_paper_adopted": float(np.mean(ks <= k_max_from_ratio(n, paper))),
        "mr_star_paper": sal.paper_mr_star[game],
        "bin_edges": [float(e) for e in edges], "counts": [int(c) for c in counts],
        "k_mean": float(ks.mean()), "k_median": float(np.median(ks)), "k_max_seen": int(ks.max()),
        "k_min_seen": int(ks.min()),
    }


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--game", required=True)
    parser.add_argument("--in-model", type=Path, required=True)
    parser.add_argument("--in-frames", type=Path, required=True)
    parser.add_argument("--out-mr", type=Path, required=True)
    parser.add_argument("--out-ks", type=Path, required=True)
    args = parser.parse_args()
    log = setup_logging("estimate_mr", args.log)
    params = load_params(args.params)
    device = setup_torch(params.runtime)
    model = load_model(args.in_model, device)
    with np.load(args.in_frames) as data:
        frames = data["frames"]
    start = time.perf_counter()
    with tqdm(total=len(frames), desc=f"mr {args.game}", unit="frame", mininterval=5.0) as bar:
        ks = uncapped_ks(model, frames, params.saliency.xscale, params.saliency.batch_frames,
                         autocast_dtype(params.runtime, device), on_batch=bar.update)
    seconds = time.perf_counter() - start
    summary = summarize_ks(ks, model.config.num_patches, args.game, params)
    log.info("%s: mr* = %.2f (covers %.4f of %d frames); paper adopted %.2f", args.game, summary["mr_star"],
             summary["coverage_at_mr_star"], len(ks), summary["mr_paper_adopted"])
    write_npz(args.out_ks, {"ks": ks})
    write_json(args.out_mr, run_record(
        stage="estimate_mr", params={"saliency": to_plain(params.saliency), "runtime": to_plain(params.runtime)},
        wildcards={"game": args.game, "profile": params.experiment.profile}, seeds={}, wall_time_s=seconds,
        extra={"result": summary, "frames_per_s": len(frames) / seconds, "device_used": str(device)},
    ))


if __name__ == "__main__":
    main()
