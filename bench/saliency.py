"""Benchmark: frames/s of the saliency hot path (error map + dynamic-K selection + frame embedding).

Per batch size and precision, against the naive batch-1 fp32 reference (one full MAE pass per target
patch, as the released code runs it) in the same run; plus the fraction of frames whose selected patch
set is unchanged in bf16 vs fp32.

    python bench/saliency.py --model data/full/mae/Seaquest/model.npz \\
        --frames data/full/frames/Seaquest/frames.npz --out bench/results/saliency-<device>.json

Without --model a randomly initialised paper-size MAE is used (timings are the same; selections of an
untrained model are less meaningful). Without --frames, random uint8 frames are used.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from spirl.common.runinfo import emit_bench
from spirl.params import load_params
from spirl.saliency.error_maps import (
    ErrorMapSettings,
    embed_selected,
    error_map,
    error_map_reference,
    max_sequences_for,
)
from spirl.saliency.mae import MAEConfig, MaskedAutoencoder
from spirl.saliency.pretrain import load_model, mae_config
from spirl.saliency.selection import dynamic_k_batched, k_max_from_ratio


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def hot_path(model: MaskedAutoencoder, frames: np.ndarray, k_max: int, xscale: float,
             settings: ErrorMapSettings) -> tuple[torch.Tensor, torch.Tensor]:
    """Error map, dynamic-K selection and the padded frame embeddings of a batch; returns (indices, emb)."""
    errors = error_map(model, frames, settings)  # [B, N]
    indices, counts = dynamic_k_batched(errors, k_max, xscale)  # [B, k_max], [B]
    return indices, embed_selected(model, frames, indices, counts, k_max)


def time_batches(model, frames, batch: int, k_max: int, xscale: float, settings, device, min_seconds: float) -> dict:
    """frames/s of the hot path at one batch size (one warm-up batch, then at least min_seconds)."""
    batches = [frames[i:i + batch] for i in range(0, len(frames) - batch + 1, batch)] or [frames[:batch]]
    hot_path(model, batches[0], k_max, xscale, settings)  # warm-up (kernels, allocator)
    sync(device)
    done, start = 0, time.perf_counter()
    while True:
        for chunk in batches:
            hot_path(model, chunk, k_max, xscale, settings)
            done += len(chunk)
        sync(device)
        if time.perf_counter() - start >= min_seconds:
            break
    return {"batch": batch, "frames": done, "frames_per_s": done / (time.perf_counter() - start)}


def reference_rate(model, frames: np.ndarray, device, n_frames: int) -> dict:
    """frames/s of the naive batch-1 fp32 reference."""
    error_map_reference(model, frames[0])
    sync(device)
    start = time.perf_counter()
    for frame in frames[:n_frames]:
        error_map_reference(model, frame)
    sync(device)
    return {"frames": n_frames, "frames_per_s": n_frames / (time.perf_counter() - start)}


def same_selection_share(model, frames: np.ndarray, k_max: int, xscale: float, batch: int,
                         fp32: ErrorMapSettings) -> float:
    """Share of frames whose selected set (as a set) is identical with bf16 and fp32 error maps."""
    bf16 = dataclasses.replace(fp32, dtype=torch.bfloat16)
    same = 0
    for i in range(0, len(frames), batch):
        chunk = frames[i:i + batch]
        a = dynamic_k_batched(error_map(model, chunk, fp32), k_max, xscale)[0].sort(dim=1).values
        b = dynamic_k_batched(error_map(model, chunk, bf16), k_max, xscale)[0].sort(dim=1).values
        same += int((a == b).all(dim=1).sum())
    return same / len(frames)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", nargs="+", type=Path, default=[Path("params.yaml")])
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--frames", type=Path, default=None)
    parser.add_argument("--game", default="Seaquest", help="whose adopted mr sets K_max")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 50, 256])
    parser.add_argument("--n-frames", type=int, default=512, help="frames timed and compared")
    parser.add_argument("--reference-frames", type=int, default=4)
    parser.add_argument("--min-seconds", type=float, default=3.0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    params = load_params(args.params)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.set_num_threads(max(1, torch.get_num_threads()))
    if args.model is not None:
        model = load_model(args.model, device)
    else:
        model = MaskedAutoencoder(mae_config(params.mae, params.atari.frame_size_px),
                                  generator=torch.Generator().manual_seed(0)).to(device).eval()
    config: MAEConfig = model.config
    if args.frames is not None:
        with np.load(args.frames) as data:
            frames = data["frames"][: args.n_frames]
    else:
        shape = (args.n_frames, config.img_size, config.img_size, config.in_chans)
        frames = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    k_max = k_max_from_ratio(config.num_patches, params.saliency.paper_mr[args.game])
    xscale = params.saliency.xscale
    reference = reference_rate(model, frames, device, args.reference_frames)
    results = []
    fp32 = ErrorMapSettings(params.saliency.error_space,
                            max_sequences_for(config, params.runtime.saliency_memory_mb), None)
    for dtype_name, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
        for batch in args.batches:
            row = time_batches(model, frames, batch, k_max, xscale, dataclasses.replace(fp32, dtype=dtype), device,
                               args.min_seconds)
            row.update(precision=dtype_name, speedup_vs_reference=row["frames_per_s"] / reference["frames_per_s"])
            results.append(row)
            print(json.dumps(row), file=sys.stderr)
    emit_bench({
        "bench": "saliency",
        "settings": {"grid": config.grid, "num_patches": config.num_patches, "k_max": k_max, "xscale": xscale,
                     "error_space": fp32.space, "max_sequences_per_pass": fp32.max_sequences,
                     "model": str(args.model) if args.model else "random init (paper size)",
                     "frames": str(args.frames) if args.frames else "random uint8", "n_frames": len(frames)},
        "reference_batch1_fp32": reference,
        "results": results,
        "bf16_same_selection_share": same_selection_share(model, frames, k_max, xscale, max(args.batches), fp32),
        "device": {"torch_device": str(device), "torch_threads": torch.get_num_threads()},
    }, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
