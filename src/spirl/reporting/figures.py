"""The report's aggregate figures: learning curves, interval estimates, performance profiles.

Pure plotting (matplotlib, Agg): every statistic is computed by the caller (`spirl.reporting.statistics`). Figures have
fixed sizes, colours follow the order of the labels as given, and nothing time-dependent is drawn, so the same
input gives byte-identical PNGs. NaN values (missing cells) are skipped; a label without any finite value is
listed as "label (no runs)".
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable, Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from spirl.common.plots import save_figure  # noqa: E402

_COLORS = plt.get_cmap("tab10").colors


def plot_learning_curves(curves: Mapping[str, Mapping[str, dict]], path: Path, title: str) -> None:
    """Evaluation return vs environment steps, one panel per game, mean line with a low-high band per label.

    Args:
        curves: game -> label -> {"env_step": [T], "mean": [T], "low": [T], "high": [T], "n_seeds": int}.
    """
    save_figure(_build_learning_curves(curves, title), path)


def plot_intervals(estimates: Mapping[str, Mapping[str, tuple[float, float, float]]], path: Path, title: str,
                   note: str) -> None:
    """Interval estimates: one panel per metric, per label a bar from low to high with a tick at the point.

    Args:
        estimates: label -> metric -> (point, low, high); metrics in the order of the first label's dict.
        note: caption printed below the panels.
    """
    save_figure(_build_intervals(estimates, title, note), path)


def plot_performance_profile(profiles: Mapping[str, Mapping[str, list]], path: Path, title: str, note: str) -> None:
    """Performance profiles (run-score distributions) with confidence bands, one curve per label.

    Args:
        profiles: label -> {"tau": [M], "fraction": [M], "low": [M], "high": [M]}.
        note: caption printed below the plot.
    """
    save_figure(_build_performance_profile(profiles, title, note), path)


def _build_learning_curves(curves: Mapping[str, Mapping[str, dict]], title: str) -> plt.Figure:
    """The learning-curve figure (a row of panels, one per game), not yet saved."""
    games = list(curves)
    colors = _color_map(label for game in games for label in curves[game])
    fig, axes = plt.subplots(1, max(len(games), 1), figsize=(4.2 * max(len(games), 1), 3.4), squeeze=False,
                             layout="constrained")
    for ax, game in zip(axes[0], games, strict=False):
        for label, curve in curves[game].items():
            x, mean = _floats(curve.get("env_step")), _floats(curve.get("mean"))
            ok = np.isfinite(x) & np.isfinite(mean) if x.shape == mean.shape else np.zeros(0, bool)
            if not ok.any():
                ax.plot([], [], color=colors[label], label=f"{label} (no runs)")
                continue
            ax.plot(x[ok], mean[ok], color=colors[label], marker="o", ms=3, label=f"{label} (n={curve['n_seeds']})")
            low, high = _floats(curve.get("low")), _floats(curve.get("high"))
            if low.shape == x.shape and high.shape == x.shape:
                band = ok & np.isfinite(low) & np.isfinite(high)
                ax.fill_between(x[band], low[band], high[band], color=colors[label], alpha=0.2, lw=0)
        ax.set(title=game, xlabel="environment steps", ylabel="episode return")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title)
    return fig


def _build_intervals(estimates: Mapping[str, Mapping[str, tuple[float, float, float]]], title: str,
                     note: str) -> plt.Figure:
    """The interval-estimate figure (one panel per metric, one row per label), not yet saved."""
    labels = list(estimates)
    metrics = list(estimates[labels[0]]) if labels else []
    colors = _color_map(labels)
    has_data = {label: any(np.isfinite(_floats(v)).any() for v in estimates[label].values()) for label in labels}
    fig, axes = plt.subplots(1, max(len(metrics), 1), figsize=(3.2 * max(len(metrics), 1), 0.5 * len(labels) + 1.6),
                             squeeze=False, sharey=True)
    y = np.arange(len(labels))[::-1]
    for ax, metric in zip(axes[0], metrics, strict=False):
        for row, label in zip(y, labels, strict=True):
            point, low, high = _triple(estimates[label].get(metric))
            if np.isfinite(low) and np.isfinite(high):
                ax.barh(row, high - low, left=low, height=0.6, color=colors[label], alpha=0.6)
            if np.isfinite(point):
                ax.vlines(point, row - 0.35, row + 0.35, color="k", lw=1.5)
        ax.set(title=metric, xlabel="human-normalised score", ylim=(-0.7, len(labels) - 0.3))
        ax.grid(axis="x", alpha=0.3)
    axes[0, 0].set_yticks(y, [label if has_data[label] else f"{label} (no runs)" for label in labels])
    fig.suptitle(title)
    fig.tight_layout()
    _caption(fig, note)
    return fig


def _build_performance_profile(profiles: Mapping[str, Mapping[str, list]], title: str, note: str) -> plt.Figure:
    """The performance-profile figure (one panel, one step curve with a band per label), not yet saved."""
    colors = _color_map(profiles)
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    for label, prof in profiles.items():
        tau, frac = _floats(prof.get("tau")), _floats(prof.get("fraction"))
        ok = np.isfinite(tau) & np.isfinite(frac) if tau.shape == frac.shape else np.zeros(0, bool)
        if not ok.any():
            ax.plot([], [], color=colors[label], label=f"{label} (no runs)")
            continue
        ax.plot(tau[ok], frac[ok], color=colors[label], drawstyle="steps-post", label=label)
        low, high = _floats(prof.get("low")), _floats(prof.get("high"))
        if low.shape == tau.shape and high.shape == tau.shape:
            band = ok & np.isfinite(low) & np.isfinite(high)
            ax.fill_between(tau[band], low[band], high[band], step="post", color=colors[label], alpha=0.2, lw=0)
    ax.set(title=title, xlabel="human-normalised score τ", ylabel="fraction of runs with score > τ", ylim=(0, 1.02))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    _caption(fig, note)
    return fig


def _color_map(labels: Iterable[str]) -> dict[str, tuple]:
    """A fixed colour per label, in order of first appearance."""
    out: dict[str, tuple] = {}
    for label in labels:
        out.setdefault(label, _COLORS[len(out) % len(_COLORS)])
    return out


def _floats(values) -> np.ndarray:
    """A 1-D float array (NaN for None entries); empty for None."""
    if values is None:
        return np.zeros(0)
    return np.array([np.nan if v is None else v for v in np.ravel(np.asarray(values, dtype=object))], dtype=float)


def _triple(value) -> tuple[float, float, float]:
    """(point, low, high) as floats; all NaN for a missing cell."""
    v = _floats(value)
    return (float(v[0]), float(v[1]), float(v[2])) if v.size == 3 else (np.nan, np.nan, np.nan)


def _caption(fig: plt.Figure, note: str) -> None:
    """Print `note` (wrapped to the figure's width) as a caption below the axes."""
    if note:
        width = max(40, int(18 * fig.get_figwidth()))
        fig.text(0.01, -0.01, textwrap.fill(note, width), ha="left", va="top", fontsize=7)
