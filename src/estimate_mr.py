"""Estimate the maximal ratio mr* of one game from its pre-training frames (SPEC §6, paper B.5), per scorer.

Dynamic K without a cap on every pre-training frame; the 5%-bin histogram of K/N; mr* = the smallest
ratio in {5%, ..., 95%} that keeps every salient patch for more than 99.9% of frames. With the MAE's scorers
(--scorer mae_surround, the paper's and the default, or mae_untrained) the same error maps also give mr* with the
error in raw pixels and with xscale 2 (SPEC §12 #4, #5), reported as candidates, and are kept in ks.npz
(normalised errors and patch variances); the other scorers of SPEC §13 (frame_diff, random, wu_mask: --in-wu)
keep their scores in ks.npz. Each scorer gets its own histogram and mr* (SPEC §13).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from spirl.common.cli import base_parser, setup_logging
from spirl.common.io import write_json, write_npz
from spirl.common.runinfo import run_record
from spirl.common.runtime import setup_torch
from spirl.common.seeding import derive_seed
from spirl.params import ConfigError, load_params, to_plain
from spirl.saliency.error_maps import error_map_settings, in_space
from spirl.saliency.mr import candidates, episode_starts, normalized_maps, summarize_ks, uncapped_ks
from spirl.saliency.pretrain import load_model, untrained_mae
from spirl.saliency.scorers import MAE_SCORERS, check_scorer, sequence_scores


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--game", required=True)
    parser.add_argument("--in-model", type=Path, required=True)
    parser.add_argument("--in-frames", type=Path, required=True)
    parser.add_argument("--scorer", default="mae_surround", help="saliency.scorer whose K histogram to build")
    parser.add_argument("--in-wu", type=Path, default=None, help="the game's Wu mask (--scorer wu_mask)")
    parser.add_argument("--out-mr", type=Path, required=True)
    parser.add_argument("--out-ks", type=Path, required=True)
    args = parser.parse_args()
    log = setup_logging("estimate_mr", args.log)
    params = load_params(args.params)
    device = setup_torch(params.runtime)
    scorer = check_scorer(args.scorer)
    model = load_model(args.in_model, device)
    with np.load(args.in_frames) as data:
        frames, episodes = data["frames"], data["episodes"]
    start = time.perf_counter()
    sal, eps, n = params.saliency, model.config.norm_pix_eps, model.config.num_patches
    extra: dict = {}
    with tqdm(total=len(frames), desc=f"mr {args.game} {scorer}", unit="frame", mininterval=5.0) as bar:
        if scorer in MAE_SCORERS:
            if scorer == "mae_untrained":
                model = untrained_mae(params.mae, args.game, model.config.img_size, device)
            starts = episode_starts(episodes) if sal.incremental else None  # frames are stored in playing order
            errors, variances, share = normalized_maps(model, frames, sal.batch_frames,
                                                       error_map_settings(params, model), starts, on_batch=bar.update)
            scores = in_space(errors, variances, sal.error_space, eps)
            arrays = {"errors_normalized": errors, "patch_variance": variances}
            extra["recomputed_target_share"] = share
        else:
            wu = None
            if scorer == "wu_mask":
                if args.in_wu is None:
                    raise ConfigError("--scorer wu_mask needs --in-wu (the game's Wu mask model.npz)")
                from spirl.saliency.wu import load_model as load_wu

                wu = load_wu(args.in_wu, device)
            generator = torch.Generator().manual_seed(derive_seed(params.criteria.seed, "random-scores", args.game))
            scores = sequence_scores(scorer, frames, episode_starts(episodes), model.config.patch_size,
                                     sal.batch_frames, generator=generator, wu_model=wu, on_batch=bar.update)
            arrays = {"scores": scores}
    seconds = time.perf_counter() - start
    ks = uncapped_ks(scores, sal.xscale)
    summary = summarize_ks(ks, n, args.game, params)
    summary["scorer"] = scorer
    if scorer in MAE_SCORERS:
        summary["candidates"] = candidates(errors, variances, params, args.game, eps)
    log.info("%s (%s): mr* = %.2f (covers %.4f of %d frames); paper adopted %.2f", args.game, scorer,
             summary["mr_star"], summary["coverage_at_mr_star"], len(ks), summary["mr_paper_adopted"])
    write_npz(args.out_ks, {"ks": ks, **arrays})
    write_json(args.out_mr, run_record(
        stage="estimate_mr", params={"saliency": to_plain(params.saliency), "runtime": to_plain(params.runtime)},
        wildcards={"game": args.game, "profile": params.experiment.profile, "scorer": scorer}, seeds={},
        wall_time_s=seconds,
        extra={"result": summary, "frames_per_s": len(frames) / seconds, "device_used": str(device), **extra},
    ))

if __name__ == "__main__":
    main()
