"""Poisson counting noise and count-level scaling."""

from __future__ import annotations

import torch

from spectdl.errors import InputError


def _check_expected(name: str, t: torch.Tensor) -> None:
    if not isinstance(t, torch.Tensor):
        raise InputError(f"{name}: expected a torch.Tensor, found {type(t).__name__}")
    if not torch.isfinite(t).all():
        raise InputError(f"{name}: contains NaN or infinite values; expected finite counts")
    if bool((t < 0).any()):
        raise InputError(f"{name}: has negative values (min {float(t.min()):.4g}); expected >= 0")


def poisson(expected: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Independent Poisson counts ``n ~ Poisson(expected)`` element-wise, same shape and dtype.

    ``generator`` makes the draw reproducible; it must live on ``expected``'s device.
    """
    _check_expected("expected", expected)
    return torch.poisson(expected, generator=generator)


def scale_to_counts(y: torch.Tensor, total_counts: float | torch.Tensor) -> torch.Tensor:
    """Scale each sample of ``y [B, ...]`` so that it sums to ``total_counts`` (scalar or ``[B]``)."""
    _check_expected("y", y)
    total = torch.as_tensor(total_counts, dtype=y.dtype, device=y.device)
    if bool((total < 0).any()):
        raise InputError(f"total_counts: expected >= 0, found {total_counts!r}")
    sums = y.reshape(y.shape[0], -1).sum(1)
    if bool((sums <= 0).any()):
        raise InputError("y: a sample sums to 0 and cannot be scaled to a count level")
    factor = (total / sums).reshape((-1,) + (1,) * (y.dim() - 1))
    return y * factor
