"""Name -> constructor map, so that a config file can name a model.

Usage::

    @register("u2net")
    class U2Net(nn.Module): ...

    model = build("u2net", in_channels=2, out_channels=1)
"""

from __future__ import annotations

from typing import Callable, TypeVar

from spectdl.errors import ConfigError

_T = TypeVar("_T")
_REGISTRY: dict[str, Callable] = {}


def register(name: str) -> Callable[[_T], _T]:
    """Class or function decorator: record ``obj`` under ``name`` (lower case, unique)."""
    if not isinstance(name, str) or not name:
        raise ConfigError(f"register(name): expected a non-empty string, found {name!r}")
    key = name.lower()

    def decorator(obj: _T) -> _T:
        existing = _REGISTRY.get(key)
        if existing is not None and existing is not obj:
            raise ConfigError(
                f"register(name={name!r}): name already used by {existing!r}; expected a new name"
            )
        _REGISTRY[key] = obj
        return obj

    return decorator


def _load_builtin() -> None:
    # The model modules register themselves on import; import them lazily so that
    # `import spectdl.models.backbones` does not pull in the whole zoo.
    import importlib

    for module in ("u2net", "pix2pix", "rrdbnet", "spectnet", "dynconv", "edsr", "rcan", "unet"):
        importlib.import_module(f"spectdl.models.{module}")


def available() -> list[str]:
    """Sorted list of the registered model names."""
    _load_builtin()
    return sorted(_REGISTRY)


def build(name: str, **kwargs):
    """Construct the model registered as ``name`` with keyword arguments ``kwargs``.

    Raises ``ConfigError`` naming the known models when ``name`` is unknown.
    """
    _load_builtin()
    key = name.lower() if isinstance(name, str) else name
    if key not in _REGISTRY:
        raise ConfigError(
            f"build(name={name!r}): unknown model; expected one of {sorted(_REGISTRY)}"
        )
    return _REGISTRY[key](**kwargs)
