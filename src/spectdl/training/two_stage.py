"""SPECTnet's two-stage recipe: an image autoencoder, then a mapper from the data to its codes.

Shao W., Pomper M. G., Du Y. "A learned reconstruction network for SPECT imaging." IEEE TRPMS
5(1):26–34 (2021). Networks: :mod:`spectdl.models.spectnet`.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from spectdl.errors import ConfigError, InputError
from spectdl.losses import DeepSupervision
from spectdl.training._base import SpectdlModule, build_loss_from_config
from spectdl.training.config import TrainConfig
from spectdl.training.data import split_batch
from spectdl.training.networks import build_spectnet_encoder, spectnet_kwargs
from spectdl.training.optim import build_optimizer, build_scheduler

STAGES = {
    1: "autoencoder: decoder(encoder(target)) ≈ target",
    2: "mapper on the codes: mapper(input) ≈ encoder(target), encoder frozen",
    3: "fine-tune end to end: decoder(mapper(input)) ≈ target, encoder frozen",
}


class TwoStageAutoencoder(SpectdlModule):
    """The three stages of SPECTnet training in one module; :meth:`set_stage` / :meth:`advance_stage`
    switch between them (the stage is ``two_stage.stage`` in the config).

    Parts: ``encoder`` (image -> code), ``net.mapper`` (input, e.g. [wrap-padded sinogram, mu map]
    -> code) and ``net.decoder`` (code -> image); ``net`` is the inference network
    ``SPECTnet(mapper, decoder)``.

    ==========  ============================================  =====================  =============
    stage       loss                                          trained                frozen (eval)
    ==========  ============================================  =====================  =============
    1           ``loss(decoder(encoder(y)), y)``              encoder, decoder       mapper
    2           ``code_loss(mapper(x), encoder(y))``          mapper                 encoder, decoder
    3           ``loss(decoder(mapper(x)), y)``               mapper, decoder        encoder
    ==========  ============================================  =====================  =============

    ``loss`` is the config's image loss (``build_loss``) and ``code_loss`` the mean squared (``l2``)
    or absolute (``l1``) difference of the codes. Frozen parts have ``requires_grad=False`` and stay
    in eval mode, so their BatchNorm statistics do not move either. Validation logs ``val_loss``
    (the stage's loss) and PSNR/SSIM of the stage's image output (stage 2: ``decoder(mapper(x))``).
    """

    task = "two_stage"

    def __init__(self, config: TrainConfig, stage: int | None = None):
        super().__init__(config)
        ts = config.two_stage
        if ts is None:
            raise ConfigError("two_stage: the two_stage task needs a two_stage section")
        self.encoder = build_spectnet_encoder(ts)
        from spectdl.models import build

        self.net = build("spectnet", **spectnet_kwargs(ts))
        self.loss = build_loss_from_config(config)
        if isinstance(self.loss, DeepSupervision):
            raise ConfigError("loss.deep_supervision: SPECTnet has no side outputs; expected null")
        self._stage = 0
        self.set_stage(ts.stage if stage is None else stage)

    @property
    def mapper(self) -> nn.Module:
        return self.net.mapper

    @property
    def decoder(self) -> nn.Module:
        return self.net.decoder

    @property
    def stage(self) -> int:
        return self._stage

    def trainable_parts(self, stage: int | None = None) -> dict[str, nn.Module]:
        """The parts trained in ``stage`` (default: the current one), by name."""
        stage = self._stage if stage is None else stage
        names = {1: ("encoder", "decoder"), 2: ("mapper",), 3: ("mapper", "decoder")}[stage]
        return {n: getattr(self, n) for n in names}

    def set_stage(self, stage: int) -> None:
        """Switch to ``stage`` (1, 2 or 3): freeze the other parts and put them in eval mode."""
        if stage not in STAGES:
            raise InputError(f"stage: expected 1, 2 or 3, found {stage!r}")
        self._stage = stage
        trained = set(self.trainable_parts().values())
        for part in (self.encoder, self.mapper, self.decoder):
            part.requires_grad_(part in trained)
        self.train(self.training)

    def advance_stage(self) -> int:
        """Go to the next stage (keeping the weights) and return it; after stage 3 this is an error."""
        if self._stage >= 3:
            raise InputError("advance_stage: already at stage 3, the last stage of the recipe")
        self.set_stage(self._stage + 1)
        return self._stage

    def train(self, mode: bool = True):
        super().train(mode)
        # Lightning switches the whole module to train mode around validation; frozen parts stay in eval.
        if getattr(self, "_stage", 0):
            trained = set(self.trainable_parts().values())
            for part in (self.encoder, self.mapper, self.decoder):
                if part not in trained:
                    part.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def _code_loss(self, code: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        if self.config.two_stage.code_loss == "l1":
            return F.l1_loss(code, reference)
        return F.mse_loss(code, reference)

    def _step(self, batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(loss, image output, target, input)`` of the current stage."""
        x, y, context = split_batch(batch)
        if self._stage == 1:
            pred = self.decoder(self.encoder(y))
            return self.loss(pred, y, **context), pred, y, x
        if self._stage == 2:
            with torch.no_grad():
                reference = self.encoder(y)
            code = self.mapper(x)
            # The image is only needed for the validation metrics.
            pred = None if self.training else self.decoder(code.detach())
            return self._code_loss(code, reference), pred, y, x
        pred = self.decoder(self.mapper(x))
        return self.loss(pred, y, **context), pred, y, x

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        loss, _, _, x = self._step(batch)
        self.check_finite(loss, x, batch_idx, loss_module=self.loss if self._stage != 2 else None)
        self.log_loss("train", loss, x.shape[0], self.loss if self._stage != 2 else None)
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        loss, pred, y, x = self._step(batch)
        self.log_loss("val", loss, x.shape[0], self.loss if self._stage != 2 else None)
        self.log_image_metrics(pred, y)

    def configure_optimizers(self):
        params = [p for part in self.trainable_parts().values() for p in part.parameters()]
        optimizer = build_optimizer(params, self.config.optim)
        cfg = self.config
        scheduler = build_scheduler(optimizer, cfg.optim, self.trainer.max_epochs, cfg.checkpoint.monitor, cfg.checkpoint.mode)
        return optimizer if scheduler is None else {"optimizer": optimizer, "lr_scheduler": scheduler}

    def network_description(self) -> tuple[nn.Module, str, dict[str, Any]]:
        return self.net, "spectnet", spectnet_kwargs(self.config.two_stage)

    def extra_meta(self) -> dict[str, Any]:
        return {"stage": self._stage}


def autoencoder_from_checkpoint(path, map_location: str | torch.device | None = "cpu") -> nn.Module:
    """The stage-1 image autoencoder ``decoder(encoder(y))`` of a two-stage checkpoint, in eval mode.

    The inference network of a two-stage checkpoint is SPECTnet (mapper and decoder); the encoder
    is kept in its state too, and this rebuilds both from the config the checkpoint records, e.g.
    to score the autoencoder itself (``[B, 1, 128, 128] -> [B, 1, 128, 128]``).
    """
    from spectdl.training.checkpoint import checkpoint_path, read_checkpoint
    from spectdl.training.config import load_config
    from spectdl.training.meta import META_KEY

    tree = read_checkpoint(path, map_location)
    meta = tree[META_KEY]
    if meta.get("task") != "two_stage" or not meta.get("config"):
        raise InputError(f"checkpoint {checkpoint_path(path)}: task {meta.get('task')!r} without its config; expected a "
                         "two-stage (SPECTnet) checkpoint written by fit")
    module = TwoStageAutoencoder(load_config(meta["config"]), stage=1)
    module.load_state_dict(tree["state_dict"], strict=True)
    return nn.Sequential(module.encoder, module.decoder).eval()
