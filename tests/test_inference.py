"""Tests for srdeblur.inference: upscale/deblur shapes, ranges, equivalences and error paths (the network path
mostly uses a small untrained LapSR; one tiling test runs the shipped ``weights/lapsr``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from srdeblur import blind, inference
from srdeblur.classical import blur, richardson_lucy
from srdeblur.inference import bfloat16_is_native, deblur, deblur_with_net, self_ensemble, upscale, upscale_with_net
from srdeblur.kernels import gaussian_psf
from srdeblur.nets import DeblurConfig, LapSR, SRConfig, SRNDeblur
from srdeblur.resize import imresize
from srdeblur.weights import WeightsError


@pytest.fixture(scope="module")
def small_model() -> LapSR:
    torch.manual_seed(0)
    return LapSR(SRConfig(channels=8, blocks=1)).eval()


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1 / (a - b).square().mean()))


# ------------------------------------------------------------------------------------------------ upscale


@pytest.mark.parametrize("scale", [2, 3, 4, 8])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("method", ["bicubic", "lanczos", "net"])
def test_upscale_shapes_and_range(make_image, small_model, scale, channels, method):
    image = make_image(5, 6, channels)
    out = upscale(image, scale=scale, method=method, model=small_model if method == "net" else None)
    assert out.shape == (1, channels, 5 * scale, 6 * scale)
    assert out.dtype == torch.float32
    assert out.min() >= 0 and out.max() <= 1


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_bicubic_is_matlab_imresize_clamped(make_image, scale):
    image = make_image(7, 6)
    image[..., :, 3:] = 1.0  # a hard edge makes bicubic overshoot, so the clamp matters
    image[..., :, :3] = 0.0
    expected = imresize(image, scale=scale, kernel="cubic")
    assert expected.max() > 1  # the case is meaningful
    torch.testing.assert_close(upscale(image, scale=scale, method="bicubic"), expected.clamp(0, 1))


def test_lanczos_is_lanczos3_imresize_clamped(make_image):
    image = make_image(6, 8)
    expected = imresize(image, scale=2, kernel="lanczos3").clamp(0, 1)
    torch.testing.assert_close(upscale(image, scale=2, method="lanczos"), expected)
    assert not torch.allclose(expected, upscale(image, scale=2, method="bicubic"))


def test_batch_is_processed_per_image(make_image):
    a, b = make_image(6, 6, seed=1), make_image(6, 6, seed=2)
    out = upscale(torch.cat([a, b]), scale=2, method="bicubic")
    torch.testing.assert_close(out[1:], upscale(b, scale=2, method="bicubic"))


def test_net_gray_is_mean_of_rgb_output(make_image, small_model):
    gray = make_image(6, 7, 1)
    out_gray = upscale_with_net(gray, small_model, scale=2)
    out_rgb = upscale_with_net(gray.expand(-1, 3, -1, -1), small_model, scale=2)
    assert out_gray.shape == (1, 1, 12, 14)
    torch.testing.assert_close(out_gray, out_rgb.mean(dim=1, keepdim=True))


@pytest.mark.parametrize("size", [(1, 1), (2, 3), (1, 9)])
def test_net_handles_tiny_images(small_model, size):
    image = torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(0))
    out = upscale(image, scale=4, method="net", model=small_model)
    assert out.shape == (1, 3, 4 * size[0], 4 * size[1])


def test_net_x3_is_x4_resized(make_image, small_model):
    image = make_image(6, 5)
    x4 = upscale_with_net(image, small_model, scale=4)
    x3 = upscale_with_net(image, small_model, scale=3)
    torch.testing.assert_close(x3, imresize(x4, size=(18, 15)))


def test_net_without_model_and_without_weights_raises(make_image, tmp_path, monkeypatch):
    monkeypatch.setenv("SRDEBLUR_WEIGHTS", str(tmp_path))
    with pytest.raises(WeightsError, match="lapsr"):
        upscale(make_image(4, 4), scale=2, method="net")


@pytest.mark.parametrize("scale", [0, 1, 5, 6, 16])
def test_upscale_rejects_invalid_scale(make_image, scale):
    with pytest.raises(ValueError, match="scale"):
        upscale(make_image(4, 4), scale=scale, method="bicubic")


def test_upscale_rejects_unknown_method(make_image):
    with pytest.raises(ValueError, match="unknown upscale method"):
        upscale(make_image(4, 4), scale=2, method="nearest")  # type: ignore[arg-type]


@pytest.mark.parametrize("shape", [(1, 2, 4, 4), (1, 4, 4, 4), (3, 4, 4)])
def test_upscale_rejects_bad_shapes(shape):
    with pytest.raises(ValueError, match="expected a"):
        upscale(torch.rand(shape), scale=2, method="bicubic")


# ------------------------------------------------------------------------------------------------ deblur


def _delta(size: int = 3) -> torch.Tensor:
    psf = torch.zeros(size, size)
    psf[size // 2, size // 2] = 1.0
    return psf


@pytest.mark.parametrize("method", ["wiener", "rl"])
def test_deblur_requires_psf(make_image, method):
    with pytest.raises(ValueError, match="needs a PSF"):
        deblur(make_image(8, 8), method=method)


@pytest.mark.parametrize("channels", [1, 3])
def test_delta_psf_is_identity(make_image, channels):
    image = make_image(16, 20, channels)
    rl = deblur(image, method="rl", psf=_delta(), iterations=5)
    wiener = deblur(image, method="wiener", psf=_delta(), balance=1e-7)
    assert rl.shape == wiener.shape == image.shape
    torch.testing.assert_close(rl, image, rtol=0, atol=1e-4)
    torch.testing.assert_close(wiener, image, rtol=0, atol=1e-3)


def test_wiener_keeps_constant_image_with_default_balance():
    image = torch.full((1, 3, 16, 16), 0.4)
    torch.testing.assert_close(deblur(image, method="wiener", psf=gaussian_psf(1.5)), image, rtol=0, atol=1e-4)


@pytest.mark.parametrize("method", ["wiener", "rl"])
def test_deblur_improves_a_blurred_image(make_image, method):
    sharp = make_image(32, 32)
    psf = gaussian_psf(1.5)
    blurred = blur(sharp, psf)
    restored = deblur(blurred, method=method, psf=psf, balance=1e-3, iterations=30)
    assert restored.shape == sharp.shape
    assert restored.min() >= 0 and restored.max() <= 1
    assert _psnr(restored, sharp) > _psnr(blurred, sharp) + 1.0


def test_deblur_blind_is_richardson_lucy_with_each_images_estimated_psf(make_image):
    images = torch.cat([make_image(40, 44, seed=1), make_image(40, 44, seed=2)])
    seen = []
    restored = deblur(images, method="blind", psf_size=9, iterations=5, tv_weight=0.002, on_psf=seen.append)
    assert restored.shape == images.shape and len(seen) == 2
    for index, psf in enumerate(seen):
        assert psf.shape == (9, 9) and float(psf.sum()) == pytest.approx(1, abs=1e-5)
        expected = richardson_lucy(images[index : index + 1], psf, iterations=5, tv_weight=0.002)
        torch.testing.assert_close(restored[index : index + 1], expected.clamp(0, 1))


@pytest.mark.parametrize(("credible", "explains"), [(False, True), (True, True), (True, False)])
def test_deblur_auto_deconvolves_credible_estimates_and_runs_the_network_on_the_others(
    make_image, small_deblur_model, monkeypatch, credible, explains
):
    image = make_image(40, 44, seed=4)
    # the gates' verdicts, forced: no objection (credible) or one; a re-blurred residual at or above the limit
    monkeypatch.setattr(blind, "why_not_credible", lambda spread, slope: [] if credible else ["forced"])
    monkeypatch.setattr(blind, "reblur_ratio", lambda *args: inference.REBLUR_LIMIT + (0.0 if explains else 0.001))
    estimates = []
    auto = deblur(image, method="auto", model=small_deblur_model, psf_size=9, iterations=5, tv_weight=0.002,
                  blur_gate=False, on_psf=estimates.append)
    if credible and explains:  # the mean of the learned deconvolution and Richardson-Lucy with the estimate
        at_auto_iterations = inference._shipped_deconvolution(inference.AUTO_DECONV_ITERATIONS)
        learned = deblur(image, method="net", psf=estimates[0], model=at_auto_iterations).clamp(0, 1)
        lucy = deblur(image, method="rl", psf=estimates[0], iterations=inference.MIX_RL_ITERATIONS, tv_weight=0.002)
        expected = (0.5 * (learned + lucy)).clamp(0, 1)
    else:
        expected = deblur(image, method="net", model=small_deblur_model)
    torch.testing.assert_close(auto, expected)


def test_deblur_auto_runs_the_network_on_images_too_small_for_a_psf(make_image, small_deblur_model):
    image = make_image(20, 60)
    auto = deblur(image, method="auto", model=small_deblur_model, psf_size=11, blur_gate=False)
    torch.testing.assert_close(auto, deblur(image, method="net", model=small_deblur_model))
    with pytest.raises(ValueError, match="at least 22 px"):
        deblur(image, method="blind", psf_size=11)


def test_deblur_net_without_model_and_without_weights_raises(make_image, tmp_path, monkeypatch):
    monkeypatch.setenv("SRDEBLUR_WEIGHTS", str(tmp_path))
    with pytest.raises(WeightsError, match="srndeblur"):
        deblur(make_image(8, 8), method="net")


@pytest.fixture(scope="module")
def small_deblur_model() -> SRNDeblur:
    torch.manual_seed(0)
    return SRNDeblur(DeblurConfig(channels=4, blocks=1)).eval()


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("size", [(17, 23), (16, 16), (1, 1), (2, 5), (40, 9)])
def test_deblur_net_shapes_and_range(small_deblur_model, channels, size):
    image = torch.rand(1, channels, *size, generator=torch.Generator().manual_seed(0))
    out = deblur(image, method="net", model=small_deblur_model)
    assert out.shape == image.shape and out.dtype == torch.float32
    assert out.min() >= 0 and out.max() <= 1


def test_deblur_net_gray_is_mean_of_rgb_output(make_image, small_deblur_model):
    gray = make_image(13, 11, 1)
    out_gray = deblur_with_net(gray, small_deblur_model)
    out_rgb = deblur_with_net(gray.expand(-1, 3, -1, -1), small_deblur_model)
    torch.testing.assert_close(out_gray, out_rgb.mean(dim=1, keepdim=True))


def test_deblur_rejects_unknown_method_and_bad_shape(make_image):
    with pytest.raises(ValueError, match="unknown deblur method"):
        deblur(make_image(8, 8), method="sharpen", psf=_delta())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="expected a"):
        deblur(torch.rand(1, 2, 8, 8), method="wiener", psf=_delta())


# ----------------------------------------------------------------------------- self-ensemble


def _column_ramp(x: torch.Tensor) -> torch.Tensor:
    """Not equivariant: weights each pixel by its column index in the image it is given."""
    return x * torch.arange(x.shape[-1], dtype=x.dtype)


@pytest.mark.parametrize("count", [1, 2, 4, 8])
def test_self_ensemble_of_an_equivariant_function_is_the_function(count):
    image = torch.rand(2, 3, 5, 7, generator=torch.Generator().manual_seed(0))
    double = lambda x: torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest")  # noqa: E731
    torch.testing.assert_close(self_ensemble(double, image, count=count), double(image))


def test_self_ensemble_averages_the_transforms_hand_values():
    image = torch.rand(1, 1, 6, 6, generator=torch.Generator().manual_seed(1))
    columns = torch.arange(6.0)
    # identity + left-right flip: column weights j and 5 - j -> 2.5 everywhere
    torch.testing.assert_close(self_ensemble(_column_ramp, image, count=2), image * 2.5)
    # identity, flip, then each turned a quarter counter-clockwise: the turned image's column index is the
    # original row i in both turned cases, so the weights are j, 5 - j, i, i
    four = image * (columns + (5 - columns) + 2 * columns[:, None]) / 4
    torch.testing.assert_close(self_ensemble(_column_ramp, image, count=4), four)
    torch.testing.assert_close(self_ensemble(_column_ramp, image, count=8), image * 2.5)
    assert not torch.allclose(_column_ramp(image), image * 2.5)


def test_self_ensemble_rejects_other_counts():
    with pytest.raises(ValueError, match="ensemble must be one of"):
        self_ensemble(_column_ramp, torch.rand(1, 1, 4, 4), count=3)
    with pytest.raises(ValueError, match="ensemble must be one of"):
        deblur(torch.rand(1, 3, 8, 8), method="net", model=SRNDeblur(DeblurConfig(channels=4)), ensemble=5)


def test_deblur_and_upscale_ensemble_is_the_mean_over_turned_inputs(small_deblur_model, small_model):
    image = torch.rand(1, 3, 20, 12, generator=torch.Generator().manual_seed(2))
    turned = torch.rot90(image, 1, dims=(-2, -1))
    whole = deblur_with_net(image, small_deblur_model)
    back = torch.rot90(deblur_with_net(turned, small_deblur_model), -1, dims=(-2, -1))
    flipped = deblur_with_net(image.flip(-1), small_deblur_model).flip(-1)
    turned_flip = torch.rot90(deblur_with_net(torch.rot90(image.flip(-1), 1, dims=(-2, -1)), small_deblur_model),
                              -1, dims=(-2, -1)).flip(-1)
    expected = ((whole + flipped + back + turned_flip) / 4).clamp(0, 1)
    torch.testing.assert_close(deblur(image, method="net", model=small_deblur_model, tile=0, ensemble=4), expected)
    sr = upscale(image, scale=2, method="net", model=small_model, tile=0, ensemble=2)
    sr_expected = (upscale_with_net(image, small_model, scale=2) + upscale_with_net(image.flip(-1), small_model, scale=2).flip(-1)) / 2
    torch.testing.assert_close(sr, sr_expected.clamp(0, 1))


# ----------------------------------------------------------------------------- tiling


def _eight_bit(x: torch.Tensor) -> torch.Tensor:
    return torch.round(x.clamp(0, 1) * 255)


@pytest.mark.parametrize("scale", [2, 3, 4, 8])
def test_tiled_net_upscale_equals_untiled_within_one_level(scale):
    from srdeblur.nets import LapSR, SRConfig

    torch.manual_seed(0)
    model = LapSR(SRConfig(channels=8, blocks=2)).eval()
    image = torch.rand(1, 3, 90, 77, generator=torch.Generator().manual_seed(0))
    whole = upscale(image, scale=scale, method="net", model=model, tile=0)
    # 20-px tiles with 16 px of context: each tile reads at most 52 of the 90 x 77 pixels.
    tiled = upscale(image, scale=scale, method="net", model=model, tile=20, tile_overlap=16)
    assert tiled.shape == whole.shape
    assert (_eight_bit(whole) - _eight_bit(tiled)).abs().max() <= 1
    # ... and the context is what makes it so (measured: 3-4 levels off with 2 px).
    narrow = upscale(image, scale=scale, method="net", model=model, tile=20, tile_overlap=2)
    assert (_eight_bit(whole) - _eight_bit(narrow)).abs().max() > 1


def test_tiled_upscale_with_the_shipped_network_equals_untiled():
    from srdeblur.io import read_image
    from srdeblur.weights import load_model

    model = load_model("lapsr")
    photo = read_image(Path(__file__).resolve().parents[1] / "samples" / "chelsea.png").pixels[..., 60:220, 150:278]
    whole = upscale(photo, scale=2, method="net", model=model, tile=0)
    # 64-px tiles with the default context (32 px) read at most 128 x 96 of the 160 x 128 crop.
    tiled = upscale(photo, scale=2, method="net", model=model, tile=64)
    assert (_eight_bit(whole) - _eight_bit(tiled)).abs().max() <= 1
    narrow = upscale(photo, scale=2, method="net", model=model, tile=64, tile_overlap=2)
    assert (_eight_bit(whole) - _eight_bit(narrow)).abs().max() > 1


def test_tiled_net_deblur_equals_untiled_within_one_level():
    from srdeblur.nets import DeblurConfig, SRNDeblur

    torch.manual_seed(0)
    model = SRNDeblur(DeblurConfig(channels=4)).eval()
    image = torch.rand(1, 1, 250, 241, generator=torch.Generator().manual_seed(0))
    whole = deblur(image, method="net", model=model, tile=0)
    # 48-px tiles with the default context: the corner tiles see less than half of the image.
    tiled = deblur(image, method="net", model=model, tile=48)
    assert tiled.shape == whole.shape == image.shape
    assert (_eight_bit(whole) - _eight_bit(tiled)).abs().max() <= 1
    # ... and the context is what makes it so.
    narrow = deblur(image, method="net", model=model, tile=48, tile_overlap=8)
    assert (_eight_bit(whole) - _eight_bit(narrow)).abs().max() > 1


def test_cli_deblur_tile_overlap_default_is_the_library_default():
    import inspect

    from srdeblur import cli
    from srdeblur.inference import DEBLUR_TILE_OVERLAP

    assert inspect.signature(cli.deblur).parameters["tile_overlap"].default == DEBLUR_TILE_OVERLAP
    assert inspect.signature(deblur).parameters["tile_overlap"].default == DEBLUR_TILE_OVERLAP


def test_tiles_are_blended_not_pasted():
    from srdeblur.inference import tiled_forward

    # A 5x5 box filter has a receptive radius of 2: tiles with 4 px of context (fades 2 px from the edge)
    # reproduce it exactly, while crop-and-paste without context (overlap 0) leaves seams.
    box = torch.nn.Conv2d(1, 1, 5, padding=2, bias=False)
    torch.nn.init.constant_(box.weight, 1 / 25)
    image = torch.rand(1, 1, 30, 30)
    with torch.no_grad():
        reference = box(image)
        assert torch.allclose(tiled_forward(image, box, tile=8, overlap=4), reference, atol=1e-6)
        assert not torch.allclose(tiled_forward(image, box, tile=8, overlap=0), reference, atol=1e-3)


def test_tiled_forward_weights_form_a_partition_of_unity():
    from srdeblur.inference import tiled_forward

    image = torch.rand(2, 3, 23, 41)
    for tile, overlap in [(5, 3), (7, 20), (10, 0), (64, 8)]:
        result = tiled_forward(image, lambda piece: piece, tile=tile, overlap=overlap)
        assert torch.allclose(result, image, atol=1e-6), (tile, overlap)


def test_tiled_forward_reports_progress_and_retries_out_of_memory():
    from srdeblur.inference import tiled_forward

    calls = []

    def fussy(piece):
        if max(piece.shape[-2:]) > 40:
            raise RuntimeError("DefaultCPUAllocator: can't allocate memory")
        return piece * 2

    image = torch.rand(1, 3, 64, 64)
    result = tiled_forward(image, fussy, tile=64, overlap=8, on_tile=lambda done, total: calls.append((done, total)))
    assert torch.allclose(result, image * 2, atol=1e-6)
    assert calls == [(1, 1)]


def test_auto_tile_is_zero_for_small_images_and_bounded_for_large_ones():
    from srdeblur.inference import auto_tile

    small = torch.zeros(1, 3, 100, 100)
    assert auto_tile(small, bytes_per_output_pixel=1024, scale=4, budget=1 << 30) == 0
    large = torch.zeros(1, 3, 3000, 4000)
    tile = auto_tile(large, bytes_per_output_pixel=1024, scale=4, budget=1 << 30)
    assert 64 <= tile < 3000 and tile % 16 == 0
    assert tile * tile * 16 * 1024 <= 1 << 30


def test_upscale_into_a_canvas_equals_the_float_result_quantised(tmp_path):
    from srdeblur.io import Canvas, read_image, to_array, write_image
    from srdeblur.nets import LapSR, SRConfig

    torch.manual_seed(0)
    model = LapSR(SRConfig(channels=8, blocks=1)).eval()
    image = torch.rand(1, 3, 30, 22)
    reference = upscale(image, scale=2, method="net", model=model, tile=0)
    for bit_depth in (8, 16):
        canvas = Canvas(3, 60, 44, bit_depth=bit_depth)
        result = upscale(image, scale=2, method="net", model=model, tile=8, tile_overlap=16, into=canvas)
        assert result is canvas
        expected = to_array(reference, bit_depth=bit_depth)
        assert np.abs(canvas.samples.astype(int) - expected.astype(int)).max() <= 1
        write_image(tmp_path / f"out{bit_depth}.png", canvas)
        written = read_image(tmp_path / f"out{bit_depth}.png")
        assert written.meta.bit_depth == bit_depth
        assert np.array_equal(to_array(written.pixels, bit_depth=bit_depth), canvas.samples)


def test_tiled_bands_cover_every_row_once_in_order():
    from srdeblur.inference import tiled_bands

    image = torch.rand(1, 1, 45, 20)
    tops, total = [], 0
    for top, band in tiled_bands(image, lambda piece: piece, tile=10, overlap=6):
        assert top == total
        tops.append(top)
        total += band.shape[-2]
    assert total == 45 and len(tops) == 5


# ----------------------------------------------------------------------------- precision


def test_float32_precision_is_the_plain_float32_forward(make_image, small_model):
    from srdeblur.inference import NET_BORDER

    image = make_image(20, 18)
    with torch.no_grad():
        padded = torch.nn.functional.pad(image, (NET_BORDER,) * 4, mode="reflect")
        expected = small_model(padded, 2)[-1][..., 4 * NET_BORDER : 4 * NET_BORDER + 80, 4 * NET_BORDER : 4 * NET_BORDER + 72]
    got = upscale_with_net(image, small_model, scale=4, precision="float32")
    assert torch.allclose(got, expected, atol=1e-6)


@pytest.mark.skipif(not bfloat16_is_native(), reason="this CPU has no native bfloat16")
@pytest.mark.parametrize("task", ["upscale", "deblur"])
def test_auto_precision_stays_within_a_level_of_float32(make_image, small_model, small_deblur_model, task):
    image = make_image(40, 36)
    if task == "upscale":
        run = lambda precision: upscale(image, scale=2, model=small_model, tile=0, precision=precision)  # noqa: E731
    else:
        run = lambda precision: deblur(image, model=small_deblur_model, tile=0, precision=precision)  # noqa: E731
    auto, exact = run("auto"), run("float32")
    assert auto.dtype == exact.dtype == torch.float32
    assert not torch.equal(auto, exact)  # bfloat16 was really used
    assert (_eight_bit(auto) - _eight_bit(exact)).abs().max() <= 1


def test_unknown_precision_is_rejected_before_any_work(make_image, small_model):
    with pytest.raises(ValueError, match="precision must be one of"):
        upscale(make_image(8, 8), scale=2, model=small_model, precision="float16")
    with pytest.raises(ValueError, match="precision must be one of"):
        deblur(make_image(8, 8), model=small_model, precision="half")


def test_known_psf_network_warns_beyond_its_training_range_and_checks_noise(make_image, caplog):
    from srdeblur.nets import DeconvConfig, USRDeconv

    model = USRDeconv(DeconvConfig(channels=4, iterations=1)).eval()
    image = make_image(96, 96)
    with caplog.at_level("WARNING", logger="srdeblur.inference"):
        deblur(image, method="net", psf=torch.ones(77, 77) / 77**2, model=model, noise=0.01, tile=0)
    assert "larger than the 75 px" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="srdeblur.inference"):
        deblur(image, method="net", psf=torch.ones(9, 9) / 81, model=model, noise=0.01, tile=0)
    assert caplog.text == ""
    for bad in (-0.01, 0.6, float("nan")):
        with pytest.raises(ValueError, match="noise"):
            deblur(image, method="net", psf=torch.ones(3, 3) / 9, model=model, noise=bad)
    with pytest.raises(ValueError, match="larger than the image"):
        deblur(make_image(20, 20), method="net", psf=torch.ones(25, 25) / 625, model=model)
