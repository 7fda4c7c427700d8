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
        if len(items) == 1 and int(items[0][1].get("NumberOfFrames", 1) or 1) > 1:
            return _read_multiframe(items[0][0])
        return _read_slices(items, path)
    ds = dcm.read_dataset(path, stop_before_pixels=True, what="volume file")
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        return _read_multiframe(path)
    return _read_slices([(path, ds)], path)


def _check_modality(ds, p) -> str:
    mod = str(ds.get("Modality", "") or "")
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
        slope = float(ds.get("RescaleSlope", 1.0) or 1.0)
        inter = float(ds.get("RescaleIntercept", 0.0) or 0.0)
        slices.append((arr * slope + inter).T.astype(np.float32))
        t = dcm.parse_datetime(ds.get("AcquisitionDate"), ds.get("AcquisitionTime"))
        if t is not None:
            acq_times.append(t)
    ref_path, ref = items[0]
    ref = dcm.read_dataset(ref_path, stop_before_pixels=True)
    return _volume(np.stack(slices, -1), affine, ref, tuple(str(p) for p, _ in items), acq_times)


def _read_multiframe(p) -> Volume:
    ds = dcm.read_dataset(p, what="volume file")
    mod = _check_modality(ds, p)
    if mod == "NM":
        itype = [str(v).upper() for v in (ds.get("ImageType") or [])]
        if len(itype) > 2 and itype[2] not in ("RECON TOMO", "RECON GATED TOMO"):
            raise InputError(f"{p}: {dcm.tag_name('ImageType')} value 3 is {itype[2]!r}; expected 'RECON "
                             "TOMO' "
                             f"(raw projections go to read_projections)")
        det = (ds.get("DetectorInformationSequence") or [None])[0]
        src = det if det is not None and "ImageOrientationPatient" in det else ds
    else:
        src = ds
    r0, c0 = dcm.orientation(dcm.get(src, "ImageOrientationPatient", p), p)
    ipp = np.array(dcm.floats(dcm.get(src, "ImagePositionPatient", p), 3, p, "ImagePositionPatient"))
    sp = dcm.floats(dcm.get(ds, "PixelSpacing", p), 2, p, "PixelSpacing")
    step = ds.get("SpacingBetweenSlices") or ds.get("SliceThickness")
    if step is None:
        raise InputError(f"{p}: {dcm.tag_name('SpacingBetweenSlices')} and {dcm.tag_name('SliceThickness')} "
                         "are missing; "
                         f"expected the slice spacing")
    # A negative Spacing Between Slices (seen in the wild) still means slices stacked along the normal.
    affine = dcm.affine_from_axes(ipp, [r0, c0, np.cross(r0, c0)], [sp[1], sp[0], abs(float(step))])
    arr = dcm.pixel_array(ds, p).astype(np.float64)
    if arr.ndim == 2:
        arr = arr[None]
    slope = float(ds.get("RescaleSlope", 1.0) or 1.0)
    inter = float(ds.get("RescaleIntercept", 0.0) or 0.0)
    data = (arr * slope + inter).transpose(2, 1, 0).astype(np.float32)  # [frame, row, col] → [x, y, z]
    t = dcm.parse_datetime(ds.get("AcquisitionDate"), ds.get("AcquisitionTime"))
    return _volume(data, affine, ds, (str(p),), [t] if t else [])


def _volume(data: np.ndarray, affine, ref, source, acq_times) -> Volume:
    rph = (ref.get("RadiopharmaceuticalInformationSequence") or [None])[0]

    def rget(kw):
        return None if rph is None else rph.get(kw)

    series_t = dcm.parse_datetime(ref.get("SeriesDate"), ref.get("SeriesTime"))
    inj = dcm.parse_dt(rget("RadiopharmaceuticalStartDateTime"))
    if inj is None and rget("RadiopharmaceuticalStartTime"):
        date = ref.get("SeriesDate") or ref.get("StudyDate") or ref.get("AcquisitionDate")
        inj = dcm.parse_datetime(date, rget("RadiopharmaceuticalStartTime"))
    weight = ref.get("PatientWeight")
    suv = dict(
        weight_kg=float(weight) if weight not in (None, "") and float(weight) > 0 else None,
        injected_dose_bq=_positive(rget("RadionuclideTotalDose")),
        half_life_s=_positive(rget("RadionuclideHalfLife")),
        injection_time=inj,
        acquisition_time=min(acq_times) if acq_times else series_t,
        decay_correction=str(ref.get("DecayCorrection", "") or "") or None,
    )
    units = str(ref.get("Units", "") or "") or None
    return Volume(
        data=torch.from_numpy(np.ascontiguousarray(data)),
        affine=affine,
        modality=str(ref.get("Modality", "")),
        units=units,
        frame_of_reference_uid=str(ref.get("FrameOfReferenceUID", "") or "") or None,
        study_instance_uid=str(ref.get("StudyInstanceUID", "") or "") or None,
        series_instance_uid=str(ref.get("SeriesInstanceUID", "") or "") or None,
        source=source,
        identity=dcm.identity(ref),
        meta=dict(suv=suv),
    )


def _positive(v) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if f > 0 else None


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
