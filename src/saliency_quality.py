"""Score every saliency criterion's selection against one game's object boxes (SPEC §13-§14); one job per game.

On the object frames of src/collect_objects.py (random-policy frames with OCAtari's RAM boxes), each scorer of
criteria.scorers gives one score per patch:
  mae_surround   the trained MAE's error map E (SPEC §4), --in-model;
  mae_untrained  the same error map from the game's MAE as pre-training initialises it, never trained;
  frame_diff     mean |x_t - x_{t-1}| per patch with the stored previous frame (all-equal at an episode start);
  random         i.i.d. U[0, 1) from a torch.Generator seeded derive_seed(criteria.seed, "random-scores", game);
  wu_mask        Wu et al.'s mask Ψ pooled onto the patches, --in-wu (spirl.saliency.wu.load_model).
The selection is dynamic K (SPEC §5, saliency.xscale) capped at the game's adopted K_max = floor(N * mr), mr =
resolve_mr(saliency, game, mr* of --in-mr): the same cap for every scorer, so only the ranking differs. Then
spirl.envs.objects.recall_report: recall of the dynamic objects (criteria.dynamic_categories[game]; overall and per
category), precision, mean K, lift over K random patches with the same K, percentile-bootstrap CIs over frames
(report.bootstrap_reps, report.ci_level; every scorer resamples the same frames: one Generator seeded
derive_seed(report.seed, "saliency-quality", game) per scorer). Timing per scorer: scoring plus selection.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from spirl.common.cli import base_parser, setup_logging
from spirl.common.io import read_json, write_json
from spirl.common.runinfo import run_record
from spirl.common.runtime import setup_torch
from spirl.common.seeding import derive_seed
from spirl.envs.objects import ObjectBox, recall_report, selection_masks, unpack_objects
from spirl.params import load_params, resolve_mr, to_plain
from spirl.saliency.error_maps import error_map_settings
from spirl.saliency.pretrain import load_model, untrained_mae
from spirl.saliency.quality import plot_quality_frames
from spirl.saliency.scorers import score_frames
from spirl.saliency.selection import k_max_from_ratio, select_batched

FIGURE_ROWS = 4  # frames in the figure


def quality_seeds(criteria_seed: int, report_seed: int, game: str) -> dict[str, int]:
    """The job's seeds: the random scorer's stream and the bootstrap's resampling."""
    return {"random_scores": derive_seed(criteria_seed, "random-scores", game),
            "bootstrap": derive_seed(report_seed, "saliency-quality", game)}


def scorer_scores(scorer: str, frames: np.ndarray, previous: np.ndarray | None, has_previous: np.ndarray | None,
                  patch_px: int, batch: int, **models) -> torch.Tensor:
    """Scores of all frames under one scorer, `batch` frames per call of spirl.saliency.scorers.score_frames.

    Args:
        frames, previous: uint8 [F, S, S, 3]; has_previous: bool [F] (previous / has_previous only for frame_diff);
        models: score_frames' keyword arguments (mae + error_settings, generator, wu_model).
    Returns: float32 [F, N] on the CPU.
    """
    parts = []
    for start in range(0, len(frames), batch):
        part = slice(start, start + batch)
        extra = {}
        if scorer == "frame_diff":
            extra = {"previous": previous[part], "has_previous": torch.from_numpy(has_previous[part])}
        parts.append(score_frames(scorer, frames[part], patch_px, **extra, **models).float().cpu())
    return torch.cat(parts)


