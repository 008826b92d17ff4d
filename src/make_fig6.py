"""Fig. 6: a trained SPIRL policy's attention on a few pre-training frames of one game (SPEC §11).

Per shown frame (one column): the patches dynamic K selected (the policy's input) red, the patches holding
report.attention_mass of the newest frame's [cls]-query attention (heads averaged, padded keys dropped) yellow, both
orange. Runs on CPU in fp32 (a few frames), so equal inputs give equal bytes.

python src/make_fig6.py --params params.yaml conf/full.yaml --variant spirl --game Seaquest --in-frames FRAMES.npz \
    --in-model MAE.npz --in-mr MR.json --in-weights WEIGHTS.npz [--in-wu WU.npz] --out-figure FIG6.png [--log LOG]
The variant's representation (K_max, scorer, embeddings) is the one its training run had
(spirl.agents.represent.representation_for_run); a variant scoring with Wu et al.'s mask reads it from --in-wu.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.patches import Patch, Rectangle

from spirl.agents.agent import build_qnetwork
from spirl.agents.attention import attention_set, fig6_masks, newest_frame_attention
from spirl.agents.probe import n_actions_from_weights
from spirl.agents.represent import representation_for_run
from spirl.common.cli import base_parser, setup_logging
from spirl.common.io import read_json
from spirl.common.plots import save_figure
from spirl.common.runtime import setup_torch
from spirl.params import ConfigError, Params, load_params, resolve_variant
from spirl.saliency.figures import patch_mask_image
from spirl.saliency.mae import MaskedAutoencoder
from spirl.saliency.pretrain import load_model

COLOURS = {"selected": (0.9, 0.1, 0.1), "attention": (1.0, 0.9, 0.0), "both": (1.0, 0.55, 0.0)}


def time_points(episodes: np.ndarray, stack: int, count: int) -> np.ndarray:
    """`count` frame indices spread evenly over the first episode long enough to hold them, each with stack-1
    predecessors in it (a random policy's first episode may end after a few frames)."""
    for episode in dict.fromkeys(episodes.tolist()):  # in collection order; an episode's frames are contiguous
        candidates = np.flatnonzero(episodes == episode)[stack - 1:]
        if len(candidates) >= count:
            return candidates[np.linspace(0, len(candidates) - 1, count).round().astype(np.int64)]
    raise ValueError(f"no episode of {len(episodes)} frames has {count} stacks of {stack}: too few frames")


def fig6_data(params: Params, game: str, mae: MaskedAutoencoder, mr_record: Mapping[str, Any],
              weights: dict[str, np.ndarray], frames: np.ndarray, episodes: np.ndarray,
              wu_path: Path | None = None) -> tuple[np.ndarray, list[dict[str, np.ndarray]], np.ndarray]:
    """The shown time points [T], their three patch masks (see fig6_masks) and K [T], for the resolved `params`.

    The representation is the training run's (representation_for_run: its K_max, its scorer with the models that
    scorer needs, the MAE's embeddings); each frame of the shown stacks is scored, selected and embedded once, and
    the newest frame's selection is the one its embeddings hold.
    """
    stack = params.atari.frame_stack
    run_rep = representation_for_run(params, "spirl", game, mae, mr_record, wu_path)
    spec, represent, k_max = run_rep.spec, run_rep.represent, run_rep.k_max
    net = build_qnetwork(spec, params.agent, n_actions_from_weights(weights, params.agent.atoms), stack,
                         torch.Generator().manual_seed(0))
    net.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()}, strict=True)
    net.eval()
    ts = time_points(episodes, stack, params.report.fig6_frames)  # [T]
    window = ts[:, None] + np.arange(1 - stack, 1)  # [T, F] oldest first
    shown = frames[window.reshape(-1)]  # [T·F, H, W, 3]
    indices, counts = represent.select(shown)  # [T·F, K_max], [T·F]: what the agent's input holds
    stacks = represent.embed(shown, indices, counts).reshape(len(ts), stack, *spec.shape)  # [T, F, K_max, D]
    indices = indices.reshape(len(ts), stack, k_max)[:, -1]  # [T, K_max] of the newest frames
    counts = counts.reshape(len(ts), stack)[:, -1].cpu().numpy()  # [T]
    att, valid = newest_frame_attention(net, torch.from_numpy(stacks))  # [T, K_max] twice
    if not np.array_equal(valid.sum(1).numpy(), counts):
        raise RuntimeError("the embedding rows of the newest frames disagree with their selection counts")
    masks = [fig6_masks(indices[i].cpu().numpy(), int(counts[i]),
                        attention_set(att[i].numpy(), valid[i].numpy(), params.report.attention_mass),
                        mae.config.grid) for i in range(len(ts))]
    return ts, masks, counts


