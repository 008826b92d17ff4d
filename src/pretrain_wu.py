"""Train Wu et al.'s self-supervised attention mask of one game on its random-policy frames (SPEC §13); resumes
from work/.

PYTHONHASHSEED=0 python src/pretrain_wu.py --params params.yaml conf/full.yaml --game Frostbite \
    --in-frames data/full/frames/Frostbite/frames.npz --out-model data/full/wu/Frostbite/model.npz \
    --out-loss-csv ... --out-loss-png ... --out-masks ... --out-run ... --work work/full/wu/Frostbite

Pairs (x_s, x_t) of one episode, t − s uniform in 1..wu.max_gap; ceil(wu.pair_samples / wu.batch_size) Adam updates
(the released code's budget), fewer if the loss and the mask reach the plateau of wu.plateau (recorded in run.json).
Offline training on random-policy frames is a deviation from the released code, which trains the mask online beside
A2C. Always fp32 (the model is small; no autocast).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from spirl.common.checkpoints import load_checkpoint, save_checkpoint
from spirl.common.cli import base_parser, setup_logging
from spirl.common.io import write_json
from spirl.common.nn import parameter_count
from spirl.common.runinfo import run_record
from spirl.common.runtime import setup_torch
from spirl.params import load_params, to_plain
from spirl.saliency.wu.data import gray_frames
from spirl.saliency.wu.figures import figure_indices, write_loss_history, write_mask_figure
from spirl.saliency.wu.training import (
    fingerprint,
    new_run,
    save_model,
    settings_from_params,
    total_updates,
    train_until,
    updates_per_epoch,
    wu_seeds,
)

DEVIATION = ("trained offline on the game's random-policy frames (pairs from one episode); the released code trains "
             "the mask online beside A2C")


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--game", required=True)
    parser.add_argument("--in-frames", type=Path, required=True)
    for name in ("model", "loss-csv", "loss-png", "masks", "run"):
        parser.add_argument(f"--out-{name}", type=Path, required=True)
    parser.add_argument("--work", type=Path, required=True, help="scratch folder for the resume checkpoint")
    args = parser.parse_args()
    log = setup_logging("pretrain_wu", args.log)
    params = load_params(args.params)
    wu, device = params.wu, setup_torch(params.runtime)
    settings, seeds = settings_from_params(wu), wu_seeds(wu, args.game)
    with np.load(args.in_frames) as data:
        frames, episodes = data["frames"], torch.from_numpy(data["episodes"].astype(np.int64))  # [N, H, W, 3], [N]
    if len(episodes) != len(frames):
        raise ValueError(f"{args.in_frames}: {len(frames)} frames but {len(episodes)} episode ids")
    start = time.perf_counter()
    gray = gray_frames(frames).to(device)  # [N, 84, 84] uint8
    per_epoch = updates_per_epoch(len(frames), wu.batch_size)
    total = total_updates(wu.pair_samples, wu.batch_size)
    run = new_run(settings, seeds, device)
    ckpt, run_id = args.work / "checkpoint.pt", fingerprint(wu, seeds, args.in_frames)
    status = load_checkpoint(run, ckpt, run_id)
    resumed_from = run.updates if status == "resumed" else None
    log.info("%s: %d frames (%d episodes) on %s; %d updates of %d pairs (%d per epoch); checkpoint %s%s",
             args.game, len(frames), len(torch.unique_consecutive(episodes)), device, total, wu.batch_size,
             per_epoch, status, f", resuming after update {resumed_from}" if resumed_from is not None
             else ", training from scratch")
    before = run.elapsed_s  # None: not recorded
    with tqdm(total=total, initial=run.updates, desc=f"wu {args.game}", unit="it", mininterval=5.0) as bar:
        while run.updates < total and run.plateau_at is None:
            stop = min(total, _next_multiple(run.updates, wu.checkpoint_every_updates),
                       _next_multiple(run.updates, per_epoch))
            rows = len(run.history)
            try:
                train_until(run, gray, episodes, settings, stop, per_epoch, total, on_step=bar.update)
            except FloatingPointError as err:
                log.error("%s: %s", args.game, err)
                raise
            run.elapsed_s = None if before is None else before + time.perf_counter() - start
            save_checkpoint(run, ckpt, run_id)
            for row in run.history[rows:]:
                log.info("epoch %d: update %d/%d loss %.5f (transport %.5f, auto %.5f, mean mask %.4f)",
                         row["epoch"], row["updates"], total, row["loss"], row["transport"], row["auto"],
                         row["sparsity"])
    wall_s = time.perf_counter() - start
    save_model(run.model, args.out_model)
    write_loss_history(run.history, args.out_loss_csv, args.out_loss_png,
                       title=f"Wu attention mask training, {args.game}")
    write_mask_figure(run.model, frames, figure_indices(len(frames)), args.out_masks,
                      title=f"Wu attention mask Ψ on random-policy frames, {args.game}")
    last = run.history[-1]
    write_json(args.out_run, run_record(
        stage="pretrain_wu", params={"wu": to_plain(wu), "runtime": to_plain(params.runtime)},
        wildcards={"game": args.game, "profile": params.experiment.profile}, seeds=seeds, wall_time_s=wall_s,
        extra={"n_frames": len(frames), "n_episodes": len(torch.unique_consecutive(episodes)),
               "updates": run.updates, "updates_per_epoch": per_epoch, "pair_samples": run.updates * wu.batch_size,
               "parameter_count": parameter_count(run.model), "final_loss": last["loss"],
               "final_terms": {k: last[k] for k in ("transport", "auto", "sparsity")},
               "planned_updates": total, "stopped_on_plateau_at_update": run.plateau_at,
               "plateau": {"window_epochs": wu.plateau.window_epochs, "tolerance": wu.plateau.tolerance},
               "resumed_after_update": resumed_from, "device_used": str(device), "deviation": DEVIATION,
               # every process's time (a resumed run: the earlier ones' too), None if a checkpoint lacked it
               "wall_time_total_s": None if before is None else before + wall_s},
    ))


def _next_multiple(value: int, step: int) -> int:
    """The smallest multiple of `step` above `value`."""
    return (value // step + 1) * step


if __name__ == "__main__":
    main()
