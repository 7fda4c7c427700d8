"""Statistics for per-case evaluation tables: paired tests, agreement, correlation, ROC, reader scores.

Every function takes a table (pandas DataFrame or mapping of columns) plus column names, or the
value arrays themselves, and returns a frozen result dataclass with the statistic, p-value,
effect size and confidence interval. ``results_frame`` turns a list of results into a DataFrame.
:mod:`spectdl.stats.tables` reads tables and value arrays the way every function here does.
The computations defer to scipy.stats, statsmodels and scikit-learn (the ``eval`` extra).
"""

from spectdl.stats._data import results_frame
from spectdl.stats.agreement import BlandAltmanResult, bland_altman
from spectdl.stats.anova import RMAnovaResult, TukeyComparison, TukeyResult, rm_anova, tukey_hsd
from spectdl.stats.bootstrap import BootstrapResult, bootstrap_ci
from spectdl.stats.correlation import (
    CorrelationResult,
    LinearFitResult,
    correlation,
    linear_fit,
    pearson,
    spearman,
)
from spectdl.stats.diagnostic import (
    DiagnosticResult,
    McNemarResult,
    Proportion,
    diagnostic_accuracy,
    mcnemar_from_table,
    mcnemar_test,
    wilson_interval,
)
from spectdl.stats.likert import LikertSummary, likert_summary
from spectdl.stats.paired import PairedTestResult, hodges_lehmann, paired_t_test, paired_test, wilcoxon_test
from spectdl.stats.roc import RocResult, delong_test, roc_analysis

__all__ = [
    "BlandAltmanResult",
    "BootstrapResult",
    "CorrelationResult",
    "DiagnosticResult",
    "LikertSummary",
    "LinearFitResult",
    "McNemarResult",
    "PairedTestResult",
    "Proportion",
    "RMAnovaResult",
    "RocResult",
    "TukeyComparison",
    "TukeyResult",
    "bland_altman",
    "bootstrap_ci",
    "correlation",
    "delong_test",
    "diagnostic_accuracy",
    "hodges_lehmann",
    "likert_summary",
    "linear_fit",
    "mcnemar_from_table",
    "mcnemar_test",
    "paired_t_test",
    "paired_test",
    "pearson",
    "results_frame",
    "rm_anova",
    "roc_analysis",
    "spearman",
    "tukey_hsd",
    "wilcoxon_test",
    "wilson_interval",
]
