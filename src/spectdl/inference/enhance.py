"""Enhance a reconstructed volume with a trained network: arrays (:func:`enhance_volume`) and files
(:func:`enhance_file`, behind ``spectdl enhance --checkpoint CKPT INPUT -o OUTPUT``).

What a checkpoint must say (its ``spectdl`` metadata, see :mod:`spectdl.training.checkpoint`)
----------------------------------------------------------------------------------------------
* ``modality``: what the network reads. Enhancement needs a network that reads reconstructed
  images: ``"spect"`` (DICOM NM, or PT since SPECT reconstructions are commonly exported as PET
  Image Storage, spectdl's own writer included), ``"pet"`` (PT) or ``"ct"`` (CT). Any other value
  (e.g. ``"projections"``) is refused, and so is task ``two_stage`` (SPECTnet reads sinograms).
  Absent: not checked.
* ``in_channels``: the input volume plus ``extra_inputs`` (e.g. an attenuation map on the same grid)
  must give exactly this many channels. Absent: taken from the network.
* ``normalization`` (optional): see :mod:`spectdl.data.normalization`.
* ``spatial_dims`` (optional, else the model's ``spatial_dims`` or its first convolution): 2 runs
  the network slice by slice (across ``inference.slice_axis``, default 2 = axial slices), 3 by
  overlapping windows of ``inference.roi_size`` (default ``min(size, 96)`` voxels per axis).

Files
-----
The output has the input's format: a ``.nii``/``.nii.gz`` input gives a NIfTI file with the same
affine; a DICOM input (a file or a series folder) gives a new DICOM series folder derived from it
(:func:`spectdl.io.write_dicom_series`: same geometry, identity and frame of reference, new UIDs).
Writes are atomic: the NIfTI file, or the whole series folder, appears complete or not at all.
An input file or folder is never written to or replaced.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn

from spectdl.errors import InputError
from spectdl.data.normalization import Normalization
from spectdl.inference.sliding import BLENDS, predict_slices, predict_sliding_window

__all__ = [
    "DEFAULT_ROI_SIZE",
    "IMAGE_MODALITIES",
    "check_checkpoint",
    "enhance_file",
    "enhance_volume",
    "read_image",
    "spatial_dims_of",
]

PathLike = Union[str, Path]
DeviceLike = Union[str, torch.device, None]

DEFAULT_ROI_SIZE = 96
# Checkpoint modality -> DICOM Modality values of the images it accepts.
IMAGE_MODALITIES: dict[str, tuple[str, ...]] = {"spect": ("NM", "PT"), "pet": ("PT",), "ct": ("CT",)}
_SERIES_FILE = re.compile(r"^IM_\d{4,}\.dcm$")
_AFFINE_ATOL_MM = 1e-3


# --------------------------------------------------------------------------------------------------
# What a checkpoint expects


def _first_conv_dims(model: nn.Module) -> Optional[int]:
    for m in model.modules():
        if isinstance(m, (nn.Conv3d, nn.ConvTranspose3d)):
            return 3
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            return 2
    return None


def spatial_dims_of(model: nn.Module, meta: Optional[Mapping[str, Any]] = None, where: str = "model") -> int:
    """2 or 3: ``meta["spatial_dims"]``, else ``model.spatial_dims``, else
    ``meta["model"]["kwargs"]["spatial_dims"]``, else the kind of the model's first convolution."""
    meta = meta or {}
    kwargs = (meta.get("model") or {}).get("kwargs") or {}
    for value in (meta.get("spatial_dims"), getattr(model, "spatial_dims", None), kwargs.get("spatial_dims"),
                  _first_conv_dims(model)):
        if value is not None:
            if value not in (2, 3):
                raise InputError(f"{where}: spatial_dims {value!r}; expected 2 or 3")
            return int(value)
    raise InputError(
        f"{where}: cannot tell whether the network is 2-D or 3-D; expected spatial_dims in the "
        "checkpoint metadata or on the model"
    )


