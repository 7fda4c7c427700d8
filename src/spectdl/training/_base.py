"""What the spectdl LightningModules share: checkpoint metadata, RNG state, the NaN guard, metrics."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from spectdl.errors import ConfigError, require
from spectdl.training.meta import META_KEY, network_meta
from spectdl.training.config import TrainConfig
from spectdl.training.errors import TrainingDivergedError

L = require("lightning", "train")

#: Keys logged for the progress bar only, left out of the epoch history.
STEP_ONLY_KEYS = ("loss",)


def scalar_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """The one-number entries of a Lightning metrics dict, as floats."""
    out = {}
    for key, value in metrics.items():
        if key in STEP_ONLY_KEYS:
            continue
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            out[key] = float(value.detach().float().cpu())
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[key] = float(value)
    return out


def build_loss_from_config(config: TrainConfig) -> nn.Module:
    """``spectdl.losses.build_loss(config.loss)``, its errors prefixed with ``loss.``; the loss's
    own parameters (e.g. a fixed VGG of a perceptual term) are frozen."""
    from spectdl.losses import build_loss

    try:
        loss = build_loss(dict(config.loss))
    except (ConfigError, TypeError, ValueError) as exc:
        raise ConfigError(f"loss.{exc}" if isinstance(exc, ConfigError) else f"loss: {exc}") from None
    for p in loss.parameters():
        p.requires_grad_(False)
    return loss


def _rng_state(device: torch.device) -> dict[str, torch.Tensor]:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, torch.Tensor], device: torch.device) -> None:
    if "torch" in state:
        torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)


class SpectdlModule(L.LightningModule):
    """Base of the training modules. Subclasses set ``task``, build ``self.net`` (the inference
    network, stored in checkpoints under ``net.``) and implement :meth:`network_description`.

    Checkpoints get the ``spectdl`` metadata block and the RNG state (restored at the start of
    training, so a resumed run draws the random numbers the uninterrupted run would have drawn).
    """

    task = "supervised"

    def __init__(self, config: TrainConfig):
        super().__init__()
        if not isinstance(config, TrainConfig):
            raise ConfigError(f"config: expected a TrainConfig (see spectdl.training.load_config), found {type(config).__name__}")
        self.config = config
        self._pending_rng: dict[str, torch.Tensor] | None = None

    # -- checkpoint metadata -------------------------------------------------------------------
    def network_description(self) -> tuple[nn.Module, str, dict[str, Any]]:
        """``(network, registry name, constructor kwargs)`` of the inference network."""
        return self.net, self.config.model.name, dict(self.config.model.kwargs)

    def extra_meta(self) -> dict[str, Any]:
        return {}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        net, name, kwargs = self.network_description()
        trainer = self.trainer
        checkpoint[META_KEY] = network_meta(
            net,
            name,
            kwargs,
            task=self.task,
            modality=self.config.modality,
            config=self.config.to_dict(),
            epoch=trainer.current_epoch,
            epochs_completed=trainer.fit_loop.epoch_progress.current.processed,
            global_step=trainer.global_step,
            metrics=scalar_metrics(trainer.callback_metrics),
            **self.extra_meta(),
            **self.config.checkpoint.metadata,
        )
        checkpoint["rng"] = _rng_state(self.device)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._pending_rng = checkpoint.get("rng")

    def on_train_start(self) -> None:
        # Restored here, not on load: the sanity check and set-up between the two draw no numbers
        # in the uninterrupted run at this point.
        if self._pending_rng is not None:
            _set_rng_state(self._pending_rng, self.device)
            self._pending_rng = None

    # -- schedules -----------------------------------------------------------------------------
    def lr_scheduler_step(self, scheduler, metric) -> None:
        # Plateau schedules are stepped in on_train_epoch_end, before the epoch's checkpoint is
        # written; Lightning would step them after it, and a resumed run would miss that step.
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            return
        super().lr_scheduler_step(scheduler, metric)

    def on_train_epoch_end(self) -> None:
        trainer = self.trainer
        for config in trainer.lr_scheduler_configs:
            scheduler = config.scheduler
            if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                value = trainer.callback_metrics.get(config.monitor)
                if value is not None:
                    scheduler.step(float(value))
            elif not self.automatic_optimization:
                scheduler.step()

    # -- NaN guard -----------------------------------------------------------------------------
    def check_finite(self, loss: torch.Tensor, batch_input: torch.Tensor, batch_idx: int,
                     what: str = "loss", loss_module: nn.Module | None = None) -> None:
        """Raise :class:`TrainingDivergedError` when ``loss`` is NaN or infinite (on any process)."""
        bad = not bool(torch.isfinite(loss.detach()).all())
        if self.trainer.world_size > 1:
            bad = self.trainer.strategy.reduce_boolean_decision(bad, all=False)
        if not bad:
            return
        value = float(loss.detach().float().cpu()) if loss.numel() == 1 else "non-finite"
        notes = []
        components = getattr(loss_module, "last_components", None) or {}
        bad_terms = [k for k, v in components.items() if not bool(torch.isfinite(v).all())]
        if bad_terms:
            notes.append(f"non-finite terms: {', '.join(bad_terms)}")
        if not bool(torch.isfinite(batch_input).all()):
            notes.append("the batch input itself holds NaN or inf values")
        detail = f" ({'; '.join(notes)})" if notes else ""
        raise TrainingDivergedError(
            f"{what} is {value} at epoch {self.current_epoch}, step {self.global_step}, batch {batch_idx}{detail}; "
            "training stopped. Try a lower optim.lr, a trainer.gradient_clip_val, or check the data for NaN/inf",
            epoch=self.current_epoch,
            step=self.global_step,
        )

    # -- logging -------------------------------------------------------------------------------
    def log_loss(self, stage: str, loss: torch.Tensor, batch_size: int, loss_module: nn.Module | None = None,
                 name: str = "loss") -> None:
        """``<stage>_<name>`` (epoch mean) and the loss's named components as ``<stage>_<name>.<term>``."""
        self.log(f"{stage}_{name}", loss.detach(), on_step=False, on_epoch=True, batch_size=batch_size,
                 sync_dist=True, prog_bar=stage == "val")
        if stage == "train" and name == "loss":
            self.log("loss", loss.detach(), on_step=True, on_epoch=False, prog_bar=True, logger=False)
        for key, value in (getattr(loss_module, "last_components", None) or {}).items():
            if value.numel() == 1:
                self.log(f"{stage}_{name}.{key}", value.detach(), on_step=False, on_epoch=True,
                         batch_size=batch_size, sync_dist=True)

    def metrics_convention(self):
        """The :class:`~spectdl.metrics.scoring.Convention` of the validation metrics:
        ``Convention.fixed(metrics.data_range)`` when it is set, else ``metrics.convention``."""
        from spectdl.metrics.scoring import Convention, convention

        cfg = self.config.metrics
        return Convention.fixed(cfg.data_range) if cfg.data_range is not None else convention(cfg.convention)

    def log_image_metrics(self, pred: torch.Tensor, target: torch.Tensor, stage: str = "val") -> None:
        """``<stage>_psnr`` (dB), ``<stage>_ssim`` and ``<stage>_rmse`` (the images' units): means over
        the batch of the per-image values of
        :func:`spectdl.metrics.scoring.image_scores` for ``pred`` and ``target`` ``[B, C, *spatial]``,
        in the convention of :meth:`metrics_convention` (by default ``reference_range``: peak and
        SSIM data range = ``max − min`` of each target image).

        SSIM needs every spatial size >= 11 (its window); smaller images get PSNR only. A target
        whose peak is not positive under the convention (a flat patch, for ``reference_range``) is
        scored with ``Convention.fixed(1.0)``.
        """
        from spectdl.metrics.scoring import Convention, image_scores, reference_peaks

        conv = self.metrics_convention()
        metrics = ("psnr", "ssim", "rmse") if self.config.metrics.ssim else ("psnr", "rmse")
        pred, target = pred.detach(), target.detach()
        peaks = reference_peaks(target, conv)
        # Validation must not stop on one blank patch, which has no range to scale a PSNR by.
        flat = ((peaks["psnr"] <= 0) | (peaks["ssim"] <= 0)).to(target.device)
        parts = [(pred, target, conv)] if not bool(flat.any()) else [
            (pred[~flat], target[~flat], conv), (pred[flat], target[flat], Convention.fixed(1.0))]
        scores: dict[str, list[torch.Tensor]] = {}
        for p, t, c in parts:
            if t.shape[0] == 0:
                continue
            for name, values in image_scores(p, t, metrics=metrics, convention=c, skip_small=True).items():
                scores.setdefault(name, []).append(values)
        b = target.shape[0]
        for name, values in scores.items():
            mean = torch.cat(values).mean().to(device=target.device, dtype=torch.float32)
            self.log(f"{stage}_{name}", mean, on_step=False, on_epoch=True, batch_size=b, sync_dist=True)
