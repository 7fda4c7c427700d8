"""The one scorer of image metrics: named conventions, per-image scores and long-format case tables.

The studies, ``spectdl evaluate`` and training validation all score images here, so that a "PSNR"
or an "SSIM" means the same computation everywhere and every result records how it was computed.

A :class:`Convention` fixes what the reference-dependent constants are:

* PSNR (dB): ``PSNR = 10·log10(P² / MSE)``, ``MSE = mean((pred − target)²)``, with the peak ``P``
  = ``max(target)`` (``"reference_max"``), ``max(target) − min(target)`` (``"reference_range"``),
  a fixed ``data_range`` (``"data_range"``) or the maximum of the image scored, ``max(pred)``
  (``"prediction_max"``: what some papers' text states; it rewards a noisy image's high maximum);
* SSIM (unitless): scikit-image's ``structural_similarity(target, pred, data_range=L,
  gaussian_weights=True, sigma=1.5, use_sample_covariance=False)`` (Gaussian window σ = 1.5 voxels,
  11 taps, ``K1 = 0.01``, ``K2 = 0.03``), with ``L`` chosen from the same three options; or, with
  ``ssim_constants=(C1, C2)``, the same window with those absolute constants in place of
  ``(K1·L)², (K2·L)²`` (the myocardial perfusion paper's ``C1 = 0.01, C2 = 0.02``: for counts in the
  hundreds they barely stabilise, so the SSIM is that of the raw moments);
* NRMSE (unitless): ``RMSE / d`` with ``d`` the reference's Euclidean norm ``sqrt(mean(target²))``
  (default), its range or its mean.

RMSE and MAE are in the images' units and need no convention. Reference maxima and minima are taken
per image, over the voxels of the mask when one is given.

The formulas are those of :mod:`spectdl.metrics.functional` (:func:`~.psnr.psnr`,
:func:`~.ssim.ssim`, :func:`~.error.rmse`, :func:`~.error.mae`, :func:`~.error.nrmse`); this module
only chooses their arguments.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from types import MappingProxyType
from typing import Literal, Optional, Union

import torch

from spectdl.errors import InputError
from spectdl.metrics.functional._checks import check_mask, check_pair, masked_max, masked_min
from spectdl.metrics.functional.error import NORMALISATIONS, mae, nrmse, rmse
from spectdl.metrics.functional.psnr import psnr
from spectdl.metrics.functional.ssim import ssim

__all__ = [
    "CONVENTIONS",
    "KNOWN_METRICS",
    "METRICS",
    "Convention",
    "convention",
    "image_scores",
    "reference_peaks",
    "score_cases",
]

#: The metrics :func:`image_scores` computes by default, in order.
METRICS = ("psnr", "ssim", "rmse", "mae", "nrmse")
#: Every metric :func:`image_scores` knows: the defaults and ``mse`` (asked for by name).
KNOWN_METRICS = METRICS + ("mse",)

PSNR_PEAKS = ("reference_max", "data_range", "reference_range", "prediction_max")
SSIM_RANGES = ("reference_max", "reference_range", "data_range")

# scikit-image's SSIM of Wang et al. 2004: σ = 1.5 truncated at 3.5σ gives the 11-tap window.
SSIM_SIGMA = 1.5
SSIM_WIN_SIZE = 11
SSIM_K1 = 0.01
SSIM_K2 = 0.03

Tensor = torch.Tensor


@dataclass(frozen=True)
class Convention:
    """How the reference-dependent constants of PSNR, SSIM and NRMSE are chosen; see the module
    docstring for the equations.

    Attributes:
        name: recorded with every result (``"convention"`` column of :func:`score_cases`).
        psnr_peak: ``P`` of the PSNR: ``"reference_max"`` (max of the reference image),
            ``"reference_range"`` (its max − min) or ``"data_range"`` (the fixed ``data_range``).
        data_range: the fixed span, in the images' units; required by (and only allowed with) a
            ``"data_range"`` choice.
        ssim_data_range: ``L`` of the SSIM constants ``C1 = (K1·L)²``, ``C2 = (K2·L)²``, from the same
            three choices.
        nrmse_normalization: ``"euclidean"``, ``"min-max"`` or ``"mean"`` (see
            :func:`spectdl.metrics.functional.nrmse`).
        ssim_constants: absolute ``(C1, C2)`` of the SSIM, in the images' units squared, instead
            of ``(K1·L)², (K2·L)²``; ``ssim_data_range`` is then not used.
    """

    name: str
    psnr_peak: Literal["reference_max", "data_range", "reference_range", "prediction_max"] = "reference_max"
    data_range: Optional[float] = None
    ssim_data_range: Literal["reference_max", "reference_range", "data_range"] = "reference_max"
    nrmse_normalization: Literal["euclidean", "min-max", "mean"] = "euclidean"
    ssim_constants: Optional[tuple[float, float]] = None

    def __post_init__(self) -> None:
        if self.ssim_constants is not None:
            try:
                c = tuple(float(v) for v in self.ssim_constants)
            except (TypeError, ValueError):
                c = ()
            if len(c) != 2 or not all(math.isfinite(v) and v > 0 for v in c):
                raise InputError(f"Convention.ssim_constants: expected two finite numbers > 0 (C1, C2), "
                                 f"found {self.ssim_constants!r}")
            object.__setattr__(self, "ssim_constants", c)
        if not isinstance(self.name, str) or not self.name:
            raise InputError(f"Convention.name: expected a non-empty string, found {self.name!r}")
        if self.psnr_peak not in PSNR_PEAKS:
            raise InputError(f"Convention.psnr_peak: expected one of {PSNR_PEAKS}, found {self.psnr_peak!r}")
        if self.ssim_data_range not in SSIM_RANGES:
            raise InputError(
                f"Convention.ssim_data_range: expected one of {SSIM_RANGES}, found {self.ssim_data_range!r}"
            )
        if self.nrmse_normalization not in NORMALISATIONS:
            raise InputError(
                f"Convention.nrmse_normalization: expected one of {NORMALISATIONS}, "
                f"found {self.nrmse_normalization!r}"
            )
        uses_fixed = "data_range" in (self.psnr_peak, self.ssim_data_range)
        if uses_fixed:
            try:
                v = float(self.data_range)
            except (TypeError, ValueError):
                v = math.nan
            if not (v > 0 and math.isfinite(v)):
                raise InputError(
                    f"Convention.data_range: expected a finite number > 0 for a 'data_range' peak, "
                    f"found {self.data_range!r}"
                )
            object.__setattr__(self, "data_range", v)
        elif self.data_range is not None:
            # A span that nothing uses would be recorded as if it mattered.
            raise InputError(
                f"Convention.data_range: found {self.data_range!r} but neither psnr_peak nor "
                "ssim_data_range is 'data_range'; expected None"
            )

    @classmethod
    def fixed(cls, data_range: float) -> "Convention":
        """PSNR peak and SSIM ``L`` both equal to ``data_range`` (scikit-image's explicit
        ``data_range``); named ``"data_range=<v>"``."""
        try:
            v = float(data_range)
        except (TypeError, ValueError):
            raise InputError(f"data_range: expected a finite number > 0, found {data_range!r}") from None
        return cls(name=f"data_range={v!r}", psnr_peak="data_range", data_range=v, ssim_data_range="data_range")

    def to_dict(self) -> dict:
        """The fields as a plain dict (JSON-ready)."""
        return asdict(self)


#: The named conventions. ``"reference_max"``: the bone SPECT paper's (PSNR peak and SSIM ``L`` =
#: reference maximum); ``"reference_range"``: the reference's max − min for both (spectdl's
#: training validation); ``"reference_max_c0.01_0.02"``: the reference maximum for the PSNR and the
#: absolute SSIM constants C1 = 0.01, C2 = 0.02 that the myocardial perfusion paper states;
#: ``"prediction_max"``: the PSNR peak taken from the image scored (the same paper's text). A fixed
#: span is :meth:`Convention.fixed`.
CONVENTIONS: Mapping[str, Convention] = MappingProxyType({
    "reference_max": Convention("reference_max", psnr_peak="reference_max", ssim_data_range="reference_max"),
    "reference_range": Convention("reference_range", psnr_peak="reference_range",
                                  ssim_data_range="reference_range"),
    "reference_max_c0.01_0.02": Convention("reference_max_c0.01_0.02", psnr_peak="reference_max",
                                           ssim_constants=(0.01, 0.02)),
    "prediction_max": Convention("prediction_max", psnr_peak="prediction_max", ssim_data_range="reference_max"),
})


def convention(name_or_obj: Union[str, Convention]) -> Convention:
    """The :class:`Convention` for a registry name, a ``"data_range=<v>"`` name (as
    :meth:`Convention.fixed` writes them), or a Convention (returned as is).

    Raises:
        InputError: naming the value and the known names.
    """
    if isinstance(name_or_obj, Convention):
        return name_or_obj
    if isinstance(name_or_obj, str):
        if name_or_obj in CONVENTIONS:
            return CONVENTIONS[name_or_obj]
        if name_or_obj.startswith("data_range="):
            try:
                return Convention.fixed(float(name_or_obj.split("=", 1)[1]))
            except (ValueError, InputError):
                pass
    raise InputError(
        f"convention: unknown convention {name_or_obj!r}; expected one of {sorted(CONVENTIONS)}, "
        "'data_range=<v>' or a Convention"
    )


# The public functions take a ``convention=`` argument, which hides the function of that name.
_resolve = convention


def _check_metrics(metrics) -> tuple[str, ...]:
    if isinstance(metrics, str):
        metrics = (metrics,)
    try:
        names = tuple(dict.fromkeys(metrics))
    except TypeError:
        raise InputError(f"metrics: expected a sequence of names from {METRICS}, found {metrics!r}") from None
    unknown = [m for m in names if m not in KNOWN_METRICS]
    if unknown or not names:
        raise InputError(f"metrics: unknown metric(s) {unknown or list(names)}; expected names from {KNOWN_METRICS}")
    return names


def _span(choice: str, target: Tensor, mask: Optional[Tensor], fixed: Optional[float],
          pred: Optional[Tensor] = None) -> Tensor:
    if choice == "prediction_max":
        if pred is None:
            raise InputError("convention: the peak 'prediction_max' is taken from the image scored; it has no "
                             "reference-only value")
        return masked_max(pred, mask)
    if choice == "data_range":
        return torch.full((target.shape[0],), fixed, dtype=target.dtype, device=target.device)
    top = masked_max(target, mask)
    if choice == "reference_max":
        return top
    return top - masked_min(target, mask)


def _prepare(pred, target, mask) -> tuple[Tensor, Tensor, Optional[Tensor]]:
    pred, target = check_pair(pred, target)
    if pred.device.type == "mps":
        # float64 is not available on Apple GPUs; the scores are cheap enough on the CPU.
        pred, target = pred.cpu(), target.cpu()
    pred, target = pred.to(torch.float64), target.to(torch.float64)
    m = None if mask is None else check_mask(mask, pred)
    return pred, target, m


def reference_peaks(
    target: Tensor,
    convention: Union[str, Convention] = "reference_max",
    *,
    mask: Optional[Tensor] = None,
) -> dict[str, Tensor]:
    """The per-image PSNR peak ``P`` and SSIM span ``L`` that ``convention`` takes from ``target``.

    Args:
        target: the references, ``[B, C, *spatial]`` (2-D or 3-D).
        convention: a name of :data:`CONVENTIONS`, ``"data_range=<v>"`` or a :class:`Convention`.
        mask: optional region; maxima and minima are taken over its voxels.

    Returns:
        ``{"psnr": [B], "ssim": [B]}`` in float64, in the images' units; not checked for
        positivity (a flat reference gives a zero range), so that callers can tell which images a
        PSNR or SSIM can be computed for.
    """
    conv = _resolve(convention)
    target, _, m = _prepare(target, target, mask)
    return {
        "psnr": _span(conv.psnr_peak, target, m, conv.data_range),
        "ssim": _span(conv.ssim_data_range, target, m, conv.data_range),
    }


def _check_peak(metric: str, choice: str, values: Tensor, conv: Convention) -> None:
    bad = [i for i, v in enumerate(values.tolist()) if not v > 0]
    if bad:
        what = {"reference_max": "reference maximum", "reference_range": "reference max − min",
                "prediction_max": "maximum of the prediction"}[choice]
        raise InputError(
            f"target: the {what} is {[values.tolist()[i] for i in bad]} for batch item(s) {bad} "
            f"under convention {conv.name!r}; expected > 0 for {metric.upper()} (a flat or non-positive "
            "reference needs a fixed span, e.g. Convention.fixed(1.0))"
        )


def image_scores(
    pred: Tensor,
    target: Tensor,
    *,
    metrics: Sequence[str] = METRICS,
    convention: Union[str, Convention] = "reference_max",
    mask: Optional[Tensor] = None,
    skip_small: bool = False,
) -> dict[str, Tensor]:
    """Per-image metrics of ``pred`` against the reference ``target``.

    Args:
        pred, target: ``[B, C, *spatial]`` with 2 or 3 spatial dims, same shape, finite.
        metrics: names from :data:`KNOWN_METRICS` (``psnr`` in dB, ``ssim``, ``nrmse`` unitless,
            ``rmse`` and ``mae`` in the images' units, ``mse`` in their square); a single name is
            accepted.
        convention: a name of :data:`CONVENTIONS`, ``"data_range=<v>"`` or a :class:`Convention`.
        mask: optional region of interest (``[*spatial]``, ``[B, 1, *spatial]`` or the image
            shape; non-zero inside). PSNR, RMSE, MAE and NRMSE use the voxels of the region; SSIM is
            computed on the whole image and its map averaged over the region (after the 5-voxel
            border crop); reference maxima and minima are taken over the region.
        skip_small: drop ``ssim`` from the result when a spatial size is below its 11-voxel window,
            instead of raising.

    Returns:
        ``{metric: [B] float64 tensor}`` in the order of ``metrics``, on ``pred``'s device (the CPU
        for MPS tensors). Identical images give a PSNR of ``+inf``.

    Raises:
        InputError: for mismatched shapes, an unknown metric or convention, an image too small for
            SSIM (without ``skip_small``), a non-positive PSNR peak or SSIM span, or an empty mask.
    """
    names = _check_metrics(metrics)
    conv = _resolve(convention)
    pred, target, m = _prepare(pred, target, mask)
    if "ssim" in names and min(pred.shape[2:]) < SSIM_WIN_SIZE:
        if not skip_small:
            raise InputError(
                f"pred: spatial shape {tuple(pred.shape[2:])} is too small for SSIM's {SSIM_WIN_SIZE}-voxel "
                f"window; expected every spatial size >= {SSIM_WIN_SIZE} (or pass skip_small=True)"
            )
        names = tuple(n for n in names if n != "ssim")
    out: dict[str, Tensor] = {}
    for name in names:
        if name == "psnr":
            peak = _span(conv.psnr_peak, target, m, conv.data_range, pred)
            _check_peak("psnr", conv.psnr_peak, peak, conv)
            out[name] = psnr(pred, target, data_range=peak, mask=m, reduction="none")
        elif name == "ssim":
            if conv.ssim_constants is not None:
                # (k·L)² with L = 1 and k = √C is the absolute constant C.
                c1, c2 = conv.ssim_constants
                out[name] = ssim(pred, target, 1.0, mask=m, gaussian_sigma=SSIM_SIGMA, win_size=SSIM_WIN_SIZE,
                                 k1=math.sqrt(c1), k2=math.sqrt(c2), reduction="none")
                continue
            span = _span(conv.ssim_data_range, target, m, conv.data_range)
            _check_peak("ssim", conv.ssim_data_range, span, conv)
            out[name] = ssim(pred, target, span, mask=m, gaussian_sigma=SSIM_SIGMA, win_size=SSIM_WIN_SIZE,
                             k1=SSIM_K1, k2=SSIM_K2, reduction="none")
        elif name == "rmse":
            out[name] = rmse(pred, target, mask=m, reduction="none")
        elif name == "mae":
            out[name] = mae(pred, target, mask=m, reduction="none")
        elif name == "mse":
            out[name] = rmse(pred, target, mask=m, reduction="none").to(torch.float64).square()
        else:
            out[name] = nrmse(pred, target, normalization=conv.nrmse_normalization, mask=m, reduction="none")
    return out


def _as_batch(case: str, what: str, x, spatial_dims: Optional[int]) -> Tensor:
    """``[*spatial]``, ``[C, *spatial]`` or ``[1, C, *spatial]`` → ``[1, C, *spatial]``."""
    if not isinstance(x, torch.Tensor):
        raise InputError(f"case {case}: {what} is a {type(x).__name__}; expected a torch.Tensor")
    n = x.dim()
    if spatial_dims is None:
        # A bare 3-D tensor is read as a volume: SPECT cases are [X, Y, Z] far more often than [C, H, W].
        spatial_dims = 2 if n == 2 else 3
    if spatial_dims not in (2, 3):
        raise InputError(f"spatial_dims: expected 2, 3 or None, found {spatial_dims!r}")
    if n == spatial_dims:
        return x[None, None]
    if n == spatial_dims + 1:
        return x[None]
    if n == spatial_dims + 2 and x.shape[0] == 1:
        return x
    raise InputError(
        f"case {case}: {what} has shape {tuple(x.shape)}; expected [*spatial], [C, *spatial] or "
        f"[1, C, *spatial] with {spatial_dims} spatial dims"
    )


def _missing(name: str, keys, expected) -> list[str]:
    keys = set(keys)
    return [f"{name} lacks case(s) {[k for k in expected if k not in keys]}"] if not set(expected) <= keys else []


def _region_masks(masks, cases: list) -> dict[Optional[str], Optional[Mapping]]:
    if masks is None:
        return {None: None}
    if not isinstance(masks, Mapping):
        raise InputError(f"masks: expected None or a mapping, found {type(masks).__name__}")
    kinds = {isinstance(v, Mapping) for v in masks.values()}
    if kinds == {True}:
        regions = dict(masks)
    elif kinds == {False}:
        regions = {None: masks}
    else:
        raise InputError(
            "masks: expected either case_id → mask or region → (case_id → mask), found a mix of both"
        )
    if not regions:
        raise InputError("masks: is empty; expected None, case_id → mask or region → (case_id → mask)")
    problems = [p for r, per_case in regions.items()
                for p in _missing("masks" if r is None else f"masks[{r!r}]", per_case, cases)]
    if problems:
        raise InputError("; ".join(problems))
    return regions


def score_cases(
    predictions: Mapping[str, Tensor],
    references: Mapping[str, Tensor],
    *,
    metrics: Sequence[str] = METRICS,
    convention: Union[str, Convention] = "reference_max",
    masks: Optional[Mapping] = None,
    method: Optional[str] = None,
    spatial_dims: Optional[int] = None,
) -> list[dict]:
    """Score each case's prediction against its reference; one row per case, region and metric.

    Args:
        predictions, references: case_id → image, with the same case ids. An image is
            ``[*spatial]``, ``[C, *spatial]`` or ``[1, C, *spatial]`` and is scored as the batch
            ``[1, C, *spatial]``. With ``spatial_dims=None`` a 2-dim tensor is ``[H, W]``, 3 dims
            ``[X, Y, Z]``, 4 dims ``[C, X, Y, Z]`` and 5 dims ``[1, C, X, Y, Z]``; pass
            ``spatial_dims=2`` for ``[C, H, W]`` and ``[1, C, H, W]``.
        metrics, convention: as in :func:`image_scores`.
        masks: ``None``; case_id → mask (``[*spatial]`` or ``[C, *spatial]``); or region name →
            (case_id → mask) to score several regions. Every case needs a mask.
        method: when given, recorded in every row (e.g. ``"prediction"``, ``"input"``).

    Returns:
        Long-format rows ``{"case", "method" (if given), "metric", "value" (float), "region" (with
        named regions), "convention": name}``, cases in the order of ``predictions``, then regions,
        then metrics; metric names are lower case (``psnr``, ``ssim``, ``rmse``, ``mae``,
        ``nrmse``).

    Raises:
        InputError: for differing case ids (listing the missing ones), a shape mismatch (naming the
            case and both shapes), and every error of :func:`image_scores`, prefixed by the case.
    """
    names = _check_metrics(metrics)
    conv = _resolve(convention)
    for what, value in (("predictions", predictions), ("references", references)):
        if not isinstance(value, Mapping):
            raise InputError(f"{what}: expected a mapping case_id → tensor, found {type(value).__name__}")
    cases = list(predictions)
    problems = _missing("predictions", predictions, list(references)) + _missing("references", references, cases)
    if problems:
        raise InputError("; ".join(problems))
    regions = _region_masks(masks, cases)
    rows: list[dict] = []
    for case in cases:
        pred = _as_batch(case, "prediction", predictions[case], spatial_dims)
        ref = _as_batch(case, "reference", references[case], spatial_dims)
        if pred.shape != ref.shape:
            raise InputError(
                f"case {case}: prediction shape {tuple(predictions[case].shape)} differs from reference "
                f"shape {tuple(references[case].shape)}; expected identical shapes"
            )
        for region, per_case in regions.items():
            mask = None
            if per_case is not None:
                mask = per_case[case]
                if isinstance(mask, torch.Tensor) and mask.dim() == pred.dim() - 1:
                    mask = mask[None]
            try:
                scores = image_scores(pred, ref, metrics=names, convention=conv, mask=mask)
            except InputError as exc:
                where = f"case {case}" + ("" if region is None else f", region {region!r}")
                raise InputError(f"{where}: {exc}") from None
            for metric, value in scores.items():
                row: dict = {"case": case}
                if method is not None:
                    row["method"] = method
                row["metric"] = metric
                row["value"] = float(value[0])
                if region is not None:
                    row["region"] = region
                row["convention"] = conv.name
                rows.append(row)
    return rows