def _expected_channels(meta: Mapping[str, Any], model: Optional[nn.Module]) -> Optional[int]:
    kwargs = (meta.get("model") or {}).get("kwargs") or {}
    for value in (meta.get("in_channels"), getattr(model, "in_channels", None), kwargs.get("in_channels")):
        if value is not None:
            return int(value)
    return None


def _accepted_by(input_modality: str) -> tuple[str, ...]:
    """The checkpoint modalities that may read an image of this modality (DICOM or spectdl name)."""
    m = str(input_modality).strip()
    if m.upper() in ("NM", "PT", "CT"):
        return tuple(k for k, dicom in IMAGE_MODALITIES.items() if m.upper() in dicom)
    return (m.lower(),)


def check_checkpoint(
    meta: Mapping[str, Any],
    *,
    in_channels: int,
    input_modality: Optional[str] = None,
    model: Optional[nn.Module] = None,
    where: str = "checkpoint",
) -> None:
    """Refuse a checkpoint that cannot enhance this input (module docstring).

    Args:
        meta: the checkpoint's ``spectdl`` metadata.
        in_channels: channels of the input (the volume plus the extra inputs).
        input_modality: the input's DICOM Modality (``"NM"``, ``"PT"``, ``"CT"``) or a spectdl name
            (``"spect"``, ``"pet"``, ``"ct"``); ``None`` (e.g. NIfTI) is not checked.
        model: the rebuilt network, for its ``in_channels`` when the metadata lacks them.
        where: names the checkpoint in messages.

    Raises:
        InputError naming the checkpoint, the expected and the found channels or modality.
    """
    if meta.get("task") == "two_stage":
        # SPECTnet maps sinograms to images, whatever modality its config recorded.
        raise InputError(
            f"{where}: task 'two_stage' (SPECTnet) reads projections and writes images; enhancing a "
            "volume needs an image-to-image network (task 'supervised' or 'gan')"
        )
    recorded = meta.get("modality")
    if recorded is not None:
        mod = str(recorded).lower()
        if mod not in IMAGE_MODALITIES:
            raise InputError(
                f"{where}: the network reads modality {recorded!r}; enhancing a volume needs a network "
                f"that reads reconstructed images, one of {sorted(IMAGE_MODALITIES)}"
            )
        if input_modality is not None and mod not in _accepted_by(input_modality):
            raise InputError(
                f"{where}: the network reads {mod!r} images (DICOM {' or '.join(IMAGE_MODALITIES[mod])}); "
                f"found an input of modality {input_modality!r}"
            )
    expected = _expected_channels(meta, model)
    if expected is not None and expected != in_channels:
        extra = in_channels - 1
        raise InputError(
            f"{where}: the network expects {expected} input channel(s); found {in_channels} "
            f"(the input volume plus {extra} extra input(s)); "
            + (f"pass {expected - 1} extra input(s) on the same grid (e.g. an attenuation map)"
               if expected > 1 else "pass no extra inputs")
        )


# --------------------------------------------------------------------------------------------------
# Arrays


def _roi_for(shape: Sequence[int], roi_size, meta: Mapping[str, Any]) -> tuple[int, ...]:
    if roi_size is None:
        roi_size = (meta.get("inference") or {}).get("roi_size")
    if roi_size is None:
        return tuple(min(int(s), DEFAULT_ROI_SIZE) for s in shape)
    return (roi_size,) * len(shape) if isinstance(roi_size, int) else tuple(roi_size)


