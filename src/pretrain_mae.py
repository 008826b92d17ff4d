"""Pre-train the MAE of one game on its random-policy frames (SPEC §3.2); resumes from work/.

PYTHONHASHSEED=0 python src/pretrain_mae.py --params params.yaml conf/full.yaml --game Frostbite \
    --in-frames data/full/frames/Frostbite/frames.npz --out-model data/full/mae/Frostbite/model.npz \
    --out-loss-csv ... --out-loss-png ... --out-run ... --work work/full/mae/Frostbite
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from spirl.common.cli import base_parser, setup_logging
from spirl.common.io import write_json
from spirl.common.plots import write_loss_curve
from spirl.common.runinfo import run_record
from spirl.common.runtime import autocast_dtype, setup_torch
from spirl.params import load_params, to_plain
from spirl.saliency.pretrain import (
    fingerprint,
    load_checkpoint,
    new_run,
    pretrain_seeds,
    save_checkpoint,
    save_model,
    steps_per_epoch,
    train_epoch,
)


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--game", required=True)
    parser.add_argument("--in-frames", type=Path, required=True)
    for name in ("model", "loss-csv", "loss-png", "run"):
        parser.add_argument(f"--out-{name}", type=Path, required=True)
    parser.add_argument("--work", type=Path, required=True, help="scratch folder for the resume checkpoint")
    args = parser.parse_args()
    log = setup_logging("pretrain_mae", args.log)
    params = load_params(args.params)
    mae, device = params.mae, setup_torch(params.runtime)
    seeds = pretrain_seeds(mae, args.game)
    with np.load(args.in_frames) as data:
        frames = data["frames"]  # [N, H, W, 3] uint8
    start = time.perf_counter()
    run = new_run(mae, frames.shape[1], seeds, device)
    ckpt, run_id = args.work / "checkpoint.pt", fingerprint(mae, seeds, args.in_frames)
    status = load_checkpoint(run, ckpt, run_id)
    resumed_from = run.epoch if status == "resumed" else None
    log.info("%s: %d frames on %s; checkpoint %s%s", args.game, len(frames), device, status,
             f", resuming after epoch {resumed_from}" if resumed_from is not None else ", training from scratch")
    total, before = mae.epochs * steps_per_epoch(len(frames), mae.batch_size), run.elapsed_s  # None: not recorded
    with tqdm(total=total, initial=run.epoch * total // mae.epochs, desc=f"mae {args.game}", unit="it",
              mininterval=5.0) as bar:
        while run.epoch < mae.epochs:
            row = train_epoch(run, frames, mae, autocast_dtype(params.runtime, device, "pretrain"), on_step=bar.update)
            run.elapsed_s = None if before is None else before + time.perf_counter() - start
            save_checkpoint(run, ckpt, run_id)
            log.info("epoch %d/%d loss %.5f", row["epoch"], mae.epochs, row["loss"])
    wall_s = time.perf_counter() - start
    save_model(run.model, args.out_model)
    write_loss_curve(run.history, args.out_loss_csv, args.out_loss_png, title=f"MAE pre-training, {args.game}")
    write_json(args.out_run, run_record(
        stage="pretrain_mae", params={"mae": to_plain(mae), "runtime": to_plain(params.runtime)},
        wildcards={"game": args.game, "profile": params.experiment.profile}, seeds=seeds, wall_time_s=wall_s,
        extra={"n_frames": len(frames), "epochs": mae.epochs, "final_loss": run.history[-1]["loss"],
               "resumed_after_epoch": resumed_from, "device_used": str(device),
               # every process's time (a resumed run: the earlier ones' too), None if a checkpoint lacked it
               "wall_time_total_s": None if before is None else before + wall_s},
    ))


if __name__ == "__main__":
    main()
