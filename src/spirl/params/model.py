"""Strict configuration: params.yaml (+ a conf/ overlay) -> frozen dataclasses, one per section.

Two independent guards reject a bad file before any job runs:
- `validate_schema`: the JSON schema of workflow/schemas/params.schema.yaml (value ranges, enums);
- `load_params`: typed dataclasses built field by field; unknown, missing and mistyped keys fail.
Every error is a `ConfigError` naming the key, the bad value and what is allowed.
"""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Union

import yaml

REPO_ROOT = Path(__file__).resolve().parents[3]
SCHEMA_PATH = REPO_ROOT / "workflow" / "schemas" / "params.schema.yaml"


class ConfigError(ValueError):
    """A parameter file is invalid; the message names the key, the value and what is allowed."""


# ----------------------------------------------------------------------------------------------
# Sections. Field names are the YAML keys; annotations are the allowed types.
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunSpec:
    variant: str
    regime: str
    games: Literal["all"] | tuple[str, ...] = "all"  # optional: a subset of the table's games

    def runs_on(self, game: str) -> bool:
        return self.games == "all" or game in self.games


@dataclass(frozen=True)
class TableSpec:
    games: Literal["all"] | tuple[str, ...]
    runs: tuple[RunSpec, ...]


@dataclass(frozen=True)
class VariantSpec:
    base: Literal["spirl", "de_rainbow"]
    n_seeds: int
    overrides: Mapping[str, Mapping[str, Any]]


@dataclass(frozen=True)
class ExperimentParams:
    profile: str
    games: tuple[str, ...]
    variants: Mapping[str, VariantSpec]
    tables: Mapping[str, TableSpec]
    build_tables: Literal["all"] | tuple[str, ...]
    saliency_games: Literal["all"] | tuple[str, ...]

    @property
    def built_tables(self) -> tuple[str, ...]:
        """The tables this profile builds: build_tables in its own order, or every table ("all") in experiment.tables
        order. (A list fixes the order whatever the order of the merged mappings: Snakemake merges a conf/ overlay's
        tables before params.yaml's, our loader after.)"""
        if self.build_tables == "all":
            return tuple(self.tables)
        return tuple(t for t in self.build_tables if t in self.tables)

    @property
    def mae_games(self) -> tuple[str, ...]:
        """Games whose MAE, mr estimate and saliency figures this profile builds (saliency_games, in games order)."""
        return tuple(g for g in self.games if self.saliency_games == "all" or g in self.saliency_games)


@dataclass(frozen=True)
class AtariParams:
    frame_size_px: int
    frame_skip: int
    frame_stack: int
    max_noops: int
    max_episode_agent_steps: int
    fire_on_reset: bool


@dataclass(frozen=True)
class CollectParams:
    seed: int
    first_life_only: bool
    frames_per_game: Mapping[str, int]
    compression_level: int


@dataclass(frozen=True)
class MAEParams:
    patch_size_px: int
    encoder_dim: int
    encoder_depth: int
    encoder_heads: int
    decoder_dim: int
    decoder_depth: int
    decoder_heads: int
    mlp_ratio: int
    layer_norm_eps: float
    token_init_std: float
    mask_ratio: float
    norm_pix_eps: float
    loss_on: Literal["all", "masked"]
    batch_size: int
    epochs: int
    warmup_epochs: int
    base_lr: float
    weight_decay: float
    adam_betas: tuple[float, float]
    sampling: Literal["with_replacement", "permutation"]
    seed: int


Scorer = Literal["mae_surround", "mae_untrained", "frame_diff", "random", "wu_mask"]
SCORERS: tuple[str, ...] = Scorer.__args__  # saliency.scorer values (SPEC §13; spirl.saliency.scorers implements them)


