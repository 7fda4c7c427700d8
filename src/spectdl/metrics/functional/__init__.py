"""Pure metric functions: ``[B, C, *spatial]`` tensors in, per-image values ``[B]`` or a reduction out.

Families (one module each): :mod:`.psnr`, :mod:`.ssim`, :mod:`.error` (RMSE, NRMSE, MAE, uptake
MAE), :mod:`.correlation` (Pearson r and p), :mod:`.roi` (ROI statistics, SUV, maximum lesion
count, IMBV), :mod:`.nema` (sphere SUV, contrast recovery, background variability),
:mod:`.lpips` and :mod:`.fid`.
"""

from spectdl.metrics.functional.correlation import PearsonResult, pearson
from spectdl.metrics.functional.error import mae, nrmse, rmse, uptake_mae
from spectdl.metrics.functional.fid import (
    feature_statistics,
    fid,
    fid_from_features,
    frechet_distance,
    image_features,
    patch_features,
    patch_fid,
    patch_positions,
)
from spectdl.metrics.functional.lpips import LPIPSNetwork, lpips
from spectdl.metrics.functional.nema import (
    SphereMetrics,
    background_roi_centres,
    background_variability,
    contrast_recovery,
    nema_sphere_metrics,
    sphere_mask,
)
from spectdl.metrics.functional.psnr import psnr
from spectdl.metrics.functional.roi import (
    RoiStats,
    imbv,
    max_lesion_count,
    max_lesion_count_error,
    roi_stats,
    suv,
)
from spectdl.metrics.functional.ssim import ssim, ssim_map

__all__ = [
    "LPIPSNetwork",
    "PearsonResult",
    "RoiStats",
    "SphereMetrics",
    "background_roi_centres",
    "background_variability",
    "contrast_recovery",
    "feature_statistics",
    "fid",
    "fid_from_features",
    "patch_features",
    "patch_fid",
    "patch_positions",
    "frechet_distance",
    "image_features",
    "imbv",
    "lpips",
    "mae",
    "max_lesion_count",
    "max_lesion_count_error",
    "nema_sphere_metrics",
    "nrmse",
    "pearson",
    "psnr",
    "rmse",
    "roi_stats",
    "sphere_mask",
    "ssim",
    "ssim_map",
    "suv",
    "uptake_mae",
]
