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
from tqdm import tqdm

from spirl.cli import base_parser, setup_logging
from spirl.config import load_params, to_plain
from spirl.io import write_json, write_npz
from spirl.mr import candidates, episode_starts, normalized_maps, summarize_ks, uncapped_ks
from spirl.pretrain import load_model
from spirl.runinfo import run_record
from spirl.runtime import setup_torch
from spirl.saliency import error_map_settings, in_space


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
        frames, episodes = data["frames"], data["episodes"]
    start = time.perf_counter()
    sal, eps = params.saliency, model.config.norm_pix_eps
    starts = episode_starts(episodes) if sal.incremental else None  # frames are stored in playing order
    with tqdm(total=len(frames), desc=f"mr {args.game}", unit="frame", mininterval=5.0) as bar:
        errors, variances, share = normalized_maps(model, frames, sal.batch_frames, error_map_settings(params, model),
                                                   starts, on_batch=bar.update)
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
        extra={"result": summary, "frames_per_s": len(frames) / seconds, "device_used": str(device),
               "recomputed_target_share": share},
    ))


if __name__ == "__main__":
    main()
