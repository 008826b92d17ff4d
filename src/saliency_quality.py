"""Score every saliency criterion's selection against one game's object boxes (SPEC §13-§14); one job per game.

On the object frames of src/collect_objects.py (random-policy frames with OCAtari's RAM boxes), each scorer of
criteria.scorers gives one score per patch, by its frame form (spirl.saliency.scorers), `saliency.batch_frames`
frames per call, with the models it declares (spirl.saliency.registry; spirl.saliency.scorers.loading):
  mae_surround   the trained MAE's error map E (SPEC §4), --in-model;
  mae_untrained  the same error map from the game's MAE as pre-training initialises it, never trained;
  frame_diff     mean |x_t - x_{t-1}| per patch with the stored previous frame (all-equal at an episode start);
  random         i.i.d. U[0, 1) from a torch.Generator seeded derive_seed(criteria.seed, registry.SEED_KEY, game);
  wu_mask        Wu et al.'s mask Ψ pooled onto the patches, --in-wu.
The selection is dynamic K (SPEC §5, saliency.xscale) capped at the game's adopted K_max = floor(N * mr), mr =
resolve_mr(saliency, game, mr* of --in-mr) (spirl.saliency.budget.run_budget): the same cap for every scorer, so
only the ranking differs. Then
spirl.envs.recall.recall_report: recall of the dynamic objects (criteria.dynamic_categories[game]; overall and per
category), precision, mean K, lift over K random patches with the same K, percentile-bootstrap CIs over frames
(report.bootstrap_reps, report.ci_level; every scorer resamples the same frames: one Generator seeded
derive_seed(report.seed, "saliency-quality", game) per scorer). The same recall, lift and mean K again on each
motion group's frames (spirl.envs.recall.motion_groups: a dynamic object's patch changed since the previous frame;
only other patches changed; not one pixel changed; an episode's first frame), with each group's frame count.
Timing per scorer: scoring plus selection.
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
from spirl.envs.object_files import unpack_objects
from spirl.envs.objects import ObjectBox
from spirl.envs.recall import MOTION_GROUPS, motion_groups, recall_report, selection_masks
from spirl.params import load_params, to_plain
from spirl.saliency import registry
from spirl.saliency.budget import estimated_mr_star, run_budget
from spirl.saliency.pretrain import load_model
from spirl.saliency.quality import plot_quality_frames
from spirl.saliency.scorers import Scorer, build_scorer
from spirl.saliency.scorers.loading import scorer_models
from spirl.saliency.selection import select_batched

FIGURE_ROWS = 4  # frames in the figure


def quality_seeds(criteria_seed: int, report_seed: int, game: str) -> dict[str, int]:
    """The job's seeds: the random scorer's stream and the bootstrap's resampling."""
    return {"random_scores": registry.archive_seed(criteria_seed, game),
            "bootstrap": derive_seed(report_seed, "saliency-quality", game)}


