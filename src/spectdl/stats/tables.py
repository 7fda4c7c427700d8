"""Per-case tables and value arrays, checked: the input side of every ``spectdl.stats`` function.

Every public function in ``spectdl.stats`` accepts either a table plus column names,
``f(df, a="psnr_input", b="psnr_enhanced")``, or the values themselves, ``f(x, y)``. A table is a
pandas DataFrame or any mapping of column name to values; values are anything ``numpy.asarray``
reads (lists, arrays, pandas Series, CPU or GPU torch tensors). The helpers here turn either form
into finite 1-D float (or boolean) arrays with errors that name the argument; they are public so
that reports and figures read tables exactly as the statistics do.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from spectdl.errors import InputError

__all__ = [
    "as_binary",
    "as_vector",
    "column",
    "column_keys",
    "column_names",
    "is_table",
    "paired_vectors",
    "resolve_pair",
]


def is_table(data: Any) -> bool:
    """True for a mapping of columns or a pandas DataFrame (checked without importing pandas)."""
    if isinstance(data, Mapping):
        return True
    pd = sys.modules.get("pandas")
    return pd is not None and isinstance(data, pd.DataFrame)


def column_keys(data: Any) -> list[Any]:
    """The column keys of a mapping or DataFrame, in order."""
    return list(data.keys() if isinstance(data, Mapping) else data.columns)


def column_names(data: Any) -> list[str]:
    return [str(c) for c in column_keys(data)]


def column(data: Any, name: str, arg: str) -> Any:
    """``data[name]`` with an error that lists the columns that do exist."""
    if not is_table(data):
        raise InputError(
            f"data: column name {name!r} was given for {arg!r}, so data must be a pandas DataFrame "
            f"or a mapping of column name to values; found {type(data).__name__}"
        )
    try:
        return data[name]
    except (KeyError, IndexError, TypeError):
        raise InputError(
            f"{arg}: column {name!r} not found in data; available columns: {column_names(data)}"
        ) from None


def as_vector(values: Any, arg: str, *, dtype: type = np.float64, min_length: int = 1) -> np.ndarray:
    """A finite 1-D numpy array of ``dtype`` with at least ``min_length`` entries, or ``InputError``."""
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    pd = sys.modules.get("pandas")
    if pd is not None and isinstance(values, (pd.Series, pd.Index)) and values.hasnans:
        # nullable pandas dtypes hold pd.NA, which numpy cannot cast; NaN gets the usual message below
        values = values.astype(object).where(values.notna(), np.nan)
    try:
        arr = np.asarray(values)
    except Exception as exc:  # ragged lists and other oddities
        raise InputError(f"{arg}: could not be read as a 1-D array of numbers ({exc})") from exc
    if arr.ndim != 1:
        raise InputError(f"{arg}: expected a 1-D sequence of per-case values, found shape {arr.shape}")
    if arr.size < min_length:
        what = "is empty" if arr.size == 0 else f"has {arr.size} value(s)"
        raise InputError(f"{arg}: {what}; at least {min_length} value(s) are needed")
    try:
        out = arr.astype(dtype)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{arg}: expected numbers, found values of type {arr.dtype} ({exc})") from exc
    if out.dtype.kind == "f":
        bad = ~np.isfinite(out)
        if bad.any():
            idx = np.flatnonzero(bad)
            raise InputError(
                f"{arg}: {idx.size} NaN or infinite value(s), first at position {int(idx[0])}; "
                "drop or impute the missing cases before the analysis"
            )
    return out


def as_binary(values: Any, arg: str) -> np.ndarray:
    """A boolean 1-D array from bools or the numbers 0 and 1, or ``InputError``."""
    arr = as_vector(values, arg)
    found = np.unique(arr)
    if not np.isin(found, (0.0, 1.0)).all():
        shown = found[:6].tolist()
        raise InputError(f"{arg}: expected binary values (True/False or 0/1), found the values {shown}")
    return arr == 1.0


def resolve_pair(
    data: Any, a: Any, b: Any, names: tuple[str, str] = ("a", "b")
) -> tuple[Any, Any, str, str]:
    """Return the two raw value sequences and their labels from ``(table, col, col)`` or ``(x, y)``.

    Accepted calls: ``f(table, "col_a", "col_b")``, ``f(x, y)`` and ``f(None, x, y)``.
    """
    na, nb = names
    if isinstance(a, str) or isinstance(b, str):
        if not (isinstance(a, str) and isinstance(b, str)):
            raise InputError(f"{na}, {nb}: give two column names or two arrays, found {a!r} and {b!r}")
        return column(data, a, na), column(data, b, nb), a, b
    if data is not None and a is not None and b is None:
        return data, a, na, nb
    if data is None and a is not None and b is not None:
        return a, b, na, nb
    raise InputError(
        f"expected f(table, {na}='column', {nb}='column') or f({na}_values, {nb}_values); "
        f"found data={type(data).__name__}, {na}={type(a).__name__}, {nb}={type(b).__name__}"
    )


def paired_vectors(
    data: Any, a: Any, b: Any, names: tuple[str, str] = ("a", "b"), min_length: int = 2
) -> tuple[np.ndarray, np.ndarray, str, str]:
    """Two finite float arrays of equal length (the paired cases), with their labels."""
    ra, rb, la, lb = resolve_pair(data, a, b, names)
    x = as_vector(ra, names[0] if la == names[0] else f"{names[0]} ({la!r})")
    y = as_vector(rb, names[1] if lb == names[1] else f"{names[1]} ({lb!r})")
    if x.size != y.size:
        raise InputError(
            f"{names[0]}, {names[1]}: paired samples must have equal lengths (one value per case), "
            f"found {x.size} and {y.size}"
        )
    if x.size < min_length:
        raise InputError(f"{names[0]}, {names[1]}: {x.size} pair(s) given; at least {min_length} are needed")
    return x, y, la, lb
