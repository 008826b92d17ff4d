"""What a trained agent looks at (SPEC §16): perturbation saliency on held-out frames, and how much of it lies on the
game's moving objects and, for SPIRL-family agents, inside the patches the agent's representation selected.

PYTHONHASHSEED=0 python src/agent_saliency.py --params params.yaml conf/full.yaml --variant spirl --regime 100k \
    --game Frostbite --seed 0 --in-weights RUN/weights.npz --in-run RUN/run.json \
    --in-frames data/full/objects/Frostbite/frames.npz --in-objects data/full/objects/Frostbite/objects.npz \
    [--in-model MAE.npz --in-mr MR.json [--in-wu WU.npz]] --out-json OUT.json --out-figure OUT.png [--log LOG]

Frames: agent_saliency.frames observation stacks of OCAtari's object frames (the objects stage's random-policy
frames, never trained on), each with 4 real frames and at least one dynamic object, spread evenly. Per frame:
the perturbation map (Greydanus et al. 2018: the newest frame blurred inside a Gaussian mask on every
agent_saliency.stride-th pixel, S = ½‖Q(I) − Q(Ĩ)‖² of the expected Q-values, noise off, through the whole
representation: spirl.agents.probe), its share on the dynamic objects' boxes (criteria.dynamic_categories, boxes
scaled from the 210×160 screen to the frame, rounded outwards) beside the boxes' share of the frame's area (what a
uniform map would give), and for SPIRL-family agents its share inside the selected patches beside their area share,
and the newest frame's attention drawn (heads averaged). Runs where the run's weights are (it reads them; no
weights are committed).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

from spirl.agents.agent import real_rows
from spirl.agents.agent_saliency import (
    alpha_blend,
    attention_overlay,
    box_mask,
    mass_share,
    patch_mask,
    perturbation_saliency,
)
from spirl.agents.probe import StackQ, load_policy
from spirl.agents.rainbow import support
from spirl.agents.represent import representation_for_run
from spirl.agents.spacetime import DividedSpaceTimeEncoder
from spirl.common.cli import base_parser, setup_logging
from spirl.common.io import read_json, write_json
from spirl.common.plots import save_figure
from spirl.common.runinfo import run_record
from spirl.common.runtime import setup_torch
from spirl.envs.object_files import unpack_objects
from spirl.envs.objects import SCREEN_HW
from spirl.params import ConfigError, load_params, resolve_variant, to_plain
from spirl.saliency.pretrain import load_model


def frame_boxes(objects, frame_px: int) -> list[tuple[int, int, int, int]]:
    """The dynamic objects' screen boxes (x, y, w, h) on the frame's pixel grid, rounded outwards."""
    sy, sx = frame_px / SCREEN_HW[0], frame_px / SCREEN_HW[1]
    out = []
    for obj in objects:
        if obj.dynamic:
            x, y, w, h = obj.box
            x0, y0 = math.floor(x * sx), math.floor(y * sy)
            out.append((x0, y0, math.ceil((x + w) * sx) - x0, math.ceil((y + h) * sy) - y0))
    return out


def pick_frames(stacks: np.ndarray, objects, count: int) -> np.ndarray:
    """`count` indices spread evenly over the frames whose stack holds 4 real frames and a dynamic object."""
    full = stacks.reshape(*stacks.shape[:2], -1).any(-1).all(-1)  # [F]: no padding frame in the stack
    pool = np.array([i for i in range(len(stacks)) if full[i] and any(o.dynamic for o in objects[i])], np.int64)
    if len(pool) == 0:
        raise ValueError("no object frame has a full stack and a dynamic object")
    return pool[np.unique(np.linspace(0, len(pool) - 1, min(count, len(pool))).round().astype(np.int64))]


def newest_attention(probe: StackQ, stack: np.ndarray, selected: np.ndarray, patch_px: int) -> np.ndarray:
    """The attention agent's attention on the stack's newest frame, heads averaged, min-max normalised, on the frame
    (agent_saliency.attention_overlay): per-frame [cls] (SPIRL, MAE-All) and joint_st: the newest [cls] over the
    newest frame's keys; divided_st: its spatial attention in the newest frame, averaged over the query patches."""
    encoder = probe.network.encoder
    x = torch.as_tensor(probe.representations(stack[None]), dtype=torch.float32)  # [1, F, K, D]
    counts = real_rows(x)
    with torch.no_grad():
        if isinstance(encoder, DividedSpaceTimeEncoder):
            weights = encoder.attention_weights(x, counts)[1][0, -1]  # [H, K queries, K keys]
            keys = np.arange(weights.shape[-1])  # MAE-All rows: patch p is row p
        else:
            att = encoder.attention_weights(x, counts)  # [1, F, H, 1+K] or joint [1, F, H, F, 1+K]
            weights = (att[0, -1, :, -1] if att.dim() == 5 else att[0, -1])[:, None, :]  # [H, 1 query, 1+K]
            keys = np.full(weights.shape[-1], -1)
            keys[1:1 + len(selected)] = selected  # key 0 is the [cls]; rows past K are padding
    side = stack.shape[1]
    return attention_overlay(weights.numpy(), keys, (side, side), patch_px).mean(axis=0)


