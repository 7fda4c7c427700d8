"""Headless matplotlib figures and their PNG files.

:func:`save_png` writes a figure atomically. The private helpers here are shared by every figure
module of :mod:`spectdl.report`: ``_figure`` makes a ``matplotlib.figure.Figure`` on an Agg canvas
(never pyplot or its global state, so figures can be made from worker threads and test processes
without a display), ``_to_numpy`` and ``_image`` read arrays and tensors as float64 arrays.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spectdl.errors import InputError, require
from spectdl.io.atomic import atomic_write

__all__ = ["save_png"]


def _figure(width_in: float, height_in: float, dpi: int):
    mfig = require("matplotlib.figure", "eval")
    agg = require("matplotlib.backends.backend_agg", "eval")
    if not (width_in > 0 and height_in > 0 and dpi > 0):
        raise InputError(
            f"size: expected positive width, height (inches) and dpi, found {width_in}, {height_in}, {dpi}"
        )
    fig = mfig.Figure(figsize=(width_in, height_in), dpi=dpi, layout="constrained")
    agg.FigureCanvasAgg(fig)
    return fig


def _to_numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().to(torch.float64).numpy()
    return np.asarray(x, dtype=np.float64)


def _squeezed(x: Any, arg: str, ndim: int, what: str) -> np.ndarray:
    """``x`` as a float64 array with leading singleton axes dropped down to ``ndim`` axes; an
    argument that is not array-like is an InputError saying it is not ``what``."""
    try:
        arr = _to_numpy(x)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{arg}: could not be read as {what} ({exc})") from exc
    while arr.ndim > ndim and arr.shape[0] == 1:
        arr = arr[0]
    return arr


def _image(x: Any, arg: str) -> np.ndarray:
    """A finite 2-D float array; leading singleton axes (``[1, 1, X, Y]``) are dropped."""
    arr = _squeezed(x, arg, 2, "a 2-D image")
    if arr.ndim != 2:
        raise InputError(f"{arg}: expected a 2-D image (or [1, 1, X, Y]), found shape {arr.shape}")
    if arr.size == 0:
        raise InputError(f"{arg}: the image is empty (shape {arr.shape})")
    if not np.isfinite(arr).all():
        raise InputError(f"{arg}: contains {int((~np.isfinite(arr)).sum())} NaN or infinite pixel(s)")
    return arr


def save_png(fig, path: str | os.PathLike, *, overwrite: bool = False, dpi: int | None = None) -> Path:
    """Write ``fig`` as a PNG at ``path`` atomically: a temporary file in the same folder, then a rename.

    An existing file is left untouched (``InputError``) unless ``overwrite=True``. Returns the path.
    """
    out = Path(path)
    if out.suffix.lower() != ".png":
        raise InputError(f"path: expected a file name ending in .png, found {str(out)!r}")
    if not out.parent.is_dir():
        raise InputError(f"path: the folder {str(out.parent)!r} does not exist")
    if out.exists() and not overwrite:
        raise InputError(f"path: {str(out)!r} already exists; pass overwrite=True to replace it")
    # dpi is resolved now: savefig's own default is matplotlib's rcParams, not the figure's dpi.
    resolution = dpi if dpi is not None else fig.dpi
    atomic_write(out, lambda tmp: fig.savefig(tmp, format="png", dpi=resolution), overwrite=overwrite)
    return out
