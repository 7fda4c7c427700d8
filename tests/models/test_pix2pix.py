from __future__ import annotations

import math

import pytest
import torch

from spectdl.errors import InputError
from spectdl.models import PatchDiscriminator, Pix2PixGenerator, count_parameters


def _conv(cin, cout, k=4, d=2):
    return k**d * cin * cout + cout


def _generator_hand_count(cin, cout, f=(64, 128, 256, 512, 512, 512), norm=(2, 3, 4)):
    n, prev = 0, cin
    for k, c in enumerate(f, start=1):
        n += _conv(prev, c) + (2 * c if k in norm else 0)
        prev = c
    dec = list(reversed(f[:-1]))  # 512, 512, 256, 128, 64
    prev = f[-1]
    for c in dec:
        n += _conv(prev, c) + 2 * c
        prev = 2 * c  # concatenation with the mirrored encoder output
    return n + _conv(prev, cout)


@pytest.fixture(scope="module")
def generator():
    return Pix2PixGenerator(2, 1, 1)


def test_generator_parameter_count(generator):
    n = count_parameters(generator)
    assert n == _generator_hand_count(1, 1) == 29_240_321
    assert abs(n - 29.2e6) / 29.2e6 < 0.01


def test_discriminator_parameter_count():
    n = count_parameters(PatchDiscriminator(2, 2, 1))
    widths = [2, 48, 96, 192, 384]
    hand = sum(_conv(a, b) + 2 * b for a, b in zip(widths[:-1], widths[1:])) + (384 + 1) + 2
    assert n == hand


def test_output_bias_sets_the_untrained_output_level():
    model = Pix2PixGenerator(2, 1, 1, features=(4, 8), output_bias=-2.5)
    torch.testing.assert_close(model.head[0].bias, torch.full((1,), -2.5))
    with torch.no_grad():
        model.head[0].weight.zero_()  # then only the bias reaches the sigmoid
    torch.testing.assert_close(model(torch.rand(2, 1, 8, 8)), torch.full((2, 1, 8, 8), 1 / (1 + math.exp(2.5))))
    default = Pix2PixGenerator(2, 1, 1, features=(4, 8))
    assert float(default.head[0].bias.abs().max()) < 1.0  # PyTorch's own initialisation, unchanged
    with pytest.raises(Exception, match="output_bias"):
        Pix2PixGenerator(2, 1, 1, features=(4, 8), output_bias=float("nan"))


@pytest.mark.parametrize("batch", [1, 2])
def test_generator_forward_backward_64(generator, forward_backward, gen, batch):
    x = torch.rand(batch, 1, 64, 64, generator=gen)
    y = forward_backward(generator, x, (batch, 1, 64, 64))
    assert (y > 0).all() and (y < 1).all()  # the paper's output sigmoid


@pytest.mark.parametrize("batch", [1, 2])
def test_generator_3d_small(forward_backward, gen, batch):
    model = Pix2PixGenerator(3, 2, 1, features=(4, 8, 8), final_activation=None)
    forward_backward(model, torch.rand(batch, 2, 8, 16, 8, generator=gen), (batch, 1, 8, 16, 8))


def test_generator_linear_output_leaves_range():
    model = Pix2PixGenerator(2, 1, 1, features=(4, 8), final_activation=None)
    with torch.no_grad():
        model.head[0].weight.zero_()
        model.head[0].bias.fill_(5.0)
    torch.testing.assert_close(model(torch.rand(2, 1, 8, 8)), torch.full((2, 1, 8, 8), 5.0))
    assert len(model.head) == 1  # no activation after the last transposed convolution


@pytest.mark.parametrize("batch", [1, 2])
def test_discriminator_forward_backward(forward_backward, gen, batch):
    model = PatchDiscriminator(2, 2, 1)
    y = forward_backward(model, torch.rand(batch, 2, 64, 64, generator=gen), (batch, 1, 7, 7))
    assert ((y > 0) & (y < 1)).all()
    model3 = PatchDiscriminator(3, 2, 1, features=4)
    forward_backward(model3, torch.rand(2, 2, 16, 16, 16, generator=gen), (2, 1, 1, 1, 1))


def test_discriminator_logits_option_matches_sigmoid(gen):
    prob = PatchDiscriminator(2, 2, 1).eval()
    logit = PatchDiscriminator(2, 2, 1, logits=True).eval()
    logit.load_state_dict(prob.state_dict())
    a, b = torch.rand(2, 1, 32, 32, generator=gen), torch.rand(2, 1, 32, 32, generator=gen)
    torch.testing.assert_close(torch.sigmoid(logit(a, b)), prob(torch.cat([a, b], 1)))


def test_size_checks():
    with pytest.raises(InputError, match="divisible by 64"):
        Pix2PixGenerator(2, 1, 1, features=(4, 4, 4, 4, 4, 4))(torch.rand(1, 1, 48, 64))
    with pytest.raises(InputError, match="y has shape"):
        PatchDiscriminator(2, 2, 1)(torch.rand(1, 1, 32, 32), torch.rand(1, 1, 16, 32))
