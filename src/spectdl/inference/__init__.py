"""Apply a trained network to volumes and files (``spectdl enhance``).

* :mod:`~spectdl.inference.sliding`: :func:`predict_slices` (2-D networks, slice by slice) and
  :func:`predict_sliding_window` (3-D networks, overlapping windows with Gaussian or constant
  blending), batched, on any device.
* :mod:`~spectdl.data.normalization`: the intensity scaling a checkpoint records.
* :mod:`~spectdl.inference.checks`: :func:`check_checkpoint` and :func:`spatial_dims_of`, what a
  checkpoint must say to enhance a given input.
* :mod:`~spectdl.inference.files`: :func:`read_volume_file` (NIfTI or DICOM, with its geometry), the
  output checks and the atomic DICOM series writer.
* :mod:`~spectdl.inference.enhance`: :func:`enhance_volume` (arrays) and :func:`enhance_file`
  (NIfTI or DICOM in, the same format out, geometry kept, written atomically).

Sits after :mod:`spectdl.training` (checkpoints) and :mod:`spectdl.io` in the layering; both are
imported only when a file function needs them.
"""

from spectdl.data.normalization import STATISTICS, Normalization
from spectdl.inference.checks import IMAGE_MODALITIES, check_checkpoint, spatial_dims_of
from spectdl.inference.enhance import DEFAULT_ROI_SIZE, enhance_file, enhance_volume
from spectdl.inference.files import read_volume_file
from spectdl.inference.sliding import blend_weights, predict_slices, predict_sliding_window, window_starts

__all__ = [
    "DEFAULT_ROI_SIZE",
    "IMAGE_MODALITIES",
    "Normalization",
    "STATISTICS",
    "blend_weights",
    "check_checkpoint",
    "enhance_file",
    "enhance_volume",
    "predict_slices",
    "predict_sliding_window",
    "read_volume_file",
    "spatial_dims_of",
    "window_starts",
]
