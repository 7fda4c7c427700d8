"""Accumulating perceptual and distribution metrics: LPIPS (mean per image) and FID.

``FID`` keeps, for the real and the generated set separately, the sum of the features, the sum
of their outer products and the count (float64), so the distance computed at the end equals the
FID of the whole sets whatever the batching.
"""

from __future__ import annotations

import torch

from spectdl.errors import InputError
from spectdl.metrics.base import Metric, PerImageMean
from spectdl.metrics.functional.fid import _default_extractor, _fid_compute, _fid_update, image_features
from spectdl.metrics.functional.lpips import LPIPSNetwork, _missing_weights_message, lpips

__all__ = ["FID", "LPIPS"]


class LPIPS(PerImageMean):
    """Mean per-image LPIPS; arguments as :func:`spectdl.metrics.functional.lpips`.

    The network is built once, from ``network`` or from the two local weights files.
    """

    def __init__(self, data_range, *, net: str = "alex", weights_path=None, lpips_weights_path=None,
                 network: LPIPSNetwork | None = None) -> None:
        if network is None:
            if weights_path is None or lpips_weights_path is None:
                raise InputError(f"weights_path: {_missing_weights_message(net)}")
            network = LPIPSNetwork(net, weights_path, lpips_weights_path)
        self.network = network
        self.data_range = data_range
        super().__init__()

    def _values(self, pred, target, mask):
        with torch.no_grad():
            return lpips(pred, target, self.data_range, network=self.network, mask=mask, reduction="none")


class FID(Metric):
    """Fréchet Inception distance accumulated over batches of real and generated images.

    Args:
        data_range: the images' value range ``[0, data_range]``.
        weights_path: local FID Inception-v3 weights (see
            :data:`spectdl.metrics.backbones.WEIGHT_FILES`), or
        feature_extractor: any module ``[N, 3, H, W]`` in [−1, 1] → ``[N, D]``.

    ``update(images, real=True|False)`` adds images ``[N, C, *spatial]``;
    ``update_features(features, real=...)`` adds ready features ``[N, D]``; ``compute()`` gives
    the FID (float64 scalar), needing >= 2 samples in each set.
    """

    def __init__(self, data_range=None, *, weights_path=None,
                 feature_extractor: torch.nn.Module | None = None, batch_size: int = 32) -> None:
        self.data_range = data_range
        self.batch_size = batch_size
        self._weights_path = weights_path
        self._extractor = feature_extractor
        super().__init__()

    @property
    def feature_extractor(self) -> torch.nn.Module:
        if self._extractor is None:
            self._extractor = _default_extractor(self._weights_path)
        return self._extractor

    def reset(self) -> None:
        self._stats: dict[bool, list] = {}

    def update_features(self, features: torch.Tensor, real: bool) -> None:
        total, outer, n = _fid_update(features.detach())
        key = bool(real)
        if key in self._stats:
            t0, o0, n0 = self._stats[key]
            if t0.shape != total.shape:
                raise InputError(f"features: {total.numel()} features per sample; expected {t0.numel()} as "
                                 "before")
            self._stats[key] = [t0 + total.to(t0.device), o0 + outer.to(o0.device), n0 + n]
        else:
            self._stats[key] = [total, outer, n]

    def update(self, images: torch.Tensor, real: bool) -> None:
        if self.data_range is None:
            raise InputError("data_range: FID on images needs the images' value range; found None")
        feats = image_features(images, self.data_range, self.feature_extractor, self.batch_size)
        self.update_features(feats, real)

    def compute(self) -> torch.Tensor:
        for key, name in ((True, "real"), (False, "generated")):
            if key not in self._stats:
                raise InputError(f"FID.compute(): no {name} images yet; call update(..., real={key}) first")
        return _fid_compute(tuple(self._stats[True]), tuple(self._stats[False]))
