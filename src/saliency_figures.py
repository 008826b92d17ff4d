"""Figs. 2 and 3 of one game from its pre-trained MAE and pre-training frames (SPEC §11).

Fig. 2: original / rebuilt from surroundings / error map / decoder from [mask]+PE, PE only, [mask] only.
Fig. 3: cumulative error curves with the chosen K; the patches kept by dynamic K (capped at the game's K_max,
spirl.saliency.budget.run_budget) and by fixed ratios.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from spirl.common.cli import base_parser, setup_logging
from spirl.common.io import read_json
from spirl.common.runtime import setup_torch
from spirl.params import load_params
from spirl.saliency.budget import run_budget
from spirl.saliency.error_maps import (
    ErrorMapSettings,
    error_map,
    error_map_settings,
    frames_to_tensor,
    patch_errors,
    surroundings_predictions,
)
from spirl.saliency.figures import plot_fig2, plot_fig3
from spirl.saliency.mae import MaskedAutoencoder, patchify, unpatchify
from spirl.saliency.pretrain import load_model
from spirl.saliency.selection import cumulative_error_curve, dynamic_k, fixed_k, k_max_from_ratio


def spread(n_total: int, count: int) -> np.ndarray:
    """`count` frame indices spread evenly over [0, n_total) (deterministic)."""
    return np.linspace(0, n_total - 1, count).round().astype(np.int64)


def to_images(model: MaskedAutoencoder, patches: torch.Tensor) -> np.ndarray:
    """Patch vectors [B, N, P] -> images [B, H, W, C] as numpy."""
    c = model.config
    return unpatchify(patches, c.patch_size, c.in_chans, c.grid).permute(0, 2, 3, 1).cpu().numpy()


def rescale(images: np.ndarray) -> np.ndarray:
    """Min-max scale each image to [0, 1] (decoder outputs in normalised-pixel space)."""
    low = images.min(axis=(1, 2, 3), keepdims=True)
    high = images.max(axis=(1, 2, 3), keepdims=True)
    return (images - low) / np.maximum(high - low, 1e-8)


@torch.no_grad()
def frameless_decodings(model: MaskedAutoencoder) -> dict[str, np.ndarray]:
    """What the decoder draws with no frame patch: [mask]+PE, PE only, [mask] only (each [H, W, C])."""
    n, device = model.config.num_patches, model.mask_token.device
    latent = model.encode(torch.zeros(1, 0, model.config.encoder_dim, device=device))  # [1, 1, D]: cls only
    cls = model.decoder_embed(latent)  # [1, 1, Dd]
    mask = model.mask_token.expand(1, n, -1)  # [1, N, Dd]
    pos = model.decoder_pos_embed  # [1, 1+N, Dd]
    inputs = {"[mask] + PE": torch.cat([cls, mask], 1) + pos,
              "PE only": torch.cat([cls, torch.zeros_like(mask)], 1) + pos,
              "[mask] only": torch.cat([cls, mask], 1)}
    out = {}
    for name, x in inputs.items():
        for block in model.decoder_blocks:
            x = block(x)
        pred = model.decoder_pred(model.decoder_norm(x[:, 1:]))  # [1, N, P]
        out[name] = rescale(to_images(model, pred))[0]
    return out


def fig2_columns(model: MaskedAutoencoder, frames: np.ndarray, settings: ErrorMapSettings) -> dict[str, np.ndarray]:
    """The six columns of Fig. 2 for `frames` (uint8 [F, H, W, 3])."""
    c = model.config
    patches = patchify(frames_to_tensor(frames, model.mask_token.device), c.patch_size)  # [F, N, P]
    mean, std = patches.mean(-1, keepdim=True), (patches.var(-1, keepdim=True) + c.norm_pix_eps).sqrt()
    pred = surroundings_predictions(model, frames, settings.max_sequences)  # [F, N, P], normalised-pixel space
    rebuilt = pred * std + mean  # back to pixels with the true patch stats
    errors = patch_errors(pred, patches, settings.space, c.norm_pix_eps)  # E of SPEC §4, [F, N]
    errors = errors.cpu().numpy().reshape(-1, c.grid, c.grid)  # [F, grid, grid]
    columns = {"original": frames / 255.0, "rebuilt from surroundings": np.clip(to_images(model, rebuilt), 0, 1),
               "error map": np.kron(errors, np.ones((c.patch_size, c.patch_size)))}
    for name, image in frameless_decodings(model).items():
        columns[name] = np.repeat(image[None], len(frames), axis=0)
    return columns


def fig3_data(model: MaskedAutoencoder, frames: np.ndarray, k_max: int, xscale: float,
              fixed_ratios: tuple[float, ...], settings: ErrorMapSettings
              ) -> tuple[np.ndarray, np.ndarray, dict[str, list[np.ndarray]]]:
    """Cumulative curves [F, N], dynamic K [F], and the selections of each rule."""
    errors = error_map(model, frames, settings).cpu().numpy()  # [F, N]
    n = errors.shape[1]
    dynamic = [dynamic_k(e, k_max, xscale) for e in errors]
    selections = {f"dynamic K, K_max {k_max}": dynamic}
    for ratio in fixed_ratios:
        k = k_max_from_ratio(n, ratio)
        selections[f"fixed {ratio:.0%}, K"] = [fixed_k(e, k) for e in errors]
    curves = np.stack([cumulative_error_curve(e) for e in errors])
    return curves, np.array([len(d) for d in dynamic]), selections


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--game", required=True)
    for name in ("model", "frames", "mr"):
        parser.add_argument(f"--in-{name}", type=Path, required=True)
    for name in ("fig2", "fig3"):
        parser.add_argument(f"--out-{name}", type=Path, required=True)
    args = parser.parse_args()
    log = setup_logging("saliency_figures", args.log)
    params = load_params(args.params)
    model = load_model(args.in_model, setup_torch(params.runtime))
    with np.load(args.in_frames) as data:
        frames, episodes = data["frames"], data["episodes"]
    rep, sal, settings = params.report, params.saliency, error_map_settings(params, model)
    plot_fig2(fig2_columns(model, frames[spread(len(frames), rep.fig2_frames)], settings), args.out_fig2,
              f"{args.game}: MAE reconstruction from surroundings and error maps")
    first = np.flatnonzero(episodes == episodes[0])  # one episode: frames at different time steps
    shown = frames[first[spread(len(first), rep.fig3_frames)]]
    mr, k_max = run_budget(sal, args.game, model.config.num_patches, read_json(args.in_mr), selection="dynamic")
    curves, ks, selections = fig3_data(model, shown, k_max, sal.xscale, rep.fig3_fixed_ratios, settings)
    plot_fig3(shown, curves, ks, selections, model.config.grid, model.config.patch_size, args.out_fig3,
              f"{args.game}: dynamic K (mr {mr:.0%}) vs fixed ratios")
    log.info("%s: figures written; dynamic K of the Fig. 3 frames: %s", args.game, ks.tolist())


if __name__ == "__main__":
    main()
