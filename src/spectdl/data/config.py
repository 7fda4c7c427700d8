"""The simulation config: a YAML file (or mapping) validated into frozen dataclasses.

Layout (every key optional; defaults shown)::

    phantom: brain2d              # brain2d | nema_iec | cardiac | wholebody_planar
    phantom_kwargs: {}            # keyword arguments of the phantom function (n_regions: [1, 5], ...)
    grid: null                    # {shape: [128, 128], voxel_size_mm: 2.0}; null = the phantom's default
    n_samples: 256
    seed: 0
    batch_size: 16                # phantoms rendered and projected together
    shard_size: 256               # samples per HDF5 shard (one worker writes a whole shard)
    orbit: {n_angles: 120, radius_mm: null, arc_deg: 360.0, start_deg: 0.0, direction: ccw}
    collimator: LEHR              # LEHR | LEGP | MEGP | null (ideal line integrals)
    attenuation: true             # use the phantom's mu map in the projector
    counts: {total: 5.0e+5, levels: {full: 1.0}}
    recon: null                   # {iterations: 4, subsets: 10}: OSEM of every count level
    store: null                   # null = [activity, mu_per_cm, labels, counts]
                                  #   (planar: [expected, labels, lesion_mask, counts])
    splits: {train: 0.8, val: 0.1, test: 0.1}
    compression: gzip             # gzip | lzf | none (gzip: ~10× smaller for ~5% more time)
    dtype: float32                # float32 | float64
    device: cpu

``counts.total`` is the expected number of counts of the full acquisition, summed over all views
(one number, or ``[low, high]`` drawn log-uniformly per sample). Every level ``name: f`` is the
full Poisson acquisition binomially thinned to the fraction ``f`` (``f = 1`` is the full
acquisition itself), so the levels of one sample are paired count by count as the frames of one
list-mode acquisition are. ``orbit.radius_mm: null`` puts the detector on the circle inscribed in
the grid. For ``wholebody_planar`` there is no projector: the anterior and posterior views are the
two channels of ``expected``, and ``orbit``, ``collimator`` and ``attenuation`` are not used.

Unknown keys and values of the wrong type raise :class:`~spectdl.errors.ConfigError` naming the
key by its dotted path (``counts.total: expected a float or a list of 2 values, found 'many'``).
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import numbers
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, Optional, Union

import torch

from spectdl.errors import ConfigError, SpectdlError
from spectdl.data._util import read_yaml

__all__ = [
    "CountsConfig",
    "GridConfig",
    "OrbitConfig",
    "PHANTOMS",
    "ReconConfig",
    "SimulationConfig",
    "load_simulation_config",
]

# Phantom name -> (module attribute in spectdl.phantoms, kind, spatial dims).
PHANTOMS: dict[str, tuple[str, str, int]] = {
    "brain2d": ("brain2d", "volume", 2),
    "nema_iec": ("nema_iec", "volume", 3),
    "cardiac": ("cardiac", "volume", 3),
    "wholebody_planar": ("wholebody_planar", "planar", 2),
}
VOLUME_KEYS = ("activity", "mu_per_cm", "labels", "expected", "counts")
PLANAR_KEYS = ("expected", "labels", "lesion_mask", "counts")
_RESERVED_KWARGS = ("grid", "batch_size", "seed", "generator", "device", "dtype")
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


# ------------------------------------------------------------------------------------------------
# Checking values against annotations


def _describe(hint) -> str:
    origin = typing.get_origin(hint)
    names = {bool: "a boolean", int: "an integer", float: "a float", str: "a string", type(None): "null"}
    if hint in names:
        return names[hint]
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(hint))
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(hint))
    if origin is tuple:
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of values ({_describe(args[0])} each)"
        return f"a list of {len(args)} values"
    if origin is dict:
        return "a mapping"
    if dataclasses.is_dataclass(hint):
        return f"a mapping (section {hint.__name__})"
    return str(hint)


def _convert(value: Any, hint, path: str) -> Any:
    """``value`` checked against ``hint`` and normalised (int -> float, list -> tuple)."""
    fail = ConfigError(f"{path}: expected {_describe(hint)}, found {value!r}")
    origin = typing.get_origin(hint)
    if hint is Any:
        return value
    if origin in (Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None:
            if type(None) in args:
                return None
            raise fail
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, path)
            except ConfigError:
                continue
        raise fail
    if origin is Literal:
        if any(type(value) is type(c) and value == c for c in typing.get_args(hint)):
            return value
        raise fail
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise fail
    if hint is int:
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            return int(value)
        raise fail
    if hint is float:
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            return float(value)
        raise fail
    if hint is str:
        if isinstance(value, str):
            return value
        raise fail
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise fail
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0], f"{path}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise fail
        return tuple(_convert(v, a, f"{path}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if origin is dict:
        if not isinstance(value, Mapping):
            raise fail
        _, value_hint = typing.get_args(hint)
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise ConfigError(f"{path}: keys must be strings, found {k!r}")
            out[k] = _convert(v, value_hint, f"{path}.{k}")
        return out
    if dataclasses.is_dataclass(hint):
        if isinstance(value, hint):
            return value
        if isinstance(value, Mapping):
            return _from_mapping(hint, value, path)
        raise fail
    raise TypeError(f"{path}: unsupported annotation {hint!r}")  # a bug in a schema below


def _from_mapping(cls, data: Mapping[str, Any], path: str = ""):
    prefix = f"{path}." if path else ""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path or 'config'}: expected {_describe(cls)}, found {data!r}")
    known = [f.name for f in dataclasses.fields(cls)]
    for key in data:
        if key not in known:
            raise ConfigError(f"{prefix}{key}: unknown key; expected one of {known}")
    try:
        return cls(**dict(data))
    except ConfigError as exc:
        raise ConfigError(f"{prefix}{exc}") from None


class _Checked:
    """Dataclass mixin: fields are checked against their annotations on construction."""

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            object.__setattr__(self, f.name, _convert(getattr(self, f.name), hints[f.name], f.name))
        self._check()

    def _check(self) -> None:
        """Checks across fields; messages start with the field name."""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]):
        """Build from a mapping; unknown keys and wrong types raise ConfigError naming the key."""
        return _from_mapping(cls, data)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (tuples as lists), ready for YAML or JSON."""
        return _plain(self)


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _finite_positive(name: str, value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"{name}: expected a finite value > 0, found {value!r}")


