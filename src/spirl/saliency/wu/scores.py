"""The `wu_mask` scores (SPEC §13): the mask Ψ of each frame placed where the network reads and writes it, then
pooled onto SPIRL's patches.

Cell (i, j) of the 7×7 map is computed from, and decoded into, the 36×36-pixel block rows 8i…8i+35, columns
8j…8j+35 of the 84×84 input: the receptive field of Φ's and Ψ's three convolutions (k8 s4, k4 s2, k3 s1) and the
footprint of the decoder's three transposed ones. The blocks overlap (stride 8), so Ψ is back-projected: each pixel
takes the mean of Ψ over the cells whose block contains it. That 84×84 map is resized to the observation frame
(96×96, bilinear, align_corners=False) and averaged over each 8×8 patch, row-major (spirl.saliency.mae.patchify's
order). It is not a 12-pixel tile per cell centred at 12i + 6: that reading shifts edge cells by up to 1.6 patches.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from spirl.saliency.wu.data import gray_frames, gray_input
from spirl.saliency.wu.model import GRAY_SIZE, MASK_SIZE, WuAttention

BLOCK_PX = 36  # side of a cell's block on the 84×84 input: 8 + (4 − 1)·4 + (3 − 1)·8 (receptive field)
CELL_STRIDE_PX = 8  # distance between neighbouring cells' blocks: 4 · 2 · 1 (the product of the strides)


def cell_blocks(size: int = GRAY_SIZE, cells: int = MASK_SIZE, block: int = BLOCK_PX,
                stride: int = CELL_STRIDE_PX) -> torch.Tensor:
    """Which cells' blocks cover each pixel along one axis, as averaging weights.

    Returns: float32 [size, cells], W[y, i] = 1 / n(y) if stride·i <= y < stride·i + block, else 0, with n(y) the
    number of blocks covering y (every row sums to 1). ValueError if a pixel is covered by no block.
    """
    y = torch.arange(size)[:, None]
    start = stride * torch.arange(cells)[None, :]
    cover = ((y >= start) & (y < start + block)).float()  # [size, cells]
    counts = cover.sum(1, keepdim=True)
    if (counts == 0).any():
        raise ValueError(f"blocks of {block} px at stride {stride} ({cells} cells) leave pixels of a {size}-px side "
                         "uncovered")
    return cover / counts


def back_project(mask: torch.Tensor) -> torch.Tensor:
    """Ψ on the 84×84 input: each pixel the mean of Ψ over the cells whose 36×36 block contains it.

    Separable, because a pixel is in block (i, j) exactly when its row is in block row i and its column in block
    column j: map = W Ψ Wᵀ with W = cell_blocks().
    Args: mask [B, 1, 7, 7]. Returns: float32 [B, 1, 84, 84].
    """
    if mask.dim() != 4 or tuple(mask.shape[1:]) != (1, MASK_SIZE, MASK_SIZE):
        raise ValueError(f"mask must be [B, 1, {MASK_SIZE}, {MASK_SIZE}], got {tuple(mask.shape)}")
    w = cell_blocks().to(mask.device)  # [84, 7]
    return torch.einsum("yi,bcij,xj->bcyx", w, mask.float(), w)


def mask_patch_scores(mask: torch.Tensor, frame_px: int, patch_px: int) -> torch.Tensor:
    """Patch scores from a mask: back-projection to 84×84, bilinear resize (align_corners=False) to frame_px²,
    mean over each patch.

    Args: mask [B, 1, 7, 7] (Ψ); frame_px the observation frame side (96); patch_px the patch side (8), a divisor of
        frame_px.
    Returns: float32 [B, N], N = (frame_px / patch_px)², patches row-major (spirl.saliency.mae.patchify's order).
    """
    _check_grid(frame_px, patch_px)
    pixels = back_project(mask)  # [B, 1, 84, 84]
    up = F.interpolate(pixels, size=(frame_px, frame_px), mode="bilinear", align_corners=False)
    pooled = F.avg_pool2d(up, patch_px)  # [B, 1, grid, grid]
    return pooled.flatten(1)  # [B, grid²]


def _check_grid(frame_px: int, patch_px: int) -> int:
    """Patches per side, frame_px / patch_px; ValueError unless patch_px >= 1 divides frame_px."""
    if patch_px < 1 or frame_px < 1 or frame_px % patch_px:
        raise ValueError(f"frame_px ({frame_px}) must be a positive multiple of patch_px ({patch_px})")
    return frame_px // patch_px


def patch_scores(model: WuAttention, frames: np.ndarray | torch.Tensor, frame_px: int, patch_px: int,
                 chunk: int = 1024) -> torch.Tensor:
    """SPEC §13 `wu_mask` scores: Ψ of each frame's gray84 version, placed and pooled onto SPIRL's patches.

    Runs in eval mode without gradient, `chunk` frames per pass; the model's previous mode is restored.
    Args: frames uint8 [B, frame_px, frame_px, 3] RGB observation frames; frame_px (96); patch_px (8).
    Returns: float32 [B, N] in [0, 1] on the model's device, N = (frame_px / patch_px)², row-major.
    """
    shape = tuple(frames.shape)
    if len(shape) != 4 or shape[1:] != (frame_px, frame_px, 3):
        raise ValueError(f"frames must be [B, {frame_px}, {frame_px}, 3], got {shape}")
    device = next(model.parameters()).device
    gray = gray_frames(frames)  # [B, 84, 84] uint8
    grid = _check_grid(frame_px, patch_px)
    out = torch.empty(shape[0], grid * grid, device=device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for start in range(0, shape[0], chunk):
                part = slice(start, start + chunk)
                out[part] = mask_patch_scores(model.mask(gray_input(gray[part], device)), frame_px, patch_px)
    finally:
        model.train(was_training)
    return out
