"""Replayable transforms for dict samples (see :mod:`spectdl.data.transforms.base`)."""

from spectdl.data.transforms.base import MASK_KEYS, Compose, Deterministic, Transform, from_spec, replay
from spectdl.data.transforms.crop import (
    AxialSlice,
    CentreCrop,
    Channel,
    Crop,
    RandomAxialSlice,
    RandomChannel,
    RandomCrop,
)
from spectdl.data.transforms.intensity import (
    MaskFromLabels,
    MatchCounts,
    NormalizeChannels,
    NormalizeMean,
    OrganMasks,
    Scale,
    Shift,
)
from spectdl.data.transforms.spatial import (
    AffineResample,
    Flip,
    RandomFlip,
    RandomRot90,
    RandomRotate,
    RegisterToReference,
    Rot90,
    Rotate,
    rotation_matrix,
)

__all__ = [
    "AffineResample",
    "AxialSlice",
    "CentreCrop",
    "Channel",
    "Compose",
    "Crop",
    "Deterministic",
    "Flip",
    "MASK_KEYS",
    "MaskFromLabels",
    "MatchCounts",
    "NormalizeChannels",
    "NormalizeMean",
    "OrganMasks",
    "RandomAxialSlice",
    "RandomChannel",
    "RandomCrop",
    "RandomFlip",
    "RandomRot90",
    "RandomRotate",
    "RegisterToReference",
    "Rot90",
    "Rotate",
    "Scale",
    "Shift",
    "Transform",
    "from_spec",
    "replay",
    "rotation_matrix",
]
