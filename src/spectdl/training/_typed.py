"""Typed config sections: dataclasses whose fields are checked against their annotations.

A section is a dataclass deriving from :class:`Section`. Building one from a mapping
(:meth:`Section.from_dict`) rejects unknown keys and values of the wrong type, and every message
names the key by its dotted path (``optim.lr: expected a float, found 'fast'``). Constructing a
section directly in Python runs the same checks (the path is then the field name alone).

Supported annotations: ``bool``, ``int``, ``float`` (an int is accepted and converted),
``str``, ``Any``, ``Literal[...]``, ``Optional[X]``, ``Union[X, Y]`` (tried in order),
``tuple[X, ...]`` and ``tuple[X, Y]`` (from a YAML list), ``dict[str, X]`` and nested sections.
"""

from __future__ import annotations

import dataclasses
import numbers
import types
import typing
from typing import Any, Literal, Mapping, Union

from spectdl.errors import ConfigError

_NAMES = {bool: "a boolean", int: "an integer", float: "a float", str: "a string"}
_PLURALS = {bool: "booleans", int: "integers", float: "floats", str: "strings"}


def _describe(hint) -> str:
    """The expected value in words, for messages."""
    origin = typing.get_origin(hint)
    if hint in _NAMES:
        return _NAMES[hint]
    if hint is type(None):
        return "null"
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(hint))
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(hint))
    if origin is tuple:
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_PLURALS.get(args[0], _describe(args[0]))}"
        return f"a list of {len(args)} values ({', '.join(_describe(a) for a in args)})"
    if origin is dict:
        return "a mapping"
    if isinstance(hint, type) and issubclass(hint, Section):
        return f"a mapping (section {hint.__name__})"
    return str(hint)


def _fail(path: str, hint, value) -> ConfigError:
    return ConfigError(f"{path}: expected {_describe(hint)}, found {value!r}")


def _convert_union(value: Any, hint, path: str) -> Any:
    args = typing.get_args(hint)
    if value is None:
        if type(None) in args:
            return None
        raise _fail(path, hint, value)
    options = [a for a in args if a is not type(None)]
    if len(options) == 1:
        return convert(value, options[0], path)
    deeper = None
    for arg in options:
        try:
            return convert(value, arg, path)
        except ConfigError as exc:
            # An error inside a nested value (a deeper path) says more than "expected X or Y".
            if deeper is None and str(exc).startswith((f"{path}.", f"{path}[")):
                deeper = exc
    if deeper is not None:
        raise deeper
    raise _fail(path, hint, value)


def _convert_tuple(value: Any, hint, path: str) -> tuple:
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, (list, tuple)):
        raise _fail(path, hint, value)
    args = typing.get_args(hint)
    if len(args) == 2 and args[1] is Ellipsis:
        return tuple(convert(v, args[0], f"{path}[{i}]") for i, v in enumerate(value))
    if len(value) != len(args):
        raise ConfigError(f"{path}: expected {_describe(hint)}, found {len(value)} values {list(value)!r}")
    return tuple(convert(v, a, f"{path}[{i}]") for i, (v, a) in enumerate(zip(value, args)))


def convert(value: Any, hint, path: str) -> Any:
    """``value`` checked against the annotation ``hint`` (and normalised: int -> float, list -> tuple).

    Raises ConfigError naming ``path`` when the value does not fit.
    """
    if hint is Any:
        return value
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        return _convert_union(value, hint, path)
    if origin is Literal:
        # bool is an int subclass (True == 1), so compare types as well as values.
        if any(type(value) is type(c) and value == c for c in typing.get_args(hint)):
            return value
        raise _fail(path, hint, value)
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise _fail(path, hint, value)
    if hint is int:
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            return int(value)
        raise _fail(path, hint, value)
    if hint is float:
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            return float(value)
        raise _fail(path, hint, value)
    if hint is str:
        if isinstance(value, str):
            return value
        raise _fail(path, hint, value)
    if origin is tuple:
        return _convert_tuple(value, hint, path)
    if origin is dict:
        if not isinstance(value, Mapping):
            raise _fail(path, hint, value)
        key_hint, value_hint = typing.get_args(hint) or (str, Any)
        out = {}
        for k, v in value.items():
            if key_hint is str and not isinstance(k, str):
                raise ConfigError(f"{path}: keys must be strings, found {k!r}")
            out[k] = convert(v, value_hint, f"{path}.{k}")
        return out
    if isinstance(hint, type) and issubclass(hint, Section):
        if isinstance(value, hint):
            return value
        if isinstance(value, Mapping):
            return hint.from_dict(value, path=path)
        raise _fail(path, hint, value)
    raise TypeError(f"{path}: unsupported annotation {hint!r} in a config section")  # a bug in a schema


class Section:
    """Base of the config dataclasses: type checks in ``__post_init__``, :meth:`from_dict`, :meth:`to_dict`.

    Subclasses are ``@dataclass(frozen=True)`` classes; they may define ``_check(self)`` for checks
    of ranges or across fields, raising ``ConfigError`` whose message starts with the field name.
    """

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            object.__setattr__(self, f.name, convert(getattr(self, f.name), hints[f.name], f.name))
        self._check()

    def _check(self) -> None:
        """Checks of ranges or across fields; override in subclasses."""

    @classmethod
    def keys(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], path: str = ""):
        """Build the section from ``data``; unknown keys and wrong types raise ConfigError naming the key."""
        prefix = f"{path}." if path else ""
        if not isinstance(data, Mapping):
            raise ConfigError(f"{path or 'config'}: expected {_describe(cls)}, found {data!r}")
        hints = typing.get_type_hints(cls)
        known = cls.keys()
        kwargs = {}
        for key, value in data.items():
            if key not in known:
                raise ConfigError(f"{prefix}{key}: unknown key; expected one of {known}")
            kwargs[key] = convert(value, hints[key], f"{prefix}{key}")
        try:
            return cls(**kwargs)
        except ConfigError as exc:
            # Messages from _check start with the field name; add the section's path.
            raise ConfigError(f"{prefix}{exc}") from None

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (tuples as lists), ready for YAML or JSON."""
        return _plain(self)

    def replace(self, **changes: Any):
        """A copy with ``changes`` applied (and checked)."""
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]


def _plain(value: Any) -> Any:
    if isinstance(value, Section):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}  # type: ignore[arg-type]
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value
