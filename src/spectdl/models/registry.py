"""Name -> constructor map, so that a config file can name a model, and one tiny example per model.

Usage::

    @register("u2net", example=ModelExample(
        kwargs={"spatial_dims": 2, "in_channels": 2, "out_channels": 1},
        input_shape=(2, 2, 33, 20), output_shape=(2, 1, 33, 20),
        violations=(Violation((1, 2, 32, 32), "batch >= 2", training=True),),
    ))
    class U2Net(nn.Module): ...

    model = build("u2net", in_channels=2, out_channels=1)

The example is what the model contract tests (``tests/contracts/test_models.py``) run for every
registered name: a forward and backward pass of ``build(name, **example.kwargs)`` on an input of
``example.input_shape``, the output shape, each documented constraint (``example.violations``),
determinism under a seed and the global state left behind. A model registered without an example
fails those tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Mapping, TypeVar

from spectdl.errors import ConfigError

_T = TypeVar("_T")
_REGISTRY: dict[str, Callable] = {}
_EXAMPLES: dict[str, "ModelExample"] = {}


def _shape(value: Any, name: str) -> tuple[int, ...]:
    if (
        not isinstance(value, (tuple, list))
        or not value
        or any(not isinstance(v, int) or isinstance(v, bool) or v < 1 for v in value)
    ):
        raise ConfigError(f"{name}={value!r}; expected a non-empty tuple of positive integers")
    return tuple(value)


@dataclass(frozen=True)
class Violation:
    """An input that breaks one documented constraint of a model.

    Attributes:
        input_shape: shape of the offending input (batch and channels included).
        match: text that the ``spectdl.errors.InputError`` message must contain (literally).
        training: run the input in training mode (constraints such as "batch 1 needs S >= 33"
            hold only there); eval mode otherwise.
    """

    input_shape: tuple[int, ...]
    match: str
    training: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_shape", _shape(self.input_shape, "Violation.input_shape"))
        if not isinstance(self.match, str) or not self.match:
            raise ConfigError(f"Violation.match={self.match!r}; expected a non-empty string")
        object.__setattr__(self, "training", bool(self.training))


@dataclass(frozen=True)
class ModelExample:
    """A tiny instance of a registered model and an input it accepts.

    Attributes:
        kwargs: constructor keywords, ``build(name, **kwargs)`` (read-only after construction).
        input_shape: shape of a valid input, e.g. ``(2, 1, 16, 16)`` for ``[B, C, H, W]``.
        output_shape: shape of the output for that input.
        violations: inputs that break a documented constraint and the error each must give.
    """

    kwargs: Mapping[str, Any]
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    violations: tuple[Violation, ...] = field(default=())

    def __post_init__(self) -> None:
        if not isinstance(self.kwargs, Mapping) or any(not isinstance(k, str) for k in self.kwargs):
            raise ConfigError(f"ModelExample.kwargs={self.kwargs!r}; expected a mapping with string keys")
        object.__setattr__(self, "kwargs", MappingProxyType(dict(self.kwargs)))
        object.__setattr__(self, "input_shape", _shape(self.input_shape, "ModelExample.input_shape"))
        object.__setattr__(self, "output_shape", _shape(self.output_shape, "ModelExample.output_shape"))
        violations = tuple(self.violations)
        if any(not isinstance(v, Violation) for v in violations):
            raise ConfigError(
                f"ModelExample.violations={self.violations!r}; expected a tuple of Violation"
            )
        object.__setattr__(self, "violations", violations)


def register(name: str, *, example: ModelExample | None = None) -> Callable[[_T], _T]:
    """Class or function decorator: record ``obj`` under ``name`` (lower case, unique).

    ``example`` is the tiny instance the model contract tests run (see :class:`ModelExample`);
    every built-in model has one, and a model registered without one fails those tests.
    """
    if not isinstance(name, str) or not name:
        raise ConfigError(f"register(name): expected a non-empty string, found {name!r}")
    if example is not None and not isinstance(example, ModelExample):
        raise ConfigError(
            f"register(name={name!r}, example=...): found {type(example).__name__}; "
            "expected a ModelExample or None"
        )
    key = name.lower()

    def decorator(obj: _T) -> _T:
        existing = _REGISTRY.get(key)
        if existing is not None and existing is not obj:
            raise ConfigError(
                f"register(name={name!r}): name already used by {existing!r}; expected a new name"
            )
        _REGISTRY[key] = obj
        if example is not None:
            _EXAMPLES[key] = example
        return obj

    return decorator


def _load_builtin() -> None:
    # The model modules register themselves on import; import them lazily so that
    # `import spectdl.models` does not pull in the whole zoo.
    import importlib

    for module in ("u2net", "pix2pix", "rrdbnet", "spectnet", "dynconv", "edsr", "rcan", "unet"):
        importlib.import_module(f"spectdl.models.{module}")


def available() -> list[str]:
    """Sorted list of the registered model names."""
    _load_builtin()
    return sorted(_REGISTRY)


def _key(name: str, caller: str) -> str:
    _load_builtin()
    key = name.lower() if isinstance(name, str) else name
    if key not in _REGISTRY:
        raise ConfigError(
            f"{caller}(name={name!r}): unknown model; expected one of {sorted(_REGISTRY)}"
        )
    return key


def build(name: str, **kwargs):
    """Construct the model registered as ``name`` with keyword arguments ``kwargs``.

    Raises ``ConfigError`` naming the known models when ``name`` is unknown.
    """
    return _REGISTRY[_key(name, "build")](**kwargs)


def example(name: str) -> ModelExample | None:
    """The :class:`ModelExample` registered with model ``name``, or ``None`` if it has none.

    Raises ``ConfigError`` naming the known models when ``name`` is unknown.
    """
    return _EXAMPLES.get(_key(name, "example"))
