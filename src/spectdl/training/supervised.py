"""Supervised training of any registered network with a loss from :func:`spectdl.losses.build_loss`."""

from __future__ import annotations

import inspect
from typing import Any

import torch

from spectdl.errors import ConfigError
from spectdl.losses import DeepSupervision
from spectdl.training._base import SpectdlModule, build_loss_from_config
from spectdl.training.config import TrainConfig
from spectdl.training.data import split_batch
from spectdl.training.networks import build_model
from spectdl.training.optim import build_optimizer, build_scheduler


class SupervisedModule(SpectdlModule):
    """``loss(net(input), target, **context)`` minimised over the network's weights.

    The network is ``spectdl.models.build(config.model.name, **config.model.kwargs)`` and the loss
    ``spectdl.losses.build_loss(config.loss)``. When the loss is a
    :class:`~spectdl.losses.DeepSupervision` (``deep_supervision:`` in the loss config), the network
    is called with ``return_sides=True`` and the loss sees ``(fused, [sides])``; the image metrics
    always use the fused output. Every batch key other than ``input`` and ``target`` reaches the loss
    as a context keyword (``lesion_mask=``, ``masks=``, ...).

    Logged: ``train_loss`` and ``val_loss`` (epoch means, plus ``.<term>`` components), ``val_psnr``
    and ``val_ssim`` (mean per image).
    """

    task = "supervised"

    def __init__(self, config: TrainConfig):
        super().__init__(config)
        if config.model is None:
            raise ConfigError("model: required for the supervised task")
        self.net = build_model(config.model)
        self.loss = build_loss_from_config(config)
        self.deep_supervision = isinstance(self.loss, DeepSupervision)
        if self.deep_supervision and "return_sides" not in inspect.signature(self.net.forward).parameters:
            raise ConfigError(
                f"loss.deep_supervision: model {config.model.name!r} has no side outputs "
                "(its forward takes no return_sides argument); expected null"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def _outputs(self, x: torch.Tensor) -> Any:
        return self.net(x, return_sides=True) if self.deep_supervision else self.net(x)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x, y, context = split_batch(batch)
        loss = self.loss(self._outputs(x), y, **context)
        self.check_finite(loss, x, batch_idx, loss_module=self.loss)
        self.log_loss("train", loss, x.shape[0], self.loss)
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        x, y, context = split_batch(batch)
        out = self._outputs(x)
        loss = self.loss(out, y, **context)
        self.log_loss("val", loss, x.shape[0], self.loss)
        self.log_image_metrics(out[0] if self.deep_supervision else out, y)

    def configure_optimizers(self):
        optimizer = build_optimizer(self.net.parameters(), self.config.optim)
        scheduler = build_scheduler(
            optimizer, self.config.optim, self.trainer.max_epochs, self.config.checkpoint.monitor,
            self.config.checkpoint.mode,
        )
        return optimizer if scheduler is None else {"optimizer": optimizer, "lr_scheduler": scheduler}
