"""The common shape of ``spectdl.stats`` results and small numeric checks shared by its modules.

Reading tables and value arrays is public, in :mod:`spectdl.stats.tables`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

from spectdl.errors import InputError


def check_confidence_level(confidence_level: float) -> float:
    cl = float(confidence_level)
    if not 0.0 < cl < 1.0:
        raise InputError(f"confidence_level: expected a value in (0, 1), e.g. 0.95, found {confidence_level}")
    return cl


class Result:
    """Mixin for the frozen result dataclasses: ``to_dict()`` gives the scalar fields for a table row."""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            if f.metadata.get("table", True):
                out[f.name] = getattr(self, f.name)
        return out


def results_frame(results: Sequence[Result] | Mapping[str, Result]):
    """A pandas DataFrame with one row per result (index: the mapping keys, if a mapping is given)."""
    from spectdl.errors import require

    pd = require("pandas", "eval")
    if isinstance(results, Mapping):
        return pd.DataFrame([r.to_dict() for r in results.values()], index=list(results.keys()))
    return pd.DataFrame([r.to_dict() for r in results])


def z_quantile(confidence_level: float) -> float:
    """The two-sided standard-normal quantile ``z_{1 - α/2}``."""
    from scipy import stats

    return float(stats.norm.ppf(0.5 + confidence_level / 2.0))


def finite_or_raise(value: float, what: str) -> float:
    """Guard against a NaN leaking out of a library call on degenerate input."""
    v = float(value)
    if math.isnan(v):
        raise InputError(f"{what} is undefined for this input (the library returned NaN)")
    return v
