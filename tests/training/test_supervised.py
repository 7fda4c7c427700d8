from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from spectdl.training import fit, load_model_from_checkpoint

from .conftest import BlurDataset, tiny_config


def test_fit_lowers_the_loss_and_logs_what_the_checkpoint_reproduces(tmp_path):
    cfg = tiny_config(optim={"lr": 3e-2}, trainer={"max_epochs": 3},
                      checkpoint={"metadata": {"normalization": {"inputs": ["mean"], "output": 0}}})
    rng_before = torch.get_rng_state()
    result = fit(cfg, BlurDataset(), BlurDataset(seed=1), tmp_path)
    assert torch.equal(torch.get_rng_state(), rng_before)  # the caller's global RNG is untouched

    train = [row["train_loss"] for row in result.history]
    val = [row["val_loss"] for row in result.history]
    assert [row["epoch"] for row in result.history] == [0, 1, 2]
    assert train[-1] < 0.6 * train[0]
    assert val[0] > val[1] > val[2]
    assert result.epochs_completed == 3
    assert result.best_epoch == 2 and result.best_score == val[2]
    assert (tmp_path / "config.yaml").is_file()
    with open(tmp_path / "logs" / "version_0" / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("val_loss")]
    assert len(rows) == 3 and float(rows[-1]["val_loss"]) == pytest.approx(val[-1])

    # Recompute the last epoch's validation figures from the last checkpoint, with scikit-image.
    model, meta = load_model_from_checkpoint(result.last_checkpoint)
    assert (meta["epochs_completed"], meta["task"], meta["model"]["name"]) == (3, "supervised", "unet")
    assert meta["normalization"] == {"inputs": ["mean"], "output": 0}  # passed through for inference
    ds = BlurDataset(seed=1)
    with torch.no_grad():
        pred = model(ds.x)
    assert (pred - ds.y).abs().mean().item() == pytest.approx(val[-1], rel=1e-5)
    p, t = pred[:, 0].numpy().astype(np.float64), ds.y[:, 0].numpy().astype(np.float64)
    ranges = [ti.max() - ti.min() for ti in t]
    psnr_ref = np.mean([peak_signal_noise_ratio(ti, pi, data_range=r) for ti, pi, r in zip(t, p, ranges)])
    ssim_ref = np.mean([
        structural_similarity(ti, pi, data_range=r, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
        for ti, pi, r in zip(t, p, ranges)
    ])
    assert result.history[-1]["val_psnr"] == pytest.approx(psnr_ref, abs=1e-3)
    assert result.history[-1]["val_ssim"] == pytest.approx(ssim_ref, abs=1e-4)


def test_deep_supervision_trains_every_side_output(tmp_path):
    cfg = tiny_config(
        model={"name": "u2net_small", "kwargs": {"in_channels": 1, "out_channels": 1}},
        loss={"terms": {"l1": 1.0}, "deep_supervision": 7},
        trainer={"max_epochs": 1},
    )
    result = fit(cfg, BlurDataset(), BlurDataset(seed=1), tmp_path)
    row = result.history[0]
    sides = [row[f"train_loss.side{i}"] for i in range(1, 7)]
    # DeepSupervision with unit weights: the total is the sum of the fused and six side losses.
    assert row["train_loss"] == pytest.approx(row["train_loss.fused"] + sum(sides), rel=1e-5)
    assert "val_psnr" in row


def _logged_image_metrics(metrics_cfg, pred, target):
    from spectdl.training import load_config
    from spectdl.training.supervised import SupervisedModule

    module = SupervisedModule(load_config(tiny_config(metrics=metrics_cfg)))
    logged = {}
    module.log = lambda name, value, **kw: logged.__setitem__(name, (value, kw["batch_size"]))
    module.log_image_metrics(pred, target)
    return logged


@pytest.mark.parametrize("metrics_cfg, convention", [
    ({}, "reference_range"),
    ({"convention": "reference_max"}, "reference_max"),
    ({"convention": "reference_max", "data_range": 2.0}, "data_range=2.0"),
])
def test_logged_val_metrics_are_the_scorer_s_image_scores(metrics_cfg, convention):
    from spectdl.metrics.scoring import image_scores

    g = torch.Generator().manual_seed(3)
    target = torch.rand(3, 1, 16, 16, generator=g) + 0.2
    pred = target + 0.1 * torch.randn(3, 1, 16, 16, generator=g)
    logged = _logged_image_metrics(metrics_cfg, pred, target)
    ref = image_scores(pred, target, metrics=("psnr", "ssim", "rmse"), convention=convention)
    assert set(logged) == {"val_psnr", "val_ssim", "val_rmse"}
    for name in ("psnr", "ssim", "rmse"):
        value, batch_size = logged[f"val_{name}"]
        assert batch_size == 3 and value.dtype == torch.float32
        assert float(value) == pytest.approx(float(ref[name].mean()), rel=1e-6)


def test_val_metrics_skip_small_ssim_and_score_flat_targets_with_unit_range():
    from spectdl.metrics.scoring import Convention, image_scores

    target = torch.rand(2, 1, 8, 8)
    target[1] = 0.5  # a blank patch has no max − min
    pred = target + 0.05
    logged = _logged_image_metrics({}, pred, target)
    assert set(logged) == {"val_psnr", "val_rmse"}  # 8 px is below SSIM's 11-px window
    expected = torch.cat([image_scores(pred[:1], target[:1], metrics="psnr", convention="reference_range")["psnr"],
                          image_scores(pred[1:], target[1:], metrics="psnr", convention=Convention.fixed(1.0))["psnr"]])
    assert float(logged["val_psnr"][0]) == pytest.approx(float(expected.mean()), rel=1e-6)


def test_metrics_convention_must_be_a_known_name():
    from spectdl.errors import ConfigError
    from spectdl.training import load_config

    assert load_config(tiny_config()).metrics.convention == "reference_range"
    with pytest.raises(ConfigError, match=r"metrics.convention: expected one of \['reference_max', "
                                          r"'reference_max_c0.01_0.02', 'reference_range'\]"):
        load_config(tiny_config(metrics={"convention": "skimage"}))
    with pytest.raises(ConfigError, match="prediction_max"):
        load_config(tiny_config(metrics={"convention": "prediction_max"}))


def test_to_channels_last_converts_2d_and_3d_weights_in_place_and_keeps_the_output():
    from spectdl.models import build
    from spectdl.training.supervised import to_channels_last

    torch.manual_seed(0)
    net = build("dynunet3d", in_channels=1, out_channels=1, mode="dc-dynamic", features=4, dense_layers=2).eval()
    mixed = torch.nn.ModuleList([torch.nn.Conv3d(2, 3, 3), torch.nn.Conv2d(2, 3, 3), torch.nn.Linear(3, 3)])
    x = torch.rand(2, 1, 20, 24, 24, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        before = net(x)
    params = list(net.parameters()) + list(mixed.parameters())
    to_channels_last(net), to_channels_last(mixed)  # Module.to(memory_format=) refuses the mixed one
    assert [id(p) for p in list(net.parameters()) + list(mixed.parameters())] == [id(p) for p in params]
    assert mixed[0].weight.is_contiguous(memory_format=torch.channels_last_3d)
    assert mixed[1].weight.is_contiguous(memory_format=torch.channels_last)
    assert not mixed[0].weight.is_contiguous() and not mixed[1].weight.is_contiguous()
    assert all(p.is_contiguous(memory_format=torch.channels_last_3d) for p in net.parameters() if p.dim() == 5)
    with torch.no_grad():
        after = net(x.contiguous(memory_format=torch.channels_last_3d))
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-5)


def test_bf16_mixed_runs_the_network_in_bfloat16_and_the_loss_in_float32():
    from spectdl.training import load_config
    from spectdl.training.supervised import SupervisedModule

    cfg = load_config(tiny_config(loss={"terms": {"l1": 1.0, "ssim": 0.8}}, trainer={"precision": "bf16-mixed"}))
    module = SupervisedModule(cfg)
    module.log_loss = module.check_finite = lambda *a, **k: None  # both need an attached Trainer
    ds = BlurDataset(n=2)
    batch = {"input": ds.x, "target": ds.y}
    seen = []
    module.net.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    with torch.autocast("cpu", dtype=torch.bfloat16):  # what Lightning's bf16-mixed wraps a step in
        loss = module.training_step(batch, 0)
    assert seen == [torch.bfloat16] and loss.dtype == torch.float32
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = module.net(ds.x)
    expected = module.loss(out.float(), ds.y)  # the same bf16 output, its loss taken in float32
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_fit_in_bf16_mixed_with_channels_last_lowers_the_loss(tmp_path):
    cfg = tiny_config(optim={"lr": 3e-2}, trainer={"max_epochs": 3, "precision": "bf16-mixed", "channels_last": True})
    result = fit(cfg, BlurDataset(), BlurDataset(seed=1), tmp_path)
    train = [row["train_loss"] for row in result.history]
    assert train[-1] < 0.6 * train[0]
    model, meta = load_model_from_checkpoint(result.last_checkpoint)
    ds = BlurDataset(seed=1)
    with torch.no_grad():
        pred = model(ds.x)  # a plain float32 model for inference, whatever the training precision
    assert pred.dtype == torch.float32
    # bfloat16 keeps 8 bits of mantissa: the float32 error of the weights lies within 1 % of the logged one
    assert (pred - ds.y).abs().mean().item() == pytest.approx(result.history[-1]["val_loss"], rel=2e-2)


def test_channels_last_is_refused_for_other_tasks():
    from spectdl.errors import ConfigError
    from spectdl.training import load_config

    with pytest.raises(ConfigError, match="trainer.channels_last: only applied by task 'supervised'"):
        load_config(tiny_config(task="gan", trainer={"channels_last": True}))
