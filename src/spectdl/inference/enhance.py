"""Enhance a reconstructed volume with a trained network: arrays (:func:`enhance_volume`) and files
(:func:`enhance_file`, behind ``spectdl enhance --checkpoint CKPT INPUT -o OUTPUT``).

What a checkpoint must say is in :mod:`spectdl.inference.checks` (modality, channels, spatial
dimensions); how files are read and written, atomically and never over an input, in
:mod:`spectdl.inference.files`. A 2-D network runs slice by slice (across
``inference.slice_axis``, default 2 = axial slices), a 3-D one by overlapping windows of
``inference.roi_size`` (default ``min(size, 96)`` voxels per axis).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

import torch
from torch import nn

from spectdl.data.normalization import Normalization
from spectdl.errors import InputError
from spectdl.inference.checks import check_checkpoint, spatial_dims_of
from spectdl.inference.files import (
    check_output,
    check_same_grid,
    is_nifti,
    read_volume_file,
    write_series_atomically,
)
from spectdl.inference.sliding import BLENDS, predict_slices, predict_sliding_window

__all__ = ["DEFAULT_ROI_SIZE", "enhance_file", "enhance_volume"]

PathLike = Union[str, Path]
DeviceLike = Union[str, torch.device, None]

DEFAULT_ROI_SIZE = 96


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
    from spectdl.training.checkpoint import checkpoint_path
    from spectdl.training.networks import load_model_from_checkpoint

    input_path, output_path = Path(input_path), Path(output_path)
    extras = [Path(p) for p in (extra_inputs or [])]
    if blend not in BLENDS:
        raise InputError(f"blend: {blend!r}; expected one of {BLENDS}")
    if not input_path.exists():
        raise InputError(f"input_path: {input_path} not found; expected a .nii/.nii.gz file or a DICOM file or folder")
    nifti = is_nifti(input_path)
    check_output(output_path, [input_path, *extras], nifti, overwrite)

    where = f"checkpoint {checkpoint_path(checkpoint)}"
    model, meta = load_model_from_checkpoint(checkpoint, map_location=device)
    check_checkpoint(meta, in_channels=1 + len(extras), model=model, where=where)

    image = read_volume_file(input_path)
    found_modality = input_modality if input_modality is not None else image.modality
    check_checkpoint(meta, in_channels=1 + len(extras), input_modality=found_modality, model=model, where=where)
    channels = [image.data]
    sources = [Path(s) for s in image.source]
    for k, p in enumerate(extras):
        extra = read_volume_file(p)
        check_same_grid(image, extra, f"extra_inputs[{k}] ({p})")
        channels.append(extra.data.to(image.data.dtype))
        sources += [Path(s) for s in extra.source]
    check_output(output_path, [input_path, *extras, *sources], nifti, overwrite)

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
    write_series_atomically(image.with_data(result), image, text, output_path)
    return output_path
