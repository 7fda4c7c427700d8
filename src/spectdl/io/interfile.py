"""Interfile 3.3 images (``.h33``/``.hv`` header + raw data file), as used by GATE, STIR and SIMIND.

An Interfile header is a text file of ``key := value`` lines that starts with ``!INTERFILE``.
Keys are matched without their leading ``!``, case-insensitively and with runs of spaces
collapsed, so ``!matrix size [1] := 72`` is read as ``"matrix size [1]"``.

Keys used
---------
* ``matrix size [1]``, ``matrix size [2]`` (x, y: columns and rows of a slice); the number of
  slices from ``matrix size [3]``, else ``number of slices``, ``number of images`` or
  ``total number of images``. Without any of them the image is 2-D.
* ``scaling factor (mm/pixel) [1]``, ``[2]``: pixel size; missing values are 1 mm (with a warning).
* Slice spacing: ``scaling factor (mm/pixel) [3]`` if present, else
  ``centre-centre slice separation (pixels)``, else ``slice thickness (pixels)``. Despite the
  ``(pixels)`` in their names, GATE and the published phantoms that target it write these two in
  mm, so ``slice_units="mm"`` is the default; ``slice_units="pixels"`` follows the letter of
  Interfile 3.3 (value × the pixel size along x).
* ``number format`` (``unsigned integer``, ``signed integer``, ``float``, ``short float``,
  ``long float``) and ``number of bytes per pixel``.
* ``imagedata byte order``: ``LITTLEENDIAN`` or ``BIGENDIAN`` (the Interfile 3.3 default).
* ``name of data file``: relative to the header's folder unless absolute.
* ``data offset in bytes`` (or ``data starting block`` × 2048), default 0.
* ``data rescale slope`` / ``data rescale offset`` (STIR): applied when present.

Numbers (:func:`parse_number`) are decimal, optionally with an exponent written ``e``/``E``, as
Fortran's double-precision ``D``/``d`` (``1.0D+03`` is 1000.0), or Fortran-style without a letter
(``+2.000000+00`` is 2.0, as in the published brain phantoms). Anything else (``nan``, ``inf``,
``1_000``, ``0x10``) and any number whose value overflows (``1+999``) is refused with an
:class:`~spectdl.errors.InputError` naming the file, the key and what was expected. Each key has a
physical range, stated in the message: pixel sizes 0 < value ≤ 50 mm, slice spacing
0 < value ≤ 1000 mm, counts 1 … 10⁶, a rescale slope nonzero with ``|slope| ≤ 10³⁰``. Float data
must be finite (NaN or ±inf voxels are refused, also when they appear on conversion to ``dtype``).

Layout: the data are stored x fastest, then y, then slices; the tensor is ``[1, 1, nx, ny, nz]``
(``[1, 1, nx, ny]`` for 2-D) with axes in that order, and no flip is applied.
"""

from __future__ import annotations

import math
import re
import warnings
from pathlib import Path

import numpy as np
import torch

from spectdl.errors import InputError
from spectdl.geometry import VoxelGrid
from spectdl.io._dicom import PIXEL_SPACING_MM, SLICE_SPACING_MM, Range

_FORMATS = {
    ("unsigned integer", 1): "u1",
    ("unsigned integer", 2): "u2",
    ("unsigned integer", 4): "u4",
    ("unsigned integer", 8): "u8",
    ("signed integer", 1): "i1",
    ("signed integer", 2): "i2",
    ("signed integer", 4): "i4",
    ("signed integer", 8): "i8",
    ("float", 4): "f4",
    ("float", 8): "f8",
    ("short float", 4): "f4",
    ("long float", 8): "f8",
}
# mantissa, then an exponent with a letter (e, E, Fortran's D, d) or Fortran's bare sign
_NUMBER = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+))(?:[eEdD]([+-]?\d+)|([+-]\d+))?$")
_COUNT = Range(1, 1_000_000)
_SLOPE = Range(-1e30, 1e30, nonzero=True)
_OFFSET = Range(-1e30, 1e30)


def _normalise_key(key: str) -> str:
    key = key.strip().lstrip("!").strip().lower()
    key = re.sub(r"\s+", " ", key)
    return re.sub(r"\s*\[\s*(\d+)\s*\]", r" [\1]", key)


