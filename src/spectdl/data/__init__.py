"""Datasets: paired simulations in HDF5 shards, manifests of real cases, sampling and augmentation.

* :func:`simulate` / :func:`regenerate` / :class:`SimulatedDataset`: phantom → projector → noise
  (→ OSEM) into chunked, reproducible HDF5 shards with a JSON manifest.
* :func:`load_manifest` / :func:`validate_manifest` / :class:`ManifestDataset`: real cases listed
  in a CSV or YAML manifest (NIfTI, DICOM, ``.npy``), whole volumes, axial slices or patches.
* :mod:`spectdl.data.transforms`: flips, rotations, crops, slices and normalisation that record their
  parameters, so that :func:`~spectdl.data.transforms.replay` reproduces them exactly.
* :func:`mix_seed` / :func:`generator_for` (:mod:`spectdl.data.seeding`): the one way to derive seeds,
  fixed bit for bit because simulation manifests record seeds made with it.

h5py and PyYAML (the ``train`` extra) and nibabel (the ``dicom`` extra) are imported when needed.
"""

from spectdl.data.config import SimulationConfig, load_simulation_config
from spectdl.data.manifest import (
    Case,
    Manifest,
    image_shape,
    load_manifest,
    manifest_inputs,
    read_case_image,
    validate_manifest,
)
from spectdl.data.real import ManifestDataset
from spectdl.data.seeding import generator_for, mix_seed
from spectdl.data.shards import ShardWriteError
from spectdl.data.simulation import (
    SimulationResult,
    finalize,
    load_manifest_json,
    read_sample,
    regenerate,
    simulate,
    verify_shards,
)
from spectdl.data.simulated_dataset import SimulatedDataset
from spectdl.data.volume_dataset import VolumeDataset
from spectdl.data import transforms

__all__ = [
    "Case",
    "Manifest",
    "ManifestDataset",
    "ShardWriteError",
    "SimulatedDataset",
    "SimulationConfig",
    "SimulationResult",
    "finalize",
    "generator_for",
    "image_shape",
    "load_manifest",
    "load_manifest_json",
    "load_simulation_config",
    "manifest_inputs",
    "mix_seed",
    "read_case_image",
    "read_sample",
    "regenerate",
    "simulate",
    "transforms",
    "VolumeDataset",
    "validate_manifest",
    "verify_shards",
]
