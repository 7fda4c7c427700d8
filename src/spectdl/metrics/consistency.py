"""Data consistency of an image with measured projections: the Poisson deviance after forward projection.

An image-domain enhancement (denoising, super-resolution, a GAN) never sees the projections, so
it can add structure the scan does not support: a hot spot, a sharper edge than the collimator
allows, a removed lesion. Image metrics against a reference cannot tell a real improvement from a
plausible invention; the measured counts can. Forward project the image with the system model
and ask how likely the measured counts are under it:

``D(y, ŷ) = 2 Σ_i [ y_i log(y_i / ŷ_i) − (y_i − ŷ_i) ]``,   ``ŷ = s·A x (+ a)``,

the Poisson deviance (McCullagh & Nelder, *Generalized Linear Models*, 2nd ed., §2.3), i.e.
twice the log-likelihood ratio between the saturated model (``ŷ = y``) and the image's model.
Terms with ``y_i = 0`` are ``2 ŷ_i`` (``y log y → 0``). Every term is ≥ 0 and only ``ŷ = y`` gives 0.
When ``y ~ Poisson(ŷ)`` and the counts per bin are large, each term is approximately χ²₁, so
``D / n_bins ≈ 1`` (``E[d] = 1 + 1/(6ŷ) + O(ŷ⁻²)``, 1.003 at 50 counts); near one count it is
about 1.15, and in nearly empty bins (``ŷ ≪ 1``, outside the body) it falls towards 0. An image
that invents structure raises ``D`` above that noise floor by an amount the counts decide.

``D`` compares models of *the same* measurement. It is not "lower is better": an OSEM image
fits part of the noise and sits below the floor that the noise-free truth reaches, while a
denoised image that is closer to the truth rises towards that floor. What flags invented
structure is a rise clearly beyond it, or beyond the deviance of the image the method started
from, and where over the views it happens (``per_view``).

Units: ``y`` and ``ŷ`` are counts; the deviance is dimensionless (log-likelihood units).
:func:`data_consistency` reports it *per measured count* (``D / Σ y``) so that scans of different
count levels can be put side by side; multiply by ``Σ y / n_bins`` for the deviance per bin.

Shapes follow spectdl: images ``[B, 1, *spatial]``, projections ``[B, 1, n_views, n_radial]``
(2-D) or ``[B, 1, n_views, n_radial, n_axial]`` (3-D). Everything is computed in float64.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from spectdl.errors import InputError
from spectdl.physics import SpectProjector

__all__ = ["DataConsistency", "data_consistency", "poisson_deviance"]

REDUCTIONS = ("per_count", "sum", "none")

# Expected counts are floored at this many counts inside the logarithm. A bin with y > 0 counts
# and ŷ ≈ 0 is then charged 2·(y·log(y/eps) − y), about 39 for a single count with eps = 1e-9
# (an observation of probability ~1e-9), instead of +inf: one dead bin of a model cannot turn a
# whole study's mean into inf, yet it still outweighs any honest misfit of a bin.
DEFAULT_EPS = 1e-9


def _tensor(name: str, t, *, what: str) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise InputError(f"{name}: expected a torch.Tensor of {what}, found {type(t).__name__}")
    if t.dtype == torch.bool or t.is_complex():
        raise InputError(f"{name}: expected real {what}, found dtype {t.dtype}")
    if t.numel() == 0:
        raise InputError(f"{name}: is empty (shape {tuple(t.shape)}); expected at least one bin")
    t = t.detach().to(torch.float64)
    if not bool(torch.isfinite(t).all()):
        n_bad = int((~torch.isfinite(t)).sum())
        raise InputError(f"{name}: contains {n_bad} NaN or infinite value(s); expected finite {what}")
    return t


def _non_negative(name: str, t: torch.Tensor, what: str) -> torch.Tensor:
    if bool((t < 0).any()):
        raise InputError(
            f"{name}: has {int((t < 0).sum())} negative value(s) (min {float(t.min()):.6g}); "
            f"expected {what} >= 0"
        )
    return t


def _check_eps(eps) -> float:
    try:
        value = float(eps)
    except (TypeError, ValueError):
        raise InputError(f"eps: expected a positive number of counts, found {eps!r}") from None
    if not (0 < value < float("inf")):
        raise InputError(f"eps: expected a finite value > 0 (counts), found {eps!r}")
    return value


def _deviance_terms(y: torch.Tensor, mu: torch.Tensor, eps: float) -> torch.Tensor:
    """Element-wise ``2 [y log(y/μ) − (y − μ)]`` in float64 (``y``, ``μ`` already checked)."""
    # The floor only enters the logarithm: a bin with y = 0 and ŷ = 0 is a perfect fit and must
    # add exactly 0, not 2·eps.
    terms = 2.0 * (torch.xlogy(y, y / mu.clamp_min(eps)) - (y - mu))
    # Each term is ≥ 0 exactly; rounding near y ≈ μ can leave −1e-16, which would let a sum of
    # many perfect bins go (very slightly) negative.
    return terms.clamp_min_(0.0)


def _per_view(terms: torch.Tensor) -> torch.Tensor:
    """``[B, C, V, ...]`` → ``[B, V]``: sum over channels and detector pixels."""
    dims = (1,) + tuple(range(3, terms.dim()))
    return terms.sum(dim=dims)


def poisson_deviance(
    measured: torch.Tensor,
    expected: torch.Tensor,
    *,
    reduction: str = "per_count",
    eps: float = DEFAULT_EPS,
) -> torch.Tensor:
    """Poisson deviance ``D = 2 Σ [ y log(y/ŷ) − (y − ŷ) ]`` of measured counts ``y`` against ``ŷ``.

    Args:
        measured: ``y``, counts ``[B, C, n_views, ...]`` (projections ``[B, C, angle, radial(,
            axial)]``), finite and ≥ 0. Integer dtypes are accepted; non-integer values (e.g.
            corrected data) are allowed and give the quasi-deviance of the same formula.
        expected: ``ŷ``, expected counts of the same shape, finite and ≥ 0.
        reduction: ``"per_count"`` → ``[B]``, ``D / Σ y`` per batch item (deviance per measured
            count; every item must have ``Σ y > 0``); ``"sum"`` → ``[B]``, ``D`` per item;
            ``"none"`` → ``[B, n_views]``, ``D`` of each view (summed over channels and detector
            pixels, not divided by the counts).
        eps: inside the logarithm, expected counts below ``eps`` are raised to ``eps``, so a bin
            with ``y > 0`` and ``ŷ = 0`` costs ``2 (y log(y/eps) − y)`` instead of ``+inf``
            (default 1e-9 counts: about 39 for one count). Bins with ``y = 0`` contribute ``2ŷ``
            exactly (0 when ``ŷ = 0`` too).

    Returns:
        float64 tensor, ``[B]`` or ``[B, n_views]`` (see ``reduction``), ≥ 0; 0 only when ``ŷ = y``.
    """
    if reduction not in REDUCTIONS:
        raise InputError(f"reduction: expected one of {REDUCTIONS}, found {reduction!r}")
    eps = _check_eps(eps)
    y = _non_negative("measured", _tensor("measured", measured, what="counts"), "counts")
    mu = _non_negative("expected", _tensor("expected", expected, what="expected counts"), "expected counts")
    if y.dim() < 3:
        raise InputError(
            f"measured: shape {tuple(y.shape)}; expected at least 3 dimensions [B, C, n_views, ...]"
        )
    if tuple(mu.shape) != tuple(y.shape):
        raise InputError(
            f"expected: shape {tuple(mu.shape)} differs from measured shape {tuple(y.shape)}; "
            "expected identical shapes"
        )
    mu = mu.to(y.device)
    per_view = _per_view(_deviance_terms(y, mu, eps))
    if reduction == "none":
        return per_view
    total = per_view.sum(1)
    if reduction == "sum":
        return total
    counts = y.reshape(y.shape[0], -1).sum(1)
    if bool((counts <= 0).any()):
        empty = [i for i, c in enumerate(counts.tolist()) if c <= 0]
        raise InputError(
            f"measured: batch item(s) {empty} hold no counts (Σ y = 0); reduction='per_count' needs "
            "Σ y > 0 (use reduction='sum')"
        )
    return total / counts


@dataclass(frozen=True)
class DataConsistency:
    """How well an image's forward projection explains the measured counts (float64, image's device).

    Attributes:
        deviance_per_count: ``[B]``, ``D / Σ y`` over all views (dimensionless per count).
        per_view: ``[B, n_views]``, ``D_v / Σ_v y`` of each view ``v``; a view with no counts is NaN.
            ``deviance_per_count`` is the count-weighted mean of these.
        residual_per_view: ``[B, n_views]``, ``(Σ_v y − Σ_v ŷ) / Σ_v y``, the relative count excess
            of the measurement over the model in each view (NaN for a view with no counts). With
            the fitted scale and no scatter these sum, weighted by ``Σ_v y``, to 0: the pattern
            over the views, not the level, is the information.
        scale: ``[B]``, the factor ``s`` in ``ŷ = s·A x (+ a)`` (counts per image unit).
        deviance: ``[B]``, the total deviance ``D``.
        counts: ``[B]``, the total measured counts ``Σ y``.
    """

    deviance_per_count: torch.Tensor
    per_view: torch.Tensor
    residual_per_view: torch.Tensor
    scale: torch.Tensor
    deviance: torch.Tensor
    counts: torch.Tensor


def _batch_scale(scale, batch: int, device) -> torch.Tensor:
    try:
        s = torch.as_tensor(scale, dtype=torch.float64, device=device).detach()
    except (TypeError, ValueError, RuntimeError):
        raise InputError(
            f"scale: expected a number or {batch} numbers (one per item), found {scale!r}"
        ) from None
    if s.dim() == 0:
        s = s.expand(batch)
    s = s.reshape(-1)
    if s.numel() != batch:
        raise InputError(f"scale: found {s.numel()} values; expected 1 or {batch} (one per batch item)")
    if not bool(torch.isfinite(s).all()) or bool((s <= 0).any()):
        raise InputError(f"scale: expected finite values > 0 (counts per image unit), found {s.tolist()}")
    return s.clone()


def data_consistency(
    image: torch.Tensor,
    projector: SpectProjector,
    measured: torch.Tensor,
    *,
    scale: float | torch.Tensor | None = None,
    additive: torch.Tensor | None = None,
    eps: float = DEFAULT_EPS,
) -> DataConsistency:
    """Forward project ``image`` and measure its Poisson deviance against the ``measured`` counts.

    The model of the measurement is ``ŷ = s·A x + a``, with ``A`` the projector (attenuation and
    collimator response as set up on it), ``x = image`` and ``a = additive`` (expected scatter
    counts, if any); see the module docstring for ``D``.

    Why the scale is fitted: enhanced images live in normalised units (each divided by its own
    mean, or calibrated so that the background is 1), so they carry no count scale. With
    ``scale=None`` each batch item gets ``s = (Σ y − Σ a) / Σ A x``: the total expected counts equal
    the total measured counts. Without ``additive`` this is exactly the maximum-likelihood scale
    of the Poisson model (``∂/∂s Σ [y log(s·Ax) − s·Ax] = 0``); with it, it is the moment estimate
    (the ML scale then has no closed form). One positive scalar per image only sets the level:
    it cannot move counts between views or detector pixels, so structure the data do not
    support (an invented hot spot, a lost lesion, wrong contrast) still raises ``D``. Because of
    the fit, ``data_consistency(c·x)`` equals ``data_consistency(x)`` for every ``c > 0``.

    Args:
        image: activity ``[B, 1, *projector.grid.shape]``, finite and ≥ 0 (clamp a network's small
            negative outputs before, deliberately). Any units when ``scale`` is fitted.
        projector: the system model of the acquisition (a :class:`SpectProjector`), with the
            patient's ``mu_map``.
        measured: counts ``[B, 1, n_views, n_radial(, n_axial)]`` as the projector produces them,
            finite and ≥ 0; integer dtypes are accepted.
        scale: counts per image unit, one number or ``[B]``, > 0; ``None`` fits it (above).
        additive: expected scatter (and randoms) counts, the shape of ``measured``, ≥ 0.
        eps: floor of ``ŷ`` in counts before the logarithm (see :func:`poisson_deviance`).

    Returns:
        :class:`DataConsistency` (float64 tensors on the image's device). Computed without
        autograd.
    """
    if not isinstance(image, torch.Tensor):
        raise InputError(f"image: expected a torch.Tensor [B, 1, *spatial], found {type(image).__name__}")
    if not all(hasattr(projector, name) for name in ("A", "grid", "projection_shape")):
        raise InputError(f"projector: expected a SpectProjector, found {type(projector).__name__}")
    grid_shape = tuple(projector.grid.shape)
    if image.dim() != len(grid_shape) + 2 or image.shape[1] != 1 or tuple(image.shape[2:]) != grid_shape:
        raise InputError(
            f"image: shape {tuple(image.shape)} does not match the projector's grid; expected "
            f"[B, 1, {', '.join(map(str, grid_shape))}]"
        )
    x = _tensor("image", image, what="activity values")
    if bool((x < 0).any()):
        raise InputError(
            f"image: has {int((x < 0).sum())} negative value(s) (min {float(x.min()):.6g}); expected "
            "activity >= 0 (clamp the enhanced image with .clamp_min(0) first if that is intended)"
        )
    batch = x.shape[0]
    expected_shape = tuple(projector.projection_shape(batch, 1))
    if not isinstance(measured, torch.Tensor):
        raise InputError(f"measured: expected a torch.Tensor of counts, found {type(measured).__name__}")
    if tuple(measured.shape) != expected_shape:
        raise InputError(
            f"measured: shape {tuple(measured.shape)} does not match the image and projector; expected "
            f"{list(expected_shape)} [B, 1, n_views, n_radial(, n_axial)]"
        )
    y = _non_negative("measured", _tensor("measured", measured, what="counts"), "counts").to(x.device)
    a = None
    if additive is not None:
        if not isinstance(additive, torch.Tensor):
            raise InputError(f"additive: expected a torch.Tensor or None, found {type(additive).__name__}")
        if tuple(additive.shape) != expected_shape:
            raise InputError(
                f"additive: shape {tuple(additive.shape)} differs from measured {list(expected_shape)}; "
                "expected the same shape"
            )
        a = _non_negative("additive", _tensor("additive", additive, what="scatter counts"), "scatter counts")
        a = a.to(x.device)

    eps = _check_eps(eps)
    counts = y.reshape(batch, -1).sum(1)
    if bool((counts <= 0).any()):
        empty = [i for i, c in enumerate(counts.tolist()) if c <= 0]
        raise InputError(f"measured: batch item(s) {empty} hold no counts (Σ y = 0); expected Σ y > 0")
    with torch.no_grad():
        ax = projector.A(x).to(torch.float64)
    ax_total = ax.reshape(batch, -1).sum(1)
    if scale is None:
        if bool((ax_total <= 0).any()):
            bad = [i for i, v in enumerate(ax_total.tolist()) if v <= 0]
            raise InputError(
                f"image: batch item(s) {bad} project to no counts (Σ A x = 0, empty or outside the "
                "field of view); the count scale cannot be fitted"
            )
        signal = counts - (a.reshape(batch, -1).sum(1) if a is not None else 0.0)
        if bool((signal <= 0).any()):
            bad = [i for i, v in enumerate(signal.tolist()) if v <= 0]
            raise InputError(
                f"measured: batch item(s) {bad} have Σ y − Σ additive <= 0 ({signal.tolist()}); "
                "expected more measured counts than scatter to fit the scale"
            )
        s = signal / ax_total
    else:
        s = _batch_scale(scale, batch, x.device)

    view_shape = (batch,) + (1,) * (ax.dim() - 1)
    mu = ax * s.reshape(view_shape)
    if a is not None:
        mu = mu + a
    dev_view = _per_view(_deviance_terms(y, mu, eps))
    y_view = _per_view(y)
    mu_view = _per_view(mu)
    nan = torch.tensor(float("nan"), dtype=torch.float64, device=x.device)
    has = y_view > 0
    safe = y_view.clamp_min(torch.finfo(torch.float64).tiny)
    per_view = torch.where(has, dev_view / safe, nan)
    residual = torch.where(has, (y_view - mu_view) / safe, nan)
    deviance = dev_view.sum(1)
    return DataConsistency(
        deviance_per_count=deviance / counts,
        per_view=per_view,
        residual_per_view=residual,
        scale=s,
        deviance=deviance,
        counts=counts,
    )