def figure_frames(objects: list[list[ObjectBox]], count: int) -> np.ndarray:
    """`count` frame indices spread evenly over the frames that hold a dynamic object (all frames if none do)."""
    pool = np.array([f for f, objs in enumerate(objects) if any(o.dynamic for o in objs)], dtype=np.int64)
    if len(pool) == 0:
        pool = np.arange(len(objects))
    picks = np.linspace(0, len(pool) - 1, min(count, len(pool))).round().astype(np.int64)
    return pool[np.unique(picks)]


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--game", required=True)
    parser.add_argument("--in-frames", type=Path, required=True)
    parser.add_argument("--in-objects", type=Path, required=True)
    parser.add_argument("--in-model", type=Path, required=True, help="the game's trained MAE (mae_surround)")
    parser.add_argument("--in-mr", type=Path, required=True, help="the game's mr.json (estimated mr*)")
    parser.add_argument("--in-wu", type=Path, default=None, help="the game's Wu mask model (needed for wu_mask)")
    parser.add_argument("--out-json", type=Path, required=True)
    parser.add_argument("--out-figure", type=Path, required=True)
    args = parser.parse_args()
    log = setup_logging("saliency_quality", args.log)
    params = load_params(args.params)
    crit, sal, rep, game = params.criteria, params.saliency, params.report, args.game
    scorers = list(crit.scorers)
    if "wu_mask" in scorers and args.in_wu is None:
        parser.error("criteria.scorers includes wu_mask: --in-wu is required")
    if game not in crit.dynamic_categories:
        parser.error(f"criteria.dynamic_categories has no entry for {game}")
    categories = list(crit.dynamic_categories[game])
    device = setup_torch(params.runtime)

    with np.load(args.in_frames) as data:
        frames = data["frames"]  # [F, S, S, 3] uint8
        previous, has_previous = data["previous"], data["has_previous"]  # [F, S, S, 3] uint8, [F] bool
    with np.load(args.in_objects) as data:
        objects = unpack_objects(data, categories)
    if len(objects) != len(frames):
        raise ValueError(f"{args.in_objects} holds the objects of {len(objects)} frames, {args.in_frames} has "
                         f"{len(frames)} frames")
    mae = load_model(args.in_model, device)
    frame_px, patch_px, n = frames.shape[1], mae.config.patch_size, mae.config.num_patches
    if mae.config.img_size != frame_px:
        raise ValueError(f"the MAE reads {mae.config.img_size}-px frames, the object frames are {frame_px} px")
    mr_star = read_json(args.in_mr)["result"]["mr_star"]
    mr = resolve_mr(sal, game, mr_star)
    k_max = k_max_from_ratio(n, mr)
    seeds = quality_seeds(crit.seed, rep.seed, game)
    settings = error_map_settings(params, mae)
    models: dict[str, dict] = {}  # score_frames' keyword arguments per scorer
    for scorer in scorers:
        if scorer == "mae_surround":
            models[scorer] = {"mae": mae, "error_settings": settings}
        elif scorer == "mae_untrained":
            models[scorer] = {"mae": untrained_mae(params.mae, game, frame_px, device), "error_settings": settings}
        elif scorer == "random":
            models[scorer] = {"generator": torch.Generator().manual_seed(seeds["random_scores"])}
        elif scorer == "wu_mask":
            from spirl.saliency.wu import load_model as load_wu

            models[scorer] = {"wu_model": load_wu(args.in_wu, device)}
        else:
            models[scorer] = {}
    log.info("%s: %d frames (%d with a previous frame), %d patches, mr %.4g (mr* %.4g) -> K_max %d; scorers %s",
             game, len(frames), int(has_previous.sum()), n, mr, mr_star, k_max, scorers)

    start = time.perf_counter()
    results, masks = {}, {}
    for scorer in scorers:
        t0 = time.perf_counter()
        scores = scorer_scores(scorer, frames, previous, has_previous, patch_px, sal.batch_frames, **models[scorer])
        indices, _ = select_batched(scores, "dynamic", k_max, sal.xscale)  # [F, K_max] -1 padded
        seconds = time.perf_counter() - t0
        masks[scorer] = selection_masks(indices.numpy(), n)
        report = recall_report(masks[scorer], objects, frame_px=frame_px, patch_px=patch_px,
                               rng=np.random.default_rng(seeds["bootstrap"]), n_boot=rep.bootstrap_reps,
                               ci_level=rep.ci_level)
        results[scorer] = {**report, "seconds": seconds, "frames_per_s": len(frames) / seconds if seconds else None}
        log.info("%s %-13s recall %s lift %s precision %s mean K %s (%.1f frames/s)", game, scorer,
                 *(_short(report[k]) for k in ("recall", "lift", "precision", "mean_k")),
                 results[scorer]["frames_per_s"] or float("nan"))
    wall_s = time.perf_counter() - start

    rows = figure_frames(objects, FIGURE_ROWS)
    plot_quality_frames(frames[rows], [objects[r] for r in rows], {s: masks[s][rows] for s in scorers},
                        args.out_figure, patch_px=patch_px,
                        title=f"{game}: selections (dynamic K, K_max {k_max}) on OCAtari object boxes")
    result = {"game": game, "n_frames": len(frames), "n_with_previous": int(has_previous.sum()),
              "frame_px": frame_px, "patch_px": patch_px, "num_patches": n, "mr_star": mr_star, "mr": mr,
              "k_max": k_max, "selection": "dynamic", "xscale": sal.xscale, "dynamic_categories": categories,
              "scorer_order": scorers, "figure_frames": rows.tolist(), "scorers": results}
    write_json(args.out_json, run_record(
        stage="saliency_quality",
        params={"criteria": to_plain(crit), "saliency": to_plain(sal), "report": to_plain(rep),
                "runtime": to_plain(params.runtime)},
        wildcards={"game": game, "profile": params.experiment.profile}, seeds=seeds, wall_time_s=wall_s,
        extra={"result": result, "device_used": str(device), "scorer_models": {
            "mae_surround": str(args.in_model), "mae_untrained":
                "spirl.saliency.pretrain.untrained_mae (mae.seed, game)",
            "wu_mask": str(args.in_wu) if args.in_wu else None}},
    ))


def _short(entry: dict) -> str:
    """"value [low, high]" of a recall_report entry, 3 significant digits."""
    fmt = lambda v: "nan" if v is None else f"{v:.3g}"  # noqa: E731
    return f"{fmt(entry['value'])} [{fmt(entry['ci'][0])}, {fmt(entry['ci'][1])}]"


if __name__ == "__main__":
    main()
