"""The results contract: ``metrics.csv``, ``paper.csv`` and ``summary.json`` of a study run.

``metrics.csv`` is long: one row per ``case, method, metric, value`` plus optional columns
(``region``, ``level``, ``dataset``, ``convention``, …). A set-level figure has the case ``all``.
Names are lower case; the method ``input`` is the degraded image the methods start from,
``reference`` the standard-count image they are scored against, ``truth`` the phantom.

The paper's numbers are :class:`PaperValue` entries in the study module; ``paper.csv`` pairs each
with ours, computed here from ``metrics.csv`` (never typed in). The paper's claims are
:class:`Claim` entries; ``summary.json`` says for each whether it holds, from the same table.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from spectdl.errors import InputError
from spectdl.studies.runner import write_json, write_text

REQUIRED = ("case", "method", "metric", "value")
#: Columns that say which value a row is (a claim pairs rows on them); the others carry values.
KEY_COLUMNS = ("case", "dataset", "region", "level", "space", "data", "against", "convention")
_NAME = re.compile(r"^[a-z0-9_.+\-]+$")


@dataclass(frozen=True)
class PaperValue:
    """One number of the paper: ``table`` (e.g. ``"table1"``), ``metric``, ``method``, ``value``, and
    ``where``: values of further ``metrics.csv`` columns that select our rows (e.g. ``{"region": "sphere1"}``).
    Ours is the mean of the selected per-case values (``agg="mean"``) or their ``"median"``."""

    table: str
    metric: str
    method: str
    value: float
    where: Mapping[str, Any] = field(default_factory=dict)
    agg: str = "mean"
    note: str = ""


@dataclass(frozen=True)
class Claim:
    """A claim of the paper: ``method`` is better than ``baseline`` on ``metric``.

    It holds when the mean over cases of ``method − baseline`` (paired by case and the ``where``
    columns) is > 0 for ``higher=True`` (< 0 otherwise). The Wilcoxon signed-rank p-value of the
    paired differences is reported beside it; ``holds`` does not depend on a significance level.
    """

    text: str
    metric: str
    method: str
    baseline: str
    higher: bool = True
    where: Mapping[str, Any] = field(default_factory=dict)


def metrics_frame(rows: Sequence[Mapping[str, Any]]):
    """A checked long-format DataFrame of metric rows (module docstring)."""
    import pandas as pd

    df = rows.copy() if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise InputError(f"metrics: rows lack the columns {missing}; expected at least {list(REQUIRED)}")
    for col in ("method", "metric"):
        bad = sorted({str(v) for v in df[col] if not _NAME.match(str(v))})
        if bad:
            raise InputError(f"metrics: {col} names {bad[:3]} are not lower case; expected e.g. 'u2net', 'psnr'")
    df["case"] = df["case"].astype(str)
    df["value"] = df["value"].astype(float)
    return df


def write_metrics(run_dir: Path, rows) -> Path:
    """``run_dir/metrics.csv`` from rows (or a DataFrame), written atomically."""
    df = metrics_frame(rows)
    return write_text(Path(run_dir) / "metrics.csv", df.to_csv(index=False))


def read_metrics(run_dir: Path):
    import pandas as pd

    path = Path(run_dir) / "metrics.csv"
    if not path.is_file():
        raise InputError(f"{run_dir}: no metrics.csv; expected a finished study run folder")
    return pd.read_csv(path, dtype={"case": str}, keep_default_na=False, na_values=[""])


def _select(df, metric: str, method: str, where: Mapping[str, Any]):
    sel = (df["metric"] == metric) & (df["method"] == method)
    for col, val in where.items():
        if col not in df.columns:
            return df.iloc[0:0]
        sel &= df[col].astype(str) == str(val)
    return df[sel]


def our_value(df, p: PaperValue) -> float | None:
    """Our number for a paper value: the mean (or median) of the selected rows, ``None`` if none."""
    rows = _select(df, p.metric, p.method, p.where)
    vals = rows["value"].astype(float)
    vals = vals[vals.map(math.isfinite)]
    if vals.empty:
        return None
    return float(vals.median() if p.agg == "median" else vals.mean())


def paper_table(df, values: Sequence[PaperValue]):
    import pandas as pd

    rows = []
    for p in values:
        ours = our_value(df, p)
        where = ";".join(f"{k}={v}" for k, v in p.where.items())
        rows.append({"table": p.table, "metric": p.metric, "method": p.method, "where": where,
                     "paper_value": p.value, "our_value": ours, "note": p.note})
    return pd.DataFrame(rows, columns=["table", "metric", "method", "where", "paper_value", "our_value", "note"])


def evaluate_claim(df, claim: Claim, n_bootstrap: int = 0, seed: int = 0, test: str = "wilcoxon") -> dict[str, Any]:
    """``{text, holds, mean_method, mean_baseline, mean_difference, n, p_value, test}`` from the metric
    rows; ``p_value`` of the paired Wilcoxon signed-rank test (``test="wilcoxon"``) or the paired
    t-test (``test="t"``); with ``n_bootstrap`` resamples also ``ci_low``/``ci_high``, the 95 %
    percentile bootstrap interval of the mean paired difference (cases resampled with replacement)."""
    if test not in ("wilcoxon", "t"):
        raise InputError(f"test: {test!r}; expected 'wilcoxon' or 't'")
    a = _select(df, claim.metric, claim.method, claim.where)
    b = _select(df, claim.metric, claim.baseline, claim.where)
    on = [c for c in KEY_COLUMNS if c in df.columns]
    merged = a[on + ["value"]].merge(b[on + ["value"]], on=on, suffixes=("_m", "_b"))
    d = (merged["value_m"] - merged["value_b"]).astype(float)
    d = d[d.map(math.isfinite)]
    out: dict[str, Any] = {"text": claim.text, "metric": claim.metric, "method": claim.method,
                           "baseline": claim.baseline, "higher_is_better": claim.higher, "where": dict(claim.where),
                           "n": int(len(d)), "test": "paired t" if test == "t" else "Wilcoxon"}
    if d.empty:
        return {**out, "holds": None, "why": "no paired values in metrics.csv"}
    mean = float(d.mean())
    out.update(mean_method=float(merged["value_m"].mean()), mean_baseline=float(merged["value_b"].mean()),
               mean_difference=mean, holds=bool(mean > 0 if claim.higher else mean < 0))
    if len(d) >= 2 and (d != 0).any() and (test == "wilcoxon" or d.nunique() > 1):
        from scipy.stats import ttest_1samp, wilcoxon

        res = wilcoxon(d.to_numpy()) if test == "wilcoxon" else ttest_1samp(d.to_numpy(), 0.0)
        out["p_value"] = float(res.pvalue)
    else:
        out["p_value"] = None
    if n_bootstrap and len(d) >= 2:
        from spectdl.stats import bootstrap_ci

        ci = bootstrap_ci(d.to_numpy(), n_resamples=int(n_bootstrap), seed=seed)
        out.update(ci_low=float(ci.ci_low), ci_high=float(ci.ci_high))
    return out


def paired_tests(df, metric: str, method: str, others: Sequence[str], where: Mapping[str, Any] | None = None,
                 higher: bool = True, n_bootstrap: int = 0, seed: int = 0, test: str = "wilcoxon") -> list[dict[str, Any]]:
    """Paired tests (Wilcoxon signed-rank, or ``test="t"`` the paired t-test) of ``method`` against each of ``others`` on one metric:
    one :func:`evaluate_claim` record per pair (means, mean difference, n, p, and with
    ``n_bootstrap`` the bootstrap interval of the mean difference)."""
    where = dict(where or {})
    present = set(df["method"])
    return [evaluate_claim(df, Claim(f"{method} vs {o}: {metric}", metric, method, o, higher=higher, where=where),
                           n_bootstrap=n_bootstrap, seed=seed, test=test)
            for o in others if o in present and o != method]


def write_results(run_dir: Path, rows, *, study: str, paper: Sequence[PaperValue], claims: Sequence[Claim],
                  extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Write ``metrics.csv`` (from metric rows or a DataFrame, checked by :func:`metrics_frame`),
    ``paper.csv`` and ``summary.json``; returns the summary."""
    run_dir = Path(run_dir)
    write_metrics(run_dir, rows)
    df = read_metrics(run_dir)  # claims and paper values come from the saved file, as a reader would get them
    table = paper_table(df, paper)
    write_text(run_dir / "paper.csv", table.to_csv(index=False))
    results = [evaluate_claim(df, c) for c in claims]
    extra = dict(extra or {})
    for spec in extra.pop("paired_tests", []):
        extra.setdefault("tests", []).extend(paired_tests(df, **spec))
    summary = {
        "study": study,
        "claims": results,
        "claims_holding": sum(1 for r in results if r.get("holds")),
        "claims_total": len(results),
        "methods": sorted(df["method"].unique().tolist()),
        "metrics": sorted(df["metric"].unique().tolist()),
        "n_cases": int(df.loc[df["case"] != "all", "case"].nunique()),
        **extra,
    }
    write_json(run_dir / "summary.json", summary)
    return summary
