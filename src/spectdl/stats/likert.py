"""Summaries of ordinal reader scores (Likert scales), one per method or reader."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from spectdl.errors import InputError
from spectdl.stats._data import Result
from spectdl.stats.tables import as_vector, column, column_keys, column_names, is_table


@dataclass(frozen=True)
class LikertSummary(Result):
    """Distribution of one set of scores.

    ``median``, ``q1`` and ``q3`` use numpy's default (linear) quantile rule; ``mean`` and ``sd``
    (``n - 1``) are given because many reader studies report them, though the scale is ordinal.
    ``counts`` and ``proportions`` follow ``levels``; ``at_least`` is the proportion of scores
    ``>= threshold`` (e.g. "diagnostic quality or better").
    """

    name: str
    n: int
    median: float
    q1: float
    q3: float
    mean: float
    sd: float
    threshold: float
    at_least: float
    levels: tuple[float, ...] = field(default=(), metadata={"table": False})
    counts: tuple[int, ...] = field(default=(), metadata={"table": False})
    proportions: tuple[float, ...] = field(default=(), metadata={"table": False})

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        for lev, c in zip(self.levels, self.counts):
            out[f"n_{lev:g}"] = c
        return out


def likert_summary(
    data: Any,
    columns: Sequence[str] | None = None,
    *,
    score: str | None = None,
    by: str | None = None,
    levels: Sequence[float] = (1, 2, 3, 4, 5),
    threshold: float | None = None,
) -> tuple[LikertSummary, ...]:
    """Per-group summaries of Likert scores.

    Wide: ``likert_summary(df, ["osem", "dl"])`` (one column of scores per method; all columns of a
    table when ``columns`` is None). Long: ``likert_summary(df, score="score", by="method")``.
    A single array of scores gives one summary named ``"scores"``. Every score must be one of
    ``levels``; ``threshold`` defaults to the middle level, ``levels[len(levels) // 2]`` (3 on a
    1-5 scale).
    """
    levs = np.asarray(levels, dtype=np.float64)
    if levs.ndim != 1 or levs.size < 2 or np.unique(levs).size != levs.size:
        raise InputError(f"levels: expected at least 2 distinct scale points, found {list(levels)}")
    thr = float(levs[levs.size // 2]) if threshold is None else float(threshold)

    groups: list[tuple[str, Any]]
    if score is not None or by is not None:
        if score is None or by is None:
            raise InputError(
                f"score, by: a long table needs both column names, found score={score!r}, by={by!r}"
            )
        s = as_vector(column(data, score, "score"), f"score ({score!r})")
        g = np.asarray(column(data, by, "by")).astype(str)
        if g.shape != s.shape:
            raise InputError(f"by: expected {s.size} group labels, found shape {g.shape}")
        groups = [(lab, s[g == lab]) for lab in dict.fromkeys(g.tolist())]
    elif columns is not None or is_table(data):
        names = list(columns) if columns is not None else column_names(data)
        keys = list(columns) if columns is not None else column_keys(data)
        groups = [(str(n), column(data, k, "columns")) for n, k in zip(names, keys)]
    else:
        groups = [("scores", data)]

    out = []
    for name, raw in groups:
        x = as_vector(raw, f"scores ({name!r})", min_length=2)
        off = ~np.isin(x, levs)
        if off.any():
            raise InputError(
                f"scores ({name!r}): {int(off.sum())} value(s) not on the scale {levs.tolist()}, e.g. "
                f"{float(x[off][0])!r}"
            )
        q1, med, q3 = np.percentile(x, [25, 50, 75])
        counts = tuple(int(np.sum(x == lev)) for lev in levs)
        out.append(
            LikertSummary(
                name=name,
                n=int(x.size),
                median=float(med),
                q1=float(q1),
                q3=float(q3),
                mean=float(x.mean()),
                sd=float(x.std(ddof=1)),
                threshold=thr,
                at_least=float(np.mean(x >= thr)),
                levels=tuple(float(v) for v in levs),
                counts=counts,
                proportions=tuple(c / x.size for c in counts),
            )
        )
    return tuple(out)
