"""Figures for study reports, drawn headless on ``matplotlib.figure.Figure`` objects (Agg canvas).

Nothing here touches pyplot or its global state, so figures can be made from worker threads and
test processes without a display. Each function returns the Figure; :func:`save_png` writes it.

Image convention: 2-D arrays are indexed ``[x, y]`` like the rest of spectdl and are drawn with
x to the right and y upwards (``layout="xy"``); pass ``layout="rc"`` for arrays already in
row/column display order (e.g. straight from a DICOM pixel array).
"""

from __future__ import annotations

import math
import numbers
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spectdl.errors import InputError, require
from spectdl.io.atomic import _umask
from spectdl.stats import BlandAltmanResult, RocResult, bland_altman, paired_test
from spectdl.stats._data import as_vector, column, column_names, is_table

_LAYOUTS = ("xy", "rc")


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


def _image(x: Any, arg: str) -> np.ndarray:
    """A finite 2-D float array; leading singleton axes (``[1, 1, X, Y]``) are dropped."""
    try:
        arr = _to_numpy(x)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{arg}: could not be read as a 2-D image ({exc})") from exc
    while arr.ndim > 2 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2:
        raise InputError(f"{arg}: expected a 2-D image (or [1, 1, X, Y]), found shape {arr.shape}")
    if arr.size == 0:
        raise InputError(f"{arg}: the image is empty (shape {arr.shape})")
    if not np.isfinite(arr).all():
        raise InputError(f"{arg}: contains {int((~np.isfinite(arr)).sum())} NaN or infinite pixel(s)")
    return arr


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


def bland_altman_plot(
    data: Any = None,
    a: Any = None,
    b: Any = None,
    *,
    result: BlandAltmanResult | None = None,
    k: float = 1.96,
    ci_method: str = "exact",
    relative: bool = False,
    show_ci: bool = True,
    title: str | None = None,
    xlabel: str | None = None,
    ylabel: str | None = None,
    size_in: tuple[float, float] = (5.5, 4.0),
    dpi: int = 100,
):
    """Bland-Altman plot: differences against means, with bias, limits of agreement and their intervals.

    Give a result of :func:`spectdl.stats.bland_altman` (``result=``, or as the first argument), or
    the data in any form that function accepts (``bland_altman_plot(df, a="x", b="y")``).
    """
    if isinstance(data, BlandAltmanResult):
        result, data = data, None
    if result is None:
        result = bland_altman(data, a, b, k=k, ci_method=ci_method, relative=relative)
    r = result
    fig = _figure(*size_in, dpi)
    ax = fig.add_subplot()
    ax.scatter(r.means, r.differences, s=18, color="tab:blue", alpha=0.8, edgecolors="none")
    lines = (
        ("bias", r.bias, r.bias_ci, "-", "tab:red"),
        (f"−{r.k:g} SD", r.loa_low, r.loa_low_ci, "--", "tab:gray"),
        (f"+{r.k:g} SD", r.loa_high, r.loa_high_ci, "--", "tab:gray"),
    )
    for name, value, ci, style, colour in lines:
        ax.axhline(value, linestyle=style, color=colour, linewidth=1.2)
        if show_ci:
            ax.axhspan(ci[0], ci[1], color=colour, alpha=0.12, linewidth=0)
        ax.annotate(
            f"{name} {value:.3g}", xy=(1.0, value), xycoords=("axes fraction", "data"),
            xytext=(-3, 3), textcoords="offset points", ha="right", fontsize=8, color=colour,
        )
    unit = " (%)" if r.relative else ""
    ax.set_xlabel(xlabel or f"mean of {r.label_a} and {r.label_b}")
    ax.set_ylabel(ylabel or f"{r.label_a} − {r.label_b}{unit}")
    ax.grid(True, alpha=0.3)
    if title:
        ax.set_title(title)
    return fig


