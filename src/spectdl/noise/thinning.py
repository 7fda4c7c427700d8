"""Binomial thinning: the exact statistical model of a shorter scan or a list-mode subsample.

If ``N ~ Poisson(λ)`` and each count is kept independently with probability ``f``, the kept counts
are ``Binomial(N, f)`` and, marginally, exactly ``Poisson(f·λ)`` (the thinning theorem). The thinned
image is also paired with the full one, count by count, as a real reduced-time frame would be.
"""

from __future__ import annotations

import torch

from spectdl.errors import InputError


def thin(counts: torch.Tensor, fraction: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Keep each of the integer ``counts`` with probability ``fraction`` (0 ≤ fraction ≤ 1).

    Args:
        counts: non-negative integer counts (any shape, integer or float dtype holding integers).
        fraction: kept fraction, e.g. ``1/7`` for a seven-times shorter scan.
        generator: source of randomness (on ``counts``' device).

    Returns:
        ``Binomial(counts, fraction)`` samples, same shape and dtype as ``counts``; never larger
        than ``counts``.
    """
    if not isinstance(counts, torch.Tensor):
        raise InputError(f"counts: expected a torch.Tensor, found {type(counts).__name__}")
    f = float(fraction)
    if not 0.0 <= f <= 1.0:
        raise InputError(f"fraction: expected a value in [0, 1], found {fraction!r}")
    work = counts.to(torch.float64) if not counts.is_floating_point() else counts
    if not torch.isfinite(work).all():
        raise InputError("counts: contains NaN or infinite values; expected integer counts")
    if bool((work < 0).any()):
        raise InputError(f"counts: has negative values (min {float(work.min()):.4g}); expected integer counts >= 0")
    if bool((work != torch.round(work)).any()):
        bad = work[work != torch.round(work)].flatten()[0]
        raise InputError(
            f"counts: contains non-integer value {float(bad):.6g}; binomial thinning needs integer "
            f"counts (draw them with spectdl.noise.poisson first)"
        )
    prob = torch.full_like(work, f)
    kept = torch.binomial(work, prob, generator=generator)
    return kept.to(counts.dtype)


def split_gates(counts: torch.Tensor, weights, generator: torch.Generator | None = None) -> torch.Tensor:
    """Split integer ``counts`` into gates (e.g. the 8 ECG gates of a gated acquisition).

    Each count falls in gate ``k`` with probability ``p_k = w_k / Σw``: the gates are
    ``Multinomial(counts, p)``, drawn as successive binomial thinnings of what is left,
    ``n_k ~ Binomial(counts − Σ_{j<k} n_j, p_k / Σ_{j≥k} p_j)``. They sum to ``counts`` exactly, and
    for ``counts ~ Poisson(λ)`` they are independent ``Poisson(p_k·λ)`` (the thinning theorem).

    Args:
        counts: non-negative integer counts, any shape (see :func:`thin`).
        weights: ``G`` non-negative gate weights (e.g. ``[1] * 8`` for equal gates), not all zero.
        generator: source of randomness.

    Returns:
        ``[G, *counts.shape]``, the dtype of ``counts``.
    """
    try:
        w = [float(v) for v in weights]
    except (TypeError, ValueError):
        raise InputError(f"weights: expected a sequence of numbers, found {weights!r}") from None
    if not w or any(not (v >= 0 and v < float("inf")) for v in w) or sum(w) <= 0:
        raise InputError(f"weights: expected finite weights >= 0, not all 0, found {weights!r}")
    if len(w) == 1:
        return thin(counts, 1.0, generator)[None]  # checks the counts as the other branch does
    left, gates, remaining = counts, [], sum(w)
    for k, v in enumerate(w):
        if k == len(w) - 1:
            gates.append(left)
            break
        n = thin(left, min(1.0, v / remaining) if remaining > 0 else 0.0, generator)
        gates.append(n)
        left = left - n
        remaining -= v
    return torch.stack(gates)
