"""``fit``: the one entry point that trains a model from a config (called by ``spectdl train CONFIG``).

Output folder::

    out_dir/
      config.yaml                       the validated config of the run
      checkpoints/last.json (+ .safetensors)   written every epoch
      checkpoints/best.json (+ .safetensors)   written when checkpoint.monitor improves
      logs/version_<n>/metrics.csv      Lightning's CSV log (one version per start or resume)
      logs/version_<n>/events.*         TensorBoard, with trainer.tensorboard: true

Task ``two_stage`` puts one such folder per stage under ``out_dir/stage<k>/``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence, Union

import torch

from spectdl.errors import ConfigError, InputError, MissingDependencyError, require
from spectdl.training.checkpoint import read_checkpoint, remove_temporary_files, write_checkpoint
from spectdl.training.config import TrainConfig, dump_config, load_config
from spectdl.training.errors import TrainingDivergedError
from spectdl.training.meta import META_KEY

#: Config sections that must match the checkpoint when resuming (they define the networks).
_ARCHITECTURE_KEYS = ("task", "model", "gan.discriminator", "two_stage.latent", "two_stage.image_channels",
                      "two_stage.input_channels", "two_stage.encoder_features", "two_stage.mapper_features",
                      "two_stage.decoder_hidden", "two_stage.decoder_features")


@dataclass(frozen=True)
class FitResult:
    """What a training run produced.

    Attributes:
        out_dir: the run's folder.
        best_checkpoint: ``checkpoints/best.json``, or ``None`` when the monitored metric was never
            logged with a finite value.
        last_checkpoint: ``checkpoints/last.json`` (``None`` only if no epoch completed).
        best_score, best_epoch: the monitored value of the best checkpoint and its 0-based epoch.
        epochs_completed: epochs trained in total, resumed runs included.
        history: one dict per epoch (``epoch`` 0-based, ``train_loss``, ``val_loss``, ``val_psnr``,
            ``val_ssim``, loss components, ...); for two-stage runs each row also has ``stage``.
        stages: for task ``two_stage``, the result of each stage trained, in order.
    """

    out_dir: Path
    best_checkpoint: Path | None
    last_checkpoint: Path | None
    best_score: float | None
    best_epoch: int | None
    epochs_completed: int
    history: list[dict[str, float]] = field(default_factory=list)
    stages: tuple["FitResult", ...] = ()


def fit(
    config: Union[TrainConfig, Mapping[str, Any], str, Path],
    train_data: Any,
    val_data: Any = None,
    out_dir: Union[str, Path] = "runs/train",
    resume: bool = False,
    *,
    callbacks: Sequence[Any] = (),
) -> FitResult:
    """Train the model a config describes and write checkpoints, logs and the config to ``out_dir``.

    Args:
        config: a :class:`TrainConfig`, a mapping, or the path of a YAML file.
        train_data, val_data: map-style Datasets yielding dicts ``{"input", "target", ...}`` (spectdl
            builds seeded DataLoaders from ``config.data``) or DataLoaders you built (used as given).
            ``val_data=None`` trains without validation; the best checkpoint then follows
            ``train_loss`` unless ``checkpoint.monitor`` names another training metric.
        out_dir: the run's folder (see the module docstring).
        resume: continue from ``out_dir/checkpoints/last.json``: weights, optimiser, scheduler, epoch,
            history and RNG state are restored, and training goes on with the next epoch. Without a
            checkpoint there, training starts from scratch. Without ``resume``, an ``out_dir`` that
            already holds a checkpoint is an error (so a finished run is never overwritten).
        callbacks: extra Lightning callbacks (e.g. ``EarlyStopping``), added to spectdl's own.

    Returns:
        A :class:`FitResult`.

    Randomness: network initialisation, dropout and shuffling depend only on ``config.seed``.
    ``fit`` seeds the CPU generator (and the CUDA generator of its device) inside
    ``torch.random.fork_rng``, so the caller's global RNG state is the same after the call; the
    shuffling order of epoch ``e`` comes from ``(seed, e)``.

    Raises:
        ConfigError: bad config (named by its dotted key), or a resume whose config changes the networks.
        TrainingDivergedError: the loss became NaN or infinite; the last good checkpoint is kept and
            named in the message.
        KeyboardInterrupt: Ctrl-C; ``last.json`` still holds the last completed epoch.
    """
    cfg = load_config(config)
    if train_data is None:
        raise InputError("train_data: expected a Dataset or DataLoader of dict batches, found None")
    out = Path(out_dir)
    if cfg.task == "two_stage":
        return _fit_two_stage(cfg, train_data, val_data, out, resume, list(callbacks))
    return _fit_one(cfg, _module_factory(cfg), train_data, val_data, out, resume, cfg.trainer.max_epochs,
                    callbacks=list(callbacks))


def _module_factory(cfg: TrainConfig, stage: int | None = None) -> Callable[[], Any]:
    def make():
        if cfg.task == "supervised":
            from spectdl.training.supervised import SupervisedModule

            return SupervisedModule(cfg)
        if cfg.task == "gan":
            from spectdl.training.gan import GANModule

            return GANModule(cfg)
        from spectdl.training.two_stage import TwoStageAutoencoder

        return TwoStageAutoencoder(cfg, stage=stage)

    return make


# --------------------------------------------------------------------------------------------------
# helpers


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run the block with the CPU (and this process's CUDA device) generator seeded with ``seed``,
    restoring the previous generator states afterwards."""
    devices: list[int] = []
    if torch.cuda.is_available() and torch.cuda.device_count() > 0:
        devices = [int(os.environ.get("LOCAL_RANK", 0)) % torch.cuda.device_count()]
    with torch.random.fork_rng(devices=devices):
        torch.default_generator.manual_seed(seed)
        for d in devices:
            torch.cuda.default_generators[d].manual_seed(seed)
        yield


