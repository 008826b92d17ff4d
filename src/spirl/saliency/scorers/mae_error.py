"""The MAE's error map as a scorer (SPEC §4, §13): E of every patch rebuilt from its 8 neighbours only.

The paper's scorer reads the game's trained MAE; its control the same architecture and init seed, never trained
(the registry's ScorerSpec.scores_with says which). Frame form: spirl.saliency.error_maps.error_map. Stream form:
the same maps, incremental per stream when saliency.incremental (spirl.saliency.incremental; the same E to float
rounding). Sequence form: spirl.saliency.mr.normalized_maps (normalised errors and the patches' pixel variances,
incremental along the archive when saliency.incremental), then the errors in saliency.error_space.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from spirl.saliency.error_maps import ErrorMapSettings, error_map, in_space
from spirl.saliency.incremental import IncrementalErrorMaps
from spirl.saliency.mae import MaskedAutoencoder
from spirl.saliency.mr import normalized_maps
from spirl.saliency.registry import ScorerSpec
from spirl.saliency.scorers.base import (
    Scorer,
    ScorerModels,
    SequenceScores,
    StreamScorer,
    check_starts,
    streams_and_starts,
)


class MAEErrorScorer(Scorer):
    """E of SPEC §4 from the MAE the declaration names (the trained one, or models.untrained)."""

    computes = "mae_error"

    def __init__(self, spec: ScorerSpec, models: ScorerModels) -> None:
        super().__init__(spec, models)
        self.model = models.untrained if spec.needs_untrained_mae else models.mae
        if self.model is None:
            raise ValueError(f"scorer {spec.name!r} scores with the game's untrained MAE; ScorerModels.untrained is "
                             "None (spirl.saliency.pretrain.untrained_mae builds it)")

    def frames(self, frames, previous=None, has_previous=None, generator=None):
        return error_map(self.model, frames, self.models.settings)

    def stream(self) -> StreamScorer:
        return MAEStreamScorer(self.model, self.models.settings, self.models.incremental)

    def sequence(self, frames: np.ndarray, starts: np.ndarray | Sequence[bool], batch: int,
                 generator: torch.Generator | None = None,
                 on_batch: Callable[[int], None] | None = None) -> SequenceScores:
        """The archive's error maps E [F, N] in saliency.error_space, with arrays {"errors_normalized",
        "patch_variance"} (the mr candidates of SPEC §12 #4 read both) and the share of targets computed."""
        starts = check_starts(starts, len(frames))
        settings = self.models.settings
        errors, variances, share = normalized_maps(self.model, frames, batch, settings,
                                                   starts if self.models.incremental else None, on_batch=on_batch)
        scores = in_space(errors, variances, settings.space, self.models.mae.config.norm_pix_eps)
        return SequenceScores(scores, {"errors_normalized": errors, "patch_variance": variances}, share)


class MAEStreamScorer(StreamScorer):
    """The error map E of SPEC §4 from `model` for each stream's newest frame (incremental per stream when
    `incremental`, spirl.saliency.incremental; the same E to float rounding)."""

    def __init__(self, model: MaskedAutoencoder, settings: ErrorMapSettings, incremental: bool) -> None:
        self.model, self.settings = model, settings
        self.maps = IncrementalErrorMaps(model, settings) if incremental else None

    def __call__(self, frames, streams=None, starts=None):
        if self.maps is None or streams is None:
            return error_map(self.model, frames, self.settings)
        streams, flags = streams_and_starts(frames, streams, starts)
        return self.maps(frames, streams, flags.tolist())

    def state(self, stream):
        return None if self.maps is None else self.maps.state(stream)

    def restore(self, stream, state):
        if self.maps is not None:
            self.maps.restore(stream, state)

    def forget(self, stream):
        if self.maps is not None:
            self.maps.forget(stream)
