"""Object recall (SPEC §14): do the selected patches lie on the game's objects?

Metrics (`frame_metrics`, `recall_report`), given per frame a selected patch set (K varies per frame) and the
frame's objects (category, box, dynamic), with the box-to-patch rule of `spirl.envs.objects`:
- objects that touch no patch (size 0 or wholly off-screen) are dropped before anything is counted;
- recall = share of dynamic objects touching >= 1 selected patch, pooled over all objects of all frames
  (overall and per category);
- precision = share of selected patches touching any object box (HUD and static objects included), pooled
  over frames (sum over frames of the on-object selected patches / sum of K);
- random recall = the EXPECTED recall of K patches drawn uniformly without replacement in each frame (same K
  per frame): an object touching m patches is hit with probability 1 - C(N - m, K) / C(N, K), computed exactly
  (Python integers, one correctly rounded division); no random draw is involved;
- lift = recall / random recall;
- 95% CIs: percentile bootstrap over frames (frames resampled with replacement, every ratio recomputed from
  the resampled sums), from a seeded numpy Generator.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any, NamedTuple

import numpy as np

from spirl.envs.objects import SCREEN_HW, box_patches, grid_side


def _to_numpy(x) -> np.ndarray:
    """A numpy array from a numpy array, sequence or torch tensor (detached, moved to the CPU)."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def selection_mask(selection, num_patches: int) -> np.ndarray:
    """One frame's selected patch set as a boolean mask.

    Args:
        selection: [N] bool mask, or [K'] integer patch indices where -1 entries are padding (the layout of
            `spirl.saliency.selection.select_batched` rows); numpy, list or torch.
        num_patches: N.
    Returns:
        [N] bool. ValueError for indices outside [0, N), repeated indices or a bool mask of the wrong length.
    """
    s = _to_numpy(selection)
    if s.ndim != 1:
        raise ValueError(f"a selection must be 1-D (indices or an [N] mask), got shape {s.shape}")
    if s.dtype == np.bool_:
        if s.shape[0] != num_patches:
            raise ValueError(f"a boolean selection must have N={num_patches} entries, got {s.shape[0]}")
        return s.copy()
    if s.size and not np.issubdtype(s.dtype, np.integer):
        raise ValueError(f"selection indices must be integers, got dtype {s.dtype}")
    idx = s[s != -1].astype(np.int64)
    if idx.size and (idx.min() < 0 or idx.max() >= num_patches):
        raise ValueError(f"selection indices must lie in [0, {num_patches}) (-1 = padding), got {idx.tolist()}")
    mask = np.zeros(num_patches, dtype=bool)
    mask[idx] = True
    if int(mask.sum()) != idx.size:
        raise ValueError(f"selection repeats a patch index: {idx.tolist()}")
    return mask


def selection_masks(selections, num_patches: int) -> np.ndarray:
    """Per-frame selections as a [F, N] bool matrix.

    Args:
        selections: [F, N] bool; [F, K_max] int with -1 padding; or a sequence of F per-frame selections
            (each as accepted by `selection_mask`, lengths may differ).
        num_patches: N.
    Returns:
        [F, N] bool.
    """
    if hasattr(selections, "ndim") and selections.ndim == 2:
        arr = _to_numpy(selections)
        if arr.dtype == np.bool_ and arr.shape[1] == num_patches:
            return arr.copy()
    return np.stack([selection_mask(s, num_patches) for s in selections]) if len(selections) else \
        np.zeros((0, num_patches), dtype=bool)


@lru_cache(maxsize=4096)
def _miss_table(num_patches: int, k: int) -> np.ndarray:
    """[N + 1] float64: entry m = C(N - m, K) / C(N, K), the chance that K uniform patches all avoid m given ones."""
    total = math.comb(num_patches, k)
    table = np.array([math.comb(num_patches - m, k) / total for m in range(num_patches + 1)], dtype=np.float64)
    table.flags.writeable = False
    return table


def random_hit_probability(num_touched, k: int, num_patches: int) -> np.ndarray:
    """Probability that K patches drawn uniformly without replacement hit at least one of m touched patches.

    Args:
        num_touched: m, an int or [M] ints in [0, N]; k: K in [0, N]; num_patches: N.
    Returns:
        float64 of m's shape: 1 - C(N - m, K) / C(N, K) (exact integer binomials, one rounded division):
        0 for m = 0 or K = 0, 1 when K > N - m.
    """
    m = np.asarray(num_touched, dtype=np.int64)
    if not 0 <= k <= num_patches:
        raise ValueError(f"K={k} must lie in [0, N={num_patches}]")
    if m.size and (m.min() < 0 or m.max() > num_patches):
        raise ValueError(f"touched-patch counts must lie in [0, {num_patches}]")
    return 1.0 - _miss_table(num_patches, int(k))[m]