@contextlib.contextmanager
def _reraise_keyboard_interrupt(recorder) -> Iterator[None]:
    """Lightning answers Ctrl-C with ``sys.exit(1)`` and leaves SIGINT ignored; undo both."""
    main = threading.current_thread() is threading.main_thread()
    handler = signal.getsignal(signal.SIGINT) if main else None
    try:
        yield
    except SystemExit:
        if isinstance(recorder.exception, KeyboardInterrupt):
            raise KeyboardInterrupt("training interrupted") from None
        raise
    finally:
        if main and handler is not None:
            signal.signal(signal.SIGINT, handler)


def _dotted(d: Mapping[str, Any], key: str) -> Any:
    value: Any = d
    for part in key.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _check_resume_compatible(cfg: TrainConfig, saved: Mapping[str, Any] | None, where: Path) -> None:
    if not saved:
        return
    now = cfg.to_dict()
    for key in _ARCHITECTURE_KEYS:
        a, b = _dotted(now, key), _dotted(saved, key)
        if a != b:
            raise ConfigError(
                f"{key}: the config gives {a!r} but the checkpoint {where} was trained with {b!r}; "
                "resume with the original networks or start a new out_dir"
            )


def _loggers(cfg: TrainConfig, out: Path) -> list:
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    loggers = [CSVLogger(save_dir=str(out), name="logs")]
    if cfg.trainer.tensorboard:
        if importlib.util.find_spec("tensorboard") is None and importlib.util.find_spec("tensorboardX") is None:
            raise MissingDependencyError(
                "trainer.tensorboard: true needs the 'tensorboard' package; install it with: pip install tensorboard"
            )
        loggers.append(TensorBoardLogger(save_dir=str(out), name="logs", version=loggers[0].version))
    return loggers


def _strategy(name: str, manual: bool) -> str:
    # The GAN's generator step leaves the discriminator's weights without gradients (and the other
    # way round), which plain DDP rejects; let DDP look for unused parameters instead.
    if manual and name in ("ddp", "ddp_spawn"):
        return f"{name}_find_unused_parameters_true"
    return name


def _trainer(cfg: TrainConfig, out: Path, callbacks: list, max_epochs: int):
    L = require("lightning", "train")
    from spectdl.training.callbacks import SafeCheckpointIO

    t = cfg.trainer
    manual = cfg.task == "gan"  # manual optimisation: the module clips gradients itself
    kwargs: dict[str, Any] = dict(
        default_root_dir=str(out),
        max_epochs=max_epochs,
        accelerator=t.accelerator,
        devices=list(t.devices) if isinstance(t.devices, tuple) else t.devices,
        num_nodes=t.num_nodes,
        strategy=_strategy(t.strategy, manual),
        precision=t.precision,
        log_every_n_steps=t.log_every_n_steps,
        check_val_every_n_epoch=t.check_val_every_n_epoch,
        enable_progress_bar=t.enable_progress_bar,
        enable_model_summary=t.enable_model_summary,
        enable_checkpointing=True,
        deterministic=t.deterministic,
        logger=_loggers(cfg, out),
        callbacks=callbacks,
        plugins=[SafeCheckpointIO()],
    )
    if not manual:
        kwargs["accumulate_grad_batches"] = t.accumulate_grad_batches
        kwargs["gradient_clip_val"] = t.gradient_clip_val
    if t.limit_train_batches is not None:
        kwargs["limit_train_batches"] = t.limit_train_batches
    if t.limit_val_batches is not None:
        kwargs["limit_val_batches"] = t.limit_val_batches
    try:
        return L.Trainer(**kwargs)
    except Exception as exc:
        from lightning.fabric.utilities.exceptions import MisconfigurationException

        if isinstance(exc, (MisconfigurationException, ValueError, RuntimeError)):
            raise ConfigError(f"trainer: {exc}") from None
        raise


