"""The value types of the parameter model: strict scalars with their allowed ranges, the allowed values of each
choice (one Literal each, also as a tuple for the code that checks a value), and the frozen base model.

Strict: an int is no bool, a number is no string ("1e-4" quoted in YAML is a string); an int is accepted where a
number is expected and stored as a float. Frozen: models refuse assignment, lists become tuples and mappings
read-only views, so a Params can be compared and its sections without a mapping hashed.
"""

from __future__ import annotations

import types
from collections.abc import Mapping
from typing import Annotated, Any, Literal, get_args

from annotated_types import Ge, Gt, Le, MinLen
from pydantic import AfterValidator, BaseModel, ConfigDict, Strict, StringConstraints

# --- choices: each key's allowed values, listed once ----------------------------------------------------------------

Scorer = Literal["mae_surround", "mae_untrained", "frame_diff", "random", "wu_mask"]
Pool = Literal["cls", "mean"]
Padding = Literal["zero", "trainable", "masked"]
ErrorSpace = Literal["normalized", "raw"]
LossOn = Literal["all", "masked"]
NewPriority = Literal["max", "one"]
IsWeightNorm = Literal["batch", "buffer"]
Selection = Literal["dynamic", "fixed", "all"]
Augment = Literal["none", "shift_intensity"]
Aggregator = Literal["cls_per_frame", "divided_st", "joint_st"]
MaskedScale = Literal["faithful", "normalized"]
TargetLag = Literal["one_step", "none"]
WindowEnd = Literal["repeat", "mask"]

SCORERS: tuple[str, ...] = get_args(Scorer)  # saliency.scorer (SPEC §13; spirl.saliency.scorers implements them)
POOLS: tuple[str, ...] = get_args(Pool)  # agent.pool
PADDINGS: tuple[str, ...] = get_args(Padding)  # agent.padding
ERROR_SPACES: tuple[str, ...] = get_args(ErrorSpace)  # saliency.error_space
LOSS_ON: tuple[str, ...] = get_args(LossOn)  # mae.loss_on
NEW_PRIORITIES: tuple[str, ...] = get_args(NewPriority)  # replay.new_priority
IS_WEIGHT_NORMS: tuple[str, ...] = get_args(IsWeightNorm)  # replay.is_weight_norm
SELECTIONS: tuple[str, ...] = get_args(Selection)  # saliency.selection
AUGMENTS: tuple[str, ...] = get_args(Augment)  # train.augment
AGGREGATORS: tuple[str, ...] = get_args(Aggregator)  # agent.aggregator
MASKED_SCALES: tuple[str, ...] = get_args(MaskedScale)  # mlr.masked_scale
TARGET_LAGS: tuple[str, ...] = get_args(TargetLag)  # mlr.target_lag
WINDOW_ENDS: tuple[str, ...] = get_args(WindowEnd)  # mlr.window_end

# --- scalars with their ranges ----------------------------------------------------------------------------------------

Int = Annotated[int, Strict()]
PosInt = Annotated[int, Strict(), Ge(1)]
NonNegInt = Annotated[int, Strict(), Ge(0)]
Number = Annotated[float, Strict()]
PosNumber = Annotated[float, Strict(), Gt(0)]
NonNegNumber = Annotated[float, Strict(), Ge(0)]
Ratio = Annotated[float, Strict(), Gt(0), Le(1)]  # (0, 1]
Share = Annotated[float, Strict(), Ge(0), Le(1)]  # [0, 1]
Bool = Annotated[bool, Strict()]
Str = Annotated[str, Strict()]
Game = Annotated[str, StringConstraints(strict=True, pattern=r"^[A-Z][A-Za-z0-9]*$")]  # an ALE game: MsPacman
Name = Annotated[str, StringConstraints(strict=True, pattern=r"^[a-z][a-z0-9_]*$")]  # a profile or variant
TableName = Annotated[str, StringConstraints(strict=True, pattern=r"^(table[0-9]+|table_mlr|table_st|criteria)$")]
RegimeName = Annotated[str, StringConstraints(strict=True, pattern=r"^[0-9]+k$")]  # 100k: agent steps / 1000

# --- containers -------------------------------------------------------------------------------------------------------


def _distinct(items: tuple) -> tuple:
    repeated = sorted({repr(v) for i, v in enumerate(items) if v in items[:i]})
    if repeated:
        raise ValueError(f"repeated items {', '.join(repeated)}")
    return items


def freeze(value: Any) -> Any:
    """Deep-freeze plain YAML data (dict -> read-only mapping, list -> tuple)."""
    if isinstance(value, Mapping):
        return types.MappingProxyType({k: freeze(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return tuple(freeze(v) for v in value)
    return value


DISTINCT = AfterValidator(_distinct)  # the items of a list must differ
READ_ONLY = AfterValidator(types.MappingProxyType)  # a validated dict, frozen
DEEP_FROZEN = AfterValidator(freeze)  # free-form data (variant overrides), frozen all the way down
NON_EMPTY = MinLen(1)

Games = Annotated[tuple[Game, ...], NON_EMPTY, DISTINCT]
AllOr = Literal["all"]  # "all" or a list: games of a table, tables to build


def mapping_of(key: Any, value: Any) -> Any:
    """A non-empty read-only mapping of `key` to `value`."""
    return Annotated[Mapping[key, value], NON_EMPTY, READ_ONLY]


class Frozen(BaseModel):
    """Base of every section: unknown keys rejected, instances immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def to_plain(value: Any) -> Any:
    """Params (or any part of them) as plain JSON-serialisable data, e.g. for run.json: models and mappings -> dict
    in key order, tuples -> list. An optional key left at its default is left out, as the YAML had it."""
    if isinstance(value, BaseModel):
        fields = type(value).model_fields
        return {name: to_plain(getattr(value, name)) for name, info in fields.items()
                if info.is_required() or getattr(value, name) != info.default}
    if isinstance(value, Mapping):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [to_plain(v) for v in value]
    return value