def overlay(frame: np.ndarray, masks: dict[str, np.ndarray], grid: int, patch: int, alpha: float = 0.45) -> np.ndarray:
    """The RGB frame with each coloured patch set blended in at `alpha` (uint8 [H, W, 3])."""
    out = frame.astype(np.float32)
    for name, colour in COLOURS.items():
        pixels = patch_mask_image(np.flatnonzero(masks[name]), grid, patch)  # [H, W] bool
        out[pixels] = (1 - alpha) * out[pixels] + alpha * 255.0 * np.asarray(colour, np.float32)
    return out.round().astype(np.uint8)


def plot_fig6(frames: np.ndarray, ts: np.ndarray, masks: list[dict[str, np.ndarray]], ks: np.ndarray, grid: int,
              mass: float, title: str, path: Path) -> None:
    """One column per time point: the frame with the coloured patches (filled and outlined), K in the title."""
    patch = frames.shape[1] // grid
    fig, axes = plt.subplots(1, len(ts), figsize=(2.8 * len(ts), 3.4), squeeze=False, layout="constrained")
    for ax, t, m, k in zip(axes[0], ts, masks, ks, strict=True):
        ax.imshow(overlay(frames[t], m, grid, patch), interpolation="nearest")
        for name, colour in COLOURS.items():
            for p in np.flatnonzero(m[name]):
                ax.add_patch(Rectangle(((p % grid) * patch - 0.5, (p // grid) * patch - 0.5), patch, patch,
                                       fill=False, edgecolor=colour, linewidth=0.8))
        ax.set_title(f"frame {t}: K = {k}, attention set {int(m['attention'].sum() + m['both'].sum())}", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    labels = {"selected": "selected (dynamic K)", "attention": f"{mass:.0%} of the [cls] attention",
              "both": "both"}
    fig.legend(handles=[Patch(facecolor=c, edgecolor=c, label=labels[n]) for n, c in COLOURS.items()],
               loc="outside lower center", ncol=3, fontsize=8)
    fig.suptitle(title, fontsize=9)
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--variant", required=True)
    parser.add_argument("--game", required=True)
    for name in ("frames", "model", "mr", "weights"):
        parser.add_argument(f"--in-{name}", type=Path, required=True)
    parser.add_argument("--in-wu", type=Path, default=None, help="the game's Wu mask (a variant scoring with it)")
    parser.add_argument("--out-figure", type=Path, required=True)
    args = parser.parse_args(argv)
    log = setup_logging("make_fig6", args.log)
    params = resolve_variant(load_params(args.params), args.variant)
    base = params.experiment.variants[args.variant].base
    if base != "spirl" or params.agent.pool != "cls":
        raise ConfigError(f"Fig. 6 needs a SPIRL variant with agent.pool cls; variant {args.variant!r} has base "
                          f"{base!r}, pool {params.agent.pool!r}")
    setup_torch(params.runtime)  # the thread count; the figure itself is computed on CPU in fp32
    mae = load_model(args.in_model, "cpu")
    mr_record = read_json(args.in_mr)
    with np.load(args.in_weights) as data:
        weights = {k: data[k] for k in data.files}
    with np.load(args.in_frames) as data:
        frames, episodes = data["frames"], data["episodes"]
    ts, masks, ks = fig6_data(params, args.game, mae, mr_record, weights, frames, episodes, args.in_wu)
    mass = params.report.attention_mass
    plot_fig6(frames, ts, masks, ks, mae.config.grid, mass,
              f"{args.game}, {args.variant}: [cls]-query attention of the newest frame (heads averaged)",
              args.out_figure)
    log.info("%s %s: frames %s, K %s, attention sets %s", args.game, args.variant, ts.tolist(), ks.tolist(),
             [int(m["attention"].sum() + m["both"].sum()) for m in masks])


if __name__ == "__main__":
    main()
