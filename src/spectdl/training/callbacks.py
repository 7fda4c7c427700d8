"""Lightning plug-ins of the training engine: the safe checkpoint I/O and the best/last checkpoint callback."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Optional

import torch

from spectdl.errors import require
from spectdl.training._base import scalar_metrics
from spectdl.training.checkpoint import read_checkpoint, remove_checkpoint, write_checkpoint
from spectdl.training.errors import TrainingDivergedError
from spectdl.training.meta import META_KEY

L = require("lightning", "train")
from lightning.fabric.plugins import CheckpointIO  # noqa: E402
from lightning.pytorch.callbacks import Callback, Checkpoint  # noqa: E402


class SafeCheckpointIO(CheckpointIO):
    """Lightning ``CheckpointIO`` that writes and reads the spectdl format (safetensors + JSON).

    Lightning's own ``.ckpt`` files are pickles; with this plug-in, ``trainer.save_checkpoint`` and
    ``trainer.fit(ckpt_path=...)`` go through :func:`~spectdl.training.checkpoint.write_checkpoint`
    (atomic) and :func:`~spectdl.training.checkpoint.read_checkpoint` (no unpickling), so a resumed
    run restores weights, optimiser, schedulers, loop progress and callback state safely.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Optional[Any] = None) -> None:
        state = callback_state(checkpoint)
        meta = checkpoint.get(META_KEY)
        if state and isinstance(meta, dict):
            # The best epoch and score, readable in the metadata: on resume, fit checks best.json against them.
            checkpoint = {**checkpoint, META_KEY: {**meta, "best_epoch": state.get("best_epoch"),
                                                   "best_score": state.get("best_score")}}
        write_checkpoint(path, checkpoint)

    def load_checkpoint(self, path, map_location: Optional[Any] = None, weights_only: Optional[bool] = None) -> dict:
        # Tensors are read on the CPU; Lightning moves them to the module's and optimiser's devices.
        return read_checkpoint(path, map_location="cpu")

    def remove_checkpoint(self, path) -> None:
        remove_checkpoint(path)


class BestLastCheckpoint(Checkpoint):
    """Write ``last.json`` at the end of every training epoch and ``best.json`` when ``monitor`` improves.

    Both are spectdl checkpoints (through :class:`SafeCheckpointIO`, which the Trainer must use).
    Before writing, the weights are checked: non-finite weights raise
    :class:`~spectdl.training.errors.TrainingDivergedError` and the previous ``last`` stays.
    The callback also keeps the per-epoch ``history`` of logged metrics; its state (best score,
    best epoch, history) is saved in the checkpoints and restored on resume.
    """

    def __init__(self, dirpath, monitor: str = "val_loss", mode: str = "min"):
        super().__init__()
        self.dirpath = Path(dirpath)
        self.monitor = monitor
        self.mode = mode
        self.best_score: float | None = None
        self.best_epoch: int | None = None
        self.history: list[dict[str, float]] = []

    @property
    def state_key(self) -> str:
        return f"BestLastCheckpoint[monitor={self.monitor},mode={self.mode}]"

    @property
    def last_path(self) -> Path:
        return self.dirpath / "last.json"

    @property
    def best_path(self) -> Path:
        return self.dirpath / "best.json"

    def _improves(self, value: float | None) -> bool:
        if value is None or not math.isfinite(value):
            return False
        if self.best_score is None:
            return True
        return value < self.best_score if self.mode == "min" else value > self.best_score

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        epoch = trainer.current_epoch
        params = [p.detach() for p in pl_module.parameters()]
        if params and not bool(torch.stack([torch.isfinite(p).all() for p in params]).all()):
            bad = [n for n, p in pl_module.named_parameters() if not bool(torch.isfinite(p).all())]
            raise TrainingDivergedError(
                f"weights became NaN or inf in epoch {epoch} ({', '.join(bad[:3])}{', ...' if len(bad) > 3 else ''}); "
                "training stopped without overwriting the last checkpoint. Try a lower optim.lr or a "
                "trainer.gradient_clip_val",
                epoch=epoch,
                step=trainer.global_step,
            )
        metrics = scalar_metrics(trainer.callback_metrics)
        self.history.append({"epoch": epoch, **metrics})
        improved = self._improves(metrics.get(self.monitor))
        # Every process must take the same branch: saving includes a barrier.
        improved = bool(trainer.strategy.broadcast(improved, src=0))
        if improved:
            self.best_score = metrics[self.monitor]
            self.best_epoch = epoch
        # best before last: a kill between the two leaves best.json newer than last.json (the resumed
        # run redoes that epoch and writes it again), never a last.json whose best.json is stale.
        if improved:
            trainer.save_checkpoint(self.best_path, weights_only=False)
        trainer.save_checkpoint(self.last_path, weights_only=False)

    def state_dict(self) -> dict[str, Any]:
        return {
            "monitor": self.monitor,
            "mode": self.mode,
            "best_score": self.best_score,
            "best_epoch": self.best_epoch,
            "history": [dict(row) for row in self.history],
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best_score = state_dict.get("best_score")
        self.best_epoch = state_dict.get("best_epoch")
        self.history = [dict(row) for row in state_dict.get("history", [])]


def callback_state(tree: dict[str, Any]) -> dict[str, Any]:
    """The :class:`BestLastCheckpoint` state stored in a checkpoint tree (empty when absent)."""
    for key, value in (tree.get("callbacks") or {}).items():
        if isinstance(key, str) and key.startswith("BestLastCheckpoint["):
            return value
    return {}


class ExceptionRecorder(Callback):
    """Remembers the exception that ended ``trainer.fit`` (Lightning turns Ctrl-C into ``sys.exit(1)``;
    ``fit`` uses this to raise ``KeyboardInterrupt`` again)."""

    def __init__(self) -> None:
        self.exception: BaseException | None = None

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        self.exception = exception


class DatasetEpoch(Callback):
    """Tell the training Dataset which epoch starts (``dataset.set_epoch(epoch)``), when it has that
    method: spectdl's datasets draw their random augmentation from ``(seed, epoch, index)``, so
    without this every epoch would repeat the first one's transforms."""

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        loader = trainer.train_dataloader
        dataset = getattr(loader, "dataset", None)
        set_epoch = getattr(dataset, "set_epoch", None)
        if callable(set_epoch):
            set_epoch(int(trainer.current_epoch))