def _is_rank_zero() -> bool:
    from lightning.pytorch.utilities import rank_zero_only

    return getattr(rank_zero_only, "rank", 0) == 0


def _result(out: Path, callback, epochs_completed: int) -> FitResult:
    best = callback.best_path if callback.best_path.exists() else None
    last = callback.last_path if callback.last_path.exists() else None
    return FitResult(
        out_dir=out,
        best_checkpoint=best,
        last_checkpoint=last,
        best_score=callback.best_score,
        best_epoch=callback.best_epoch,
        epochs_completed=epochs_completed,
        history=[dict(row) for row in callback.history],
    )


def _repair_best(saved: Mapping[str, Any], last: Path) -> None:
    """Make ``best.json`` the checkpoint that ``last.json`` records as best (``best_epoch`` and
    ``best_score`` in its metadata, else in the callback state).

    A kill between the two writes of one epoch (by versions that wrote ``last`` first) leaves
    ``best.json`` older than the best that ``last`` records. When ``last`` is itself the best epoch,
    ``best.json`` is rewritten from it; otherwise the best weights are lost and InputError says so.
    A ``best.json`` newer than ``last`` (a kill after best, before last) is left: the resumed run
    redoes that epoch and writes it again.
    """
    from spectdl.training.callbacks import callback_state

    meta = saved.get(META_KEY) or {}
    state = callback_state(dict(saved))
    best_epoch = meta.get("best_epoch", state.get("best_epoch"))
    best_score = meta.get("best_score", state.get("best_score"))
    if best_epoch is None:
        return
    best = last.with_name("best.json")
    found = None
    if best.exists():
        found = read_checkpoint(best)[META_KEY].get("epoch")  # a corrupt best.json raises InputError here
        if isinstance(found, int) and found >= best_epoch:
            return
    if meta.get("epoch") == best_epoch:
        write_checkpoint(best, saved)
        warnings.warn(f"resume: {best} held epoch {found} but {last} records the best at epoch {best_epoch} "
                      f"(score {best_score}); rewrote {best.name} from {last.name}", stacklevel=4)
        return
    raise InputError(
        f"checkpoint {best}: holds epoch {found if best.exists() else '(file missing)'}, but {last} records the "
        f"best at epoch {best_epoch} (score {best_score}); expected best.json of epoch {best_epoch}. Its weights "
        "cannot be recovered; restore that best.json or start a new out_dir"
    )


