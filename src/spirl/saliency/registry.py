"""The saliency scorers of SPEC §13, declared once: what each needs, where its seed comes from, where its mr lives.

This module is the only place that knows the scorers by name (tests/unit/test_registry.py scans src/ for a scorer
name written anywhere else). It imports no torch, so the job plan (spirl.workflow) can ask it which inputs a job
needs; the scorers themselves (their frame, stream and sequence forms) are built from a declaration by
spirl.saliency.scorers.build_scorer, which picks the implementation that `computes` names.
"""

from __future__ import annotations

from dataclasses import dataclass

from spirl.common.seeding import derive_seed
from spirl.params import SCORERS

SCORES_WITH = ("trained_mae", "untrained_mae", "wu", None)  # the models a score can come from (None: no model)
COMPUTATIONS = ("mae_error", "frame_difference", "uniform_noise", "wu_attention")  # spirl.saliency.scorers' modules


@dataclass(frozen=True)
class ScorerSpec:
    """One scorer's declaration.

    name: the `saliency.scorer` / `criteria.scorers` value.
    scores_with: the model whose output the scores are: "trained_mae" (the game's pre-trained MAE), "untrained_mae"
        (the same architecture and init seed, never trained), "wu" (the game's trained Wu mask) or None.
    computes: what the scores are, one of COMPUTATIONS (the implementation in spirl.saliency.scorers):
        "mae_error" the error map E of SPEC §4 from the `scores_with` MAE; "frame_difference" mean |x_t − x_{t−1}|
        per patch; "uniform_noise" i.i.d. U[0, 1); "wu_attention" Wu et al.'s mask Ψ pooled onto the patches.
    previous_frame: the scores compare a frame with the one before it in the same stream.
    seeded: the scores are drawn from a seeded random stream (derive_seed(..., SEED_KEY, ...)).
    paper: the paper's criterion E (SPEC §4); its mr estimate is the estimate_mr stage's, the others'
        estimate_mr_scorer's.
    """

    name: str
    scores_with: str | None
    computes: str
    previous_frame: bool = False
    seeded: bool = False
    paper: bool = False

    def __post_init__(self) -> None:
        if self.scores_with not in SCORES_WITH:
            raise ValueError(f"ScorerSpec {self.name!r}: scores_with must be one of {SCORES_WITH}, "
                             f"got {self.scores_with!r}")
        if self.computes not in COMPUTATIONS:
            raise ValueError(f"ScorerSpec {self.name!r}: computes must be one of {COMPUTATIONS}, "
                             f"got {self.computes!r}")

    @property
    def needs_wu(self) -> bool:
        """Whether a job scoring with it reads the game's trained Wu mask."""
        return self.scores_with == "wu"

    @property
    def needs_untrained_mae(self) -> bool:
        """Whether it scores with the game's MAE as pre-training initialises it (built, never read from a file)."""
        return self.scores_with == "untrained_mae"

    @property
    def uses_mae_error_map(self) -> bool:
        """Whether its scores are an MAE's error map E (trained or untrained; normalised errors and variances)."""
        return self.scores_with in ("trained_mae", "untrained_mae")


SEED_KEY = "saliency.random"  # the random scorer's only seed key (derive_seed(base, SEED_KEY, stream or game, ...))

SPECS: dict[str, ScorerSpec] = {s.name: s for s in (
    ScorerSpec("mae_surround", scores_with="trained_mae", computes="mae_error", paper=True),
    ScorerSpec("mae_untrained", scores_with="untrained_mae", computes="mae_error"),
    ScorerSpec("frame_diff", scores_with=None, computes="frame_difference", previous_frame=True),
    ScorerSpec("random", scores_with=None, computes="uniform_noise", seeded=True),
    ScorerSpec("wu_mask", scores_with="wu", computes="wu_attention"),
)}
PAPER = next(s.name for s in SPECS.values() if s.paper)

if tuple(SPECS) != SCORERS:  # the parameter model (layer 0) lists the allowed values; both must agree
    raise ImportError(f"spirl.params.SCORERS {SCORERS} and the registry {tuple(SPECS)} disagree")


def spec(name: object, key: str = "saliency.scorer") -> ScorerSpec:
    """The declaration of scorer `name`; a ValueError naming `key` and the allowed values otherwise."""
    if not isinstance(name, str) or name not in SPECS:
        raise ValueError(f"{key} must be one of {tuple(SPECS)}, got {name!r}")
    return SPECS[name]


def archive_seed(base: int, game: str) -> int:
    """The seed of a seeded scorer's scores over one of a game's frame archives (the mr stage's pre-training frames,
    the object frames): derive_seed(base, SEED_KEY, game), base = criteria.seed. (A training or evaluation env's
    stream seeds itself from its own key: spirl.saliency.scorers.uniform_noise.)"""
    return derive_seed(base, SEED_KEY, game)
