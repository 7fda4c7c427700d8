"""Image figures for study reports: image grids with a shared window and line profiles.

Drawn headless on ``matplotlib.figure.Figure`` objects (Agg canvas, see :mod:`spectdl.report.png`);
each function returns the Figure, and :func:`spectdl.report.save_png` writes it. The statistical
plots are in :mod:`spectdl.report.plots`.

Image convention: 2-D arrays are indexed ``[x, y]`` like the rest of spectdl and are drawn with
x to the right and y upwards (``layout="xy"``); pass ``layout="rc"`` for arrays already in
row/column display order (e.g. straight from a DICOM pixel array).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from spectdl.errors import InputError
from spectdl.report.png import _figure, _image, _to_numpy
from spectdl.stats.tables import as_vector

__all__ = ["image_grid", "line_profiles", "profile_through"]

_LAYOUTS = ("xy", "rc")


def _show(ax, img: np.ndarray, layout: str, **kwargs):
    if layout == "xy":
        return ax.imshow(img.T, origin="lower", interpolation="nearest", **kwargs)
    return ax.imshow(img, origin="upper", interpolation="nearest", **kwargs)


def image_grid(
    images: Sequence[Any] | Mapping[str, Any],
    titles: Sequence[str] | None = None,
    *,
    vmin: float | None = None,
    vmax: float | None = None,
    cmap: str = "gray",
    difference: tuple[int, int] | Any | None = None,
    difference_title: str | None = None,
    difference_cmap: str = "RdBu_r",
    ncols: int | None = None,
    layout: str = "xy",
    colorbar_label: str | None = None,
    suptitle: str | None = None,
    panel_size_in: float = 2.6,
    dpi: int = 100,
):
    """Images side by side in one shared window with one colour bar, plus an optional difference panel.

    Args:
        images: 2-D arrays or tensors (``[X, Y]`` or ``[1, 1, X, Y]``), or a mapping title -> image.
        titles: one per image (ignored when ``images`` is a mapping).
        vmin, vmax: the shared display window; default the min and max over all images.
        difference: ``(i, j)`` adds a panel ``images[i] - images[j]`` (e.g. enhanced - reference),
            or give the difference image itself. It gets its own colour map and colour bar,
            symmetric about 0 (limits ``± max |difference|``).
        ncols: panels per row (default: all in one row).
        layout: ``"xy"`` (spectdl order, y up) or ``"rc"`` (rows down, as stored).
    """
    if isinstance(images, Mapping):
        titles = [str(k) for k in images.keys()]
        images = list(images.values())
    if isinstance(images, (np.ndarray, torch.Tensor)) or not isinstance(images, Sequence) or len(images) == 0:
        raise InputError("images: expected a non-empty list of 2-D images (or a mapping title -> image)")
    if layout not in _LAYOUTS:
        raise InputError(f"layout: expected one of {_LAYOUTS}, found {layout!r}")
    imgs = [_image(im, f"images[{i}]") for i, im in enumerate(images)]
    if titles is not None and len(titles) != len(imgs):
        raise InputError(f"titles: expected {len(imgs)} titles (one per image), found {len(titles)}")
    titles = list(titles) if titles is not None else [""] * len(imgs)

    diff = None
    if difference is not None:
        is_pair = isinstance(difference, tuple) and len(difference) == 2
        if is_pair and all(isinstance(v, numbers.Integral) for v in difference):
            i, j = (int(v) for v in difference)
            if not (-len(imgs) <= i < len(imgs) and -len(imgs) <= j < len(imgs)):
                raise InputError(f"difference: indices {difference} out of range for {len(imgs)} images")
            if imgs[i].shape != imgs[j].shape:
                raise InputError(
                    f"difference: images {i} and {j} differ in shape, {imgs[i].shape} and {imgs[j].shape}"
                )
            diff = imgs[i] - imgs[j]
            default_title = f"{titles[i]} − {titles[j]}" if titles[i] and titles[j] else "difference"
        else:
            diff = _image(difference, "difference")
            default_title = "difference"
        diff_title = difference_title if difference_title is not None else default_title

    lo = min(float(im.min()) for im in imgs) if vmin is None else float(vmin)
    hi = max(float(im.max()) for im in imgs) if vmax is None else float(vmax)
    if vmin is not None and vmax is not None and not vmax > vmin:
        raise InputError(f"vmin, vmax: expected vmin < vmax, found {vmin} and {vmax}")
    if not hi > lo:
        hi = lo + 1.0  # a constant image still needs a non-empty window
    n_panels = len(imgs) + (diff is not None)
    ncols = n_panels if ncols is None else int(ncols)
    if ncols < 1:
        raise InputError(f"ncols: expected a positive number of columns, found {ncols}")
    nrows = math.ceil(n_panels / ncols)
    # room on the right of each row for the colour bars
    fig = _figure(panel_size_in * ncols + 0.9 * (1 + (diff is not None)), panel_size_in * nrows + 0.4, dpi)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    mappable = None
    for ax, im, title in zip(axes, imgs, titles):
        mappable = _show(ax, im, layout, cmap=cmap, vmin=lo, vmax=hi)
        ax.set_title(title, fontsize=9)
        ax.set_axis_off()
    cbar = fig.colorbar(mappable, ax=list(axes[: len(imgs)]), shrink=0.85)
    if colorbar_label:
        cbar.set_label(colorbar_label)
    if diff is not None:
        ax = axes[len(imgs)]
        lim = float(np.abs(diff).max()) or 1.0
        dm = _show(ax, diff, layout, cmap=difference_cmap, vmin=-lim, vmax=lim)
        ax.set_title(diff_title, fontsize=9)
        ax.set_axis_off()
        fig.colorbar(dm, ax=ax, shrink=0.85)
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    if suptitle:
        fig.suptitle(suptitle)
    return fig


def profile_through(image: Any, *, x: int | None = None, y: int | None = None) -> np.ndarray:
    """The 1-D profile of a ``[X, Y]`` image along y at column ``x``, or along x at row ``y``."""
    img = _image(image, "image")
    if (x is None) == (y is None):
        raise InputError(f"x, y: give exactly one of them, found x={x!r}, y={y!r}")
    if x is not None:
        if not -img.shape[0] <= x < img.shape[0]:
            raise InputError(f"x: index {x} out of range for an image of {img.shape[0]} columns")
        return img[x, :].copy()
    if not -img.shape[1] <= y < img.shape[1]:
        raise InputError(f"y: index {y} out of range for an image of {img.shape[1]} rows")
    return img[:, y].copy()


def line_profiles(
    profiles: Mapping[str, Any],
    *,
    positions_mm: Any = None,
    xlabel: str | None = None,
    ylabel: str = "value",
    title: str | None = None,
    size_in: tuple[float, float] = (5.0, 3.5),
    dpi: int = 100,
):
    """Line profiles (label -> 1-D values) on one set of axes.

    ``positions_mm`` (one position per sample, shared by all profiles) sets the x axis; otherwise
    the x axis is the sample index. See :func:`profile_through` to cut a profile from an image.
    """
    if not isinstance(profiles, Mapping) or not profiles:
        raise InputError("profiles: expected a non-empty mapping label -> 1-D profile")
    curves = {str(k): as_vector(_to_numpy(v), f"profiles[{k!r}]") for k, v in profiles.items()}
    pos = None
    if positions_mm is not None:
        pos = as_vector(_to_numpy(positions_mm), "positions_mm")
        bad = {k: v.size for k, v in curves.items() if v.size != pos.size}
        if bad:
            raise InputError(f"positions_mm: {pos.size} positions, but profiles have lengths {bad}")
    fig = _figure(*size_in, dpi)
    ax = fig.add_subplot()
    for label, v in curves.items():
        ax.plot(pos if pos is not None else np.arange(v.size), v, label=label, linewidth=1.4)
    ax.set_xlabel(xlabel or ("position (mm)" if pos is not None else "sample"))
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    return fig
