"""Saliency quality (SPEC §14): the table over games x scorers and the figure of selections on object boxes.

Input records are the per-game JSONs of src/saliency_quality.py (a run record whose "result" holds, per scorer, the
`spirl.envs.recall.recall_report` dict plus timing, and "scorer_order": criteria.scorers' order, since the JSON's keys
are sorted). `quality_rows` flattens them into one
row per game x scorer (the CSV), `quality_markdown` renders the same rows for the report, and
`plot_quality_frames` draws a few frames x scorers with the object boxes and each scorer's selected patches.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from spirl.envs.objects import SCREEN_HW, ObjectBox, grid_side
from spirl.envs.recall import MOTION_GROUPS

STATS = ("recall", "lift", "precision", "mean_k")  # statistics with a bootstrap CI, as recall_report names them
MOTION_LABELS = {"objects_moved": "a dynamic object moved", "elsewhere_only": "only other pixels changed",
                 "no_motion": "nothing moved", "no_previous": "episode start"}


def _value(entry: Mapping | None) -> float | None:
    """The point value of a recall_report {"value", "ci"} entry (None if absent or undefined)."""
    return None if entry is None else entry.get("value")


def quality_rows(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One flat row per game x scorer, games in the order given, scorers in criteria.scorers' order.

    Args:
        records: per-game saliency-quality JSONs (their "result" part is read).
    Returns:
        rows with identical keys (scorers in each record's "scorer_order"): game, scorer, n_frames,
        n_dynamic_objects, k_max, then for each of recall, lift, precision, mean_k the value and its CI ends
        (<stat>, <stat>_ci_low, <stat>_ci_high), random_recall, frames_per_s, seconds, per_category (text
        "Category value (n=count); ..."), recall_<Category> for every dynamic category of any game (None where
        a game has no such object), and per motion group of the record (spirl.envs.recall.MOTION_GROUPS; absent
        from records made before the split) frames_<group>, recall_<group>, lift_<group>. Undefined values are None.
    """
    categories: list[str] = []
    for rec in records:
        categories += [c for c in rec["result"]["dynamic_categories"] if c not in categories]
    rows = []
    for rec in records:
        res = rec["result"]
        for scorer in res["scorer_order"]:
            rep = res["scorers"][scorer]
            row: dict[str, Any] = {"game": res["game"], "scorer": scorer, "n_frames": rep["n_frames"],
                                   "n_dynamic_objects": rep["n_dynamic_objects"], "k_max": res["k_max"]}
            for stat in STATS:
                low, high = rep[stat]["ci"]
                row.update({stat: rep[stat]["value"], f"{stat}_ci_low": low, f"{stat}_ci_high": high})
            row.update({"random_recall": _value(rep["random_recall"]), "frames_per_s": rep["frames_per_s"],
                        "seconds": rep["seconds"]})
            per_cat = rep["per_category"]
            row["per_category"] = "; ".join(
                f"{c} {_fmt(_value(per_cat[c]['recall']), 2)} (n={per_cat[c]['n_objects']})"
                for c in res["dynamic_categories"] if c in per_cat)
            for c in categories:
                row[f"recall_{c}"] = _value(per_cat[c]["recall"]) if c in per_cat else None
            for group, part in rep.get("by_motion", {}).items():  # records made before the split have none
                row[f"frames_{group}"] = part["n_frames"]
                row[f"recall_{group}"] = _value(part.get("recall"))
                row[f"lift_{group}"] = _value(part.get("lift"))
            rows.append(row)
    return rows


