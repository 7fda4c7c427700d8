"""Normal database and perfusion scores: 17-segment scores, SSS, extent and a TPD-like deficit.

These are open re-implementations of what clinical software (Cedars-Sinai QPS) reports; they are
**not** QPS: the normal limits come from the user's own normal cases, and the thresholds below are
ours, so the numbers are comparable between methods scored here, not with QPS.

Definitions, for a polar map ``x`` (per cent of its maximum, :mod:`spectdl.cardiac.polar`) against
a normal database of mean ``μ`` and standard deviation ``σ`` (per sample and per segment):

* **Segment score** (0..4) of segment ``s`` with value ``x_s``: the relative decrement is
  ``δ_s = (μ_s − x_s)/μ_s`` and the deviation ``z_s = (μ_s − x_s)/σ_s``. The score is 0 unless
  ``z_s ≥ z_segment`` (default 2: outside the normal limits); then it is the number of the
  ``decrements`` (default 10 %, 20 %, 35 %, 50 %) that ``δ_s`` reaches, so a wall at half its
  normal counts scores 4 and a statistically abnormal wall within 10 % of normal scores 0.
* **SSS** (summed stress score) ``= Σ_s score_s`` over the 17 segments (0..68); **SS%** ``=
  100·SSS/68``; ``sss_lad``, ``sss_lcx``, ``sss_rca``: the sums over each territory's segments
  (:data:`spectdl.phantoms.aha.TERRITORIES`).
* **Extent** (% of the LV): the area-weighted share of abnormal polar samples, each segment
  weighing 1/17 (:meth:`PolarMap.sample_weights`). A sample is abnormal when ``z_i ≥ z_extent``
  (default 2.5) and its decrement ``δ_i`` reaches the first of the ``decrements`` (10 %): blur
  spreads a defect's edge into its neighbours, where the deviation is significant but small.
* **TPD** (total perfusion deficit, %): ``100·Σ_i w_i·δ_i·[sample i abnormal]`` with ``δ_i``
  clipped to [0, 1]: extent weighted by severity, so an absent wall over 10 % of the LV gives 10 %.
* **SSS category** (the usual clinical bands): normal < 4, mildly abnormal 4–8, moderately
  abnormal 9–13, severely abnormal > 13.

Standard deviations below ``min_sd`` (per cent of the maximum, default 2) are raised to it, so that
a small or very uniform normal database does not call noise a defect.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from spectdl.cardiac.polar import PolarMap
from spectdl.errors import InputError
from spectdl.phantoms.aha import N_SEGMENTS, TERRITORIES

__all__ = ["DECREMENTS", "SSS_CATEGORIES", "NormalDatabase", "perfusion_indices", "segment_scores", "sss_category"]

#: Relative decrements from the normal mean that raise a segment's score by one.
DECREMENTS = (0.10, 0.20, 0.35, 0.50)
#: ``(name, lowest SSS)`` of the clinical SSS bands.
SSS_CATEGORIES = (("normal", 0), ("mildly abnormal", 4), ("moderately abnormal", 9), ("severely abnormal", 14))


def _array(name: str, v, shape: tuple[int, ...]) -> np.ndarray:
    try:
        a = np.asarray(v, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name}: expected numbers of shape {shape}, found {type(v).__name__}") from exc
    if a.shape != shape or not np.isfinite(a).all():
        raise InputError(f"{name}: expected finite numbers of shape {shape}, found shape {a.shape}")
    return a


@dataclass(frozen=True, eq=False)
class NormalDatabase:
    """Mean and SD of normal polar maps, per sample (``[K·J + A]``, :meth:`PolarMap.values`) and per
    segment (``[17]``), in per cent of each map's maximum.

    Attributes:
        layout: ``(K, J, A)`` of the maps it was built from; a map scored against it must match.
        sample_mean, sample_sd, segment_mean, segment_sd: the statistics (SD over maps, ``ddof=1``,
            raised to ``min_sd``).
        n: the number of normal maps.
        min_sd: the SD floor, per cent of the maximum.
    """

    layout: tuple[int, int, int]
    sample_mean: np.ndarray
    sample_sd: np.ndarray
    segment_mean: np.ndarray
    segment_sd: np.ndarray
    n: int
    min_sd: float = 2.0

    def __post_init__(self) -> None:
        layout = tuple(int(x) for x in self.layout)
        if len(layout) != 3 or min(layout) < 1:
            raise InputError(f"layout: expected (K, J, A) of positive integers, found {self.layout!r}")
        m = layout[0] * layout[1] + layout[2]
        object.__setattr__(self, "layout", layout)
        for k, shape in (("sample_mean", (m,)), ("sample_sd", (m,)), ("segment_mean", (N_SEGMENTS,)),
                         ("segment_sd", (N_SEGMENTS,))):
            object.__setattr__(self, k, _array(k, getattr(self, k), shape))
        if not (self.sample_mean > 0).all() or not (self.segment_mean > 0).all():
            raise InputError("NormalDatabase: the normal means must be positive (per cent of the maximum)")
        if not (self.sample_sd > 0).all() or not (self.segment_sd > 0).all():
            raise InputError("NormalDatabase: the normal SDs must be positive")

    @classmethod
    def from_maps(cls, maps: Sequence[PolarMap], *, min_sd: float = 2.0) -> "NormalDatabase":
        """The database of ``maps`` (at least 2, all of one layout)."""
        maps = list(maps)
        if len(maps) < 2:
            raise InputError(f"maps: expected at least 2 normal polar maps, found {len(maps)}")
        bad = [i for i, m in enumerate(maps) if not isinstance(m, PolarMap)]
        if bad:
            raise InputError(f"maps: entries {bad} are not PolarMap (from spectdl.cardiac.polar_map)")
        layouts = {m.layout for m in maps}
        if len(layouts) != 1:
            raise InputError(f"maps: expected one layout (K, J, A), found {sorted(layouts)}")
        if not (isinstance(min_sd, (int, float)) and math.isfinite(min_sd) and min_sd > 0):
            raise InputError(f"min_sd: expected a positive number (per cent of the maximum), found {min_sd!r}")
        v = np.stack([m.values() for m in maps])
        s = np.stack([m.segments() for m in maps])
        return cls(layouts.pop(), v.mean(0), np.maximum(v.std(0, ddof=1), min_sd), s.mean(0),
                   np.maximum(s.std(0, ddof=1), min_sd), len(maps), float(min_sd))

    def to_dict(self) -> dict:
        """JSON-ready form (:meth:`from_dict` reads it back)."""
        return {"layout": list(self.layout), "n": self.n, "min_sd": self.min_sd,
                "segment_mean": self.segment_mean.tolist(), "segment_sd": self.segment_sd.tolist(),
                "sample_mean": self.sample_mean.tolist(), "sample_sd": self.sample_sd.tolist()}

    @classmethod
    def from_dict(cls, d: Mapping) -> "NormalDatabase":
        missing = [k for k in ("layout", "n", "segment_mean", "segment_sd", "sample_mean", "sample_sd") if k not in d]
        if missing:
            raise InputError(f"normal database: missing fields {missing}")
        return cls(tuple(d["layout"]), d["sample_mean"], d["sample_sd"], d["segment_mean"], d["segment_sd"],
                   int(d["n"]), float(d.get("min_sd", 2.0)))


def _check(pm, db) -> None:
    if not isinstance(pm, PolarMap):
        raise InputError(f"polar map: expected a PolarMap (from spectdl.cardiac.polar_map), found {type(pm).__name__}")
    if not isinstance(db, NormalDatabase):
        raise InputError(f"normals: expected a NormalDatabase, found {type(db).__name__}")
    if pm.layout != db.layout:
        raise InputError(f"polar map: layout {pm.layout} (K, J, A) does not match the normal database's {db.layout}")


def _check_thresholds(decrements: Sequence[float]) -> tuple[float, ...]:
    d = tuple(float(x) for x in decrements)
    if len(d) != 4 or not all(0 < a < b <= 1 for a, b in zip(d, d[1:])) or not 0 < d[0]:
        raise InputError(f"decrements: expected 4 increasing fractions in (0, 1], found {decrements!r}")
    return d


def segment_scores(pm: PolarMap, db: NormalDatabase, *, z_segment: float = 2.0,
                   decrements: Sequence[float] = DECREMENTS) -> np.ndarray:
    """``[17]`` integer scores 0..4 of the segments (module docstring)."""
    _check(pm, db)
    dec = _check_thresholds(decrements)
    x = pm.segments()
    drop = db.segment_mean - x
    z = drop / db.segment_sd
    rel = drop / db.segment_mean
    score = sum((rel >= d).astype(np.int64) for d in dec)
    return np.where(z >= z_segment, score, 0)


def perfusion_indices(pm: PolarMap, db: NormalDatabase, *, z_segment: float = 2.0, z_extent: float = 2.5,
                      decrements: Sequence[float] = DECREMENTS) -> dict[str, float]:
    """``sss``, ``ss_percent``, ``extent`` (%), ``tpd`` (%) and ``sss_<territory>`` of ``pm``
    against ``db`` (module docstring)."""
    scores = segment_scores(pm, db, z_segment=z_segment, decrements=decrements)
    drop = db.sample_mean - pm.values()
    rel = drop / db.sample_mean
    abnormal = (drop / db.sample_sd >= z_extent) & (rel >= _check_thresholds(decrements)[0])
    w = pm.sample_weights()
    sss = int(scores.sum())
    out = {"sss": float(sss), "ss_percent": 100.0 * sss / (4 * N_SEGMENTS),
           "extent": 100.0 * float((w * abnormal).sum()),
           "tpd": 100.0 * float((w * abnormal * np.clip(rel, 0.0, 1.0)).sum())}
    out.update({f"sss_{name.lower()}": float(scores[[s - 1 for s in segs]].sum()) for name, segs in TERRITORIES.items()})
    return out


def sss_category(sss: float) -> str:
    """The clinical band of a summed stress score (module docstring)."""
    if isinstance(sss, bool) or not isinstance(sss, (int, float, np.integer, np.floating)) or not sss >= 0:
        raise InputError(f"sss: expected a non-negative score, found {sss!r}")
    name = SSS_CATEGORIES[0][0]
    for band, low in SSS_CATEGORIES:
        if sss >= low:
            name = band
    return name
