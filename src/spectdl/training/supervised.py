"""Supervised training of any registered network with a loss from :func:`spectdl.losses.build_loss`."""

from __future__ import annotations

import contextlib
import inspect
from typing import Any, Iterator

import torch

from spectdl.errors import ConfigError
from spectdl.losses import DeepSupervision
from spectdl.training._base import SpectdlModule, build_loss_from_config
from spectdl.training.config import TrainConfig
from spectdl.training.data import split_batch
from spectdl.training.networks import build_model
from spectdl.training.optim import build_optimizer, build_scheduler


_MEMORY_FORMATS = {4: torch.channels_last, 5: torch.channels_last_3d}


def to_channels_last(net: torch.nn.Module) -> torch.nn.Module:
    """Every 4-D weight in ``channels_last`` and every 5-D one in ``channels_last_3d``, in place.

    ``Module.to(memory_format=...)`` takes one format and refuses a network that mixes 2-D and 3-D
    weights (the dynamic convolutions' attention layers); the Parameters themselves are kept, so an
    optimizer built before still holds them.
    """
    for p in net.parameters():
        fmt = _MEMORY_FORMATS.get(p.dim())
        if fmt is not None:
            p.data = p.data.contiguous(memory_format=fmt)
    return net


def _as_channels_last(x: torch.Tensor) -> torch.Tensor:
    fmt = _MEMORY_FORMATS.get(x.dim())
    return x if fmt is None else x.contiguous(memory_format=fmt)


def _float32(out: Any) -> Any:
    if isinstance(out, torch.Tensor):
        return out.float()
    if isinstance(out, (list, tuple)):
        return type(out)(_float32(o) for o in out)
    return out


class SupervisedModule(SpectdlModule):
    """``loss(net(input), target, **context)`` minimised over the network's weights.

    The network is ``spectdl.models.build(config.model.name, **config.model.kwargs)`` and the loss
    ``spectdl.losses.build_loss(config.loss)``. When the loss is a
    :class:`~spectdl.losses.DeepSupervision` (``deep_supervision:`` in the loss config), the network
    is called with ``return_sides=True`` and the loss sees ``(fused, [sides])``; the image metrics
    always use the fused output. Every batch key other than ``input`` and ``target`` reaches the loss
    as a context keyword (``lesion_mask=``, ``masks=``, ...).

    Under a mixed ``trainer.precision`` the network runs in autocast and the loss and metrics in
    float32 outside it, on the output cast to float32: the losses' own convolutions (SSIM's windows,
    Sobel) would otherwise be lowered to bfloat16, whose 8-bit mantissa is too coarse for local
    variances E[x²] − E[x]² and ratios such as IMBV. ``trainer.channels_last`` puts weights and
    inputs in channels-last memory format.

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
        self.channels_last = config.trainer.channels_last
        if self.channels_last:
            to_channels_last(self.net)
        self.mixed = config.trainer.precision.endswith("-mixed")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def _outputs(self, x: torch.Tensor) -> Any:
        if self.channels_last:
            x = _as_channels_last(x)
        out = self.net(x, return_sides=True) if self.deep_supervision else self.net(x)
        return _float32(out) if self.mixed else out

    @contextlib.contextmanager
    def _full_precision(self, x: torch.Tensor) -> Iterator[None]:
        if not self.mixed:
            yield
            return
        with torch.autocast(device_type=x.device.type, enabled=False):
            yield

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x, y, context = split_batch(batch)
        out = self._outputs(x)
        with self._full_precision(x):
            loss = self.loss(out, y, **context)
        self.check_finite(loss, x, batch_idx, loss_module=self.loss)
        self.log_loss("train", loss, x.shape[0], self.loss)
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        x, y, context = split_batch(batch)
        out = self._outputs(x)
        with self._full_precision(x):
            loss = self.loss(out, y, **context)
            self.log_image_metrics(out[0] if self.deep_supervision else out, y)
        self.log_loss("val", loss, x.shape[0], self.loss)

    def configure_optimizers(self):
        optimizer = build_optimizer(self.net.parameters(), self.config.optim)
        scheduler = build_scheduler(
            optimizer, self.config.optim, self.trainer.max_epochs, self.config.checkpoint.monitor,
            self.config.checkpoint.mode,
        )
        return optimizer if scheduler is None else {"optimizer": optimizer, "lr_scheduler": scheduler}
