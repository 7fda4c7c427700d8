"""Reports of study results: matplotlib figures (headless) written as PNG files."""

from spectdl.report.figures import (
    bland_altman_plot,
    image_grid,
    line_profiles,
    metric_boxplot,
    profile_through,
    roc_plot,
    save_png,
    sphere_table,
)

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
