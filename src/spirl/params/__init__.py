"""Layer 0, the parameter model: params.yaml and its conf/ overlays read, merged, validated and frozen.

Every other layer takes its numbers from here (`load_params`, `resolve_variant`); nothing here imports from the
rest of the package.
"""

from spirl.params.model import (
    OVERRIDABLE,
    REPO_ROOT,
    SCHEMA_PATH,
    SCORERS,
    AgentParams,
    AtariParams,
    CollectParams,
    ConfigError,
    CriteriaParams,
    EvalParams,
    ExperimentParams,
    MAEParams,
    Params,
    RegimeParams,
    ReplayParams,
    ReportParams,
    RunSpec,
    RuntimeParams,
    SaliencyParams,
    TableSpec,
    TrainParams,
    VariantSpec,
    WuParams,
    check_consistency,
    deep_merge,
    load_params,
    params_from_dict,
    read_params,
    read_yaml,
    resolve_mr,
    resolve_variant,
    to_plain,
    validate_schema,
)

__all__ = ["OVERRIDABLE", "REPO_ROOT", "SCHEMA_PATH", "SCORERS", "AgentParams", "AtariParams", "CollectParams",
           "ConfigError", "CriteriaParams", "EvalParams", "ExperimentParams", "MAEParams", "Params", "RegimeParams",
           "ReplayParams", "ReportParams", "RunSpec", "RuntimeParams", "SaliencyParams", "TableSpec", "TrainParams",
           "VariantSpec", "WuParams", "check_consistency", "deep_merge", "load_params", "params_from_dict",
           "read_params", "read_yaml", "resolve_mr", "resolve_variant", "to_plain", "validate_schema"]
