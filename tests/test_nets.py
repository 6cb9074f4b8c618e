"""Tests for srdeblur.nets: shapes, size, the bilinear initialisation of the image upsampler, error paths."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import math

import torch
from torch import nn
from torch.nn import functional as F

from srdeblur.nets import (
    DeblurConfig,
    GlobalGate,
    LapSR,
    ResidualBlock,
    SRConfig,
    SpectralBranch,
    SRNDeblur,
    bilinear_upsampler_weight,
    count_parameters,
    float32_layer,
    global_gate,
    load_grown,
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


README = Path(__file__).resolve().parents[1] / "README.md"
WEIGHTS = Path(__file__).resolve().parents[1] / "weights"


def _conv(inputs: int, outputs: int, kernel: int, *, bias: bool = True) -> int:
    """Parameters of a dense (transposed) convolution, counted by hand."""
    return inputs * outputs * kernel * kernel + (outputs if bias else 0)


def _block(channels: int) -> int:
    return 2 * _conv(channels, channels, 3)


def _hand_count_lapsr(c: int = 48, blocks: int = 4, image: int = 3) -> int:
    # embed, the stage's body and body_out, the feature upsampler (4x4 transposed), to_residual, and the
    # depthwise 4x4 image upsampler without bias (one 4x4 kernel per image channel).
    return (_conv(image, c, 3) + blocks * _block(c) + _conv(c, c, 3) + _conv(c, c, 4) + _conv(c, image, 3)
            + image * 16)


def _hand_count_srndeblur(c: int = 24, n: int = 1, image: int = 3) -> int:
    # head (image + estimate in), enc1, down1, enc2, down2, bottom (2n blocks at 4c), up2, dec2, up1, dec1, tail,
    # and the depthwise 4x4 estimate upsampler without bias.
    return (_conv(2 * image, c, 3) + n * _block(c) + _conv(c, 2 * c, 3) + n * _block(2 * c) + _conv(2 * c, 4 * c, 3)
            + 2 * n * _block(4 * c) + _conv(4 * c, 2 * c, 4) + n * _block(2 * c) + _conv(2 * c, c, 4) + n * _block(c)
            + _conv(c, image, 3) + image * 16)


#: The counts the README states ("The networks").
README_PARAMETERS = {"lapsr": 226_659, "srndeblur": 582_363, "srndeblur --blocks 2": 1_018_491}


def test_parameter_counts_are_the_readmes_and_the_hand_counts():
    counts = {"lapsr": count_parameters(LapSR(SRConfig())), "srndeblur": count_parameters(SRNDeblur()),
              "srndeblur --blocks 2": count_parameters(SRNDeblur(DeblurConfig(blocks=2)))}
    hand = {"lapsr": _hand_count_lapsr(), "srndeblur": _hand_count_srndeblur(),
            "srndeblur --blocks 2": _hand_count_srndeblur(n=2)}
    assert counts == hand == README_PARAMETERS
    text = README.read_text()
    for count in README_PARAMETERS.values():
        assert f"{count:,} parameters" in text
    # The shipped manifests record the same counts as the networks they rebuild.
    for name in ("lapsr", "srndeblur"):
        manifest = json.loads((WEIGHTS / f"{name}.json").read_text())
        assert manifest["params"] == README_PARAMETERS[name]


def test_default_lapsr_shape():
    model = _model(SRConfig())
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


# ------------------------------------------------------------------------------- spectral branch, growth


def _live_branch(channels: int, seed: int = 0) -> SpectralBranch:
    torch.manual_seed(seed)
    branch = SpectralBranch(channels)
    nn.init.normal_(branch.mix2.weight, std=0.3)
    return branch


def test_spectral_branch_starts_at_zero():
    x = torch.randn(2, 4, 10, 12)
    assert torch.equal(SpectralBranch(4)(x), torch.zeros_like(x))


def test_spectral_branch_with_identity_mixing_is_the_identity_on_a_spectrum_it_does_not_clip():
    # mix2 . lrelu . mix1 with mix1 = I, mix2 = I passes positive coefficients; a constant positive image has
    # one positive coefficient (DC) and zeros elsewhere, so irfft2(rfft2(x)) = x comes back exactly.
    branch = SpectralBranch(2)
    with torch.no_grad():
        branch.mix1.weight.copy_(torch.eye(4)[:, :, None, None])
        branch.mix2.weight.copy_(torch.eye(4)[:, :, None, None])
    x = torch.full((1, 2, 6, 8), 0.7)
    torch.testing.assert_close(branch(x), x)


def test_spectral_branch_reaches_the_whole_image():
    # Image-wide: changing one corner pixel changes the output at the opposite corner (a 3x3 conv cannot).
    branch = _live_branch(3)
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    poked = x.clone()
    poked[..., 0, 0] += 1.0
    with torch.no_grad():
        assert (branch(x) - branch(poked))[..., 12:, 12:].abs().max() > 1e-3


@pytest.mark.parametrize("size", [(7, 9), (16, 16), (5, 32)])
def test_spectral_branch_shapes_any_size_and_float32_under_bfloat16(size):
    branch = _live_branch(3)
    x = torch.rand(2, 3, *size)
    with torch.no_grad():
        exact = branch(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = branch(x.bfloat16())
    assert exact.shape == x.shape and mixed.dtype == torch.float32
    torch.testing.assert_close(mixed, branch(x.bfloat16().float()))


def test_spectral_config_puts_branches_in_the_bottom_level_only():
    model = SRNDeblur(DeblurConfig(channels=4, blocks=1, spectral=True))
    with_branch = sorted(n for n, m in model.named_modules() if isinstance(m, SpectralBranch))
    assert with_branch == ["net.bottom.0.spectral", "net.bottom.1.spectral"]
    assert count_parameters(model) == count_parameters(SRNDeblur(DeblurConfig(channels=4, blocks=1))) + 2 * 2 * 32 * 32


def test_grown_network_computes_what_the_small_one_did():
    torch.manual_seed(3)
    small = SRNDeblur(DeblurConfig(channels=4, blocks=1))
    grown = SRNDeblur(DeblurConfig(channels=4, blocks=2, spectral=True))
    for module in grown.modules():  # nothing may rely on a fresh layer happening to be zero already
        if isinstance(module, SpectralBranch):
            nn.init.normal_(module.mix2.weight)
    fresh = load_grown(grown, small.state_dict())
    assert "net.enc1.1.conv2.weight" in fresh and "net.bottom.3.spectral.mix2.weight" in fresh
    assert not any(name in small.state_dict() for name in fresh)
    x = torch.rand(1, 3, 32, 48)
    with torch.no_grad():
        for a, b in zip(small(x), grown(x)):
            torch.testing.assert_close(a, b)


def test_grown_network_trains_its_fresh_layers():
    grown = SRNDeblur(DeblurConfig(channels=4, blocks=2, spectral=True))
    load_grown(grown, SRNDeblur(DeblurConfig(channels=4, blocks=1)).state_dict())
    grown(torch.rand(1, 3, 32, 32))[-1].square().mean().backward()
    assert grown.net.enc1[1].conv2.weight.grad.abs().sum() > 0
    assert grown.net.bottom[0].spectral.mix2.weight.grad.abs().sum() > 0


def test_grow_refuses_what_cannot_start_as_the_identity():
    wider = SRNDeblur(DeblurConfig(channels=6))
    with pytest.raises(ValueError, match="other shapes"):
        load_grown(wider, SRNDeblur(DeblurConfig(channels=4)).state_dict())
    with pytest.raises(ValueError, match="unknown"):
        load_grown(SRNDeblur(DeblurConfig(channels=4, blocks=1)), SRNDeblur(DeblurConfig(channels=4, blocks=2)).state_dict())
    partial = SRNDeblur(DeblurConfig(channels=4)).state_dict()
    del partial["net.head.weight"]
    with pytest.raises(ValueError, match="identity"):
        load_grown(SRNDeblur(DeblurConfig(channels=4)), partial)


# ------------------------------------------------------------------------------- global gate


def test_global_gate_matches_hand_computed_scales():
    # channel means (1, 3); W = [[0, 1], [0.5, 0]], b = (0.1, 0) -> scales 1 + (3.1, 0.5) = (4.1, 1.5)
    features = torch.stack([torch.tensor([[0.0, 2.0]]), torch.tensor([[1.0, 5.0]])])[None]
    weight, bias = torch.tensor([[0.0, 1.0], [0.5, 0.0]]), torch.tensor([0.1, 0.0])
    expected = features * torch.tensor([4.1, 1.5])[None, :, None, None]
    torch.testing.assert_close(global_gate(features, weight, bias), expected)


def test_global_gate_rejects_bad_shapes():
    with pytest.raises(ValueError, match="global_gate expects"):
        global_gate(torch.rand(2, 3, 4), torch.zeros(3, 3), torch.zeros(3))
    with pytest.raises(ValueError, match="global_gate expects"):
        global_gate(torch.rand(1, 3, 4, 4), torch.zeros(2, 2), torch.zeros(2))


def test_global_gate_starts_as_the_identity_and_sees_the_whole_map():
    x = torch.rand(2, 4, 9, 11)
    assert torch.equal(GlobalGate(4)(x), x)
    gate = GlobalGate(4)
    nn.init.normal_(gate.fc.weight)
    poked = x.clone()
    poked[..., 0, 0] += 5.0
    with torch.no_grad():  # one corner pixel changes the far corner's output
        assert (gate(x) - gate(poked))[..., -1, -1].abs().max() > 1e-3


def test_gated_config_gates_every_residual_block():
    model = SRNDeblur(DeblurConfig(channels=4, blocks=1, gated=True))
    blocks = [m for m in model.modules() if isinstance(m, ResidualBlock)]
    assert len(blocks) == 6 and all(isinstance(b.gate, GlobalGate) for b in blocks)
    widths = [4, 8, 16, 16, 8, 4]  # enc1, enc2, bottom x2, dec2, dec1
    plain = count_parameters(SRNDeblur(DeblurConfig(channels=4, blocks=1)))
    assert count_parameters(model) == plain + sum(c * c + c for c in widths)


def test_gated_network_grows_from_plain_weights_and_trains_its_gates():
    torch.manual_seed(5)
    plain = SRNDeblur(DeblurConfig(channels=4, blocks=1))
    gated = SRNDeblur(DeblurConfig(channels=4, blocks=2, gated=True))
    for module in gated.modules():  # a fresh gate must be zeroed by load_grown, not by luck
        if isinstance(module, GlobalGate):
            nn.init.normal_(module.fc.weight)
    fresh = load_grown(gated, plain.state_dict())
    assert "net.enc1.0.gate.fc.weight" in fresh and "net.bottom.3.gate.fc.bias" in fresh
    x = torch.rand(1, 3, 32, 48)
    with torch.no_grad():
        for a, b in zip(plain(x), gated(x)):
            torch.testing.assert_close(a, b)
    gated(x)[-1].square().mean().backward()
    assert gated.net.enc1[0].gate.fc.weight.grad.abs().sum() > 0


# ------------------------------------------------------------------------------------------------ USRDeconv

from srdeblur.classical import blur as _blur  # noqa: E402
from srdeblur.kernels import gaussian_psf as _gaussian_psf  # noqa: E402
from srdeblur.metrics import psnr as _psnr  # noqa: E402
from srdeblur.nets import (DeconvConfig, DegradationGate, GateConfig, USRDeconv, hqs_schedule,  # noqa: E402
                           resample_iterations)


def test_hqs_schedule_hand_values():
    sigma = torch.tensor([0.01, 0.0])
    sigmas, alphas = hqs_schedule(sigma, iterations=3, first_sigma=0.2, min_sigma=0.004,
                                  log_alphas=torch.log(torch.tensor([1.0, 2.0, 4.0])))
    # geometric from 0.2 to max(sigma, 0.004): the middle one is the geometric mean
    torch.testing.assert_close(sigmas[0], torch.tensor([0.2, math.sqrt(0.2 * 0.01), 0.01]))
    torch.testing.assert_close(sigmas[1], torch.tensor([0.2, math.sqrt(0.2 * 0.004), 0.004]))
    # alpha_i = exp(log_alpha_i) (sigma / 0.01)^2
    torch.testing.assert_close(alphas[0], torch.tensor([1.0, 2.0, 4.0]))
    torch.testing.assert_close(alphas[1], torch.tensor([1.0, 2.0, 4.0]) * 0.4**2)


def test_usrdeconv_untrained_starts_at_wiener_and_already_deblurs(make_image):
    from srdeblur.classical import wiener

    torch.manual_seed(0)
    model = USRDeconv(DeconvConfig(channels=8, iterations=3)).eval()
    sharp = make_image(48, 44)
    psf = _gaussian_psf(1.5)
    blurred = _blur(sharp, psf)
    with torch.no_grad():
        (restored,) = model(blurred, psf, torch.tensor([0.01]))
        model.log_alphas.fill_(30.0)  # data steps that keep z: the output is the Wiener start itself
        (start,) = model(blurred, psf, torch.tensor([0.01]))
    assert restored.shape == sharp.shape
    # the Wiener start: balance exp(log_balance) sigma^2 = 50 x 1e-4, on the same padded domain as classical's
    torch.testing.assert_close(start, wiener(blurred, psf, balance=0.005, pad=USRDeconv.padding(psf.shape), clip=False),
                               atol=2e-3, rtol=0)
    # the prior starts at zero: the data steps from there deblur more than the blur, and no worse than Wiener
    assert float(_psnr(restored.clamp(0, 1), sharp, shave=4)[0]) > float(_psnr(blurred, sharp, shave=4)[0]) + 2


def test_usrdeconv_per_image_psfs_equal_one_by_one(make_image):
    torch.manual_seed(1)
    model = USRDeconv(DeconvConfig(channels=8, iterations=2)).eval()
    with torch.no_grad():
        for parameter in model.prior.tail.parameters():
            parameter.normal_(0, 0.01)  # a non-trivial prior
    images = torch.cat([make_image(24, 24, seed=1), make_image(24, 24, seed=2)])
    psfs = torch.stack([_gaussian_psf(1.0, size=7), torch.eye(7) / 7])
    sigma = torch.tensor([0.01, 0.03])
    with torch.no_grad():
        (both,) = model(images, psfs, sigma)
        first = model(images[:1], psfs[0], sigma[:1])[0]
        second = model(images[1:], psfs[1], sigma[1:])[0]
    torch.testing.assert_close(both, torch.cat([first, second]), atol=1e-5, rtol=0)


def test_usrdeconv_shape_errors(make_image):
    model = USRDeconv(DeconvConfig(channels=8, iterations=1))
    with pytest.raises(ValueError, match="expects"):
        model(torch.zeros(1, 1, 16, 16), torch.ones(3, 3) / 9, torch.tensor([0.01]))
    with pytest.raises(ValueError, match="psf must be"):
        model(make_image(16, 16), torch.ones(2, 2, 3, 3), torch.tensor([0.01]))


def test_resample_iterations_interpolates_the_data_weights_and_keeps_the_prior():
    tensors = {"log_alphas": torch.tensor([0.0, 1.0, 4.0]), "prior.tail.bias": torch.arange(3.0)}
    five = resample_iterations(tensors, 5)
    # positions 0, 0.5, 1, 1.5, 2 of the three stored values
    torch.testing.assert_close(five["log_alphas"], torch.tensor([0.0, 0.5, 1.0, 2.5, 4.0]))
    assert five["prior.tail.bias"] is tensors["prior.tail.bias"]
    torch.testing.assert_close(resample_iterations(tensors, 2)["log_alphas"], torch.tensor([0.0, 4.0]))
    assert resample_iterations(tensors, 3) is tensors
    # the result loads into a network with that many iterations
    model = USRDeconv(DeconvConfig(channels=4, iterations=4))
    model.load_state_dict(resample_iterations(USRDeconv(DeconvConfig(channels=4, iterations=2)).state_dict(), 4))
    assert model.log_alphas.shape == (4,)


def test_with_iterations_copies_the_prior_and_resamples_the_data_weights(make_image):
    from srdeblur.nets import with_iterations

    torch.manual_seed(0)
    model = USRDeconv(DeconvConfig(channels=4, iterations=3)).eval()
    with torch.no_grad():
        model.log_alphas.copy_(torch.tensor([0.0, 1.0, 4.0]))
        model.prior.tail.weight.normal_(0, 0.01)
    assert with_iterations(model, 3) is model
    five = with_iterations(model, 5)
    assert five.config.iterations == 5 and not five.training and five is not model
    torch.testing.assert_close(five.log_alphas.detach(), torch.tensor([0.0, 0.5, 1.0, 2.5, 4.0]))
    torch.testing.assert_close(five.prior.tail.weight, model.prior.tail.weight)
    assert model.config.iterations == 3 and model.log_alphas.shape == (3,)  # the original is untouched
    image, psf = make_image(24, 24), torch.ones(3, 3) / 9
    with torch.no_grad():
        outputs = five(image, psf, torch.tensor([0.01]))
    assert outputs[-1].shape == image.shape
    with pytest.raises(ValueError, match="iterations"):
        with_iterations(model, 0)


def test_degradation_gate_shapes_and_errors(make_image):
    gate = DegradationGate(GateConfig(channels=4))
    assert gate(torch.cat([make_image(9, 13)] * 2))[0].shape == (2,)
    assert gate(make_image(40, 31))[0].shape == (1,)
    with pytest.raises(ValueError, match="expects"):
        gate(torch.zeros(1, 1, 16, 16))
