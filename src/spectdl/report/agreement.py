"""Agreement figures: per-case values of several methods against one reference, with least-squares
lines (e.g. IMBV of each network against iterative-Yang PVC, a cardiac PVC paper's Figures 8–9).

The points and the fits come from ``metrics.csv`` alone, so a figure can be redrawn from the saved
run; the fit is :func:`spectdl.stats.linear_fit` (``y = a·x + b`` by ordinary least squares), the
same one the studies record as ``fit_slope``, ``fit_intercept`` and ``fit_r2`` rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from spectdl.errors import InputError
from spectdl.report.png import _figure, save_png
from spectdl.stats import linear_fit

__all__ = ["linear_fit_figures", "linear_fit_plot"]


def linear_fit_plot(x: np.ndarray, ys: Mapping[str, np.ndarray], *, title: str | None = None,
                    xlabel: str = "reference", ylabel: str = "method", size_in: tuple[float, float] = (5.5, 4.6),
                    dpi: int = 100):
    """Scatter of each ``ys[label]`` (``[n]``) against ``x`` (``[n]``, the same cases in the same
    order), one least-squares line per series (legend: ``y = a·x + b, R²``) and the identity line.
    A series whose fit is undefined (fewer than 3 points, constant values) is drawn without a line."""
    x = np.asarray(x, dtype=float)
    if x.ndim != 1 or x.size == 0:
        raise InputError(f"x: expected a non-empty 1-D array, found shape {x.shape}")
    fig = _figure(*size_in, dpi)
    ax = fig.add_subplot()
    lo, hi = float(np.min(x)), float(np.max(x))
    for i, (label, y) in enumerate(ys.items()):
        y = np.asarray(y, dtype=float)
        if y.shape != x.shape:
            raise InputError(f"ys[{label!r}]: shape {y.shape}; expected x's {x.shape}")
        colour = f"C{i % 10}"
        lo, hi = min(lo, float(np.min(y))), max(hi, float(np.max(y)))
        try:
            fit = linear_fit(x=x, y=y)
        except InputError:
            ax.scatter(x, y, s=18, color=colour, alpha=0.8, edgecolors="none", label=f"{label} (no fit)")
            continue
        ax.scatter(x, y, s=18, color=colour, alpha=0.8, edgecolors="none",
                   label=f"{label}: y = {fit.slope:.2f}x {'+' if fit.intercept >= 0 else '−'} "
                         f"{abs(fit.intercept):.3f}, R² = {fit.r_squared:.2f}")
        xs = np.array([float(np.min(x)), float(np.max(x))])
        ax.plot(xs, fit.slope * xs + fit.intercept, "-", color=colour, linewidth=1.2)
    ax.plot([lo, hi], [lo, hi], ":", color="0.4", linewidth=1.0, label="identity")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    if title:
        ax.set_title(title, fontsize=9)
    return fig


def per_case_table(df, metric: str, where: Mapping[str, Any] | None = None):
    """The per-case rows of ``metric`` in metrics rows ``df`` as a ``[case, method]`` table of values.

    ``where`` selects rows by other columns (``{"region": "high"}``); a value matches a cell equal to
    it, or whose text is its text (metrics.csv read back gives strings or numbers for the same field,
    so ``3`` matches ``"3"`` and ``"3"`` matches ``3``). A ``where`` column absent from ``df`` selects
    nothing away. The ``"all"`` rows (summaries over the cases) are left out.
    """
    sel = df[(df["case"] != "all") & (df["metric"] == metric)]
    for k, v in (where or {}).items():
        if k in sel.columns:
            col = sel[k]
            sel = sel[(col == v) | (col.astype(str) == str(v))]
    return sel.pivot_table(index="case", columns="method", values="value")


def linear_fit_figures(df, summary: Mapping[str, Any], fig_dir: Path) -> list[tuple[str, Path]]:
    """The figures of ``summary["linear_fits"]``: each ``{name, title, metric, x, y: [methods], where}``
    plots the per-case ``metric`` of every method of ``y`` against method ``x``'s (cases paired by id,
    rows selected by the ``where`` columns), as ``fig_dir/fit_<name>.png``. Returns ``[(caption, path)]``,
    the caption being ``title`` and the number of cases."""
    out = []
    for spec in summary.get("linear_fits") or []:
        wide = per_case_table(df, spec["metric"], spec.get("where"))
        ys = [m for m in spec.get("y") or [] if m in wide.columns and m != spec["x"]]
        if spec["x"] not in wide.columns or not ys:
            continue
        pair = wide[[spec["x"], *ys]].dropna()
        if len(pair) < 2:
            continue
        metric = str(spec["metric"]).upper()
        # the long title is the caption; the figure carries a short one that fits its width
        fig = linear_fit_plot(pair[spec["x"]].to_numpy(), {m: pair[m].to_numpy() for m in ys},
                              title=f"{metric} against {spec['x']}", xlabel=f"{spec['x']} ({metric})",
                              ylabel=f"method ({metric})")
        name = "".join(ch if ch.isalnum() or ch in "_-" else "_" for ch in str(spec.get("name", "fit")))
        caption = f"{spec.get('title', name)} ({len(pair)} cases)"
        out.append((caption, save_png(fig, Path(fig_dir) / f"fit_{name}.png", overwrite=True)))
    return out
