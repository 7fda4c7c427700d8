"""SPECTnet: direct 2-D SPECT reconstruction by a sinogram-to-latent mapping network and the decoder
of an image autoencoder.

Shao W., Pomper M. G., Du Y. "A learned reconstruction network for SPECT imaging." IEEE Transactions
on Radiation and Plasma Medical Sciences 5(1):26–34 (2021).

Training runs in two stages: an autoencoder ``SPECTnetDecoder(SPECTnetEncoder(image))`` learns a
256-vector code of 128×128 images; a mapping network (the encoder design with 2 input channels:
the wrap-padded sinogram and the attenuation map) learns to produce that code from the data; finally
``SPECTnet(mapper, decoder)`` reconstructs.

Filter counts (the paper gives only the first, 64, and the fifth, 256)
-----------------------------------------------------------------------
Encoder convolutions (no padding): 6×6/2 -> 64, 6×6/2 -> 64, 5×5/2 -> 128, 5×5/2 -> 128, 5×5/1 -> 256,
so 128 -> 62 -> 29 -> 13 -> 5 -> 1. The counts double every second layer, a small sensible choice.

Size arithmetic (float32, 4 bytes a parameter; weights + biases + BatchNorm affine)::

    decoder FC 256->2048 and 2048->16384:  526,336 + 33,570,816  = 34,097,152  (136.39 MB)
    decoder convs 3×3 1->32, 32->32, transposed 3×3 32->1:        =      9,857
    mapper (2 input channels), BN included:
        4,800 + 147,648 + 205,184 + 409,984 + 819,968             =  1,587,584
    SPECTnet total                                               = 35,694,593  (142.78 MB, 136.2 MiB)

The paper reports about 127 MB. The fully connected layers that the paper specifies already hold
34.1 M parameters = 136.4 MB (130.1 MiB), so 127 MB cannot be reached with this decoder whatever the
convolutions; the design above is within 4.7 % of that lower bound (12.4 % above 127 MB, 7.2 % above
127 MiB).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from spectdl.errors import ConfigError, InputError
from spectdl.models._common import check_batch_for_norm, check_channels, check_input, check_network_args
from spectdl.models.registry import ModelExample, Violation, register

_KERNELS = (6, 6, 5, 5, 5)
_STRIDES = (2, 2, 2, 2, 1)


def wrap_pad_sinogram(sino: torch.Tensor, target_rows: int = 128) -> torch.Tensor:
    """Pad the view axis (dim -2) of ``sino`` ``[..., views, bins]`` to ``target_rows`` by wrapping.

    Row ``i`` of the result is view ``i mod views``: for 120 views over 360° the first 8 views are
    repeated after the last, continuing the orbit, so a 120×128 sinogram becomes 128×128.
    """
    if not isinstance(sino, torch.Tensor) or sino.dim() < 2:
        found = tuple(sino.shape) if isinstance(sino, torch.Tensor) else type(sino).__name__
        raise InputError(f"wrap_pad_sinogram: sino is {found}; expected a tensor [..., views, bins]")
    views = sino.shape[-2]
    if not isinstance(target_rows, int) or target_rows < views or views < 1:
        raise InputError(
            f"wrap_pad_sinogram: target_rows={target_rows!r} with {views} views; expected an integer >= views"
        )
    index = torch.arange(target_rows, device=sino.device) % views
    return sino.index_select(-2, index)


@register(
    "spectnet_encoder",
    example=ModelExample(
        kwargs={"in_channels": 2, "out_channels": 4, "features": (2, 2, 2, 2)},
        input_shape=(2, 2, 128, 128),
        output_shape=(2, 4),
        violations=(
            Violation((2, 2, 120, 128), "expected (128, 128)"),
            Violation((1, 2, 128, 128), "expected at least 2", training=True),
        ),
    ),
)
class SPECTnetEncoder(nn.Module):
    """SPECTnet encoder / mapping network: five unpadded convolutions, each followed by ReLU and
    BatchNorm, 128×128 -> 1×1 (see the module docstring for the sizes).

    Args:
        in_channels: 1 for the image autoencoder, 2 for the mapping network (sinogram, mu map).
        out_channels: length of the code (256).
        features: filters of the first four convolutions, default ``(64, 64, 128, 128)``.

    Shapes: ``[B, in, 128, 128] -> [B, out]``. In training mode the batch must hold at least two
    samples (the last BatchNorm acts on a 1×1 map).
    """

    image_size = 128

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 256,
        *,
        features: Sequence[int] = (64, 64, 128, 128),
    ):
        super().__init__()
        owner = type(self).__name__
        _, self.in_channels, self.out_channels = check_network_args(
            owner, in_channels=in_channels, out_channels=out_channels
        )
        features = list(features)
        if len(features) != 4:
            raise ConfigError(f"{owner}: features={features}; expected 4 filter counts")
        layers: list[nn.Module] = []
        prev = in_channels
        for f, k, s in zip(features + [out_channels], _KERNELS, _STRIDES):
            check_channels(int(f), "features", owner)
            layers += [nn.Conv2d(prev, f, k, stride=s), nn.ReLU(inplace=True), nn.BatchNorm2d(f)]
            prev = f
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        owner = type(self).__name__
        check_input(x, self.in_channels, 2, owner)
        if tuple(x.shape[2:]) != (self.image_size, self.image_size):
            raise InputError(
                f"{owner}: x spatial size {tuple(x.shape[2:])}; expected (128, 128) "
                "(pad a 120-view sinogram with wrap_pad_sinogram)"
            )
        check_batch_for_norm(x, self.training, owner)
        return self.net(x).flatten(1)


@register(
    "spectnet_decoder",
    example=ModelExample(
        kwargs={"in_channels": 4, "out_channels": 1, "hidden": 8, "features": 2, "image_size": 16},
        input_shape=(2, 4),
        output_shape=(2, 1, 16, 16),
        violations=(Violation((2, 5), "expected [B, 4]"),),
    ),
)
class SPECTnetDecoder(nn.Module):
    """SPECTnet decoder: FC ``in -> 2048`` + sigmoid, FC ``2048 -> 128·128`` + sigmoid, reshape to a
    128×128 image, two 3×3 convolutions (``features`` filters, ReLU), and a final 3×3 transposed
    convolution (stride 1, padding 1) to ``out_channels``, linear.

    Shapes: ``[B, in] -> [B, out, 128, 128]``.

    Args:
        in_channels: code length (256).
        out_channels: image channels (1).
        hidden: width of the first FC layer (2048).
        features: filters of the two 3×3 convolutions (32).
        image_size: side of the square output (128).
    """

    def __init__(
        self,
        in_channels: int = 256,
        out_channels: int = 1,
        *,
        hidden: int = 2048,
        features: int = 32,
        image_size: int = 128,
    ):
        super().__init__()
        owner = type(self).__name__
        _, self.in_channels, self.out_channels = check_network_args(
            owner, in_channels=in_channels, out_channels=out_channels, hidden=hidden, features=features
        )
        self.image_size = check_channels(image_size, "image_size", owner)
        self.fc = nn.Sequential(
            nn.Linear(in_channels, hidden),
            nn.Sigmoid(),
            nn.Linear(hidden, image_size * image_size),
            nn.Sigmoid(),
        )
        self.convs = nn.Sequential(
            nn.Conv2d(1, features, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(features, features, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.ConvTranspose2d(features, out_channels, 3, padding=1),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if not isinstance(z, torch.Tensor) or z.dim() != 2 or z.shape[1] != self.in_channels:
            found = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
            raise InputError(f"SPECTnetDecoder: z has shape {found}; expected [B, {self.in_channels}]")
        n = self.image_size
        return self.convs(self.fc(z).reshape(-1, 1, n, n))


class SPECTnet(nn.Module):
    """SPECTnet: ``decoder(mapper([wrap-padded sinogram, mu map]))``.

    Shapes: ``[B, 2, 128, 128] -> [B, out, 128, 128]`` (pad a 120-view sinogram to 128 rows with
    :func:`wrap_pad_sinogram` and stack it with the attenuation map resampled to 128×128).
    Build it with trained parts, ``SPECTnet(mapper, decoder)``, or fresh with
    :meth:`from_channels` (registered as ``"spectnet"``).
    """

    def __init__(self, mapper: SPECTnetEncoder, decoder: SPECTnetDecoder):
        super().__init__()
        if mapper.out_channels != decoder.in_channels:
            raise ConfigError(
                f"SPECTnet: mapper code length {mapper.out_channels}; "
                f"expected the decoder's in_channels {decoder.in_channels}"
            )
        self.mapper = mapper
        self.decoder = decoder
        self.in_channels = mapper.in_channels
        self.out_channels = decoder.out_channels

    @classmethod
    def from_channels(
        cls,
        in_channels: int = 2,
        out_channels: int = 1,
        *,
        latent: int = 256,
        mapper_features: Sequence[int] = (64, 64, 128, 128),
        decoder_hidden: int = 2048,
        decoder_features: int = 32,
    ) -> "SPECTnet":
        """A fresh ``SPECTnet``: ``SPECTnetEncoder(in_channels, latent, features=mapper_features)``
        then ``SPECTnetDecoder(latent, out_channels, hidden=decoder_hidden, features=decoder_features)``.

        Shapes: ``[B, in_channels, 128, 128] -> [B, out_channels, 128, 128]``.
        """
        mapper = SPECTnetEncoder(in_channels, latent, features=tuple(mapper_features))
        decoder = SPECTnetDecoder(latent, out_channels, hidden=decoder_hidden, features=decoder_features)
        return cls(mapper, decoder)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.mapper(x))


register(
    "spectnet",
    example=ModelExample(
        kwargs=dict(
            in_channels=2,
            out_channels=1,
            latent=4,
            mapper_features=(2, 2, 2, 2),
            decoder_hidden=8,
            decoder_features=2,
        ),
        input_shape=(2, 2, 128, 128),
        output_shape=(2, 1, 128, 128),
        violations=(
            Violation((2, 2, 120, 128), "expected (128, 128)"),
            Violation((1, 2, 128, 128), "expected at least 2", training=True),
        ),
    ),
)(SPECTnet.from_channels)
