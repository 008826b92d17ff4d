"""Figure and table helpers every stage uses: matplotlib on Agg, atomic PNG and CSV writes, a loss curve."""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from spirl.common.io import atomic_path  # noqa: E402


def save_figure(fig: plt.Figure, path: Path, dpi: int = 120) -> None:
    """Save a figure as PNG atomically and close it."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)


def write_csv(rows: Sequence[Mapping], path: Path) -> None:
    """Write dict rows (same keys) as CSV, atomically."""
    with atomic_path(path) as tmp, tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def write_loss_curve(history: Sequence[Mapping], csv_path: Path, png_path: Path, title: str) -> None:
    """The per-epoch pre-training loss as CSV and as a log-scale plot."""
    write_csv(history, csv_path)
    epochs = [row["epoch"] for row in history]
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(epochs, [row["loss"] for row in history], marker="o", ms=3)
    ax.set(xlabel="epoch", ylabel="mean training loss (normalised-pixel MSE)", title=title, yscale="log")
    ax.grid(alpha=0.3)
    save_figure(fig, png_path)
