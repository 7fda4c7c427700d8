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
    resolution: null              # {fwhm_mm: 7.6, distance_mm: 100}: the collimator matched to a system FWHM
    planar_distance_mm: null      # planar phantoms: [anterior, posterior] collimator-to-midplane distances (mm)
    fov: null                     # {shape: [70, 70, 50]}: the reconstruction's field, centred in the grid
    attenuation: true             # use the phantom's mu map in the projector
    counts: {total: 5.0e+5, levels: {full: 1.0}}   # or activity: {injected_mbq: 800, ...} instead of total
    recon: null                   # {iterations: 4, subsets: 10}: OSEM of every count level
    store: null                   # null = [activity, mu_per_cm, labels, counts]
                                  #   (planar: [expected, labels, lesion_mask, counts])
    splits: {train: 0.8, val: 0.1, test: 0.1}
    compression: gzip             # gzip | lzf | none (gzip level 1: ~9.5× smaller, ~2 ms per 2-D sample)
    dtype: float32                # float32 | float64
    device: cpu

``counts.total`` is the expected number of counts of the full acquisition, summed over all views
(one number, or ``[low, high]`` drawn log-uniformly per sample). Every level ``name: f`` is the
full Poisson acquisition binomially thinned to the fraction ``f`` (``f = 1`` is the full
acquisition itself), so the levels of one sample are paired count by count as the frames of one
list-mode acquisition are. ``orbit.radius_mm: null`` puts the detector on the circle inscribed in
the grid. For ``wholebody_planar`` there is no projector: the anterior and posterior views are the
two channels of ``expected``, and ``orbit`` and ``attenuation`` are not used (the phantom's own
water attenuation applies). With ``planar_distance_mm: [a, p]`` and a ``collimator``, each view is
blurred by the collimator's system response at that distance from the collimator face to the body's
mid-plane (a Gaussian of :meth:`spectdl.geometry.Collimator.fwhm_mm`, area 1, so counts are kept; the
spread of source depths within the body is not modelled); without it the views are ideal projections.

``fov: {shape: [fx, fy, fz]}`` (3-D phantoms) is a dedicated camera's truncated field: the phantom is
rendered and projected on the whole ``grid``, then the projections keep the ``fx`` central radial bins
and ``fz`` central rows (the body outside the field still projects into them) and every stored
volume is the centred ``fx × fy × fz`` crop; OSEM, :func:`spectdl.data.simulation.simulation_projector`
and the stored data use the field's grid. ``orbit.radius_mm`` must then be given.

The sections are :class:`spectdl.typed_config.Section` dataclasses: unknown keys and values of the
wrong type raise :class:`~spectdl.errors.ConfigError` naming the key by its dotted path
(``counts.total: expected a float or a list of 2 values (a float, a float), found 'many'``).
"""

from __future__ import annotations

import inspect
import math
import os
import re
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping, Optional, Union

import torch

from spectdl.errors import ConfigError, SpectdlError
from spectdl.typed_config import Section, load_section

__all__ = [
    "ActivityConfig",
    "CountsConfig",
    "FovConfig",
    "GridConfig",
    "OrbitConfig",
    "PHANTOMS",
    "ReconConfig",
    "ResolutionConfig",
    "SimulationConfig",
    "load_simulation_config",
]

# Phantom name -> (module attribute in spectdl.phantoms, kind, spatial dims).
PHANTOMS: dict[str, tuple[str, str, int]] = {
    "brain2d": ("brain2d", "volume", 2),
    "nema_iec": ("nema_iec", "volume", 3),
    "cardiac": ("cardiac", "volume", 3),
    "wholebody_planar": ("wholebody_planar", "planar", 2),
    "bone_torso": ("bone_torso", "volume", 3),
    "brain_perfusion_slice": ("brain_perfusion_slice", "volume", 2),
}
VOLUME_KEYS = ("activity", "mu_per_cm", "ct_hu", "labels", "expected", "counts")
PLANAR_KEYS = ("expected", "labels", "lesion_mask", "counts")
_RESERVED_KWARGS = ("grid", "batch_size", "seed", "generator", "device", "dtype")
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


def _finite_positive(name: str, value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"{name}: expected a finite value > 0, found {value!r}")


# ------------------------------------------------------------------------------------------------
# Sections


@dataclass(frozen=True)
class GridConfig(Section):
    """The voxel grid: ``shape`` (2 or 3 ints) and one voxel size in mm."""

    shape: tuple[int, ...] = (128, 128)
    voxel_size_mm: float = 2.0

    def _check(self) -> None:
        if len(self.shape) not in (2, 3) or any(s < 1 for s in self.shape):
            raise ConfigError(f"shape: expected 2 or 3 positive integers, found {list(self.shape)}")
        _finite_positive("voxel_size_mm", self.voxel_size_mm)


@dataclass(frozen=True)
class FovConfig(Section):
    """The reconstruction's field of view: a centred sub-grid of the simulation grid (same voxels)."""

    shape: tuple[int, ...] = (70, 70, 50)

    def _check(self) -> None:
        if len(self.shape) != 3 or any(s < 1 for s in self.shape):
            raise ConfigError(f"shape: expected 3 positive integers, found {list(self.shape)}")


