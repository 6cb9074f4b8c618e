"""Tests for srdeblur.blind: the pieces against hand-computed values, and the whole estimate on a blurred photo."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage import data, transform

from srdeblur import blind, classical
from srdeblur.classical import _transfer_function
from srdeblur.kernels import random_motion_psf
from conftest import synthetic_photo, uniform_psf


def best_shifted_correlation(estimate: torch.Tensor, truth: torch.Tensor, reach: int = 3) -> float:
    """Largest normalised correlation of two same-size PSFs over whole-pixel shifts up to ``reach``."""
    return max(
        float((estimate * torch.roll(truth, (dy, dx), (0, 1))).sum() / (estimate.norm() * truth.norm()))
        for dy in range(-reach, reach + 1)
        for dx in range(-reach, reach + 1)
    )


def embedded(psf: torch.Tensor, size: int) -> torch.Tensor:
    """An odd ``(k, k)`` PSF centred in a ``(size, size)`` canvas."""
    canvas = psf.new_zeros(size, size)
    offset = (size - psf.shape[0]) // 2
    canvas[offset : offset + psf.shape[0], offset : offset + psf.shape[1]] = psf
    return canvas


@pytest.fixture(scope="module")
def camera() -> torch.Tensor:
    """(1, 1, 128, 128) natural grayscale photo in [0, 1], many strong edges."""
    array = transform.resize(data.camera(), (128, 128), anti_aliasing=True).astype(np.float32)
    return torch.from_numpy(array)[None, None]


def test_otf_to_psf_inverts_the_transfer_function():
    psf = torch.arange(1.0, 26.0, dtype=torch.float64).reshape(5, 5)
    spectrum = _transfer_function(psf, (24, 30))
    assert torch.allclose(blind._otf_to_psf(spectrum, (24, 30), 5), psf, atol=1e-12)


def test_pyramid_sizes_by_hand():
    # 35 * sqrt(1/2)^s for s = 5..0 is 6.2, 8.75, 12.4, 17.5, 24.7, 35, rounded up to odd integers.
    assert blind._pyramid_sizes(35) == [7, 9, 13, 19, 25, 35]
    assert blind._pyramid_sizes(5) == [5]


def test_solve_psf_recovers_the_kernel_from_noise_free_gradients():
    generator = torch.Generator().manual_seed(0)
    latent = torch.rand(64, 64, generator=generator, dtype=torch.float64)
    truth = random_motion_psf(9, generator=generator).double()
    blurred = classical._irfft2(classical._rfft2(latent) * _transfer_function(truth, (64, 64)), (64, 64))
    estimate = blind._solve_psf(
        blind._forward_differences(latent), blind._forward_differences(blurred), size=9, weight=1e-6
    )
    # Exact up to the clean-up, which zeroes values below 5 % of the peak and renormalises.
    kept = truth.masked_fill(truth < 0.05 * truth.max(), 0)
    assert torch.allclose(estimate, kept / kept.sum(), atol=2e-3)


def test_l0_deconvolve_undoes_a_known_blur_of_a_step():
    step = torch.zeros(32, 32, dtype=torch.float64)
    step[:, 16:] = 1.0
    psf = torch.tensor([[0.25, 0.5, 0.25]], dtype=torch.float64).expand(3, 3) / 3
    blurred = classical._irfft2(classical._rfft2(step) * _transfer_function(psf, (32, 32)), (32, 32))
    restored = blind.l0_deconvolve(blurred, psf, smoothness=1e-3)
    assert torch.allclose(restored, step, atol=0.02)
    # With a delta PSF a flat-or-step image is already optimal: nothing moves.
    delta = torch.zeros(3, 3, dtype=torch.float64)
    delta[1, 1] = 1
    assert torch.allclose(blind.l0_deconvolve(step, delta, smoothness=1e-3), step, atol=1e-6)


def test_salient_gradients_keep_enough_edges_in_every_direction():
    latent = torch.rand(48, 48, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    horizontal, vertical, threshold = blind._salient_gradients(latent, 7, None)
    kept = (horizontal != 0) | (vertical != 0)
    orientation = torch.atan2(vertical, horizontal).remainder(torch.pi)
    bins = (orientation / (torch.pi / 4)).long().clamp(max=3)
    assert all(int((kept & (bins == index)).sum()) >= 14 for index in range(4))
    assert 0 < threshold and int(kept.sum()) < 48 * 48 / 2
    # A given threshold is used as is.
    _, _, same = blind._salient_gradients(latent, 7, 0.5)
    assert same == 0.5


def test_drop_small_pieces_and_centring_by_hand():
    psf = torch.zeros(9, 9, dtype=torch.float64)
    psf[1, 1:4] = 0.3  # 95 % of the mass, one piece, centroid (1, 2)
    psf[7, 7] = 0.05  # an isolated speck: 5 % of the mass
    cleaned = blind._drop_small_pieces(psf / psf.sum())
    assert cleaned[7, 7] == 0 and torch.allclose(cleaned[1, 1:4], torch.full((3,), 1 / 3, dtype=torch.float64))
    centred = blind._centred(cleaned)
    assert torch.allclose(centred[4, 3:6], torch.full((3,), 1 / 3, dtype=torch.float64))


def test_psf_spread_by_hand():
    delta = torch.zeros(5, 5)
    delta[2, 2] = 1
    assert blind.psf_spread(delta) == pytest.approx(1)
    assert blind.psf_spread(torch.full((4, 5), 1 / 20)) == pytest.approx(20)
    two = torch.tensor([[0.5, 0.5, 0.0]])
    assert blind.psf_spread(two) == pytest.approx(2)


def test_edge_slope_ratio_and_credibility_by_hand():
    step = torch.zeros(1, 3, 48, 64)
    step[..., 32:] = 0.8
    box = torch.zeros(5, 5)
    box[2, :] = 0.2  # horizontal motion over 5 px: its largest column sum is 0.2, its largest row sum 1
    blurred = classical.blur(step, box, padding="replicate")  # the photo's border adds no edge
    # Blurred by the box, the 0.8 step climbs 0.16 per pixel: 0.8 of the steepest slope the box allows.
    assert blind.edge_slope_ratio(blurred, box) == pytest.approx(0.8, abs=1e-5)
    # The sharp step climbs 0.8 in one pixel, 4x steeper than anything blurred by the box can be.
    assert blind.edge_slope_ratio(step, box) == pytest.approx(4.0, abs=1e-5)
    assert blind.is_credible(blurred, box) and not blind.is_credible(step, box)
    wide = torch.full((25, 25), 1 / 625)  # spread 625 px: not credible whatever the photo
    assert not blind.is_credible(classical.blur(step, wide), wide)


def test_gate_thresholds_sit_at_180_px_and_a_ratio_of_2_5():
    # Spread: a PSF uniform over n pixels spreads over exactly n; a flat photo has no edge to object to.
    flat = torch.full((1, 1, 64, 64), 0.5)

    assert blind.psf_spread(uniform_psf(179)) == pytest.approx(179)
    assert blind.is_credible(flat, uniform_psf(179)) and not blind.is_credible(flat, uniform_psf(181))
    # Slope: a sharp step of height h against a horizontal 5-px box (largest column sum 0.2) has ratio 5 h.
    box = torch.zeros(5, 5)
    box[2, :] = 0.2

    def step(height: float) -> torch.Tensor:
        image = torch.full((1, 1, 48, 64), 0.1)
        image[..., 32:] += height
        return image

    assert blind.edge_slope_ratio(step(0.48), box) == pytest.approx(2.4, abs=1e-4)
    assert blind.is_credible(step(0.48), box) and not blind.is_credible(step(0.52), box)


@pytest.fixture(scope="module")
def small_deblur_network():
    from srdeblur.nets import DeblurConfig, SRNDeblur

    torch.manual_seed(0)
    return SRNDeblur(DeblurConfig(channels=4, blocks=1)).eval()


def test_auto_gate_end_to_end_on_a_sharp_and_a_blurredsynthetic_photo(small_deblur_network, monkeypatch):
    """The real gate, default options: the estimator finds a blur in a sharp photo (measured: spread 43 px, but
    edges 3.1x steeper than it allows), and auto runs the network there; on the same photo blurred by a camera
    shake (estimate spread 60 px, ratio 0.78) it deconvolves, which gains over 2 dB."""
    from srdeblur import inference
    from srdeblur.inference import deblur

    # The credibility gate alone, as with weights that have no usrdeconv (auto then deconvolves with
    # Richardson-Lucy; the learned mix and its re-blur check are tested in test_deblur_decisions).
    shipped = inference._shipped_if_present
    monkeypatch.setattr(inference, "_shipped_if_present", lambda name: None if name == "usrdeconv" else shipped(name))

    def psnr(image: torch.Tensor, truth: torch.Tensor) -> float:
        return float(-10 * torch.log10((image - truth)[..., 12:-12, 12:-12].square().mean()))

    sharp = synthetic_photo(128, 128, edge=0.5, cell=(9, 13))
    shake = random_motion_psf(13, generator=torch.Generator().manual_seed(0))
    noise = 0.01 * torch.randn(sharp.shape, generator=torch.Generator().manual_seed(2))
    blurred = (classical.blur(sharp, shake) + noise).clamp(0, 1)

    on_sharp, on_blurred = blind.estimate_psf(sharp)[0], blind.estimate_psf(blurred)[0]
    assert blind.psf_spread(on_sharp) < blind.CREDIBLE_SPREAD and blind.edge_slope_ratio(sharp, on_sharp) > 2.8
    assert blind.psf_spread(on_blurred) < 0.5 * blind.CREDIBLE_SPREAD and blind.edge_slope_ratio(blurred, on_blurred) < 1

    network = deblur(sharp, method="net", model=small_deblur_network)
    estimated = deblur(sharp, method="blind")
    assert psnr(estimated, sharp) < 15  # deconvolving a sharp photo with the wrong PSF wrecks it ...
    # The estimate's credibility gate alone (blur_gate=False: not the blur classifier that comes before it).
    torch.testing.assert_close(deblur(sharp, method="auto", model=small_deblur_network, blur_gate=False), network,
                               rtol=0, atol=0)
    restored = deblur(blurred, method="auto", model=small_deblur_network, blur_gate=False)  # ... which it prevents
    torch.testing.assert_close(restored, deblur(blurred, method="blind"), rtol=0, atol=0)
    assert psnr(restored, sharp) > psnr(blurred, sharp) + 2


def test_clean_of_an_empty_estimate_is_the_identity():
    cleaned = blind._clean(-torch.ones(5, 5, dtype=torch.float64))
    assert cleaned[2, 2] == 1 and cleaned.sum() == 1


@pytest.mark.parametrize("seed", [0, 1])
def test_estimate_psf_finds_a_camera_shake_and_the_deconvolution_gains(camera, seed):
    truth = random_motion_psf(13, generator=torch.Generator().manual_seed(seed))
    noise = 0.005 * torch.randn(camera.shape, generator=torch.Generator().manual_seed(2))
    blurred = (classical.blur(camera, truth) + noise).clamp(0, 1)
    estimate = blind.estimate_psf(blurred, size=17)
    assert estimate.shape == (1, 17, 17) and estimate.dtype == torch.float32
    assert float(estimate.sum()) == pytest.approx(1, abs=1e-5) and float(estimate.min()) >= 0
    assert best_shifted_correlation(estimate[0], embedded(truth, 17)) > 0.85

    def psnr(image: torch.Tensor) -> float:  # away from the borders, which no method can restore
        return float(-10 * torch.log10((image - camera)[..., 12:-12, 12:-12].square().mean()))

    restored = classical.richardson_lucy(blurred, estimate[0], iterations=30, tv_weight=0.002)
    assert psnr(restored) > psnr(blurred) + 1.5


def test_estimate_psf_per_image_of_a_batch_and_of_colour(camera):
    truth = random_motion_psf(9, generator=torch.Generator().manual_seed(3))
    pair = torch.cat([classical.blur(camera, truth), camera]).expand(2, 3, 128, 128)
    estimates = blind.estimate_psf(pair, size=13)
    assert estimates.shape == (2, 13, 13)
    # The sharp photo's estimate is far more compact than the blurred one's.
    assert int((estimates[1] > 0).sum()) < int((estimates[0] > 0).sum())
    assert torch.equal(estimates[0], blind.estimate_psf(pair[:1], size=13)[0])


@pytest.mark.parametrize(
    "options, message",
    [
        ({"size": 16}, "odd"),
        ({"size": 3}, "odd"),
        ({"smoothness": 0.0}, "> 0"),
        ({"kernel_weight": -1.0}, "> 0"),
        ({"iterations": 0}, "iterations"),
        ({"size": 35, "max_side": 60}, "max_side"),
        ({"size": 41}, "at least 82"),
        ({"region": "middle"}, "region"),
    ],
)
def test_estimate_psf_rejects_bad_options(camera, options, message):
    with pytest.raises(ValueError, match=message):
        blind.estimate_psf(camera[..., :80, :80], **options)


def test_edge_rich_crop_finds_the_textured_window():
    image = torch.full((1, 3, 100, 300), 0.5)
    image[..., 20:80, 200:260] = torch.rand(1, 3, 60, 60, generator=torch.Generator().manual_seed(1))
    top, left = blind.edge_rich_crop(image, side=64, stride=4)
    assert top % 4 == 0 and left % 4 == 0
    # the 64-px window covers the 60-px texture whole: it starts at most 4 px before it
    assert 16 <= top <= 20 and 196 <= left <= 200
    assert blind.edge_rich_crop(image[..., :64, :64], side=64) == (0, 0)  # fits: nothing to choose
    # a side longer than one dimension: the window spans that dimension, and moves along the other
    assert blind.edge_rich_crop(image, side=128)[0] == 0 and blind.edge_rich_crop(image, side=128)[1] > 100


def test_estimate_psf_from_the_edge_rich_region_is_the_estimate_of_that_crop(camera):
    wide = torch.cat([torch.full_like(camera[..., :96, :96], 0.5), camera[..., :96, :96]], dim=-1)  # (96, 192)
    top, left = blind.edge_rich_crop(wide, side=96)
    assert left >= 80
    estimate = blind.estimate_psf(wide, size=13, max_side=96, region="edges")[0]
    torch.testing.assert_close(estimate, blind.estimate_psf(wide[..., top : top + 96, left : left + 96], size=13,
                                                             max_side=96)[0])


@pytest.mark.parametrize("bad", [torch.zeros(1, 2, 64, 64), torch.zeros(64, 64), torch.zeros(1, 1, 64, 64, dtype=torch.int64)])
def test_estimate_psf_rejects_bad_images(bad):
    with pytest.raises((ValueError, TypeError)):
        blind.estimate_psf(bad)


# ------------------------------------------------------------------------------------------------ reblur_ratio


def _camera_photo() -> torch.Tensor:
    return torch.from_numpy(data.camera()[128:384, 128:384].astype(np.float32) / 255)[None, None]


def test_reblur_ratio_is_the_residual_over_the_noise():
    sharp = _camera_photo()
    line = torch.zeros(9, 9)
    line[4, :] = 1 / 9
    generator = torch.Generator().manual_seed(3)
    noise = 0.02 * torch.randn(sharp.shape, generator=generator)
    blurred = classical.blur(sharp, line) + noise
    # The true PSF and the true image: the residual is the noise itself (its std over the interior).
    expected = float(noise[..., 9:-9, 9:-9].std()) / 0.02
    assert blind.reblur_ratio(blurred, line, sharp, 0.02) == pytest.approx(expected, rel=1e-5)
    assert 0.95 < expected < 1.05
    # The same line turned by 90 degrees cannot explain the blur: the photo's edges stay in the residual.
    assert blind.reblur_ratio(blurred, line.T.contiguous(), sharp, 0.02) > 3
    # Noise-free: the floor stands in for sigma.
    clean = classical.blur(sharp, line)
    residual = (clean - classical.blur(sharp, line.T.contiguous()))[..., 9:-9, 9:-9]
    expected_clean = float(residual.std()) / blind.RESIDUAL_FLOOR
    assert blind.reblur_ratio(clean, line.T.contiguous(), sharp, 0.0) == pytest.approx(expected_clean, rel=1e-5)
