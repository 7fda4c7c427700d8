from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from spectdl.errors import ConfigError, InputError
from spectdl.models import DynConv3d, DynConvTranspose3d, DynUNet3d, count_parameters


def _ones_attention(layer, batch):
    return (
        torch.ones(batch, *layer.kernel_size),
        torch.ones(batch, layer.in_channels),
        torch.ones(batch, layer.out_channels),
    )


def test_unit_attention_equals_static_convolution(gen):
    layer = DynConv3d(3, 5, kernel_size=(3, 3, 1), padding=(1, 0, 0))
    x = torch.rand(2, 3, 6, 7, 4, generator=gen)
    y = layer.conv(x, layer.kernel(*_ones_attention(layer, 2)))
    torch.testing.assert_close(y, F.conv3d(x, layer.weight, layer.bias, padding=(1, 0, 0)))


def test_unit_attention_equals_static_transposed_convolution(gen):
    layer = DynConvTranspose3d(3, 5, kernel_size=(3, 3, 1))
    x = torch.rand(2, 3, 6, 7, 4, generator=gen)
    y = layer.conv(x, layer.kernel(*_ones_attention(layer, 2)))
    torch.testing.assert_close(y, F.conv_transpose3d(x, layer.weight, layer.bias))
    assert y.shape == (2, 5, 8, 9, 4)


def test_kernel_is_weight_times_mean_attention(gen):
    layer = DynConv3d(2, 3, kernel_size=(3, 3, 1))
    a_spa = torch.rand(1, 3, 3, 1, generator=gen)
    a_in = torch.rand(1, 2, generator=gen)
    a_out = torch.rand(1, 3, generator=gen)
    k = layer.kernel(a_spa, a_in, a_out)[0]
    w = layer.weight.detach()
    for o in range(3):
        for i in range(2):
            expected = w[o, i] * (a_spa[0] + a_in[0, i] + a_out[0, o]) / 3
            torch.testing.assert_close(k[o, i], expected)


def test_different_inputs_get_different_kernels(gen):
    layer = DynConv3d(2, 4, kernel_size=(3, 3, 1))
    x1 = torch.rand(1, 2, 6, 6, 3, generator=gen)
    x2 = 5 * torch.rand(1, 2, 6, 6, 3, generator=gen) - 2
    k1 = layer.kernel(*layer.attention(x1))
    k2 = layer.kernel(*layer.attention(x2))
    assert (k1 - k2).abs().max() > 1e-4
    for a in layer.attention(x1):
        assert ((a > 0) & (a < 1)).all()


@pytest.mark.parametrize("cls", [DynConv3d, DynConvTranspose3d])
def test_grouped_batch_path_matches_per_sample_loop(cls, gen):
    layer = cls(3, 4, kernel_size=(3, 3, 1))
    x = torch.rand(3, 3, 6, 5, 4, generator=gen)
    kernels = layer.kernel(*layer.attention(x))
    op = F.conv_transpose3d if cls is DynConvTranspose3d else F.conv3d
    loop = torch.cat([op(x[b : b + 1], kernels[b], layer.bias) for b in range(3)])
    torch.testing.assert_close(layer(x), loop)
    # Each sample's output does not depend on the other samples.
    torch.testing.assert_close(layer(x[1:2]), loop[1:2])


def _mlp(c, n):
    return c * 2 * n + 2 * n + 2 * n * n + n


def test_parameter_counts_static_dynamic_dc():
    f, taps = 32, 3 * 3 * 1
    static = count_parameters(DynUNet3d(2, 1, mode="static"))
    dyn = count_parameters(DynUNet3d(2, 1, mode="dynamic"))
    dc = count_parameters(DynUNet3d(2, 1, mode="dc-dynamic"))
    # Static hand count: 8 block convs (1×3×3), 8 dense blocks of three 5×3×3 convs, a 1×1×1 head.
    block_convs = (9 * 2 * f + f) + 7 * (9 * f * f + f)
    dense = 8 * sum(45 * (k + 1) * f * f + f for k in range(3))
    assert static == block_convs + dense + (f + 1)
    # Dynamic adds three attention MLPs per block convolution: n = taps, C_in, C_out.
    attention = sum(_mlp(c, taps) + _mlp(c, c) + _mlp(c, f) for c in [2] + [f] * 7)
    assert dyn - static == attention
    assert dc == dyn


