"""Backend options (``--llm-opt key=value`` strings) as a typed settings dataclass: one parser for all."""

from __future__ import annotations

import types
import typing
from typing import Any, TypeVar

from ..config import ConfigError

T = TypeVar("T")
_SCALARS = (bool, int, float, str)


def _scalar(hint: Any) -> type | None:
    if hint in _SCALARS:
        return typing.cast(type, hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return next((a for a in typing.get_args(hint) if a in _SCALARS), None)
    if typing.get_origin(hint) is typing.Literal:
        return str
    return None


def _convert(kind: str, key: str, value: Any, typ: type | None) -> Any:
    if typ is None or not isinstance(value, str) or typ is str:
        return value
    try:
        if typ is bool:
            if value.lower() not in {"1", "0", "true", "false", "yes", "no"}:
                raise ValueError(value)
            return value.lower() in {"1", "true", "yes"}
        return typ(value)
    except ValueError:
        raise ConfigError(f"{kind} option {key}={value!r} must be a {typ.__name__}, "
                          f"e.g. --llm-opt {key}=...") from None


def settings_from_options(kind: str, cls: type[T], options: dict[str, Any]) -> T:
    """``cls(**options)`` with each value converted to its field's type; unknown keys name the known ones."""
    hints = typing.get_type_hints(cls)
    fields = list(cls.__dataclass_fields__)  # type: ignore[attr-defined]
    unknown = sorted(set(options) - set(fields))
    if unknown:
        raise ConfigError(f"unknown {kind} option(s) {unknown}; known: {sorted(fields)}")
    for k, v in options.items():
        choices = typing.get_args(hints[k]) if typing.get_origin(hints[k]) is typing.Literal else ()
        if choices and v not in choices:
            raise ConfigError(f"{kind} option {k}={v!r} must be one of {list(choices)}")
    return cls(**{k: _convert(kind, k, v, _scalar(hints[k])) for k, v in options.items()})
