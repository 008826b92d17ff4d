"""The saliency figures: Fig. 8's K/N histograms, Fig. 2's error maps, Fig. 3's selections, and the patch masks
they and the object-recall figure draw (matplotlib, Agg; atomic writes through spirl.common.plots)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from spirl.common.plots import plt, save_figure


def plot_k_histograms(per_game: Mapping[str, Mapping], path: Path) -> None:
    """Fig. 8: per game, the histogram of K/N (5% bins) with mr* and the adopted mr marked.

    Args:
        per_game: game -> {"bin_edges": [...], "counts": [...], "mr_star": float, "mr_adopted": float,
            "coverage": float, "n_frames": int}.
    """
    games = list(per_game)
    fig, axes = plt.subplots(1, len(games), figsize=(3.6 * len(games), 3.2), squeeze=False, layout="constrained")
    for ax, game in zip(axes[0], games, strict=True):
        info = per_game[game]
        edges, counts = np.asarray(info["bin_edges"]), np.asarray(info["counts"], dtype=float)
        share = counts / max(counts.sum(), 1)
        ax.bar(100 * edges[:-1], 100 * share, width=100 * np.diff(edges), align="edge", color="0.6",
               edgecolor="0.3")
        star = f"mr* = {info['mr_star']:.0%}" if info["mr_star"] < 1 else "mr*: no candidate <= 95%"
        ax.axvline(100 * info["mr_star"], color="tab:red", ls="--", label=star)
        ax.axvline(100 * info["mr_adopted"], color="tab:blue", ls=":", label=f"adopted = {info['mr_adopted']:.0%}")
        ax.set(title=f"{game} ({info['n_frames']} frames)", xlabel="K / N (%)", ylabel="frames (%)", xlim=(0, 100))
        ax.legend(fontsize=8)
    fig.suptitle("Number of salient patches per pre-training frame (dynamic K, no cap)")
    save_figure(fig, path)


def patch_mask_image(indices: np.ndarray, grid: int, patch: int) -> np.ndarray:
    """Pixel mask [grid*patch, grid*patch] (bool) of the patches in `indices` (row-major patch ids)."""
    mask = np.zeros(grid * grid, bool)
    mask[np.asarray(indices, dtype=np.int64)] = True
    return np.kron(mask.reshape(grid, grid), np.ones((patch, patch), bool))


def highlight(frame: np.ndarray, mask: np.ndarray, dim: float = 0.25) -> np.ndarray:
    """The frame with pixels outside `mask` darkened to `dim` of their brightness (uint8 RGB)."""
    out = frame.astype(np.float32)
    out[~mask] *= dim
    return out.astype(np.uint8)


def plot_fig2(columns: Mapping[str, np.ndarray], path: Path, title: str) -> None:
    """Fig. 2: one row per frame, one column per image kind (each array [rows, H, W, 3] or [rows, H, W]).

    2-D images (error maps) are shown with a colour map, RGB images as they are (values in [0, 1]).
    """
    names = list(columns)
    rows = len(next(iter(columns.values())))
    fig, axes = plt.subplots(rows, len(names), figsize=(2.1 * len(names), 2.1 * rows), squeeze=False)
    for j, name in enumerate(names):
        for i in range(rows):
            image = columns[name][i]
            ax = axes[i, j]
            ax.imshow(image, cmap="inferno" if image.ndim == 2 else None, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(name, fontsize=8)
    fig.suptitle(title)
    save_figure(fig, path)


def plot_fig3(frames: np.ndarray, curves: np.ndarray, ks: np.ndarray, selections: Mapping[str, list[np.ndarray]],
              grid: int, patch: int, path: Path, title: str) -> None:
    """Fig. 3: per frame (column) the frame, its cumulative error curve with the chosen K, and the patches
    kept by each selection rule (one row per rule, others darkened).

    Args:
        frames: [F, H, W, 3] uint8; curves: [F, N] cumulative share of ascending-sorted errors;
        ks: [F] dynamic K; selections: rule name -> per frame the selected patch indices.
    """
    n_frames, n = curves.shape
    rows = 2 + len(selections)
    fig, axes = plt.subplots(rows, n_frames, figsize=(2.6 * n_frames, 2.5 * rows), squeeze=False,
                             layout="constrained")
    for f in range(n_frames):
        axes[0, f].imshow(frames[f])
        axes[0, f].set_title(f"frame {f + 1}", fontsize=8)
        ax = axes[1, f]
        ax.plot(np.arange(1, n + 1), curves[f], color="0.2")
        ax.plot([0, n], [0, 1], color="0.7", ls=":")
        ax.axvline(n - ks[f], color="tab:red", ls="--", label=f"K = {ks[f]}")
        ax.set(xlim=(0, n), ylim=(0, 1), xlabel="patches by ascending error")
        if f == 0:
            ax.set_ylabel("cumulative error share")
        ax.legend(fontsize=7, loc="upper left")
        for r, (name, chosen) in enumerate(selections.items(), start=2):
            axes[r, f].imshow(highlight(frames[f], patch_mask_image(chosen[f], grid, patch)))
            axes[r, f].set_title(f"{name}: {len(chosen[f])}", fontsize=8)
    for ax in axes.flat:
        if ax.images:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(title)
    save_figure(fig, path)
