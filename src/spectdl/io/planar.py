"""Planar whole-body (or static) NM scans: anterior and posterior views with pixel spacing and counts.

Each view is returned in spectdl's 2-D layout ``[X, Y]``: X along the image rows (the column
index, across the patient), Y along the image columns (the row index, head to feet as stored).
So ``view[x, y] == pixel_array[y, x]``; ``view.T`` shows the image as a viewer does.

Which frame is which view: the View Code Sequence (0054,0220) when present, then the words
ANT/POST in Image ID, Series Description or Image Comments, then the detector order
(detector 1 anterior, detector 2 posterior, the usual dual-head whole-body convention), which
``view_names`` can override. Secondary Capture files with Modality NM are accepted (the NEMA NM1
bone scan is one).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from spectdl.errors import InputError
from spectdl.io import _dicom as dcm


@dataclass(frozen=True)
class PlanarScan:
    """Planar views of one acquisition.

    Attributes:
        views: name (``"anterior"``, ``"posterior"``, ...) → counts ``[X, Y]`` float32.
        pixel_spacing_mm: ``(dx, dy)``: across (X) and along (Y) the image.
        frame_duration_s: Actual Frame Duration, when recorded.
        counts_accumulated: Counts Accumulated (0018,0070), when recorded.
        source, identity, meta: as for the other readers.
    """

    views: dict[str, torch.Tensor]
    pixel_spacing_mm: tuple[float, float]
    frame_duration_s: float | None = None
    counts_accumulated: float | None = None
    source: str = ""
    identity: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def counts(self, view: str) -> float:
        """Total counts of one view."""
        if view not in self.views:
            raise InputError(f"view: {view!r} not in this scan; expected one of {sorted(self.views)}")
        return float(self.views[view].sum())

    def geometric_mean(self) -> torch.Tensor:
        """``sqrt(A · P')`` with the posterior mirrored across X (the conjugate-view image)."""
        if "anterior" not in self.views or "posterior" not in self.views:
            raise InputError(f"views: {sorted(self.views)}; the geometric mean needs 'anterior' and "
                             "'posterior'")
        return torch.sqrt(self.views["anterior"] * self.views["posterior"].flip(0))


def _view_from_codes(item) -> str | None:
    for c in item.get("ViewCodeSequence") or []:
        meaning = str(c.get("CodeMeaning", "") or "").lower()
        if "anterior" in meaning or meaning in ("ap", "a-p"):
            return "anterior"
        if "posterior" in meaning or meaning in ("pa", "p-a"):
            return "posterior"
    return None


def _view_from_text(ds) -> str | None:
    keys = ("ImageID", "SeriesDescription", "ImageComments")
    text = " ".join(str(ds.get(k, "") or "") for k in keys).upper()
    ant, post = "ANT" in text, "POST" in text
    if ant != post:
        return "anterior" if ant else "posterior"
    return None


def read_planar(
    path: str | Path,
    *,
    view_names: Sequence[str] | None = None,
    pixel_spacing_mm: tuple[float, float] | None = None,
) -> PlanarScan:
    """Read a planar NM image (whole-body or static; NM or Secondary Capture with Modality NM).

    Args:
        path: the DICOM file.
        view_names: names for detector 1, 2, ... when the file does not say which view each is
            (default ``("anterior", "posterior")``).
        pixel_spacing_mm: ``(dx, dy)`` when the file has no Pixel Spacing (some secondary captures).
    """
    path = Path(path)
    ds = dcm.read_dataset(path, what="planar file")
    mod = str(ds.get("Modality", "") or "")
    if mod != "NM":
        raise InputError(f"{path}: {dcm.tag_name('Modality')} is {mod!r}; expected 'NM' (a planar scan)")
    itype = [str(v).upper() for v in (ds.get("ImageType") or [])]
    if len(itype) > 2 and "TOMO" in itype[2]:
        raise InputError(f"{path}: {dcm.tag_name('ImageType')} value 3 is {itype[2]!r}; expected a planar "
                         f"image (WHOLE BODY or STATIC); use read_projections for TOMO")
    if pixel_spacing_mm is None:
        sp = ds.get("PixelSpacing") or ds.get("ImagerPixelSpacing")
        if sp is None:
            raise InputError(f"{path}: {dcm.tag_name('PixelSpacing')} is missing; pass pixel_spacing_mm=")
        dy, dx = dcm.floats(sp, 2, path, "PixelSpacing")  # (between rows, between columns)
    else:
        dx, dy = (float(v) for v in pixel_spacing_mm)
    if not (dx > 0 and dy > 0):
        raise InputError(f"{path}: pixel spacing ({dx}, {dy}) mm; expected positive values")
    pixels = dcm.pixel_array(ds, path)
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    if pixels.ndim == 2:
        pixels = pixels[None]
    if pixels.ndim != 3 or pixels.shape[0] != n_frames:
        raise InputError(f"{path}: pixel data has shape {pixels.shape}; expected {n_frames} grey frames")
    slope = float(ds.get("RescaleSlope", 1.0) or 1.0)
    inter = float(ds.get("RescaleIntercept", 0.0) or 0.0)

    dv = ds.get("DetectorVector")
    detectors = [1] * n_frames if dv is None else [int(v) for v in (dv if hasattr(dv, "__iter__") else [dv])]
    if len(detectors) != n_frames:
        raise InputError(f"{path}: {dcm.tag_name('DetectorVector')} has {len(detectors)} values; "
                         f"expected {n_frames} (one per frame)")
    names = tuple(view_names) if view_names is not None else ("anterior", "posterior")
    det_seq = list(ds.get("DetectorInformationSequence") or [])
    views: dict[str, torch.Tensor] = {}
    for f in range(n_frames):
        d = detectors[f]
        name = _view_from_codes(det_seq[d - 1]) if d - 1 < len(det_seq) else None
        name = name or _view_from_codes(ds) or (_view_from_text(ds) if n_frames == 1 else None)
        if view_names is not None or name is None:
            if d - 1 >= len(names):
                raise InputError(f"{path}: frame {f + 1} is detector {d} but view_names has {len(names)} "
                                 "names; "
                                 f"pass a name per detector")
            name = names[d - 1]
        if name in views:
            raise InputError(f"{path}: two frames map to view {name!r}; pass view_names= to tell them apart")
        img = pixels[f].astype(np.float32) * slope + inter
        views[name] = torch.from_numpy(np.ascontiguousarray(img.T))
    duration = ds.get("ActualFrameDuration")
    counts = ds.get("CountsAccumulated")
    return PlanarScan(
        views=views,
        pixel_spacing_mm=(dx, dy),
        frame_duration_s=None if duration in (None, "") else float(duration) / 1000.0,
        counts_accumulated=None if counts in (None, "") else float(counts),
        source=str(path),
        identity=dcm.identity(ds),
        meta=dict(
            sop_class_uid=str(ds.get("SOPClassUID", "")),
            image_type=itype,
            patient_position=str(ds.get("PatientPosition", "") or "") or None,
            scan_length_mm=None if ds.get("ScanLength") in (None, "") else float(ds.get("ScanLength")),
        ),
    )
