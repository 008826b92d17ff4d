"""ConfigError, and pydantic's validation errors told as the user wrote the file: the key path, the value given and
what is allowed (`validate` is the one door from plain data to a model)."""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal, TypeVar, Union

from annotated_types import Ge, Gt, Le, Lt, MinLen
from pydantic import BaseModel, StringConstraints, ValidationError

from spirl.params.values import DISTINCT

M = TypeVar("M", bound=BaseModel)
_BOUNDS = ((Ge, "ge", ">="), (Gt, "gt", ">"), (Le, "le", "<="), (Lt, "lt", "<"))
_SCALARS = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
_ABSENT = object()  # a key the data lacks


class ConfigError(ValueError):
    """A parameter file is invalid; the message names the key, the value and what is allowed."""


def key(where: str, name: Any) -> str:
    """Dotted key of `name` inside `where` ("" is the top level)."""
    return f"{where}.{name}" if where else str(name)


def field_type(cls: type[BaseModel], name: str) -> Any:
    """The annotation of a model's field with its constraints (pydantic keeps them apart)."""
    info = cls.model_fields[name]
    return Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation


def _unwrap(tp: Any) -> tuple[Any, tuple]:
    if typing.get_origin(tp) is Annotated:
        base, *meta = typing.get_args(tp)
        return base, tuple(meta)
    return tp, ()


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def describe(tp: Any) -> str:
    """What an annotation allows, in words: 'an integer >= 1', "one of 'cls', 'mean'", ..."""
    base, meta = _unwrap(tp)
    origin, args = typing.get_origin(base), typing.get_args(base)
    if base is Any:
        text = "any value"
    elif _is_model(base):
        text = "a mapping with keys " + ", ".join(base.model_fields)
    elif origin is Literal:
        text = "one of " + ", ".join(repr(a) for a in args)
    elif origin in (Union, types.UnionType):
        text = " or ".join(describe(a) for a in args)
    elif origin is tuple and Ellipsis in args:
        text = f"a list, each item {describe(args[0])}"
    elif origin is tuple:
        text = f"a list of exactly {len(args)} items: " + ", ".join(describe(a) for a in args)
    elif origin in (Mapping, dict):
        text = f"a mapping of {describe(args[0])} to {describe(args[1])}"
    else:
        text = _SCALARS.get(base, str(base))
    bounds = [f"{sign} {getattr(m, attr)}" for m in meta for cls, attr, sign in _BOUNDS if isinstance(m, cls)]
    if bounds:
        text += " " + " and ".join(bounds)
    text += "".join(f" matching {m.pattern!r}" for m in meta if isinstance(m, StringConstraints) and m.pattern)
    notes = ["non-empty" if m.min_length == 1 else f"at least {m.min_length} items"
             for m in meta if isinstance(m, MinLen)]
    notes += ["no repeated items" for m in meta if m is DISTINCT]
    return text + (f" ({', '.join(notes)})" if notes else "")


def _fixed_tuple(tp: Any) -> tuple | None:
    """The item types of a fixed-length tuple annotation, else None."""
    base, _ = _unwrap(tp)
    args = typing.get_args(base)
    return args if typing.get_origin(base) is tuple and Ellipsis not in args else None


def explain(error: Mapping[str, Any], cls: type[BaseModel], data: Any, where: str = "") -> str:
    """One pydantic error (of validating `data` as `cls`) as a message naming the key path under `where`, the value
    given and what is allowed. A union (e.g. 'all' or a list) is judged as a whole, as the user sees it."""
    loc, kind = tuple(error["loc"]), error["type"]
    tp, value, path = cls, data, where
    for i, part in enumerate(loc):
        base, _ = _unwrap(tp)
        origin = typing.get_origin(base)
        if _is_model(base):
            if part not in base.model_fields:
                return (f"unknown key {key(path, part)} (value {error['input']!r}); allowed keys in "
                        f"{path or 'the top level'}: {', '.join(base.model_fields)}")
            tp, path = field_type(base, part), key(path, part)
            value = value.get(part, _ABSENT) if isinstance(value, Mapping) else _ABSENT
            if value is _ABSENT and kind == "missing" and i == len(loc) - 1:
                return f"missing key {path}: expected {describe(tp)}"
        elif origin in (Mapping, dict):
            if loc[i + 1:i + 2] == ("[key]",):
                allowed = describe(typing.get_args(base)[0])
                return f"{path} has the key {part!r}, which is not allowed: expected {allowed}"
            tp, value, path = typing.get_args(base)[1], value[part], key(path, part)
        elif origin is tuple and isinstance(part, int):
            items = _fixed_tuple(tp)
            if items is not None and part >= len(value):
                break  # a missing item: told below as a wrong length
            tp = items[part] if items is not None else typing.get_args(base)[0]
            value, path = value[part], f"{path}[{part}]"
        else:
            break  # a union's member tag, or a scalar: judge the value here
    items = _fixed_tuple(tp)
    if items is not None and isinstance(value, Sequence) and len(value) != len(items):
        return f"{path} = {value!r} has {len(value)} item{'s' * (len(value) != 1)}: expected exactly {len(items)}"
    detail = f" ({error['ctx']['error']})" if kind == "value_error" and "error" in error.get("ctx", {}) else ""
    return (f"{path or '(top level)'} = {value!r} ({type(value).__name__}) is not allowed{detail}: "
            f"expected {describe(tp)}")


def validate(cls: type[M], data: Any, where: str = "") -> M:
    """`data` (plain YAML data) as the frozen model `cls`; the first problem is a ConfigError (see `explain`)."""
    try:
        return cls.model_validate(data)
    except ValidationError as err:
        raise ConfigError(explain(err.errors(include_url=False)[0], cls, data, where)) from None
