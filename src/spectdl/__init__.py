"""spectdl: deep learning for SPECT imaging, from phantoms and DICOM to clinical statistics."""

from spectdl.errors import ConfigError, GeometryError, InputError, SpectdlError
from spectdl.geometry import Collimator, Orbit, VoxelGrid

__version__ = "0.1.0"

__all__ = [
    "Collimator",
    "ConfigError",
    "GeometryError",
    "InputError",
    "Orbit",
    "SpectdlError",
    "VoxelGrid",
    "__version__",
]