def enhance_volume(
    model: nn.Module,
    volume: torch.Tensor,
    *,
    meta: Optional[Mapping[str, Any]] = None,
    batch_size: int = 8,
    overlap: float = 0.5,
    roi_size: Union[int, Sequence[int], None] = None,
    blend: str = "gaussian",
    device: DeviceLike = None,
) -> torch.Tensor:
    """Normalise, run the network over the whole volume and scale back.

    Puts ``model`` in eval mode. A 2-D network runs slice by slice (:func:`predict_slices`), a
    3-D one by overlapping windows (:func:`predict_sliding_window`), as described in the
    module docstring.

    Args:
        model: the network (on ``device``).
        volume: ``[C, X, Y, Z]``; cast to the network's parameter dtype.
        meta: the checkpoint metadata (normalisation, spatial dims, ``inference`` settings).
        batch_size: slices or windows per forward pass.
        overlap, roi_size, blend: the sliding window of a 3-D network (``roi_size`` default: the
            checkpoint's ``inference.roi_size``, else ``min(size, 96)`` per axis).
        device: where the network runs; default the volume's device.

    Returns:
        ``[C_out, X, Y, Z]`` on the volume's device.
    """
    meta = meta or {}
    if not isinstance(volume, torch.Tensor) or volume.dim() != 4:
        found = tuple(volume.shape) if isinstance(volume, torch.Tensor) else type(volume).__name__
        raise InputError(f"volume: {found}; expected a tensor [C, X, Y, Z]")
    if not torch.isfinite(volume).all():
        raise InputError("volume: contains NaN or infinite values; expected finite voxels")
    param = next(model.parameters(), None)
    if param is not None and param.is_floating_point():
        volume = volume.to(param.dtype)
    norm = Normalization.from_meta(meta)
    x, scales = norm.apply(volume)
    model.eval()
    if spatial_dims_of(model, meta) == 2:
        axis = (meta.get("inference") or {}).get("slice_axis", 2)
        y = predict_slices(model, x, batch_size, axis, device=device)
    else:
        roi = _roi_for(x.shape[1:], roi_size, meta)
        y = predict_sliding_window(model, x, roi, overlap, batch_size, blend, device=device)
    return norm.restore(y, scales)


# --------------------------------------------------------------------------------------------------
# Files


def _is_nifti(path: Path) -> bool:
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


def read_image(path: PathLike):
    """Read a reconstructed volume as a :class:`spectdl.io.Volume`: NIfTI (``.nii``/``.nii.gz``),
    a CT series folder, or an NM/PT volume (a multi-frame file or a folder of slices)."""
    from spectdl.io import read_ct_series, read_nifti, read_volume_series

    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: not found; expected a .nii/.nii.gz file or a DICOM file or folder")
    if _is_nifti(path):
        return read_nifti(path)
    if _dicom_modality(path) == "CT":
        if not path.is_dir():
            raise InputError(f"{path}: a CT slice; expected the folder of the whole CT series")
        return read_ct_series(path)
    return read_volume_series(path)


def _inside(child: Path, parent: Path) -> bool:
    child, parent = child.resolve(), parent.resolve()
    return child == parent or parent in child.parents


def _check_output(output: Path, inputs: list[Path], nifti: bool, overwrite: bool) -> None:
    """Refuse an output in the wrong format, one that is (or contains) an input, or one that exists."""
    if nifti and not _is_nifti(output):
        raise InputError(f"output_path: {output}; expected a .nii or .nii.gz file (the input is NIfTI)")
    if not nifti and _is_nifti(output):
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


def _write_series_atomically(volume, reference, description: str, out_dir: Path) -> None:
    """Write the series into a new hidden folder beside ``out_dir``, then swap it into place."""
    from spectdl.io import write_dicom_series

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    old = None
    try:
        write_dicom_series(volume, reference, description, tmp)
        if out_dir.exists():
            # _check_output allowed only an empty folder or spectdl's own series files here.
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


def _same_grid(a, b, name: str) -> None:
    if a.shape != b.shape:
        raise InputError(f"{name}: shape {b.shape}; expected the input's grid {a.shape} (resample it first)")
    if not np.allclose(a.affine, b.affine, atol=_AFFINE_ATOL_MM):
        raise InputError(
            f"{name}: its affine differs from the input's (largest difference "
            f"{float(np.abs(a.affine - b.affine).max()):.3g} mm); expected the same grid "
            "(resample it first, e.g. with spectdl.io.resample_to_grid)"
        )