@dataclass(frozen=True)
class SaliencyParams:
    scorer: Scorer
    selection: Literal["dynamic", "fixed", "all"]
    xscale: float
    error_space: Literal["normalized", "raw"]
    incremental: bool
    mr: Literal["paper", "paper_star", "auto"] | float
    mr_offset: float
    paper_mr: Mapping[str, float]
    paper_mr_star: Mapping[str, float]
    mr_grid_step: float
    mr_coverage: float
    batch_frames: int


@dataclass(frozen=True)
class WuParams:
    delta: float
    mask_weight: float
    max_gap: int
    lr: float
    batch_size: int
    epochs: int
    seed: int
    checkpoint_every_updates: int


@dataclass(frozen=True)
class CriteriaParams:
    scorers: tuple[Scorer, ...]
    object_frames: int
    object_every: int
    seed: int
    dynamic_categories: Mapping[str, tuple[str, ...]]


@dataclass(frozen=True)
class AgentParams:
    token_dim: int
    heads: int
    depth: int
    mlp_dim: int
    layer_norm_eps: float
    residual: bool
    pool: Literal["cls", "mean"]
    padding: Literal["zero", "trainable", "masked"]
    pixels: Literal["gray84", "rgb96"]
    cnn_channels: tuple[int, ...]
    cnn_kernels: tuple[int, ...]
    cnn_strides: tuple[int, ...]
    cnn_paddings: tuple[int, ...]
    hidden_size: int
    noisy_sigma0: float
    atoms: int
    v_min: float
    v_max: float


@dataclass(frozen=True)
class ReplayParams:
    priority_exponent: float
    priority_weight_start: float
    new_priority: Literal["max", "one"]
    is_weight_norm: Literal["batch", "buffer"]
    embedding_dtype: Literal["float16", "float32"]
    prefill: Literal["none", "pretraining"]


@dataclass(frozen=True)
class RegimeParams:
    total_env_steps: int
    env_steps_per_update: int
    replay_capacity_transitions: int
    eval_every_env_steps: int
    metric: Literal["final_mean", "best_median"]


@dataclass(frozen=True)
class TrainParams:
    discount: float
    multi_step: int
    batch_size: int
    lr: float
    adam_eps: float
    grad_clip_norm: float
    learn_start_env_steps: int
    target_update_updates: int
    checkpoint_every_env_steps: int
    eval_checkpoint_every_s: float
    regimes: Mapping[str, RegimeParams]


@dataclass(frozen=True)
class EvalParams:
    n_envs: int
    epsilon: float


@dataclass(frozen=True)
class ReportParams:
    bootstrap_reps: int
    ci_level: float
    seed: int
    attention_mass: float
    fig2_frames: int
    fig3_frames: int
    fig3_fixed_ratios: tuple[float, ...]
    fig6_frames: int
    curve_bins: int
    profile_taus: int


@dataclass(frozen=True)
class RuntimeParams:
    device: Literal["auto", "cpu", "cuda"]
    torch_threads: int
    pretrain_precision: Literal["bf16", "fp32"]
    saliency_precision: Literal["fp32", "bf16"]
    saliency_memory_mb: int
    seeds_per_job: int
    compile_learner: bool


@dataclass(frozen=True)
class Params:
    experiment: ExperimentParams
    atari: AtariParams
    collect: CollectParams
    mae: MAEParams
    saliency: SaliencyParams
    wu: WuParams
    criteria: CriteriaParams
    agent: AgentParams
    replay: ReplayParams
    train: TrainParams
    eval: EvalParams
    report: ReportParams
    runtime: RuntimeParams


# Sections a variant may override (SPEC §9: variants = base method + overrides).
OVERRIDABLE = {"saliency": SaliencyParams, "agent": AgentParams, "replay": ReplayParams, "train": TrainParams}

# ----------------------------------------------------------------------------------------------
# Generic strict conversion: plain YAML data -> annotated dataclass.
# ----------------------------------------------------------------------------------------------


