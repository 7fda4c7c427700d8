"""Accumulating image-quality metrics over a dataset (functions in :mod:`spectdl.metrics.functional`).

PSNR, SSIM, RMSE, NRMSE, MAE and the uptake MAE report the mean of the per-image values over all
images seen (how the papers report a test set); the Pearson coefficient pools all pairs seen
into one ``r`` with its p-value.
"""

from __future__ import annotations

import torch

from spectdl.metrics.base import Metric, PerImageMean
from spectdl.metrics.functional.correlation import (
    PearsonResult,
    _pearson_compute,
    _pearson_merge,
    _pearson_update,
)
from spectdl.metrics.functional.error import mae, nrmse, rmse, uptake_mae
from spectdl.metrics.functional.psnr import _psnr_compute, _psnr_update
from spectdl.metrics.functional.ssim import _ssim_per_image

__all__ = ["MAE", "NRMSE", "PSNR", "RMSE", "SSIM", "PearsonCorrCoef", "UptakeMAE"]


class PSNR(PerImageMean):
    """Mean per-image PSNR in dB; arguments as :func:`spectdl.metrics.functional.psnr`."""

    def __init__(self, data_range=None, peak: str = "reference") -> None:
        self.data_range = data_range
        self.peak = peak
        super().__init__()

    def _values(self, pred, target, mask):
        return _psnr_compute(*_psnr_update(pred, target, self.data_range, self.peak, mask))


class SSIM(PerImageMean):
    """Mean per-image SSIM; arguments as :func:`spectdl.metrics.functional.ssim`."""

    def __init__(self, data_range, *, gaussian_sigma: float | None = 1.5, win_size: int = 11,
                 k1: float = 0.01, k2: float = 0.03) -> None:
        self.options = dict(
            data_range=data_range, gaussian_sigma=gaussian_sigma, win_size=win_size, k1=k1, k2=k2
        )
        super().__init__()

    def _values(self, pred, target, mask):
        o = self.options
        return _ssim_per_image(pred, target, o["data_range"], mask, o["gaussian_sigma"],
                                     o["win_size"], o["k1"], o["k2"])


class RMSE(PerImageMean):
    """Mean per-image RMSE."""

    def _values(self, pred, target, mask):
        return rmse(pred, target, mask, reduction="none")


class NRMSE(PerImageMean):
    """Mean per-image NRMSE; ``normalization`` as :func:`spectdl.metrics.functional.nrmse`."""

    def __init__(self, normalization: str = "euclidean") -> None:
        self.normalization = normalization
        super().__init__()

    def _values(self, pred, target, mask):
        return nrmse(pred, target, self.normalization, mask, reduction="none")


class MAE(PerImageMean):
    """Mean per-image MAE."""

    def _values(self, pred, target, mask):
        return mae(pred, target, mask, reduction="none")


class UptakeMAE(PerImageMean):
    """Mean per-image MAE over the uptake region (``target > threshold`` or the mask)."""

    def __init__(self, threshold: float = 0.0) -> None:
        self.threshold = threshold
        super().__init__()

    def _values(self, pred, target, mask):
        return uptake_mae(pred, target, mask, self.threshold, reduction="none")


class PearsonCorrCoef(Metric):
    """Pearson ``r`` and p-value of all pairs seen, pooled across batches and images.

    ``update(pred, target, mask=None)`` takes 1-D paired values ``[N]`` or images
    ``[B, C, *spatial]`` (every masked voxel of every image is one pair). ``compute()`` returns a
    :class:`~spectdl.metrics.functional.PearsonResult` of scalars, equal to
    ``scipy.stats.pearsonr`` on the concatenated pairs.
    """

    def reset(self) -> None:
        self._stats: tuple[torch.Tensor, ...] | None = None

    def update(self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        per = tuple(s.detach().to(torch.float64) for s in _pearson_update(pred, target, mask))
        for i in range(per[0].numel()):
            one = tuple(s[i:i + 1] for s in per)
            self._stats = one if self._stats is None else _pearson_merge(self._stats, one)

    def compute(self) -> PearsonResult:
        if self._stats is None:
            raise self._empty_error()
        r, p = _pearson_compute(self._stats)
        return PearsonResult(r[0], p[0])

