"""Benchmark: MAE pre-training throughput, and the time of a whole pre-training (frames x epochs) from it.

    python bench/pretrain.py --params params.yaml --frames data/full/frames/Seaquest/frames.npz \\
        --out bench/results/pretrain-<device>.json

Times whole epochs of the real training step (`spirl.saliency.pretrain.train_epoch`: batch, lr schedule, autocast per
runtime.pretrain_precision, AdamW) on the given frames (or uniform random frames of the profile's size when none are
given), after one warm-up epoch, and extrapolates to `mae.epochs` epochs over `--n-frames` frames (default:
the paper's 50K). Goal (issue "Scale", H100): 50K frames x 50 epochs <= 5 minutes.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from spirl.common.runinfo import emit_bench
from spirl.common.runtime import autocast_dtype, setup_torch
from spirl.params import load_params
from spirl.saliency.pretrain import new_run, steps_per_epoch, train_epoch


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", nargs="+", type=Path, default=[Path("params.yaml")])
    parser.add_argument("--frames", type=Path, default=None, help="frames.npz; default: random frames")
    parser.add_argument("--n-frames", type=int, default=50_000, help="frames of the extrapolated pre-training")
    parser.add_argument("--timed-frames", type=int, default=4096, help="frames per timed epoch")
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs (after one warm-up epoch)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    params = load_params(args.params)
    mae, size = params.mae, params.atari.frame_size_px
    device = setup_torch(params.runtime)
    if args.frames is not None:
        with np.load(args.frames) as data:
            frames = data["frames"][: args.timed_frames]
    else:
        frames = np.random.default_rng(0).integers(0, 256, (args.timed_frames, size, size, 3), dtype=np.uint8)
    run = new_run(mae, frames.shape[1], {"init": 0, "sample": 1, "mask": 2}, device)
    dtype = autocast_dtype(params.runtime, device, "pretrain")
    train_epoch(run, frames, mae, dtype)  # warm-up: allocator, kernels, autotuning
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(args.epochs):
        train_epoch(run, frames, mae, dtype)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    steps = args.epochs * steps_per_epoch(len(frames), mae.batch_size)
    per_step = seconds / steps
    full_steps = mae.epochs * steps_per_epoch(args.n_frames, mae.batch_size)
    settings = {"params": [str(p) for p in args.params], "frames": len(frames), "frame_size_px": int(frames.shape[1]),
                "batch_size": mae.batch_size, "precision": str(dtype or torch.float32), "timed_epochs": args.epochs}
    emit_bench({"bench": "pretrain", "settings": settings, "device": {"torch_device": str(device)},
                "iterations_per_s": 1.0 / per_step,
                "frames_per_s": mae.batch_size / per_step,
                "estimated_pretraining_s": {"n_frames": args.n_frames, "epochs": mae.epochs,
                                            "seconds": per_step * full_steps}}, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