def _describe(tp: Any) -> str:
    """Human-readable name of an allowed type."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(tp))
    if origin in (tuple, list, Sequence):
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        return f"a list of {_describe(args[0])}" if args else "a list"
    if origin in (Mapping, dict):
        return f"a mapping of str to {_describe(typing.get_args(tp)[1])}"
    if dataclasses.is_dataclass(tp):
        return f"a mapping with keys {', '.join(f.name for f in dataclasses.fields(tp))}"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(tp, str(tp))


def _bad(where: str, value: Any, tp: Any) -> ConfigError:
    return ConfigError(f"{where} = {value!r} ({type(value).__name__}) is not allowed: expected {_describe(tp)}")


def _convert(value: Any, tp: Any, where: str) -> Any:
    """Check `value` against annotation `tp` and return the frozen Python value."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return build_dataclass(tp, value, where)
    if tp is Any:
        return _freeze(value)
    if origin is Literal:
        if value not in typing.get_args(tp) or isinstance(value, bool):
            raise _bad(where, value, tp)
        return value
    if origin in (Union, types.UnionType):
        for option in typing.get_args(tp):
            try:
                return _convert(value, option, where)
            except ConfigError:
                continue
        raise _bad(where, value, tp)
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, list):
            raise _bad(where, value, tp)
        if Ellipsis not in args and len(value) != len(args):
            raise ConfigError(f"{where} = {value!r} has {len(value)} items: expected exactly {len(args)}")
        item_types = [args[0]] * len(value) if Ellipsis in args else list(args)
        return tuple(_convert(v, t, f"{where}[{i}]") for i, (v, t) in enumerate(zip(value, item_types, strict=True)))
    if origin in (Mapping, dict):
        if not isinstance(value, dict):
            raise _bad(where, value, tp)
        _, value_tp = typing.get_args(tp)
        return types.MappingProxyType({str(k): _convert(v, value_tp, _key(where, k)) for k, v in value.items()})
    if tp is bool:
        if not isinstance(value, bool):
            raise _bad(where, value, tp)
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _bad(where, value, tp)
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _bad(where, value, tp)
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise _bad(where, value, tp)
        return value
    raise TypeError(f"unsupported annotation {tp!r} at {where}")


def _freeze(value: Any) -> Any:
    """Deep-freeze plain YAML data (dict -> MappingProxyType, list -> tuple)."""
    if isinstance(value, dict):
        return types.MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


def _key(where: str, name: Any) -> str:
    """Dotted key of `name` inside `where` ("" is the top level)."""
    return f"{where}.{name}" if where else str(name)