@pytest.mark.parametrize("mode", ["static", "dynamic", "dc-dynamic"])
@pytest.mark.parametrize("in_channels, batch", [(1, 1), (2, 2)])
def test_dynunet_forward_backward(forward_backward, gen, mode, in_channels, batch):
    model = DynUNet3d(in_channels, 1, mode=mode, features=4, dense_layers=2)
    x = torch.rand(batch, in_channels, 12, 11, 3, generator=gen)
    forward_backward(model, x, (batch, 1, 12, 11, 3))


def test_in_plane_kernel_keeps_the_axial_size(gen):
    model = DynUNet3d(1, 1, features=4)
    block = model.down[0]
    assert block.conv.kernel_size == (3, 3, 1)
    h, _ = block(torch.rand(1, 1, 12, 11, 5, generator=gen), None)
    assert h.shape == (1, 4, 10, 9, 5)


def test_dc_attention_differs_from_plain_dynamic(gen):
    dyn = DynUNet3d(1, 1, mode="dynamic", features=4, dense_layers=1)
    dc = DynUNet3d(1, 1, mode="dc-dynamic", features=4, dense_layers=1)
    dc.load_state_dict(dyn.state_dict())
    x = torch.rand(2, 1, 12, 12, 3, generator=gen)
    assert (dyn(x) - dc(x)).abs().max() > 1e-6
    # The first two blocks see no earlier features of their width, so they match exactly.
    h1, _ = dyn.down[0](x, None)
    h1_dc, r = dc.down[0](x, None)
    torch.testing.assert_close(h1, h1_dc)


def test_dc_running_combination(gen):
    dc = DynUNet3d(1, 1, mode="dc-dynamic", features=4, dense_layers=1)
    seen = []

    def record(module, args, kwargs, out):
        seen.append(kwargs["attention_input"])

    for block in list(dc.down) + list(dc.up):
        block.conv.register_forward_hook(record, with_kwargs=True)
    x = torch.rand(1, 1, 14, 14, 3, generator=gen)
    dc(x)
    assert len(seen) == 8
    # The inputs x_{l-1} of the down blocks, recomputed block by block as the network chains them.
    feats, h, running = [], x, None
    for block in dc.down[:3]:
        feats.append(h)
        h, running = block(h, running)
    feats.append(h)
    assert torch.equal(seen[0], x)  # block 1: the image itself
    torch.testing.assert_close(seen[1], feats[1])  # block 2: the channel count changed, r restarts
    r2 = 0.5 * (feats[2] + F.interpolate(feats[1], size=feats[2].shape[2:], mode="trilinear"))
    torch.testing.assert_close(seen[2], r2)
    r3 = 0.5 * (feats[3] + F.interpolate(r2, size=feats[3].shape[2:], mode="trilinear"))
    torch.testing.assert_close(seen[3], r3)


def test_bad_configuration_and_input():
    with pytest.raises(ConfigError, match="mode"):
        DynUNet3d(1, 1, mode="fancy")
    with pytest.raises(InputError, match="X, Y >= 9"):
        DynUNet3d(1, 1, features=2)(torch.rand(1, 1, 8, 12, 3))
    with pytest.raises(InputError, match="attention input"):
        DynConv3d(2, 2)(torch.rand(1, 2, 5, 5, 5), attention_input=torch.rand(1, 3, 5, 5, 5))
    assert math.prod(DynConv3d(1, 1, kernel_size=(3, 3, 1)).kernel_size) == 9


def test_dynunet_starts_xavier_uniform_with_zero_biases():
    import math

    from torch import nn

    from spectdl.models.dynconv import DynConv3d

    net = DynUNet3d(2, 1, mode="dc-dynamic")
    seen = 0
    for m in net.modules():
        if isinstance(m, (nn.Conv3d, nn.ConvTranspose3d, nn.Linear, DynConv3d)):
            w = m.weight.detach()
            fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(w)
            bound = math.sqrt(6.0 / (fan_in + fan_out))
            assert float(w.abs().max()) <= bound + 1e-7
            if w.numel() > 5000:  # a uniform on ±b has SD b/√3
                assert float(w.std()) == pytest.approx(bound / math.sqrt(3), rel=0.05)
            if m.bias is not None:
                assert bool((m.bias == 0).all())
            seen += 1
    assert seen > 30
