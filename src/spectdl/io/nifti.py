"""NIfTI read and write (nibabel), keeping the affine.

spectdl affines map voxels to DICOM patient coordinates, LPS (x → left, y → posterior). NIfTI's
world frame is RAS (x → right, y → anterior), so the two differ by ``diag(−1, −1, 1)``:

    A_RAS = diag(−1, −1, 1, 1) · A_LPS.

Voxel data are stored as they are, ``[X, Y, Z]``; both the qform and the sform are set (code 1,
scanner) so that every reader agrees.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from spectdl.errors import InputError, require
from spectdl.io.atomic import atomic_write
from spectdl.io.volume import Volume, check_affine, volume_array

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def lps_to_ras(affine) -> np.ndarray:
    """A voxel→LPS affine as voxel→RAS (the flip is its own inverse: also RAS → LPS)."""
    return LPS_TO_RAS @ check_affine(affine)


def write_nifti(data, affine, path: str | Path, *, overwrite: bool = False) -> Path:
    """Write ``data [X, Y, Z]`` (or ``[1, 1, X, Y, Z]``, or a Volume) with its voxel→LPS ``affine``.

    The file is written to a temporary name in the same folder and renamed (atomic). An existing
    file is kept unless ``overwrite=True``. ``.nii`` or ``.nii.gz``.

    Returns:
        The path written.
    """
    nib = require("nibabel", "dicom")
    if isinstance(data, Volume):
        affine = data.affine if affine is None else affine
        data = data.data
    arr = volume_array(data, "data")
    if arr.dtype == np.float64:
        arr = arr.astype(np.float32)
    path = Path(path)
    if not (path.name.endswith(".nii") or path.name.endswith(".nii.gz")):
        raise InputError(f"path: {path} must end with .nii or .nii.gz")
    ras = lps_to_ras(affine)
    img = nib.Nifti1Image(arr, ras)
    img.set_qform(ras, code=1)
    img.set_sform(ras, code=1)
    suffix = ".nii.gz" if path.name.endswith(".nii.gz") else ".nii"
    return atomic_write(path, lambda tmp: nib.save(img, str(tmp)), overwrite=overwrite, suffix=suffix)


def read_nifti(path: str | Path) -> Volume:
    """Read a NIfTI file as a :class:`Volume` (``data [X, Y, Z]`` float32, voxel→LPS affine).

    4-D files with one volume are squeezed; more volumes raise :class:`InputError`.
    """
    nib = require("nibabel", "dicom")
    path = Path(path)
    if not path.is_file():
        raise InputError(f"NIfTI file {path}: not found (expected an existing file)")
    try:
        img = nib.load(str(path))
        arr = np.asarray(img.dataobj, dtype=np.float32)
    except Exception as exc:
        raise InputError(f"NIfTI file {path}: cannot be read ({type(exc).__name__}: {exc})") from exc
    while arr.ndim > 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim != 3:
        raise InputError(f"NIfTI file {path}: shape {arr.shape}; expected a 3-D volume")
    ras = np.asarray(img.affine, dtype=np.float64)
    unit = img.header.get_xyzt_units()[0]
    scale = {"meter": 1000.0, "micron": 1e-3}.get(unit, 1.0)  # "mm" and "unknown" are mm
    ras = np.diag([scale, scale, scale, 1.0]) @ ras
    return Volume(
        data=torch.from_numpy(np.ascontiguousarray(arr)),
        affine=LPS_TO_RAS @ ras,
        source=(str(path),),
        meta=dict(nifti_spatial_unit=str(unit)),
    )
