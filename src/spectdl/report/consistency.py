"""Figure of the data-consistency check: Poisson deviance per view of each method's forward projection.

The values come from :func:`spectdl.metrics.consistency.data_consistency`: for each method (an
OSEM reconstruction, its enhanced versions, the truth of a simulation) ``per_view[b]`` is
``D_v / Σ_v y``, the Poisson deviance per measured count of view ``v``, and ``residual_per_view[b]``
is ``(Σ_v y − Σ_v ŷ) / Σ_v y``. A method that invents structure shows up as a curve above the
others, often only over the views in which the invented structure is seen best.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from spectdl.errors import InputError
from spectdl.report.png import _figure, _squeezed, _to_numpy, save_png

__all__ = ["residual_per_view_figure"]


def _view_values(values: Any, arg: str, n_views: int | None) -> np.ndarray:
    """A 1-D float array (``[n_views]`` or ``[1, n_views]``); NaN is allowed (a view without counts)."""
    arr = _squeezed(values, arg, 1, "a 1-D array of per-view values")
    if arr.ndim != 1:
        raise InputError(
            f"{arg}: expected one value per view, shape [n_views] or [1, n_views]; found {arr.shape}"
        )
    if arr.size == 0:
        raise InputError(f"{arg}: is empty; expected one value per view")
    if n_views is not None and arr.size != n_views:
        raise InputError(f"{arg}: has {arr.size} values; expected {n_views} (one per angle in angles_deg)")
    if np.isinf(arr).any():
        raise InputError(
            f"{arg}: contains {int(np.isinf(arr).sum())} infinite value(s); expected finite values "
            "(NaN marks a view without counts)"
        )
    if np.isnan(arr).all():
        raise InputError(f"{arg}: every value is NaN; expected at least one finite value")
    return arr


def residual_per_view_figure(
    per_view: Mapping[str, Any],
    angles_deg: Any,
    path: str | os.PathLike,
    *,
    residuals: Mapping[str, Any] | None = None,
    title: str | None = None,
    overwrite: bool = False,
    dpi: int = 100,
) -> Path:
    """Plot the deviance per count of each view against the view angle, one line per method, as a PNG.

    Args:
        per_view: method name → ``[n_views]`` deviance per measured count of each view
            (``DataConsistency.per_view[b]``; ``[1, n_views]`` is accepted). NaN (a view without
            counts) leaves a gap.
        angles_deg: ``[n_views]`` detector angles in degrees (``orbit.angles_deg``); they are drawn
            modulo 360 and in increasing order, so clockwise orbits read the same way.
        path: the ``.png`` file to write (atomically, through :func:`spectdl.report.save_png`).
        residuals: optional method name → ``[n_views]`` relative count residual
            ``(Σ y − Σ ŷ) / Σ y`` per view (``DataConsistency.residual_per_view[b]``); adds a second
            panel, in percent. Its names must be among those of ``per_view``.
        title: figure title.
        overwrite: replace an existing file (otherwise ``InputError``).
        dpi: resolution of the PNG.

    Returns:
        The path written.
    """
    if not isinstance(per_view, Mapping) or not per_view:
        raise InputError("per_view: expected a non-empty mapping method name -> per-view deviance per count")
    angles = _to_numpy(angles_deg) if angles_deg is not None else None
    if angles is None or angles.ndim != 1 or angles.size == 0:
        shape = None if angles is None else angles.shape
        raise InputError(
            f"angles_deg: expected a 1-D sequence of view angles in degrees, found shape {shape}"
        )
    if not np.isfinite(angles).all():
        raise InputError(f"angles_deg: contains {int((~np.isfinite(angles)).sum())} NaN or infinite angle(s)")
    n_views = angles.size
    curves = {str(k): _view_values(v, f"per_view[{k!r}]", n_views) for k, v in per_view.items()}
    res_curves: dict[str, np.ndarray] = {}
    if residuals is not None:
        if not isinstance(residuals, Mapping) or not residuals:
            raise InputError(
                "residuals: expected a non-empty mapping method name -> per-view residual, or None"
            )
        unknown = [str(k) for k in residuals if str(k) not in curves]
        if unknown:
            raise InputError(
                f"residuals: methods {unknown} are not in per_view; expected names among {list(curves)}"
            )
        res_curves = {str(k): _view_values(v, f"residuals[{k!r}]", n_views) for k, v in residuals.items()}

    # Wrapped and sorted, so a line never jumps back across the plot at the 360° seam.
    wrapped = np.mod(angles, 360.0)
    order = np.argsort(wrapped, kind="stable")
    x = wrapped[order]

    n_panels = 2 if res_curves else 1
    fig = _figure(6.4, 2.9 * n_panels + 0.4, dpi)
    axes = fig.subplots(n_panels, 1, sharex=True, squeeze=False)[:, 0]
    # keyed by name, so a method keeps its colour in the residual panel, where it may be absent
    colours = {name: f"C{i % 10}" for i, name in enumerate(curves)}
    ax = axes[0]
    for name, v in curves.items():
        ax.plot(x, v[order], marker="o", markersize=2.5, linewidth=1.3, color=colours[name], label=name)
    ax.set_ylabel("deviance per count")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    if res_curves:
        ax2 = axes[1]
        ax2.axhline(0.0, color="0.4", linewidth=0.8)
        for name, v in res_curves.items():
            ax2.plot(x, 100.0 * v[order], marker="o", markersize=2.5, linewidth=1.3, color=colours[name],
                     label=name)
        ax2.set_ylabel("(Σy − Σŷ) / Σy (%)")
        ax2.grid(True, alpha=0.3)
    axes[-1].set_xlabel("view angle (degrees)")
    if x[-1] - x[0] > 180.0:  # a full orbit: show the whole circle, not the range of the views
        axes[-1].set_xlim(0.0, 360.0)
    if title:
        fig.suptitle(title)
    return save_png(fig, path, overwrite=overwrite, dpi=dpi)