# ------------------------------------------------------------------------------------------------
# Sections


@dataclass(frozen=True)
class GridConfig(_Checked):
    """The voxel grid: ``shape`` (2 or 3 ints) and one voxel size in mm."""

    shape: tuple[int, ...] = (128, 128)
    voxel_size_mm: float = 2.0

    def _check(self) -> None:
        if len(self.shape) not in (2, 3) or any(s < 1 for s in self.shape):
            raise ConfigError(f"shape: expected 2 or 3 positive integers, found {list(self.shape)}")
        _finite_positive("voxel_size_mm", self.voxel_size_mm)


@dataclass(frozen=True)
class OrbitConfig(_Checked):
    """A circular orbit (see :meth:`spectdl.geometry.Orbit.circular`)."""

    n_angles: int = 120
    radius_mm: Optional[float] = None
    arc_deg: float = 360.0
    start_deg: float = 0.0
    direction: Literal["ccw", "cw"] = "ccw"

    def _check(self) -> None:
        if self.n_angles < 1:
            raise ConfigError(f"n_angles: expected a positive integer, found {self.n_angles}")
        if self.radius_mm is not None:
            _finite_positive("radius_mm", self.radius_mm)
        if not 0 < self.arc_deg <= 360:
            raise ConfigError(f"arc_deg: expected a value in (0, 360], found {self.arc_deg}")


