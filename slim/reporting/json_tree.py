"""A tree of frozen dataclasses to and from JSON values, by their field types.

`to_json` writes fields in their declared order (the order of the JSON a reader sees); a class may leave
fields out with `json_omitted()`. `from_json` reads by the type hints: dataclasses, `tuple[X, ...]` and fixed
tuples, `Mapping[str, X]`, optionals; a key the JSON lacks takes the field's default (older reports).
"""
from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Mapping
from typing import Any


def to_json(value: Any) -> Any:
    """Dataclasses as dicts, tuples as lists, mappings as dicts; plain values as they are."""
    if isinstance(value, (str, int, float)) or value is None:  # most of a tree's leaves, looked at first
        return value
    if dataclasses.is_dataclass(value):
        omitted = value.json_omitted() if hasattr(value, "json_omitted") else ()
        return {f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value) if f.name not in omitted}
    if isinstance(value, (tuple, list)):
        return [to_json(item) for item in value]
    if isinstance(value, Mapping):
        return {key: to_json(item) for key, item in value.items()}
    return value


def from_json(kind: Any, value: Any) -> Any:
    if value is None:
        return None
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        return from_json(next(arg for arg in args if arg is not type(None)), value)
    if dataclasses.is_dataclass(kind):
        hints = _hints(kind)
        return kind(**{f.name: from_json(hints[f.name], value[f.name]) for f in dataclasses.fields(kind) if f.name in value})
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(from_json(args[0], item) for item in value)
        return tuple(from_json(arg, item) for arg, item in zip(args, value))
    if origin in (Mapping, dict, typing.Mapping):
        return {key: from_json(args[1], item) for key, item in value.items()}
    return value


@functools.cache
def _hints(kind: type) -> dict[str, Any]:
    return typing.get_type_hints(kind)
