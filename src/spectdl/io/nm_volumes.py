"""Reconstructed NM or PT volumes (multi-frame or one file per slice) and their SUV factors.

SUV (body weight)
-----------------
    SUV = C · W / D(t₀),    D(t₀) = D_inj · 2^(−(t₀ − t_inj)/T½)

with activity concentration ``C`` (Bq/ml), patient weight ``W`` (g; 1 g ↔ 1 ml of tissue), injected
activity ``D_inj`` (Bq) at injection time ``t_inj``, and ``t₀`` the acquisition start, to which the
images are decay corrected (Decay Correction (0054,1102) = START). With Decay Correction ADMIN the
images are already corrected to the injection time and no decay factor applies. The factor
returned by :func:`suv_factor` is ``W / D(t₀)`` in g/Bq, so that ``SUV = C · factor``.

Tags used: Patient's Weight (0010,1030) kg, Radionuclide Total Dose (0018,1074) Bq,
Radiopharmaceutical Start Date Time (0018,1078) (or Start Time (0018,1072) with the series date),
Radionuclide Half Life (0018,1075) s, Acquisition Date/Time (the earliest over the slices) or
Series Date/Time for ``t₀``, Units (0054,1001). A missing or zero value raises
:class:`InputError` that names the tag, unless the caller passes the value.

Every tag is read through the checked accessors of :mod:`spectdl.io._dicom`: a value that cannot
be decoded, is not a number, is NaN or ±inf, or lies outside its range is an ``InputError`` naming
the file and the tag. Rescale Slope and Intercept are optional in NM (a missing one means 1 and 0,
the stored values); a slope of 0, or a non-finite slope or intercept, is an error. A Patient's
Weight outside 0 … 1000 kg, and a negative or non-finite dose or half-life, are errors too; a zero
weight, dose or half-life counts as not recorded (``None``), as before.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

import numpy as np
import torch

from spectdl.errors import InputError
from spectdl.io import _dicom as dcm
from spectdl.io.ct import read_series_headers, select_series, slice_stack_geometry
from spectdl.io.volume import Volume


def read_volume_series(path: str | Path, *, series_instance_uid: str | None = None) -> Volume:
    """Read a reconstructed NM (RECON TOMO multi-frame) or PT/NM series into a :class:`Volume`.

    Args:
        path: a multi-frame file, or a folder of single-slice files (one series, or pick one
            with ``series_instance_uid``).

    Returns:
        ``Volume`` with ``data [X, Y, Z]`` in the stored units (rescale applied; ``units`` from
        Units (0054,1001), e.g. ``"BQML"`` or ``"CNTS"``) and ``meta["suv"]``: the SUV inputs found
        in the header (values may be ``None``).
    """
    path = Path(path)
    if path.is_dir():
        items = select_series(read_series_headers(path, "volume folder"), series_instance_uid, path, "volume folder")
        if len(items) == 1 and _n_frames(items[0][1], items[0][0]) > 1:
            return _read_multiframe(items[0][0])
        return _read_slices(items, path)
    ds = dcm.read_dataset(path, stop_before_pixels=True, what="volume file")
    if _n_frames(ds, path) > 1:
        return _read_multiframe(path)
    return _read_slices([(path, ds)], path)


def _n_frames(ds, p) -> int:
    return dcm.get(ds, "NumberOfFrames", p, cast=int, default=1, bounds=dcm.N_FRAMES)


def _rescale(ds, p) -> tuple[float, float]:
    """(slope, intercept): optional in NM (absent: 1 and 0), but a present slope of 0 or a non-finite
    value is refused (a slope of 0 used to be read as 1)."""
    return (dcm.get(ds, "RescaleSlope", p, cast=float, default=1.0, bounds=dcm.RESCALE_SLOPE),
            dcm.get(ds, "RescaleIntercept", p, cast=float, default=0.0, bounds=dcm.RESCALE_INTERCEPT))


def _acquisition_time(ds, p):
    return dcm.parse_datetime(dcm.text(ds, "AcquisitionDate", p), dcm.text(ds, "AcquisitionTime", p))


def _check_modality(ds, p) -> str:
    mod = dcm.text(ds, "Modality", p)
    if mod not in ("NM", "PT"):
        raise InputError(f"{p}: {dcm.tag_name('Modality')} is {mod!r}; expected 'NM' or 'PT' (a "
                         "reconstructed volume)")
    return mod


def _read_slices(items, where) -> Volume:
    for p, ds in items:
        _check_modality(ds, p)
    items, affine, _ = slice_stack_geometry(items, where)
    slices, acq_times = [], []
    for p, _hdr in items:
        ds = dcm.read_dataset(p, what="volume slice")
        arr = dcm.pixel_array(ds, p).astype(np.float64)
        slope, inter = _rescale(ds, p)
        slices.append((arr * slope + inter).T.astype(np.float32))
        t = _acquisition_time(ds, p)
        if t is not None:
            acq_times.append(t)
    ref_path, ref = items[0]
    ref = dcm.read_dataset(ref_path, stop_before_pixels=True)
    return _volume(np.stack(slices, -1), affine, ref, ref_path, tuple(str(p) for p, _ in items), acq_times)


def _read_multiframe(p) -> Volume:
    ds = dcm.read_dataset(p, what="volume file")
    mod = _check_modality(ds, p)
    if mod == "NM":
        itype = [v.upper() for v in dcm.texts(ds, "ImageType", p)]
        if len(itype) > 2 and itype[2] not in ("RECON TOMO", "RECON GATED TOMO"):
            raise InputError(f"{p}: {dcm.tag_name('ImageType')} value 3 is {itype[2]!r}; expected 'RECON "
                             "TOMO' "
                             f"(raw projections go to read_projections)")
        det = (dcm.sequence(ds, "DetectorInformationSequence", p, default=[]) or [None])[0]
        has_iop = det is not None and dcm.element(det, "ImageOrientationPatient", p,
                                                  where="DetectorInformationSequence item 1") is not None
        src = det if has_iop else ds
    else:
        src = ds
    r0, c0 = dcm.orientation(dcm.get(src, "ImageOrientationPatient", p), p)
    ipp = np.array(dcm.vector(src, "ImagePositionPatient", p, n=3, bounds=dcm.POSITION_MM))
    sp = dcm.vector(ds, "PixelSpacing", p, n=2, bounds=dcm.PIXEL_SPACING_MM)
    # A negative Spacing Between Slices (seen in the wild) still means slices stacked along the normal.
    signed = dcm.Range(-dcm.SLICE_SPACING_MM.hi, dcm.SLICE_SPACING_MM.hi, "mm")  # 0: not recorded
    step = (dcm.get(ds, "SpacingBetweenSlices", p, cast=float, default=None, bounds=signed)
            or dcm.get(ds, "SliceThickness", p, cast=float, default=None, bounds=signed))
    if step is None:
        raise InputError(f"{p}: {dcm.tag_name('SpacingBetweenSlices')} and {dcm.tag_name('SliceThickness')} "
                         "are missing; "
                         f"expected the slice spacing")
    affine = dcm.affine_from_axes(ipp, [r0, c0, np.cross(r0, c0)], [sp[1], sp[0], abs(step)])
    arr = dcm.pixel_array(ds, p).astype(np.float64)
    if arr.ndim == 2:
        arr = arr[None]
    slope, inter = _rescale(ds, p)
    data = (arr * slope + inter).transpose(2, 1, 0).astype(np.float32)  # [frame, row, col] → [x, y, z]
    t = _acquisition_time(ds, p)
    return _volume(data, affine, ds, p, (str(p),), [t] if t else [])


def _volume(data: np.ndarray, affine, ref, ref_path, source, acq_times) -> Volume:
    where = "RadiopharmaceuticalInformationSequence item 1"
    rph = (dcm.sequence(ref, "RadiopharmaceuticalInformationSequence", ref_path, default=[]) or [None])[0]

    def rtext(kw) -> str:
        return "" if rph is None else dcm.text(rph, kw, ref_path, where=where)

    def rpositive(kw, bounds) -> float | None:
        v = None if rph is None else dcm.get(rph, kw, ref_path, where=where, cast=float, default=None,
                                             bounds=bounds)
        return v if v else None  # 0 is "not recorded"

    series_date = dcm.text(ref, "SeriesDate", ref_path)
    series_t = dcm.parse_datetime(series_date, dcm.text(ref, "SeriesTime", ref_path))
    inj = dcm.parse_dt(rtext("RadiopharmaceuticalStartDateTime"))
    if inj is None and rtext("RadiopharmaceuticalStartTime"):
        date = series_date or dcm.text(ref, "StudyDate", ref_path) or dcm.text(ref, "AcquisitionDate", ref_path)
        inj = dcm.parse_datetime(date, rtext("RadiopharmaceuticalStartTime"))
    weight = dcm.get(ref, "PatientWeight", ref_path, cast=float, default=None, bounds=_WEIGHT_KG)
    suv = dict(
        weight_kg=weight if weight else None,
        injected_dose_bq=rpositive("RadionuclideTotalDose", _NON_NEGATIVE),
        half_life_s=rpositive("RadionuclideHalfLife", _NON_NEGATIVE),
        injection_time=inj,
        acquisition_time=min(acq_times) if acq_times else series_t,
        decay_correction=dcm.text(ref, "DecayCorrection", ref_path) or None,
    )
    return Volume(
        data=torch.from_numpy(np.ascontiguousarray(data)),
        affine=affine,
        modality=dcm.text(ref, "Modality", ref_path),
        units=dcm.text(ref, "Units", ref_path) or None,
        frame_of_reference_uid=dcm.text(ref, "FrameOfReferenceUID", ref_path) or None,
        study_instance_uid=dcm.text(ref, "StudyInstanceUID", ref_path) or None,
        series_instance_uid=dcm.text(ref, "SeriesInstanceUID", ref_path) or None,
        source=source,
        identity=dcm.identity(ref, ref_path),
        meta=dict(suv=suv),
    )


_WEIGHT_KG = dcm.Range(0.0, 1000.0, "kg")
_NON_NEGATIVE = dcm.Range(0.0, None)


def suv_factor(
    volume: Volume,
    *,
    weight_kg: float | None = None,
    injected_dose_bq: float | None = None,
    injection_time: _dt.datetime | None = None,
    half_life_s: float | None = None,
    acquisition_time: _dt.datetime | None = None,
) -> float:
    """``W / D(t₀)`` in g/Bq, so that ``SUV = C[Bq/ml] · factor`` (module docstring).

    Each value comes from the header (``volume.meta["suv"]``) unless passed here; a value missing
    from both raises :class:`InputError` that names the DICOM tag.
    """
    found = dict(volume.meta.get("suv") or {})
    where = volume.source[0] if volume.source else "volume"

    def pick(name, given, tag):
        v = given if given is not None else found.get(name)
        if v is None:
            raise InputError(f"{where}: {tag} is missing, empty or zero; pass {name}= to suv_factor")
        return v

    w = float(pick("weight_kg", weight_kg, dcm.tag_name("PatientWeight")))
    dose = float(pick("injected_dose_bq", injected_dose_bq, dcm.tag_name("RadionuclideTotalDose")))
    if not (w > 0 and dose > 0):
        raise InputError(f"weight_kg, injected_dose_bq: expected positive values, found {w}, {dose}")
    if (found.get("decay_correction") or "").upper() == "ADMIN":
        return w * 1000.0 / dose
    half = float(pick("half_life_s", half_life_s, dcm.tag_name("RadionuclideHalfLife")))
    t_inj = pick("injection_time", injection_time, dcm.tag_name("RadiopharmaceuticalStartDateTime"))
    t0 = pick("acquisition_time", acquisition_time, f"{dcm.tag_name('AcquisitionTime')} / "
                                                    f"{dcm.tag_name('SeriesTime')}")
    dt = (t0 - t_inj).total_seconds()
    if dt < 0:
        raise InputError(f"{where}: acquisition start {t0} is before the injection {t_inj}; expected later")
    decayed = dose * 2.0 ** (-dt / half)
    return w * 1000.0 / decayed


def suv(volume: Volume, **values) -> torch.Tensor:
    """The volume in SUV (body weight): ``data · suv_factor(volume, **values)``; needs units BQML."""
    if (volume.units or "").upper() != "BQML":
        where = volume.source[0] if volume.source else "volume"
        raise InputError(f"{where}: {dcm.tag_name('Units')} is {volume.units!r}; expected 'BQML' (activity "
                         f"concentration) to compute SUV")
    return volume.data * suv_factor(volume, **values)
