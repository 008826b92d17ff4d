"""Wu et al.'s self-supervised attention mask as a scorer (SPEC §13): the game's trained mask Ψ of each frame pooled
onto SPIRL's patches (spirl.saliency.wu.scores.patch_scores). A frame's scores depend on that frame alone, so the
three forms are the same computation; the stream form keeps no memory."""

from __future__ import annotations

from spirl.saliency.registry import ScorerSpec
from spirl.saliency.scorers.base import Scorer, ScorerModels, StreamScorer, streams_and_starts
from spirl.saliency.wu.model import WuAttention
from spirl.saliency.wu.scores import patch_scores


class WuAttentionScorer(Scorer):
    """Ψ pooled onto the patches, from models.wu (required)."""

    computes = "wu_attention"

    def __init__(self, spec: ScorerSpec, models: ScorerModels) -> None:
        super().__init__(spec, models)
        if models.wu is None:
            raise ValueError(f"scorer {spec.name!r} scores with the game's trained Wu mask; ScorerModels.wu is None "
                             "(spirl.saliency.scorers.loading loads it from --in-wu)")
        self.model = models.wu

    def frames(self, frames, previous=None, has_previous=None, generator=None):
        return patch_scores(self.model, frames, int(frames.shape[1]), self.models.patch_size)

    def stream(self) -> StreamScorer:
        return WuStreamScorer(self.model, self.models.patch_size)


class WuStreamScorer(StreamScorer):
    """Wu et al.'s mask of each frame pooled onto the patches (no memory)."""

    def __init__(self, model: WuAttention, patch_size: int) -> None:
        self.model, self.patch_size = model, patch_size

    def __call__(self, frames, streams=None, starts=None):
        streams_and_starts(frames, streams, starts)
        return patch_scores(self.model, frames, int(frames.shape[1]), self.patch_size)