def random_selection_masks(ks, num_patches: int, rng: np.random.Generator) -> np.ndarray:
    """Uniformly random selections with given sizes (a seeded draw; the metric itself uses the expectation).

    Args:
        ks: [F] ints in [0, N], the K of each frame; num_patches: N; rng: the Generator drawn from.
    Returns:
        [F, N] bool, row f holding ks[f] patches chosen uniformly without replacement.
    """
    ks = np.asarray(ks, dtype=np.int64)
    if ks.size and (ks.min() < 0 or ks.max() > num_patches):
        raise ValueError(f"ks must lie in [0, N={num_patches}]")
    ranks = np.argsort(rng.random((len(ks), num_patches)), axis=1)  # a uniform permutation per row
    return ranks < ks[:, None]


class _FramesTable(NamedTuple):
    """Per-frame sums and per-object results behind `recall_report` (F frames, M kept objects, C categories)."""

    k: np.ndarray  # [F] int64, selected patches
    on_objects: np.ndarray  # [F] int64, selected patches touching any kept box
    frame: np.ndarray  # [M] int64, frame of each kept object
    category: np.ndarray  # [M] int64, index into categories; -1 for names that no dynamic object has
    dynamic: np.ndarray  # [M] bool
    hit: np.ndarray  # [M] bool, touches >= 1 selected patch
    p_random: np.ndarray  # [M] float64, hit probability of a uniform K-subset
    categories: tuple[str, ...]  # [C] sorted names of the dynamic objects' categories
    n_dropped: int  # objects touching no patch (size 0 or off-screen)


def _objects_arrays(objects: Sequence) -> tuple[list[str], np.ndarray, np.ndarray]:
    """One frame's objects (ObjectBox or (category, box, dynamic) tuples) as names, [M, 4] boxes, [M] dynamic."""
    names = [str(o[0]) for o in objects]
    boxes = np.array([o[1] for o in objects], dtype=np.float64).reshape(len(objects), 4)
    dynamic = np.array([bool(o[2]) for o in objects], dtype=bool)
    return names, boxes, dynamic


def _frames_table(masks: np.ndarray, objects_per_frame: Sequence[Sequence], frame_px: int, patch_px: int,
                  screen_hw: tuple[int, int]) -> _FramesTable:
    """Evaluate every frame: which objects are hit, their random-hit chance, and on-object selected patches.

    Args:
        masks: [F, N] bool selections; objects_per_frame: F lists of (category, box, dynamic).
    """
    n = masks.shape[1]
    if len(objects_per_frame) != masks.shape[0]:
        raise ValueError(f"{masks.shape[0]} selections but {len(objects_per_frame)} object lists")
    k = masks.sum(axis=1).astype(np.int64)
    on_objects = np.zeros(len(k), dtype=np.int64)
    frame, names, dynamic, hit, p_random = [], [], [], [], []
    n_dropped = 0
    for f, objs in enumerate(objects_per_frame):
        cats, boxes, dyn = _objects_arrays(objs)
        touched = box_patches(boxes, screen_hw, frame_px=frame_px, patch_px=patch_px)  # [M, N]
        m = touched.sum(axis=1)
        keep = m > 0
        n_dropped += int((~keep).sum())
        on_objects[f] = int((masks[f] & touched.any(axis=0)).sum())
        frame.append(np.full(int(keep.sum()), f, dtype=np.int64))
        names.extend(c for c, kept in zip(cats, keep, strict=True) if kept)
        dynamic.append(dyn[keep])
        hit.append((touched[keep] & masks[f]).any(axis=1))
        p_random.append(random_hit_probability(m[keep], int(k[f]), n))
    dynamic_all = np.concatenate(dynamic) if dynamic else np.zeros(0, dtype=bool)
    categories = tuple(sorted({c for c, d in zip(names, dynamic_all.tolist(), strict=True) if d}))
    lookup = {c: i for i, c in enumerate(categories)}
    cat_ids = np.array([lookup.get(c, -1) for c in names], dtype=np.int64)  # -1: not a dynamic category
    cat = lambda parts, dtype: np.concatenate(parts) if parts else np.zeros(0, dtype)  # noqa: E731
    return _FramesTable(k=k, on_objects=on_objects, frame=cat(frame, np.int64), category=cat_ids,
                        dynamic=dynamic_all, hit=cat(hit, bool), p_random=cat(p_random, np.float64),
                        categories=categories, n_dropped=n_dropped)


