"""Optimisers and learning-rate schedules from an :class:`~spectdl.training.config.OptimConfig`."""

from __future__ import annotations

from typing import Any, Iterable

import torch

from spectdl.errors import ConfigError
from spectdl.training.config import OptimConfig


def build_optimizer(params: Iterable[torch.nn.Parameter], config: OptimConfig, path: str = "optim") -> torch.optim.Optimizer:
    """Adam, AdamW or SGD over the parameters that require gradients."""
    params = [p for p in params if p.requires_grad]
    if not params:
        raise ConfigError(f"{path}: no trainable parameters to optimise")
    if config.name == "adam":
        return torch.optim.Adam(params, lr=config.lr, betas=config.betas, weight_decay=config.weight_decay)
    if config.name == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, betas=config.betas, weight_decay=config.weight_decay)
    return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)


def build_scheduler(
    optimizer: torch.optim.Optimizer, config: OptimConfig, max_epochs: int, monitor: str, mode: str = "min"
) -> dict[str, Any] | None:
    """A Lightning scheduler entry (``{"scheduler", "interval": "epoch", ...}``) or ``None``.

    ``cosine``: ``η_t = η_min + (η_0 − η_min)(1 + cos(π t / max_epochs)) / 2``; ``step``:
    ``η_t = η_0 γ^⌊t / step_size⌋``; ``plateau``: ``η ← max(γ η, η_min)`` after ``patience`` epochs
    without improvement of ``monitor`` (lower is better for ``mode="min"``).
    """
    if config.scheduler == "none":
        return None
    if config.scheduler == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max_epochs, eta_min=config.min_lr)
    elif config.scheduler == "step":
        sched = torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.step_size, gamma=config.gamma)
    else:
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode=mode, factor=config.gamma, patience=config.patience, min_lr=config.min_lr
        )
        # strict=False: an epoch without validation skips the update instead of failing.
        return {"scheduler": sched, "interval": "epoch", "monitor": monitor, "strict": False}
    return {"scheduler": sched, "interval": "epoch"}
