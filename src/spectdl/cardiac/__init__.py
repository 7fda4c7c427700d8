"""Myocardial perfusion analysis: LV axis and reorientation, polar maps, normal database, scores.

Above :mod:`spectdl.recon` in the layer order: it reads reconstructed (or phantom) volumes in the
frame of :mod:`spectdl.phantoms.cardiac` (+x patient left, +y anterior, +z superior). Every step is
an open re-implementation of what clinical software such as Cedars-Sinai QPS/QGS does; none of it
is QPS, and its indices are comparable between methods scored here, not with QPS's numbers.

* :mod:`~spectdl.cardiac.orientation`: :func:`estimate_lv_axis` (fitted ellipsoid of the thresholded
  myocardium), :func:`reorient` to short axis and vertical/horizontal long axis, :func:`axis_error_deg`.
* :mod:`~spectdl.cardiac.polar`: :func:`polar_map` (maximum-count circumferential profiles on the 17
  AHA segments plus the apex), :func:`segment_labels`.
* :mod:`~spectdl.cardiac.scores`: :class:`NormalDatabase`, :func:`segment_scores` (0..4),
  :func:`perfusion_indices` (SSS, SS%, extent, TPD-like deficit), :func:`sss_category`.
* :mod:`~spectdl.cardiac.measures`: :func:`lv_measures` (cavity and myocardial volume, wall thickness).
"""

from spectdl.cardiac.measures import lv_measures
from spectdl.cardiac.polar import PolarMap, polar_map, segment_labels
from spectdl.cardiac.orientation import LVGeometry, axis_error_deg, estimate_lv_axis, lv_frame, lv_geometry_from_phantom, reorient
from spectdl.cardiac.scores import (DECREMENTS, SSS_CATEGORIES, NormalDatabase, perfusion_indices, segment_scores,
                                    sss_category)

__all__ = ["DECREMENTS", "SSS_CATEGORIES", "LVGeometry", "NormalDatabase", "PolarMap", "axis_error_deg",
           "estimate_lv_axis", "lv_frame", "lv_geometry_from_phantom", "lv_measures", "perfusion_indices",
           "polar_map", "reorient", "segment_labels", "segment_scores", "sss_category"]
