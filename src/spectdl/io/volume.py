"""A 3-D image with its place in the patient: what every volume reader returns.

Conventions
-----------
* ``Volume.data`` is ``[X, Y, Z]`` (no batch or channel axes; :meth:`Volume.as_batch` adds them).
  For a DICOM series, ``X`` runs along the image rows (column index), ``Y`` along the image columns
  (row index) and ``Z`` over the slices, ordered along the slice normal ``row × column``.
* ``Volume.affine`` is a 4×4 float64 array mapping a voxel index ``(i, j, k, 1)`` to DICOM patient
  coordinates in mm: LPS, x towards the patient's left, y towards the posterior, z towards the head.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from spectdl.errors import InputError
from spectdl.geometry import VoxelGrid


def check_affine(affine, name: str = "affine") -> np.ndarray:
    """A finite, invertible 4×4 affine with last row ``[0, 0, 0, 1]``, as float64."""
    try:
        A = np.asarray(affine, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name}: expected a 4×4 array, found {type(affine).__name__}") from exc
    if A.shape != (4, 4):
        raise InputError(f"{name}: shape {A.shape}; expected (4, 4)")
    if not np.isfinite(A).all() or not np.allclose(A[3], [0, 0, 0, 1]):
        raise InputError(f"{name}: expected finite values and last row [0, 0, 0, 1], found {A[3].tolist()}")
    if abs(np.linalg.det(A[:3, :3])) < 1e-12:
        raise InputError(f"{name}: the 3×3 part is singular; expected non-zero voxel sizes")
    return A


def voxel_to_patient(affine, ijk) -> np.ndarray:
    """``[..., 3]`` voxel indices (may be fractional) → ``[..., 3]`` LPS mm."""
    A = check_affine(affine)
    ijk = np.asarray(ijk, dtype=np.float64)
    return ijk @ A[:3, :3].T + A[:3, 3]


def patient_to_voxel(affine, xyz) -> np.ndarray:
    """``[..., 3]`` LPS mm → ``[..., 3]`` fractional voxel indices."""
    A = check_affine(affine)
    xyz = np.asarray(xyz, dtype=np.float64)
    return (xyz - A[:3, 3]) @ np.linalg.inv(A[:3, :3]).T


def spacing_from_affine(affine) -> tuple[float, float, float]:
    """Voxel sizes in mm: the lengths of the affine's first three columns."""
    A = check_affine(affine)
    return tuple(float(v) for v in np.linalg.norm(A[:3, :3], axis=0))


@dataclass(frozen=True)
class Volume:
    """A 3-D image ``data [X, Y, Z]`` and its ``affine`` (voxel index → LPS mm).

    Attributes:
        data: the voxel values (HU for CT, Bq/ml or counts for NM/PT, as ``units`` says).
        affine: 4×4 float64, voxel index → DICOM patient coordinates (mm).
        modality: ``"CT"``, ``"NM"``, ``"PT"``, ... or ``None``.
        units: ``"HU"``, ``"BQML"``, ``"CNTS"``, ... or ``None`` when unknown.
        frame_of_reference_uid, study_instance_uid, series_instance_uid: DICOM identity.
        source: the files read.
        identity: patient/study tags as plain values (used by the DICOM writer).
        meta: reader-specific values (e.g. ``kvp`` for CT, SUV inputs for PT/NM).
    """

    data: torch.Tensor
    affine: np.ndarray
    modality: str | None = None
    units: str | None = None
    frame_of_reference_uid: str | None = None
    study_instance_uid: str | None = None
    series_instance_uid: str | None = None
    source: tuple[str, ...] = ()
    identity: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.data, torch.Tensor) or self.data.dim() != 3:
            is_tensor = isinstance(self.data, torch.Tensor)
            shape = tuple(self.data.shape) if is_tensor else type(self.data).__name__
            raise InputError(f"data: expected a 3-D tensor [X, Y, Z], found {shape}")
        object.__setattr__(self, "affine", check_affine(self.affine))

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.data.shape)

    @property
    def spacing_mm(self) -> tuple[float, float, float]:
        return spacing_from_affine(self.affine)

    @property
    def grid(self) -> VoxelGrid:
        """The voxel grid (shape and sizes); its position in the patient is in :attr:`affine`."""
        return VoxelGrid(self.shape, self.spacing_mm)

    def as_batch(self) -> torch.Tensor:
        """``[1, 1, X, Y, Z]``, the layout of spectdl's operators."""
        return self.data[None, None]

    def with_data(self, data: torch.Tensor, units: str | None = ...) -> "Volume":
        """The same geometry and identity with new voxel values of the same shape."""
        if tuple(data.shape) != self.shape:
            raise InputError(f"data: shape {tuple(data.shape)}; expected {self.shape} (same geometry)")
        return replace(self, data=data, units=self.units if units is ... else units)

    def centre_mm(self) -> np.ndarray:
        """LPS position of the volume's centre."""
        return voxel_to_patient(self.affine, (np.array(self.shape) - 1) / 2.0)


def volume_array(data, name: str = "volume") -> np.ndarray:
    """``data`` (a tensor or array ``[X, Y, Z]``, with any leading singleton axes) as a NumPy array
    ``[X, Y, Z]``; another shape is an InputError naming ``name``."""
    arr = data.detach().cpu().numpy() if isinstance(data, torch.Tensor) else np.asarray(data)
    while arr.ndim > 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 3:
        raise InputError(f"{name}: shape {tuple(np.shape(data))}; expected [X, Y, Z] or [1, 1, X, Y, Z]")
    return arr