def frame_metrics(selection, objects: Sequence, *, frame_px: int, patch_px: int,
                  screen_hw: tuple[int, int] = SCREEN_HW) -> dict[str, float | int | None]:
    """The metrics of one frame.

    Args:
        selection: the frame's selected patches (indices, -1 padded, or an [N] mask; see `selection_mask`).
        objects: the frame's objects, ObjectBox or (category, (x, y, w, h), dynamic) tuples.
        frame_px, patch_px, screen_hw: geometry, as in `box_patches`.
    Returns:
        "k"; "n_dynamic" (kept dynamic objects); "n_dropped"; "hits" (dynamic objects touching >= 1 selected
        patch); "recall" = hits / n_dynamic; "random_recall" (expected, closed form); "precision" = selected
        patches touching any kept box / K. Ratios with a zero denominator are None.
    """
    n = grid_side(frame_px, patch_px) ** 2
    t = _frames_table(selection_mask(selection, n)[None], [objects], frame_px, patch_px, screen_hw)
    dyn = t.dynamic
    n_dyn = int(dyn.sum())
    k = int(t.k[0])
    return {"k": k, "n_dynamic": n_dyn, "n_dropped": t.n_dropped, "hits": int(t.hit[dyn].sum()),
            "recall": _ratio(t.hit[dyn].sum(), n_dyn), "random_recall": _ratio(t.p_random[dyn].sum(), n_dyn),
            "precision": _ratio(t.on_objects[0], k)}


def _ratio(num: float, den: float) -> float | None:
    """num / den as a float, None when den == 0."""
    return float(num) / float(den) if den else None


def _ci(samples: np.ndarray, level: float) -> list[float | None]:
    """Percentile interval [q(a), q(1 - a)], a = (1 - level) / 2, over the finite samples; [None, None] if none."""
    s = samples[np.isfinite(samples)]
    if s.size == 0:
        return [None, None]
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(s, [alpha, 1.0 - alpha])
    return [float(low), float(high)]


def _bootstrap_weights(n_frames: int, n_boot: int, rng: np.random.Generator, chunk: int = 1000
                       ) -> Iterable[np.ndarray]:
    """Resampling weights in chunks: [b, F] float64 counts of each frame among F frames drawn with replacement."""
    pvals = np.full(n_frames, 1.0 / n_frames)
    for start in range(0, n_boot, chunk):
        yield rng.multinomial(n_frames, pvals, size=min(chunk, n_boot - start)).astype(np.float64)


def recall_report(selections, objects_per_frame: Sequence[Sequence], *, frame_px: int, patch_px: int,
                  rng: np.random.Generator, n_boot: int = 10_000, ci_level: float = 0.95,
                  screen_hw: tuple[int, int] = SCREEN_HW) -> dict[str, Any]:
    """Recall, precision, mean K, random recall and lift over F frames, with bootstrap CIs over frames.

    Args:
        selections: F per-frame selections (see `selection_masks`): [F, N] bool, [F, K_max] -1 padded, or a list.
        objects_per_frame: F lists of ObjectBox / (category, (x, y, w, h), dynamic) tuples.
        frame_px, patch_px, screen_hw: geometry, as in `box_patches`.
        rng: seeded Generator for the bootstrap; n_boot: resamples (0 = no CIs); ci_level in (0, 1).
    Returns:
        JSON-ready dict: "n_frames", "n_dynamic_objects", "n_objects", "n_dropped_objects"; "recall",
        "random_recall", "lift", "precision", "mean_k", each {"value": float | None, "ci": [low, high]}; and
        "per_category": {category: {"n_objects", "recall", "random_recall", "lift"}} for the dynamic
        categories (same value/ci layout). A ratio with a zero denominator is None; CIs use the resamples in
        which it is defined.
    """
    if not 0.0 < ci_level < 1.0:
        raise ValueError(f"ci_level must be in (0, 1), got {ci_level}")
    n = grid_side(frame_px, patch_px) ** 2
    masks = selection_masks(selections, n)
    if masks.shape[0] == 0:
        raise ValueError("recall_report needs at least one frame")
    t = _frames_table(masks, objects_per_frame, frame_px, patch_px, screen_hw)
    n_frames, n_cat = masks.shape[0], len(t.categories)
    dyn = t.dynamic
    # Per-frame sums, [F, 1 + C]: column 0 = all dynamic objects, column 1 + c = category c.
    cols = np.where(dyn, t.category + 1, -1)
    sums = {name: np.zeros((n_frames, 1 + n_cat)) for name in ("hits", "expected", "count")}
    for name, values in (("hits", t.hit), ("expected", t.p_random), ("count", np.ones(len(dyn)))):
        np.add.at(sums[name][:, 0], t.frame[dyn], values[dyn])
        np.add.at(sums[name], (t.frame[dyn], cols[dyn]), values[dyn])
    per_frame = np.concatenate([sums["hits"], sums["expected"], sums["count"], t.k[:, None],
                                t.on_objects[:, None]], axis=1).astype(np.float64)  # [F, 3 (1 + C) + 2]

    def statistics(totals: np.ndarray) -> np.ndarray:
        """[b, 3 (1 + C) + 2] column totals -> [b, 3 (1 + C) + 2] recall, random recall, lift; precision, mean K."""
        w = 1 + n_cat
        hits, expected, count = totals[:, :w], totals[:, w:2 * w], totals[:, 2 * w:3 * w]
        k_sum, on_sum = totals[:, -2], totals[:, -1]
        with np.errstate(divide="ignore", invalid="ignore"):
            recall = np.where(count > 0, hits / count, np.nan)
            random = np.where(count > 0, expected / count, np.nan)
            lift = np.where(random > 0, recall / random, np.nan)
            precision = np.where(k_sum > 0, on_sum / k_sum, np.nan)
        return np.concatenate([recall, random, lift, precision[:, None], (k_sum / n_frames)[:, None]], axis=1)

    point = statistics(per_frame.sum(axis=0)[None])[0]
    boot = [statistics(weights @ per_frame) for weights in _bootstrap_weights(n_frames, n_boot, rng)]
    boot = np.concatenate(boot) if boot else np.full((0, len(point)), np.nan)

    def entry(j: int) -> dict[str, Any]:
        """{"value", "ci"} of statistic column j."""
        value = float(point[j]) if np.isfinite(point[j]) else None
        return {"value": value, "ci": _ci(boot[:, j], ci_level) if n_boot else [None, None]}

    w = 1 + n_cat
    count_total = per_frame[:, 2 * w:3 * w].sum(axis=0)
    return {
        "n_frames": n_frames,
        "n_objects": int(len(dyn)),
        "n_dynamic_objects": int(dyn.sum()),
        "n_dropped_objects": t.n_dropped,
        "recall": entry(0), "random_recall": entry(w), "lift": entry(2 * w),
        "precision": entry(3 * w), "mean_k": entry(3 * w + 1),
        "per_category": {c: {"n_objects": int(count_total[1 + i]), "recall": entry(1 + i),
                             "random_recall": entry(w + 1 + i), "lift": entry(2 * w + 1 + i)}
                         for i, c in enumerate(t.categories)},
    }


