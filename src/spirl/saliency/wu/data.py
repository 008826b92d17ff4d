"""The Wu mask's inputs (SPEC §13): observation frames as gray 84×84 frames, and (source, target) training pairs
from one episode."""

from __future__ import annotations

import numpy as np
import torch

from spirl.envs.preprocess import to_gray84
from spirl.saliency.wu.model import GRAY_SIZE


def gray_frames(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Observation frames to the mask's input frames: spirl.envs.preprocess.to_gray84 (cv2 gray, bilinear resize).

    Args: frames uint8 [B, H, W, 3] RGB. Returns: uint8 CPU tensor [B, 84, 84] (store these, convert per batch).
    """
    if isinstance(frames, torch.Tensor):
        frames = frames.cpu().numpy()
    return torch.from_numpy(to_gray84(frames))


def gray_input(gray: torch.Tensor, device: torch.device | str | None = None) -> torch.Tensor:
    """uint8 gray frames [B, 84, 84] to the network input float32 [B, 1, 84, 84] in [0, 1] (on `device`)."""
    if gray.dtype != torch.uint8 or gray.dim() != 3 or tuple(gray.shape[1:]) != (GRAY_SIZE, GRAY_SIZE):
        raise ValueError(f"gray frames must be uint8 [B, {GRAY_SIZE}, {GRAY_SIZE}], got {gray.dtype} "
                         f"{tuple(gray.shape)}")
    return gray.to(device)[:, None].float() / 255.0


def pair_indices(episodes: np.ndarray | torch.Tensor, batch: int, max_gap: int = 60,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample (source, target) frame index pairs from the same episode, target later by 1..max_gap steps.

    Frames are stored in playing order; an episode is a maximal run of consecutive equal ids in `episodes`. For
    frame i let room(i) = (index of the last frame of i's run) − i. Each pair is drawn as:
      s uniform over the frames with room(s) >= 1 (every frame except the last of its episode);
      t − s uniform over 1..min(max_gap, room(s)).
    So the gap is uniform on 1..max_gap wherever the episode has max_gap more frames after s; near an episode's
    end it is clipped to the frames that remain (never crossing into the next episode).

    Args: episodes [F] int episode id per frame; batch pairs; max_gap >= 1; generator the only random source
        (required).
    Returns: s, t LongTensor [batch] on CPU with s < t <= s + max_gap, episodes[s] == episodes[t].
    """
    if not isinstance(generator, torch.Generator):
        raise TypeError("pair_indices needs an explicit torch.Generator")
    if isinstance(max_gap, bool) or not isinstance(max_gap, int) or max_gap < 1:
        raise ValueError(f"max_gap must be a positive integer, got {max_gap!r}")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 0:
        raise ValueError(f"batch must be a non-negative integer, got {batch!r}")
    ids = torch.as_tensor(np.asarray(episodes) if not isinstance(episodes, torch.Tensor) else episodes).cpu()
    if ids.dim() != 1 or ids.is_floating_point():
        raise ValueError(f"episodes must be a 1-D integer array, got {ids.dtype} {tuple(ids.shape)}")
    room = _room(ids)  # [F]
    sources = torch.nonzero(room >= 1).flatten()  # [S]
    if len(sources) == 0:
        raise ValueError("no episode has two frames: cannot sample (source, target) pairs")
    s = sources[torch.randint(len(sources), (batch,), generator=generator)]  # [batch]
    span = room[s].clamp(max=max_gap)  # [batch] allowed gaps 1..span
    u = torch.rand(batch, generator=generator, dtype=torch.float64)  # [batch] in [0, 1)
    gap = 1 + torch.minimum((u * span).floor().long(), span - 1)  # uniform on 1..span
    return s, s + gap


def _room(ids: torch.Tensor) -> torch.Tensor:
    """Frames left in the episode after each frame.

    Args: ids [F] episode id per frame (episodes = runs of equal consecutive ids).
    Returns: [F] int64, room[i] = last index of i's run − i (0 for the last frame of a run).
    """
    n = len(ids)
    idx = torch.arange(n)
    is_last = torch.ones(n, dtype=torch.bool)
    is_last[:-1] = ids[1:] != ids[:-1]
    last_idx = torch.where(is_last, idx, n)  # [F]
    run_end = torch.flip(torch.cummin(torch.flip(last_idx, [0]), 0).values, [0])  # next run end at or after i
    return run_end - idx
