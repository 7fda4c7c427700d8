"""Errors raised by the training engine."""

from __future__ import annotations

from pathlib import Path

from spectdl.errors import SpectdlError


class TrainingDivergedError(SpectdlError, RuntimeError):
    """The training loss (or the weights) became NaN or infinite; training stopped.

    Attributes:
        epoch: 0-based epoch in which it happened.
        step: the global optimiser step.
        last_checkpoint: the last good checkpoint (``None`` when none was written yet); it is never
            overwritten by diverged weights.
    """

    def __init__(self, message: str, epoch: int | None = None, step: int | None = None,
                 last_checkpoint: Path | None = None):
        super().__init__(message)
        self.epoch = epoch
        self.step = step
        self.last_checkpoint = last_checkpoint
