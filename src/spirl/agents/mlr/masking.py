"""MLR's space-time cube masks (SPEC §15.2): one draw per update, shared by the batch and the stacked frames.

A window of T = `steps` observations (T = 16) is cut into T / `depth` cubes of `depth` consecutive steps (depth 8:
2 cubes). Each cube has one spatial mask over a grid of `grid` × `grid` cells (an 84 px image in 12 px patches: 7 × 7
= 49 cells), drawn as one random permutation of its own, independently of the other cubes, from an explicit
numpy Generator. The cell mask is upsampled by nearest neighbour (each cell a `patch_px` × `patch_px` block) and
multiplies the raw observation.

Convention (SPEC §15.2): **1 = keep, 0 = masked**. Per cube, exactly int(ratio · cells) cells are 1 and the rest 0:
ratio 0.5 on 49 cells gives 24 kept cells and 25 zeroed ones. The released code builds its cube with
`num_mask = int(mask_ratio * num_patches)` ones and comments "1 for mask", but then multiplies the observation
by that array, so its ones are the cells that are *kept*; the comment is wrong, the arithmetic is what SPEC (and
this module) follows.

One mask [T, H, W] serves every sample of the batch (one draw per update, not per sample) and all F stacked frames
of an observation. Order (SPEC §15.2–15.3): mask first, then augment (`spirl.agents.mlr.augment`), so the random
shift moves the mask with the image.

Scale (`apply_masks`): the released code multiplies the uint8 observation (0–255) by the float mask, so the masked
stream stays on the 0–255 scale ("faithful", a code quirk SPEC keeps by default); "normalized" divides by 255 first
(0–1, the scale of the unmasked stream).
"""

from __future__ import annotations

import numpy as np
import torch

MASK_SCALES = ("faithful", "normalized")  # apply_masks(scale=...): 0–255 floats (released code) or 0–1
STEPS = 16  # T, the window of consecutive observations of one MLR update
CUBE_DEPTH = 8  # steps per cube (they share one spatial mask)
MASK_RATIO = 0.5  # int(ratio · cells) cells kept per cube
IMAGE_PX = 84  # side of an observation frame
PATCH_PX = 12  # side of one mask cell in pixels (84 / 12 = 7 cells a side)