def _format_p(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def metric_boxplot(
    data: Any,
    columns: Sequence[str] | None = None,
    *,
    labels: Sequence[str] | None = None,
    test: str = "wilcoxon",
    pairs: Sequence[tuple[int | str, int | str]] | None = None,
    show_cases: bool = True,
    ylabel: str | None = None,
    title: str | None = None,
    size_in: tuple[float, float] | None = None,
    dpi: int = 100,
):
    """Box plots of per-case metrics (one box per column), with paired-test p-values as brackets.

    Args:
        data: a table of per-case metrics, one row per case.
        columns: the columns to show (default: every column of ``data``).
        test: ``"wilcoxon"`` or ``"t"`` (:func:`spectdl.stats.paired_test`); ``None`` for no tests.
        pairs: the pairs to test, as column indices or names; default every column against the
            first (e.g. each method against the input).
        show_cases: draw each case as a point, joined across columns by a faint line.
    """
    if not is_table(data):
        raise InputError(f"data: expected a table of per-case metrics, found {type(data).__name__}")
    cols = list(columns) if columns is not None else column_names(data)
    if not cols:
        raise InputError("columns: expected at least one column name")
    values = [as_vector(column(data, c, "columns"), f"columns ({c!r})") for c in cols]
    names = [str(c) for c in cols] if labels is None else [str(v) for v in labels]
    if len(names) != len(cols):
        raise InputError(f"labels: expected {len(cols)} labels, found {len(names)}")

    def index(p: int | str) -> int:
        if isinstance(p, str):
            if p not in cols:
                raise InputError(f"pairs: column {p!r} is not among the plotted columns {cols}")
            return cols.index(p)
        if not -len(cols) <= p < len(cols):
            raise InputError(f"pairs: index {p} out of range for {len(cols)} columns")
        return p % len(cols)

    if pairs is None:
        todo = [(0, j) for j in range(1, len(cols))]
    else:
        todo = [(index(i), index(j)) for i, j in pairs]
    if test is None:
        todo = []
    tested = [(i, j, paired_test(values[i], values[j], test=test).p_value) for i, j in todo]

    fig = _figure(*(size_in or (1.0 + 1.1 * len(cols), 4.0)), dpi)
    ax = fig.add_subplot()
    pos = np.arange(1, len(cols) + 1)
    ax.boxplot(values, positions=pos, widths=0.5, showfliers=not show_cases)
    ax.set_xticks(pos)
    ax.set_xticklabels(names, rotation=20 if max(len(n) for n in names) > 8 else 0)
    if show_cases and len({v.size for v in values}) == 1:
        stacked = np.vstack(values)
        ax.plot(pos, stacked, color="tab:gray", alpha=0.25, linewidth=0.7)
        ax.plot(np.repeat(pos[:, None], stacked.shape[1], axis=1), stacked, "o", color="tab:blue",
                markersize=3, alpha=0.6)
    elif show_cases:
        for p, v in zip(pos, values):
            ax.plot(np.full(v.size, p), v, "o", color="tab:blue", markersize=3, alpha=0.6)

    top = max(float(v.max()) for v in values)
    span = (top - min(float(v.min()) for v in values)) or 1.0
    step = 0.08 * span
    for level, (i, j, p) in enumerate(tested):
        y = top + step * (level + 0.6)
        xi, xj = pos[i], pos[j]
        ax.plot([xi, xi, xj, xj], [y - 0.25 * step, y, y, y - 0.25 * step], color="black", linewidth=0.9)
        ax.text((xi + xj) / 2.0, y, _format_p(p), ha="center", va="bottom", fontsize=8)
    if tested:
        ax.set_ylim(top=top + step * (len(tested) + 1.2))
    if ylabel:
        ax.set_ylabel(ylabel)
    ax.grid(True, axis="y", alpha=0.3)
    name = {"wilcoxon": "Wilcoxon signed-rank", "t": "paired t"}.get(test or "", test)
    ax.set_title(title if title is not None else (f"{name} tests" if tested else ""), fontsize=10)
    return fig


def roc_plot(
    results: RocResult | Mapping[str, RocResult],
    *,
    title: str | None = None,
    size_in: tuple[float, float] = (4.8, 4.5),
    dpi: int = 100,
):
    """ROC curves of one or several :class:`spectdl.stats.RocResult` (label -> result), with the AUC
    and its interval in the legend."""
    if isinstance(results, RocResult):
        results = {"": results}
    if not isinstance(results, Mapping) or not results:
        raise InputError("results: expected a RocResult or a non-empty mapping label -> RocResult")
    for k, v in results.items():
        if not isinstance(v, RocResult):
            raise InputError(f"results[{k!r}]: expected a RocResult, found {type(v).__name__}")
    fig = _figure(*size_in, dpi)
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], linestyle=":", color="tab:gray", linewidth=1)
    for label, r in results.items():
        pct = round(100 * r.confidence_level)
        text = f"AUC {r.auc:.3f} ({pct}% CI {r.ci_low:.3f}–{r.ci_high:.3f})"
        ax.step(r.fpr, r.tpr, where="post", linewidth=1.6, label=f"{label}: {text}" if label else text)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_aspect("equal")
    ax.set_xlabel("1 − specificity")
    ax.set_ylabel("sensitivity")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize=7)
    if title:
        ax.set_title(title)
    return fig