@dataclass(frozen=True)
class OrbitConfig(Section):
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
class ActivityConfig(Section):
    """Counts from the injected activity, through :func:`spectdl.noise.expected_counts`.

    ``region`` (a phantom label name) holds ``uptake_fraction`` of ``injected_mbq``; the rest of the
    activity in the field of view follows from the phantom's concentration ratios, so that the
    activity in the field is ``A = injected_mbq · uptake_fraction · Σx / Σ_region x`` (MBq), and the
    expected counts are ``ȳ = A_sys(x / Σx) · A · S · t`` with the sensitivity ``S`` (cps/MBq, planar,
    in air) and ``t`` seconds per view (a number, or ``[low, high]`` drawn uniformly per sample).
    """

    injected_mbq: float = 800.0
    region: str = "myocardium"
    uptake_fraction: float = 0.012
    sensitivity_cps_per_mbq: float = 79.0
    time_per_view_s: Union[float, tuple[float, float]] = 22.0

    def _check(self) -> None:
        _finite_positive("injected_mbq", self.injected_mbq)
        _finite_positive("sensitivity_cps_per_mbq", self.sensitivity_cps_per_mbq)
        if not (math.isfinite(self.uptake_fraction) and 0 < self.uptake_fraction <= 1):
            raise ConfigError(f"uptake_fraction: expected a fraction in (0, 1], found {self.uptake_fraction!r}")
        lo, hi = self.time_range
        for v in (lo, hi):
            _finite_positive("time_per_view_s", v)
        if lo > hi:
            raise ConfigError(f"time_per_view_s: expected [low, high] with low <= high, found {[lo, hi]}")

    @property
    def time_range(self) -> tuple[float, float]:
        t = self.time_per_view_s
        return t if isinstance(t, tuple) else (t, t)


@dataclass(frozen=True)
class ResolutionConfig(Section):
    """A collimator matched to a stated system resolution: the preset's hole diameter is scaled so
    that the FWHM at ``distance_mm`` from the collimator face is ``fwhm_mm``
    (:meth:`spectdl.geometry.Collimator.with_system_fwhm`)."""

    fwhm_mm: float = 7.6
    distance_mm: float = 100.0

    def _check(self) -> None:
        _finite_positive("fwhm_mm", self.fwhm_mm)
        if not (math.isfinite(self.distance_mm) and self.distance_mm >= 0):
            raise ConfigError(f"distance_mm: expected a finite distance >= 0, found {self.distance_mm!r}")


@dataclass(frozen=True)
class CountsConfig(Section):
    """Count level: ``total`` expected counts of the full acquisition, and the other ``levels``.

    With ``activity`` the full acquisition's expected counts come from the injected activity, the
    camera's sensitivity and the time per view instead of ``total`` (:class:`ActivityConfig`).

    A level ``name: f`` is the full acquisition binomially thinned to ``f`` (the same scan, shorter:
    its counts are a subset of the full scan's), unless ``name`` is listed in ``independent``: then
    it is a separate Poisson acquisition at ``f`` times the expected counts (a second, shorter scan,
    as the bone SPECT paper acquired it).
    """

    total: Union[float, tuple[float, float]] = 5.0e5
    levels: dict[str, float] = field(default_factory=lambda: {"full": 1.0})
    independent: tuple[str, ...] = ()
    activity: Optional[ActivityConfig] = None

    def _check(self) -> None:
        if self.activity is not None and self.total != type(self).__dataclass_fields__["total"].default:
            raise ConfigError(f"total: {self.total!r} and activity are both given; expected one of them (activity "
                              "fixes the counts from the injected MBq)")
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
        for i, name in enumerate(self.independent):
            if name not in self.levels:
                raise ConfigError(f"independent[{i}]: {name!r} is not a level; expected one of {sorted(self.levels)}")

    @property
    def total_range(self) -> tuple[float, float]:
        return self.total if isinstance(self.total, tuple) else (self.total, self.total)


@dataclass(frozen=True)
class ReconConfig(Section):
    """OSEM of every count level with the projector used to simulate it (attenuation, collimator).

    ``calibrate``: divide each image by the sample's ``scale · f`` (expected counts per unit of
    activity, times the level's time fraction), so that every level is in the phantom's activity
    units, as a calibrated scanner reports Bq/ml whatever the acquisition time.
    """

    iterations: int = 4
    subsets: int = 10
    calibrate: bool = False

    def _check(self) -> None:
        if self.iterations < 1:
            raise ConfigError(f"iterations: expected >= 1, found {self.iterations}")
        if self.subsets < 1:
            raise ConfigError(f"subsets: expected >= 1, found {self.subsets}")


