"""Interfile projections and volumes: the same point-source acquisition as DICOM must read the same."""

import numpy as np
import pydicom
import pytest
import torch

from spectdl.errors import InputError
from spectdl.geometry import VoxelGrid
from spectdl.io import read_interfile_projections, read_interfile_volume, read_projections
from spectdl.io.interfile import write_interfile


def _interfile_from_dicom(tmp_path, dicom_path, n_views=40, step=9.0, start=180.0, direction="CCW", extra=""):
    ds = pydicom.dcmread(str(dicom_path))
    ew = np.asarray(ds.EnergyWindowVector)
    frames = ds.pixel_array[ew == 1]  # [view, row, col]
    raw = tmp_path / "proj.s"
    raw.write_bytes(frames.astype("<u2").tobytes())  # columns fastest, then rows, then views
    header = tmp_path / "proj.hs"
    header.write_text(
        "!INTERFILE :=\n"
        "!imaging modality := nucmed\n"
        f"!name of data file := {raw.name}\n"
        "!type of data := Tomographic\n"
        "imagedata byte order := LITTLEENDIAN\n"
        "!number format := unsigned integer\n!number of bytes per pixel := 2\n"
        f"!number of projections := {n_views}\n!extent of rotation := {n_views * step}\n"
        "process status := acquired\n"
        f"!direction of rotation := {direction}\nstart angle := {start}\n"
        "orbit := Circular\nRadius := 254\n"
        f"!matrix size [1] := {frames.shape[2]}\n!matrix size [2] := {frames.shape[1]}\n"
        "scaling factor (mm/pixel) [1] := 4\nscaling factor (mm/pixel) [2] := 4\n"
        f"!total number of images := {frames.shape[0]}\n"
        "energy window lower level [1] := 187.2\nenergy window upper level [1] := 228.8\n"
        + extra
        + "!END OF INTERFILE :=\n"
    )
    return header


def test_interfile_projections_read_like_the_dicom_file(tmp_path, nm_file):
    dicom = nm_file()
    acq_d = read_projections(dicom)
    acq_i = read_interfile_projections(_interfile_from_dicom(tmp_path, dicom))
    assert torch.equal(acq_i.counts(0), acq_d.counts(0))
    assert acq_i.orbit.angles_deg == pytest.approx(acq_d.orbit.angles_deg)
    assert acq_i.orbit.direction == acq_d.orbit.direction == "cw"
    assert acq_i.orbit.radius_mm == (254.0,) * 40
    assert acq_i.windows == [(187.2, 228.8)]
    assert acq_i.grid() == acq_d.grid()


def test_interfile_noncircular_and_mismatch(tmp_path, nm_file):
    dicom = nm_file()
    radii = ", ".join(str(200 + k) for k in range(40))
    header = _interfile_from_dicom(tmp_path, dicom, extra="")
    text = header.read_text().replace("Radius := 254", f"Radius := {{{radii}}}")
    header.write_text(text)
    assert read_interfile_projections(header).orbit.radius_mm == tuple(200.0 + k for k in range(40))
    header.write_text(text.replace("!number of projections := 40", "!number of projections := 41"))
    with pytest.raises(InputError, match="40 images but 'number of projections' 41"):
        read_interfile_projections(header)


def test_interfile_volume_is_centred_and_keeps_values(tmp_path):
    grid = VoxelGrid((4, 5, 3), (2.0, 2.0, 3.0))
    data = torch.arange(60, dtype=torch.float32).reshape(4, 5, 3)
    write_interfile(tmp_path / "v.h33", data, grid)
    vol = read_interfile_volume(tmp_path / "v.h33")
    assert torch.equal(vol.data, data)
    assert np.allclose(vol.centre_mm(), 0.0)
    assert np.allclose(np.diag(vol.affine)[:3], [2.0, 2.0, 3.0])
