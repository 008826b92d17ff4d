"""Estimate the maximal ratio mr* of one game from its pre-training frames (SPEC §6, paper B.5).

Dynamic K without a cap on every pre-training frame; the 5%-bin histogram of K/N; mr* = the smallest
ratio in {5%, ..., 95%} that keeps every salient patch for more than 99.9% of frames. The same error maps
also give mr* with the error in raw pixels and with xscale 2 (SPEC §12 #4, #5), reported as candidates, and are
kept in ks.npz (normalised errors and patch variances) for further analysis.
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
from spirl.runtime import setup_torch
from spirl.saliency import error_map_settings, in_space, normalized_maps
from spirl.selection import dynamic_k_batched, k_max_from_ratio, k_ratio_histogram, mr_star


def uncapped_ks(errors: np.ndarray, xscale: float) -> np.ndarray:
    """K of dynamic K without a cap (K_max = N) for every frame's error map [F, N] -> [F] int64."""
    if not len(errors):
        return np.zeros(0, np.int64)
    return dynamic_k_batched(torch.from_numpy(errors), errors.shape[1], xscale)[1].numpy().astype(np.int64)


def candidates(errors: np.ndarray, variances: np.ndarray, params, game: str, eps: float) -> list[dict]:
    """mr* and K statistics under each cheap variation of the rule (the error's space x the slope's xscale):
    what each of SPEC §12 #4 and #5 contributes to K, from the same error maps."""
    out = []
    for space in ("normalized", "raw"):
        for xscale in (1.0, 2.0):
            ks = uncapped_ks(in_space(errors, variances, space, eps), xscale)
            summary = summarize_ks(ks, errors.shape[1], game, params)
            out.append({"error_space": space, "xscale": xscale,
                        **{k: summary[k] for k in ("mr_star", "coverage_at_mr_star", "k_mean", "k_median",
                                                    "k_min_seen", "k_max_seen", "coverage_at_paper_adopted")}})
    return out


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
    sal, eps = params.saliency, model.config.norm_pix_eps
    with tqdm(total=len(frames), desc=f"mr {args.game}", unit="frame", mininterval=5.0) as bar:
        errors, variances = normalized_maps(model, frames, sal.batch_frames, error_map_settings(params, model),
                                            on_batch=bar.update)
    seconds = time.perf_counter() - start
    ks = uncapped_ks(in_space(errors, variances, sal.error_space, eps), sal.xscale)
    summary = summarize_ks(ks, model.config.num_patches, args.game, params)
    summary["candidates"] = candidates(errors, variances, params, args.game, eps)
    log.info("%s: mr* = %.2f (covers %.4f of %d frames); paper adopted %.2f", args.game, summary["mr_star"],
             summary["coverage_at_mr_star"], len(ks), summary["mr_paper_adopted"])
    write_npz(args.out_ks, {"ks": ks, "errors_normalized": errors, "patch_variance": variances})
    write_json(args.out_mr, run_record(
        stage="estimate_mr", params={"saliency": to_plain(params.saliency), "runtime": to_plain(params.runtime)},
        wildcards={"game": args.game, "profile": params.experiment.profile}, seeds={}, wall_time_s=seconds,
        extra={"result": summary, "frames_per_s": len(frames) / seconds, "device_used": str(device)},
    ))


if __name__ == "__main__":
    main()
