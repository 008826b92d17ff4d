"""Pluggable saliency scorers (SPEC §13): frames -> one score per patch, higher = more salient.

The scorers are declared once in spirl.saliency.registry (what each scores with, whether it compares a frame with
the previous one, whether it is seeded, which computation it is). This package implements each computation in its
own module, in the three forms of spirl.saliency.scorers.base.Scorer (frame, stream, sequence):

  mae_error         the MAE's error map E of SPEC §4 (trained or untrained MAE);
  frame_difference  mean |x_t − x_{t−1}| per patch against the previous frame of the same env;
  uniform_noise     i.i.d. U[0, 1) from a seeded stream (the registry's SEED_KEY);
  wu_attention      Wu et al.'s attention mask pooled onto the patches.

`build_scorer(spec, models)` gives the scorer of a declaration; spirl.saliency.scorers.loading gives a job the
models it needs.
"""

from __future__ import annotations

from spirl.saliency.registry import COMPUTATIONS, ScorerSpec
from spirl.saliency.scorers.base import Scorer, ScorerModels
from spirl.saliency.scorers.frame_difference import FrameDifferenceScorer
from spirl.saliency.scorers.mae_error import MAEErrorScorer
from spirl.saliency.scorers.uniform_noise import UniformNoiseScorer
from spirl.saliency.scorers.wu_attention import WuAttentionScorer

IMPLEMENTATIONS: dict[str, type[Scorer]] = {
    cls.computes: cls for cls in (MAEErrorScorer, FrameDifferenceScorer, UniformNoiseScorer, WuAttentionScorer)}

if set(IMPLEMENTATIONS) != set(COMPUTATIONS):
    raise ImportError(f"the registry's computations {COMPUTATIONS} and their implementations {tuple(IMPLEMENTATIONS)} "
                      "disagree")


def build_scorer(spec: ScorerSpec, models: ScorerModels) -> Scorer:
    """The scorer that `spec` declares, scoring with `models` (ValueError if it lacks a model the scorer needs)."""
    return IMPLEMENTATIONS[spec.computes](spec, models)
