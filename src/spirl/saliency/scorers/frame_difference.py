"""Frame differences as a scorer (SPEC §13, a control: "salient = what moves").

The score of a patch is the mean over its pixels and channels of |x_t − x_{t−1}|, x in [0, 1], with x_{t−1} the
previous frame of the same env. At an episode start (no previous frame) all scores are equal (zeros), so dynamic-K
keeps K_max (SPEC §5); a frame with no motion is all zeros too, never divided by zero.
"""

from __future__ import annotations

import numpy as np
import torch

from spirl.saliency.mae import patchify
from spirl.saliency.scorers.base import (
    Scorer,
    StreamScorer,
    frames_tensor,
    patch_count,
    streams_and_starts,
)


def frame_diff(frames: np.ndarray | torch.Tensor, previous: np.ndarray | torch.Tensor | None, patch_size: int,
               has_previous: np.ndarray | torch.Tensor | None = None,
               device: torch.device | str | None = None) -> torch.Tensor:
    """Frame-difference scores: mean over each patch's pixels and channels of |x_t − x_{t−1}|, x in [0, 1].

    Row b has a previous frame when `previous` is given and has_previous[b] is True (has_previous None: every
    row has one if `previous` is given, none if it is None). A row without one (an episode start) is all zeros,
    as is a row with no motion; all-equal rows make dynamic-K keep K_max (spirl.saliency.scorers.base). The content
    of previous[b] is ignored where has_previous[b] is False, so a vectorised env can keep a stale buffer there.

    Args:
        frames: uint8 [B, H, W, C], the current frames x_t (numpy or torch).
        previous: uint8 [B, H, W, C], each env's previous frame x_{t−1}, or None (no row has one).
        patch_size: patch side p, dividing H and W.
        has_previous: bool [B] or None.
        device: where to compute (None: the frames' device, CPU for numpy).
    Returns:
        float32 [B, N] in [0, 1], N = (H/p)·(W/p), row-major patches (spirl.saliency.mae.patchify order).
    """
    x = frames_tensor(frames, "frames", device)
    b, h, w, _ = x.shape
    n = patch_count(h, w, patch_size)
    flags = _previous_flags(previous, has_previous, b, x.device)  # [B] bool
    if previous is None:
        return torch.zeros(b, n, dtype=torch.float32, device=x.device)
    prev = frames_tensor(previous, "previous", x.device)
    if prev.shape != x.shape:
        raise ValueError(f"previous {tuple(prev.shape)} must have the shape of frames {tuple(x.shape)}")
    diff = (x.to(torch.int16) - prev.to(torch.int16)).abs().permute(0, 3, 1, 2).float()  # [B, C, H, W] in 0..255
    scores = patchify(diff, patch_size).mean(dim=-1) / 255.0  # [B, N]
    return torch.where(flags[:, None], scores, 0.0)


def _previous_flags(previous: object, has_previous: np.ndarray | torch.Tensor | None, batch: int,
                    device: torch.device) -> torch.Tensor:
    """Validated has-previous flags [B] bool on device (see frame_diff)."""
    if has_previous is None:
        return torch.full((batch,), previous is not None, dtype=torch.bool, device=device)
    flags = torch.as_tensor(has_previous, device=device)
    if flags.dtype != torch.bool or tuple(flags.shape) != (batch,):
        raise ValueError(f"has_previous must be bool [{batch}], got {flags.dtype} {tuple(flags.shape)}")
    if previous is None and bool(flags.any()):
        raise ValueError("has_previous marks rows with a previous frame but previous is None")
    return flags


class FrameDifferenceScorer(Scorer):
    """`frame_diff` of each frame against its previous frame (frame form: the caller's; stream form: kept per env;
    sequence form: the archive row before it within an episode)."""

    computes = "frame_difference"

    def frames(self, frames, previous=None, has_previous=None, generator=None):
        return frame_diff(frames, previous, self.models.patch_size, has_previous)

    def stream(self) -> StreamScorer:
        return FrameDiffStreamScorer(self.models.patch_size, self.models.device)


class FrameDiffStreamScorer(StreamScorer):
    """Frame differences with each stream's previous frame (kept here; a start has none: all-equal scores,
    K = K_max)."""

    def __init__(self, patch_size: int, device: torch.device | str | None = None) -> None:
        self.patch_size, self.device = patch_size, device
        self._last: dict = {}  # stream -> its previous frame, uint8 [H, W, 3]

    def __call__(self, frames, streams=None, starts=None):
        frames = np.asarray(frames)
        streams, flags = streams_and_starts(frames, streams, starts)
        has = np.array([streams is not None and not flags[i] and streams[i] in self._last
                        for i in range(len(frames))], dtype=bool)
        previous = np.stack([self._last[streams[i]] if has[i] else frames[i] for i in range(len(frames))]) \
            if len(frames) else frames
        scores = frame_diff(frames, previous, self.patch_size, torch.from_numpy(has), self.device)
        if streams is not None:
            for i, stream in enumerate(streams):
                self._last[stream] = frames[i].copy()
        return scores

    def state(self, stream):
        last = self._last.get(stream)
        return None if last is None else last.copy()

    def restore(self, stream, state):
        if state is None:
            self.forget(stream)
        else:
            self._last[stream] = np.array(state, dtype=np.uint8)

    def forget(self, stream):
        self._last.pop(stream, None)
