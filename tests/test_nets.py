"""Tests for srdeblur.nets: shapes, size, the bilinear initialisation of the image upsampler, error paths."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from srdeblur.nets import (
    DeblurConfig,
    LapSR,
    ResidualBlock,
    SRConfig,
    SRNDeblur,
    bilinear_upsampler_weight,
    count_parameters,
    float32_layer,
)

SMALL = SRConfig(channels=8, blocks=1)


def _model(config: SRConfig = SMALL, seed: int = 0) -> LapSR:
    torch.manual_seed(seed)
    return LapSR(config).eval()


@pytest.mark.parametrize("levels", [1, 2, 3])
def test_lapsr_pyramid_shapes_on_odd_sizes(levels):
    lr = torch.rand(2, 3, 7, 5)
    with torch.no_grad():
        outputs = _model()(lr, levels)
    assert len(outputs) == levels
    for level, output in enumerate(outputs, start=1):
        assert output.shape == (2, 3, 7 * 2**level, 5 * 2**level)
        assert output.dtype == torch.float32


def test_default_lapsr_shape_and_parameter_budget():
    model = _model(SRConfig())
    assert 0 < count_parameters(model) < 1_000_000
    with torch.no_grad():
        (out,) = model(torch.rand(1, 3, 9, 11), 1)
    assert out.shape == (1, 3, 18, 22)


def test_count_parameters_counts_only_trainable():
    model = _model()
    total = sum(p.numel() for p in model.parameters())
    assert count_parameters(model) == total
    model.embed.weight.requires_grad_(False)
    assert count_parameters(model) == total - model.embed.weight.numel()


def test_pyramid_levels_share_the_stage():
    # One stage for every level: the x2 output of a 3-level run is the 1-level output.
    model = _model()
    lr = torch.rand(1, 3, 6, 6)
    with torch.no_grad():
        one = model(lr, 1)[0]
        three = model(lr, 3)
    torch.testing.assert_close(three[0], one)
    assert count_parameters(model) == count_parameters(_model(seed=1))


def test_config_round_trip_rebuilds_same_architecture():
    config = SRConfig(channels=12, blocks=2, recursions=2)
    rebuilt = SRConfig(**config.to_dict())
    assert rebuilt == config
    assert count_parameters(LapSR(rebuilt)) == count_parameters(LapSR(config))
    assert config.to_dict() == {"channels": 12, "blocks": 2, "recursions": 2, "image_channels": 3}


# ------------------------------------------------------------------------------------------------ bilinear


def test_bilinear_upsampler_weight_hand_values():
    weight = bilinear_upsampler_weight(3)
    assert weight.shape == (3, 1, 4, 4)
    taps = torch.tensor([0.25, 0.75, 0.75, 0.25])
    for channel in range(3):
        torch.testing.assert_close(weight[channel, 0], taps[:, None] * taps[None, :])


@pytest.mark.parametrize("factor", [2, 4])
def test_bilinear_weight_makes_transposed_conv_bilinear(factor):
    channels = 3
    deconv = nn.ConvTranspose2d(channels, channels, 2 * factor, stride=factor, padding=factor // 2,
                                groups=channels, bias=False)
    with torch.no_grad():
        deconv.weight.copy_(bilinear_upsampler_weight(channels, factor))
        image = torch.rand(1, channels, 7, 9, generator=torch.Generator().manual_seed(0))
        ours = deconv(image)
    reference = F.interpolate(image, scale_factor=factor, mode="bilinear", align_corners=False)
    assert ours.shape == reference.shape
    crop = factor  # the transposed convolution sees zeros past the border, interpolate clamps
    torch.testing.assert_close(ours[..., crop:-crop, crop:-crop], reference[..., crop:-crop, crop:-crop])
    # and the border really is different (so the crop above is needed, not hiding a mismatch everywhere)
    assert not torch.allclose(ours[..., 0, :], reference[..., 0, :])


def test_stage_image_upsampler_is_initialised_bilinear():
    model = _model()
    torch.testing.assert_close(model.stage.image_up.weight, bilinear_upsampler_weight(3))


def test_untrained_lapsr_is_close_to_bilinear():
    # Fresh default initialisation: image path = bilinear, residual path small.
    model = _model(SRConfig(), seed=0)
    lr = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        (out,) = model(lr, 1)
    bilinear = F.interpolate(lr, scale_factor=2, mode="bilinear", align_corners=False)
    difference = (out - bilinear)[..., 2:-2, 2:-2].abs()
    assert difference.mean() < 0.05
    assert difference.max() < 0.2


# ------------------------------------------------------------------------------------------------ parts


def test_residual_block_is_identity_with_zero_last_conv():
    block = ResidualBlock(4)
    with torch.no_grad():
        block.conv2.weight.zero_()
        block.conv2.bias.zero_()
        x = torch.randn(2, 4, 5, 6)
        torch.testing.assert_close(block(x), x)
        block.conv2.bias.fill_(0.5)
        torch.testing.assert_close(block(x), x + 0.5)


# ------------------------------------------------------------------------------------------------ errors


@pytest.mark.parametrize(("scale", "levels"), [(2, 1), (4, 2), (8, 3)])
def test_levels_for_scale(scale, levels):
    assert LapSR.levels_for_scale(scale) == levels


@pytest.mark.parametrize("scale", [1, 3, 5, 6, 12])
def test_levels_for_scale_rejects_non_powers_of_two(scale):
    with pytest.raises(ValueError, match="powers of two"):
        LapSR.levels_for_scale(scale)


@pytest.mark.parametrize("shape", [(1, 1, 8, 8), (1, 4, 8, 8), (3, 8, 8)])
def test_lapsr_rejects_wrong_input_shape(shape):
    with pytest.raises(ValueError, match="LapSR expects"):
        _model()(torch.rand(shape), 1)


def test_lapsr_rejects_zero_levels():
    with pytest.raises(ValueError, match="levels"):
        _model()(torch.rand(1, 3, 8, 8), 0)


# ------------------------------------------------------------------------------------------------ SRNDeblur


def _deblur_model(scales: int = 3) -> SRNDeblur:
    torch.manual_seed(0)
    return SRNDeblur(DeblurConfig(channels=4, blocks=1, scales=scales)).eval()


@pytest.mark.parametrize(("scales", "multiple"), [(1, 4), (2, 8), (3, 16)])
def test_srndeblur_pyramid_shapes(scales, multiple):
    model = _deblur_model(scales)
    assert model.multiple == multiple
    blurred = torch.rand(2, 3, 2 * multiple, 3 * multiple)
    with torch.no_grad():
        outputs = model(blurred)
    assert [tuple(o.shape) for o in outputs] == [
        (2, 3, 2 * multiple // 2**k, 3 * multiple // 2**k) for k in reversed(range(scales))
    ]


def test_default_srndeblur_parameter_budget():
    assert 0 < count_parameters(SRNDeblur()) < 1_000_000


def test_srndeblur_estimate_upsampler_is_initialised_bilinear():
    torch.testing.assert_close(_deblur_model().estimate_up.weight, bilinear_upsampler_weight(3))


def test_srndeblur_coarsest_estimate_only_sees_the_coarsest_level():
    # Coarse to fine: the first (1/4) estimate depends only on the 1/4 pyramid level, i.e. on 4x4 block means.
    model = _deblur_model()
    blurred = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    same_means = blurred + 0.01 * torch.tensor([[1.0, -1.0], [-1.0, 1.0]]).repeat(16, 16)
    with torch.no_grad():
        first, second = model(blurred), model(same_means)
    torch.testing.assert_close(first[0], second[0])
    assert not torch.allclose(first[-1], second[-1])


@pytest.mark.parametrize("shape", [(1, 3, 16, 20), (1, 3, 12, 16), (1, 1, 16, 16), (3, 16, 16)])
def test_srndeblur_rejects_bad_shapes(shape):
    with pytest.raises(ValueError, match="SRNDeblur"):
        _deblur_model()(torch.rand(shape))


# ------------------------------------------------------------------------------------- mixed precision


def test_float32_layer_ignores_bfloat16_autocast():
    layer = torch.nn.Conv2d(3, 4, 3, padding=1)
    x = torch.rand(1, 3, 8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert layer(x).dtype == torch.bfloat16  # what autocast does to a plain layer
        kept = float32_layer(layer, x.bfloat16())
    assert kept.dtype == torch.float32
    assert torch.allclose(kept, layer(x.bfloat16().float()), atol=1e-6)


@pytest.mark.parametrize("network", ["lapsr", "srndeblur"])
def test_networks_under_bfloat16_autocast_return_float32_images_near_float32(network):
    torch.manual_seed(0)
    if network == "lapsr":
        model, x, run = LapSR(SRConfig(channels=16, blocks=2)).eval(), torch.rand(1, 3, 16, 16), lambda m, t: m(t, 2)
    else:
        model, x, run = SRNDeblur(DeblurConfig(channels=8)).eval(), torch.rand(1, 3, 32, 32), lambda m, t: m(t)
    with torch.no_grad():
        exact = run(model, x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = run(model, x)
    for a, b in zip(mixed, exact):
        assert a.dtype == torch.float32
        # bfloat16 keeps 8 significant bits in the hidden layers; the image path stays float32.
        assert 0 < (a - b).abs().max() < 0.02
