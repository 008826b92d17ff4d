"""The parameter model: one frozen pydantic model per section of params.yaml. Field names are the YAML keys, the
annotations the allowed types and ranges (spirl.params.values); nothing else describes the file."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from annotated_types import Ge, Le, Lt, MinLen

from spirl.params.values import (
    DEEP_FROZEN,
    DISTINCT,
    NON_EMPTY,
    Aggregator,
    AllOr,
    Augment,
    Bool,
    ErrorSpace,
    Frozen,
    Game,
    Games,
    Int,
    IsWeightNorm,
    LossOn,
    MaskedScale,
    Name,
    NewPriority,
    NonNegInt,
    NonNegNumber,
    Number,
    Padding,
    Pool,
    PosInt,
    PosNumber,
    Ratio,
    RegimeName,
    Scorer,
    Selection,
    Share,
    Str,
    TableName,
    TargetLag,
    WindowEnd,
    mapping_of,
)


class RunSpec(Frozen):
    variant: Str
    regime: Str
    games: AllOr | Games = "all"  # optional: a subset of the table's games

    def runs_on(self, game: str) -> bool:
        return self.games == "all" or game in self.games


class TableSpec(Frozen):
    games: AllOr | Games
    runs: Annotated[tuple[RunSpec, ...], NON_EMPTY]


class VariantSpec(Frozen):
    base: Literal["spirl", "de_rainbow"]
    n_seeds: PosInt
    # section -> key -> value, checked against the section's model when the variant is resolved (resolve_variant)
    overrides: Annotated[Mapping[Str, Mapping[Str, Any]], DEEP_FROZEN]


class ExperimentParams(Frozen):
    profile: Name
    games: Games
    variants: mapping_of(Name, VariantSpec)
    tables: mapping_of(TableName, TableSpec)
    build_tables: AllOr | Annotated[tuple[TableName, ...], NON_EMPTY, DISTINCT]
    saliency_games: AllOr | Games

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


class AtariParams(Frozen):
    frame_size_px: Annotated[Int, Ge(8)]
    frame_skip: Annotated[Int, Ge(2)]
    frame_stack: PosInt
    max_noops: PosInt
    max_episode_agent_steps: PosInt
    fire_on_reset: Bool


class CollectParams(Frozen):
    seed: NonNegInt
    first_life_only: Bool
    frames_per_game: mapping_of(Game, PosInt)
    compression_level: Annotated[Int, Ge(0), Le(9)]


class MAEParams(Frozen):
    patch_size_px: PosInt
    encoder_dim: PosInt
    encoder_depth: PosInt
    encoder_heads: PosInt
    decoder_dim: PosInt
    decoder_depth: PosInt
    decoder_heads: PosInt
    mlp_ratio: PosInt
    layer_norm_eps: PosNumber
    token_init_std: PosNumber
    mask_ratio: Annotated[Number, Ge(0), Lt(1)]
    norm_pix_eps: PosNumber
    loss_on: LossOn
    batch_size: PosInt
    epochs: PosInt
    warmup_epochs: NonNegInt
    base_lr: PosNumber
    weight_decay: NonNegNumber
    adam_betas: tuple[Annotated[Number, Ge(0), Lt(1)], Annotated[Number, Ge(0), Lt(1)]]
    sampling: Literal["with_replacement", "permutation"]
    seed: NonNegInt


class SaliencyParams(Frozen):
    scorer: Scorer
    selection: Selection
    xscale: PosNumber
    error_space: ErrorSpace
    incremental: Bool
    mr: Literal["paper", "paper_star", "auto"] | Ratio
    mr_offset: Annotated[Number, Ge(-0.5), Le(0.5)]
    paper_mr: mapping_of(Game, Ratio)
    paper_mr_star: mapping_of(Game, Ratio)
    mr_grid_step: Ratio
    mr_coverage: Ratio
    batch_frames: PosInt


class WuPlateau(Frozen):
    window_epochs: NonNegInt  # 0: never stop early
    tolerance: NonNegNumber


class WuParams(Frozen):
    delta: NonNegNumber
    mask_weight: NonNegNumber
    max_gap: PosInt
    lr: PosNumber
    batch_size: PosInt
    pair_samples: PosInt
    max_grad_norm: PosNumber
    micro_batch: PosInt
    plateau: WuPlateau
    seed: NonNegInt
    checkpoint_every_updates: PosInt


class CriteriaParams(Frozen):
    scorers: Annotated[tuple[Scorer, ...], NON_EMPTY, DISTINCT]
    object_frames: PosInt
    object_every: PosInt
    seed: NonNegInt
    dynamic_categories: mapping_of(Game, Annotated[tuple[Annotated[Str, MinLen(1)], ...], NON_EMPTY, DISTINCT])


class AgentParams(Frozen):
    token_dim: PosInt
    heads: PosInt
    depth: PosInt
    mlp_dim: PosInt
    layer_norm_eps: PosNumber
    residual: Bool
    pool: Pool
    padding: Padding
    aggregator: Aggregator
    st_token_dim: PosInt
    st_heads: PosInt
    st_mlp_ratio: PosInt
    st_readout: PosInt
    pixels: Literal["gray84", "rgb96"]
    cnn_channels: Annotated[tuple[PosInt, ...], NON_EMPTY]
    cnn_kernels: Annotated[tuple[PosInt, ...], NON_EMPTY]
    cnn_strides: Annotated[tuple[PosInt, ...], NON_EMPTY]
    cnn_paddings: Annotated[tuple[NonNegInt, ...], NON_EMPTY]
    latent_renorm: Bool
    hidden_size: PosInt
    noisy_sigma0: PosNumber
    atoms: Annotated[Int, Ge(2)]
    v_min: Number
    v_max: Number


class ReplayParams(Frozen):
    priority_exponent: Share
    priority_weight_start: Share
    new_priority: NewPriority
    is_weight_norm: IsWeightNorm
    embedding_dtype: Literal["float16", "float32"]
    prefill: Literal["none", "pretraining"]
    exclude_newest: NonNegInt


class RegimeParams(Frozen):
    total_env_steps: PosInt
    env_steps_per_update: PosInt
    replay_capacity_transitions: PosInt
    eval_every_env_steps: PosInt
    metric: Literal["final_mean", "best_median"]


class TrainParams(Frozen):
    discount: Ratio
    multi_step: PosInt
    batch_size: PosInt
    lr: PosNumber
    adam_eps: PosNumber
    grad_clip_norm: PosNumber
    learn_start_env_steps: NonNegInt
    target_update_updates: PosInt
    updates_per_learn: PosInt
    augment: Augment
    checkpoint_every_env_steps: PosInt
    eval_checkpoint_every_s: NonNegNumber
    regimes: mapping_of(RegimeName, RegimeParams)


class MLRParams(Frozen):
    loss: Bool
    weight: NonNegNumber
    window: Annotated[Int, Ge(2)]
    cube_depth: PosInt
    mask_ratio: Share
    mask_cell_px: PosInt
    masked_scale: MaskedScale
    target_lag: TargetLag
    window_end: WindowEnd
    renorm: Bool
    decoder_blocks: PosInt
    decoder_mlp_ratio: PosInt


class AgentSaliencyParams(Frozen):
    variants: AllOr | Annotated[tuple[Name, ...], NON_EMPTY, DISTINCT]
    frames: PosInt
    stride: PosInt
    sigma_blur: PosNumber
    sigma_mask: PosNumber
    batch: PosInt


class EvalParams(Frozen):
    n_envs: PosInt
    epsilon: Share


class ReportParams(Frozen):
    bootstrap_reps: PosInt
    ci_level: Ratio
    seed: NonNegInt
    attention_mass: Ratio
    fig2_frames: PosInt
    fig3_frames: PosInt
    fig3_fixed_ratios: Annotated[tuple[Ratio, ...], NON_EMPTY]
    fig6_frames: PosInt
    curve_bins: PosInt
    profile_taus: Annotated[Int, Ge(2)]


class RuntimeParams(Frozen):
    device: Literal["auto", "cpu", "cuda"]
    torch_threads: PosInt
    saliency_threads: PosInt
    pretrain_precision: Literal["bf16", "fp32"]
    saliency_precision: Literal["fp32", "bf16"]
    saliency_memory_mb: Annotated[Int, Ge(64)]
    seeds_per_job: PosInt
    compile_learner: Bool


class Params(Frozen):
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
    mlr: MLRParams
    agent_saliency: AgentSaliencyParams
    eval: EvalParams
    report: ReportParams
    runtime: RuntimeParams


# Sections a variant may override (SPEC §9: variants = base method + overrides).
OVERRIDABLE: dict[str, type[Frozen]] = {"saliency": SaliencyParams, "agent": AgentParams, "replay": ReplayParams,
                                        "train": TrainParams, "mlr": MLRParams}
# The top-level section of each section model (a model's key path in messages).
SECTION_OF: dict[type[Frozen], str] = {Params.model_fields[name].annotation: name for name in Params.model_fields}
