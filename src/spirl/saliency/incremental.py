"""Incremental error maps (SPEC §4): recompute only the targets whose 3x3 block of patches changed.

E_t depends only on the pixels of patch t's 3x3 block (its 8 visible neighbours and its own normalised
target), so between two frames of one env every target whose block is byte-identical keeps its error. Per
stream (a training env, an evaluation env, the ordered pre-training frames of one game) the previous frame
and its error map are kept; a stream's first frame, or a frame marked as an episode start (reset or life-loss
restart), is computed in full. The changed targets of all frames of a call run in one batched pass.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np
import torch

from spirl.saliency.error_maps import ErrorMapSettings, error_map
from spirl.saliency.mae import MaskedAutoencoder


def changed_blocks(previous: np.ndarray, frames: np.ndarray, patch: int) -> np.ndarray:
    """Targets whose 3x3 block of patches (clipped at the border) differs between two frames, byte for byte.

    Args: previous, frames uint8 [B, H, W, C] (H = W = grid·patch); patch the patch side in pixels.
    Returns: [B, N] bool, N = grid², index row·grid + col.
    """
    b, h, w, c = frames.shape
    grid = h // patch
    diff = (previous != frames).reshape(b, grid, patch, grid, patch, c).any(axis=(2, 4, 5))  # [B, grid, grid]
    padded = np.pad(diff, ((0, 0), (1, 1), (1, 1)))
    block = np.zeros_like(diff)
    for dr in range(3):
        for dc in range(3):
            block |= padded[:, dr:dr + grid, dc:dc + grid]
    return block.reshape(b, grid * grid)


class IncrementalErrorMaps:
    """Error maps of frame streams, each new frame recomputing only the targets whose 3x3 block changed."""

    def __init__(self, model: MaskedAutoencoder, settings: ErrorMapSettings) -> None:
        self.model, self.settings = model, settings
        self._last: dict[Hashable, tuple[np.ndarray, np.ndarray]] = {}  # stream -> (frame [H, W, C], errors [N])
        self.targets_total = 0  # targets asked for, and of them recomputed (the rest reused)
        self.targets_recomputed = 0

    def __call__(self, frames: np.ndarray, streams: Sequence[Hashable], starts: Sequence[bool]) -> torch.Tensor:
        """Error maps of the newest frame of each stream.

        Args: frames uint8 [B, H, W, C]; streams [B] distinct stream keys; starts [B] True where the frame starts
            an episode (or the stream), so it is computed in full.
        Returns: float32 [B, N] on the model's device, equal (to float rounding) to error_map(frames).
        """
        frames = np.asarray(frames)
        if len(streams) != len(frames) or len(starts) != len(frames) or len(set(streams)) != len(streams):
            raise ValueError(f"{len(frames)} frames need as many distinct streams and start flags")
        n = self.model.config.num_patches
        recompute = np.ones((len(frames), n), dtype=bool)
        known = [i for i, (s, new) in enumerate(zip(streams, starts, strict=True)) if not new and s in self._last]
        if known:
            previous = np.stack([self._last[streams[i]][0] for i in known])
            recompute[known] = changed_blocks(previous, frames[known], self.model.config.patch_size)
        errors = error_map(self.model, frames, self.settings, recompute)  # [B, N], NaN where reused
        if known:
            reused = torch.as_tensor(~recompute[known], device=errors.device)
            old = torch.as_tensor(np.stack([self._last[streams[i]][1] for i in known]), device=errors.device)
            errors[known] = torch.where(reused, old, errors[known])
        host = errors.cpu().numpy()
        for i, stream in enumerate(streams):
            self._last[stream] = (frames[i].copy(), host[i].copy())
        self.targets_total += recompute.size
        self.targets_recomputed += int(recompute.sum())
        return errors

    def forget(self, stream: Hashable) -> None:
        """Drop a stream's memory (its next frame is computed in full)."""
        self._last.pop(stream, None)

    def state(self, stream: Hashable) -> tuple[np.ndarray, np.ndarray] | None:
        """What a checkpoint needs to continue a stream exactly: (previous frame, its errors), or None."""
        last = self._last.get(stream)
        return None if last is None else (last[0].copy(), last[1].copy())

    def restore(self, stream: Hashable, state: tuple[np.ndarray, np.ndarray] | None) -> None:
        """Continue a stream from `state` (from `state`); None forgets it."""
        if state is None:
            self.forget(stream)
        else:
            self._last[stream] = (np.array(state[0], dtype=np.uint8), np.array(state[1], dtype=np.float32))

    @property
    def recompute_share(self) -> float:
        """Share of the targets asked for so far that were recomputed (1.0 before any call)."""
        return self.targets_recomputed / self.targets_total if self.targets_total else 1.0


def sequence_error_maps(model: MaskedAutoencoder, frames: np.ndarray, starts: np.ndarray, settings: ErrorMapSettings,
                        batch: int, on_batch=None) -> tuple[np.ndarray, float]:
    """Error maps of one ordered stream of frames (e.g. a game's pre-training frames), batch frames per pass.

    Each frame is compared with the one before it (within and across passes); a frame with starts[i] (an
    episode's first frame) and the very first frame are computed in full. The recomputed targets of a pass run
    in one batched call; the others take the previous frame's value, in order.
    Args: frames uint8 [F, H, W, C]; starts [F] bool; on_batch(frames done in the pass), optional.
    Returns: (errors [F, N] float32 numpy, share of targets recomputed).
    """
    out, last_frame, last_errors, recomputed = [], None, None, 0
    for begin in range(0, len(frames), batch):
        chunk = frames[begin:begin + batch]
        mask = np.ones((len(chunk), model.config.num_patches), dtype=bool)
        if len(chunk) > 1:
            mask[1:] = changed_blocks(chunk[:-1], chunk[1:], model.config.patch_size)
        if last_frame is not None:
            mask[0] = changed_blocks(last_frame[None], chunk[:1], model.config.patch_size)[0]
        mask[np.asarray(starts[begin:begin + batch], dtype=bool)] = True
        errors = error_map(model, chunk, settings, mask).cpu().numpy()  # [b, N], NaN where reused
        for i in range(len(chunk)):
            if last_errors is not None:
                errors[i] = np.where(mask[i], errors[i], last_errors)
            last_errors = errors[i]
        out.append(errors)
        last_frame, recomputed = chunk[-1], recomputed + int(mask.sum())
        if on_batch is not None:
            on_batch(len(chunk))
    total = len(frames) * model.config.num_patches
    errors = np.concatenate(out) if out else np.zeros((0, model.config.num_patches), np.float32)
    return errors, recomputed / total if total else 1.0