def _fit_one(
    cfg: TrainConfig,
    make_module: Callable[[], Any],
    train_data: Any,
    val_data: Any,
    out: Path,
    resume: bool,
    max_epochs: int,
    init_from: Path | None = None,
    callbacks: list | None = None,
) -> FitResult:
    from spectdl.training.callbacks import BestLastCheckpoint, DatasetEpoch, ExceptionRecorder
    from spectdl.training.data import make_loader

    last = out / "checkpoints" / "last.json"
    if _is_rank_zero():
        remove_temporary_files(last.parent)  # left by writes that a kill interrupted
    ckpt_path = None
    if last.exists():
        if not resume:
            raise InputError(
                f"out_dir: {out} already holds a run ({last}); pass resume=True (--resume) to continue it "
                "or choose another out_dir"
            )
        saved = read_checkpoint(last)
        meta = saved.get(META_KEY, {})
        _check_resume_compatible(cfg, meta.get("config"), last)
        if _is_rank_zero():
            _repair_best(saved, last)
        done = int(meta.get("epochs_completed") or 0)
        if done > max_epochs:
            raise ConfigError(
                f"trainer.max_epochs: {max_epochs}, but the checkpoint {last} has already completed {done} epochs; "
                "expected at least that many"
            )
        ckpt_path = str(last)
    elif resume:
        warnings.warn(f"resume: no checkpoint in {out / 'checkpoints'}; training starts from scratch", stacklevel=3)

    monitor = cfg.checkpoint.monitor
    if val_data is None and monitor.startswith("val_"):
        warnings.warn(f"checkpoint.monitor is {monitor!r} but there is no val_data; the best checkpoint follows train_loss",
                      stacklevel=3)
        monitor = "train_loss"
        mode = "min"
    else:
        mode = cfg.checkpoint.mode

    out.mkdir(parents=True, exist_ok=True)
    if _is_rank_zero():
        dump_config(cfg, out / "config.yaml")

    checkpoint_cb = BestLastCheckpoint(out / "checkpoints", monitor=monitor, mode=mode)
    recorder = ExceptionRecorder()
    with seeded(cfg.seed):
        module = make_module()
        if init_from is not None and ckpt_path is None:
            try:
                module.load_state_dict(read_checkpoint(init_from)["state_dict"], strict=True)
            except (RuntimeError, KeyError) as exc:
                raise ConfigError(f"two_stage.init_from: {init_from} does not fit the configured networks ({exc})") from None
        train_loader = make_loader(train_data, cfg.data, cfg.seed, train=True, name="train_data")
        val_loader = make_loader(val_data, cfg.data, cfg.seed, train=False, name="val_data")
        trainer = _trainer(cfg, out, [checkpoint_cb, recorder, DatasetEpoch(), *(callbacks or [])], max_epochs)
        try:
            with _reraise_keyboard_interrupt(recorder), warnings.catch_warnings():
                # The two-stage module keeps its frozen parts in eval mode on purpose.
                warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode.*")
                trainer.fit(module, train_loader, val_loader, ckpt_path=ckpt_path)
        except TrainingDivergedError as exc:
            kept = checkpoint_cb.last_path if checkpoint_cb.last_path.exists() else None
            where = (f"the last good checkpoint is kept: {kept} (after epoch {checkpoint_cb.history[-1]['epoch']})"
                     if kept is not None and checkpoint_cb.history else "no checkpoint was written yet")
            raise TrainingDivergedError(f"{exc}; {where}", exc.epoch, exc.step, kept) from None
    return _result(out, checkpoint_cb, trainer.current_epoch)


def _stage_summary(out: Path) -> FitResult | None:
    """The result of a stage folder whose training already finished (from its last checkpoint)."""
    from spectdl.training.callbacks import callback_state

    last = out / "checkpoints" / "last.json"
    if not last.exists():
        return None
    tree = read_checkpoint(last)
    state = callback_state(tree)
    best = out / "checkpoints" / "best.json"
    return FitResult(
        out_dir=out,
        best_checkpoint=best if best.exists() else None,
        last_checkpoint=last,
        best_score=state.get("best_score"),
        best_epoch=state.get("best_epoch"),
        epochs_completed=int(tree[META_KEY].get("epochs_completed") or 0),
        history=[dict(r) for r in state.get("history", [])],
    )


def _fit_two_stage(cfg: TrainConfig, train_data: Any, val_data: Any, out: Path, resume: bool,
                   callbacks: list) -> FitResult:
    ts = cfg.two_stage
    assert ts is not None
    results: list[FitResult] = []
    previous: Path | None = Path(ts.init_from) if ts.init_from else None
    if previous is None and ts.stage > 1:
        for name in ("best.json", "last.json"):
            candidate = out / f"stage{ts.stage - 1}" / "checkpoints" / name
            if candidate.exists():
                previous = candidate
                break
        else:
            raise ConfigError(
                f"two_stage.stage: stage {ts.stage} starts from the weights of stage {ts.stage - 1}; give "
                f"two_stage.init_from or train stage {ts.stage - 1} into {out / f'stage{ts.stage - 1}'} first"
            )
    for stage in range(ts.stage, ts.last_stage + 1):
        epochs = ts.stage_epochs[stage - 1] if ts.stage_epochs else cfg.trainer.max_epochs
        stage_out = out / f"stage{stage}"
        summary = _stage_summary(stage_out) if resume else None
        if summary is not None and summary.epochs_completed >= epochs:
            result = summary  # finished before the interruption
        else:
            result = _fit_one(cfg, _module_factory(cfg, stage), train_data, val_data, stage_out, resume, epochs,
                              init_from=previous, callbacks=callbacks)
        results.append(result)
        previous = result.best_checkpoint or result.last_checkpoint
    final = results[-1]
    history = [{"stage": float(ts.stage + i), **row} for i, r in enumerate(results) for row in r.history]
    return FitResult(
        out_dir=out,
        best_checkpoint=final.best_checkpoint,
        last_checkpoint=final.last_checkpoint,
        best_score=final.best_score,
        best_epoch=final.best_epoch,
        epochs_completed=sum(r.epochs_completed for r in results),
        history=history,
        stages=tuple(results),
    )
