"""Typed config sections: dataclasses whose fields are checked against their annotations.

A section is a dataclass deriving from :class:`Section`. Building one from a mapping
(:meth:`Section.from_dict`) rejects unknown keys and values of the wrong type, and every message
names the key by its dotted path (``optim.lr: expected a float, found 'fast'``). Constructing a
section directly in Python runs the same checks (the path is then the field name alone).

Supported annotations: ``bool``, ``int``, ``float`` (an int is accepted and converted),
``str``, ``Any``, ``Literal[...]``, ``Optional[X]``, ``Union[X, Y]`` (tried in order),
``tuple[X, ...]`` and ``tuple[X, Y]`` (from a YAML list), ``dict[str, X]`` and nested sections.

Around the sections: :func:`read_yaml`, the one strict YAML reader of every spectdl config
(YAML 1.2 floats such as ``1e-3``, a key given twice is an error, messages name file and line);
:func:`load_section`, which builds a section from an instance, a mapping or a YAML file; and
:func:`apply_overrides`, which applies ``dotted.key=value`` texts (a command line's ``--set``) to a
mapping, checking each key against the schema before the values are checked by ``from_dict``.

This module sits at the bottom of the layer order (it imports only :mod:`spectdl.errors`), so
every package may build its configs on it.
"""

from __future__ import annotations

import dataclasses
import functools
import numbers
import os
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence, TypeVar, Union

from spectdl.errors import ConfigError, require

__all__ = ["Section", "apply_overrides", "convert", "load_section", "read_yaml"]

_S = TypeVar("_S", bound="Section")

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


# ------------------------------------------------------------------------------------------------
# Strict YAML

# YAML 1.1 demands a dot in floats, so PyYAML reads `1e5` as a string; accept YAML 1.2's form.
_FLOAT_12 = re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$")


@functools.cache
def _strict_loader():
    """A SafeLoader subclass that reads ``1e5`` as a float and rejects a key given twice."""
    yaml = require("yaml", "train")

    class StrictLoader(yaml.SafeLoader):
        """SafeLoader that reads ``1e5`` as a float and rejects a key given twice."""

    StrictLoader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_12, list("-+0123456789."))

    def construct_mapping(loader, node, deep=False):
        lines: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = loader.construct_object(key_node, deep=True)
            if key in lines:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} given twice (first on line {lines[key] + 1})", key_node.start_mark
                )
            lines[key] = key_node.start_mark.line
        return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)

    StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
    return StrictLoader


def _parse(text: str, where: str, error, with_position: bool) -> Any:
    """``text`` read with the strict loader; a YAML error raises ``error`` starting with ``where``
    (and ``:line:column`` when ``with_position``)."""
    yaml = require("yaml", "train")
    try:
        return yaml.load(text, Loader=_strict_loader())  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        if with_position and mark is not None:
            where = f"{where}:{mark.line + 1}:{mark.column + 1}"
        raise error(f"{where}: invalid YAML: {getattr(exc, 'problem', None) or exc}") from None


