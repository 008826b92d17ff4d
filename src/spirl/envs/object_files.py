"""Object files (SPEC §14): per-frame object lists stored as flat arrays (CSR offsets), so they fit in an .npz
without pickling; see `pack_objects` for the layout."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from spirl.envs.objects import ObjectBox


def pack_objects(frames: Sequence[Sequence[tuple[str, Sequence[int], bool]]]) -> dict[str, np.ndarray]:
    """Flatten per-frame object lists into arrays for an .npz (no pickles).

    Args:
        frames: F lists of (category, (x, y, w, h), hud) with integer boxes in screen pixels; `hud` marks an
            object the extractor lists only as part of the HUD (stored; the dynamic flag is decided later).
    Returns:
        "offsets" [F + 1] int64 (frame f owns rows offsets[f]:offsets[f + 1]); "category" [M] int16 index into
        "categories" [C] (sorted unicode names); "boxes" [M, 4] int16 (x, y, w, h); "hud" [M] bool.
    """
    names = sorted({str(o[0]) for objs in frames for o in objs})
    lookup = {c: i for i, c in enumerate(names)}
    counts = [len(objs) for objs in frames]
    rows = [o for objs in frames for o in objs]
    boxes = np.array([o[1] for o in rows], dtype=np.int64).reshape(len(rows), 4)
    if boxes.size and (boxes.min() < np.iinfo(np.int16).min or boxes.max() > np.iinfo(np.int16).max):
        raise ValueError("box coordinates do not fit int16")
    return {
        "offsets": np.concatenate([[0], np.cumsum(counts, dtype=np.int64)]).astype(np.int64),
        "category": np.array([lookup[str(o[0])] for o in rows], dtype=np.int16),
        "categories": np.array(names, dtype=np.str_) if names else np.zeros(0, dtype="<U1"),
        "boxes": boxes.astype(np.int16),
        "hud": np.array([bool(o[2]) for o in rows], dtype=bool),
    }


def unpack_objects(arrays: Mapping[str, np.ndarray], dynamic_categories: Iterable[str]) -> list[list[ObjectBox]]:
    """Per-frame ObjectBox lists from `pack_objects` arrays, with the dynamic flag set.

    Args:
        arrays: the dict `pack_objects` returned (or the loaded .npz).
        dynamic_categories: names of the game's dynamic categories (player, enemies, moving items); an object
            is dynamic iff its category is one of them and it is not a HUD object.
    Returns:
        F lists of ObjectBox(category, (x, y, w, h) ints, dynamic).
    """
    dynamic_set = set(dynamic_categories)
    names = [str(c) for c in arrays["categories"]]
    offsets = np.asarray(arrays["offsets"])
    boxes, cat, hud = np.asarray(arrays["boxes"]), np.asarray(arrays["category"]), np.asarray(arrays["hud"])
    rows = [ObjectBox(names[c], tuple(int(v) for v in b), names[c] in dynamic_set and not h)
            for c, b, h in zip(cat.tolist(), boxes, hud.tolist(), strict=True)]
    return [rows[offsets[f]:offsets[f + 1]] for f in range(len(offsets) - 1)]
