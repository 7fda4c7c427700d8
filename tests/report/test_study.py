"""The study report's tables (the whole report: test_studies_smoke)."""

from __future__ import annotations

import pandas as pd

from spectdl.report.study import _means_table


def test_means_never_pool_rows_of_different_conventions_or_spaces():
    rows = [{"case": c, "method": "input", "metric": "ssim", "value": v, "level": 0.5, "space": s, "region": "field",
             "convention": conv}
            for c, v in (("a", 0.6), ("b", 0.8))
            for s, conv, v in (("projection", "reference_max", v), ("projection", "reference_max_c0.01_0.02", v / 2),
                               ("image", "reference_max", v + 0.1))]
    html = _means_table(pd.DataFrame(rows))
    assert html.count("<tr") - 1 == 3  # the header, then one row per (space, convention)
    for selection, mean_sd in (("0.5 / projection / field / reference_max", "0.700 ± 0.141"),
                               ("0.5 / projection / field / reference_max_c0.01_0.02", "0.350 ± 0.071"),
                               ("0.5 / image / field / reference_max", "0.800 ± 0.141")):
        assert f"<td>{selection}</td><td>ssim</td><td>{mean_sd}</td>" in html
