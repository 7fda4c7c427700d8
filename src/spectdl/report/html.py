"""A self-contained HTML report built from a run folder's saved result files.

The study runners write plain files (``config.json``, ``summary.json``, per-case CSV tables,
``images.npz``); :func:`build_demo_report` reads them back, draws the figures with
:mod:`spectdl.report.figures` into ``figures/`` and writes ``report.html`` (atomically), so a report
can be rebuilt at any time with ``spectdl report RUN_DIR`` without rerunning the study.
"""

from __future__ import annotations

import html
import json
import os
from pathlib import Path

import numpy as np

from spectdl.errors import InputError
from spectdl.io._atomic import atomic_write
from spectdl.report import figures

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1100px;margin:2em auto;color:#222}
h1{font-size:1.6em}h2{font-size:1.25em;border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}
.verdict{padding:.6em 1em;border-radius:4px;margin:1em 0}.good{background:#e8f5e9}.bad{background:#fff3e0}
img{max-width:100%;border:1px solid #eee}pre{background:#f7f7f7;padding:.8em;overflow:auto;font-size:.85em}
.note{color:#555;font-size:.9em}
"""


def _read(run_dir: Path, name: str) -> Path:
    path = run_dir / name
    if not path.is_file():
        raise InputError(f"run_dir: {run_dir} has no {name}; expected the files a study run writes")
    return path


def _table(rows: list[list[str]], header: list[str]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _p(p: float | None) -> str:
    if p is None or not np.isfinite(p):
        return "n/a"
    return "&lt; 0.001" if p < 0.001 else f"{p:.3f}"


def build_demo_report(run_dir: str | os.PathLike, *, overwrite: bool = True) -> Path:
    """Write ``figures/*.png`` and ``report.html`` for a demo run folder; returns the HTML path."""
    import pandas as pd

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputError(f"run_dir: {run_dir} is not a folder")
    config = json.loads(_read(run_dir, "config.json").read_text())
    summary = json.loads(_read(run_dir, "summary.json").read_text())
    slices = pd.read_csv(_read(run_dir, "metrics_slices.csv"))
    volumes = pd.read_csv(_read(run_dir, "metrics_volumes.csv"))
    spheres = pd.read_csv(_read(run_dir, "spheres.csv"))
    training = pd.read_csv(_read(run_dir, "training.csv"))
    with np.load(_read(run_dir, "images.npz")) as npz:
        images = {k: npz[k] for k in npz.files}
    fig_dir = run_dir / "figures"
    fig_dir.mkdir(exist_ok=True)

    pngs: dict[str, str] = {}
    # Image grid of the first held-out case, central sphere slice, shared window.
    case0 = {t: images[f"case0_{k}"] for k, t in (("input", "1/7 counts (OSEM)"), ("enhanced", "enhanced"),
                                                   ("standard", "standard counts"), ("truth", "true activity"))}
    vmax = float(max(np.percentile(v, 99.9) for v in case0.values()))
    fig = figures.image_grid(case0, vmin=0.0, vmax=vmax, difference=(1, 2), difference_title="enhanced − standard",
                             colorbar_label="activity (background = 1)", suptitle="Held-out case 0, sphere plane")
    pngs["grid"] = figures.save_png(fig, fig_dir / "image_grid.png", overwrite=overwrite).name
    fig = figures.metric_boxplot(slices, ["psnr_input_db", "psnr_enhanced_db"], labels=["1/7 input", "enhanced"],
                                 ylabel="PSNR (dB) vs standard scan", title="Per-slice PSNR")
    pngs["psnr"] = figures.save_png(fig, fig_dir / "psnr_boxplot.png", overwrite=overwrite).name
    fig = figures.metric_boxplot(slices, ["ssim_input", "ssim_enhanced"], labels=["1/7 input", "enhanced"],
                                 ylabel="SSIM vs standard scan", title="Per-slice SSIM")
    pngs["ssim"] = figures.save_png(fig, fig_dir / "ssim_boxplot.png", overwrite=overwrite).name
    sph0 = spheres[spheres["case"] == spheres["case"].min()]
    fig = figures.sphere_table(sph0, values=("suv_max", "suv_mean"), plot="suv_mean",
                               title="NEMA IEC spheres, held-out case 0 (SUV, background = 1)")
    pngs["spheres"] = figures.save_png(fig, fig_dir / "sphere_table.png", overwrite=overwrite).name
    fig = figures.line_profiles({"training loss": training["loss"].to_numpy()}, xlabel="step", ylabel="loss",
                                title="Training loss (lesion-weighted L1 + SSIM, deep supervision)")
    pngs["loss"] = figures.save_png(fig, fig_dir / "training_loss.png", overwrite=overwrite).name

    better = bool(summary.get("enhanced_better_psnr"))
    verdict = (
        f"The enhanced images are <b>better</b> than the 1/7-count input on PSNR "
        f"({summary['psnr_enhanced_db']:.2f} dB vs {summary['psnr_input_db']:.2f} dB, mean over held-out slices)."
        if better else
        f"The enhanced images are <b>not better</b> than the 1/7-count input on PSNR "
        f"({summary['psnr_enhanced_db']:.2f} dB vs {summary['psnr_input_db']:.2f} dB, mean over held-out slices). "
        "The demo's training run is short; this is reported as measured, not tuned."
    )
    tests = summary.get("tests", {})
    metric_rows = []
    for key, label, unit in (("psnr", "PSNR", " dB"), ("ssim", "SSIM", "")):
        t = tests.get(key, {})
        metric_rows.append([
            label,
            f"{summary[f'{key}_input' + ('_db' if key == 'psnr' else '')]:.4f}{unit}",
            f"{summary[f'{key}_enhanced' + ('_db' if key == 'psnr' else '')]:.4f}{unit}",
            f"{t.get('estimate', float('nan')):+.4f}" if "estimate" in t else "n/a",
            _p(t.get("p_value")),
            f"{t.get('effect_size', float('nan')):+.2f}" if "effect_size" in t else "n/a",
            str(t.get("n", "")),
        ])
    metrics_table = _table(metric_rows, ["metric", "1/7 input", "enhanced", "median difference (HL)",
                                         "Wilcoxon p", "rank-biserial r", "slices"])
    vol_rows = [[str(r.case), r.method, f"{r.psnr_db:.2f}", f"{r.ssim:.4f}"] for r in volumes.itertuples()]
    volume_table = _table(vol_rows, ["case", "method", "PSNR (dB)", "SSIM"])
    err = summary.get("sphere_abs_error_vs_standard", {})
    err_rows = [[q, f"{v['mean_abs_error_input']:.3f}", f"{v['mean_abs_error_enhanced']:.3f}"] for q, v in err.items()]
    err_table = _table(err_rows, ["quantity", "|1/7 − standard|", "|enhanced − standard|"])
    piv = spheres.pivot_table(index="diameter_mm", columns="method", values=["suv_mean", "suv_max"], aggfunc="mean")
    sph_rows = []
    for d in piv.index:
        row = [f"{d:.0f} mm"]
        for q in ("suv_mean", "suv_max"):
            for m in ("truth", "standard", "input", "enhanced"):
                row.append(f"{piv.loc[d, (q, m)]:.2f}" if (q, m) in piv.columns else "")
        sph_rows.append(row)
    sphere_html = _table(sph_rows, ["sphere"] + [f"{q} {m}" for q in ("SUVmean", "SUVmax")
                                                 for m in ("truth", "standard", "1/7", "enhanced")])
    timings = summary.get("timings_s", {})
    doc = f"""<!doctype html><html><head><meta charset="utf-8"><title>spectdl demo report</title>
<style>{_CSS}</style></head><body>
<h1>spectdl demo: fast bone SPECT (1/7 counts) on the NEMA IEC phantom</h1>
<p class="note">Run folder <code>{html.escape(str(run_dir))}</code>. {summary['n_train_cases']} training and
{summary['n_test_cases']} held-out phantom acquisitions ({summary['n_train_slices']} training slices,
{summary['n_test_slices']} held-out slices). Total time {summary.get('total_s', float('nan')):.1f} s.</p>
<div class="verdict {'good' if better else 'bad'}">{verdict}</div>
<h2>Image quality against the standard-count scan</h2>{metrics_table}
<p class="note">Paired Wilcoxon signed-rank tests over held-out slices (enhanced − input); HL = Hodges–Lehmann estimate.</p>
<h3>Per volume</h3>{volume_table}
<p><img src="figures/{pngs['psnr']}" alt="PSNR box plot"> <img src="figures/{pngs['ssim']}" alt="SSIM box plot"></p>
<h2>Images</h2><p><img src="figures/{pngs['grid']}" alt="image grid"></p>
<h2>NEMA IEC spheres (mean over held-out cases)</h2>
<p class="note">SUV here is activity concentration relative to the true background (background = 1).</p>
{sphere_html}{err_table}<p><img src="figures/{pngs['spheres']}" alt="sphere table"></p>
<h2>Training</h2><p><img src="figures/{pngs['loss']}" alt="training loss"></p>
<p class="note">Final training loss {summary.get('final_train_loss', float('nan')):.4f}.
Timings: {html.escape(', '.join(f'{k} {v:.1f}' for k, v in timings.items()))}.</p>
<h2>Configuration</h2><pre>{html.escape(json.dumps(config, indent=2))}</pre>
</body></html>
"""
    out = run_dir / "report.html"
    if out.exists() and not overwrite:
        raise InputError(f"report: {out} exists; pass overwrite=True to replace it")
    atomic_write(out, lambda tmp: Path(tmp).write_text(doc, encoding="utf-8"), overwrite=True)
    return out