def enhance_file(
    checkpoint: PathLike,
    input_path: PathLike,
    output_path: PathLike,
    *,
    batch_size: int = 8,
    overlap: float = 0.5,
    device: Union[str, torch.device] = "cpu",
    overwrite: bool = False,
    extra_inputs: Optional[Sequence[PathLike]] = None,
    roi_size: Union[int, Sequence[int], None] = None,
    blend: str = "gaussian",
    input_modality: Optional[str] = None,
    description: Optional[str] = None,
) -> Path:
    """Enhance a NIfTI file or DICOM series with a checkpoint and write the result in the same format.

    Args:
        checkpoint: the checkpoint's JSON sidecar (see :mod:`spectdl.training.checkpoint`).
        input_path: a ``.nii``/``.nii.gz`` file, or a DICOM NM/PT volume (multi-frame file or series
            folder).
        output_path: a ``.nii``/``.nii.gz`` file for a NIfTI input, a folder for a DICOM input.
        batch_size: slices or windows per forward pass.
        overlap: window overlap of a 3-D network, in ``[0, 1)``.
        device: where the network runs (``"cpu"``, ``"cuda"``, ...); the volume stays in host memory.
        overwrite: replace an existing output (a NIfTI file, or a folder holding only a series
            written by spectdl). Inputs are never replaced.
        extra_inputs: further input channels, in order (e.g. an attenuation map), each a file or
            folder on exactly the input's grid.
        roi_size: window size of a 3-D network (default: the checkpoint's, else up to 96³).
        blend: ``"gaussian"`` or ``"constant"`` window blending.
        input_modality: the input's modality when the file does not say (NIfTI), e.g. ``"spect"``;
            a DICOM input's own Modality is used otherwise.
        description: Series Description of a DICOM output (default ``"spectdl enhance <model>"``).

    Returns:
        The path written.

    Raises:
        InputError: the checkpoint does not fit the input (channels, modality), the output is an
            input or exists without ``overwrite``, or the files cannot be read.
    """
    from spectdl.io import write_nifti
    from spectdl.training import load_model_from_checkpoint
    from spectdl.training.checkpoint import checkpoint_path

    input_path, output_path = Path(input_path), Path(output_path)
    extras = [Path(p) for p in (extra_inputs or [])]
    if blend not in BLENDS:
        raise InputError(f"blend: {blend!r}; expected one of {BLENDS}")
    if not input_path.exists():
        raise InputError(f"input_path: {input_path} not found; expected a .nii/.nii.gz file or a DICOM file or folder")
    nifti = _is_nifti(input_path)
    _check_output(output_path, [input_path, *extras], nifti, overwrite)

    where = f"checkpoint {checkpoint_path(checkpoint)}"
    model, meta = load_model_from_checkpoint(checkpoint, map_location=device)
    check_checkpoint(meta, in_channels=1 + len(extras), model=model, where=where)

    image = read_image(input_path)
    found_modality = input_modality if input_modality is not None else image.modality
    check_checkpoint(meta, in_channels=1 + len(extras), input_modality=found_modality, model=model, where=where)
    channels = [image.data]
    sources = [Path(s) for s in image.source]
    for k, p in enumerate(extras):
        extra = read_image(p)
        _same_grid(image, extra, f"extra_inputs[{k}] ({p})")
        channels.append(extra.data.to(image.data.dtype))
        sources += [Path(s) for s in extra.source]
    _check_output(output_path, [input_path, *extras, *sources], nifti, overwrite)

    out = enhance_volume(
        model, torch.stack(channels), meta=meta, batch_size=batch_size, overlap=overlap,
        roi_size=roi_size, blend=blend, device=device,
    )
    if out.shape[0] != 1:
        raise InputError(f"{where}: the network gives {out.shape[0]} output channels; expected 1 (one volume to write)")
    if not torch.isfinite(out).all():
        raise InputError(f"{where}: the network produced NaN or infinite values for {input_path}")
    result = out[0].to("cpu", torch.float32)

    if nifti:
        return write_nifti(result, image.affine, output_path, overwrite=overwrite)
    name = str((meta.get("model") or {}).get("name") or "network")
    text = description if description is not None else f"spectdl enhance {name}"
    _write_series_atomically(image.with_data(result), image, text, output_path)
    return output_path
