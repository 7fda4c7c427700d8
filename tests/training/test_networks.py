"""load_model_from_checkpoint: the network a checkpoint describes, rebuilt with its weights."""

from __future__ import annotations

import torch

from spectdl.models import build
from spectdl.training.checkpoint import save_checkpoint
from spectdl.training.networks import load_model_from_checkpoint


def trained_unet():
    torch.manual_seed(0)
    model = build("unet", in_channels=1, out_channels=1, features=[4, 8])
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.rand(2, 1, 16, 16)
    for _ in range(2):  # moves the BatchNorm statistics away from their initial values
        opt.zero_grad()
        model(x).square().mean().backward()
        opt.step()
    return model


def test_load_model_gives_the_same_outputs(tmp_path):
    model = trained_unet()
    path = save_checkpoint(tmp_path / "m.json", model, model_name="unet", model_kwargs={"features": [4, 8]})
    loaded, meta = load_model_from_checkpoint(path)
    assert type(loaded).__name__ == "UNet" and not loaded.training
    x = torch.rand(1, 1, 16, 16)
    assert torch.equal(loaded(x), model.eval()(x))
    assert meta["task"] == "supervised"