def read_yaml(path: str | os.PathLike, error: type[Exception] = ConfigError) -> Any:
    """The YAML document in ``path`` (``None`` for an empty file), read with the strict rules.

    Floats follow YAML 1.2 (``1e-3`` is a float, not a string) and a key given twice is an error.
    Failures raise ``error`` (ConfigError by default; a reader of data files may pass InputError)
    with a message that starts with the file name and, for invalid YAML, ``:line:column``.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise error(f"{path}: cannot read the file ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not a UTF-8 text file ({exc.reason} at byte {exc.start})") from None
    return _parse(text, str(path), error, with_position=True)


# ------------------------------------------------------------------------------------------------
# Loading and overriding sections


def load_section(
    cls: type[_S], source: Union[_S, Mapping[str, Any], str, os.PathLike], *, what: str = "config"
) -> _S:
    """A validated ``cls`` from an instance (returned as is), a mapping, or a YAML file.

    Errors are ConfigError naming the dotted key, and for a file they start with the file name. An
    empty file is an error rather than the defaults: it is more likely a mistake (a truncated copy,
    the wrong path) than a request for every default. ``what`` names the source in the message for
    a source of the wrong type.
    """
    if isinstance(source, cls):
        return source
    if isinstance(source, Mapping):
        return cls.from_dict(source)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        data = read_yaml(path)
        if data is None:
            raise ConfigError(f"{path}: the file is empty; expected a mapping of keys")
        if not isinstance(data, Mapping):
            found = type(data).__name__
            raise ConfigError(f"{path}: expected a mapping of keys at the top level, found {found}")
        try:
            return cls.from_dict(data)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None
    raise ConfigError(
        f"{what}: expected a YAML path, a mapping or a {cls.__name__}, found {type(source).__name__}"
    )


class _Entries:
    """The schema of a ``dict[str, X]`` field: any key, each holding a value annotated ``X``."""

    def __init__(self, value_hint) -> None:
        self.value_hint = value_hint


# Any key below, to any depth (an ``Any`` field, or entries annotated ``Any``).
_FREE = object()


def _below(hint) -> Any:
    """What the keys below a field annotated ``hint`` must fit: a Section class, an
    :class:`_Entries`, ``_FREE``, or ``None`` for a plain value, which has no keys."""
    if hint is Any:
        return _FREE
    if isinstance(hint, type) and issubclass(hint, Section):
        return hint
    origin = typing.get_origin(hint)
    if origin is dict:
        args = typing.get_args(hint)
        return _Entries(args[1] if args else Any)
    if origin in (Union, types.UnionType):
        # Optional[Section] and the like: the first option that has keys decides.
        for arg in typing.get_args(hint):
            below = _below(arg)
            if below is not None:
                return below
    return None


def _check_path(cls: type[Section], keys: list[str], override: str) -> None:
    """Raise ConfigError unless ``keys`` is a path the schema ``cls`` has."""
    schema: Any = cls
    for i, key in enumerate(keys):
        if schema is _FREE:
            return
        if schema is None:
            here = ".".join(keys[:i])
            raise ConfigError(f"--set {override}: {here} is a single value, not a section; it has no key {key!r}")
        if isinstance(schema, _Entries):
            schema = _below(schema.value_hint)
            continue
        if key not in schema.keys():
            place = f"in {'.'.join(keys[:i])}" if i else "at the top level"
            raise ConfigError(
                f"--set {override}: unknown key {key!r} {place}; expected one of {schema.keys()}"
            )
        schema = _below(typing.get_type_hints(schema)[key])


def _copy(value: Any) -> Any:
    """A copy of nested mappings and lists as plain dicts and lists (sections as their dicts)."""
    if isinstance(value, Section):
        return value.to_dict()
    if isinstance(value, Mapping):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def apply_overrides(
    cls: type[Section], data: Mapping[str, Any], overrides: Sequence[str]
) -> dict[str, Any]:
    """``data`` with each ``dotted.key=value`` of ``overrides`` applied, as a new nested dict.

    The value text is read with the strict YAML rules of :func:`read_yaml` (``2e-4`` is a float,
    ``[1, 2]`` a list, ``null`` None, ``abc`` a string). The key path must exist in the schema
    ``cls`` (nested sections, optional ones included; below a ``dict`` or ``Any`` field any key is
    allowed), so a misspelt key fails here, naming the override. Values are not checked here:
    ``cls.from_dict`` on the result does that. ``data`` is not modified. Later overrides win.
    """
    if not (isinstance(cls, type) and issubclass(cls, Section)):
        raise TypeError(f"apply_overrides: expected a Section class, found {cls!r}")
    if not isinstance(data, Mapping):
        raise ConfigError(f"config: expected a mapping of keys, found {type(data).__name__}")
    if isinstance(overrides, str):
        raise TypeError("apply_overrides: expected a sequence of 'key=value' strings, found one string")
    out = _copy(data)
    for override in overrides:
        key, sep, text = str(override).partition("=")
        keys = key.strip().split(".")
        if not sep or not all(k.strip() for k in keys):
            raise ConfigError(f"--set {override}: expected the form dotted.key=value (e.g. optim.lr=2e-4)")
        keys = [k.strip() for k in keys]
        _check_path(cls, keys, override)
        value = _parse(text, f"--set {override}", ConfigError, with_position=False)
        node = out
        for k in keys[:-1]:
            # A missing or null section (say `grid: null`) becomes a mapping of the keys set in it.
            if not isinstance(node.get(k), dict):
                node[k] = {}
            node = node[k]
        node[keys[-1]] = value
    return out
