"""The files of ``spectdl enhance``: reading a volume with its geometry, checking where the output
may go, and writing a DICOM series atomically.

The output has the input's format: a ``.nii``/``.nii.gz`` input gives a NIfTI file with the same
affine; a DICOM input (a file or a series folder) gives a new DICOM series folder derived from it
(:func:`spectdl.io.write_dicom_series`: same geometry, identity and frame of reference, new UIDs).
Writes are atomic: the NIfTI file (:func:`spectdl.io.write_nifti`), or the whole series folder
(:func:`write_series_atomically`), appears complete or not at all. An input file or folder is
never written to or replaced (:func:`check_output`).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Union

import numpy as np

from spectdl.errors import InputError

__all__ = ["check_output", "check_same_grid", "is_nifti", "read_volume_file", "write_series_atomically"]

PathLike = Union[str, Path]

_SERIES_FILE = re.compile(r"^IM_\d{4,}\.dcm$")
_AFFINE_ATOL_MM = 1e-3


def is_nifti(path: Path) -> bool:
    """Whether ``path`` names a NIfTI file (``.nii`` or ``.nii.gz``)."""
    return path.name.endswith(".nii") or path.name.endswith(".nii.gz")


def _dicom_modality(path: Path) -> str:
    """Modality (0008,0060) of a DICOM file, or of the first readable DICOM file of a folder."""
    from spectdl.errors import require

    pydicom = require("pydicom", "dicom")
    if path.is_file():
        files = [path]
    else:
        files = sorted(q for q in path.iterdir() if q.is_file() and not q.name.startswith("."))
    for q in files:
        try:
            ds = pydicom.dcmread(str(q), stop_before_pixels=True)
        except Exception:  # not a DICOM file: folders often hold other files too
            continue
        return str(ds.get("Modality", "") or "")
    raise InputError(f"{path}: holds no readable DICOM file; expected a DICOM series, a DICOM file or a .nii/.nii.gz file")


def read_volume_file(path: PathLike):
    """Read a reconstructed volume as a :class:`spectdl.io.Volume`: NIfTI (``.nii``/``.nii.gz``),
    a CT series folder, or an NM/PT volume (a multi-frame file or a folder of slices)."""
    from spectdl.io import read_ct_series, read_nifti, read_volume_series

    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: not found; expected a .nii/.nii.gz file or a DICOM file or folder")
    if is_nifti(path):
        return read_nifti(path)
    if _dicom_modality(path) == "CT":
        if not path.is_dir():
            raise InputError(f"{path}: a CT slice; expected the folder of the whole CT series")
        return read_ct_series(path)
    return read_volume_series(path)


def _inside(child: Path, parent: Path) -> bool:
    child, parent = child.resolve(), parent.resolve()
    return child == parent or parent in child.parents


def check_output(output: Path, inputs: list[Path], nifti: bool, overwrite: bool) -> None:
    """Refuse an output in the wrong format, one that is (or contains) an input, or one that exists."""
    if nifti and not is_nifti(output):
        raise InputError(f"output_path: {output}; expected a .nii or .nii.gz file (the input is NIfTI)")
    if not nifti and is_nifti(output):
        raise InputError(f"output_path: {output}; expected a folder for the DICOM series (the input is DICOM)")
    for p in inputs:
        if _inside(p, output):
            raise InputError(f"output_path: {output} is or holds the input {p}; refusing to overwrite an input")
    if not output.exists():
        return
    if nifti:
        if not overwrite:
            raise InputError(f"output_path: {output} already exists; pass overwrite=True to replace it")
        return
    if not output.is_dir():
        raise InputError(f"output_path: {output} is a file; expected a folder for the DICOM series")
    entries = list(output.iterdir())
    if entries and not overwrite:
        raise InputError(f"output_path: folder {output} is not empty; pass overwrite=True to replace the series in it")
    others = [e.name for e in entries if not (e.is_file() and _SERIES_FILE.match(e.name))]
    if others:
        raise InputError(
            f"output_path: folder {output} holds {others[:3]}, not only a series written by spectdl "
            "(IM_0001.dcm, ...); choose an empty or new folder"
        )


def write_series_atomically(volume, reference, description: str, out_dir: Path) -> None:
    """Write the series into a new hidden folder beside ``out_dir``, then swap it into place."""
    from spectdl.io import write_dicom_series

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    old = None
    try:
        write_dicom_series(volume, reference, description, tmp)
        if out_dir.exists():
            # check_output allowed only an empty folder or spectdl's own series files here.
            old = out_dir.with_name(f"{tmp.name}.old")
            os.replace(out_dir, old)
        os.replace(tmp, out_dir)
    except BaseException:
        if old is not None and old.exists() and not out_dir.exists():
            os.replace(old, out_dir)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def check_same_grid(a, b, name: str) -> None:
    """Refuse a volume ``b`` (named ``name`` in the message) whose shape or affine differs from ``a``'s."""
    if a.shape != b.shape:
        raise InputError(f"{name}: shape {b.shape}; expected the input's grid {a.shape} (resample it first)")
    if not np.allclose(a.affine, b.affine, atol=_AFFINE_ATOL_MM):
        raise InputError(
            f"{name}: its affine differs from the input's (largest difference "
            f"{float(np.abs(a.affine - b.affine).max()):.3g} mm); expected the same grid "
            "(resample it first, e.g. with spectdl.io.resample_to_grid)"
        )
