"""The per-frame representation of each variant (SPEC §4-§7, §9): what the replay stores and the agent sees."""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np
import torch

from spirl.agent import FrameSpec
from spirl.config import Params
from spirl.incremental import IncrementalErrorMaps
from spirl.mae import MaskedAutoencoder
from spirl.networks import to_gray84
from spirl.saliency import ErrorMapSettings, embed_selected, error_map
from spirl.selection import all_patches_of, select_batched


class Represent:
    """The per-frame representation of a variant, computed once per frame, when it arrives.

    Called as represent(frames uint8 [B, H, W, 3], streams=None, starts=None) -> reps [B, *spec.shape] (numpy).
    embeddings: error map (SPEC §4, computed as `settings` say) -> selection (saliency.selection: dynamic K capped at
    K_max, fixed K = K_max) -> SPEC §7 embedding, zero-padded to K_max; selection "all" (MAE-All) keeps every patch
    and computes no error map; gray84: grayscale 84x84; rgb96: the frame. With saliency.incremental, frames that
    come with their stream keys (one per env) and episode-start flags only recompute the targets whose 3x3 block
    changed since the stream's previous frame (spirl.incremental; `maps` keeps that memory).
    """

    def __init__(self, spec: FrameSpec, params: Params, mae: MaskedAutoencoder | None, k_max: int,
                 settings: ErrorMapSettings | None) -> None:
        self.spec, self.mae, self.k_max, self.settings, self.sal = spec, mae, k_max, settings, params.saliency
        selects = spec.kind == "embeddings" and self.sal.selection != "all"
        self.maps = IncrementalErrorMaps(mae, settings) if selects and self.sal.incremental else None

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
        if self.sal.selection == "all":  # every patch in index order, as select_batched's "all": no error map needed
            return all_patches_of(len(frames), self.k_max)
        if self.maps is not None and streams is not None:
            errors = self.maps(frames, streams, starts if starts is not None else [False] * len(frames))
        else:
            errors = error_map(self.mae, frames, self.settings)  # [B, N]
        return select_batched(errors, self.sal.selection, self.k_max, self.sal.xscale)


def make_represent(spec: FrameSpec, params: Params, mae: MaskedAutoencoder | None, k_max: int,
                   settings: ErrorMapSettings | None) -> Represent:
    """The variant's per-frame representation (see Represent)."""
    return Represent(spec, params, mae, k_max, settings)
