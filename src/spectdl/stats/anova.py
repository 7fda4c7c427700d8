"""One-way repeated-measures ANOVA (``statsmodels`` ``AnovaRM``) and Tukey HSD comparisons.

Both accept the same inputs:

* wide: ``rm_anova(df, columns=["psnr_osem", "psnr_unet", "psnr_gan"])`` -- one row per case, one
  column per condition (a mapping of equal-length arrays, or an ``n × k`` array, works too);
* long: ``rm_anova(df, value="psnr", subject="case", condition="method")`` -- one row per
  (case, condition), every case measured once under every condition.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from scipy import stats

from spectdl.errors import InputError, require
from spectdl.stats._data import Result, check_confidence_level
from spectdl.stats.tables import as_vector, column, column_keys, column_names, is_table


def _wide(
    data: Any, value: str | None, subject: str | None, condition: str | None, columns: Sequence[str] | None
) -> tuple[np.ndarray, list[str]]:
    """The ``n_subjects × n_conditions`` matrix and the condition labels."""
    long_args = (value, subject, condition)
    if any(a is not None for a in long_args):
        if columns is not None:
            raise InputError(
                "columns: give either columns (wide table) or value/subject/condition (long table)"
            )
        if any(a is None for a in long_args):
            raise InputError(
                f"value, subject, condition: a long table needs all three column names, found "
                f"value={value!r}, subject={subject!r}, condition={condition!r}"
            )
        pd = require("pandas", "eval")
        y = as_vector(column(data, value, "value"), f"value ({value!r})")
        long = pd.DataFrame(
            {
                "subject": np.asarray(column(data, subject, "subject")),
                "condition": np.asarray(column(data, condition, "condition")).astype(str),
                "value": y,
            }
        )
        dup = long.duplicated(["subject", "condition"])
        if dup.any():
            row = long[dup].iloc[0]
            raise InputError(
                f"subject, condition: {int(dup.sum())} repeated (subject, condition) pair(s), first "
                f"({row['subject']!r}, {row['condition']!r}); aggregate replicates before the analysis"
            )
        wide = long.pivot(index="subject", columns="condition", values="value")
        if wide.isna().any().any():
            missing = wide[wide.isna().any(axis=1)]
            s = missing.index[0]
            raise InputError(
                f"subject: the design must be complete; {len(missing)} subject(s) lack some condition, "
                f"e.g. {s!r} has no value for {list(missing.columns[missing.loc[s].isna()])}"
            )
        labels = [str(c) for c in wide.columns]
        return wide.to_numpy(dtype=np.float64), labels

    if columns is not None:
        cols = [column(data, c, "columns") for c in columns]
        labels = [str(c) for c in columns]
    elif is_table(data):
        labels = column_names(data)
        cols = [column(data, c, "columns") for c in column_keys(data)]
    else:
        if isinstance(data, torch.Tensor):
            data = data.detach().cpu().numpy()
        try:
            arr = np.asarray(data, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise InputError(
                f"data: expected a table or an n_subjects × n_conditions array ({exc})"
            ) from exc
        if arr.ndim != 2:
            raise InputError(f"data: expected an n_subjects × n_conditions array, found shape {arr.shape}")
        cols = list(arr.T)
        labels = [str(i) for i in range(arr.shape[1])]
    vecs = [as_vector(c, f"columns ({lab!r})") for c, lab in zip(cols, labels)]
    lengths = {v.size for v in vecs}
    if len(lengths) != 1:
        raise InputError(
            f"columns: every condition needs one value per subject; found lengths "
            f"{dict(zip(labels, (v.size for v in vecs)))}"
        )
    return np.column_stack(vecs), labels


def _check_design(y: np.ndarray, labels: list[str]) -> None:
    n, k = y.shape
    if k < 2:
        raise InputError(f"condition: at least 2 conditions are needed, found {k} ({labels})")
    if n < 2:
        raise InputError(f"subject: at least 2 subjects are needed, found {n}")


def _residual_ms(y: np.ndarray) -> tuple[float, float]:
    """Subject × condition interaction mean square, the error term of the one-way RM design.

    ``SS_err = Σ_ij (y_ij - ȳ_i. - ȳ_.j + ȳ..)²`` on ``(n - 1)(k - 1)`` degrees of freedom.
    """
    n, k = y.shape
    resid = y - y.mean(axis=1, keepdims=True) - y.mean(axis=0, keepdims=True) + y.mean()
    df = (n - 1) * (k - 1)
    return float(np.sum(resid**2) / df), float(df)


@dataclass(frozen=True)
class RMAnovaResult(Result):
    """One-way repeated-measures ANOVA (sphericity assumed).

    ``statistic`` is ``F = MS_condition / MS_error`` on ``(df_num, df_den) = (k - 1, (n - 1)(k - 1))``
    degrees of freedom; ``effect_size`` is partial eta squared
    ``SS_condition / (SS_condition + SS_error) = F df_num / (F df_num + df_den)``.
    """

    statistic: float
    p_value: float
    df_num: float
    df_den: float
    effect_size: float
    effect_size_name: str
    n_subjects: int
    n_conditions: int
    conditions: tuple[str, ...] = field(default=(), metadata={"table": False})
    means: tuple[float, ...] = field(default=(), metadata={"table": False})


def rm_anova(
    data: Any,
    *,
    value: str | None = None,
    subject: str | None = None,
    condition: str | None = None,
    columns: Sequence[str] | None = None,
) -> RMAnovaResult:
    """One-way repeated-measures ANOVA over conditions (``statsmodels.stats.anova.AnovaRM``).

    See the module docstring for the wide and long input forms. The design must be complete and
    balanced (each subject measured once under each condition).
    """
    y, labels = _wide(data, value, subject, condition, columns)
    _check_design(y, labels)
    n, k = y.shape
    ms_err, _ = _residual_ms(y)
    if ms_err <= 1e-15 * max(float(np.var(y)), 1e-300):
        raise InputError(
            "data: the residual (subject × condition) variance is zero, so F is undefined; the "
            "conditions differ by exact constants on every subject"
        )
    pd = require("pandas", "eval")
    anova = require("statsmodels.stats.anova", "eval")
    long = pd.DataFrame(
        {
            "subject": np.repeat(np.arange(n), k),
            "condition": np.tile(np.asarray([f"c{j}" for j in range(k)]), n),
            "value": y.ravel(),
        }
    )
    table = anova.AnovaRM(long, "value", "subject", within=["condition"]).fit().anova_table
    row = table.loc["condition"]
    f, df1, df2 = float(row["F Value"]), float(row["Num DF"]), float(row["Den DF"])
    return RMAnovaResult(
        statistic=f,
        p_value=float(row["Pr > F"]),
        df_num=df1,
        df_den=df2,
        effect_size=f * df1 / (f * df1 + df2),
        effect_size_name="partial_eta_squared",
        n_subjects=n,
        n_conditions=k,
        conditions=tuple(labels),
        means=tuple(float(m) for m in y.mean(axis=0)),
    )


@dataclass(frozen=True)
class TukeyComparison(Result):
    """One pair of a Tukey HSD family: ``difference = mean_a - mean_b`` with its simultaneous interval.

    ``statistic`` is the studentized range ``q = |difference| / SE`` and ``p_value`` the family-wise
    adjusted p-value ``P(Q_{k, df} > q)``.
    """

    a: str
    b: str
    difference: float
    statistic: float
    p_value: float
    ci_low: float
    ci_high: float
    confidence_level: float


@dataclass(frozen=True)
class TukeyResult(Result):
    """All pairwise comparisons, plus the error mean square and degrees of freedom they used."""

    comparisons: tuple[TukeyComparison, ...] = field(metadata={"table": False})
    ms_error: float
    df_error: float
    repeated: bool

    def comparison(self, a: str, b: str) -> TukeyComparison:
        """The comparison of conditions ``a`` and ``b`` (sign flipped if stored as ``b - a``)."""
        for c in self.comparisons:
            if (c.a, c.b) == (a, b):
                return c
            if (c.a, c.b) == (b, a):
                return TukeyComparison(
                    a, b, -c.difference, c.statistic, c.p_value, -c.ci_high, -c.ci_low, c.confidence_level
                )
        names = sorted({c.a for c in self.comparisons} | {c.b for c in self.comparisons})
        raise InputError(f"a, b: no comparison of {a!r} with {b!r}; conditions are {names}")


def tukey_hsd(
    data: Any,
    *,
    value: str | None = None,
    subject: str | None = None,
    condition: str | None = None,
    columns: Sequence[str] | None = None,
    repeated: bool = True,
    confidence_level: float = 0.95,
) -> TukeyResult:
    """Tukey HSD comparisons of every pair of conditions.

    ``repeated=True`` (the follow-up to :func:`rm_anova`): the error term is the subject ×
    condition mean square ``MS_err`` on ``(n - 1)(k - 1)`` degrees of freedom, ``SE = sqrt(MS_err / n)``
    and ``q = |ȳ_a - ȳ_b| / SE`` is referred to the studentized range distribution
    (``scipy.stats.studentized_range``) with ``k`` means; the interval is
    ``ȳ_a - ȳ_b ± q_crit SE`` (Howell, Statistical Methods for Psychology, ch. 14).

    ``repeated=False`` treats the conditions as independent groups and defers to
    ``scipy.stats.tukey_hsd`` (Tukey-Kramer); ``subject`` is then not needed and, with a long
    table, groups may have unequal sizes.
    """
    cl = check_confidence_level(confidence_level)
    if repeated or subject is not None:
        y, labels = _wide(data, value, subject, condition, columns)
        _check_design(y, labels)
        groups = list(y.T)
    else:
        groups, labels = _independent_groups(data, value, condition, columns)

    k = len(groups)
    means = [float(g.mean()) for g in groups]
    comps: list[TukeyComparison] = []
    if repeated:
        n = y.shape[0]
        ms, df = _residual_ms(y)
        if ms <= 0.0:
            raise InputError("data: the residual (subject × condition) variance is zero; q is undefined")
        se = math.sqrt(ms / n)
        q_crit = float(stats.studentized_range.ppf(cl, k, df))
        for i, j in itertools.combinations(range(k), 2):
            diff = means[i] - means[j]
            q = abs(diff) / se
            comps.append(
                TukeyComparison(
                    labels[i], labels[j], diff, q, float(stats.studentized_range.sf(q, k, df)),
                    diff - q_crit * se, diff + q_crit * se, cl,
                )
            )
        return TukeyResult(tuple(comps), ms, df, True)

    sizes = [g.size for g in groups]
    df = float(sum(sizes) - k)
    ms = float(sum(np.sum((g - g.mean()) ** 2) for g in groups) / df)
    if ms <= 0.0:
        raise InputError("data: every group is constant; the within-group variance is zero")
    res = stats.tukey_hsd(*groups)
    ci = res.confidence_interval(cl)
    for i, j in itertools.combinations(range(k), 2):
        se = math.sqrt(ms / 2.0 * (1.0 / sizes[i] + 1.0 / sizes[j]))
        diff = float(res.statistic[i, j])
        comps.append(
            TukeyComparison(
                labels[i], labels[j], diff, abs(diff) / se, float(res.pvalue[i, j]),
                float(ci.low[i, j]), float(ci.high[i, j]), cl,
            )
        )
    return TukeyResult(tuple(comps), ms, df, False)


def _independent_groups(
    data: Any, value: str | None, condition: str | None, columns: Sequence[str] | None
) -> tuple[list[np.ndarray], list[str]]:
    if value is not None or condition is not None:
        if value is None or condition is None:
            raise InputError(
                f"value, condition: both are needed, found value={value!r}, condition={condition!r}"
            )
        y = as_vector(column(data, value, "value"), f"value ({value!r})")
        cond = np.asarray(column(data, condition, "condition")).astype(str)
        if cond.shape != y.shape:
            raise InputError(f"condition: expected {y.size} labels (one per row), found shape {cond.shape}")
        labels = list(dict.fromkeys(cond.tolist()))
        groups = [y[cond == lab] for lab in labels]
    else:
        if columns is None and not is_table(data):
            raise InputError(f"data: expected a table of groups, found {type(data).__name__}")
        names = list(columns) if columns is not None else column_keys(data)
        groups = [as_vector(column(data, c, "columns"), f"columns ({c!r})") for c in names]
        labels = [str(c) for c in names]
    if len(groups) < 2:
        raise InputError(f"condition: at least 2 groups are needed, found {len(groups)} ({labels})")
    small = [lab for lab, g in zip(labels, groups) if g.size < 2]
    if small:
        raise InputError(f"condition: every group needs at least 2 values; too few in {small}")
    return groups, labels
