"""Statistical plots for study reports: box plots with paired tests, Bland–Altman, ROC curves and
the NEMA sphere table.

Drawn headless on ``matplotlib.figure.Figure`` objects (Agg canvas, see :mod:`spectdl.report.png`);
each function returns the Figure, and :func:`spectdl.report.save_png` writes it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from spectdl.errors import InputError, require
from spectdl.report.png import _figure
from spectdl.stats import BlandAltmanResult, RocResult, bland_altman, paired_test
from spectdl.stats.tables import as_vector, column, column_names, is_table

__all__ = ["bland_altman_plot", "metric_boxplot", "roc_plot", "sphere_table"]


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
    tested = [(i, j, p) for i, j in todo if (p := _p_value(values[i], values[j], test)) is not None]

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


def _p_value(a: np.ndarray, b: np.ndarray, test: str) -> float | None:
    """The paired test's p-value, or ``None`` where it is undefined (identical pairs, too few cases):
    such a pair is drawn without a bracket rather than stopping the report."""
    try:
        return paired_test(a, b, test=test).p_value
    except InputError:
        return None

