"""Build the networks a training config describes (no Lightning needed, so inference can use it)."""

from __future__ import annotations

from typing import Any, Mapping

from torch import nn

from spectdl.errors import ConfigError, InputError
from spectdl.training.config import ModelConfig, TwoStageConfig


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
    """The arguments of :func:`build_spectnet` that a two-stage config implies."""
    return {
        "input_channels": config.input_channels,
        "image_channels": config.image_channels,
        "latent": config.latent,
        "mapper_features": list(config.mapper_features),
        "decoder_hidden": config.decoder_hidden,
        "decoder_features": config.decoder_features,
    }


def build_spectnet(
    input_channels: int = 2,
    image_channels: int = 1,
    latent: int = 256,
    mapper_features=(64, 64, 128, 128),
    decoder_hidden: int = 2048,
    decoder_features: int = 32,
) -> nn.Module:
    """``SPECTnet(mapper, decoder)`` with the given sizes (see :mod:`spectdl.models.spectnet`)."""
    from spectdl.models.spectnet import SPECTnet, SPECTnetDecoder, SPECTnetEncoder

    mapper = SPECTnetEncoder(input_channels, latent, tuple(mapper_features))
    decoder = SPECTnetDecoder(latent, image_channels, hidden=decoder_hidden, features=decoder_features)
    net = SPECTnet(mapper, decoder)
    net.in_channels, net.out_channels = input_channels, image_channels
    return net


def build_spectnet_encoder(config: TwoStageConfig) -> nn.Module:
    """The image encoder of stage 1: ``SPECTnetEncoder(image_channels, latent, encoder_features)``."""
    from spectdl.models.spectnet import SPECTnetEncoder

    return SPECTnetEncoder(config.image_channels, config.latent, tuple(config.encoder_features))


def build_from_meta(meta: Mapping[str, Any], where: str = "checkpoint") -> nn.Module:
    """The inference network that a checkpoint's metadata describes (weights not loaded)."""
    try:
        task = meta["task"]
        name = meta["model"]["name"]
        kwargs = dict(meta["model"]["kwargs"])
    except (KeyError, TypeError):
        raise InputError(f"{where}: metadata lacks task/model.name/model.kwargs; found keys {sorted(meta)}") from None
    if task == "two_stage":
        return build_spectnet(**kwargs)
    return build_model(ModelConfig(name, kwargs), path=f"{where}: model")
