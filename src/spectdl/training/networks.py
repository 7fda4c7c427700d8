"""Build the networks a training config or a checkpoint describes (no Lightning needed, so inference
can use it): :func:`build_model` from a config, :func:`load_model_from_checkpoint` from a checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Union

import torch
from torch import nn

from spectdl.errors import ConfigError, InputError
from spectdl.training.checkpoint import checkpoint_path, read_checkpoint
from spectdl.training.config import ModelConfig, TwoStageConfig
from spectdl.training.meta import META_KEY, NETWORK_PREFIX


def build_model(config: ModelConfig, path: str = "model", **defaults: Any) -> nn.Module:
    """``spectdl.models.build(config.name, **defaults, **config.kwargs)``; a wrong keyword or value is
    a ConfigError naming ``path.kwargs``."""
    from spectdl.models import build

    kwargs = {**defaults, **config.kwargs}
    try:
        return build(config.name, **kwargs)
    except (TypeError, ValueError) as exc:  # ConfigError and InputError are ValueErrors
        raise ConfigError(f"{path}.kwargs: {exc} (model {config.name!r}, kwargs {kwargs})") from None


def spectnet_kwargs(config: TwoStageConfig) -> dict[str, Any]:
    """The keyword arguments of the registered ``"spectnet"`` builder
    (:meth:`spectdl.models.spectnet.SPECTnet.from_channels`) that a two-stage config implies."""
    return {
        "in_channels": config.input_channels,
        "out_channels": config.image_channels,
        "latent": config.latent,
        "mapper_features": list(config.mapper_features),
        "decoder_hidden": config.decoder_hidden,
        "decoder_features": config.decoder_features,
    }


# Checkpoints written before the one SPECTnet builder named the channel counts this way.
_LEGACY_SPECTNET_KEYS = {"input_channels": "in_channels", "image_channels": "out_channels"}


def build_spectnet_encoder(config: TwoStageConfig) -> nn.Module:
    """The stage-1 image encoder: ``SPECTnetEncoder(image_channels, latent, features=encoder_features)``."""
    from spectdl.models import build

    return build("spectnet_encoder", in_channels=config.image_channels, out_channels=config.latent,
                 features=tuple(config.encoder_features))


def build_from_meta(meta: Mapping[str, Any], where: str = "checkpoint") -> nn.Module:
    """The inference network that a checkpoint's metadata describes (weights not loaded)."""
    try:
        task = meta["task"]
        name = meta["model"]["name"]
        kwargs = dict(meta["model"]["kwargs"])
    except (KeyError, TypeError):
        raise InputError(f"{where}: metadata lacks task/model.name/model.kwargs; found keys {sorted(meta)}") from None
    if task == "two_stage":
        kwargs = {_LEGACY_SPECTNET_KEYS.get(k, k): v for k, v in kwargs.items()}
    try:
        return build_model(ModelConfig(name, kwargs), path=f"{where}: model")
    except ConfigError as exc:
        raise InputError(str(exc)) from None


def load_model_from_checkpoint(
    path: Union[str, Path], map_location: Union[str, torch.device, None] = "cpu"
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the network of a checkpoint and load its weights: ``(model in eval mode, metadata)``.

    The network is rebuilt from the metadata (``spectdl.models.build(name, **kwargs)``; for
    task ``two_stage`` the SPECTnet of mapper and decoder) and loaded strictly: a missing or extra
    weight raises InputError. The metadata is the sidecar's ``spectdl`` block.
    """
    tree = read_checkpoint(path, map_location)
    meta = tree[META_KEY]
    model = build_from_meta(meta, where=f"checkpoint {checkpoint_path(path)}")
    prefix = meta.get("network_prefix", NETWORK_PREFIX)
    state = {k[len(prefix):]: v for k, v in tree.get("state_dict", {}).items() if k.startswith(prefix)}
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # a shape mismatch: the kwargs describe another network than the weights
        detail = " ".join(str(exc).split())[:300]
        raise InputError(
            f"checkpoint {checkpoint_path(path)}: weights do not fit model {meta['model']['name']!r} with kwargs "
            f"{meta['model'].get('kwargs')} ({detail})"
        ) from None
    if result.missing_keys or result.unexpected_keys:
        raise InputError(
            f"checkpoint {checkpoint_path(path)}: weights do not fit model {meta['model']['name']!r}; "
            f"missing {result.missing_keys[:5]}, unexpected {result.unexpected_keys[:5]}"
        )
    if map_location is not None:
        model.to(torch.device(map_location))
    return model.eval(), meta
