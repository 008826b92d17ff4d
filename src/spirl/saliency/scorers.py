"""Pluggable saliency scorers (SPEC §13): frames → one score per patch, higher = more salient.

Every scorer returns float32 [B, N], N = (frame_px / patch_px)², patches in row-major order (patch index =
row·grid + col, the order of spirl.saliency.mae.patchify and of the MAE error map E). Dynamic-K (SPEC §5,
spirl.saliency.selection.dynamic_k_batched) reads these scores exactly as it reads E.

`saliency.scorer` values:
  mae_surround   E of SPEC §4 from the pre-trained MAE: error_maps.error_map(trained model, frames, settings).
  mae_untrained  the same error_map call on an MAE built with the same architecture and init seed but never
                 trained (a control).
  frame_diff     `frame_diff`: mean |x_t − x_{t−1}| per patch, with the previous frame of the same env.
  random         `random_scores`: i.i.d. U[0, 1) from the run's seeded torch.Generator.
  wu_mask        spirl.saliency.wu.patch_scores: Wu et al.'s self-supervised attention mask pooled onto the patches.

"All equal" rows: a row whose N scores are identical (frame_diff at an episode start, or with no motion at all) is
returned as N zeros. Dynamic-K then gives q_i = 1/N for every i, so every D_i = 2/N ties and the first index of the
window wins: K = K_max, and the kept patches are the K_max highest patch indices (the stable sort's last K_max,
i.e. the bottom of the screen). No score is ever divided by its sum here; dynamic-K handles a zero sum itself.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
import torch

from spirl.common.seeding import derive_seed
from spirl.params import SCORERS
from spirl.saliency.error_maps import ErrorMapSettings, error_map
from spirl.saliency.incremental import IncrementalErrorMaps
from spirl.saliency.mae import MaskedAutoencoder, patchify
from spirl.saliency.wu import WuAttention, patch_scores

MAE_SCORERS = ("mae_surround", "mae_untrained")  # both are spirl.saliency.error_maps.error_map; only the model differs


def check_scorer(name: object) -> str:
    """Return `name` if it is one of SCORERS, else raise ValueError naming saliency.scorer and the allowed values."""
    if not isinstance(name, str) or name not in SCORERS:
        raise ValueError(f"saliency.scorer must be one of {SCORERS}, got {name!r}")
    return name


def _frames_tensor(frames: np.ndarray | torch.Tensor, name: str, device: torch.device | str | None) -> torch.Tensor:
    """uint8 frames [B, H, W, C] as a torch uint8 tensor on `device` (None: where they are, CPU for numpy)."""
    x = torch.as_tensor(frames)
    if x.dtype != torch.uint8 or x.dim() != 4:
        raise ValueError(f"{name} must be uint8 [B, H, W, C], got {x.dtype} {tuple(x.shape)}")
    return x if device is None else x.to(device)


def frame_diff(frames: np.ndarray | torch.Tensor, previous: np.ndarray | torch.Tensor | None, patch_size: int,
               has_previous: np.ndarray | torch.Tensor | None = None,
               device: torch.device | str | None = None) -> torch.Tensor:
    """`frame_diff` scores: mean over each patch's pixels and channels of |x_t − x_{t−1}|, x in [0, 1].

    Row b has a previous frame when `previous` is given and has_previous[b] is True (has_previous None: every
    row has one if `previous` is given, none if it is None). A row without one (an episode start) is all zeros,
    as is a row with no motion; all-equal rows make dynamic-K keep K_max (module docstring). The content of
    previous[b] is ignored where has_previous[b] is False, so a vectorised env can keep a stale buffer there.

    Args:
        frames: uint8 [B, H, W, C], the current frames x_t (numpy or torch).
        previous: uint8 [B, H, W, C], each env's previous frame x_{t−1}, or None (no row has one).
        patch_size: patch side p, dividing H and W.
        has_previous: bool [B] or None.
        device: where to compute (None: the frames' device, CPU for numpy).
    Returns:
        float32 [B, N] in [0, 1], N = (H/p)·(W/p), row-major patches (spirl.saliency.mae.patchify order).
    """
    x = _frames_tensor(frames, "frames", device)
    b, h, w, _ = x.shape
    if patch_size < 1 or h % patch_size or w % patch_size:
        raise ValueError(f"patch_size {patch_size} must divide the frame size {h}x{w}")
    n = (h // patch_size) * (w // patch_size)
    flags = _previous_flags(previous, has_previous, b, x.device)  # [B] bool
    if previous is None:
        return torch.zeros(b, n, dtype=torch.float32, device=x.device)
    prev = _frames_tensor(previous, "previous", x.device)
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


def random_scores(batch: int, num_patches: int, generator: torch.Generator,
                  device: torch.device | str | None = None) -> torch.Tensor:
    """`random` scores: i.i.d. U[0, 1), drawn only from `generator` (the run's seeded stream), row-major.

    Args: batch B; num_patches N; generator an explicit torch.Generator (drawn on its own device); device where
        the result goes (None: the generator's device).
    Returns: float32 [B, N].
    """
    if not isinstance(generator, torch.Generator):
        raise TypeError("random_scores needs an explicit torch.Generator")
    if batch < 0 or num_patches < 1:
        raise ValueError(f"need batch >= 0 and num_patches >= 1, got {batch}, {num_patches}")
    out = torch.rand(batch, num_patches, generator=generator, device=generator.device, dtype=torch.float32)
    return out if device is None else out.to(device)


def score_frames(scorer: str, frames: np.ndarray | torch.Tensor, patch_size: int, *,
                 mae: MaskedAutoencoder | None = None, error_settings: ErrorMapSettings | None = None,
                 previous: np.ndarray | torch.Tensor | None = None,
                 has_previous: np.ndarray | torch.Tensor | None = None,
                 generator: torch.Generator | None = None, wu_model: WuAttention | None = None,
                 device: torch.device | str | None = None) -> torch.Tensor:
    """Scores of one batch of frames under `saliency.scorer` (the inputs each scorer needs are keyword arguments).

    mae_surround / mae_untrained: error_map(mae, frames, error_settings) (the caller passes the trained or the
        untrained MAE); frame_diff: previous, has_previous; random: generator; wu_mask: wu_model.
    Args: frames uint8 [B, H, W, 3]; patch_size p. Returns: float32 [B, N] row-major, on the scorer's device
        (the model's for MAE / Wu scorers, `device` otherwise).
    """
    check_scorer(scorer)
    batch, height, width = (int(v) for v in frames.shape[:3])
    if scorer in MAE_SCORERS:
        if mae is None or error_settings is None:
            raise ValueError(f"saliency.scorer {scorer!r} needs the MAE and its error-map settings")
        if mae.config.patch_size != patch_size:
            raise ValueError(f"the MAE's patch size {mae.config.patch_size} differs from patch_size {patch_size}")
        return error_map(mae, frames, error_settings)
    if scorer == "frame_diff":
        return frame_diff(frames, previous, patch_size, has_previous, device)
    if scorer == "random":
        if generator is None:
            raise ValueError("saliency.scorer 'random' needs the run's torch.Generator")
        if patch_size < 1 or height % patch_size or width % patch_size:
            raise ValueError(f"patch_size {patch_size} must divide the frame size {height}x{width}")
        return random_scores(batch, (height // patch_size) * (width // patch_size), generator, device)
    if wu_model is None:
        raise ValueError("saliency.scorer 'wu_mask' needs the trained Wu attention model")
    return patch_scores(wu_model, frames, height, patch_size)


# --- scorers of frame streams: what a training or evaluation env's representation calls ---------------------------

RANDOM_SEED_KEY = "saliency.random"  # the random scorer's streams: derive_seed(0, RANDOM_SEED_KEY, repr(stream), n)


class StreamScorer(ABC):
    """One score per patch for the newest frame of each of several frame streams (one stream per env).

    Called as scorer(frames uint8 [B, H, W, 3], streams [B] distinct hashable keys or None, starts [B] bool or None)
    -> float32 [B, N]. starts[b] marks a frame that begins an episode (or the stream); streams None means frames
    without a history (each its own start). A scorer with a memory per stream (the previous frame, a random
    stream) exposes it for checkpoints: state(stream) / restore(stream, state); forget(stream) drops it.
    """

    @abstractmethod
    def __call__(self, frames: np.ndarray, streams: Sequence[Hashable] | None = None,
                 starts: Sequence[bool] | None = None) -> torch.Tensor:
        """Scores [B, N] of the newest frame of each stream."""

    def state(self, stream: Hashable) -> Any:
        """What a checkpoint needs to continue `stream` exactly (None: nothing)."""
        return None

    def restore(self, stream: Hashable, state: Any) -> None:  # noqa: B027 (a scorer without memory keeps none)
        """Continue `stream` from a state() (None: start it afresh)."""

    def forget(self, stream: Hashable) -> None:  # noqa: B027
        """Drop the memory of `stream` (an evaluation env that finished)."""


def _streams_and_starts(frames: np.ndarray, streams: Sequence[Hashable] | None, starts: Sequence[bool] | None
                        ) -> tuple[list[Hashable] | None, np.ndarray]:
    """Validated streams (None kept) and start flags [B] bool (all True without streams, all False if not given)."""
    b = len(frames)
    if streams is None:
        return None, np.ones(b, dtype=bool)
    streams = list(streams)
    if len(streams) != b or len(set(streams)) != b:
        raise ValueError(f"{b} frames need {b} distinct stream keys, got {len(streams)} ({len(set(streams))} distinct)")
    flags = np.zeros(b, dtype=bool) if starts is None else np.asarray(starts, dtype=bool)
    if flags.shape != (b,):
        raise ValueError(f"starts must hold {b} flags, got shape {flags.shape}")
    return streams, flags


class MAEStreamScorer(StreamScorer):
    """`mae_surround` / `mae_untrained`: the error map E of SPEC §4 from `model` (incremental per stream when
    `incremental`, spirl.saliency.incremental; the same E to float rounding)."""

    def __init__(self, model: MaskedAutoencoder, settings: ErrorMapSettings, incremental: bool) -> None:
        self.model, self.settings = model, settings
        self.maps = IncrementalErrorMaps(model, settings) if incremental else None

    def __call__(self, frames, streams=None, starts=None):
        if self.maps is None or streams is None:
            return error_map(self.model, frames, self.settings)
        streams, flags = _streams_and_starts(frames, streams, starts)
        return self.maps(frames, streams, flags.tolist())

    def state(self, stream):
        return None if self.maps is None else self.maps.state(stream)

    def restore(self, stream, state):
        if self.maps is not None:
            self.maps.restore(stream, state)

    def forget(self, stream):
        if self.maps is not None:
            self.maps.forget(stream)


class FrameDiffStreamScorer(StreamScorer):
    """`frame_diff` with each stream's previous frame (kept here; a start has none: all-equal scores, K = K_max)."""

    def __init__(self, patch_size: int, device: torch.device | str | None = None) -> None:
        self.patch_size, self.device = patch_size, device
        self._last: dict[Hashable, np.ndarray] = {}

    def __call__(self, frames, streams=None, starts=None):
        frames = np.asarray(frames)
        streams, flags = _streams_and_starts(frames, streams, starts)
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


class RandomStreamScorer(StreamScorer):
    """`random`: i.i.d. U[0, 1) scores from a seeded stream per frame stream.

    At each start a stream's generator is (re)seeded from derive_seed(0, RANDOM_SEED_KEY, repr(stream), n), n the
    number of frames the stream had seen, so the draws depend only on the stream's key (which names the run: a
    RunKey, or (RunKey, "eval", env step, env index)) and its own history, never on other streams or on how runs
    are grouped in a process; state() carries (n, generator state) through a checkpoint. Frames without a stream
    (streams None) draw from one generator seeded once from `seed`.
    """

    def __init__(self, num_patches: int, seed: int = 0) -> None:
        self.num_patches = num_patches
        self._streams: dict[Hashable, tuple[int, torch.Generator]] = {}
        self._loose = torch.Generator().manual_seed(derive_seed(seed, RANDOM_SEED_KEY, "no-stream"))

    def __call__(self, frames, streams=None, starts=None):
        streams, flags = _streams_and_starts(frames, streams, starts)
        if streams is None:
            return random_scores(len(frames), self.num_patches, self._loose)
        rows = []
        for stream, start in zip(streams, flags, strict=True):
            seen, gen = self._streams.get(stream, (0, None))
            if start or gen is None:
                gen = torch.Generator().manual_seed(derive_seed(0, RANDOM_SEED_KEY, repr(stream), seen))
            rows.append(random_scores(1, self.num_patches, gen))
            self._streams[stream] = (seen + 1, gen)
        return torch.cat(rows) if rows else torch.zeros(0, self.num_patches)

    def state(self, stream):
        entry = self._streams.get(stream)
        return None if entry is None else (entry[0], entry[1].get_state())

    def restore(self, stream, state):
        if state is None:
            self.forget(stream)
            return
        gen = torch.Generator()
        gen.set_state(state[1])
        self._streams[stream] = (int(state[0]), gen)

    def forget(self, stream):
        self._streams.pop(stream, None)


class WuStreamScorer(StreamScorer):
    """`wu_mask`: Wu et al.'s mask of each frame pooled onto the patches (no memory)."""

    def __init__(self, model: WuAttention, patch_size: int) -> None:
        self.model, self.patch_size = model, patch_size

    def __call__(self, frames, streams=None, starts=None):
        _streams_and_starts(frames, streams, starts)
        return patch_scores(self.model, frames, int(frames.shape[1]), self.patch_size)



def sequence_scores(scorer: str, frames: np.ndarray, starts: np.ndarray, patch_size: int, batch: int, *,
                    generator: torch.Generator | None = None, wu_model: WuAttention | None = None,
                    on_batch=None) -> np.ndarray:
    """Scores of one ordered stream of frames (a game's random-policy frames in playing order) for the scorers
    without an MAE (frame_diff, random, wu_mask; the MAE's go through mr.normalized_maps), `batch` per call.

    frame_diff compares each frame with the one before it unless it starts an episode (starts[i]; the first
    frame always does); random draws row after row from `generator`, so the result does not depend on `batch`.
    Returns: float32 [F, N] numpy.
    """
    if scorer not in ("frame_diff", "random", "wu_mask"):
        raise ValueError(f"sequence_scores scores frame_diff, random or wu_mask, not {scorer!r}")
    starts = np.asarray(starts, dtype=bool)
    if starts.shape != (len(frames),):
        raise ValueError(f"starts must hold one flag per frame ({len(frames)}), got shape {starts.shape}")
    out = []
    for begin in range(0, len(frames), batch):
        chunk = frames[begin:begin + batch]
        if scorer == "frame_diff":
            previous = frames[max(begin - 1, 0):begin + len(chunk) - 1] if begin else \
                np.concatenate([chunk[:1], chunk[:-1]])
            has = ~starts[begin:begin + len(chunk)]
            if begin == 0:
                has[0] = False
            scores = frame_diff(chunk, previous, patch_size, torch.from_numpy(has))
        else:
            scores = score_frames(scorer, chunk, patch_size, generator=generator, wu_model=wu_model)
        out.append(scores.cpu().numpy().astype(np.float32))
        if on_batch is not None:
            on_batch(len(chunk))
    grid = frames.shape[1] // patch_size
    return np.concatenate(out) if out else np.zeros((0, grid * grid), np.float32)
