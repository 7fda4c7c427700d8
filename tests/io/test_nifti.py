"""NIfTI round trip with the LPS↔RAS conversion checked against nibabel's axis codes and SimpleITK."""

import numpy as np
import pytest
import torch

from spectdl.errors import InputError
from spectdl.io import read_nifti, write_nifti

nib = pytest.importorskip("nibabel")
sitk = pytest.importorskip("SimpleITK")


def _affine():
    A = np.eye(4)
    A[:3, :3] = np.diag([2.0, 3.0, 4.0])
    A[:3, 3] = [-10.0, 20.0, 30.0]
    return A


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_round_trip_keeps_data_and_affine(tmp_path, suffix):
    data = torch.rand(5, 6, 7, generator=torch.Generator().manual_seed(0))
    path = write_nifti(data, _affine(), tmp_path / f"v{suffix}")
    back = read_nifti(path)
    assert torch.equal(back.data, data)
    assert np.allclose(back.affine, _affine())
    assert [p.name for p in tmp_path.iterdir()] == [f"v{suffix}"]  # no temporary file left


def test_lps_becomes_ras_for_other_readers(tmp_path):
    path = write_nifti(torch.zeros(5, 6, 7), _affine(), tmp_path / "v.nii.gz")
    img = nib.load(str(path))
    # voxel axes run to the patient's Left, Posterior, Superior whatever the world convention
    assert nib.aff2axcodes(img.affine) == ("L", "P", "S")
    assert np.allclose(img.affine[:3, 3], [10.0, -20.0, 30.0])  # RAS = (-x, -y, z) of LPS
    # ITK reads NIfTI into LPS: it must see exactly our affine
    s = sitk.ReadImage(str(path))
    assert np.allclose(s.GetOrigin(), [-10.0, 20.0, 30.0])
    assert np.allclose(s.GetSpacing(), [2.0, 3.0, 4.0])
    assert np.allclose(np.array(s.GetDirection()).reshape(3, 3), np.eye(3))


def test_existing_file_is_kept_unless_overwrite(tmp_path):
    path = write_nifti(torch.zeros(2, 2, 2), np.eye(4), tmp_path / "v.nii")
    with pytest.raises(InputError, match="already exists"):
        write_nifti(torch.ones(2, 2, 2), np.eye(4), path)
    assert float(read_nifti(path).data.sum()) == 0.0
    write_nifti(torch.ones(1, 1, 2, 2, 2), np.eye(4), path, overwrite=True)
    assert float(read_nifti(path).data.sum()) == 8.0


def test_bad_input(tmp_path):
    with pytest.raises(InputError, match="must end with .nii"):
        write_nifti(torch.zeros(2, 2, 2), np.eye(4), tmp_path / "v.img")
    with pytest.raises(InputError, match="expected"):
        write_nifti(torch.zeros(2, 2), np.eye(4), tmp_path / "v.nii")
    bad = tmp_path / "bad.nii"
    bad.write_bytes(b"not a nifti")
    with pytest.raises(InputError, match="cannot be read"):
        read_nifti(bad)
