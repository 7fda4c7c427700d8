"""IMBV loss: keep the myocardium-to-blood-pool ratio of the prediction equal to the target's."""

from __future__ import annotations

from typing import Mapping

from spectdl.errors import InputError
from spectdl.losses._base import Loss, check_pair, optional_mask, require_context
from spectdl.metrics.functional import imbv


class IMBVLoss(Loss):
    """``ℓ = mean_b |IMBV(pred_b) − IMBV(target_b)|``, differentiable in ``pred``.

    ``IMBV = mean(x over myocardium) / mean(x over LV blood pool)`` per image, computed by
    :func:`spectdl.metrics.functional.imbv` (so training optimises the very number the
    evaluation reports); it is unitless, so the loss is too. The masks come from the context
    keyword ``masks={"myocardium": M_myo, "blood_pool": M_bp}`` (key names configurable), each
    binary (non-zero = inside) with the image's shape, ``[B, 1, *spatial]`` or ``[*spatial]``.

    With ``mask_key`` (see :mod:`spectdl.losses._base`) both organ masks are intersected with that
    mask ``M`` (e.g. a field of view): only organ voxels inside ``M`` count.

    Raises ``InputError`` for an empty mask, or when a blood-pool mean is exactly 0 (the ratio
    is undefined there).
    """

    def __init__(self, myocardium_key: str = "myocardium", blood_pool_key: str = "blood_pool",
                 mask_key: str | None = None):
        super().__init__()
        self.myocardium_key = myocardium_key
        self.blood_pool_key = blood_pool_key
        self.mask_key = mask_key

    def _loss(self, pred, target, **context):
        check_pair(pred, target)
        masks = require_context(context, "masks", "IMBVLoss")
        if not isinstance(masks, Mapping):
            raise InputError(f"masks: expected a dict of organ masks, found {type(masks).__name__}")
        missing = [k for k in (self.myocardium_key, self.blood_pool_key) if k not in masks]
        if missing:
            raise InputError(f"masks: missing key(s) {missing}; found keys {sorted(masks)}")
        myo, bp = masks[self.myocardium_key], masks[self.blood_pool_key]
        fov = optional_mask(context, self.mask_key, target, "IMBVLoss")
        if fov is not None:
            myo, bp = myo * fov, bp * fov  # broadcasts a [*spatial] organ mask too
        diff = imbv(pred, myo, bp) - imbv(target, myo, bp)
        return diff.abs().mean(), {}
