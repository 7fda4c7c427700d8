"""check_checkpoint and spatial_dims_of: what a checkpoint must say to enhance an input."""

from __future__ import annotations

import pytest
import torch

from spectdl.errors import InputError
from spectdl.inference import check_checkpoint, spatial_dims_of


def test_check_checkpoint_modality_table():
    meta = {"modality": "spect", "in_channels": 1}
    for ok in ("NM", "PT", "spect", None):
        check_checkpoint(meta, in_channels=1, input_modality=ok)
    for bad in ("CT", "pet"):
        with pytest.raises(InputError, match="found an input of modality"):
            check_checkpoint(meta, in_channels=1, input_modality=bad)
    check_checkpoint({"modality": "pet"}, in_channels=3, input_modality="PT")  # channels unknown: not checked
    with pytest.raises(InputError, match="two_stage"):
        check_checkpoint({"task": "two_stage", "modality": "spect", "in_channels": 1}, in_channels=1)


def test_spatial_dims_from_first_convolution():
    net = torch.nn.Sequential(torch.nn.Conv3d(1, 1, 1))
    assert spatial_dims_of(net, {}) == 3
    assert spatial_dims_of(torch.nn.Conv2d(1, 1, 1), {"model": {"kwargs": {}}}) == 2
    with pytest.raises(InputError, match="2-D or 3-D"):
        spatial_dims_of(torch.nn.Identity(), {}, where="checkpoint c.json")