def read_interfile_header(header_path: str | Path) -> dict[str, str]:
    """The ``key -> value`` pairs of an Interfile header (keys normalised, values stripped).

    Raises ``InputError`` if the file is missing or does not start with ``!INTERFILE``.
    """
    path = Path(header_path)
    if not path.is_file():
        raise InputError(f"header_path: Interfile header {str(path)!r} does not exist")
    text = path.read_bytes().decode("latin-1")
    lines = [ln.strip() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith(";")]
    if not lines or not _normalise_key(lines[0].split(":=")[0]).startswith("interfile"):
        first = lines[0][:40] if lines else ""
        raise InputError(
            f"{path}: not an Interfile header; expected '!INTERFILE :=' on the first line, found {first!r}"
        )
    header: dict[str, str] = {}
    for line in lines:
        if ":=" not in line:
            continue
        key, value = line.split(":=", 1)
        header[_normalise_key(key)] = value.strip()
    return header


def parse_number(text: str, key: str, path, bounds: Range | None = None, integer: bool = False) -> float:
    """One Interfile number (module docstring for the accepted forms), finite and within ``bounds``.

    Raises:
        InputError: ``"<file>: key '<key>' has value '<text>'; expected <what>"``.
    """
    kind = "an integer" if integer else "a number"
    what = kind if bounds is None else f"{kind}, {bounds}"
    raw = str(text).strip()
    m = _NUMBER.match(raw)
    if m is None:
        raise InputError(f"{path}: key {key!r} has value {raw[:80]!r}; expected {what}") from None
    exponent = m.group(2) if m.group(2) is not None else m.group(3)
    # float() of the text, not mantissa * 10**exponent: an overflow gives inf instead of an exception
    value = float(m.group(1) + ("" if exponent is None else "e" + exponent))
    if not math.isfinite(value):
        finite = f"a finite {'integer' if integer else 'number'}" + ("" if bounds is None else f", {bounds}")
        raise InputError(f"{path}: key {key!r} has value {raw[:80]!r}; expected {finite}")
    if (integer and value != int(value)) or (bounds is not None and value not in bounds):
        raise InputError(f"{path}: key {key!r} has value {raw[:80]!r}; expected {what}")
    return value


def parse_numbers(text: str, key: str, path, bounds: Range | None = None) -> list[float]:
    """A list value ``{a, b, c}`` (or ``a b c``) of Interfile numbers, each as :func:`parse_number`."""
    parts = [q for q in re.split(r"[,\s]+", str(text).strip().strip("{}").strip()) if q]
    if not parts:
        raise InputError(f"{path}: key {key!r} has value {str(text)[:80]!r}; expected numbers")
    return [parse_number(q, key, path, bounds) for q in parts]


def header_number(header: dict[str, str], key: str, path, default: float | None = None,
                  bounds: Range | None = None) -> float | None:
    """The number under ``key`` (:func:`parse_number`, within ``bounds``), ``default`` when absent or empty."""
    text = header.get(key)
    if text is None or str(text).strip() == "":
        return default
    return parse_number(text, key, path, bounds)


def header_count(header: dict[str, str], key: str, path, default: int | None = None) -> int | None:
    """A whole number 1 … 10⁶ under ``key`` (a size or a count), ``default`` when absent or empty."""
    text = header.get(key)
    if text is None or str(text).strip() == "":
        return default
    return int(parse_number(text, key, path, _COUNT, integer=True))


