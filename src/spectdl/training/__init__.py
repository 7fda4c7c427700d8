"""Training engine on Lightning: supervised, GAN and two-stage (SPECTnet) training from a YAML config.

Entry point: :func:`fit` (``fit(config, train_data, val_data, out_dir, resume=False) -> FitResult``).
Configs: :func:`load_config` validates a YAML file into :class:`TrainConfig`. Checkpoints are
safetensors + JSON (:func:`save_checkpoint`, :func:`load_checkpoint`,
:func:`load_model_from_checkpoint`), never pickles: the entry points in
:mod:`~spectdl.training.checkpoint`, the format in :mod:`~spectdl.training.checkpoint_format`, the
metadata in :mod:`~spectdl.training.meta`, the rebuilding of a network in
:mod:`~spectdl.training.networks`.

Names are imported on first use, so reading a config or loading a checkpoint does not import
Lightning.
"""

from __future__ import annotations

import importlib

_LAZY = {
    "TrainConfig": "config",
    "ModelConfig": "config",
    "OptimConfig": "config",
    "DataConfig": "config",
    "TrainerConfig": "config",
    "CheckpointConfig": "config",
    "MetricsConfig": "config",
    "GANConfig": "config",
    "TwoStageConfig": "config",
    "load_config": "config",
    "dump_config": "config",
    "shipped_configs": "config",
    "save_checkpoint": "checkpoint",
    "load_checkpoint": "checkpoint",
    "load_model_from_checkpoint": "networks",
    "TrainingDivergedError": "errors",
    "EpochSampler": "data",
    "make_loader": "data",
    "fit": "fit",
    "FitResult": "fit",
    "SupervisedModule": "supervised",
    "GANModule": "gan",
    "TwoStageAutoencoder": "two_stage",
    "BestLastCheckpoint": "callbacks",
    "SafeCheckpointIO": "callbacks",
    "train_planar_features": "feature_net",
    "save_planar_features": "feature_net",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(f"spectdl.training.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'spectdl.training' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