@dataclass(frozen=True)
class CountsConfig(_Checked):
    """Count level: ``total`` expected counts of the full acquisition, and the thinned ``levels``."""

    total: Union[float, tuple[float, float]] = 5.0e5
    levels: dict[str, float] = field(default_factory=lambda: {"full": 1.0})

    def _check(self) -> None:
        pair = self.total if isinstance(self.total, tuple) else (self.total, self.total)
        for v in pair:
            _finite_positive("total", v)
        if pair[0] > pair[1]:
            raise ConfigError(f"total: expected [low, high] with low <= high, found {list(pair)}")
        if not self.levels:
            raise ConfigError("levels: expected at least one level, found none")
        for name, f in self.levels.items():
            if not _NAME.match(name):
                raise ConfigError(f"levels.{name}: a level name must be letters, digits and '_', starting with a letter")
            if not (math.isfinite(f) and 0 < f <= 1):
                raise ConfigError(f"levels.{name}: expected a fraction in (0, 1], found {f!r}")

    @property
    def total_range(self) -> tuple[float, float]:
        return self.total if isinstance(self.total, tuple) else (self.total, self.total)


@dataclass(frozen=True)
class ReconConfig(_Checked):
    """OSEM of every count level with the projector used to simulate it (attenuation, collimator)."""

    iterations: int = 4
    subsets: int = 10

    def _check(self) -> None:
        if self.iterations < 1:
            raise ConfigError(f"iterations: expected >= 1, found {self.iterations}")
        if self.subsets < 1:
            raise ConfigError(f"subsets: expected >= 1, found {self.subsets}")


