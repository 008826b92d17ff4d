"""What every saliency scorer of SPEC §13 shares: the models it scores with, its three forms, the stream interface.

A scorer maps frames to one score per patch, float32 [B, N], higher = more salient, N = (frame_px / patch_px)²,
patches in row-major order (patch index = row·grid + col, the order of spirl.saliency.mae.patchify and of the MAE
error map E). Dynamic-K (SPEC §5, spirl.saliency.selection.dynamic_k_batched) reads these scores exactly as it
reads E. Each scorer comes in three forms:

  frame form     Scorer.frames: one batch of frames (with each frame's previous frame where the scorer compares
                 frames, and the caller's torch.Generator where it draws random numbers);
  stream form    Scorer.stream(): a StreamScorer for the frame streams of a run's envs, with a memory per stream
                 (the previous frame, a random stream, incremental error maps) that a checkpoint carries;
  sequence form  Scorer.sequence: an ordered archive of frames with its episode starts (the mr stage's pre-training
                 frames), in batches, with what the mr stage keeps beside the scores.

"All equal" rows: a row whose N scores are identical (frame_diff at an episode start, or with no motion at all) is
returned as N zeros. Dynamic-K then gives q_i = 1/N for every i, so every D_i = 2/N ties and the first index of the
window wins: K = K_max, and the kept patches are the K_max highest patch indices (the stable sort's last K_max,
i.e. the bottom of the screen). No score is ever divided by its sum here; dynamic-K handles a zero sum itself.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import numpy as np
import torch

from spirl.saliency.error_maps import ErrorMapSettings
from spirl.saliency.mae import MaskedAutoencoder
from spirl.saliency.registry import ScorerSpec
from spirl.saliency.wu.model import WuAttention


@dataclass(frozen=True)
class ScorerModels:
    """The models and settings a scorer scores with (spirl.saliency.scorers.loading builds them for a job).

    mae: the game's trained MAE: the patch grid of every scorer, and the model of the error map E (SPEC §4).
    settings: the error-map settings (saliency.error_space, runtime.saliency_memory_mb and _precision).
    incremental: saliency.incremental: an MAE error map of a frame stream recomputes only the targets whose 3x3 block
        changed since the stream's previous frame (spirl.saliency.incremental; the same E to float rounding).
    untrained: the game's MAE as pre-training initialises it (spirl.saliency.pretrain.untrained_mae), for a scorer
        that scores with it; None otherwise.
    wu: the game's trained Wu mask (spirl.saliency.wu.training.load_model), for a scorer that scores with it.
    """

    mae: MaskedAutoencoder
    settings: ErrorMapSettings
    incremental: bool = False
    untrained: MaskedAutoencoder | None = None
    wu: WuAttention | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.mae, MaskedAutoencoder):
            raise ValueError(f"ScorerModels.mae must be the game's MaskedAutoencoder, got {type(self.mae).__name__}")
        if self.untrained is not None:
            grids = [(m.config.img_size, m.config.patch_size) for m in (self.mae, self.untrained)]
            if grids[0] != grids[1]:
                raise ValueError(f"the untrained MAE's (frame, patch) size {grids[1]} differs from the MAE's "
                                 f"{grids[0]}")

    @property
    def patch_size(self) -> int:
        """Patch side p in pixels."""
        return self.mae.config.patch_size

    @property
    def num_patches(self) -> int:
        """Patches per frame N."""
        return self.mae.config.num_patches

    @property
    def device(self) -> torch.device:
        """Where the MAE lives (and the stream forms compute)."""
        return next(self.mae.parameters()).device


class SequenceScores(NamedTuple):
    """The sequence form's result.

    scores: float32 [F, N] numpy, one row per archive frame.
    arrays: what the mr stage keeps beside K in ks.npz: an MAE scorer's normalised errors and patch variances
        ("errors_normalized", "patch_variance", both [F, N]; scores = them in saliency.error_space), another's
        "scores".
    recomputed_share: share of the MAE targets computed (incremental maps), None for scorers without an MAE.
    """

    scores: np.ndarray
    arrays: dict[str, np.ndarray]
    recomputed_share: float | None


def frames_tensor(frames: np.ndarray | torch.Tensor, name: str, device: torch.device | str | None) -> torch.Tensor:
    """uint8 frames [B, H, W, C] as a torch uint8 tensor on `device` (None: where they are, CPU for numpy)."""
    x = torch.as_tensor(frames)
    if x.dtype != torch.uint8 or x.dim() != 4:
        raise ValueError(f"{name} must be uint8 [B, H, W, C], got {x.dtype} {tuple(x.shape)}")
    return x if device is None else x.to(device)


def patch_count(height: int, width: int, patch_size: int) -> int:
    """N = (H / p)·(W / p); ValueError unless p >= 1 divides both sides."""
    if patch_size < 1 or height % patch_size or width % patch_size:
        raise ValueError(f"patch_size {patch_size} must divide the frame size {height}x{width}")
    return (height // patch_size) * (width // patch_size)


def check_starts(starts: np.ndarray | Sequence[bool], n_frames: int) -> np.ndarray:
    """Episode-start flags of an archive as bool [F]; ValueError unless there is one per frame."""
    flags = np.asarray(starts, dtype=bool)
    if flags.shape != (n_frames,):
        raise ValueError(f"starts must hold one flag per frame ({n_frames}), got shape {flags.shape}")
    return flags


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


def streams_and_starts(frames: np.ndarray, streams: Sequence[Hashable] | None, starts: Sequence[bool] | None
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


class Scorer(ABC):
    """One scorer of SPEC §13 (its registry declaration `spec`) with the models it scores with: its three forms.

    Subclasses implement one computation each (`computes`, the registry's ScorerSpec.computes value).
    """

    computes: ClassVar[str]

    def __init__(self, spec: ScorerSpec, models: ScorerModels) -> None:
        if spec.computes != self.computes:
            raise ValueError(f"scorer {spec.name!r} computes {spec.computes!r}; {type(self).__name__} computes "
                             f"{self.computes!r}")
        self.spec, self.models = spec, models

    @property
    def name(self) -> str:
        """The scorer's `saliency.scorer` value."""
        return self.spec.name

    @abstractmethod
    def frames(self, frames: np.ndarray | torch.Tensor, previous: np.ndarray | torch.Tensor | None = None,
               has_previous: np.ndarray | torch.Tensor | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """Frame form: the scores of one batch of frames.

        Args:
            frames: uint8 [B, H, W, 3], the MAE's frame size.
            previous: uint8 [B, H, W, 3], each frame's previous frame in its env, or None; read only by a scorer that
                compares frames (spec.previous_frame), where has_previous (bool [B], None: all True when previous is
                given) marks the rows that have one (the others are episode starts).
            generator: the torch.Generator a seeded scorer (spec.seeded) draws from, row after row (required there).
        Returns:
            float32 [B, N] row-major, on the model's device for a scorer with a model, else where the frames are
            (the generator's device for random draws).
        """

    @abstractmethod
    def stream(self) -> StreamScorer:
        """Stream form: a StreamScorer with an empty memory, for the frame streams of a run's envs."""

    def sequence(self, frames: np.ndarray, starts: np.ndarray | Sequence[bool], batch: int,
                 generator: torch.Generator | None = None,
                 on_batch: Callable[[int], None] | None = None) -> SequenceScores:
        """Sequence form: the scores of one ordered archive of frames (a game's random-policy frames in playing
        order), `batch` frames per frame-form call.

        Each frame's previous frame is the archive row before it, except where it starts an episode (starts[i];
        the first frame always does). A seeded scorer draws row after row from `generator`, so no score depends on
        `batch`. on_batch(frames done) is called after each batch.
        Args: frames uint8 [F, H, W, 3]; starts [F] bool. Returns: SequenceScores with arrays {"scores"}.
        """
        starts = check_starts(starts, len(frames))
        out = []
        for begin in range(0, len(frames), batch):
            chunk = frames[begin:begin + batch]
            previous = frames[begin - 1:begin + len(chunk) - 1] if begin else np.concatenate([chunk[:1], chunk[:-1]])
            has = ~starts[begin:begin + len(chunk)]
            if begin == 0:
                has[0] = False
            scores = self.frames(chunk, previous, torch.from_numpy(has), generator)
            out.append(scores.cpu().numpy().astype(np.float32))
            if on_batch is not None:
                on_batch(len(chunk))
        n = patch_count(frames.shape[1], frames.shape[2], self.models.patch_size)
        scores = np.concatenate(out) if out else np.zeros((0, n), np.float32)
        return SequenceScores(scores, {"scores": scores}, None)
