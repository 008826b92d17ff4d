"""Game objects of a frame and the patches they cover (SPEC §14).

Geometry (`box_patches`). A box (x, y, w, h) is in raw-screen pixels (210 rows x 160 columns) and covers the
half-open pixel rectangle [x, x + w) x [y, y + h). The frame is the screen resized to S x S (SPEC §1), so the
box's rectangle in frame pixels is [x * S/160, (x + w) * S/160) x [y * S/210, (y + h) * S/210). Patch (r, c)
of size p covers frame pixels [c p, (c + 1) p) x [r p, (r + 1) p), and its index is r * (S / p) + c (row-major).
A box touches a patch when the two half-open rectangles share an area > 0: along each axis
``lo_box < hi_patch and hi_box > lo_patch``. Rectangles that only meet at an edge or a corner do not touch;
a box with w <= 0 or h <= 0 touches nothing (it is dropped); parts of a box outside the screen touch nothing
(the patches tile the frame exactly). The tests are exact for integer boxes: both sides are multiplied by
160 (or 210) before comparing, so no product is rounded. The bilinear resize also blends a box's edge pixel
into at most one neighbouring frame pixel; the rectangle rule ignores that fraction-of-a-pixel bleed.

The recall of selected patches on these objects is `spirl.envs.recall`; the object files, `spirl.envs.object_files`.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

SCREEN_HW = (210, 160)  # raw ALE screen: rows, columns


class ObjectBox(NamedTuple):
    """One object of one frame: category name, (x, y, w, h) box in screen pixels, dynamic flag."""

    category: str
    box: tuple[float, float, float, float]
    dynamic: bool


def grid_side(frame_px: int, patch_px: int) -> int:
    """Patches per row P = frame_px / patch_px (N = P^2); ValueError unless patch_px divides frame_px."""
    if frame_px < 1 or patch_px < 1 or frame_px % patch_px:
        raise ValueError(f"patch_px ({patch_px}) must be >= 1 and divide frame_px ({frame_px})")
    return frame_px // patch_px


def _axis_overlap(lo: np.ndarray, hi: np.ndarray, screen: int, frame_px: int, patch_px: int) -> np.ndarray:
    """Which patch rows (or columns) the scaled intervals [lo, hi) * frame_px / screen overlap.

    Args:
        lo, hi: [M] interval ends in screen pixels (float64).
        screen: screen extent along this axis (160 or 210); frame_px, patch_px: frame and patch size.
    Returns:
        [M, P] bool: lo * S/screen < (j + 1) p and hi * S/screen > j p, tested as lo * S < (j + 1) p * screen and
        hi * S > j p * screen (exact for integer inputs).
    """
    p_count = frame_px // patch_px
    edges = np.arange(p_count + 1, dtype=np.float64) * patch_px * screen  # [P + 1] patch edges x screen
    lo_s = lo[:, None] * frame_px
    hi_s = hi[:, None] * frame_px
    return (lo_s < edges[None, 1:]) & (hi_s > edges[None, :-1])


def box_patches(boxes, screen_hw: tuple[int, int] = SCREEN_HW, *, frame_px: int, patch_px: int) -> np.ndarray:
    """Patches whose pixels a screen-space box overlaps (see the module doc for the exact rule).

    Args:
        boxes: [4] or [M, 4] (x, y, w, h) in screen pixels (ints or floats; M may be 0).
        screen_hw: (rows, columns) of the screen the boxes refer to, (210, 160) for ALE.
        frame_px: frame side S (the screen is resized to S x S); patch_px: patch side p, dividing S.
    Returns:
        [N] bool for one box, [M, N] bool for M boxes; N = (S / p)^2, row-major patch index r * (S / p) + c.
        Rows of boxes with w <= 0 or h <= 0 are all False.
    """
    p_count = grid_side(frame_px, patch_px)
    b = np.asarray(boxes, dtype=np.float64)
    single = b.shape == (4,)
    if single:
        b = b[None]
    elif b.size == 0:
        b = b.reshape(0, 4)
    if b.ndim != 2 or b.shape[1] != 4:
        raise ValueError(f"boxes must be [4] or [M, 4] (x, y, w, h), got shape {np.shape(boxes)}")
    if not np.all(np.isfinite(b)):
        raise ValueError("boxes must be finite")
    x, y, w, h = b.T
    cols = _axis_overlap(x, x + w, screen_hw[1], frame_px, patch_px)  # [M, P]
    rows = _axis_overlap(y, y + h, screen_hw[0], frame_px, patch_px)  # [M, P]
    touched = rows[:, :, None] & cols[:, None, :]  # [M, P, P]
    touched &= ((w > 0) & (h > 0))[:, None, None]
    out = touched.reshape(len(b), p_count * p_count)
    return out[0] if single else out