@dataclass(frozen=True)
class SimulationConfig(_Checked):
    """Everything :func:`spectdl.data.simulate` needs (see the module docstring for the layout)."""

    phantom: Literal["brain2d", "nema_iec", "cardiac", "wholebody_planar"] = "brain2d"
    phantom_kwargs: dict[str, Any] = field(default_factory=dict)
    grid: Optional[GridConfig] = None
    n_samples: int = 256
    seed: int = 0
    batch_size: int = 16
    shard_size: int = 256
    orbit: OrbitConfig = field(default_factory=OrbitConfig)
    collimator: Optional[Literal["LEHR", "LEGP", "MEGP"]] = "LEHR"
    attenuation: bool = True
    counts: CountsConfig = field(default_factory=CountsConfig)
    recon: Optional[ReconConfig] = None
    store: Optional[tuple[str, ...]] = None
    splits: dict[str, float] = field(default_factory=lambda: {"train": 0.8, "val": 0.1, "test": 0.1})
    compression: Literal["none", "gzip", "lzf"] = "gzip"
    dtype: Literal["float32", "float64"] = "float32"
    device: str = "cpu"

    def _check(self) -> None:
        for name in ("n_samples", "batch_size", "shard_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}: expected a positive integer, found {getattr(self, name)}")
        if not 0 <= self.seed < 2**62:
            raise ConfigError(f"seed: expected an integer in [0, 2**62), found {self.seed}")
        _, kind, ndim = PHANTOMS[self.phantom]
        if self.grid is not None and len(self.grid.shape) != ndim:
            raise ConfigError(
                f"grid.shape: phantom {self.phantom!r} needs a {ndim}-D grid, found {list(self.grid.shape)}"
            )
        allowed = PLANAR_KEYS if kind == "planar" else VOLUME_KEYS
        if self.store is None:
            default = ("expected", "labels", "lesion_mask", "counts") if kind == "planar" else (
                "activity", "mu_per_cm", "labels", "counts")
            object.__setattr__(self, "store", default)
        for i, key in enumerate(self.store):
            if key not in allowed:
                raise ConfigError(f"store[{i}]: {key!r} is not stored for phantom {self.phantom!r}; expected one of {list(allowed)}")
        if len(set(self.store)) != len(self.store):
            raise ConfigError(f"store: a key is listed twice in {list(self.store)}")
        if kind == "planar" and self.recon is not None:
            raise ConfigError("recon: planar phantoms have no tomographic reconstruction; expected null")
        if self.recon is not None and self.recon.subsets > self.orbit.n_angles:
            raise ConfigError(
                f"recon.subsets: {self.recon.subsets} subsets of {self.orbit.n_angles} views; expected at most {self.orbit.n_angles}"
            )
        if not self.splits:
            raise ConfigError("splits: expected at least one split, found none")
        for name, f in self.splits.items():
            if not _NAME.match(name):
                raise ConfigError(f"splits.{name}: a split name must be letters, digits and '_', starting with a letter")
            if not (math.isfinite(f) and f >= 0):
                raise ConfigError(f"splits.{name}: expected a fraction >= 0, found {f!r}")
        total = sum(self.splits.values())
        if abs(total - 1.0) > 1e-6:
            raise ConfigError(f"splits: the fractions sum to {total:.6g}; expected 1")
        try:
            torch.device(self.device)
        except (RuntimeError, TypeError) as exc:
            raise ConfigError(f"device: {self.device!r} is not a torch device ({exc})") from None
        object.__setattr__(self, "phantom_kwargs", self._checked_kwargs())
        try:
            self.voxel_grid()
        except SpectdlError as exc:
            raise ConfigError(f"grid: {exc}") from None

    def _checked_kwargs(self) -> dict[str, Any]:
        params = inspect.signature(self.phantom_function()).parameters
        allowed = [p for p in params if p not in _RESERVED_KWARGS and params[p].kind == inspect.Parameter.KEYWORD_ONLY]
        out = {}
        for key, value in self.phantom_kwargs.items():
            if key not in allowed:
                raise ConfigError(f"phantom_kwargs.{key}: not a parameter of {self.phantom}; expected one of {allowed}")
            out[key] = _tuples(value)
        return out

    # -------------------------------------------------------------- derived objects
    @property
    def kind(self) -> str:
        """``"volume"`` (projected by SpectProjector) or ``"planar"``."""
        return PHANTOMS[self.phantom][1]

    def phantom_function(self):
        import spectdl.phantoms as phantoms

        return getattr(phantoms, PHANTOMS[self.phantom][0])

    def voxel_grid(self):
        """The :class:`VoxelGrid`, or ``None`` for the phantom's default grid."""
        from spectdl.geometry import VoxelGrid

        return None if self.grid is None else VoxelGrid(self.grid.shape, self.grid.voxel_size_mm)

    @property
    def torch_dtype(self) -> torch.dtype:
        return torch.float32 if self.dtype == "float32" else torch.float64


def _tuples(value: Any) -> Any:
    """YAML lists as tuples (the phantom functions take ranges as tuples)."""
    if isinstance(value, (list, tuple)):
        return tuple(_tuples(v) for v in value)
    if isinstance(value, Mapping):
        return {k: _tuples(v) for k, v in value.items()}
    return value


def load_simulation_config(source: Union[str, Path, Mapping[str, Any], SimulationConfig]) -> SimulationConfig:
    """A validated :class:`SimulationConfig` from a YAML file, a mapping, or a config (returned as is).

    Errors are :class:`ConfigError` naming the file (for files) and the dotted key.
    """
    if isinstance(source, SimulationConfig):
        return source
    if isinstance(source, Mapping):
        return SimulationConfig.from_dict(source)
    if isinstance(source, (str, Path)):
        data = read_yaml(source)
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise ConfigError(f"{source}: expected a mapping of keys at the top level, found {type(data).__name__}")
        try:
            return SimulationConfig.from_dict(data)
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None
    raise ConfigError(f"config: expected a YAML path, a mapping or a SimulationConfig, found {type(source).__name__}")