@dataclass(frozen=True)
class SimulationConfig(Section):
    """Everything :func:`spectdl.data.simulate` needs (see the module docstring for the layout)."""

    phantom: Literal["brain2d", "nema_iec", "cardiac", "wholebody_planar", "bone_torso", "brain_perfusion_slice"] = "brain2d"
    phantom_kwargs: dict[str, Any] = field(default_factory=dict)
    grid: Optional[GridConfig] = None
    n_samples: int = 256
    seed: int = 0
    batch_size: int = 16
    shard_size: int = 256
    orbit: OrbitConfig = field(default_factory=OrbitConfig)
    collimator: Optional[Literal["LEHR", "LEGP", "MEGP"]] = "LEHR"
    resolution: Optional[ResolutionConfig] = None
    planar_distance_mm: Optional[tuple[float, float]] = None
    fov: Optional[FovConfig] = None
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
        if self.resolution is not None:
            if self.collimator is None:
                raise ConfigError("resolution: needs a collimator to match; found collimator: null")
            try:
                self.collimator_model()
            except SpectdlError as exc:
                raise ConfigError(f"resolution: {exc}") from None
        if self.planar_distance_mm is not None:
            if kind != "planar":
                raise ConfigError(f"planar_distance_mm: only planar phantoms are blurred this way; phantom {self.phantom!r} "
                                  "is projected with its collimator model; expected null")
            if self.collimator is None:
                raise ConfigError("planar_distance_mm: needs a collimator whose response to apply; found collimator: null")
            bad = [d for d in self.planar_distance_mm if not (math.isfinite(d) and d >= 0)]
            if bad:
                raise ConfigError(f"planar_distance_mm: {list(self.planar_distance_mm)}; expected two distances >= 0 mm "
                                  "(anterior, posterior)")
        if self.fov is not None:
            self._check_fov(kind)
        if kind == "planar" and self.counts.activity is not None:
            raise ConfigError("counts.activity: planar phantoms have no projector to take counts through; use counts.total")
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

    def _check_fov(self, kind: str) -> None:
        f = tuple(self.fov.shape)
        if kind != "volume" or self.grid is None or len(self.grid.shape) != 3:
            raise ConfigError("fov: a field of view needs a 3-D phantom on an explicit 3-D grid")
        g = tuple(self.grid.shape)
        if g[0] != g[1] or f[0] != f[1]:
            raise ConfigError(f"fov.shape: {list(f)} in grid {list(g)}; expected square cross-sections (x = y) for both")
        bad = [a for a in range(3) if f[a] > g[a] or (g[a] - f[a]) % 2]
        if bad:
            raise ConfigError(f"fov.shape: {list(f)} does not fit centred in grid {list(g)} along axes {bad}; expected "
                              "sizes <= the grid's with an even difference")
        if self.orbit.radius_mm is None:
            raise ConfigError("orbit.radius_mm: a field of view needs an explicit radius (the default circle is "
                              "inscribed in the grid, which the field would change)")

    def fov_slices(self) -> Optional[tuple[slice, slice, slice]]:
        """The field's centred ``(x, y, z)`` slices of the grid, or ``None`` without ``fov``."""
        if self.fov is None:
            return None
        return tuple(slice((g - f) // 2, (g - f) // 2 + f) for g, f in zip(self.grid.shape, self.fov.shape))

    def data_grid(self):
        """The grid of the stored volumes and of reconstruction: the field's with ``fov``, else the grid."""
        from spectdl.geometry import VoxelGrid

        if self.fov is None:
            return self.voxel_grid()
        return VoxelGrid(tuple(self.fov.shape), self.grid.voxel_size_mm)

    def _checked_kwargs(self) -> dict[str, Any]:
        params = inspect.signature(self.phantom_function()).parameters
        allowed = [p for p in params if p not in _RESERVED_KWARGS
                   and params[p].kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)]
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

    def collimator_model(self):
        """The :class:`~spectdl.geometry.Collimator` of the projector (``None``: ideal line integrals),
        matched to ``resolution`` when it is given."""
        from spectdl.geometry import Collimator

        if self.collimator is None:
            return None
        coll = Collimator.preset(self.collimator)
        if self.resolution is not None:
            coll = coll.with_system_fwhm(self.resolution.fwhm_mm, self.resolution.distance_mm)
        return coll

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


def load_simulation_config(source: Union[str, os.PathLike, Mapping[str, Any], SimulationConfig]) -> SimulationConfig:
    """A validated :class:`SimulationConfig` from a YAML file, a mapping, or a config (returned as is).

    Errors are :class:`ConfigError` naming the file (for files) and the dotted key; an empty file
    is an error, not the defaults (see :func:`spectdl.typed_config.load_section`).
    """
    return load_section(SimulationConfig, source, what="simulation config")
