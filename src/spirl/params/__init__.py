"""Layer 0, the parameter model: params.yaml and its conf/ overlays read, merged, validated and frozen.

Every other layer takes its numbers from here (`load_params`, `resolve_variant`); nothing here imports from the
rest of the package. values: the allowed values and ranges; model: the sections; errors: messages naming the key,
the value and what is allowed; variants: rules across sections, a variant's parameters; load: files to Params.
"""

from spirl.params.errors import ConfigError, describe
from spirl.params.load import REPO_ROOT, deep_merge, load_params, params_from_dict, read_params, read_yaml, replace
from spirl.params.model import (
    OVERRIDABLE,
    AgentParams,
    AgentSaliencyParams,
    AtariParams,
    CollectParams,
    CriteriaParams,
    EvalParams,
    ExperimentParams,
    MAEParams,
    MLRParams,
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
)
from spirl.params.values import (
    AGGREGATORS,
    AUGMENTS,
    ERROR_SPACES,
    IS_WEIGHT_NORMS,
    LOSS_ON,
    NEW_PRIORITIES,
    PADDINGS,
    POOLS,
    SCORERS,
    SELECTIONS,
    to_plain,
)
from spirl.params.variants import check_consistency, resolve_mr, resolve_variant

__all__ = ["AGGREGATORS", "AUGMENTS", "ERROR_SPACES", "IS_WEIGHT_NORMS", "LOSS_ON", "NEW_PRIORITIES", "OVERRIDABLE",
           "PADDINGS", "POOLS", "REPO_ROOT", "SCORERS", "SELECTIONS", "AgentParams", "AgentSaliencyParams",
           "AtariParams", "CollectParams", "ConfigError", "CriteriaParams", "EvalParams", "ExperimentParams",
           "MAEParams", "MLRParams", "Params", "RegimeParams", "ReplayParams", "ReportParams", "RunSpec",
           "RuntimeParams", "SaliencyParams", "TableSpec", "TrainParams", "VariantSpec", "WuParams",
           "check_consistency", "deep_merge", "describe", "load_params", "params_from_dict", "read_params",
           "read_yaml", "replace", "resolve_mr", "resolve_variant", "to_plain"]
