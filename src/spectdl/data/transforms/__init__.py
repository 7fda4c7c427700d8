"""Replayable transforms for dict samples (see :mod:`spectdl.data.transforms.base`)."""

from spectdl.data.transforms.base import MASK_KEYS, Compose, Deterministic, Transform, from_spec, replay
from spectdl.data.transforms.crop import AxialSlice, Crop, RandomAxialSlice, RandomCrop
from spectdl.data.transforms.intensity import MatchCounts, NormalizeMean, Scale
from spectdl.data.transforms.spatial import (
    Flip,
    RandomFlip,
    RandomRot90,
    RandomRotate,
    Rot90,
    Rotate,
    rotation_matrix,
)

__all__ = [
    "AxialSlice",
    "Compose",
    "Crop",
    "Deterministic",
    "Flip",
    "MASK_KEYS",
    "MatchCounts",
    "NormalizeMean",
    "RandomAxialSlice",
    "RandomCrop",
    "RandomFlip",
    "RandomRot90",
    "RandomRotate",
    "Rot90",
    "Rotate",
    "Scale",
    "Transform",
    "from_spec",
    "replay",
    "rotation_matrix",
]
