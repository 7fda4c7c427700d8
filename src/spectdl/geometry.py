"""Acquisition geometry as plain, frozen data: voxel grids, orbits and collimators.

Nothing here holds torch state or touches files. Operators (``spectdl.physics``) read these
objects; readers (``spectdl.io``) build them from DICOM or Interfile headers.

Conventions (shared by the whole package)
-----------------------------------------
* Images are ``[B, C, *spatial]`` with spatial order ``(x, y)`` or ``(x, y, z)``; z is the scanner
  (axial) axis. Voxel ``i`` along an axis of ``n`` voxels of size ``s`` has its centre at
  ``(i - (n - 1) / 2) * s`` mm, so the grid is centred on the axis of rotation.
* Detector angles are in degrees, measured counter-clockwise from the +y axis in the (x, y)
  plane: at angle 0 the detector sits at ``+y`` (above the object) and looks down ``-y``.
* Lengths are millimetres, attenuation coefficients are ``mu_per_cm``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Sequence

from spectdl.errors import GeometryError


def _positive_tuple(name: str, values, n: int | None = None) -> tuple[float, ...]:
    try:
        out = tuple(float(v) for v in values)
    except TypeError:
        out = (float(values),) * (n or 1)
    if n is not None and len(out) == 1 and n > 1:
        out = out * n
    if n is not None and len(out) != n:
        raise GeometryError(f"{name}: expected {n} values, found {len(out)} ({values!r})")
    for v in out:
        if not math.isfinite(v) or v <= 0:
            raise GeometryError(f"{name}: every value must be finite and > 0, found {values!r}")
    return out


@dataclass(frozen=True)
class VoxelGrid:
    """A regular 2-D ``(nx, ny)`` or 3-D ``(nx, ny, nz)`` grid of voxels centred on the rotation axis.

    Args:
        shape: number of voxels along x, y (and z).
        voxel_size_mm: one size for all axes, or one per axis, in mm.
    """

    shape: tuple[int, ...]
    voxel_size_mm: tuple[float, ...] | float = 1.0

    def __post_init__(self) -> None:
        try:
            shape = tuple(int(s) for s in self.shape)
        except TypeError as exc:
            raise GeometryError(f"shape: expected a tuple of 2 or 3 ints, found {self.shape!r}") from exc
        if len(shape) not in (2, 3):
            raise GeometryError(f"shape: expected 2 or 3 dimensions, found {len(shape)} ({self.shape!r})")
        if any(s <= 0 or s != float(v) for s, v in zip(shape, self.shape)):
            raise GeometryError(f"shape: every size must be a positive integer, found {self.shape!r}")
        object.__setattr__(self, "shape", shape)
        object.__setattr__(
            self, "voxel_size_mm", _positive_tuple("voxel_size_mm", self.voxel_size_mm, len(shape))
        )

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def extent_mm(self) -> tuple[float, ...]:
        """Full width of the grid along each axis, in mm."""
        return tuple(n * s for n, s in zip(self.shape, self.voxel_size_mm))

    @property
    def voxel_volume_ml(self) -> float:
        """Volume of one 3-D voxel in ml (cm³); for a 2-D grid, the pixel area in cm² × 0.1 (1 mm slice)."""
        vol_mm3 = math.prod(self.voxel_size_mm)
        return vol_mm3 / 1000.0

    def centres_mm(self, axis: int) -> list[float]:
        """Coordinates of the voxel centres along ``axis``, in mm, centred on 0."""
        n, s = self.shape[axis], self.voxel_size_mm[axis]
        return [(i - (n - 1) / 2.0) * s for i in range(n)]


@dataclass(frozen=True)
class Orbit:
    """Detector positions of a step-and-shoot SPECT acquisition.

    Args:
        angles_deg: detector angle of every view, in the fixed frame of the module docstring
            (counter-clockwise from +y). For a ``"cw"`` acquisition these decrease.
        radius_mm: distance from the rotation axis to the collimator face, one value (circular)
            or one per view (non-circular, body-contouring orbits).
        direction: ``"ccw"`` or ``"cw"``, the sense in which the gantry moved.
    """

    angles_deg: tuple[float, ...]
    radius_mm: tuple[float, ...] | float
    direction: str = "ccw"

    def __post_init__(self) -> None:
        try:
            angles = tuple(float(a) for a in self.angles_deg)
        except TypeError as exc:
            raise GeometryError(f"angles_deg: expected a sequence of angles, found {self.angles_deg!r}") from exc
        if len(angles) == 0:
            raise GeometryError("angles_deg: the orbit is empty; expected at least 1 view")
        if not all(math.isfinite(a) for a in angles):
            raise GeometryError(f"angles_deg: every angle must be finite, found {self.angles_deg!r}")
        if self.direction not in ("ccw", "cw"):
            raise GeometryError(f"direction: expected 'ccw' or 'cw', found {self.direction!r}")
        radius = _positive_tuple("radius_mm", self.radius_mm, len(angles))
        sign = 1.0 if self.direction == "ccw" else -1.0
        for a, b in zip(angles, angles[1:]):
            step = (b - a + 180.0) % 360.0 - 180.0
            if abs(abs(step) - 180.0) > 1e-9 and step * sign < 0:
                raise GeometryError(
                    f"angles_deg: direction is {self.direction!r} but the step from {a} to {b} deg "
                    f"goes the other way"
                )
        object.__setattr__(self, "angles_deg", angles)
        object.__setattr__(self, "radius_mm", radius)

    @classmethod
    def circular(
        cls,
        n_angles: int,
        radius_mm: float,
        arc_deg: float = 360.0,
        start_deg: float = 0.0,
        direction: str = "ccw",
    ) -> "Orbit":
        """Equally spaced views over ``arc_deg`` (360 for whole-body, 180 for cardiac).

        View ``k`` sits at ``start_deg ± k·arc_deg/n_angles`` (``+`` for ccw).
        """
        if int(n_angles) != n_angles or n_angles < 1:
            raise GeometryError(f"n_angles: expected a positive integer, found {n_angles!r}")
        if not (0 < arc_deg <= 360):
            raise GeometryError(f"arc_deg: expected a value in (0, 360], found {arc_deg!r}")
        if direction not in ("ccw", "cw"):
            raise GeometryError(f"direction: expected 'ccw' or 'cw', found {direction!r}")
        step = arc_deg / n_angles * (1.0 if direction == "ccw" else -1.0)
        angles = tuple(start_deg + k * step for k in range(int(n_angles)))
        return cls(angles, radius_mm, direction)

    @property
    def n_angles(self) -> int:
        return len(self.angles_deg)

    def subset(self, index: Sequence[int]) -> "Orbit":
        """The orbit restricted to the given views (used by OSEM subsets)."""
        idx = list(index)
        return Orbit(
            tuple(self.angles_deg[i] for i in idx),
            tuple(self.radius_mm[i] for i in idx),
            self.direction,
        )


# Vendor data-sheet values. Sources:
# * GE Discovery NM/CT 670 collimator specifications (as also encoded in the OpenGATE GE NM670
#   head model): LEHR hexagonal holes 1.5 mm, length 35 mm, septa 0.2 mm; MEGP holes 3.0 mm,
#   length 58 mm, septa 1.05 mm. Intrinsic resolution 3.9 mm FWHM (CFOV, 140 keV, data sheet).
# * GE Millennium VG LEGP: holes 1.9 mm, septa 0.2 mm, length 35 mm (SIMIND collim.col, "GV-LEGP").
# * Linear attenuation of lead, NIST XCOM: mu/rho = 2.32 cm^2/g at 140 keV and 0.999 cm^2/g at
#   208 keV, times 11.35 g/cm^3 -> 26.3 /cm (Tc-99m) and 11.3 /cm (Lu-177 208 keV).
_PRESETS: dict[str, dict[str, float]] = {
    "LEHR": dict(hole_diameter_mm=1.5, hole_length_mm=35.0, septal_thickness_mm=0.2,
                 intrinsic_fwhm_mm=3.9, mu_lead_per_cm=26.3),
    "LEGP": dict(hole_diameter_mm=1.9, hole_length_mm=35.0, septal_thickness_mm=0.2,
                 intrinsic_fwhm_mm=3.9, mu_lead_per_cm=26.3),
    "MEGP": dict(hole_diameter_mm=3.0, hole_length_mm=58.0, septal_thickness_mm=1.05,
                 intrinsic_fwhm_mm=3.9, mu_lead_per_cm=11.3),
}


@dataclass(frozen=True)
class Collimator:
    """A parallel-hole collimator plus the camera's intrinsic resolution.

    The system resolution at distance ``b`` (mm) from the collimator face is

    ``R_sys(b) = sqrt(R_geo(b)² + R_int²)``,  ``R_geo(b) = d·(L_eff + b)/L_eff``,
    ``L_eff = L − 2/μ``,

    with hole diameter ``d``, hole length ``L`` and μ the linear attenuation of lead.
    """

    hole_diameter_mm: float
    hole_length_mm: float
    septal_thickness_mm: float
    intrinsic_fwhm_mm: float
    mu_lead_per_cm: float
    name: str = field(default="custom", compare=False)

    def __post_init__(self) -> None:
        for fname in ("hole_diameter_mm", "hole_length_mm", "intrinsic_fwhm_mm", "mu_lead_per_cm"):
            _positive_tuple(fname, getattr(self, fname), 1)
        v = float(self.septal_thickness_mm)
        if not math.isfinite(v) or v < 0:
            raise GeometryError(f"septal_thickness_mm: expected a finite value >= 0, found {v!r}")
        if self.effective_length_mm <= 0:
            raise GeometryError(
                f"hole_length_mm: {self.hole_length_mm} mm is shorter than 2/mu = "
                f"{20.0 / self.mu_lead_per_cm:.3f} mm; expected an effective length > 0"
            )

    @classmethod
    def preset(cls, name: str) -> "Collimator":
        """One of ``"LEHR"``, ``"LEGP"``, ``"MEGP"`` (vendor data-sheet values, see source)."""
        key = str(name).upper()
        if key not in _PRESETS:
            raise GeometryError(f"preset: unknown collimator {name!r}; expected one of {sorted(_PRESETS)}")
        return cls(**_PRESETS[key], name=key)

    @property
    def effective_length_mm(self) -> float:
        return self.hole_length_mm - 2.0 / (self.mu_lead_per_cm / 10.0)

    def geometric_fwhm_mm(self, distance_mm):
        """``d·(L_eff + b)/L_eff``; works on floats, numpy arrays and tensors."""
        l_eff = self.effective_length_mm
        return self.hole_diameter_mm * (l_eff + distance_mm) / l_eff

    def fwhm_mm(self, distance_mm):
        """System FWHM in mm at ``distance_mm`` from the collimator face (geometric ⊕ intrinsic)."""
        geo = self.geometric_fwhm_mm(distance_mm)
        return (geo * geo + self.intrinsic_fwhm_mm**2) ** 0.5

    def sigma_mm(self, distance_mm):
        """Gaussian standard deviation in mm, ``FWHM / (2·sqrt(2·ln 2))``."""
        return self.fwhm_mm(distance_mm) / (2.0 * math.sqrt(2.0 * math.log(2.0)))

    def with_system_fwhm(self, fwhm_mm: float, distance_mm: float) -> "Collimator":
        """The same collimator with its hole diameter scaled so that ``R_sys(distance_mm) = fwhm_mm``.

        ``d' = sqrt(fwhm² − R_int²) · L_eff / (L_eff + b)``: hole length, septa, lead and intrinsic
        resolution are kept, so the resolution still grows linearly with distance at the rate of a
        collimator of that bore (a vendor's "system resolution at 10 cm" fixes one point of it).
        """
        fwhm = float(fwhm_mm)
        b = float(distance_mm)
        if not (math.isfinite(b) and b >= 0):
            raise GeometryError(f"distance_mm: expected a finite distance >= 0, found {distance_mm!r}")
        if not (math.isfinite(fwhm) and fwhm > self.intrinsic_fwhm_mm):
            raise GeometryError(
                f"fwhm_mm: {fwhm_mm!r} mm; expected a finite value above the intrinsic resolution "
                f"{self.intrinsic_fwhm_mm} mm"
            )
        geo = math.sqrt(fwhm * fwhm - self.intrinsic_fwhm_mm**2)
        l_eff = self.effective_length_mm
        d = geo * l_eff / (l_eff + b)
        return replace(self, hole_diameter_mm=d, name=f"{self.name} ({fwhm:g} mm at {b:g} mm)")
