"""What a checkpoint must say to enhance a volume, and the checks that refuse one that cannot.

The checkpoint's ``spectdl`` metadata (see :mod:`spectdl.training.meta`):

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
  overlapping windows of ``inference.roi_size`` (default ``min(size, 96)`` voxels per axis); see
  :func:`spectdl.inference.enhance.enhance_volume`.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

from torch import nn

from spectdl.errors import InputError

__all__ = ["IMAGE_MODALITIES", "check_checkpoint", "spatial_dims_of"]

# Checkpoint modality -> DICOM Modality values of the images it accepts.
IMAGE_MODALITIES: dict[str, tuple[str, ...]] = {"spect": ("NM", "PT"), "pet": ("PT",), "ct": ("CT",)}


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
    """Refuse a checkpoint that cannot enhance this input (see the module docstring).

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
