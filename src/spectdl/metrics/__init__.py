"""Image-quality, quantitative and perceptual metrics for SPECT images.

Every metric is a pure function in :mod:`spectdl.metrics.functional`; the classes here
accumulate dataset-level values from summed statistics (``update`` / ``compute`` / ``reset``).
"""

from spectdl.metrics import functional
from spectdl.metrics.base import Metric, PerImageMean
from spectdl.metrics.image_quality import MAE, NRMSE, PSNR, RMSE, SSIM, PearsonCorrCoef, UptakeMAE
from spectdl.metrics.perceptual import FID, LPIPS

__all__ = [
    "FID",
    "LPIPS",
    "MAE",
    "Metric",
    "NRMSE",
    "PSNR",
    "PearsonCorrCoef",
    "PerImageMean",
    "RMSE",
    "SSIM",
    "UptakeMAE",
    "functional",
]