def build_dataclass(cls: type, data: Any, where: str) -> Any:
    """Build frozen dataclass `cls` from mapping `data`; reject unknown, missing and mistyped keys."""
    if not isinstance(data, dict):
        raise _bad(where, data, cls)
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ConfigError(
            f"unknown key {_key(where, unknown[0])} (value {data[unknown[0]]!r}); allowed keys in "
            f"{where or 'the top level'}: " + ", ".join(names)
        )
    required = [f.name for f in dataclasses.fields(cls)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    missing = [n for n in required if n not in data]
    if missing:
        raise ConfigError(f"missing key {_key(where, missing[0])}: expected {_describe(hints[missing[0]])}")
    return cls(**{n: _convert(data[n], hints[n], _key(where, n)) for n in names if n in data})


# ----------------------------------------------------------------------------------------------
# Files: load, overlay, validate.
# ----------------------------------------------------------------------------------------------


def read_yaml(path: Path) -> dict:
    """Read one YAML mapping; a missing file or a non-mapping is a ConfigError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"parameter file {path} does not exist")
    with path.open() as fh:
        data = yaml.safe_load(fh)
    if not isinstance(data, dict):
        raise ConfigError(f"parameter file {path} must hold a mapping, found {type(data).__name__}")
    return data


def deep_merge(base: dict, overlay: Mapping, where: str = "params") -> dict:
    """Return base updated by overlay, recursively for mappings; lists and scalars are replaced."""
    merged = copy.deepcopy(base)
    for key, value in overlay.items():
        here = f"{where}.{key}"
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value, here)
        elif isinstance(value, Mapping) != isinstance(merged.get(key, value), dict):
            raise ConfigError(f"overlay sets {here} = {value!r}, but the base has {merged[key]!r}")
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def read_params(paths: Sequence[Path | str]) -> dict:
    """Merge the parameter files in order (params.yaml first, then overlays) into one raw dict."""
    if not paths:
        raise ConfigError("no parameter file given")
    raw: dict = {}
    for path in paths:
        raw = deep_merge(raw, read_yaml(Path(path)))
    return raw


def validate_schema(raw: Mapping, schema_path: Path = SCHEMA_PATH, source: str = "params") -> None:
    """Check raw parameters against the JSON schema; raise ConfigError for the first violation."""
    import jsonschema

    schema = read_yaml(schema_path)
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(raw), key=lambda e: (len(e.absolute_path), list(map(str, e.path))))
    if errors:
        err = errors[0]
        key = ".".join(str(p) for p in err.absolute_path) or "(top level)"
        if err.validator == "additionalProperties" and "properties" in err.schema:
            allowed = ", ".join(err.schema["properties"])
            raise ConfigError(f"{source}: {key}: {err.message}; allowed keys: {allowed}")
        if err.validator == "required":
            raise ConfigError(f"{source}: {key}: {err.message}")
        raise ConfigError(f"{source}: {key} = {err.instance!r}: {err.message} (schema: {err.validator} "
                          f"{err.validator_value!r})")


def params_from_dict(raw: Mapping, source: str = "params") -> Params:
    """Build and cross-check the frozen Params from a raw (merged) mapping."""
    try:
        params = build_dataclass(Params, dict(raw), "")
        check_consistency(params)
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None
    return params


def load_params(paths: Sequence[Path | str]) -> Params:
    """The one loader: merge files, validate against the schema, build and cross-check dataclasses."""
    source = " + ".join(str(p) for p in paths)
    raw = read_params(paths)
    validate_schema(raw, source=source)
    return params_from_dict(raw, source=source)


# ----------------------------------------------------------------------------------------------
# Cross-field rules the schema cannot express.
# ----------------------------------------------------------------------------------------------


def check_consistency(params: Params) -> None:
    """Games, variants, regimes and tables must refer to each other consistently."""
    exp = params.experiment
    for section, mapping in [
        ("collect.frames_per_game", params.collect.frames_per_game),
        ("saliency.paper_mr", params.saliency.paper_mr),
        ("saliency.paper_mr_star", params.saliency.paper_mr_star),
    ]:
        for game in exp.games:
            if game not in mapping:
                raise ConfigError(f"missing key {section}.{game}: every game in experiment.games needs one")
    for name, table in exp.tables.items():
        if table.games != "all":
            for game in table.games:
                if game not in exp.games:
                    raise ConfigError(
                        f"experiment.tables.{name}.games has {game!r}; allowed: {', '.join(exp.games)}"
                    )
        for i, run in enumerate(table.runs):
            where = f"experiment.tables.{name}.runs[{i}]"
            table_games = exp.games if table.games == "all" else table.games
            for game in () if run.games == "all" else run.games:
                if game not in table_games:
                    raise ConfigError(f"{where}.games has {game!r}; allowed (the table's games): "
                                      f"{', '.join(table_games)}")
            if run.variant not in exp.variants:
                raise ConfigError(f"{where}.variant = {run.variant!r}; allowed: {', '.join(exp.variants)}")
            if run.regime not in params.train.regimes:
                raise ConfigError(f"{where}.regime = {run.regime!r}; allowed: {', '.join(params.train.regimes)}")
    for name in exp.variants:
        resolve_variant(params, name)
    if exp.build_tables != "all":
        for name in exp.build_tables:
            if name not in exp.tables:
                raise ConfigError(f"experiment.build_tables has {name!r}; allowed: {', '.join(exp.tables)}")
    if exp.saliency_games != "all":
        for game in exp.saliency_games:
            if game not in exp.games:
                raise ConfigError(f"experiment.saliency_games has {game!r}; allowed: {', '.join(exp.games)}")
    for name in exp.built_tables:  # a SPIRL-base run needs its game's MAE and mr
        table = exp.tables[name]
        for run in table.runs:
            games = [g for g in (exp.games if table.games == "all" else table.games) if run.runs_on(g)]
            if exp.variants[run.variant].base == "spirl" and not set(games) <= set(exp.mae_games):
                raise ConfigError(
                    f"experiment.tables.{name} trains {run.variant!r} (base spirl) on {list(games)}, but "
                    f"experiment.saliency_games = {list(exp.mae_games)} builds no MAE for "
                    f"{sorted(set(games) - set(exp.mae_games))}; add them or use 'all'")
    if "criteria" in exp.built_tables:  # SPEC §14: each compared game needs its list of dynamic object categories
        table = exp.tables["criteria"]
        for game in exp.games if table.games == "all" else table.games:
            if game not in params.criteria.dynamic_categories:
                raise ConfigError(f"missing key criteria.dynamic_categories.{game}: experiment.tables.criteria "
                                  f"compares scorers on {game}; list its moving OCAtari categories")


def resolve_variant(params: Params, variant: str) -> Params:
    """Params with the variant's base method and overrides applied (SPEC §9), strictly re-checked."""
    if variant not in params.experiment.variants:
        raise ConfigError(f"unknown variant {variant!r}; allowed: {', '.join(params.experiment.variants)}")
    spec = params.experiment.variants[variant]
    changes: dict[str, Any] = {}
    for section, values in spec.overrides.items():
        cls = OVERRIDABLE.get(section)
        where = f"experiment.variants.{variant}.overrides.{section}"
        if cls is None:
            raise ConfigError(f"{where}: section cannot be overridden; allowed: {', '.join(OVERRIDABLE)}")
        current = changes.get(section, getattr(params, section))
        raw = {**to_plain(current), **_thaw(values)}
        changes[section] = build_dataclass(cls, raw, where)
    return dataclasses.replace(params, **changes)


def resolve_mr(saliency: SaliencyParams, game: str, estimated_mr_star: float | None = None) -> float:
    """The maximal ratio mr a run uses (SPEC §6): saliency.mr (+ saliency.mr_offset) for `game`.

    saliency.mr: "paper" (the adopted published ratio), "paper_star" (Tab. 3's mr*), "auto" (the
    mr* estimated from the pre-training frames, passed in) or a ratio. Rounded to 1e-6.
    """
    if saliency.mr == "paper":
        base = saliency.paper_mr[game]
    elif saliency.mr == "paper_star":
        base = saliency.paper_mr_star[game]
    elif saliency.mr == "auto":
        if estimated_mr_star is None:
            raise ConfigError("saliency.mr = 'auto' needs the estimated mr* of " + game + " (estimate_mr output)")
        base = estimated_mr_star
    else:
        base = float(saliency.mr)
    ratio = round(base + saliency.mr_offset, 6)
    if not 0 < ratio <= 1:
        raise ConfigError(f"saliency.mr {saliency.mr!r} + saliency.mr_offset {saliency.mr_offset} gives {ratio} for "
                          f"{game}; allowed: a ratio in (0, 1]")
    return ratio


def _thaw(value: Any) -> Any:
    """Inverse of _freeze, for re-validation and JSON: dataclasses and mappings -> dict, tuples -> list (an optional
    key left at its default is left out, as the YAML had it)."""
    if dataclasses.is_dataclass(value):
        return {f.name: _thaw(getattr(value, f.name)) for f in dataclasses.fields(value)
                if f.default is dataclasses.MISSING or getattr(value, f.name) != f.default}
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_thaw(v) for v in value]
    return value


def to_plain(value: Any) -> Any:
    """Params (or any part of them) as plain JSON-serialisable data, e.g. for run.json."""
    return _thaw(value)