def sphere_table(
    data: Any,
    *,
    diameter: str = "diameter_mm",
    method: str | None = "method",
    values: Sequence[str] = ("suv_max", "suv_mean", "crc"),
    decimals: int = 2,
    plot: str | None = None,
    title: str | None = None,
    dpi: int = 100,
):
    """A NEMA IEC sphere table: one row per sphere diameter, columns ``values`` for each method.

    Args:
        data: a long DataFrame (or mapping of columns) with one row per (sphere, method).
        diameter: column of sphere diameters (mm).
        method: column naming the method; ``None`` (or absent from a one-method table) for one method.
        values: columns to tabulate, e.g. SUVmax, SUVmean and contrast recovery.
        plot: optionally one of ``values`` (e.g. ``"crc"``) to plot against diameter beside the table.
    """
    pd = require("pandas", "eval")
    if not is_table(data):
        raise InputError(f"data: expected a DataFrame with one row per sphere, found {type(data).__name__}")
    df = data if isinstance(data, pd.DataFrame) else pd.DataFrame({k: np.asarray(v) for k, v in data.items()})
    if df.empty:
        raise InputError("data: the table has no rows")
    wanted = [diameter, *values] + ([method] if method is not None else [])
    missing = [c for c in wanted if c not in df.columns]
    if missing:
        raise InputError(
            f"data: missing column(s) {missing}; available columns: {[str(c) for c in df.columns]}"
        )
    if not values:
        raise InputError("values: expected at least one column to tabulate")
    if plot is not None and plot not in values:
        raise InputError(f"plot: expected one of {list(values)}, found {plot!r}")
    for c in [diameter, *values]:
        as_vector(df[c], f"data[{c!r}]")
    methods = list(dict.fromkeys(df[method].astype(str))) if method is not None else [""]
    key = [diameter] + ([method] if method is not None else [])
    if df.duplicated(key).any():
        raise InputError(
            f"data: more than one row for some ({', '.join(key)}); one row per sphere and method"
        )

    diameters = sorted(float(d) for d in df[diameter].unique())
    header = ["diameter (mm)"]
    cells = [[f"{d:g}"] for d in diameters]
    for m in methods:
        sub = df if method is None else df[df[method].astype(str) == m]
        by_d = {float(d): row for d, row in zip(sub[diameter], sub.itertuples(index=False))}
        for v in values:
            header.append(f"{m}\n{v}" if m else v)
            idx = list(sub.columns).index(v)
            for r, d in enumerate(diameters):
                row = by_d.get(d)
                cells[r].append("–" if row is None else f"{float(row[idx]):.{int(decimals)}f}")

    ncol = len(header)
    table_w = 0.6 + 0.95 * ncol
    plot_w = 3.8 if plot is not None else 0.0
    fig = _figure(table_w + plot_w, 0.9 + 0.3 * (len(diameters) + 2), dpi)
    if plot is not None:
        gs = fig.add_gridspec(1, 2, width_ratios=[table_w, plot_w])
        ax_t, ax_p = fig.add_subplot(gs[0]), fig.add_subplot(gs[1])
    else:
        ax_t, ax_p = fig.add_subplot(), None
    ax_t.axis("off")
    tab = ax_t.table(cellText=cells, colLabels=header, loc="center", cellLoc="center")
    tab.auto_set_font_size(False)
    tab.set_fontsize(8)
    tab.scale(1.0, 1.5)
    for (row, _), cell in tab.get_celld().items():
        if row == 0:
            cell.set_height(cell.get_height() * 1.6)
            cell.set_facecolor("#dde4ee")
    if ax_p is not None:
        for m in methods:
            sub = (df if method is None else df[df[method].astype(str) == m]).sort_values(diameter)
            ax_p.plot(sub[diameter].to_numpy(float), sub[plot].to_numpy(float), "o-", label=m or plot)
        ax_p.set_xlabel("sphere diameter (mm)")
        ax_p.set_ylabel(plot)
        ax_p.grid(True, alpha=0.3)
        if method is not None:
            ax_p.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    return fig


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
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fig.savefig(fh, format="png", dpi=dpi if dpi is not None else fig.dpi)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's files are private; a figure is not
        if overwrite:
            os.replace(tmp, out)
        else:
            try:
                # a hard link fails if the name appeared meanwhile, so nothing is ever clobbered
                os.link(tmp, out)
            except FileExistsError:
                raise InputError(f"path: {str(out)!r} appeared while writing; not overwritten") from None
            except OSError:
                # file systems without hard links: accept the small race of check-then-rename
                if out.exists():
                    raise InputError(f"path: {str(out)!r} already exists; pass overwrite=True") from None
                os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out
