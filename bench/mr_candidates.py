"""Analysis: why uncapped dynamic K runs high; mr* and K under each candidate explanation, on the same frames.

    python bench/mr_candidates.py --params params.yaml conf/desk.yaml --game Frostbite \\
        --frames data/desk/frames/Frostbite/frames.npz --n-frames 1000 \\
        --model "50 epochs=data/desk/mae/Frostbite/model.npz" \\
        --model "epoch 25 of 50=work/desk/mae/Frostbite/epoch25-checkpoint.pt" --model "untrained=init" \\
        --out bench/results/mr-candidates-Frostbite-cpu.json

For each MAE (a model.npz, or a pre-training checkpoint.pt taken mid-run) the error maps of the frames are
computed once; from them, the uncapped K of every frame under each (error space, xscale) candidate (SPEC §12
#4, #5), summarised as in the mr stage (mr*, K mean / median / range, coverage at the adopted K_max). The frames
are spread evenly over the file (every step-th frame) so that the slice covers the whole collection.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from spirl.common.runinfo import emit_bench
from spirl.params import load_params
from spirl.saliency.error_maps import error_map_settings
from spirl.saliency.mae import MaskedAutoencoder
from spirl.saliency.mr import candidates, normalized_maps
from spirl.saliency.pretrain import load_model, mae_config


def load_any(path: Path, params) -> tuple[MaskedAutoencoder, dict]:
    """A model.npz, the model of a pre-training checkpoint (with the epochs it had completed), or "init": the same
    architecture never trained (the pre-training's own init seed 0), a control for what K owes to training."""
    if str(path) == "init":
        model = MaskedAutoencoder(mae_config(params.mae, params.atari.frame_size_px), torch.Generator().manual_seed(0))
        return model.eval(), {"epochs_completed": 0}
    if path.suffix == ".npz":
        return load_model(path), {}
    state = torch.load(path, map_location="cpu", weights_only=False)
    model = MaskedAutoencoder(mae_config(params.mae, params.atari.frame_size_px))
    model.load_state_dict(state["model"])
    return model.eval(), {"epochs_completed": state["epoch"], "loss": state["history"][-1]["loss"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", nargs="+", type=Path, required=True)
    parser.add_argument("--game", required=True)
    parser.add_argument("--frames", type=Path, required=True)
    parser.add_argument("--n-frames", type=int, default=1000)
    parser.add_argument("--model", action="append", required=True, help="LABEL=PATH (model.npz or checkpoint.pt)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    params = load_params(args.params)
    torch.set_num_threads(params.runtime.torch_threads)
    with np.load(args.frames) as data:
        frames = data["frames"]
    step = max(len(frames) // args.n_frames, 1)
    frames = frames[::step][: args.n_frames]
    results = []
    for spec in args.model:
        label, _, path = spec.partition("=")
        model, info = load_any(Path(path), params)
        start = time.perf_counter()
        errors, variances, _ = normalized_maps(model, frames, params.saliency.batch_frames,
                                            error_map_settings(params, model))
        seconds = time.perf_counter() - start
        results.append({"model": label, "path": path, **info, "frames_per_s": len(frames) / seconds,
                        "candidates": candidates(errors, variances, params, args.game, model.config.norm_pix_eps)})
        print(label, [(c["error_space"], c["xscale"], c["mr_star"], round(c["k_mean"], 1))
                      for c in results[-1]["candidates"]], file=sys.stderr)
    emit_bench({"bench": "mr_candidates", "settings": {"params": [str(p) for p in args.params], "game": args.game,
                                                       "frames": str(args.frames), "n_frames": len(frames),
                                                       "frame_step": step},
                "paper": {"mr_star": params.saliency.paper_mr_star[args.game],
                          "mr_adopted": params.saliency.paper_mr[args.game]},
                "results": results, "device": {"torch_threads": params.runtime.torch_threads}}, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
