"""Frame preprocessing shared by DE-Rainbow's pixel input and Wu et al.'s mask: RGB observation frames to 84×84 gray."""

from __future__ import annotations

import cv2
import numpy as np


def to_gray84(frames: np.ndarray) -> np.ndarray:
    """RGB observation frames to DE-Rainbow's 84×84 grayscale frames: cv2 RGB2GRAY, then cv2.resize INTER_LINEAR.

    DE-Rainbow's gray84 input is derived from the 96×96 RGB observation frame by this one function, so live frames
    and the recorded pre-training frames (DE-Rainbow-P's replay pre-fill) are processed identically.

    Args: frames uint8 [..., H, W, 3] RGB (H = W = 96 in the pipeline). Returns: uint8 [..., 84, 84].
    """
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim < 3 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be uint8 [..., H, W, 3], got {frames.dtype} {frames.shape}")
    lead = frames.shape[:-3]
    flat = frames.reshape(-1, *frames.shape[-3:])  # [N, H, W, 3]
    out = np.empty((flat.shape[0], 84, 84), dtype=np.uint8)  # [N, 84, 84]
    for i, frame in enumerate(flat):
        gray = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)  # [H, W]
        out[i] = cv2.resize(gray, (84, 84), interpolation=cv2.INTER_LINEAR)
    return out.reshape(*lead, 84, 84)
