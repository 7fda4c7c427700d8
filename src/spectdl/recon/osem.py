"""Ordered-subsets expectation maximisation (Hudson & Larkin 1994); ML-EM is the one-subset case.

For subset ``S`` of the views, with measured counts ``y``, additive term ``s`` (scatter) and
system matrix ``A`` (attenuation and collimator response included through the projector):

    x ← x / (A_Sᵀ 1) · A_Sᵀ [ y_S / (A_S x + s_S) ]

Each sub-iteration keeps ``x ≥ 0`` and, for one subset, never decreases the Poisson likelihood.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from spectdl.errors import InputError
from spectdl.physics import SpectProjector
from spectdl.physics.projector import as_float_input


_as_float = as_float_input


def _as_int(value, name: str) -> int:
    """An integer (Python, numpy or a 0-d integer tensor); floats such as ``2.7`` or ``2.0`` and bools are refused."""
    if isinstance(value, torch.Tensor) and value.dim() == 0 and not (
        value.dtype.is_floating_point or value.dtype.is_complex or value.dtype == torch.bool
    ):
        return int(value)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InputError(f"{name}: expected an integer, found {value!r} ({type(value).__name__})")
    return int(value)


def subsets(n_angles: int, n_subsets: int) -> list[list[int]]:
    """Interleaved subsets: subset ``k`` holds views ``k, k + n_subsets, …``."""
    n_subsets = _as_int(n_subsets, "n_subsets")
    if not 1 <= n_subsets <= n_angles:
        raise InputError(f"n_subsets: expected 1..{n_angles} (the number of views), found {n_subsets}")
    return [list(range(k, n_angles, n_subsets)) for k in range(n_subsets)]


def poisson_nll(y: torch.Tensor, ybar: torch.Tensor) -> torch.Tensor:
    """Poisson negative log-likelihood per sample, without the ``log y!`` constant: ``Σ ȳ − y log ȳ``."""
    eps = torch.finfo(ybar.dtype).tiny
    terms = ybar - torch.where(y > 0, y * torch.log(ybar.clamp_min(eps)), torch.zeros_like(y))
    return terms.reshape(y.shape[0], -1).sum(1)


def osem(
    y: torch.Tensor,
    projector: SpectProjector,
    n_iters: int,
    n_subsets: int,
    additive: torch.Tensor | None = None,
    x0: torch.Tensor | None = None,
    callback: Callable[[int, torch.Tensor], object] | None = None,
) -> torch.Tensor:
    """OSEM reconstruction.

    Args:
        y: measured counts ``[B, C, n_angles, n_radial(, n_axial)]``, non-negative.
        projector: the system model; its ``mu_map`` and collimator are used.
        n_iters: full passes over all subsets.
        n_subsets: number of interleaved subsets (1 gives ML-EM).
        additive: expected scatter (and randoms) counts, same shape as ``y``, or ``None``.
        x0: start image ``[B, C, *grid]`` (> 0 where activity may be); uniform ones by default.
        callback: called as ``callback(iteration, x)`` after each full iteration (1-based), so a
            study can keep, for example, the iterate with the lowest error.

    Returns:
        The non-negative image ``[B, C, *grid]`` after ``n_iters`` iterations, float32 for integer
        (count) ``y`` and in ``y``'s dtype for float32/float64 ``y``.

    Raises:
        InputError: ``y`` of dtype float16/bfloat16/bool/complex, an empty batch, non-integer
            ``n_iters``/``n_subsets``, or a shape mismatch.
    """
    if not isinstance(y, torch.Tensor):
        raise InputError(f"y: expected a torch.Tensor, found {type(y).__name__}")
    y = _as_float(y, "y")
    expected = projector.projection_shape(y.shape[0], y.shape[1] if y.dim() > 1 else 1)
    if tuple(y.shape) != expected:
        raise InputError(f"y: shape {tuple(y.shape)} does not match the projector; expected {expected}")
    if y.shape[0] == 0 or y.shape[1] == 0:
        raise InputError(f"y: shape {tuple(y.shape)} has an empty batch or channel axis; expected B >= 1 and C >= 1")
    if not torch.isfinite(y).all() or bool((y < 0).any()):
        raise InputError("y: measured counts must be finite and >= 0")
    n_iters = _as_int(n_iters, "n_iters")
    n_subsets = _as_int(n_subsets, "n_subsets")
    if n_iters < 1:
        raise InputError(f"n_iters: expected >= 1, found {n_iters}")
    if additive is not None:
        if not isinstance(additive, torch.Tensor):
            raise InputError(f"additive: expected a torch.Tensor or None, found {type(additive).__name__}")
        additive = _as_float(additive, "additive").to(y.dtype)
        if tuple(additive.shape) != tuple(y.shape):
            raise InputError(f"additive: shape {tuple(additive.shape)} differs from y {tuple(y.shape)}")
        if not torch.isfinite(additive).all() or bool((additive < 0).any()):
            raise InputError("additive: the scatter estimate must be finite and >= 0")
    b, c = y.shape[:2]
    shape = (b, c) + projector.grid.shape
    if x0 is None:
        x = torch.ones(shape, dtype=y.dtype, device=y.device)
    else:
        if not isinstance(x0, torch.Tensor):
            raise InputError(f"x0: expected a torch.Tensor or None, found {type(x0).__name__}")
        x0 = _as_float(x0, "x0").to(y.dtype)
        if tuple(x0.shape) != shape:
            raise InputError(f"x0: shape {tuple(x0.shape)}; expected {shape}")
        if bool((x0 < 0).any()):
            raise InputError("x0: start image must be >= 0")
        x = x0.clone()
    parts = subsets(projector.n_angles, n_subsets)
    views_dim = 2
    sens = []
    for idx in parts:
        ones = torch.ones(projector.projection_shape(b, c, len(idx)), dtype=y.dtype, device=y.device)
        sens.append(projector.A_adjoint(ones, idx))
    with torch.no_grad():
        for it in range(1, n_iters + 1):
            for idx, s in zip(parts, sens):
                sel = torch.as_tensor(idx, device=y.device)
                y_s = y.index_select(views_dim, sel)
                ybar = projector.A(x, idx)
                if additive is not None:
                    ybar = ybar + additive.index_select(views_dim, sel)
                ratio = torch.where(ybar > 0, y_s / ybar.clamp_min(torch.finfo(y.dtype).tiny), torch.zeros_like(y_s))
                back = projector.A_adjoint(ratio, idx)
                x = torch.where(s > 0, x * back / s.clamp_min(torch.finfo(y.dtype).tiny), torch.zeros_like(x))
            if callback is not None:
                callback(it, x)
    return x


def mlem(
    y: torch.Tensor,
    projector: SpectProjector,
    n_iters: int,
    additive: torch.Tensor | None = None,
    x0: torch.Tensor | None = None,
    callback: Callable[[int, torch.Tensor], object] | None = None,
) -> torch.Tensor:
    """ML-EM: :func:`osem` with one subset."""
    return osem(y, projector, n_iters, 1, additive=additive, x0=x0, callback=callback)
