"""The layout of a checkpoint's metadata block: its key in the checkpoint and the names spectdl writes.

These constants live apart from :mod:`spectdl.training.checkpoint` so that the config
(:class:`~spectdl.training.config.CheckpointConfig` refuses extra metadata that reuses a name
spectdl writes) can read them without importing the checkpoint module, which imports the network
builders, which import the config. This module imports nothing from :mod:`spectdl.training`.
"""

from __future__ import annotations

__all__ = ["CORE_META_FIELDS", "META_FIELDS", "META_KEY", "NETWORK_PREFIX"]

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
