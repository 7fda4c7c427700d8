from __future__ import annotations

import pytest
import torch

from spectdl.errors import ConfigError, InputError
from spectdl.training import TwoStageAutoencoder, fit, load_checkpoint, load_config, load_model_from_checkpoint
from spectdl.training.fit import seeded

from .conftest import SinogramDataset, changed, state_of, tiny_config

SMALL = {
    "latent": 8,
    "encoder_features": [4, 4, 4, 4],
    "mapper_features": [4, 4, 4, 4],
    "decoder_hidden": 16,
    "decoder_features": 4,
    "stage_epochs": [1, 1, 1],
}


def two_stage_config(**two_stage):
    return tiny_config(task="two_stage", model=None, two_stage={**SMALL, **two_stage}, optim={"lr": 1.0e-3})


def test_stage_switch_freezes_the_right_parts():
    module = TwoStageAutoencoder(load_config(two_stage_config()))
    expected = {1: {"encoder", "decoder"}, 2: {"mapper"}, 3: {"mapper", "decoder"}}
    for stage in (1, 2, 3):
        if stage > 1:
            assert module.advance_stage() == stage
        module.train()
        for part in ("encoder", "mapper", "decoder"):
            m = getattr(module, part)
            trained = part in expected[stage]
            assert all(p.requires_grad == trained for p in m.parameters()), (stage, part)
            assert m.training == trained, (stage, part)  # frozen parts keep eval-mode BatchNorm
    with pytest.raises(InputError, match="already at stage 3"):
        module.advance_stage()
    with pytest.raises(InputError, match="stage: expected 1, 2 or 3"):
        module.set_stage(0)


def test_each_stage_changes_only_its_parts(tmp_path):
    cfg = two_stage_config()
    with seeded(0):
        initial = state_of(TwoStageAutoencoder(load_config(cfg)))
    result = fit(cfg, SinogramDataset(), SinogramDataset(seed=1), tmp_path)
    assert [r.out_dir.name for r in result.stages] == ["stage1", "stage2", "stage3"]
    assert [row["stage"] for row in result.history] == [1.0, 2.0, 3.0]
    states = [initial] + [load_checkpoint(r.last_checkpoint)["state_dict"] for r in result.stages]
    expected = {1: ("encoder.", "net.decoder."), 2: ("net.mapper.",), 3: ("net.mapper.", "net.decoder.")}
    for stage in (1, 2, 3):
        before, after = states[stage - 1], states[stage]
        for prefix in ("encoder.", "net.mapper.", "net.decoder."):
            moved = changed(before, after, prefix)
            if prefix in expected[stage]:
                assert moved, (stage, prefix)
            else:
                assert not moved, (stage, prefix, moved[:3])  # weights and BatchNorm statistics alike

    net, meta = load_model_from_checkpoint(result.last_checkpoint)
    assert type(net).__name__ == "SPECTnet" and meta["stage"] == 3 and meta["in_channels"] == 2
    x = SinogramDataset(seed=1).x[:2]
    module = TwoStageAutoencoder(load_config(cfg), stage=3)
    module.load_state_dict(load_checkpoint(result.last_checkpoint)["state_dict"])
    with torch.no_grad():
        assert torch.equal(net(x), module.eval()(x))


def test_later_stage_needs_the_weights_of_the_stage_before(tmp_path):
    with pytest.raises(ConfigError, match="two_stage.stage: stage 2 starts from the weights of stage 1"):
        fit(two_stage_config(stage=2), SinogramDataset(), None, tmp_path)


def test_one_spectnet_builder_and_legacy_checkpoint_keys():
    from spectdl.models import build
    from spectdl.models.spectnet import SPECTnet
    from spectdl.training.networks import build_from_meta, spectnet_kwargs

    cfg = load_config(two_stage_config())
    kwargs = spectnet_kwargs(cfg.two_stage)
    module = TwoStageAutoencoder(cfg)
    direct = build("spectnet", **kwargs)
    assert isinstance(module.net, SPECTnet)
    n = sum(p.numel() for p in module.net.parameters())
    assert n == sum(p.numel() for p in direct.parameters())
    # A checkpoint written before the single builder named the channels input/image_channels.
    legacy = {k: v for k, v in kwargs.items() if k not in ("in_channels", "out_channels")}
    legacy.update(input_channels=2, image_channels=1)
    rebuilt = build_from_meta({"task": "two_stage", "model": {"name": "spectnet", "kwargs": legacy}})
    assert sum(p.numel() for p in rebuilt.parameters()) == n
    assert (rebuilt.in_channels, rebuilt.out_channels) == (2, 1)


def test_autoencoder_from_checkpoint_reproduces_stage_one(tmp_path):
    from spectdl.training.two_stage import autoencoder_from_checkpoint

    cfg = two_stage_config(last_stage=1)
    data = SinogramDataset(8)
    res = fit(cfg, data, data, tmp_path / "run")
    ae = autoencoder_from_checkpoint(res.best_checkpoint)
    module = TwoStageAutoencoder(load_config(cfg), stage=1)
    module.load_state_dict(load_checkpoint(res.best_checkpoint)["state_dict"])
    module.eval()
    y = torch.stack([data[i]["target"] for i in range(4)])
    with torch.no_grad():
        torch.testing.assert_close(ae(y), module.decoder(module.encoder(y)))
    # Against an independent number: the history's validation loss (L1 here) of that epoch.
    row = next(r for r in res.history if r["epoch"] == res.best_epoch)
    all_y = torch.stack([data[i]["target"] for i in range(len(data))])
    with torch.no_grad():
        l1 = float(torch.nn.functional.l1_loss(ae(all_y), all_y))
    assert l1 == pytest.approx(row["val_loss"], rel=1e-4)