def _positive_int(name: str, value: object) -> int:
    """`value` as an int >= 1, or a ValueError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def grid_size(image_px: int = IMAGE_PX, patch_px: int = PATCH_PX) -> int:
    """Cells a side of the mask grid: image_px / patch_px (84 / 12 = 7); image_px must be divisible by patch_px."""
    image_px, patch_px = _positive_int("image_px", image_px), _positive_int("patch_px", patch_px)
    if image_px % patch_px:
        raise ValueError(f"image_px ({image_px}) must be divisible by patch_px ({patch_px})")
    return image_px // patch_px


def kept_cells(ratio: float, cells: int) -> int:
    """Cells kept (mask value 1) per cube: int(ratio · cells), as the released code counts (0.5 · 49 → 24)."""
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float, np.floating)) or not 0.0 <= ratio <= 1.0:
        raise ValueError(f"ratio must be a number in [0, 1], got {ratio!r}")
    return int(ratio * _positive_int("cells", cells))


def cube_masks(
    generator: np.random.Generator,
    steps: int = STEPS,
    depth: int = CUBE_DEPTH,
    ratio: float = MASK_RATIO,
    grid: int = IMAGE_PX // PATCH_PX,
) -> np.ndarray:
    """Cell-level cube masks of one update (SPEC §15.2).

    Cube k covers steps k·depth .. (k + 1)·depth − 1; its grid × grid mask has exactly int(ratio · grid²) ones
    (kept): the cells whose rank in one permutation drawn from `generator` is below that count (one
    `permutation(grid²)` call per cube, in cube order), so the cubes are independent and uniform.

    Args:
        generator: the only source of randomness.
        steps: T, steps in the window (16); a multiple of `depth` (the released code covers whole cubes only).
        depth: steps per cube (8).
        ratio: fraction of the cells kept, in [0, 1] (0.5 → 24 of 49).
        grid: cells a side (7).
    Returns:
        [T, grid, grid] float32 of 0/1, 1 = keep; the `depth` steps of one cube hold the same mask.
    """
    if not isinstance(generator, np.random.Generator):
        raise ValueError(f"generator must be a numpy.random.Generator, got {type(generator).__name__}")
    steps, depth, grid = _positive_int("steps", steps), _positive_int("depth", depth), _positive_int("grid", grid)
    if steps % depth:
        raise ValueError(f"steps ({steps}) must be a multiple of depth ({depth}): masks cover whole cubes only")
    cells = grid * grid
    keep = kept_cells(ratio, cells)
    cubes = steps // depth
    masks = np.empty((cubes, cells), np.float32)  # [cubes, cells]
    for k in range(cubes):
        masks[k] = generator.permutation(cells) < keep  # cell c is kept iff its rank in the permutation < keep
    masks = masks.reshape(cubes, 1, grid, grid)  # [cubes, 1, grid, grid]
    return np.ascontiguousarray(np.broadcast_to(masks, (cubes, depth, grid, grid)).reshape(steps, grid, grid))


def pixel_masks(
    cell_masks: np.ndarray | torch.Tensor, patch_px: int = PATCH_PX, device: torch.device | str | None = None
) -> torch.Tensor:
    """Nearest upsampling of cell masks to pixels: cell (i, j) fills the block [i·p, (i+1)·p) × [j·p, (j+1)·p).

    Args:
        cell_masks: [T, g, g] of 0/1 (as `cube_masks` returns).
        patch_px: p, pixels a side of one cell (12).
        device: where the result lives (None: the input's device, CPU for a numpy array).
    Returns:
        [T, g·p, g·p] float32 (84 × 84 for g = 7, p = 12).
    """
    patch_px = _positive_int("patch_px", patch_px)
    cells = torch.as_tensor(cell_masks, device=device).to(torch.float32)
    if cells.ndim != 3 or cells.shape[1] != cells.shape[2]:
        raise ValueError(f"cell_masks must be [T, g, g], got {tuple(cells.shape)}")
    return cells.repeat_interleave(patch_px, dim=1).repeat_interleave(patch_px, dim=2)  # [T, g·p, g·p]


def draw_masks(
    generator: np.random.Generator,
    steps: int = STEPS,
    depth: int = CUBE_DEPTH,
    ratio: float = MASK_RATIO,
    image_px: int = IMAGE_PX,
    patch_px: int = PATCH_PX,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Pixel masks of one update: `cube_masks` on the image_px / patch_px grid, then `pixel_masks`.

    Returns: [T, image_px, image_px] float32 of 0/1 (1 = keep), shared by the batch and the stacked frames.
    """
    grid = grid_size(image_px, patch_px)
    return pixel_masks(cube_masks(generator, steps, depth, ratio, grid), patch_px, device)


def apply_masks(obs: torch.Tensor, masks: torch.Tensor, scale: str = "faithful") -> torch.Tensor:
    """Mask a batch of windows: every sample and every stacked frame of step t is multiplied by masks[t].

    Args:
        obs: [B, T, F, H, W] raw observations, uint8 (0–255) or floating.
        masks: [T, H, W] of 0/1 (`draw_masks`), 1 = keep.
        scale: "faithful": obs · mask as floats (uint8 input stays on 0–255, the released code's quirk);
            "normalized": obs / 255 · mask (uint8 input on 0–1).
    Returns:
        [B, T, F, H, W], float32 for uint8 input, the input's floating dtype otherwise; on obs's device.
    """
    if scale not in MASK_SCALES:
        raise ValueError(f"scale must be one of {MASK_SCALES}, got {scale!r}")
    if obs.ndim != 5:
        raise ValueError(f"obs must be [B, T, F, H, W], got {tuple(obs.shape)}")
    if masks.ndim != 3 or tuple(masks.shape) != (obs.shape[1], obs.shape[3], obs.shape[4]):
        raise ValueError(f"masks must be [T, H, W] = {(obs.shape[1], *obs.shape[3:])}, got {tuple(masks.shape)}")
    dtype = obs.dtype if obs.is_floating_point() else torch.float32
    x = obs.to(dtype)  # [B, T, F, H, W]
    if scale == "normalized":
        x = x / 255.0
    m = masks.to(device=obs.device, dtype=dtype)[None, :, None]  # [1, T, 1, H, W]
    return x * m  # [B, T, F, H, W]
