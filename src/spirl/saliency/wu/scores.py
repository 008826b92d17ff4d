"""The `wu_mask` scores (SPEC §13): the mask Ψ of each frame pooled onto SPIRL's patches.

Ψ [B, 1, 7, 7] is upsampled bilinearly (align_corners=False) to the observation frame (96×96) and averaged over each
8×8 patch, row-major (spirl.saliency.mae.patchify's order).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from spirl.saliency.wu.data import gray_frames, gray_input
from spirl.saliency.wu.model import WuAttention


def mask_patch_scores(mask: torch.Tensor, frame_px: int, patch_px: int) -> torch.Tensor:
    """Patch scores from a mask: bilinear upsampling (align_corners=False) to frame_px², mean over each patch.

    Args: mask [B, 1, h, w] (Ψ, 7×7); frame_px the observation frame side (96); patch_px the patch side (8), a
        divisor of frame_px.
    Returns: float32 [B, N], N = (frame_px / patch_px)², patches row-major (spirl.saliency.mae.patchify's order).
    """
    if mask.dim() != 4 or mask.shape[1] != 1:
        raise ValueError(f"mask must be [B, 1, h, w], got {tuple(mask.shape)}")
    _check_grid(frame_px, patch_px)
    up = F.interpolate(mask.float(), size=(frame_px, frame_px), mode="bilinear", align_corners=False)
    pooled = F.avg_pool2d(up, patch_px)  # [B, 1, grid, grid]
    return pooled.flatten(1)  # [B, grid²]


def _check_grid(frame_px: int, patch_px: int) -> int:
    """Patches per side, frame_px / patch_px; ValueError unless patch_px >= 1 divides frame_px."""
    if patch_px < 1 or frame_px < 1 or frame_px % patch_px:
        raise ValueError(f"frame_px ({frame_px}) must be a positive multiple of patch_px ({patch_px})")
    return frame_px // patch_px


def patch_scores(model: WuAttention, frames: np.ndarray | torch.Tensor, frame_px: int, patch_px: int,
                 chunk: int = 1024) -> torch.Tensor:
    """SPEC §13 `wu_mask` scores: Ψ of each frame's gray84 version, pooled onto SPIRL's patches.

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
