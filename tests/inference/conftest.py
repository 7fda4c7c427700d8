"""Tiny networks and input files for the inference tests.

``Affine`` is a pointwise network built from elementwise multiplications and additions only, so
its output at a voxel is bit-for-bit the same whatever the window or batch it is computed in
(a 1×1 convolution is not: BLAS may sum in another order for another batch shape).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from spectdl.models import registry

AFFINE_NAME = "inference_test_affine"


class Affine(nn.Module):
    """``y = bias + Σ_c weights[c] · x_c`` (one output channel), elementwise arithmetic only."""

    def __init__(self, in_channels: int = 1, spatial_dims: int = 3, weights=None, bias: float = 0.5):
        super().__init__()
        self.in_channels, self.out_channels, self.spatial_dims = in_channels, 1, spatial_dims
        w = torch.tensor(weights if weights is not None else [2.0] * in_channels, dtype=torch.float32)
        self.weights = nn.Parameter(w)
        self.bias = nn.Parameter(torch.tensor(float(bias)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.dim() == 2 + self.spatial_dims and x.shape[1] == self.in_channels
        y = x[:, :1] * self.weights[0]
        for c in range(1, self.in_channels):
            y = y + x[:, c : c + 1] * self.weights[c]
        return y + self.bias


@pytest.fixture
def affine_registered(monkeypatch):
    """Register :class:`Affine` in the model registry for one test (undone afterwards)."""
    registry._load_builtin()
    monkeypatch.setitem(registry._REGISTRY, AFFINE_NAME, Affine)
    return AFFINE_NAME


def nifti_affine_ras() -> np.ndarray:
    """A RAS affine with unequal voxel sizes, an oblique-free flip and an offset."""
    return np.array(
        [[-2.0, 0.0, 0.0, 30.5], [0.0, 3.0, 0.0, -12.0], [0.0, 0.0, 4.5, 7.25], [0.0, 0.0, 0.0, 1.0]]
    )


def write_nifti_file(path: Path, data: np.ndarray, ras: np.ndarray | None = None) -> Path:
    """Write ``data`` with nibabel directly (independent of spectdl's writer)."""
    import nibabel as nib

    ras = nifti_affine_ras() if ras is None else ras
    img = nib.Nifti1Image(np.asarray(data, dtype=np.float32), ras)
    img.set_qform(ras, code=1)
    img.set_sform(ras, code=1)
    nib.save(img, str(path))
    return path


STUDY_UID = "1.2.826.0.1.3680043.8.498.71"
FOR_UID = "1.2.826.0.1.3680043.8.498.72"
SERIES_UID = "1.2.826.0.1.3680043.8.498.73"
SPACING_MM = (3.0, 2.5)  # (between rows, between columns)
SLICE_MM = 4.0
ORIGIN_MM = np.array([-10.0, 20.0, 35.0])


def write_pt_series(folder: Path, volume: np.ndarray, modality: str = "PT") -> Path:
    """A one-file-per-slice series of ``volume [X, Y, Z]`` written with pydicom (axial, LPS axes).

    Pixel ``(row j, column i)`` of slice ``k`` holds ``volume[i, j, k]``; stored as uint16 with a
    Rescale Slope of 1/1000, so every voxel must be a multiple of 0.001 in [0, 65.535].
    """
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    for k in range(volume.shape[2]):
        ds = Dataset()
        ds.PatientName, ds.PatientID, ds.PatientSex = "Infer^Test", "INF1", "M"
        ds.StudyInstanceUID, ds.FrameOfReferenceUID, ds.SeriesInstanceUID = STUDY_UID, FOR_UID, SERIES_UID
        ds.Modality = modality
        ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.128"
        ds.SOPInstanceUID = generate_uid()
        ds.SeriesNumber, ds.InstanceNumber = 3, k + 1
        ds.Units = "BQML"
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [float(v) for v in ORIGIN_MM + np.array([0.0, 0.0, SLICE_MM * k])]
        ds.PixelSpacing = list(SPACING_MM)
        ds.SliceThickness = SLICE_MM
        pix = np.rint(volume[:, :, k].T * 1000.0).astype(np.uint16)
        ds.Rows, ds.Columns = pix.shape
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.RescaleSlope, ds.RescaleIntercept = "0.001", "0"
        ds.PixelData = pix.tobytes()
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = ds.SOPClassUID
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta = meta
        pydicom.dcmwrite(str(folder / f"slice{k:03d}.dcm"), ds, enforce_file_format=True)
    return folder


@pytest.fixture
def affine_net():
    """The :class:`Affine` class (test modules cannot import conftest)."""
    return Affine


@pytest.fixture
def nifti_file(tmp_path):
    """``make(name, data, ras=None) -> path``: a NIfTI file written with nibabel."""

    def make(name: str, data: np.ndarray, ras: np.ndarray | None = None) -> Path:
        return write_nifti_file(tmp_path / name, data, ras)

    return make


@pytest.fixture
def pt_series(tmp_path):
    """``make(name, volume [X, Y, Z], modality="PT") -> folder``: a series written with pydicom."""
    pytest.importorskip("pydicom")

    def make(name: str, volume: np.ndarray, modality: str = "PT") -> Path:
        return write_pt_series(tmp_path / name, volume, modality)

    return make
