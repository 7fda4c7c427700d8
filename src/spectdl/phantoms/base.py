"""What every phantom returns, and the checks and seeding every phantom shares.

Seeding
-------
A phantom call takes ``seed`` (an int) or ``generator`` (a ``torch.Generator``), never both.
Sample ``b`` of a batch is drawn from its own CPU generator seeded with ``base + b``, where
``base`` is ``seed``, or one integer drawn from ``generator``, or (when neither is given) fresh
entropy from the operating system. The per-sample seeds are recorded in ``info["seeds"]``, so
``phantom_fn(grid, batch_size=1, seed=info["seeds"][b])`` regenerates sample ``b`` exactly.
Only the parameters are drawn per sample (a few dozen numbers); the images are then rendered for
the whole batch at once, on the requested device.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from spectdl.errors import GeometryError, InputError
from spectdl.geometry import VoxelGrid

_SEED_LIMIT = 2**62


@dataclass
class Phantom:
    """Activity and attenuation of a batch of phantoms on one voxel grid.

    Attributes:
        activity: ``[B, 1, *grid.shape]`` relative activity concentration (float, ≥ 0).
        mu_per_cm: ``[B, 1, *grid.shape]`` linear attenuation coefficient at the photon energy, cm⁻¹.
        grid: the ``VoxelGrid`` both tensors live on.
        labels: ``[B, 1, *grid.shape]`` int64 region map, or ``None``. Label 0 is outside the object
            (air / background outside the body); the other values are listed in ``label_names``.
        label_names: region name -> label value.
        info: per-phantom extras: ``seeds`` (one int per sample), the sampled parameters (tensors
            with a leading batch dimension), and phantom-specific geometry (for example NEMA
            ``sphere_centres_mm [6, 3]``).
        ct_hu: ``[B, 1, *grid.shape]`` float CT-like image in Hounsfield units, or ``None``: the
            phantom's materials seen by a CT, ``spectdl.io.ct.mu_to_ct_hu(mu_per_cm, energy_kev)``
            (the inverse of the bilinear HU → μ model at 120 kVp; water 0 HU, air −1000 HU).
    """

    activity: torch.Tensor
    mu_per_cm: torch.Tensor
    grid: VoxelGrid
    labels: torch.Tensor | None = None
    label_names: dict[str, int] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    ct_hu: torch.Tensor | None = None

    @property
    def batch_size(self) -> int:
        return int(self.activity.shape[0])

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> "Phantom":
        """A copy on ``device``; ``dtype`` changes the float tensors only (labels stay int64)."""
        return replace(
            self,
            activity=self.activity.to(device=device, dtype=dtype),
            mu_per_cm=self.mu_per_cm.to(device=device, dtype=dtype),
            labels=None if self.labels is None else self.labels.to(device=device),
            info=_info_to(self.info, device),
            ct_hu=None if self.ct_hu is None else self.ct_hu.to(device=device, dtype=dtype),
        )


@dataclass
class PlanarPhantom:
    """Expected anterior and posterior planar images of a batch of phantoms.

    Attributes:
        anterior, posterior: ``[B, 1, rows, cols]`` expected counts (or relative units), both in the
            same pixel frame unless the phantom function says otherwise.
        grid: the 2-D ``VoxelGrid`` of the images (axis 0 = rows, axis 1 = columns).
        labels: ``[B, 1, rows, cols]`` int64 projected region map (0 = outside the body).
        label_names: region name -> label value.
        lesion_mask: ``[B, 1, rows, cols]`` bool, pixels covered by a lesion.
        info: per-phantom extras, as in :class:`Phantom`.
    """

    anterior: torch.Tensor
    posterior: torch.Tensor
    grid: VoxelGrid
    labels: torch.Tensor | None = None
    label_names: dict[str, int] = field(default_factory=dict)
    lesion_mask: torch.Tensor | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def batch_size(self) -> int:
        return int(self.anterior.shape[0])

    def to(
        self, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> "PlanarPhantom":
        return replace(
            self,
            anterior=self.anterior.to(device=device, dtype=dtype),
            posterior=self.posterior.to(device=device, dtype=dtype),
            labels=None if self.labels is None else self.labels.to(device=device),
            lesion_mask=None if self.lesion_mask is None else self.lesion_mask.to(device=device),
            info=_info_to(self.info, device),
        )


def _info_to(info: dict[str, Any], device) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in info.items():
        if isinstance(value, torch.Tensor):
            out[key] = value.to(device=device)
        elif isinstance(value, dict):
            out[key] = _info_to(value, device)
        else:
            out[key] = value
    return out


# ---------------------------------------------------------------------------------------------
# Checks shared by the phantom functions


def check_batch_size(batch_size) -> int:
    if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
        raise InputError(f"batch_size: expected a positive integer, found {batch_size!r}")
    return int(batch_size)


def check_grid(grid, ndim: int, name: str = "grid") -> VoxelGrid:
    if not isinstance(grid, VoxelGrid):
        raise GeometryError(f"{name}: expected a spectdl.geometry.VoxelGrid, found {type(grid).__name__}")
    if grid.ndim != ndim:
        raise GeometryError(
            f"{name}: expected a {ndim}-D VoxelGrid, found {grid.ndim}-D with shape {grid.shape}"
        )
    return grid


def check_number(name: str, value, low: float | None = None, high: float | None = None,
                 low_open: bool = False, high_open: bool = False) -> float:
    """``value`` as a finite float in the given (closed unless ``*_open``) interval."""
    try:
        v = float(value)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name}: expected a number, found {value!r}") from exc
    ok = math.isfinite(v)
    if ok and low is not None:
        ok = v > low if low_open else v >= low
    if ok and high is not None:
        ok = v < high if high_open else v <= high
    if not ok:
        lo = "-inf" if low is None else f"{low}"
        hi = "inf" if high is None else f"{high}"
        left = "(" if low_open or low is None else "["
        right = ")" if high_open or high is None else "]"
        interval = f"{left}{lo}, {hi}{right}"
        raise InputError(f"{name}: expected a finite value in {interval}, found {value!r}")
    return v


def check_range(name: str, value, low: float | None = None, high: float | None = None) -> tuple[float, float]:
    """A ``(lo, hi)`` pair with ``lo <= hi`` inside ``[low, high]``; a single number means ``(v, v)``."""
    if isinstance(value, (int, float)):
        pair = (value, value)
    else:
        try:
            pair = tuple(value)
        except TypeError as exc:
            raise InputError(f"{name}: expected a number or a (low, high) pair, found {value!r}") from exc
    if len(pair) != 2:
        raise InputError(f"{name}: expected a number or a (low, high) pair, found {value!r}")
    lo = check_number(name, pair[0], low, high)
    hi = check_number(name, pair[1], low, high)
    if lo > hi:
        raise InputError(f"{name}: expected low <= high, found {value!r}")
    return lo, hi


def check_dtype(dtype) -> torch.dtype:
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise InputError(f"dtype: expected a floating torch.dtype, found {dtype!r}")
    return dtype


# ---------------------------------------------------------------------------------------------
# Seeding


def sample_seeds(batch_size: int, seed: int | None, generator: torch.Generator | None) -> list[int]:
    """One seed per sample: ``base + b`` (see the module docstring)."""
    if seed is not None and generator is not None:
        raise InputError("seed, generator: give one of them, not both")
    if seed is not None:
        if isinstance(seed, bool) or not isinstance(seed, int) or not (0 <= seed < _SEED_LIMIT):
            raise InputError(f"seed: expected an int in [0, 2**62), found {seed!r}")
        base = seed
    elif generator is not None:
        if not isinstance(generator, torch.Generator):
            raise InputError(f"generator: expected a torch.Generator, found {type(generator).__name__}")
        base = int(torch.randint(0, _SEED_LIMIT, (1,), generator=generator, device=generator.device))
    else:
        base = secrets.randbits(61)
    return [base + b for b in range(batch_size)]


def sample_generator(seed: int) -> torch.Generator:
    """A CPU generator seeded with ``seed`` (parameters are drawn on the CPU on every device)."""
    return torch.Generator(device="cpu").manual_seed(int(seed))


def uniform(g: torch.Generator, low: float, high: float, n: int = 1) -> torch.Tensor:
    """``n`` float64 draws from U(low, high) (float64 so that parameters do not depend on dtype)."""
    return low + (high - low) * torch.rand(n, generator=g, dtype=torch.float64)


def stack_params(per_sample: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """``[{name: tensor}] * B`` -> ``{name: tensor [B, ...]}``."""
    return {k: torch.stack([p[k] for p in per_sample]) for k in per_sample[0]}


def grid_coords(grid: VoxelGrid, device, dtype) -> list[torch.Tensor]:
    """Voxel-centre coordinates (mm) along each axis, centred on 0 (geometry's convention)."""
    return [
        (torch.arange(n, device=device, dtype=dtype) - (n - 1) / 2.0) * s
        for n, s in zip(grid.shape, grid.voxel_size_mm)
    ]
