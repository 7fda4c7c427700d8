"""Blurred cardiac phantoms: stand-ins for reconstructions with a known LV, for the cardiac tests."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from spectdl.geometry import VoxelGrid
from spectdl.phantoms.cardiac import cardiac

GRID = VoxelGrid((64, 64, 64), 6.4)
FWHM_MM = 10.0  # about the system resolution at the heart plus the Butterworth filter


def blurred(phantom, b: int = 0, fwhm_mm: float = FWHM_MM) -> np.ndarray:
    """Sample ``b``'s activity blurred by a Gaussian of ``fwhm_mm`` (scipy), float64 ``[X, Y, Z]``."""
    sigma = fwhm_mm / (2 * np.sqrt(2 * np.log(2))) / np.asarray(phantom.grid.voxel_size_mm)
    return ndimage.gaussian_filter(phantom.activity[b, 0].double().numpy(), sigma)


def phantoms(n: int, seed: int, **kwargs):
    return cardiac(GRID, n, seed=seed, **kwargs)
