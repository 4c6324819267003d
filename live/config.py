"""Strict TOML configuration for frozen dataclasses.

One set of defaults lives in each dataclass. :func:`from_mapping` builds a dataclass from a
(nested) mapping and rejects unknown keys and wrong types with a message naming the key;
:func:`load_toml` reads a file; :func:`override` applies CLI flags that were given.
"""

from __future__ import annotations

import dataclasses
import sys
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from live.errors import InputError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

T = TypeVar("T")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except InputError as exc:
                errors.append(str(exc))
        raise InputError(f"config key {key!r} has the wrong type",
                         expected=" or ".join(_type_name(a) for a in args),
                         got=f"{value!r}")
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if not isinstance(value, Mapping):
            raise InputError(f"config key {key!r} must be a table", got=repr(value))
        return from_mapping(tp, value, prefix=f"{key}.")
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise InputError(f"config key {key!r} must be an array", got=repr(value))
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], key) for v in value)
        if len(args) != len(value):
            raise InputError(f"config key {key!r} has the wrong length",
                             expected=str(len(args)), got=str(len(value)))
        return tuple(_coerce(v, a, key) for v, a in zip(value, args, strict=True))
    if typing.get_origin(tp) is typing.Literal:
        if value not in typing.get_args(tp):
            raise InputError(f"config key {key!r} has an unknown value",
                             expected=" | ".join(map(repr, typing.get_args(tp))),
                             got=repr(value))
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is Path and isinstance(value, str):
        return Path(value)
    wrong = isinstance(tp, type) and not isinstance(value, tp)
    if wrong or (tp is int and isinstance(value, bool)):
        raise InputError(f"config key {key!r} has the wrong type",
                         expected=_type_name(tp), got=f"{type(value).__name__} {value!r}")
    return value


def from_mapping(cls: type[T], data: Mapping[str, Any], *, prefix: str = "") -> T:
    """Build dataclass ``cls`` from ``data``; unknown keys and wrong types raise InputError."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise InputError(
            f"unknown config key(s) {', '.join(prefix + k for k in unknown)}",
            expected=f"keys of [{prefix.rstrip('.') or 'top level'}]: "
            + ", ".join(sorted(fields)),
        )
    kwargs = {k: _coerce(v, hints[k], prefix + k) for k, v in data.items()}
    return cls(**kwargs)


def load_toml(path: str | Path, cls: type[T]) -> T:
    """Read ``path`` (TOML) into dataclass ``cls``, strictly."""
    p = Path(path)
    try:
        with p.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise InputError("config file not found", path=p) from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"not valid TOML ({exc})", path=p) from None
    return from_mapping(cls, data)


def override(obj: T, **changes: Any) -> T:
    """Return ``obj`` with the given fields replaced; ``None`` (a flag not given) is skipped."""
    given = {k: v for k, v in changes.items() if v is not None}
    return dataclasses.replace(obj, **given)  # type: ignore[type-var]
