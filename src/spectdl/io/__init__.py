"""Real data in and out: DICOM projections, CT, reconstructed NM/PT volumes, planar scans, NIfTI, Interfile.

Readers return tensors plus geometry (:class:`~spectdl.geometry.VoxelGrid`,
:class:`~spectdl.geometry.Orbit`, a 4×4 affine from voxel index to DICOM patient LPS mm), never
raw pydicom objects. pydicom, nibabel and SimpleITK (the ``dicom`` extra) are imported when a
function first needs them.

Conventions: volumes are ``[X, Y, Z]`` (``Volume.as_batch()`` gives ``[1, 1, X, Y, Z]``);
projections of one window are ``[n_angles, n_radial, n_axial]``; the reconstruction grid of an
acquisition is aligned with the patient axes (x → left, y → posterior, z → head) and its angles
follow :mod:`spectdl.geometry` (see :mod:`spectdl.io.projections` for the DICOM conversion).
"""

from spectdl.io.ct import (
    break_point_hu,
    ct_attenuation_map,
    ct_effective_energy_kev,
    ct_to_mu,
    read_ct_series,
    resample_to_grid,
)
from spectdl.io.export import DEIDENTIFY_NEW_UIDS, DEIDENTIFY_REMOVE, DEIDENTIFY_REPLACE, write_dicom_series
from spectdl.io.interfile import read_interfile
from spectdl.io.interfile_spect import read_interfile_projections, read_interfile_volume
from spectdl.io.nifti import lps_to_ras, read_nifti, write_nifti
from spectdl.io.nm_volumes import read_volume_series, suv, suv_factor
from spectdl.io.planar import PlanarScan, read_planar
from spectdl.io.projections import Acquisition, read_projections
from spectdl.io.scatter import smooth_views, tew_scatter
from spectdl.io.volume import Volume, patient_to_voxel, voxel_to_patient

__all__ = [
    "Acquisition",
    "DEIDENTIFY_NEW_UIDS",
    "DEIDENTIFY_REMOVE",
    "DEIDENTIFY_REPLACE",
    "PlanarScan",
    "Volume",
    "break_point_hu",
    "ct_attenuation_map",
    "ct_effective_energy_kev",
    "ct_to_mu",
    "lps_to_ras",
    "patient_to_voxel",
    "read_ct_series",
    "read_interfile",
    "read_interfile_projections",
    "read_interfile_volume",
    "read_nifti",
    "read_planar",
    "read_projections",
    "read_volume_series",
    "resample_to_grid",
    "smooth_views",
    "suv",
    "suv_factor",
    "tew_scatter",
    "voxel_to_patient",
    "write_dicom_series",
    "write_nifti",
]
