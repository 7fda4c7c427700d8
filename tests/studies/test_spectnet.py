"""SPECTnet's evaluation helpers on synthetic per-case rows with a known answer (the whole study:
test_studies_smoke)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

import spectdl
from spectdl.studies import spectnet as sn
from spectdl.studies.config import resolve_config
from spectdl.studies.results import evaluate_claim

YAML = Path(spectdl.__file__).parent / "configs" / "studies" / "spectnet.yaml"


def _cfg():
    return resolve_config(sn.SpectnetConfig, YAML, scale="smoke")


def _rows(errors):
    """``errors[(dataset, level)] = {method: [(mse, high mae) per case]}`` as per-case metric rows."""
    rows = []
    for (d, lv), by in errors.items():
        for m, per_case in by.items():
            for i, (mse, mae) in enumerate(per_case):
                cols = {"case": f"{d[0]}{i}", "method": m, "dataset": d, "level": lv}
                rows += [{**cols, "metric": "mse", "region": "image", "value": mse},
                         {**cols, "metric": "uptake_mae", "region": "high", "value": mae},
                         {**cols, "metric": "uptake_mae", "region": "background", "value": mae / 10}]
    return rows


def test_generalisation_gaps_are_paired_differences_beside_the_in_distribution_gap():
    # SPECTnet trails OSEM everywhere; on concave heads by more than in distribution, on cold lesions by less.
    rows = _rows({("brain", "noisy"): {"spectnet": [(2.0, 1.0), (4.0, 3.0)], "osem": [(1.0, 1.0), (1.0, 1.0)]},
                  ("concave", "noisy"): {"spectnet": [(5.0, 2.0), (7.0, 2.0)], "osem": [(1.0, 1.0), (3.0, 1.0)]},
                  ("cold_lesion", "noisy"): {"spectnet": [(1.5, 1.0), (1.5, 1.0)], "osem": [(1.0, 1.0), (1.0, 1.0)]}})
    gaps = sn._gap_rows(rows, ["brain", "concave", "cold_lesion"], ["noisy"])
    value = {(r["method"], r["dataset"], r["metric"]): r["value"] for r in gaps}
    assert all(r["case"] == "all" for r in gaps)
    assert value[("spectnet", "brain", "mse_gap_to_osem")] == pytest.approx(2.0)     # mean of (1, 3)
    assert value[("spectnet", "brain", "mse_ratio_to_osem")] == pytest.approx(3.0)   # 3 / 1
    assert value[("spectnet", "concave", "mse_gap_to_osem")] == pytest.approx(4.0)
    assert value[("spectnet", "concave", "mse_ratio_to_osem")] == pytest.approx(3.0)  # 6 / 2
    assert value[("spectnet", "concave", "high_mae_gap_to_osem")] == pytest.approx(1.0)
    assert value[("spectnet_in_distribution", "concave", "mse_gap_to_osem")] == pytest.approx(2.0)
    assert ("spectnet_in_distribution", "brain", "mse_gap_to_osem") not in value
    # The concave claim compares against the in-distribution gap, not against zero.
    df = pd.DataFrame(rows + gaps)
    concave = next(c for c in sn.CLAIMS if c.where.get("dataset") == "concave" and c.where["level"] == "noisy")
    assert evaluate_claim(df, concave)["holds"] is True
    cold = type(concave)(concave.text, concave.metric, concave.method, concave.baseline, concave.higher,
                         {**concave.where, "dataset": "cold_lesion"})
    res = evaluate_claim(df, cold)
    assert res["holds"] is False and res["mean_difference"] == pytest.approx(0.5 - 2.0)
    # The note states the same numbers.
    cfg = _cfg()
    note = " ".join(sn._gap_notes(cfg, rows + gaps))
    assert "in distribution +2 / +1" in note and "concave +4 / +1 (mse gap above the in-distribution one)" in note
    assert "cold_lesion +0.5 / +0 (no gap above the in-distribution one)" in note


def test_osem_note_is_built_from_the_oracle_rows_against_the_paper():
    cfg = _cfg()
    stronger = _rows({("brain", lv): {"osem_oracle": [(1.0, 0.8), (1.0, 1.0)]} for lv in ("noise_free", "noisy")})
    note = sn._osem_note(cfg, stronger)
    assert "high 0.900 (noise_free), 0.900 (noisy) against the paper's 1.72" in note
    assert "background 0.090 (noise_free), 0.090 (noisy) against the paper's 0.1" in note
    assert "stronger baseline than the paper's" in note
    assert "background MAE is below the paper's at noise_free, noisy" in note
    mixed = _rows({("brain", "noise_free"): {"osem_oracle": [(1.0, 1.0)]},
                   ("brain", "noisy"): {"osem_oracle": [(1.0, 2.0)]}})
    note = sn._osem_note(cfg, mixed)  # background 0.1 and 0.2: neither below the paper's 0.10
    assert "at noise_free only" in note and "background MAE is not below the paper's at noise_free, noisy" in note
    weaker = _rows({("brain", lv): {"osem_oracle": [(1.0, 3.0)]} for lv in ("noise_free", "noisy")})
    assert "no stronger a baseline" in sn._osem_note(cfg, weaker)


def test_consistency_note_lists_flagged_and_merely_inconsistent_methods():
    cfg = _cfg()
    checks = [{"dataset": "brain", "level": "noisy", "method": "spectnet", "deviance": 1.0, "reference_deviance": 0.1,
               "looks_good": True, "flagged": True},
              {"dataset": "brain", "level": "noisy", "method": "fbp", "deviance": 1.0, "reference_deviance": 0.1,
               "looks_good": False, "flagged": False},
              {"dataset": "brain", "level": "noisy", "method": "osem_oracle", "deviance": 0.1,
               "reference_deviance": 0.1, "looks_good": True, "flagged": False}]
    note = sn._consistency_note(cfg, checks)
    assert "at most 1.1× OSEM's" in note and "above 2× the largest" in note and "counting-noise floor" in note
    assert "Flagged: spectnet (1: brain/noisy)." in note
    assert "so not flagged (their image metrics already show it): fbp (1: brain/noisy)." in note
    assert "osem_oracle" not in note
