"""The study report's tables (the whole report: test_studies_smoke)."""

from __future__ import annotations

import pandas as pd

from spectdl.report.study import _agreement_title, _case_table_metrics, _case_tables, _means_table


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


def _table1():
    rows = []
    for target, case, truth, net, osem in (("uptake_4", "b1", 4.1, 3.9, 3.0), ("uptake_5", "b2", 5.2, 5.0, 4.0)):
        for method, mean in (("truth", truth), ("spectnet", net), ("osem_oracle", osem)):
            for region, m in (("high", mean), ("background", mean / 4)):
                for metric, v in (("table1_mean", m), ("table1_sd", m / 10)):
                    rows.append({"case": case, "method": method, "metric": metric, "value": v, "region": region,
                                 "dataset": "brain", "level": "noisy", "table1_case": target})
    df = pd.DataFrame(rows + [{"case": "b1", "method": "spectnet", "metric": "mse", "value": 0.5, "region": "image",
                               "dataset": "brain", "level": "noisy", "table1_case": None}])
    paper = pd.DataFrame([{"table": "table1", "metric": "table1_mean", "method": m, "paper_value": v,
                           "where": f"dataset=brain;level=noisy;region=high;table1_case={t}"}
                          for t, m, v in (("uptake_4", "spectnet", 3.52), ("uptake_4", "osem_oracle", 3.27),
                                          ("uptake_5", "spectnet", 4.43))])
    summary = {"case_tables": [{"title": "Table 1", "column": "table1_case", "column_title": "target",
                                "mean": "table1_mean", "sd": "table1_sd", "paper_table": "table1",
                                "methods": ["truth", "spectnet", "osem_oracle"], "regions": ["high", "background"]}]}
    return df, paper, summary


def test_case_table_shows_each_case_and_region_beside_the_paper():
    df, paper, summary = _table1()
    [(title, html)] = _case_tables(df, paper, summary)
    assert title == "Table 1 (brain, noisy)"
    assert ("<th>target</th><th>phantom case</th><th>region</th><th>truth</th><th>spectnet</th>"
            "<th>spectnet (paper)</th><th>osem_oracle</th><th>osem_oracle (paper)</th>") in html
    assert html.count("<tr") - 1 == 4  # two cases × two regions, never averaged together
    assert ("<td>uptake_4</td><td>b1</td><td>high</td><td>4.100 (0.410)</td><td>3.900 (0.390)</td><td>3.520</td>"
            "<td>3.000 (0.300)</td><td>3.270</td>") in html
    assert ("<td>uptake_5</td><td>b2</td><td>background</td><td>1.300 (0.130)</td><td>1.250 (0.125)</td>"
            "<td></td>") in html
    assert "<td>uptake_5</td><td>b2</td><td>high</td><td>5.200 (0.520)</td><td>5.000 (0.500)</td><td>4.430</td>" \
           "<td>4.000 (0.400)</td><td></td>" in html
    # The generic means table leaves the per-case rows out; without a spec it has them.
    means = _means_table(df, skip=_case_table_metrics(summary))
    assert "table1_mean" not in means and "<td>mse</td>" in means
    assert "table1_mean" in _means_table(df)
    assert _case_tables(df, paper, {}) == []


def test_agreement_title_follows_the_reference_of_the_plots():
    assert _agreement_title({"bland_altman": [{"b": "reference"}]}) == "Agreement with full dose"
    assert _agreement_title({}) == "Agreement with full dose"
    assert _agreement_title({"bland_altman": [{"b": "iy"}, {"b": "iy"}]}) == "Agreement with iy"
    assert _agreement_title({"bland_altman": [{"b": "iy"}], "agreement_title": "Agreement with iY PVC"}) == \
        "Agreement with iY PVC"
