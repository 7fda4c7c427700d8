from __future__ import annotations

import pytest

from spectdl.errors import ConfigError
from spectdl.training import GANModule, fit, load_checkpoint, load_config, load_model_from_checkpoint
from spectdl.training.fit import seeded

from .conftest import BlurDataset, changed, state_of, tiny_config

GENERATOR = {"name": "pix2pix_generator", "kwargs": {"features": [4, 8], "final_activation": None, "dropout": 0.0}}
GAN = {
    "discriminator": {"name": "patch_discriminator", "kwargs": {"features": 4, "logits": True}},
    "optim_d": {"lr": 1.0e-3, "betas": [0.5, 0.999]},
    "d_loss_weight": 0.5,
}


def gan_config(**overrides):
    sections = dict(task="gan", model=GENERATOR, loss={"terms": {"l2": 100.0, "adversarial": 1.0}}, gan=GAN,
                    optim={"lr": 2.0e-3, "betas": [0.5, 0.999]})
    return tiny_config(**{**sections, **overrides})


def test_gan_alternates_generator_and_discriminator_steps(tmp_path):
    cfg = gan_config(trainer={"max_epochs": 2})
    with seeded(0):  # fit builds the module under the config's seed (0)
        initial = state_of(GANModule(load_config(cfg)))
    result = fit(cfg, BlurDataset(), BlurDataset(seed=1), tmp_path)
    tree = load_checkpoint(result.last_checkpoint)
    final = {k: v for k, v in tree["state_dict"].items()}
    assert changed(initial, final, "net.") and changed(initial, final, "discriminator.")
    # Every generator and discriminator weight moved (each player has its own optimiser step).
    g_weights = [k for k in initial if k.startswith("net.") and k.endswith("weight")]
    d_weights = [k for k in initial if k.startswith("discriminator.") and k.endswith("weight")]
    assert set(g_weights) <= set(changed(initial, final, "net."))
    assert set(d_weights) <= set(changed(initial, final, "discriminator."))

    opt_g, opt_d = tree["optimizer_states"]
    assert opt_g["param_groups"][0]["lr"] == 2.0e-3 and opt_d["param_groups"][0]["lr"] == 1.0e-3
    n_g = sum(1 for k in initial if k.startswith("net.") and "running" not in k and "num_batches" not in k)
    n_d = sum(1 for k in initial if k.startswith("discriminator.") and "running" not in k and "num_batches" not in k)
    assert len(opt_g["param_groups"][0]["params"]) == n_g and len(opt_d["param_groups"][0]["params"]) == n_d
    # Adam counts its steps: 2 batches × 2 epochs for each player, and Lightning counts both players.
    assert all(int(s["step"]) == 4 for s in opt_g["state"].values())
    assert all(int(s["step"]) == 4 for s in opt_d["state"].values())
    assert tree["spectdl"]["global_step"] == 8

    row = result.history[-1]
    assert {"train_loss", "train_d_loss", "train_loss.l2", "train_loss.adversarial", "val_psnr"} <= set(row)
    assert row["train_loss"] == pytest.approx(100 * row["train_loss.l2"] + row["train_loss.adversarial"], rel=1e-5)
    generator, meta = load_model_from_checkpoint(result.best_checkpoint)
    assert type(generator).__name__ == "Pix2PixGenerator"
    assert meta["discriminator"]["kwargs"]["in_channels"] == 2  # filled in from the generator


def test_gan_config_errors(tmp_path):
    val = BlurDataset(seed=1)
    no_adv = gan_config(loss={"terms": {"l2": 1.0}})
    with pytest.raises(ConfigError, match="loss: the gan task needs an adversarial term"):
        fit(no_adv, BlurDataset(), val, tmp_path)
    probabilities = gan_config(gan={**GAN, "discriminator": {"name": "patch_discriminator", "kwargs": {"features": 4}}})
    with pytest.raises(ConfigError, match="gan.discriminator.kwargs.logits: False, but .* from_logits=True"):
        fit(probabilities, BlurDataset(), val, tmp_path)
