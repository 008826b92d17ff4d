"""Files to Params: read YAML, overlay conf/ files, validate into the frozen model, cross-check; and `replace`,
the validated way to change a few values of a model."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

from spirl.params.errors import ConfigError, validate
from spirl.params.model import SECTION_OF, Params
from spirl.params.values import Frozen, to_plain
from spirl.params.variants import check_consistency

REPO_ROOT = Path(__file__).resolve().parents[3]
M = TypeVar("M", bound=Frozen)


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


def params_from_dict(raw: Mapping, source: str = "params") -> Params:
    """Build and cross-check the frozen Params from a raw (merged) mapping."""
    try:
        params = validate(Params, dict(raw) if isinstance(raw, Mapping) else raw)
        check_consistency(params)
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None
    return params


def load_params(paths: Sequence[Path | str]) -> Params:
    """The one loader: merge the files, validate them into the frozen model, cross-check the sections."""
    return params_from_dict(read_params(paths), source=" + ".join(str(p) for p in paths))


def replace(obj: M, **changes: Any) -> M:
    """A copy of the model `obj` with some values changed, validated as the loader validates a file (a wrong type or
    an unknown key is a ConfigError); e.g. replace(params.train, lr=1e-3), replace(params, train=...)."""
    cls = type(obj)
    where = SECTION_OF.get(cls, cls.__name__ if cls is not Params else "")
    for name in changes:
        if name not in cls.model_fields:
            raise ConfigError(f"unknown key {where + '.' if where else ''}{name} (value {changes[name]!r}); "
                              f"allowed keys in {where or 'the top level'}: {', '.join(cls.model_fields)}")
    return validate(cls, {**to_plain(obj), **{k: to_plain(v) for k, v in changes.items()}}, where)
