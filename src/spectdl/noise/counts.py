"""From activity to expected counts: activity (MBq) × sensitivity (cps/MBq) × time per view (s)."""

from __future__ import annotations

import torch

from spectdl.errors import InputError
from spectdl.physics import SpectProjector


def expected_counts(
    activity: torch.Tensor,
    projector: SpectProjector,
    activity_mbq: float | torch.Tensor,
    sensitivity_cps_per_mbq: float,
    time_per_view_s: float,
) -> torch.Tensor:
    """Expected projection counts of an acquisition.

    ``ȳ = A (x / Σx) · a · S · t``: the activity distribution ``x [B, C, *grid]`` is normalised to
    a total of ``activity_mbq`` (scalar or ``[B]``), the projector spreads it over the views
    (it conserves counts per view without attenuation, so ``S`` is the planar sensitivity in air),
    and each view is acquired for ``time_per_view_s`` seconds.
    """
    for name, v in (("sensitivity_cps_per_mbq", sensitivity_cps_per_mbq), ("time_per_view_s", time_per_view_s)):
        if not float(v) > 0:
            raise InputError(f"{name}: expected a value > 0, found {v!r}")
    a = torch.as_tensor(activity_mbq, dtype=activity.dtype, device=activity.device)
    if bool((a < 0).any()):
        raise InputError(f"activity_mbq: expected >= 0, found {activity_mbq!r}")
    total = activity.reshape(activity.shape[0], -1).sum(1)
    if bool((total <= 0).any()):
        raise InputError("activity: a sample has no activity (sums to 0)")
    scale = (a * sensitivity_cps_per_mbq * time_per_view_s / total).reshape((-1,) + (1,) * (activity.dim() - 1))
    return projector.A(activity * scale)
