"""The metadata block of a checkpoint: its key in the checkpoint, the names spectdl writes, and
:func:`network_meta`, which writes them.

The block says what the checkpoint holds (task, model name and constructor arguments, channels,
modality, epoch, metrics, config, versions) and is stored readable at the top of the JSON sidecar.
This module imports nothing from :mod:`spectdl.training`, so that the config
(:class:`~spectdl.training.config.CheckpointConfig` refuses extra metadata that reuses a name
spectdl writes) can read it without importing the checkpoint modules, and nothing at import time
beyond :mod:`spectdl.errors`, so that reading a config does not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

from spectdl.errors import InputError

if TYPE_CHECKING:
    from torch import nn

__all__ = ["CORE_META_FIELDS", "META_FIELDS", "META_KEY", "NETWORK_PREFIX", "network_meta"]

#: The key of the metadata block in a checkpoint tree, and at the top of its JSON sidecar.
META_KEY = "spectdl"

#: The prefix of the network's weights among the ``state_dict`` keys of a checkpoint.
NETWORK_PREFIX = "net."

#: The keys spectdl writes in a checkpoint's metadata block, and those the training modules add;
#: extra metadata (``checkpoint.metadata`` in a config) may not reuse them.
CORE_META_FIELDS = (
    "task", "model", "in_channels", "out_channels", "modality", "network_prefix", "epoch", "epochs_completed",
    "global_step", "metrics", "config", "spectdl_version", "torch_version",
)
META_FIELDS = CORE_META_FIELDS + ("stage", "discriminator")


def network_meta(
    network: nn.Module,
    model_name: str,
    model_kwargs: Mapping[str, Any],
    *,
    task: str,
    modality: str,
    config: Mapping[str, Any] | None = None,
    epoch: int | None = None,
    epochs_completed: int | None = None,
    global_step: int | None = None,
    metrics: Mapping[str, float] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The ``"spectdl"`` metadata block of a checkpoint (the fields of :data:`CORE_META_FIELDS`);
    ``extra`` adds entries such as ``normalization`` or ``inference`` settings that
    :mod:`spectdl.inference` reads, and may not reuse a core name (InputError)."""
    import torch

    import spectdl

    clash = sorted(set(extra) & set(CORE_META_FIELDS))
    if clash:
        raise InputError(f"extra metadata: key {clash[0]!r} is written by spectdl itself; expected other names")

    return {
        "task": task,
        "model": {"name": model_name, "kwargs": dict(model_kwargs)},
        "in_channels": getattr(network, "in_channels", None),
        "out_channels": getattr(network, "out_channels", None),
        "modality": modality,
        "network_prefix": NETWORK_PREFIX,
        "epoch": epoch,
        "epochs_completed": epochs_completed,
        "global_step": global_step,
        "metrics": dict(metrics or {}),
        "config": dict(config) if config is not None else None,
        "spectdl_version": spectdl.__version__,
        "torch_version": torch.__version__,
        **extra,
    }
