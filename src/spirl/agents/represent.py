"""The per-frame representation of each variant (SPEC §4-§7, §9, §13): what the replay stores and the agent sees.

`representation_for_run` gives a run everything that decides it: its frame spec, its patch budget (mr, K_max), its
stream scorer (the one saliency.scorer declares, spirl.saliency.registry) and the Represent built from them.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from spirl.agents.agent import FrameSpec, frame_spec
from spirl.common.runtime import torch_threads
from spirl.envs.preprocess import to_gray84
from spirl.params import ConfigError, Params
from spirl.saliency.budget import Budget, run_budget
from spirl.saliency.error_maps import embed_selected
from spirl.saliency.mae import MaskedAutoencoder
from spirl.saliency.registry import spec as scorer_spec
from spirl.saliency.scorers import build_scorer
from spirl.saliency.scorers.base import StreamScorer
from spirl.saliency.scorers.loading import scorer_models
from spirl.saliency.selection import all_patches_of, select_batched


class Represent:
    """The per-frame representation of a variant, computed once per frame, when it arrives.

    Called as represent(frames uint8 [B, H, W, 3], streams=None, starts=None) -> reps [B, *spec.shape] (numpy).
    embeddings: scores of saliency.scorer (SPEC §13; the paper's: the error map E of SPEC §4) -> selection
    (saliency.selection: dynamic K capped at K_max, fixed K = K_max) -> SPEC §7 embedding by the MAE's encoder,
    zero-padded to K_max; selection "all" (MAE-All) keeps every patch and scores nothing; gray84: grayscale 84x84;
    rgb96: the frame. Frames that come with their stream keys (one per env) and episode-start flags let the
    scorer keep a memory per stream (incremental error maps, frame_diff's previous frame, random's stream); the
    state of one stream goes into a run's checkpoint (state / restore) and an evaluation env's is dropped when it
    ends (forget).
    """

    def __init__(self, spec: FrameSpec, params: Params, mae: MaskedAutoencoder | None, k_max: int,
                 scorer: StreamScorer | None) -> None:
        self.spec, self.mae, self.k_max, self.sal = spec, mae, k_max, params.saliency
        self.threads = params.runtime.saliency_threads
        selects = spec.kind == "embeddings" and self.sal.selection != "all"
        if selects and scorer is None:
            raise ValueError(f"saliency.selection {self.sal.selection!r} needs a scorer (saliency.scorer)")
        self.scorer = scorer if selects else None

    def __call__(self, frames: np.ndarray, streams: Sequence[Hashable] | None = None,
                 starts: Sequence[bool] | None = None) -> np.ndarray:
        if self.spec.kind == "gray84":
            return to_gray84(frames)
        if self.spec.kind == "rgb96":
            return np.array(frames, dtype=np.uint8)
        with torch_threads(self.threads):  # runtime.saliency_threads; the learner keeps runtime.torch_threads
            indices, counts = self.select(frames, streams, starts)
            return self.embed(frames, indices, counts)

    def select(self, frames: np.ndarray, streams: Sequence[Hashable] | None = None,
               starts: Sequence[bool] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The patches each frame keeps: indices [B, K_max] (row order of the selection, -1 padded) and counts [B].

        Scores the frames (updating the scorer's memory of their streams) unless the selection is "all".
        """
        if self.scorer is None:  # selection "all": every patch in index order, as select_batched's "all"
            return all_patches_of(len(frames), self.k_max)
        scores = self.scorer(frames, streams, starts)  # [B, N]
        return select_batched(scores, self.sal.selection, self.k_max, self.sal.xscale)

    def embed(self, frames: np.ndarray, indices: torch.Tensor, counts: torch.Tensor) -> np.ndarray:
        """SPEC §7 embeddings of the selected patches, [B, K_max, D] in spec.dtype (rows past counts[b] zero)."""
        embeddings = embed_selected(self.mae, frames, indices, counts, self.k_max)  # [B, K_max, D]
        return embeddings.cpu().numpy().astype(self.spec.dtype)

    def state(self, stream: Hashable) -> Any:
        """The scorer's memory of `stream` for a checkpoint (None: none)."""
        return None if self.scorer is None else self.scorer.state(stream)

    def restore(self, stream: Hashable, state: Any) -> None:
        """Continue `stream` from a checkpoint's state (None: from scratch, e.g. a full error map)."""
        if self.scorer is not None:
            self.scorer.restore(stream, state)

    def forget(self, streams: Sequence[Hashable]) -> None:
        """Drop the memory of streams that ended (an evaluation's envs)."""
        if self.scorer is not None:
            for stream in streams:
                self.scorer.forget(stream)


def make_represent(spec: FrameSpec, params: Params, mae: MaskedAutoencoder | None, k_max: int,
                   scorer: StreamScorer | None) -> Represent:
    """The variant's per-frame representation (see Represent)."""
    return Represent(spec, params, mae, k_max, scorer)


class RunRepresentation(NamedTuple):
    """What a run's frames become.

    spec: the replay's per-frame storage (embeddings [K_max, D] or pixels).
    represent: the per-frame representation (Represent).
    budget: the run's mr and K_max (spirl.saliency.budget), None for a pixel variant.
    scorer: the stream scorer of saliency.scorer, None when nothing is scored (pixels, selection "all").
    """

    spec: FrameSpec
    represent: Represent
    budget: Budget | None
    scorer: StreamScorer | None

    @property
    def k_max(self) -> int:
        """The run's K_max (0 for a pixel variant)."""
        return 0 if self.budget is None else self.budget.k_max


def representation_for_run(params: Params, base: str, game: str, mae: MaskedAutoencoder | None,
                           mr_record: Mapping[str, Any] | None, wu_path: Path | None = None) -> RunRepresentation:
    """A run's representation from its resolved params (the variant's overrides applied) and base method.

    spirl: K_max from saliency.mr and the game's mr record (spirl.saliency.budget.run_budget; N for selection
    "all"), the stream scorer of saliency.scorer with the models it scores with (the untrained MAE built, the Wu mask
    read from wu_path; spirl.saliency.scorers.loading) unless selection "all" scores nothing, and embeddings
    [K_max, encoder_dim] of the MAE `mae` (on the device the scorer computes on). de_rainbow: pixels, no scorer.

    Raises: ConfigError when a spirl run lacks its MAE, or a scorer lacks its model (naming --in-wu).
    """
    if base != "spirl":
        spec = frame_spec(base, params.agent, 0, 0, params.atari.frame_size_px, params.replay.embedding_dtype)
        return RunRepresentation(spec, Represent(spec, params, None, 0, None), None, None)
    if mae is None:
        raise ConfigError(f"base spirl needs the game's MAE (--in-model) to embed {game}'s patches")
    sal = params.saliency
    budget = run_budget(sal, game, mae.config.num_patches, mr_record)
    scorer = None
    if sal.selection != "all":
        declared = scorer_spec(sal.scorer)
        scorer = build_scorer(declared, scorer_models(declared, params, game, mae, wu_path)).stream()
    spec = frame_spec(base, params.agent, budget.k_max, mae.config.encoder_dim, params.atari.frame_size_px,
                      params.replay.embedding_dtype)
    return RunRepresentation(spec, Represent(spec, params, mae, budget.k_max, scorer), budget, scorer)