MOTION_GROUPS = ("objects_moved", "elsewhere_only", "no_motion", "no_previous")  # motion_groups' labels, in order


def motion_groups(frames: np.ndarray, previous: np.ndarray, has_previous: np.ndarray, objects_per_frame: Sequence,
                  *, patch_px: int, screen_hw: tuple[int, int] = SCREEN_HW) -> np.ndarray:
    """What moved between each frame and its previous frame, read from the pixels (SPEC §14's frames).

    A patch *changed* when any of its pixels differs from the previous frame's. Each frame falls in one group of
    MOTION_GROUPS: "objects_moved" (a changed patch touches a dynamic object's box), "elsewhere_only" (patches
    changed, none on a dynamic object: the HUD, a static item, a background band), "no_motion" (not one pixel
    changed: e.g. a paused or frozen screen), "no_previous" (an episode's first frame). Pixel-level, so a frame_diff
    scorer sees motion exactly where this does.
    Args: frames, previous uint8 [F, S, S, 3]; has_previous bool [F]; objects_per_frame F lists of ObjectBox or
        (category, box, dynamic) tuples; patch_px the patch side.
    Returns: int64 [F], an index into MOTION_GROUPS.
    """
    if frames.shape != previous.shape or len(has_previous) != len(frames) or len(objects_per_frame) != len(frames):
        raise ValueError(f"frames {frames.shape}, previous {previous.shape}, has_previous {len(has_previous)} and "
                         f"{len(objects_per_frame)} object lists must describe the same frames")
    size = frames.shape[1]
    grid = grid_side(size, patch_px)
    differs = (frames != previous).any(axis=3)  # [F, S, S]
    changed = differs.reshape(len(frames), grid, patch_px, grid, patch_px).any(axis=(2, 4)).reshape(len(frames), -1)
    groups = np.empty(len(frames), dtype=np.int64)
    for f, objs in enumerate(objects_per_frame):
        _, boxes, dynamic = _objects_arrays(objs)
        on_objects = box_patches(boxes[dynamic], screen_hw, frame_px=size, patch_px=patch_px).any(axis=0)  # [N]
        if not has_previous[f]:
            groups[f] = MOTION_GROUPS.index("no_previous")
        elif (changed[f] & on_objects).any():
            groups[f] = MOTION_GROUPS.index("objects_moved")
        elif changed[f].any():
            groups[f] = MOTION_GROUPS.index("elsewhere_only")
        else:
            groups[f] = MOTION_GROUPS.index("no_motion")
    return groups