def draw(stacks: np.ndarray, maps: list[np.ndarray], boxes: list, selections: list | None, title: str, path: Path,
         patch_px: int, attention: list | None = None) -> None:
    """One row per frame: the frame with the dynamic objects' boxes, the saliency map on it, the selected patches,
    the newest frame's attention (attention agents)."""
    cols = 2 + (selections is not None) + (attention is not None)
    fig, axes = plt.subplots(len(maps), cols, figsize=(2.6 * cols, 2.6 * len(maps)), squeeze=False)
    for r, (stack, saliency) in enumerate(zip(stacks, maps, strict=True)):
        frame = stack[-1]
        axes[r, 0].imshow(frame)
        for x, y, w, h in boxes[r]:
            axes[r, 0].add_patch(plt.Rectangle((x - 0.5, y - 0.5), w, h, fill=False, color="lime", lw=1))
        peak = saliency.max()
        axes[r, 1].imshow(alpha_blend(frame, saliency / peak if peak > 0 else saliency))
        if selections is not None:
            axes[r, 2].imshow(alpha_blend(frame, patch_mask(frame.shape[:2], selections[r], patch_px).astype(float),
                                          color=(0, 128, 255)))
        if attention is not None:
            axes[r, 3].imshow(alpha_blend(frame, attention[r], color=(255, 200, 0)))
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
    heads = ["frame, dynamic objects", "perturbation saliency", "selected patches", "attention, newest frame"][:cols]
    for ax, head in zip(axes[0], heads, strict=True):
        ax.set_title(head, fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / (2.6 * len(maps))))  # the title just above the first row
    save_figure(fig, path)


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    for name in ("variant", "regime", "game"):
        parser.add_argument(f"--{name}", required=True)
    parser.add_argument("--seed", type=int, required=True)
    for name in ("weights", "run", "frames", "objects"):
        parser.add_argument(f"--in-{name}", type=Path, required=True)
    for name in ("model", "mr", "wu"):
        parser.add_argument(f"--in-{name}", type=Path, default=None)
    parser.add_argument("--out-json", type=Path, required=True)
    parser.add_argument("--out-figure", type=Path, required=True)
    args = parser.parse_args()
    log = setup_logging("agent_saliency", args.log)
    params = resolve_variant(load_params(args.params), args.variant)
    base, probe_params, game = params.experiment.variants[args.variant].base, params.agent_saliency, args.game
    if game not in params.criteria.dynamic_categories:
        raise ConfigError(f"criteria.dynamic_categories has no entry for {game}: its moving objects are unknown")
    device = setup_torch(params.runtime)
    mae = load_model(args.in_model, device) if base == "spirl" else None
    mr_record = read_json(args.in_mr) if base == "spirl" else None
    run = representation_for_run(params, base, game, mae, mr_record, args.in_wu)
    with np.load(args.in_weights) as data:
        net = load_policy(run.spec, params.agent, params.atari.frame_stack, dict(data))
    probe = StackQ(net, run.represent, support(params.agent.v_min, params.agent.v_max, params.agent.atoms), device)
    with np.load(args.in_frames) as data:
        stacks = data["stacks"]  # [F, 4, S, S, 3]
    with np.load(args.in_objects) as data:
        objects = unpack_objects(data, params.criteria.dynamic_categories[game])
    picks = pick_frames(stacks, objects, probe_params.frames)
    frame_px, patch_px = stacks.shape[2], params.mae.patch_size_px
    start, records, maps, boxes, selections, attention = time.perf_counter(), [], [], [], [], []
    for i in picks.tolist():
        saliency = perturbation_saliency(stacks[i], probe, probe_params.stride, probe_params.sigma_blur,
                                         probe_params.sigma_mask, batch=probe_params.batch)
        objs = box_mask(saliency.shape, frame_boxes(objects[i], frame_px))
        record = {"frame": i, "objects_share": mass_share(saliency, objs), "objects_area": float(objs.mean())}
        boxes.append(frame_boxes(objects[i], frame_px))
        if run.spec.kind == "embeddings":
            chosen = probe.selected_patches(stacks[i])
            region = patch_mask(saliency.shape, chosen, patch_px)
            record |= {"selected_share": mass_share(saliency, region), "selected_area": float(region.mean()),
                       "k": len(chosen)}
            selections.append(chosen)
            attention.append(newest_attention(probe, stacks[i], chosen, patch_px))
        records.append(record)
        maps.append(saliency)
        log.info("%s %s %s: frame %d: %s", args.variant, game, args.seed, i, record)
    seconds = time.perf_counter() - start
    keys = [k for k in ("objects_share", "objects_area", "selected_share", "selected_area") if k in records[0]]
    means = {k: float(np.nanmean([r[k] for r in records])) for k in keys}
    draw(stacks[picks], maps, boxes, selections if selections else None,
         f"{args.variant} {args.regime} {game} seed {args.seed}: mass on moving objects {means['objects_share']:.2f} "
         f"(their area {means['objects_area']:.2f})", args.out_figure, patch_px, attention if attention else None)
    write_json(args.out_json, run_record(
        stage="agent_saliency", params=to_plain(params),
        wildcards={"variant": args.variant, "regime": args.regime, "game": game, "seed": args.seed,
                   "profile": params.experiment.profile},
        seeds={}, wall_time_s=seconds,
        extra={"base": base, "result": {"frames": records, "mean": means, "n_frames": len(records),
                                        "trained_run": str(args.in_run), "trained_updates":
                                            read_json(args.in_run).get("updates")}}))


if __name__ == "__main__":
    main()