def interfile_geometry(header: dict[str, str], path: str | Path = "<header>", slice_units: str = "mm"):
    """``(shape, voxel_size_mm)`` described by a parsed header (see the module docstring)."""
    path = Path(path)
    if slice_units not in ("mm", "pixels"):
        raise InputError(f"slice_units: expected 'mm' or 'pixels', found {slice_units!r}")
    nx = header_count(header, "matrix size [1]", path)
    ny = header_count(header, "matrix size [2]", path)
    for key, value in (("matrix size [1]", nx), ("matrix size [2]", ny)):
        if value is None:
            raise InputError(f"{path}: required key {key!r} is missing")
    nz = None
    for key in ("matrix size [3]", "number of slices", "number of images", "total number of images"):
        nz = header_count(header, key, path)
        if nz is not None:
            break
    sizes = []
    for axis in (1, 2):
        key = f"scaling factor (mm/pixel) [{axis}]"
        value = header_number(header, key, path, bounds=PIXEL_SPACING_MM)
        if value is None:
            warnings.warn(f"{path}: {key!r} is missing; assuming 1 mm", stacklevel=3)
            value = 1.0
        sizes.append(value)
    shape: tuple[int, ...] = (nx, ny)
    if nz is not None:
        sz = header_number(header, "scaling factor (mm/pixel) [3]", path, bounds=SLICE_SPACING_MM)
        if sz is None:
            for key in ("centre-centre slice separation (pixels)", "center-center slice separation (pixels)",
                        "slice thickness (pixels)"):
                sz = header_number(header, key, path, bounds=Range(0.0, None, lo_open=True))
                if sz is not None:
                    if slice_units == "pixels":
                        sz *= sizes[0]
                    if sz not in SLICE_SPACING_MM:
                        raise InputError(f"{path}: key {key!r} has value {header[key]!r}, a slice spacing of "
                                         f"{sz:g} mm; expected {SLICE_SPACING_MM}")
                    break
        if sz is None:
            sz = sizes[0]
        shape = (nx, ny, nz)
        sizes.append(sz)
    return shape, tuple(sizes)


def _numpy_dtype(header: dict[str, str], path: Path) -> np.dtype:
    fmt = re.sub(r"\s+", " ", header.get("number format", "").strip().lower())
    if not fmt:
        raise InputError(f"{path}: required key 'number format' is missing")
    default_bytes = {"float": 4, "short float": 4, "long float": 8}.get(fmt)
    nbytes = header_count(header, "number of bytes per pixel", path) or default_bytes
    if nbytes is None:
        raise InputError(f"{path}: required key 'number of bytes per pixel' is missing for {fmt!r} data")
    code = _FORMATS.get((fmt, nbytes))
    if code is None:
        supported = sorted({f for f, _ in _FORMATS})
        raise InputError(
            f"{path}: 'number format' {fmt!r} with {nbytes} bytes per pixel is not supported; "
            f"expected one of {supported} with a matching byte count"
        )
    order = header.get("imagedata byte order", "BIGENDIAN").strip().upper().replace(" ", "")
    if order not in ("LITTLEENDIAN", "BIGENDIAN"):
        raise InputError(f"{path}: 'imagedata byte order' is {order!r}; expected LITTLEENDIAN or BIGENDIAN")
    return np.dtype(("<" if order == "LITTLEENDIAN" else ">") + code)


def read_interfile(
    header_path: str | Path,
    *,
    slice_units: str = "mm",
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, VoxelGrid, dict[str, str]]:
    """Read an Interfile image.

    Args:
        header_path: the ``.h33`` / ``.hv`` header.
        slice_units: unit of the ``(pixels)`` slice keys, ``"mm"`` (GATE dialect) or ``"pixels"``.
        dtype, device: of the returned tensor (the raw values are converted, then rescaled by
            ``data rescale slope/offset`` when the header has them).

    Returns:
        ``(image, grid, header)``: ``image`` is ``[1, 1, nx, ny(, nz)]``; ``grid`` its VoxelGrid;
        ``header`` the normalised ``key -> value`` strings.

    Raises:
        InputError: the header or data file is missing, a required key is missing or malformed,
            or the data file's size disagrees with the header. Messages name the file and key.
    """
    path = Path(header_path)
    header = read_interfile_header(path)
    shape, voxel = interfile_geometry(header, path, slice_units)
    np_dtype = _numpy_dtype(header, path)
    name = header.get("name of data file", "").strip().strip('"')
    if not name:
        raise InputError(f"{path}: required key 'name of data file' is missing")
    data_path = Path(name)
    if not data_path.is_absolute():
        data_path = path.parent / data_path
    if not data_path.is_file():
        raise InputError(f"{path}: 'name of data file' points to {str(data_path)!r}, which does not exist")
    offset = header_number(header, "data offset in bytes", path, bounds=Range(0.0, None))
    if offset is None:
        block = header_number(header, "data starting block", path, 0.0, bounds=Range(0.0, None))
        offset = block * 2048
    if offset != int(offset):
        raise InputError(f"{path}: 'data offset in bytes' is {offset}; expected a non-negative integer")
    offset = int(offset)
    n_values = math.prod(shape)
    expected = offset + n_values * np_dtype.itemsize
    actual = data_path.stat().st_size
    if actual != expected:
        raise InputError(
            f"{path}: data file {data_path.name!r} has {actual} bytes; the header describes {expected} "
            f"({'×'.join(map(str, shape))} values of {np_dtype.itemsize} bytes after an offset of {offset})"
        )
    slope = header_number(header, "data rescale slope", path, 1.0, bounds=_SLOPE)
    intercept = header_number(header, "data rescale offset", path, 0.0, bounds=_OFFSET)
    raw = np.fromfile(data_path, dtype=np_dtype, count=n_values, offset=offset)
    # File order: x fastest, then y, then slices -> C order (z, y, x); transpose to (x, y, z).
    array = raw.reshape(tuple(reversed(shape))).transpose(tuple(reversed(range(len(shape)))))
    np_out = np.float64 if dtype == torch.float64 else np.float32
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is reported below, by name
        array = np.ascontiguousarray(array.astype(np_out))
        if slope != 1.0 or intercept != 0.0:
            array = array * np_out(slope) + np_out(intercept)
    # A NaN voxel passes every later "negative?" check (NaN < 0 is False), so it is refused here.
    finite = np.isfinite(array)
    if not finite.all():
        n_nan = int(np.isnan(array).sum())
        n_inf = int(array.size - finite.sum()) - n_nan
        raise InputError(
            f"{path}: data file {data_path.name!r} holds {n_nan} NaN and {n_inf} infinite value(s) out of "
            f"{array.size} ({np_dtype.name} data, rescale slope {slope:g}, offset {intercept:g}, read as "
            f"{np.dtype(np_out).name}); expected finite values"
        )
    image = torch.from_numpy(array).to(device=device, dtype=dtype)
    return image[None, None], VoxelGrid(shape, voxel), header