def scorer_scores(scorer: Scorer, frames: np.ndarray, previous: np.ndarray, has_previous: np.ndarray, batch: int,
                  generator: torch.Generator) -> torch.Tensor:
    """Scores of all frames under one scorer, `batch` frames per call of its frame form (Scorer.frames).

    Args:
        frames, previous: uint8 [F, S, S, 3]; has_previous: bool [F] (read by a scorer comparing frames);
        generator: a seeded scorer's stream, drawn batch after batch.
    Returns: float32 [F, N] on the CPU.
    """
    parts = []
    for start in range(0, len(frames), batch):
        part = slice(start, start + batch)
        scores = scorer.frames(frames[part], previous[part], torch.from_numpy(has_previous[part]), generator)
        parts.append(scores.float().cpu())
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
    parser.add_argument("--in-model", type=Path, required=True, help="the game's trained MAE")
    parser.add_argument("--in-mr", type=Path, required=True, help="the game's mr.json (estimated mr*)")
    parser.add_argument("--in-wu", type=Path, default=None, help="the game's Wu mask model (a scorer reading it)")
    parser.add_argument("--out-json", type=Path, required=True)
    parser.add_argument("--out-figure", type=Path, required=True)
    args = parser.parse_args()
    log = setup_logging("saliency_quality", args.log)
    params = load_params(args.params)
    crit, sal, rep, game = params.criteria, params.saliency, params.report, args.game
    scorers = list(crit.scorers)
    specs = [registry.spec(name, "criteria.scorers") for name in scorers]
    if args.in_wu is None and any(s.needs_wu for s in specs):
        parser.error(f"criteria.scorers includes {[s.name for s in specs if s.needs_wu]}: --in-wu is required")
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
    mr_record = read_json(args.in_mr)
    mr_star = estimated_mr_star(mr_record)
    mr, k_max = run_budget(sal, game, n, mr_record, selection="dynamic")
    seeds = quality_seeds(crit.seed, rep.seed, game)
    built = {s.name: build_scorer(s, scorer_models(s, params, game, mae, args.in_wu)) for s in specs}
    log.info("%s: %d frames (%d with a previous frame), %d patches, mr %.4g (mr* %.4g) -> K_max %d; scorers %s",
             game, len(frames), int(has_previous.sum()), n, mr, mr_star, k_max, scorers)

    groups = motion_groups(frames, previous, has_previous, objects, patch_px=patch_px)  # [F] into MOTION_GROUPS
    motion = {name: int((groups == g).sum()) for g, name in enumerate(MOTION_GROUPS)}
    log.info("%s: frames by motion since the previous frame: %s", game, motion)
    start = time.perf_counter()
    results, masks = {}, {}
    for scorer in scorers:
        t0 = time.perf_counter()
        generator = torch.Generator().manual_seed(seeds["random_scores"])  # drawn from only by a seeded scorer
        scores = scorer_scores(built[scorer], frames, previous, has_previous, sal.batch_frames, generator)
        indices, _ = select_batched(scores, "dynamic", k_max, sal.xscale)  # [F, K_max] -1 padded
        seconds = time.perf_counter() - t0
        masks[scorer] = selection_masks(indices.numpy(), n)
        report = recall_report(masks[scorer], objects, frame_px=frame_px, patch_px=patch_px,
                               rng=np.random.default_rng(seeds["bootstrap"]), n_boot=rep.bootstrap_reps,
                               ci_level=rep.ci_level)
        by_motion = {}
        for g, name in enumerate(MOTION_GROUPS):  # the same statistics on each motion group's frames alone
            picked = np.flatnonzero(groups == g)
            part = recall_report(masks[scorer][picked], [objects[r] for r in picked], frame_px=frame_px,
                                 patch_px=patch_px, rng=np.random.default_rng(seeds["bootstrap"]),
                                 n_boot=rep.bootstrap_reps, ci_level=rep.ci_level) if len(picked) else None
            by_motion[name] = {"n_frames": len(picked), **({k: part[k] for k in ("n_dynamic_objects", "recall",
                                                                                 "lift", "mean_k")} if part else {})}
        results[scorer] = {**report, "by_motion": by_motion, "seconds": seconds,
                           "frames_per_s": len(frames) / seconds if seconds else None}
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
              "scorer_order": scorers, "figure_frames": rows.tolist(), "motion_frames": motion,
              "motion_groups": list(MOTION_GROUPS), "scorers": results}
    write_json(args.out_json, run_record(
        stage="saliency_quality",
        params={"criteria": to_plain(crit), "saliency": to_plain(sal), "report": to_plain(rep),
                "runtime": to_plain(params.runtime)},
        wildcards={"game": game, "profile": params.experiment.profile}, seeds=seeds, wall_time_s=wall_s,
        extra={"result": result, "device_used": str(device),
               "scorer_models": scorer_sources(args.in_model, args.in_wu)},
    ))


def scorer_sources(mae_path: Path, wu_path: Path | None) -> dict[str, str | None]:
    """Where each scorer with a model got it (the record's scorer_models), for every scorer of the registry."""
    sources = {"trained_mae": str(mae_path), "untrained_mae": "spirl.saliency.pretrain.untrained_mae (mae.seed, game)",
               "wu": str(wu_path) if wu_path else None}
    return {s.name: sources[s.scores_with] for s in registry.SPECS.values() if s.scores_with is not None}


def _short(entry: dict) -> str:
    """"value [low, high]" of a recall_report entry, 3 significant digits."""
    fmt = lambda v: "nan" if v is None else f"{v:.3g}"  # noqa: E731
    return f"{fmt(entry['value'])} [{fmt(entry['ci'][0])}, {fmt(entry['ci'][1])}]"


if __name__ == "__main__":
    main()
