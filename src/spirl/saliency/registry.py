"""The saliency scorers of SPEC §13, declared once: what each needs, where its seed comes from, where its mr lives.

This module is the only place that knows the scorers by name. It imports no torch, so the job plan
(spirl.workflow) can ask it which inputs a job needs; the scorers themselves (their frame, stream and sequence
forms) are built from a declaration by spirl.saliency.scorers.
"""

from __future__ import annotations

from dataclasses import dataclass

from spirl.params import SCORERS


@dataclass(frozen=True)
class ScorerSpec:
    """One scorer's declaration.

    name: the `saliency.scorer` / `criteria.scorers` value.
    scores_with: the model whose output the scores are: "trained_mae" (the game's pre-trained MAE), "untrained_mae"
        (the same architecture and init seed, never trained), "wu" (the game's trained Wu mask) or None.
    previous_frame: the scores compare a frame with the one before it in the same stream.
    seeded: the scores are drawn from a seeded random stream (derive_seed(..., SEED_KEY, ...)).
    paper: the paper's criterion E (SPEC §4); its mr estimate is the estimate_mr stage's, the others'
        estimate_mr_scorer's.
    """

    name: str
    scores_with: str | None
    previous_frame: bool = False
    seeded: bool = False
    paper: bool = False

    @property
    def needs_wu(self) -> bool:
        """Whether a job scoring with it reads the game's trained Wu mask."""
        return self.scores_with == "wu"

    @property
    def uses_mae_error_map(self) -> bool:
        """Whether its scores are an MAE's error map E (trained or untrained; normalised errors and variances)."""
        return self.scores_with in ("trained_mae", "untrained_mae")


SEED_KEY = "saliency.random"  # the random scorer's only seed key (derive_seed(base, SEED_KEY, stream or game, ...))

SPECS: dict[str, ScorerSpec] = {s.name: s for s in (
    ScorerSpec("mae_surround", scores_with="trained_mae", paper=True),
    ScorerSpec("mae_untrained", scores_with="untrained_mae"),
    ScorerSpec("frame_diff", scores_with=None, previous_frame=True),
    ScorerSpec("random", scores_with=None, seeded=True),
    ScorerSpec("wu_mask", scores_with="wu"),
)}
PAPER = next(s.name for s in SPECS.values() if s.paper)

if tuple(SPECS) != SCORERS:  # the parameter model (layer 0) lists the allowed values; both must agree
    raise ImportError(f"spirl.params.SCORERS {SCORERS} and the registry {tuple(SPECS)} disagree")


def spec(name: object, key: str = "saliency.scorer") -> ScorerSpec:
    """The declaration of scorer `name`; a ValueError naming `key` and the allowed values otherwise."""
    if not isinstance(name, str) or name not in SPECS:
        raise ValueError(f"{key} must be one of {tuple(SPECS)}, got {name!r}")
    return SPECS[name]
