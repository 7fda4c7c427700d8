"""Reports of study results: matplotlib figures (headless) written as PNG files.

* :mod:`~spectdl.report.figures`: image grids and line profiles.
* :mod:`~spectdl.report.plots`: box plots with paired tests, Bland–Altman, ROC curves, the NEMA
  sphere table.
* :mod:`~spectdl.report.png`: :func:`save_png` (atomic) and the headless figure they all draw on.
* :mod:`~spectdl.report.consistency`, :mod:`~spectdl.report.recon`: the data-consistency and
  reconstruction figures; :mod:`~spectdl.report.study`: the HTML report of a study run.
"""

from spectdl.report.figures import image_grid, line_profiles, profile_through
from spectdl.report.plots import bland_altman_plot, metric_boxplot, roc_plot, sphere_table
from spectdl.report.png import save_png

__all__ = [
    "bland_altman_plot",
    "image_grid",
    "line_profiles",
    "metric_boxplot",
    "profile_through",
    "roc_plot",
    "save_png",
    "sphere_table",
]