def _fmt(value: float | None, digits: int) -> str:
    """A number with `digits` decimals; an em dash for None or NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:.{digits}f}"


def _with_ci(row: Mapping[str, Any], stat: str, digits: int) -> str:
    """"value [low, high]" of one statistic of a row (the CI left out when the bootstrap gave none)."""
    text = _fmt(row[stat], digits)
    low, high = row[f"{stat}_ci_low"], row[f"{stat}_ci_high"]
    if low is None or high is None:
        return text
    return f"{text} [{_fmt(low, digits)}, {_fmt(high, digits)}]"


def quality_markdown(rows: Sequence[Mapping[str, Any]], profile: str | None = None, ci_level: float = 0.95) -> str:
    """The saliency-quality table as Markdown (a "## Saliency quality" section), from `quality_rows`' rows."""
    where = f"Profile `{profile}`. " if profile else ""
    level = f"{ci_level:.0%}"
    lines = [
        "## Saliency quality: object recall of each scorer's selection (SPEC §14)", "",
        f"{where}Per game and scorer, on random-policy frames with OCAtari's RAM object boxes: recall = share of "
        "dynamic objects touching at least one selected patch; precision = share of selected patches touching any "
        "object box (HUD included); mean K = selected patches per frame (dynamic K capped at the game's K_max); "
        "lift = recall / the expected recall of K uniformly random patches with the same K per frame (1 = no better "
        f"than chance). Brackets: {level} percentile-bootstrap CIs over frames.", "",
        "| game | scorer | recall | lift | precision | mean K (K_max) | recall per category | frames | frames/s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['game']} | {row['scorer']} | {_with_ci(row, 'recall', 3)} | {_with_ci(row, 'lift', 2)} | "
            f"{_with_ci(row, 'precision', 3)} | {_with_ci(row, 'mean_k', 1)} ({row['k_max']}) | "
            f"{row['per_category'] or '—'} | {row['n_frames']} | {_fmt(row['frames_per_s'], 1)} |")
    groups = [g for g in MOTION_GROUPS if any(f"frames_{g}" in row for row in rows)]
    if groups:
        lines += ["", "Recall (lift) on the frames of each motion group: what changed since the previous frame, read "
                  "from the pixels (spirl.envs.recall.motion_groups). A scorer of motion cannot tell patches apart "
                  "on a frame where nothing moved.", "",
                  "| game | scorer | " + " | ".join(f"{MOTION_LABELS[g]}" for g in groups) + " |",
                  "|---|---|" + "---|" * len(groups)]
        for row in rows:
            cells = [f"{_fmt(row.get(f'recall_{g}'), 3)} ({_fmt(row.get(f'lift_{g}'), 2)}); "
                     f"{row.get(f'frames_{g}', 0)} frames" for g in groups]
            lines.append(f"| {row['game']} | {row['scorer']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_quality_frames(frames: np.ndarray, objects: Sequence[Sequence[ObjectBox]],
                        selections: Mapping[str, np.ndarray], path: Path, *, patch_px: int, title: str,
                        screen_hw: tuple[int, int] = SCREEN_HW) -> None:
    """Rows = frames, columns = scorers: the frame with the scorer's unselected patches dimmed and its selected
    patches outlined in yellow, and the object boxes (dynamic objects in red, other objects in cyan).

    Args:
        frames: uint8 [R, S, S, 3]; objects: R lists of ObjectBox (boxes in screen pixels).
        selections: scorer -> [R, N] bool selected patches; patch_px: patch side; title: the figure's title.
    """
    from matplotlib.patches import Rectangle

    from spirl.common.plots import plt, save_figure
    from spirl.saliency.figures import highlight, patch_mask_image

    n_rows, size = len(frames), frames.shape[1]
    grid = grid_side(size, patch_px)
    sy, sx = size / screen_hw[0], size / screen_hw[1]
    names = list(selections)
    fig, axes = plt.subplots(n_rows, len(names), figsize=(2.1 * len(names), 2.1 * n_rows + 0.4), squeeze=False,
                             layout="constrained")
    for r in range(n_rows):
        for c, name in enumerate(names):
            ax = axes[r][c]
            chosen = np.flatnonzero(selections[name][r])
            shown = highlight(frames[r], patch_mask_image(chosen, grid, patch_px), dim=0.35)
            ax.imshow(shown, interpolation="nearest", extent=(0, size, size, 0))
            for idx in chosen:
                row, col = divmod(int(idx), grid)
                ax.add_patch(Rectangle((col * patch_px, row * patch_px), patch_px, patch_px, fill=False,
                                       edgecolor="yellow", linewidth=0.6, alpha=0.8))
            for obj in objects[r]:
                x, y, w, h = obj.box
                ax.add_patch(Rectangle((x * sx, y * sy), w * sx, h * sy, fill=False, linewidth=1.0,
                                       edgecolor="red" if obj.dynamic else "cyan"))
            ax.set(xlim=(0, size), ylim=(size, 0), xticks=[], yticks=[])
            if r == 0:
                ax.set_title(name, fontsize=9)
            ax.text(1, size - 1, f"K={len(chosen)}", color="white", fontsize=7, va="bottom",
                    bbox={"facecolor": "black", "alpha": 0.6, "pad": 1, "linewidth": 0})
    fig.suptitle(f"{title}\nboxes: red = dynamic objects, cyan = other objects; yellow, undimmed = selected patches",
                 fontsize=9)
    save_figure(fig, path)