def write_interfile(
    header_path: str | Path,
    image: torch.Tensor,
    grid: VoxelGrid,
    *,
    number_format: str = "float",
) -> Path:
    """Write ``image`` (``[*grid.shape]`` or ``[1, 1, *grid.shape]``) as an Interfile header plus a
    little-endian raw file beside it (same stem, ``.i33``).

    ``number_format`` is ``"float"`` (4-byte) or ``"unsigned integer"`` (2-byte; values are rounded
    and must lie in 0..65535). The slice spacing is written both as ``scaling factor (mm/pixel)
    [3]`` and, in mm, as ``slice thickness (pixels)`` for GATE. Returns the data file's path.
    """
    path = Path(header_path)
    data = image.detach().cpu().double()
    if tuple(data.shape) == (1, 1, *grid.shape):
        data = data[0, 0]
    if tuple(data.shape) != tuple(grid.shape):
        raise InputError(
            f"image: expected shape {tuple(grid.shape)} or [1, 1, ...], found {tuple(image.shape)}"
        )
    if number_format == "float":
        np_dtype, nbytes = np.dtype("<f4"), 4
    elif number_format == "unsigned integer":
        np_dtype, nbytes = np.dtype("<u2"), 2
        data = data.round()
        if bool((data < 0).any()) or bool((data > 65535).any()):
            raise InputError("image: values must lie in 0..65535 for 'unsigned integer' output")
    else:
        raise InputError(f"number_format: expected 'float' or 'unsigned integer', found {number_format!r}")
    array = data.numpy().transpose(tuple(reversed(range(data.dim())))).astype(np_dtype)
    data_path = path.with_suffix(".i33")
    data_path.write_bytes(np.ascontiguousarray(array).tobytes())
    lines = ["!INTERFILE :=", f"!name of data file := {data_path.name}", "!data offset in bytes := 0",
             "imagedata byte order := LITTLEENDIAN", f"!number format := {number_format}",
             f"!number of bytes per pixel := {nbytes}"]
    for axis, (n, s) in enumerate(zip(grid.shape, grid.voxel_size_mm), start=1):
        lines.append(f"!matrix size [{axis}] := {n}")
        lines.append(f"scaling factor (mm/pixel) [{axis}] := {s!r}")
    if grid.ndim == 3:
        lines.append(f"!number of slices := {grid.shape[2]}")
        lines.append(f"slice thickness (pixels) := {grid.voxel_size_mm[2]!r}")
    lines.append("!END OF INTERFILE :=")
    path.write_text("\n".join(lines) + "\n")
    return data_path
