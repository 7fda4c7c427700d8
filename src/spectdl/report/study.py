"""The report of any study run, rebuilt from its saved files (``spectdl report RUN_DIR``).

It reads only what the run wrote: ``summary.json`` (the paper's claims and whether they hold),
``paper.csv`` (the paper's numbers beside ours), ``metrics.csv`` (per-case values), the example
slices ``evaluate/examples_*.npz``, the per-view deviances in ``summary.json`` and each method's
training history. It draws the figures into ``figures/`` and writes a self-contained
``report.html`` beside them (figures embedded as data URIs; nothing loads from the network).
"""

from __future__ import annotations

import base64
import html
import json
import os
from pathlib import Path

import numpy as np

from spectdl.errors import InputError
from spectdl.io.atomic import atomic_write
from spectdl.report.agreement import linear_fit_figures, per_case_table
from spectdl.report.figures import image_grid
from spectdl.report.plots import metric_boxplot
from spectdl.report.png import _figure, save_png

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1150px;margin:2em auto;color:#222;padding:0 1em}
h1{font-size:1.6em}h2{font-size:1.25em;border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.8em}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}
.holds{background:#e8f5e9}.fails{background:#fff3e0}.unknown{background:#eee}
img{max-width:100%;border:1px solid #eee;margin:.4em 0}.note{color:#555;font-size:.9em}
"""


def _fmt(v, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "n/a"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return f"{v:.{digits}g}" if abs(v) < 1e-3 or abs(v) >= 1e4 else f"{v:.{digits}f}"
    return html.escape(str(v))


def _p(p) -> str:
    if p is None or (isinstance(p, float) and not np.isfinite(p)):
        return "n/a"
    return "&lt; 0.001" if p < 0.001 else f"{p:.3f}"


def _table(header: list[str], rows: list[list[str]], classes: list[str] | None = None) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        f"<tr class='{classes[i] if classes else ''}'>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>"
        for i, r in enumerate(rows))
    return f"<table><tr>{head}</tr>{body}</table>"


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f"<img alt='{html.escape(alt)}' src='data:image/png;base64,{data}'>"


def _boxplots(df, fig_dir: Path, baseline: str = "input", metrics=("psnr", "ssim")) -> list[tuple[str, Path]]:
    """One box plot per (dataset, level, space, region, convention, metric) of per-case metrics
    (``metrics``: the study's ``box_metrics``, default PSNR and SSIM), methods side by side, each
    method tested against ``baseline`` (the study's, default ``input``) with a paired Wilcoxon test."""
    out = []
    cases = df[df["case"] != "all"]
    group_cols = [c for c in ("dataset", "level", "speed", "space", "region", "convention") if c in cases.columns]
    cases = cases.copy()
    for c in group_cols:
        cases[c] = cases[c].fillna("")  # groupby drops NaN keys: metrics without a convention still plot
    for metric in metrics:
        sub = cases[cases["metric"] == metric]
        if sub.empty:
            continue
        for key, g in (sub.groupby(group_cols) if group_cols else [((), sub)]):
            key = key if isinstance(key, tuple) else (key,)
            wide = g.pivot_table(index="case", columns="method", values="value")
            methods = [baseline] + [m for m in wide.columns if m != baseline] if baseline in wide.columns \
                else list(wide.columns)
            wide = wide[methods].dropna()
            if len(wide) < 2 or len(methods) < 2:
                continue
            label = "_".join(str(k) for k in key if str(k) not in ("nan", ""))
            fig = metric_boxplot(wide, methods, ylabel=metric.upper(), title=f"{metric.upper()} — {label}")
            out.append((f"{metric.upper()} per case ({label}); p: paired Wilcoxon against {methods[0]}",
                        save_png(fig, fig_dir / f"box_{metric}_{label}.png", overwrite=True)))
    return out


def _image_grids(run_dir: Path, fig_dir: Path, summary: dict | None = None) -> list[tuple[str, Path]]:
    """Every ``evaluate/examples_*.npz`` as a grid of methods per case and its difference images.
    ``summary["example_layout"]``: ``"xy"`` (slices, spectdl's x/y order; default) or ``"rc"``
    (planar views as stored, rows down); ``summary["example_view"]``: what one panel shows."""
    summary = summary or {}
    layout = summary.get("example_layout", "xy")
    view = summary.get("example_view", "axial slice")
    out = []
    for path in sorted((run_dir / "evaluate").glob("examples_*.npz")):
        with np.load(path) as z:
            arrays = {k: z[k] for k in z.files}
        for case in sorted({k.split("/")[0] for k in arrays}):
            imgs = {k.split("/")[1]: v for k, v in arrays.items() if k.startswith(case + "/")}
            order = [m for m in ("truth", "reference", "input") if m in imgs] + \
                    [m for m in imgs if m not in ("truth", "reference", "input")]
            shown = {m: imgs[m] for m in order}
            # Differences from the standard scan when there is one, else from the phantom.
            ref_name = "reference" if "reference" in shown else ("truth" if "truth" in shown else None)
            ref = shown.get(ref_name) if ref_name else None
            fig = image_grid(shown, vmin=0.0, vmax=float(np.percentile(ref, 99.8)) if ref is not None else None,
                             ncols=min(5, len(shown)), suptitle=f"case {case}: {view}", layout=layout)
            out.append((f"case {case}: every method on the same window", save_png(
                fig, fig_dir / f"images_{case}.png", overwrite=True)))
            if ref is not None:
                what = "the standard scan" if ref_name == "reference" else "the phantom"
                diffs = {f"{m} − {ref_name}": shown[m] - ref for m in order if m not in ("reference", "truth")}
                lim = max(float(np.abs(d).max()) for d in diffs.values()) or 1.0
                fig = image_grid(diffs, vmin=-lim, vmax=lim, cmap="RdBu_r", ncols=min(5, len(diffs)),
                                 suptitle=f"case {case}: difference from {what}", layout=layout)
                out.append((f"case {case}: difference images (method − {what})", save_png(
                    fig, fig_dir / f"difference_{case}.png", overwrite=True)))
    return out


def _means_table(df, skip=()) -> str:
    """Mean (± SD) over cases of every per-case metric, one row per selection (dataset, level, space,
    region, convention) and metric, one column per method: the paper's tables, ablations included, at
    a glance. Rows scored under different conventions never share a mean. Metrics in ``skip`` (e.g.
    those of a per-case table, whose cases a mean would pool) are left out."""
    cases = df[(df["case"] != "all") & ~df["metric"].isin(list(skip))]
    group_cols = [c for c in ("dataset", "level", "speed", "space", "region", "convention", "data") if c in cases.columns]
    methods = list(dict.fromkeys(["truth", "reference", "input", *sorted(cases["method"].unique())]))
    methods = [m for m in methods if m in set(cases["method"])]
    rows = []
    keys = group_cols + ["metric"]
    for key, g in cases.groupby(keys, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        if key[-1] in ("cnr",):
            continue
        stats = g.groupby("method")["value"].agg(["mean", "std", "count"])
        cells = [" / ".join(str(k) for k in key[:-1] if str(k) not in ("nan", "None")), html.escape(str(key[-1]))]
        for m in methods:
            if m in stats.index:
                r = stats.loc[m]
                sd = "" if not np.isfinite(r["std"]) else f" ± {_fmt(float(r['std']))}"
                cells.append(f"{_fmt(float(r['mean']))}{sd}")
            else:
                cells.append("")
        rows.append(cells)
    return _table(["selection", "metric", *methods], rows)


def _case_table_metrics(summary: dict) -> set[str]:
    return {spec[k] for spec in summary.get("case_tables") or [] for k in ("mean", "sd")}


def _case_tables(df, paper, summary: dict) -> list[tuple[str, str]]:
    """The study's per-case tables, ``summary["case_tables"]``: each ``{title, column, column_title,
    mean, sd, methods, regions, paper_table}`` shows, per (dataset, level), one row per value of ``column``
    (e.g. Table 1's target uptake) and region, the ``mean`` (``sd``) metric rows of every method of
    ``methods``, and beside each method the paper's value of ``paper_table`` in paper.csv where it
    has one (matched on method, the case column, region, level and dataset). ``[(title, html)]``."""
    import pandas as pd

    out = []
    for spec in summary.get("case_tables") or []:
        col = spec["column"]
        if col not in df.columns:
            continue
        sel = df[df[col].notna() & df["metric"].isin([spec["mean"], spec["sd"]])]
        refs = {}
        for _, p in paper[paper["table"] == spec.get("paper_table")].iterrows():
            where = dict(kv.split("=", 1) for kv in str(p["where"]).split(";") if "=" in kv) \
                if not pd.isna(p.get("where")) else {}
            refs[(p["method"], where.get(col), where.get("region"), where.get("level"), where.get("dataset"))] = \
                p["paper_value"]
        with_paper = [m for m in spec["methods"] if any(k[0] == m for k in refs)]
        groups = [c for c in ("dataset", "level") if c in sel.columns]
        for key, g in (sel.groupby(groups, sort=False) if groups else [((), sel)]):
            key = dict(zip(groups, key if isinstance(key, tuple) else (key,)))
            header = [spec.get("column_title") or col.replace("_", " "), "phantom case", "region"]
            for m in spec["methods"]:
                header += [m] + ([f"{m} (paper)"] if m in with_paper else [])
            rows = []
            for value in dict.fromkeys(g[col]):
                for region in spec.get("regions") or sorted(set(g["region"])):
                    part = g[(g[col] == value) & (g["region"] == region)]
                    if part.empty:
                        continue
                    cells = [html.escape(str(value)), html.escape(", ".join(sorted(set(part["case"])))),
                             html.escape(str(region))]
                    for m in spec["methods"]:
                        v = {r["metric"]: r["value"] for _, r in part[part["method"] == m].iterrows()}
                        cells.append(f"{_fmt(v.get(spec['mean']))} ({_fmt(v.get(spec['sd']))})"
                                     if spec["mean"] in v else "")
                        if m in with_paper:
                            ref = refs.get((m, str(value), str(region), str(key.get("level")),
                                            str(key.get("dataset"))))
                            cells.append(_fmt(ref) if ref is not None else "")
                    rows.append(cells)
            label = ", ".join(str(v) for v in key.values())
            out.append((f"{spec.get('title', col)} ({label})" if label else spec.get("title", col),
                        _table(header, rows)))
    return out


def _regional(df, fig_dir: Path) -> list[tuple[str, Path]]:
    """Line plots of metrics measured per named region (e.g. per NEMA sphere: SUVmax and SUVmean),
    mean over cases, one line per method."""
    if "region" not in df.columns:
        return []
    out = []
    sub = df[df["region"].astype(str).str.match(r"^sphere\d+$")]
    for metric in ("suv_max", "suv_mean"):
        g = sub[sub["metric"] == metric]
        if g.empty:
            continue
        g = g.assign(size=g["region"].str[6:].astype(float))
        fig = _figure(6.5, 3.6, 100)
        ax = fig.subplots()
        for method, h in g.groupby("method"):
            m = h.groupby("size")["value"].mean()
            ax.plot(m.index, m.values, "o-" if method not in ("truth", "reference") else "s--", label=method)
        ax.set_xlabel("sphere diameter (mm)")
        ax.set_ylabel(metric.replace("_", " "))
        ax.legend(fontsize=7, ncol=2)
        out.append((f"{metric.replace('_', ' ').upper()} per sphere (mean over phantoms)",
                    save_png(fig, fig_dir / f"spheres_{metric}.png", overwrite=True)))
    return out


def _consistency(summary: dict, fig_dir: Path) -> list[tuple[str, Path]]:
    from spectdl.report.consistency import residual_per_view_figure

    out = []
    for data_name, per_view in (summary.get("consistency_per_view") or {}).items():
        n = len(next(iter(per_view.values())))
        angles = np.arange(n) * 360.0 / n
        path = residual_per_view_figure({m: np.asarray(v, dtype=float) for m, v in per_view.items()}, angles,
                                        fig_dir / f"consistency_{data_name}.png", overwrite=True,
                                        title=f"Poisson deviance per count, per view, against the {data_name} scan")
        out.append((f"Data consistency: each image forward projected with the study's system model, "
                    f"deviance per count against the measured {data_name}-scan projections (mean over cases)", path))
    return out


def _training(summary: dict, fig_dir: Path) -> list[tuple[str, Path]]:
    import pandas as pd

    curves = {m: info.get("history") for m, info in (summary.get("training") or {}).items() if info.get("history")}
    curves = {m: pd.read_csv(p) for m, p in curves.items() if Path(p).is_file()}
    if not curves:
        return []
    fig = _figure(7, 3.6, 100)
    ax = fig.subplots()
    for m, h in curves.items():
        for col, style in (("train_loss", "-"), ("val_loss", "--")):
            if col in h.columns:
                ax.plot(h["epoch"] + 1, h[col], style, label=f"{m} {col.split('_')[0]}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.legend(fontsize=7, ncol=2)
    return [("Training and validation loss per epoch", save_png(fig, fig_dir / "training.png", overwrite=True))]


def _bland_altman(df, summary: dict, fig_dir: Path) -> list[tuple[str, Path]]:
    """Bland–Altman plots of ``summary["bland_altman"]``: ``{name, title, metric, a, b, where}``, the
    per-case values of method ``a`` against method ``b`` from metrics.csv (cases paired by id)."""
    from spectdl.report.plots import bland_altman_plot

    out = []
    for spec in summary.get("bland_altman") or []:
        wide = per_case_table(df, spec["metric"], spec.get("where"))
        if spec["a"] not in wide.columns or spec["b"] not in wide.columns:
            continue
        pair = wide[[spec["a"], spec["b"]]].dropna()
        if len(pair) < 3 or float((pair[spec["a"]] - pair[spec["b"]]).std()) == 0.0:
            continue
        fig = bland_altman_plot(pair[spec["a"]].to_numpy(), pair[spec["b"]].to_numpy(), title=spec.get("title"),
                                xlabel=f"mean of {spec['a']} and {spec['b']} ({spec['metric'].upper()})",
                                ylabel=f"{spec['a']} − {spec['b']}")
        name = "".join(ch if ch.isalnum() or ch in "_-" else "_" for ch in str(spec.get("name", "ba")))
        out.append((str(spec.get("title", name)), save_png(fig, fig_dir / f"bland_altman_{name}.png", overwrite=True)))
    return out


def _agreement_title(summary: dict) -> str:
    """The Bland–Altman section's title: the study's ``agreement_title``, else from the methods the
    plots compare against (the standard scan ``reference`` reads as full dose)."""
    if summary.get("agreement_title"):
        return str(summary["agreement_title"])
    refs = sorted({"full dose" if s["b"] == "reference" else str(s["b"]) for s in summary.get("bland_altman") or []})
    return "Agreement with " + (", ".join(refs) or "full dose")


def _line_figures(summary: dict, fig_dir: Path) -> list[tuple[str, Path]]:
    """The study's own line plots: ``summary["line_figures"]`` is a list of ``{name, title, xlabel,
    ylabel, logy, series: {label: {"x": [...], "y": [...]}}}`` (e.g. validation curves)."""
    out = []
    for spec in summary.get("line_figures") or []:
        fig = _figure(7, 3.6, 100)
        ax = fig.subplots()
        for label, xy in (spec.get("series") or {}).items():
            y = np.asarray([np.nan if v is None else v for v in xy["y"]], dtype=float)
            ax.plot(np.asarray(xy["x"], dtype=float), y, xy.get("style", "-"), label=label)
        ax.set_xlabel(spec.get("xlabel", ""))
        ax.set_ylabel(spec.get("ylabel", ""))
        if spec.get("logy"):
            ax.set_yscale("log")
        ax.legend(fontsize=7)
        name = "".join(ch if ch.isalnum() or ch in "_-" else "_" for ch in str(spec.get("name", "curve")))
        out.append((str(spec.get("title", name)), save_png(fig, fig_dir / f"curve_{name}.png", overwrite=True)))
    return out


def build_study_report(run_dir: str | os.PathLike) -> Path:
    """Write ``figures/*.png`` and ``report.html`` for a study run folder; returns the HTML path."""
    import pandas as pd

    run_dir = Path(run_dir)
    for name in ("summary.json", "paper.csv", "metrics.csv"):
        if not (run_dir / name).is_file():
            raise InputError(f"run_dir: {run_dir} has no {name}; expected a finished `spectdl study run` folder")
    summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    paper = pd.read_csv(run_dir / "paper.csv", keep_default_na=False, na_values=[""])
    df = pd.read_csv(run_dir / "metrics.csv", dtype={"case": str}, keep_default_na=False, na_values=[""])
    env = json.loads((run_dir / "environment.json").read_text()) if (run_dir / "environment.json").is_file() else {}
    scale = ""
    if (run_dir / "config.yaml").is_file():
        import yaml

        scale = (yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8")) or {}).get("scale", "")
    fig_dir = run_dir / "figures"
    fig_dir.mkdir(exist_ok=True)

    claims = summary.get("claims", [])
    n_hold = sum(1 for c in claims if c.get("holds"))
    parts = [f"<h1>{html.escape(summary.get('study', 'study'))}: {n_hold} of {len(claims)} claims of the paper hold</h1>",
             f"<p class='note'>Run {html.escape(run_dir.name)}; scale {html.escape(str(scale))}; "
             f"{summary.get('n_cases', '?')} held-out cases. Every number below is computed from metrics.csv.</p>"]
    rows, classes = [], []
    for c in claims:
        state = {True: "holds", False: "does not hold", None: "not measured"}[c.get("holds")]
        classes.append({True: "holds", False: "fails", None: "unknown"}[c.get("holds")])
        rows.append([html.escape(c["text"]), state, _fmt(c.get("mean_method")), _fmt(c.get("mean_baseline")),
                     _fmt(c.get("mean_difference")), str(c.get("n", 0)), _p(c.get("p_value"))])
    parts.append("<h2>The paper's claims</h2>")
    parts.append(_table(["claim", "here", "method (mean)", "baseline (mean)", "difference", "n", "Wilcoxon p"],
                        rows, classes))
    parts.append("<h2>The paper's numbers and ours</h2>")
    prow = []
    for _, r in paper.iterrows():
        prow.append([html.escape(str(r["table"])), html.escape(str(r["metric"])), html.escape(str(r["method"])),
                     html.escape("" if pd.isna(r.get("where")) else str(r["where"])), _fmt(r["paper_value"]),
                     _fmt(None if pd.isna(r["our_value"]) else float(r["our_value"]))])
    parts.append(_table(["table", "metric", "method", "selection", "paper", "ours"], prow))
    if summary.get("notes"):
        parts.append("<h2>Notes on this run</h2><ul>" + "".join(f"<li>{html.escape(str(n))}</li>"
                                                               for n in summary["notes"]) + "</ul>")
    regions = summary.get("regions") or {}
    if regions:
        parts.append("<p class='note'>Regions: " + "; ".join(f"<b>{html.escape(k)}</b>: {html.escape(v)}"
                                                          for k, v in regions.items()) + ".</p>")
    conv = summary.get("conventions")
    if conv:
        parts.append(f"<p class='note'>Metric conventions: {html.escape(json.dumps(conv))}.</p>")

    if summary.get("tests"):
        parts.append("<h2>Paired tests between methods</h2>")
        trow = [[html.escape(t["text"]), html.escape(", ".join(f"{k}={v}" for k, v in (t.get("where") or {}).items())),
                 _fmt(t.get("mean_method")), _fmt(t.get("mean_baseline")), _fmt(t.get("mean_difference")),
                 f"{_fmt(t['ci_low'])} to {_fmt(t['ci_high'])}" if t.get("ci_low") is not None else "",
                 str(t.get("n", 0)), _p(t.get("p_value"))] for t in summary["tests"]]
        trow = [r + [html.escape(t.get("test", "Wilcoxon"))] for r, t in zip(trow, summary["tests"])]
        parts.append(_table(["pair", "selection", "first (mean)", "second (mean)", "difference",
                             "95% bootstrap CI of the difference", "n", "p", "test"], trow))
    for title, table in _case_tables(df, paper, summary):
        parts.append(f"<h2>{html.escape(title)}</h2>{table}")
    parts.append("<h2>Mean over cases, every method</h2>")
    parts.append(_means_table(df, skip=_case_table_metrics(summary)))
    sections = [("Images", _image_grids(run_dir, fig_dir, summary)),
                ("Per-case metrics", _boxplots(df, fig_dir, summary.get("baseline_method") or "input",
                                               summary.get("box_metrics") or ("psnr", "ssim"))),
                (_agreement_title(summary), _bland_altman(df, summary, fig_dir)),
                ("Linear fits against the reference", linear_fit_figures(df, summary, fig_dir)),
                ("Per region", _regional(df, fig_dir)),
                ("Data consistency", _consistency(summary, fig_dir)), ("Training", _training(summary, fig_dir)),
                ("Curves", _line_figures(summary, fig_dir))]
    for title, figs in sections:
        if figs:
            parts.append(f"<h2>{html.escape(title)}</h2>")
            parts.extend(f"<p>{html.escape(caption)}</p>{_img(path, caption)}" for caption, path in figs)
    set_level = df[df["case"] == "all"]
    if not set_level.empty:
        parts.append("<h2>Set-level figures</h2>")
        cols = [c for c in ("dataset", "level", "speed", "space", "method", "versus", "metric", "value", "ci_low",
                            "ci_high")
                if c in set_level.columns]
        parts.append(_table(cols, [[_fmt(v) for v in row] for row in set_level[cols].itertuples(index=False)]))
    stages = env.get("stages") or {}
    if stages:
        parts.append("<h2>Run</h2>")
        parts.append(_table(["stage", "wall time (s)"], [[html.escape(k), f"{v.get('wall_s', 0):.1f}"]
                                                          for k, v in stages.items()]))
        parts.append(f"<p class='note'>versions {html.escape(json.dumps(env.get('versions', {})))}; "
                     f"git {html.escape(str(env.get('git_commit')))}; device {html.escape(str(env.get('device')))}</p>")
    page = (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(summary.get('study', ''))}"
            f" report</title><style>{_CSS}</style></head><body>{''.join(parts)}</body></html>")
    out = run_dir / "report.html"
    atomic_write(out, lambda tmp: Path(tmp).write_text(page, encoding="utf-8"), overwrite=True)
    return out
