"""One exception hierarchy for spectdl.

Every message names the argument, file or field at fault, the value found and the value expected,
so that a user can fix the input without reading the source.
"""

from __future__ import annotations


class SpectdlError(Exception):
    """Base class of every error spectdl raises on purpose."""


class InputError(SpectdlError, ValueError):
    """A tensor, file or value given to spectdl is not what the function expects."""


class GeometryError(SpectdlError, ValueError):
    """A geometry description (grid, orbit, collimator) is invalid or inconsistent."""


class ConfigError(SpectdlError, ValueError):
    """A configuration file or mapping has unknown keys, wrong types or missing values."""


class MissingDependencyError(SpectdlError, ImportError):
    """An optional dependency needed for this feature is not installed."""


def require(module: str, extra: str):
    """Import an optional dependency lazily, with a message that says which extra installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingDependencyError(
            f"{module!r} is needed for this feature but is not installed; "
            f"install it with: pip install 'spectdl[{extra}]'"
        ) from exc
