"""Accumulating metric classes: ``update`` with batches, ``compute`` the dataset value, ``reset``.

A class keeps summed statistics only (sums and counts in float64, on the device of the first
batch), so its result does not depend on how the data were split into batches.
"""

from __future__ import annotations

import torch

from spectdl.errors import InputError

__all__ = ["Metric", "PerImageMean"]


class Metric:
    """Base class: subclasses implement ``reset``, ``update`` and ``compute``."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def update(self, *args, **kwargs) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def compute(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def _empty_error(self) -> InputError:
        return InputError(f"{type(self).__name__}.compute(): no data yet; call update() with at least one "
                          "batch first")


class PerImageMean(Metric):
    """Mean over all images seen of a per-image value ``[B]`` (e.g. PSNR per image, averaged).

    Subclasses define ``_values(pred, target, mask) -> [B]``. ``compute()`` returns a float64
    scalar tensor: ``Σ values / number of images``.
    """

    def reset(self) -> None:
        self._total: torch.Tensor | None = None
        self._count = 0

    def _values(self, pred, target, mask) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def update(self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        """Add a batch ``[B, C, *spatial]`` (and an optional mask) to the running statistics."""
        values = self._values(pred, target, mask).detach().to(torch.float64)
        batch_sum = values.sum()
        self._total = batch_sum if self._total is None else self._total + batch_sum.to(self._total.device)
        self._count += values.numel()

    def compute(self) -> torch.Tensor:
        if self._count == 0:
            raise self._empty_error()
        return self._total / self._count
