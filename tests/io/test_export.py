"""write_dicom_series: identity, UIDs, rescale error, geometry via SimpleITK, atomicity, de-identification."""

import hashlib

import numpy as np
import pydicom
import pytest
import torch

from spectdl.errors import InputError
from spectdl.io import read_ct_series, read_projections, read_volume_series, write_dicom_series

sitk = pytest.importorskip("SimpleITK")


def _digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def _read_all(folder):
    return [pydicom.dcmread(str(p)) for p in sorted(folder.glob("IM_*.dcm"))]


def test_derived_pt_series_from_projections(tmp_path, nm_file):
    acq = read_projections(nm_file())
    gen = torch.Generator().manual_seed(0)
    vol = torch.rand(acq.grid().shape, generator=gen, dtype=torch.float64) * 1234.5
    files = write_dicom_series(vol, acq, "OSEM 4i10s", tmp_path / "out")
    assert len(files) == acq.grid().shape[2]
    dss = _read_all(tmp_path / "out")
    src = pydicom.dcmread(acq.source, stop_before_pixels=True)
    assert {d.SeriesInstanceUID for d in dss} != {src.SeriesInstanceUID}
    assert len({d.SeriesInstanceUID for d in dss}) == 1
    assert len({d.SOPInstanceUID for d in dss}) == len(dss)
    for d in dss:
        assert d.StudyInstanceUID == src.StudyInstanceUID
        assert d.FrameOfReferenceUID == src.FrameOfReferenceUID
        assert d.PatientID == "ID123" and str(d.PatientName) == "Test^Patient"
        assert list(d.ImageType)[:2] == ["DERIVED", "SECONDARY"]
        assert d.DerivationDescription == "OSEM 4i10s"
        assert d.Modality == "PT" and d.Units == "CNTS"
        assert float(d.RescaleIntercept) == 0.0
    # float data round trip: error at most half a rescale step in every slice
    for k, d in enumerate(sorted(dss, key=lambda d: d.InstanceNumber)):
        slope = float(d.RescaleSlope)
        back = d.pixel_array.astype(np.float64).T * slope
        err = np.abs(back - vol[:, :, k].numpy()).max()
        assert err <= slope / 2 * (1 + 1e-6)
    # a standard reader (GDCM through SimpleITK) puts the voxels where acq.affine says
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(tmp_path / "out")))
    img = reader.Execute()
    assert np.allclose(img.GetOrigin(), acq.affine[:3, 3], atol=1e-4)
    assert np.allclose(img.GetSpacing(), np.diag(acq.affine)[:3], atol=1e-4)
    assert np.allclose(sitk.GetArrayFromImage(img).transpose(2, 1, 0), vol.numpy(), atol=0.02)


def test_signed_ct_series_from_ct_reference_and_our_own_reader(tmp_path, slice_series):
    hu = np.random.default_rng(0).uniform(-1000, 2000, size=(6, 5, 4))
    folder = slice_series("ct", hu)
    ct = read_ct_series(folder)
    before = _digest(folder)
    enhanced = ct.data * 0.5 - 10.25
    write_dicom_series(enhanced, ct, "denoised", tmp_path / "out")
    assert _digest(folder) == before  # the input is untouched
    back = read_ct_series(tmp_path / "out")
    assert np.allclose(back.affine, ct.affine)
    slopes = [float(d.RescaleSlope) for d in _read_all(tmp_path / "out")]
    assert (back.data - enhanced).abs().max() <= max(slopes) / 2 * (1 + 1e-6)
    assert _read_all(tmp_path / "out")[0].Modality == "CT"


def test_pt_reference_and_calibrated_units(tmp_path, slice_series):
    vol = np.random.default_rng(2).uniform(0, 100, size=(4, 4, 3))
    folder = slice_series("pt", vol, modality="PT", intercept=0.0, signed=False, extra={"Units": "BQML"})
    ref = read_volume_series(folder)
    write_dicom_series(ref, ref, "copy", tmp_path / "out")
    back = read_volume_series(tmp_path / "out")
    assert back.units == "BQML"
    assert torch.allclose(back.data, ref.data, atol=float(ref.data.max()) / 65535)


def test_existing_output_and_input_folders_are_protected(tmp_path, nm_file, slice_series):
    acq = read_projections(nm_file())
    vol = torch.ones(acq.grid().shape)
    write_dicom_series(vol, acq, "first", tmp_path / "out")
    first = _digest(tmp_path / "out")
    with pytest.raises(InputError, match="already exists"):
        write_dicom_series(vol * 2, acq, "second", tmp_path / "out")
    assert _digest(tmp_path / "out") == first
    write_dicom_series(vol * 2, acq, "second", tmp_path / "out", overwrite=True)
    assert _digest(tmp_path / "out") != first
    assert not [p for p in (tmp_path / "out").iterdir() if not p.name.startswith("IM_")]  # no temp files
    folder = slice_series("ct", np.zeros((3, 3, 2)))
    ct = read_ct_series(folder)
    with pytest.raises(InputError, match="holds the reference series"):
        write_dicom_series(ct.data, ct, "x", folder, overwrite=True)


def test_deidentification(tmp_path, nm_file):
    acq = read_projections(nm_file())
    vol = torch.ones(acq.grid().shape)
    write_dicom_series(vol, acq, "anon", tmp_path / "a", deidentify=True)
    write_dicom_series(vol, acq, "anon", tmp_path / "b", deidentify=True)
    a, b = _read_all(tmp_path / "a")[0], _read_all(tmp_path / "b")[0]
    assert str(a.PatientName) == "ANONYMOUS" and a.PatientID == "ANON"
    assert a.PatientIdentityRemoved == "YES"
    removed = ("PatientBirthDate", "InstitutionName", "ReferringPhysicianName", "AccessionNumber",
               "StudyDate")
    for kw in removed:
        assert kw not in a, kw
    assert a.PatientSex == "F"  # patient characteristics kept
    assert a.StudyInstanceUID != acq.study_instance_uid
    assert a.StudyInstanceUID == b.StudyInstanceUID  # the same replacement every time
    assert a.FrameOfReferenceUID == b.FrameOfReferenceUID != acq.frame_of_reference_uid


def test_bad_arguments(tmp_path, nm_file):
    acq = read_projections(nm_file())
    with pytest.raises(InputError, match="pass affine="):
        write_dicom_series(torch.ones(3, 3, 3), acq, "x", tmp_path / "o")
    with pytest.raises(InputError, match="NaN"):
        write_dicom_series(torch.full(acq.grid().shape, float("nan")), acq, "x", tmp_path / "o")
    with pytest.raises(InputError, match="description"):
        write_dicom_series(torch.ones(acq.grid().shape), acq, "", tmp_path / "o")
