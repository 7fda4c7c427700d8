from __future__ import annotations

import copy
import logging
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset


class BlurDataset(Dataset):
    """A learnable toy problem: the target is a fixed 3×3 box blur of a random input."""

    def __init__(self, n: int = 4, size: int = 16, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.rand(n, 1, size, size, generator=g)
        self.y = F.avg_pool2d(self.x, 3, stride=1, padding=1, count_include_pad=False)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict:
        return {"input": self.x[i], "target": self.y[i]}


class SinogramDataset(Dataset):
    """128×128 two-channel inputs and one-channel targets, the shapes SPECTnet reads."""

    def __init__(self, n: int = 4, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.y = torch.rand(n, 1, 128, 128, generator=g)
        self.x = torch.cat([self.y.flip(-1), torch.rand(n, 1, 128, 128, generator=g)], dim=1)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict:
        return {"input": self.x[i], "target": self.y[i]}


BASE = {
    "model": {"name": "unet", "kwargs": {"features": [4, 8]}},
    "loss": {"terms": {"l1": 1.0}},
    "optim": {"lr": 1.0e-2},
    "data": {"batch_size": 2},
    "trainer": {
        "max_epochs": 2,
        "accelerator": "cpu",
        "devices": 1,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "log_every_n_steps": 1,
    },
}


def tiny_config(**sections) -> dict:
    """The base config with sections replaced or extended (one level deep)."""
    cfg = copy.deepcopy(BASE)
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict) and key not in ("model", "loss"):
            cfg[key] = {**cfg[key], **value}
        elif value is None:
            cfg.pop(key, None)
        else:
            cfg[key] = value
    return cfg


@pytest.fixture(autouse=True)
def _quiet_lightning():
    names = ("lightning", "lightning.pytorch", "lightning.fabric")
    levels = {n: logging.getLogger(n).level for n in names}
    for n in names:
        logging.getLogger(n).setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module="lightning")
        warnings.filterwarnings("ignore", message=".*LeafSpec.*")
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        yield
    for n, level in levels.items():
        logging.getLogger(n).setLevel(level)


def state_of(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def changed(before: dict, after: dict, prefix: str) -> list[str]:
    """Keys under ``prefix`` whose floating tensors differ (parameters and BatchNorm statistics)."""
    return [
        k for k in before
        if k.startswith(prefix) and before[k].is_floating_point() and not torch.equal(before[k], after[k])
    ]
