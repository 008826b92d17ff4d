"""Estimate the maximal ratio mr* of one game from its pre-training frames (SPEC §6, paper B.5), per scorer.

Dynamic K without a cap on every pre-training frame; the 5%-bin histogram of K/N; mr* = the smallest
ratio in {5%, ..., 95%} that keeps every salient patch for more than 99.9% of frames. The frames are scored in
playing order by the sequence form of --scorer (spirl.saliency.scorers; default the paper's, registry.PAPER). With
an MAE's error map (mae_surround, mae_untrained) the same maps also give mr* with the error in raw pixels and with
xscale 2 (SPEC §12 #4, #5), reported as candidates, and are kept in ks.npz (normalised errors and patch variances);
the other scorers of SPEC §13 (frame_diff, random from derive_seed(criteria.seed, registry.SEED_KEY, game),
wu_mask: --in-wu) keep their scores in ks.npz. Each scorer gets its own histogram and mr* (SPEC §13).
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
from spirl.params import load_params, to_plain
from spirl.saliency import registry
from spirl.saliency.mr import candidates, episode_starts, summarize_ks, uncapped_ks
from spirl.saliency.scorers import build_scorer
from spirl.saliency.scorers.loading import load_scorer_models


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--game", required=True)
    parser.add_argument("--in-model", type=Path, required=True)
    parser.add_argument("--in-frames", type=Path, required=True)
    parser.add_argument("--scorer", default=registry.PAPER, help="saliency.scorer whose K histogram to build")
    parser.add_argument("--in-wu", type=Path, default=None, help="the game's Wu mask (--scorer wu_mask)")
    parser.add_argument("--out-mr", type=Path, required=True)
    parser.add_argument("--out-ks", type=Path, required=True)
    args = parser.parse_args()
    log = setup_logging("estimate_mr", args.log)
    params = load_params(args.params)
    device = setup_torch(params.runtime)
    declared = registry.spec(args.scorer, "--scorer")
    scorer = build_scorer(declared, load_scorer_models(declared, params, args.game, args.in_model, args.in_wu, device))
    with np.load(args.in_frames) as data:
        frames, episodes = data["frames"], data["episodes"]  # in playing order
    start = time.perf_counter()
    sal, models = params.saliency, scorer.models
    seeds = {"scores": registry.archive_seed(params.criteria.seed, args.game)} if declared.seeded else {}
    generator = torch.Generator().manual_seed(registry.archive_seed(params.criteria.seed, args.game))
    with tqdm(total=len(frames), desc=f"mr {args.game} {scorer.name}", unit="frame", mininterval=5.0) as bar:
        scores, arrays, share = scorer.sequence(frames, episode_starts(episodes), sal.batch_frames, generator,
                                                on_batch=bar.update)
    seconds = time.perf_counter() - start
    ks = uncapped_ks(scores, sal.xscale)
    summary = summarize_ks(ks, models.num_patches, args.game, params)
    summary["scorer"] = scorer.name
    extra = {} if share is None else {"recomputed_target_share": share}
    if declared.uses_mae_error_map:
        summary["candidates"] = candidates(arrays["errors_normalized"], arrays["patch_variance"], params, args.game,
                                           models.mae.config.norm_pix_eps)
    log.info("%s (%s): mr* = %.2f (covers %.4f of %d frames); paper adopted %.2f", args.game, scorer.name,
             summary["mr_star"], summary["coverage_at_mr_star"], len(ks), summary["mr_paper_adopted"])
    write_npz(args.out_ks, {"ks": ks, **arrays})
    write_json(args.out_mr, run_record(
        stage="estimate_mr", params={"saliency": to_plain(params.saliency), "runtime": to_plain(params.runtime)},
        wildcards={"game": args.game, "profile": params.experiment.profile, "scorer": scorer.name}, seeds=seeds,
        wall_time_s=seconds,
        extra={"result": summary, "frames_per_s": len(frames) / seconds, "device_used": str(device), **extra},
    ))

if __name__ == "__main__":
    main()
