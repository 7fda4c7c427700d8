"""Interfile SPECT projections and volumes, on top of :func:`spectdl.io.interfile.read_interfile`.

Projections (``process status := acquired``, ``type of data := Tomographic``)
------------------------------------------------------------------------------
Keys: ``number of projections`` (else ``number of images/energy window``, else all images),
``extent of rotation`` (default 360), ``start angle`` (default 0), ``direction of rotation``
(``CW``/``CCW``, default ``CCW``), ``radius`` (mm; ``{r1, r2, ...}`` for a non-circular orbit),
``number of energy windows`` with ``energy window lower level [i]`` / ``upper level [i]``,
``time per projection (sec)``, and the pixel sizes ``scaling factor (mm/pixel) [1]`` (radial) and
``[2]`` (axial). Images are stored window by window, view by view.

Numbers are read by :func:`spectdl.io.interfile.parse_number` (Fortran forms accepted, NaN, inf and
overflow refused) and must lie in a physical range, stated in the error message: counts 1 … 10⁶,
``extent of rotation`` 0 < value ≤ 720 deg, ``start angle`` −360 … 360 deg, ``radius``
0 < value ≤ 2000 mm, energy window levels 0 … 2000 keV with upper > lower, ``time per projection``
0 < value ≤ 10⁵ s, ``first pixel offset`` within ±10⁵ mm. A window whose levels are absent is
``(nan, nan)`` (not recorded).

Interfile 3.3 does not pin down the frame of its angles (STIR discussion #1180). They are read
here in DICOM's sense (0° at the patient's back, counter-clockwise seen from the feet), as STIR's
``SPECT_dicom_to_interfile`` copies DICOM's Start Angle and Rotation Direction into these keys, and
each image is taken as a DICOM detector image with the default orientation (seen from the
detector, head at the top). Both then follow :mod:`spectdl.io.projections`: ``θ = −φ``, columns and
rows reversed. ``start_angle_offset_deg`` and ``mirror_radial`` adapt other dialects (e.g. 180 and
True for data whose 0° is the patient's front and whose images are mirrored). Interfile carries no
patient position, so the affine centres the grid on the patient origin.

Volumes (``process status := reconstructed`` or any 3-D image)
---------------------------------------------------------------
``data [X, Y, Z]`` as stored; the affine takes the axes as LPS-aligned (x → patient left,
y → posterior, z → head), with voxel 0 at ``first pixel offset (mm) [1..3]`` when the header has
these (STIR) keys, else the grid centred on the origin (spectdl's phantom convention). Pass
``affine=`` to place it otherwise.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from spectdl.errors import InputError
from spectdl.geometry import Orbit
from spectdl.io._dicom import ANGLE_DEG, ENERGY_KEV, POSITION_MM, RADIUS_MM, Range
from spectdl.io.interfile import header_count, header_number, parse_numbers
from spectdl.io.projections import Acquisition
from spectdl.io.volume import Volume, check_affine


def _read(header_path):
    try:
        from spectdl.io.interfile import read_interfile
    except ImportError as exc:  # pragma: no cover - the module ships with spectdl
        raise InputError("spectdl.io.interfile is not available; cannot read Interfile") from exc
    return read_interfile(header_path)


# Physical ranges of the projection keys, stated in the error messages.
_EXTENT_DEG = Range(0.0, 720.0, "deg", lo_open=True)
_TIME_S = Range(0.0, 1e5, "s", lo_open=True)


def read_interfile_projections(
    header_path: str | Path,
    *,
    start_angle_offset_deg: float = 0.0,
    mirror_radial: bool = False,
) -> Acquisition:
    """Read Interfile SPECT projections into an :class:`~spectdl.io.Acquisition` (module docstring)."""
    path = Path(header_path)
    image, grid, header = _read(path)
    status = str(header.get("process status", "acquired")).strip().lower()
    if status.startswith("reconstructed"):
        raise InputError(f"{path}: 'process status' is {status!r}; expected acquired projections "
                         f"(use read_interfile_volume for reconstructions)")
    if image.dim() != 5:
        raise InputError(f"{path}: the image is 2-D {tuple(image.shape[2:])}; expected a stack of views")
    data = image[0, 0]  # [cols, rows, images]
    n_images = data.shape[2]
    n_win = header_count(header, "number of energy windows", path, 1)
    n_proj = header_count(header, "number of projections", path)
    if n_proj is None:
        n_proj = header_count(header, "number of images/energy window", path, n_images // n_win)
    if n_proj < 1 or n_proj * n_win != n_images:
        raise InputError(f"{path}: {n_images} images but 'number of projections' {n_proj} × 'number of "
                         "energy "
                         f"windows' {n_win} = {n_proj * n_win}; expected equal")
    extent = header_number(header, "extent of rotation", path, 360.0, _EXTENT_DEG)
    start = header_number(header, "start angle", path, 0.0, ANGLE_DEG)
    direction = str(header.get("direction of rotation", "CCW")).strip().upper()
    if direction in ("CC",):
        direction = "CCW"
    if direction not in ("CW", "CCW"):
        raise InputError(f"{path}: 'direction of rotation' is {direction!r}; expected CW or CCW")
    radius_text = header.get("radius") or header.get("radii")
    if radius_text is None:
        raise InputError(f"{path}: key 'radius' is missing; expected the radius of rotation in mm")
    radii = parse_numbers(radius_text, "radius", path, RADIUS_MM)
    if len(radii) == 1:
        radii = radii * n_proj
    if len(radii) != n_proj:
        raise InputError(f"{path}: key 'radius' has {len(radii)} values; expected 1 or {n_proj} (one per "
                         "view)")
    sign = 1.0 if direction == "CCW" else -1.0
    step = extent / n_proj
    phi = [start + start_angle_offset_deg + sign * step * k for k in range(n_proj)]
    theta = tuple((-p) % 360.0 for p in phi)
    orbit = Orbit(theta, tuple(radii), "cw" if direction == "CCW" else "ccw")

    windows = []
    for w in range(1, n_win + 1):
        lo = header_number(header, f"energy window lower level [{w}]", path, bounds=ENERGY_KEV)
        hi = header_number(header, f"energy window upper level [{w}]", path, bounds=ENERGY_KEV)
        if lo is not None and hi is not None and not hi > lo:
            raise InputError(f"{path}: key 'energy window upper level [{w}]' is {hi:g} keV; expected "
                             f"more than 'energy window lower level [{w}]' {lo:g} keV")
        windows.append((math.nan if lo is None else lo, math.nan if hi is None else hi))
    counts = data.permute(2, 0, 1).reshape(n_win, n_proj, data.shape[0], data.shape[1])  # [W, V, cols, rows]
    counts = counts.flip(-1) if mirror_radial else counts.flip(-1).flip(-2)
    counts = counts.to(torch.float32).contiguous()
    dr, dz = grid.voxel_size_mm[0], grid.voxel_size_mm[1]
    n_r, n_z = data.shape[0], data.shape[1]
    affine = np.diag([dr, dr, dz, 1.0])
    affine[:3, 3] = -np.array([(n_r - 1) / 2 * dr, (n_r - 1) / 2 * dr, (n_z - 1) / 2 * dz])
    tpp = header_number(header, "time per projection (sec)", path, bounds=_TIME_S)
    return Acquisition(
        _counts=counts,
        windows=windows,
        window_names=[""] * n_win,
        orbit=orbit,
        pixel_size_mm=float(dr),
        axial_pixel_size_mm=float(dz),
        time_per_view_s=tpp,
        radionuclide=str(header.get("isotope name", "") or "") or None,
        affine=affine,
        frame_of_reference_uid=None,
        study_instance_uid=None,
        dicom_angles_deg=tuple(phi),
        rotation_direction="CC" if direction == "CCW" else "CW",
        collimator=None,
        source=str(path),
        meta=dict(interfile=True, header=dict(header)),
    )


def read_interfile_volume(header_path: str | Path, *, affine=None) -> Volume:
    """Read an Interfile 3-D image as a :class:`Volume` (module docstring for the affine)."""
    path = Path(header_path)
    image, grid, header = _read(path)
    if image.dim() != 5:
        raise InputError(f"{path}: the image is 2-D {tuple(image.shape[2:])}; expected a 3-D volume")
    if affine is None:
        A = np.diag(list(grid.voxel_size_mm) + [1.0])
        offsets = [header_number(header, f"first pixel offset (mm) [{a}]", path, bounds=POSITION_MM)
                   for a in (1, 2, 3)]
        if all(o is not None for o in offsets):
            A[:3, 3] = offsets
        else:
            A[:3, 3] = -(np.array(grid.shape) - 1) / 2.0 * np.array(grid.voxel_size_mm)
    else:
        A = check_affine(affine)
    return Volume(
        data=image[0, 0].to(torch.float32),
        affine=A,
        modality="NM",
        units=None,
        source=(str(path),),
        meta=dict(interfile=True, header=dict(header)),
    )
