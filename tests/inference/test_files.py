"""read_volume_file and check_output: the files of ``spectdl enhance`` without a network."""

from __future__ import annotations

import numpy as np
import pytest

from spectdl.errors import InputError
from spectdl.inference import read_volume_file
from spectdl.inference.files import check_output

pytest.importorskip("nibabel")


def _data(shape=(6, 5, 3)) -> np.ndarray:
    return np.round(np.random.default_rng(0).uniform(0.0, 10.0, shape), 3).astype(np.float32)


def test_reads_nifti_and_dicom_series_with_their_voxels(nifti_file, pt_series):
    data = _data()
    nifti = read_volume_file(nifti_file("in.nii.gz", data))
    assert nifti.shape == data.shape
    np.testing.assert_allclose(nifti.data.numpy(), data, rtol=1e-6)
    series = read_volume_file(pt_series("series", data))
    assert series.modality == "PT" and series.shape == data.shape and len(series.source) == data.shape[2]
    np.testing.assert_allclose(series.data.numpy(), data, atol=6e-4)


def test_missing_or_non_dicom_inputs_are_refused(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_volume_file(tmp_path / "absent.nii")
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "notes.txt").write_text("not DICOM")
    with pytest.raises(InputError, match="no readable DICOM file"):
        read_volume_file(tmp_path / "folder")


def test_check_output_refuses_inputs_and_wrong_formats(tmp_path):
    src = tmp_path / "in.nii"
    src.write_bytes(b"")
    with pytest.raises(InputError, match="refusing to overwrite an input"):
        check_output(src, [src], nifti=True, overwrite=True)
    with pytest.raises(InputError, match="expected a folder for the DICOM series"):
        check_output(tmp_path / "out.nii.gz", [tmp_path / "series"], nifti=False, overwrite=False)
    check_output(tmp_path / "new.nii.gz", [src], nifti=True, overwrite=False)  # a new file is fine
