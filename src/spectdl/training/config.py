"""The training config: a YAML file validated into typed dataclasses.

Layout (every section and key optional except ``model`` for the supervised and GAN tasks)::

    task: supervised            # supervised | gan | two_stage
    seed: 0
    modality: spect             # what the network reads; recorded in checkpoints
    model: {name: u2net_small, kwargs: {in_channels: 2, out_channels: 1}}
    loss: {study: bone_spect, deep_supervision: 7}     # spectdl.losses.build_loss config
    optim: {name: adam, lr: 1.0e-3, scheduler: cosine}
    data: {batch_size: 4, num_workers: 2}
    trainer: {max_epochs: 100, devices: 1, precision: bf16-mixed}
    checkpoint: {monitor: val_loss, mode: min}
    metrics: {data_range: null, ssim: true}
    gan: {...}                  # task gan: discriminator and its optimiser
    two_stage: {...}            # task two_stage: SPECTnet parts and the stage to start from

Unknown keys and values of the wrong type raise :class:`spectdl.errors.ConfigError` naming the
key by its dotted path (``optim.lr: expected a float, found 'fast'``); a file that is not valid
YAML raises ConfigError naming the file and line. Numbers such as ``1e-3`` are read as floats
(YAML 1.2 rules; PyYAML alone reads them as strings), a key given twice is an error, and so is an
empty file. The sections are :class:`spectdl.typed_config.Section` dataclasses, read by
:func:`spectdl.typed_config.read_yaml`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Mapping, Optional, Union

from spectdl.errors import ConfigError, require
from spectdl.training.meta import META_FIELDS
from spectdl.typed_config import Section, load_section

__all__ = [
    "CheckpointConfig",
    "DataConfig",
    "GANConfig",
    "MetricsConfig",
    "ModelConfig",
    "OptimConfig",
    "TrainConfig",
    "TrainerConfig",
    "TwoStageConfig",
    "dump_config",
    "load_config",
    "shipped_configs",
]

PRECISIONS = ("64-true", "32-true", "16-mixed", "bf16-mixed", "16-true", "bf16-true")


def _positive(name: str, value, strict: bool = True) -> None:
    if value is None:
        return
    if (strict and not value > 0) or (not strict and value < 0):
        raise ConfigError(f"{name}: expected a {'positive' if strict else 'non-negative'} number, found {value!r}")


@dataclass(frozen=True)
class ModelConfig(Section):
    """A network from the :mod:`spectdl.models` registry: ``spectdl.models.build(name, **kwargs)``."""

    name: str = "unet"
    kwargs: dict[str, Any] = field(default_factory=dict)

    def _check(self) -> None:
        from spectdl.models import available

        if self.name.lower() not in available():
            raise ConfigError(f"name: unknown model {self.name!r}; expected one of {available()}")


@dataclass(frozen=True)
class OptimConfig(Section):
    """Optimiser and learning-rate schedule.

    ``scheduler``: ``none``; ``cosine`` (cosine annealing from ``lr`` to ``min_lr`` over
    ``trainer.max_epochs``); ``step`` (``lr·gamma^⌊epoch/step_size⌋``); ``plateau`` (multiply by
    ``gamma`` after ``patience`` epochs without improvement of ``checkpoint.monitor``).
    ``momentum`` is used by SGD only; ``betas`` by Adam and AdamW.
    """

    name: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    momentum: float = 0.9
    scheduler: Literal["none", "cosine", "step", "plateau"] = "none"
    step_size: int = 30
    gamma: float = 0.1
    patience: int = 10
    min_lr: float = 0.0

    def _check(self) -> None:
        _positive("lr", self.lr)
        _positive("weight_decay", self.weight_decay, strict=False)
        _positive("momentum", self.momentum, strict=False)
        _positive("step_size", self.step_size)
        _positive("patience", self.patience, strict=False)
        _positive("min_lr", self.min_lr, strict=False)
        if not 0 < self.gamma <= 1:
            raise ConfigError(f"gamma: expected a factor in (0, 1], found {self.gamma!r}")
        for i, b in enumerate(self.betas):
            if not 0 <= b < 1:
                raise ConfigError(f"betas[{i}]: expected a value in [0, 1), found {b!r}")


@dataclass(frozen=True)
class DataConfig(Section):
    """How spectdl turns a Dataset into batches (ignored for DataLoaders you pass in).

    Shuffling draws each epoch's order from ``(seed, epoch)``, so a resumed run sees the batches
    the uninterrupted run would have seen.
    """

    batch_size: int = 4
    val_batch_size: Optional[int] = None
    num_workers: int = 0
    shuffle: bool = True
    drop_last: bool = False
    pin_memory: bool = False

    def _check(self) -> None:
        _positive("batch_size", self.batch_size)
        _positive("val_batch_size", self.val_batch_size)
        _positive("num_workers", self.num_workers, strict=False)


@dataclass(frozen=True)
class TrainerConfig(Section):
    """Options passed through to ``lightning.Trainer``.

    ``devices``, ``num_nodes``, ``strategy`` (``auto`` or a DDP flavour such as ``ddp``) and
    ``precision`` (``32-true``, ``bf16-mixed``, ``16-mixed``, ...) select the hardware; under
    ``torchrun`` or SLURM, Lightning reads the process layout from the environment.
    ``deterministic`` is handed to Lightning, which then sets PyTorch's global
    ``use_deterministic_algorithms`` flag (leave it ``null`` to keep PyTorch's setting).
    ``limit_train_batches``/``limit_val_batches``: an int counts batches, a float is a fraction.
    ``channels_last``: the network's weights and inputs in ``torch.channels_last`` (2-D) or
    ``torch.channels_last_3d`` (3-D) memory format; not a Lightning option, spectdl applies it. On
    the CPU it pays only together with ``bf16-mixed`` (``benchmarks/bench_models.py --cpu-paths``).
    Under a mixed precision the network runs in the low precision and the loss in float32.
    """

    max_epochs: int = 100
    accelerator: str = "auto"
    devices: Union[int, str, tuple[int, ...]] = "auto"
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "32-true"
    accumulate_grad_batches: int = 1
    gradient_clip_val: Optional[float] = None
    log_every_n_steps: int = 50
    check_val_every_n_epoch: int = 1
    limit_train_batches: Optional[Union[int, float]] = None
    limit_val_batches: Optional[Union[int, float]] = None
    enable_progress_bar: bool = True
    enable_model_summary: bool = True
    tensorboard: bool = False
    deterministic: Optional[bool] = None
    channels_last: bool = False

    def _check(self) -> None:
        _positive("max_epochs", self.max_epochs)
        _positive("num_nodes", self.num_nodes)
        _positive("accumulate_grad_batches", self.accumulate_grad_batches)
        _positive("gradient_clip_val", self.gradient_clip_val)
        _positive("log_every_n_steps", self.log_every_n_steps)
        _positive("check_val_every_n_epoch", self.check_val_every_n_epoch)
        _positive("limit_train_batches", self.limit_train_batches)
        _positive("limit_val_batches", self.limit_val_batches, strict=False)
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision: expected one of {PRECISIONS}, found {self.precision!r}")
        if not (self.strategy in ("auto", "single_device") or self.strategy.startswith("ddp")):
            raise ConfigError(
                f"strategy: expected 'auto', 'single_device' or a DDP strategy ('ddp', "
                f"'ddp_find_unused_parameters_true', ...), found {self.strategy!r} (FSDP and DeepSpeed "
                "keep their own checkpoint format, which spectdl does not read)"
            )
        if isinstance(self.devices, str) and not re.fullmatch(r"auto|-?\d+|\d+(,\d+)*,?", self.devices.strip()):
            raise ConfigError(
                f"devices: expected an integer, a list of integers, 'auto' or a string like '0,1', found {self.devices!r}"
            )


@dataclass(frozen=True)
class CheckpointConfig(Section):
    """Which logged metric decides the best checkpoint (``last`` is written every epoch), and
    ``metadata``: extra entries for the checkpoints' ``spectdl`` block, e.g.
    ``normalization: {inputs: [mean_positive], output: 0}`` or ``inference: {roi_size: 96}``, which
    :mod:`spectdl.inference` reads. They may not reuse the names spectdl writes itself."""

    monitor: str = "val_loss"
    mode: Literal["min", "max"] = "min"
    metadata: dict[str, Any] = field(default_factory=dict)

    def _check(self) -> None:
        clash = sorted(set(self.metadata) & set(META_FIELDS))
        if clash:
            raise ConfigError(f"metadata.{clash[0]}: written by spectdl itself; expected another name")


@dataclass(frozen=True)
class MetricsConfig(Section):
    """Validation image metrics ``val_psnr`` and ``val_ssim``, scored by
    :func:`spectdl.metrics.scoring.image_scores`.

    ``convention``: a name of :data:`spectdl.metrics.scoring.CONVENTIONS`; ``reference_range`` takes
    ``max − min`` of each target image as the PSNR peak and the SSIM data range, ``reference_max``
    the target's maximum. ``data_range``: a fixed intensity span for both; when set it wins over
    ``convention`` (``Convention.fixed(data_range)``). SSIM is skipped for images smaller than its
    11-voxel window."""

    data_range: Optional[float] = None
    ssim: bool = True
    convention: str = "reference_range"

    def _check(self) -> None:
        from spectdl.metrics.scoring import CONVENTIONS

        _positive("data_range", self.data_range)
        # Validation scores need peaks from the target alone (a batch may hold blank patches).
        usable = sorted(n for n, c in CONVENTIONS.items() if c.psnr_peak != "prediction_max")
        if self.convention not in usable:
            raise ConfigError(f"convention: expected one of {usable}, found {self.convention!r}")


def _default_discriminator() -> ModelConfig:
    return ModelConfig("patch_discriminator", {"logits": True})


def _default_optim_d() -> OptimConfig:
    return OptimConfig(lr=2e-4, betas=(0.5, 0.999))


@dataclass(frozen=True)
class GANConfig(Section):
    """The discriminator of task ``gan``.

    The generator is ``model`` and its loss is ``loss`` (which must hold an adversarial term, e.g.
    ``study: myocardial_perfusion``); the discriminator is trained with the same adversarial mode,
    weighted by ``d_loss_weight`` (pix2pix halves it: 0.5), with its own optimiser ``optim_d``.
    ``conditional``: the discriminator sees ``[input, image]`` pairs (pix2pix) instead of the image.
    When ``discriminator.kwargs`` has no ``in_channels``, it is set from the generator's channels.
    """

    discriminator: ModelConfig = field(default_factory=_default_discriminator)
    optim_d: OptimConfig = field(default_factory=_default_optim_d)
    conditional: bool = True
    d_loss_weight: float = 1.0

    def _check(self) -> None:
        _positive("d_loss_weight", self.d_loss_weight)


@dataclass(frozen=True)
class TwoStageConfig(Section):
    """SPECTnet's recipe (task ``two_stage``): stage 1 trains the image autoencoder on the targets;
    stage 2 trains the mapper from the inputs to the codes of the frozen encoder; stage 3 fine-tunes
    mapper and decoder end to end. ``fit`` runs stages ``stage`` to ``last_stage``, each for
    ``stage_epochs[k - 1]`` epochs (``null``: ``trainer.max_epochs``), each starting from the best
    weights of the stage before.

    The parts: encoder ``SPECTnetEncoder(image_channels, latent, features=encoder_features)``, mapper
    ``SPECTnetEncoder(input_channels, latent, features=mapper_features)``, decoder
    ``SPECTnetDecoder(latent, image_channels, hidden=decoder_hidden, features=decoder_features)``; images are
    128×128 (the encoder's unpadded convolutions map exactly 128 pixels to one).
    ``code_loss`` compares codes in stage 2; stages 1 and 3 use ``loss``. A run that starts after
    stage 1 takes its weights from ``init_from`` (a checkpoint of the stage before), or else from
    ``<out_dir>/stage<k-1>/checkpoints/best.json``.
    """

    stage: int = 1
    last_stage: int = 3
    stage_epochs: Optional[tuple[int, int, int]] = None
    latent: int = 256
    image_channels: int = 1
    input_channels: int = 2
    encoder_features: tuple[int, int, int, int] = (64, 64, 128, 128)
    mapper_features: tuple[int, int, int, int] = (64, 64, 128, 128)
    decoder_hidden: int = 2048
    decoder_features: int = 32
    code_loss: Literal["l2", "l1"] = "l2"
    init_from: Optional[str] = None

    def _check(self) -> None:
        for name in ("stage", "last_stage"):
            if getattr(self, name) not in (1, 2, 3):
                raise ConfigError(f"{name}: expected 1, 2 or 3, found {getattr(self, name)!r}")
        if self.last_stage < self.stage:
            raise ConfigError(f"last_stage: expected >= stage ({self.stage}), found {self.last_stage}")
        for i, e in enumerate(self.stage_epochs or ()):
            _positive(f"stage_epochs[{i}]", e)
        for name in ("latent", "image_channels", "input_channels", "decoder_hidden", "decoder_features"):
            _positive(name, getattr(self, name))


@dataclass(frozen=True)
class TrainConfig(Section):
    """The whole training config; see the module docstring for the layout."""

    task: Literal["supervised", "gan", "two_stage"] = "supervised"
    seed: int = 0
    modality: str = "spect"
    model: Optional[ModelConfig] = None
    loss: dict[str, Any] = field(default_factory=lambda: {"terms": {"l1": 1.0}})
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    gan: Optional[GANConfig] = None
    two_stage: Optional[TwoStageConfig] = None

    def _check(self) -> None:
        if not self.modality:
            raise ConfigError("modality: expected a non-empty string such as 'spect' or 'projections', found ''")
        if self.seed < 0:
            raise ConfigError(f"seed: expected a non-negative integer, found {self.seed}")
        if self.task in ("supervised", "gan") and self.model is None:
            raise ConfigError(f"model: required for task {self.task!r} (e.g. model: {{name: unet}})")
        if self.task == "two_stage" and self.model is not None:
            raise ConfigError("model: not used by task 'two_stage'; describe the SPECTnet parts under two_stage")
        if self.task != "gan" and self.gan is not None:
            raise ConfigError(f"gan: only used by task 'gan', found task {self.task!r}")
        if self.task != "two_stage" and self.two_stage is not None:
            raise ConfigError(f"two_stage: only used by task 'two_stage', found task {self.task!r}")
        if self.task == "gan":
            if self.gan is None:
                object.__setattr__(self, "gan", GANConfig())
            if self.trainer.accumulate_grad_batches != 1:
                raise ConfigError("trainer.accumulate_grad_batches: expected 1 for task 'gan' (manual optimisation)")
            if self.loss.get("deep_supervision") is not None:
                raise ConfigError("loss.deep_supervision: not supported for task 'gan'; expected null")
        if self.task == "two_stage" and self.two_stage is None:
            object.__setattr__(self, "two_stage", TwoStageConfig())
        if self.trainer.channels_last and self.task != "supervised":
            raise ConfigError(f"trainer.channels_last: only applied by task 'supervised', found task {self.task!r}; expected false")


def load_config(source: Union[str, os.PathLike, Mapping[str, Any], TrainConfig]) -> TrainConfig:
    """A validated :class:`TrainConfig` from a YAML file, a mapping or a config (returned as is).

    Errors name the file (for files) and the dotted key; an empty file is an error, not the
    defaults (see :func:`spectdl.typed_config.load_section`).
    """
    return load_section(TrainConfig, source, what="config")


def dump_config(config: TrainConfig, path: Union[str, Path, None] = None) -> str:
    """The config as YAML text; written to ``path`` as well when one is given."""
    yaml = require("yaml", "train")
    text = yaml.safe_dump(config.to_dict(), sort_keys=False)
    if path is not None:
        Path(path).write_text(text, encoding="utf-8")
    return text


def shipped_configs() -> dict[str, Path]:
    """The example configs shipped with spectdl (``spectdl/configs/*.yaml``), by name."""
    folder = resources.files("spectdl") / "configs"
    return {p.name[: -len(".yaml")]: Path(str(p)) for p in folder.iterdir() if p.name.endswith(".yaml")}
