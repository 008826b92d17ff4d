"""Figures of a Wu-mask training run (the pretrain_wu stage): the loss curve and the mask Ψ on real frames."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from spirl.saliency.wu.data import gray_frames, gray_input
from spirl.saliency.wu.model import MASK_SIZE, WuAttention
from spirl.saliency.wu.scores import back_project


def write_loss_history(history: Sequence[Mapping], csv_path: Path, png_path: Path, title: str) -> None:
    """The loss curve: the history as CSV (one row per logging interval) and a log-scale plot of the total and its
    three terms (the sparsity term as mask_weight · mean Ψ is not drawn: mean Ψ itself is, on its own axis)."""
    from spirl.common.plots import plt, save_figure, write_csv

    write_csv(history, csv_path)
    updates = [row["updates"] for row in history]
    fig, (ax, ax_mask) = plt.subplots(1, 2, figsize=(9, 3.2), layout="constrained")
    for column, label in (("loss", "total"), ("transport", "transport (thresholded)"), ("auto", "auto-encoding")):
        ax.plot(updates, [max(row[column], 1e-12) for row in history], marker="o", ms=3, label=label)
    ax.set(xlabel="update", ylabel="mean training loss per interval", yscale="log")
    ax.legend(fontsize=8)
    ax_mask.plot(updates, [row["sparsity"] for row in history], marker="o", ms=3, color="tab:red")
    ax_mask.set(xlabel="update", ylabel="mean Ψ(x_t) (sparsity term / λ_m)", ylim=(0, 1))
    for a in (ax, ax_mask):
        a.grid(alpha=0.3)
    fig.suptitle(title)
    save_figure(fig, png_path)


def figure_indices(n_frames: int, count: int = 4) -> list[int]:
    """`count` frame indices spread evenly over an archive of n_frames (first and last included)."""
    return sorted({int(round(i)) for i in np.linspace(0, n_frames - 1, min(count, n_frames))})


def write_mask_figure(model: WuAttention, frames: np.ndarray, indices: Sequence[int], path: Path, title: str) -> None:
    """Ψ on real frames: per frame, the RGB frame with Ψ placed as the scorer places it (back-projected through the
    cells' 36-pixel blocks, then resized bilinearly) over it, and below it the 7×7 mask itself.
    Args: frames uint8 [F, H, W, 3]."""
    from spirl.common.plots import plt, save_figure

    chosen = frames[list(indices)]  # [k, H, W, 3]
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            mask = model.mask(gray_input(gray_frames(chosen), device)).cpu()  # [k, 1, 7, 7]
    finally:
        model.train(was_training)
    up = F.interpolate(back_project(mask), size=chosen.shape[1:3], mode="bilinear", align_corners=False)[:, 0].numpy()
    fig, axes = plt.subplots(2, len(chosen), figsize=(2.6 * len(chosen), 5.4), squeeze=False, layout="constrained")
    for col, index in enumerate(indices):
        top, bottom = axes[0, col], axes[1, col]
        top.imshow(chosen[col])
        top.imshow(up[col], cmap="inferno", vmin=0.0, vmax=1.0, alpha=0.55)
        top.set_title(f"frame {index}", fontsize=9)
        image = bottom.imshow(mask[col, 0].numpy(), cmap="inferno", vmin=0.0, vmax=1.0, interpolation="nearest")
        bottom.set_title(f"Ψ {MASK_SIZE}×{MASK_SIZE}, max {mask[col].max().item():.2f}", fontsize=9)
        for a in (top, bottom):
            a.set_xticks([])
            a.set_yticks([])
    fig.colorbar(image, ax=axes[1].tolist(), shrink=0.8, label="Ψ")
    fig.suptitle(title)
    save_figure(fig, path)
