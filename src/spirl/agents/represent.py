"""The per-frame representation of each variant (SPEC §4-§7, §9, §13): what the replay stores and the agent sees."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
import torch

from spirl.agents.agent import FrameSpec
from spirl.envs.preprocess import to_gray84
from spirl.params import Params
from spirl.saliency.error_maps import ErrorMapSettings, embed_selected
from spirl.saliency.mae import MaskedAutoencoder
from spirl.saliency.scorers import (
    FrameDiffStreamScorer,
    MAEStreamScorer,
    RandomStreamScorer,
    StreamScorer,
    WuStreamScorer,
)
from spirl.saliency.selection import all_patches_of, select_batched
from spirl.saliency.wu import WuAttention


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
        indices, counts = self._select(frames, streams, starts)  # [B, K_max], [B]
        embeddings = embed_selected(self.mae, frames, indices, counts, self.k_max)  # [B, K_max, D]
        return embeddings.cpu().numpy().astype(self.spec.dtype)

    def _select(self, frames: np.ndarray, streams: Sequence[Hashable] | None, starts: Sequence[bool] | None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.scorer is None:  # selection "all": every patch in index order, as select_batched's "all"
            return all_patches_of(len(frames), self.k_max)
        scores = self.scorer(frames, streams, starts)  # [B, N]
        return select_batched(scores, self.sal.selection, self.k_max, self.sal.xscale)

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


def make_scorer(params: Params, mae: MaskedAutoencoder | None, settings: ErrorMapSettings | None, *,
                untrained: MaskedAutoencoder | None = None, wu: WuAttention | None = None) -> StreamScorer:
    """The stream scorer of saliency.scorer (SPEC §13), from the models it needs.

    mae_surround: the trained `mae` and `settings`; mae_untrained: `untrained` (pretrain.untrained_mae) and
    `settings`; frame_diff: the patch size of `mae`; random: its patch count; wu_mask: `wu` (wu.load_model).
    """
    name = params.saliency.scorer
    if mae is None:
        raise ValueError(f"saliency.scorer {name!r} needs the game's MAE (its patch grid and embeddings)")
    if name in ("mae_surround", "mae_untrained"):
        model = mae if name == "mae_surround" else untrained
        if model is None or settings is None:
            raise ValueError(f"saliency.scorer {name!r} needs its MAE and error-map settings")
        return MAEStreamScorer(model, settings, params.saliency.incremental)
    if name == "frame_diff":
        return FrameDiffStreamScorer(mae.config.patch_size, next(mae.parameters()).device)
    if name == "random":
        return RandomStreamScorer(mae.config.num_patches)
    if wu is None:
        raise ValueError("saliency.scorer 'wu_mask' needs the game's trained Wu mask (spirl.saliency.wu.load_model)")
    return WuStreamScorer(wu, mae.config.patch_size)


def make_represent(spec: FrameSpec, params: Params, mae: MaskedAutoencoder | None, k_max: int,
                   scorer: StreamScorer | None) -> Represent:
    """The variant's per-frame representation (see Represent)."""
    return Represent(spec, params, mae, k_max, scorer)
