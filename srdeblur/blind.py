"""Blind estimation of a uniform blur kernel (PSF) from one blurred image: L0-sparse gradients, coarse to fine.

The method of Xu, Zheng & Jia, "Unnatural L0 sparse representation for natural image deblurring" (CVPR 2013),
in the form of Pan et al.'s public code ("Deblurring text images via L0-regularized intensity and gradient
prior", CVPR 2014, gradient term only), with Cho & Lee's salient-edge selection (2009):

1. An image pyramid in steps of sqrt(2), from the scale where the kernel is 5 px wide to full resolution;
   at the coarsest scale the kernel starts as a 2-px line, at every other scale it is the previous scale's
   estimate, resized.
2. At each scale, ``iterations`` times:

   * latent image ``S = argmin ||k * S - y||^2 + smoothness ||grad S||_0`` by half-quadratic splitting
     (the FFT solves a quadratic problem, pixels with small gradients are set flat, the coupling weight
     doubles from ``2 smoothness`` to 1e5). The L0 term keeps only step edges: a piecewise-flat image whose
     edges are sharp even where the true image's are not, which is what identifies the kernel;
   * salient edges: only the gradients of ``S`` above a threshold count, the threshold chosen so that each
     of 4 orientation bins keeps at least twice the kernel width of pixels (then lowered by 10 % per
     iteration, as is ``smoothness``);
   * kernel ``k = argmin ||grad S * k - grad y||^2 + kernel_weight ||k||^2`` on the kernel's support, by
     20 conjugate-gradient steps on the normal equations (FFTs); values below 5 % of the peak and
     8-connected pieces carrying less than 10 % of the mass are removed, and the rest normalised.

   Each scale ends by moving the kernel's centroid to its centre (a blind estimate is only defined up to
   a translation, which would otherwise drift between scales).

The image is a centred crop of at most ``max_side`` pixels per side (kernel estimation needs edges, not
megapixels; a 640 x 640 crop costs about 5 s on one core with the default 25-px PSF), converted to gray
(mean of channels), and extended by reflection, tapered into a blurred copy of itself, so that the FFTs'
periodic model holds.
The estimate assumes one blur for the whole image (camera shake with little rotation, defocus, motion of
the whole scene).

Measured with ``srdeblur eval --dataset sun2013|levin --method input,blind,auto`` (the estimate, then
Richardson-Lucy with 30 iterations and TV 0.002; Y-PSNR at Levin et al.'s alignment): see the README.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from srdeblur import classical
from srdeblur.classical import _laplacian_spectrum, _transfer_function
from srdeblur.kernels import gaussian_psf

__all__ = [
    "estimate_psf", "l0_deconvolve", "psf_spread", "edge_slope_ratio", "is_credible", "why_not_credible", "reblur_ratio",
    "DEFAULT_PSF_SIZE", "CREDIBLE_SPREAD", "CREDIBLE_SLOPE_RATIO",
]

#: Side of the estimated PSF in pixels (odd). Levin et al.'s measured camera shakes extend 9-22 px. A smaller
#: support is better conditioned: on the calibration crops below (shakes up to 31 px) Richardson-Lucy with the
#: estimate scored 25.75 / 25.29 / 25.23 dB with 25 / 31 / 35 px (input 24.30).
DEFAULT_PSF_SIZE = 25

#: Largest :func:`psf_spread` (pixels) of an estimate worth deconvolving with; wider estimates are mostly failures
#: (smeared blobs from texture or noise). Chosen on training images, never the benchmarks
#: (``benchmarks/calibrate_blind_gate.py``): 39 crops of the 291 (320 x 320, 60 % random shakes up to 31 px,
#: 15 % defocus, 15 % Gaussian, 1 % noise) scored 24.30 dB blurred, 25.05 restored by the network, 25.75 by
#: Richardson-Lucy with the 25-px estimate, and 25.78 by their mix with this gate; every threshold from 165 to
#: 270 px gave 25.78-25.92 dB (35-px estimates: 25.63-25.69 from 165 to 200 px), none beyond 330 px helped.
CREDIBLE_SPREAD = 180.0

#: Largest :func:`edge_slope_ratio` of a credible estimate. Noise-free, the ratio is at most 1 for any photo
#: blurred by the PSF; with 1 % noise and 8-bit steps the true PSFs measured up to 1.54 (thin motion lines on
#: the sample photos) and the estimates of blurred photos up to 1.71, while estimates of sharp photos, which
#: the estimator can mistake for texture blurred by a blob, measured 4.7 and 5.3.
CREDIBLE_SLOPE_RATIO = 2.5

# Pyramid: each scale is this factor of the next finer one; the coarsest has a kernel about this wide.
_SCALE_STEP = math.sqrt(0.5)
_COARSEST_PSF = 5
# Half-quadratic splitting: the coupling weight starts at 2 * smoothness, is multiplied by this factor
# per step, and stops at _BETA_MAX (where the split variables equal the gradients in practice).
_BETA_FACTOR = 2.0
_BETA_MAX = 1e5
_SMOOTHNESS_FLOOR = 1e-4
# Per-iteration decay of the L0 weight and of the salient-edge threshold: more detail as the kernel improves.
_DECAY = 1.1
_CG_STEPS = 20
_CG_TOLERANCE = 1e-5  # on the residual's norm, as in Pan et al.'s code
_RELATIVE_FLOOR = 0.05  # PSF values below this fraction of the peak are noise
_MIN_PIECE_MASS = 0.1  # 8-connected PSF pieces with less mass are noise


def psf_spread(psf: torch.Tensor) -> float:
    """Effective support of a PSF in pixels: ``exp(entropy)`` of its values as a distribution.

    A delta has spread 1, a uniform ``n``-pixel PSF spread ``n``. Levin et al.'s 8 camera shakes spread 27-49
    px; the default 25-px estimates of them spread 42-156 px (every third of their 32 photos), and the
    estimates from the blurred, textured ``chelsea`` sample, all wrong, 240-250 px. ``psf`` is ``(k, k)``,
    non-negative, summing to 1.
    """
    positive = psf[psf > 0].double()
    return float(torch.exp(-(positive * positive.log()).sum()))


def edge_slope_ratio(image: torch.Tensor, psf: torch.Tensor) -> float:
    """How much steeper the photo's steepest edges are than any edge blurred by ``psf`` can be.

    A step of height ``h`` blurred by a PSF has a slope (forward difference across the step) of at most ``h``
    times the PSF's largest column sum (for horizontal differences) or row sum (vertical ones), and steps in
    [0, 1] images are at most 1 high. The ratio is the 99.9th percentile of the photo's absolute horizontal
    (vertical) differences over that bound, the larger of the two: above 1 (plus noise), the photo has
    edges the PSF could not have left, so the PSF is wrong — typically a sharp photo.

    ``image`` is ``(1, C, H, W)`` in [0, 1] (gray: the mean of the channels); ``psf`` ``(k, k)``, sum 1.
    """
    gray = image.mean(dim=1)[0].float()
    ratios = []
    for differences, line_sums in (
        (gray[:, 1:] - gray[:, :-1], psf.sum(0)),
        (gray[1:, :] - gray[:-1, :], psf.sum(1)),
    ):
        values = differences.abs().flatten()
        steep = values.kthvalue(max(1, math.ceil(0.999 * values.numel()))).values
        ratios.append(float(steep) / float(line_sums.max()))
    return max(ratios)


def is_credible(image: torch.Tensor, psf: torch.Tensor) -> bool:
    """Whether ``psf``, estimated from ``image`` ``(1, C, H, W)``, is worth deconvolving with: its spread is at
    most :data:`CREDIBLE_SPREAD` px and the photo's edges are no steeper than it allows
    (:func:`edge_slope_ratio` at most :data:`CREDIBLE_SLOPE_RATIO`); see :func:`why_not_credible`."""
    return not why_not_credible(psf_spread(psf), edge_slope_ratio(image, psf))


#: Floor of the noise level :func:`reblur_ratio` divides by: 2 8-bit steps. A real blurred photo is not
#: exactly a convolution (sensor response, demosaicing, 8-bit rounding, JPEG): with the right PSF its residual
#: stays 0.003-0.006 above a camera noise of 0.002 (measured on Levin et al.'s captured photos), which must not
#: count as a wrong PSF.
RESIDUAL_FLOOR = 2 / 255


def reblur_ratio(blurred: torch.Tensor, psf: torch.Tensor, restored: torch.Tensor, sigma: float) -> float:
    """How badly ``psf`` explains ``blurred``: the residual ``blurred - psf * restored`` over the noise.

    ``restored`` is a deconvolution of ``blurred`` (``(1, C, H, W)``, both in [0, 1]) with ``psf`` ``(k, k)``
    by a method that fits the data up to the noise, such as :class:`srdeblur.nets.USRDeconv`. Where the PSF
    is right the residual is the noise and the ratio about 1 or below (the deconvolution fits some of the
    noise too). A wrong PSF cannot be fitted by a natural image: the residual keeps the photo's edges and the
    ratio climbs to 2-30. Returns the standard deviation of the residual's channel mean, ``k`` px from the
    borders (where the reflected padding does not hold), over ``sigma`` floored at :data:`RESIDUAL_FLOOR`.
    """
    margin = max(psf.shape[-2:])
    residual = (blurred - classical.blur(restored, psf)).mean(dim=1)
    interior = residual[..., margin:-margin, margin:-margin] if min(residual.shape[-2:]) > 4 * margin else residual
    return float(interior.float().std()) / max(float(sigma), RESIDUAL_FLOOR)


def why_not_credible(spread: float, slope_ratio: float) -> list[str]:
    """The gate's objections to an estimate, one short line each; empty when it is credible.

    ``spread`` is the estimate's :func:`psf_spread` (px), ``slope_ratio`` the photo's :func:`edge_slope_ratio`
    with it. At most :data:`CREDIBLE_SPREAD` and :data:`CREDIBLE_SLOPE_RATIO` pass (NaN does not), e.g.
    ``why_not_credible(212, 3.1) == ["spread 212 px > 180", "edges 3.1x steeper than the PSF allows > 2.5"]``.
    """
    reasons = []
    if not spread <= CREDIBLE_SPREAD:
        reasons.append(f"spread {_above(spread, CREDIBLE_SPREAD, 0)} px > {CREDIBLE_SPREAD:g}")
    if not slope_ratio <= CREDIBLE_SLOPE_RATIO:
        reasons.append(f"edges {_above(slope_ratio, CREDIBLE_SLOPE_RATIO, 1)}x steeper than the PSF allows"
                       f" > {CREDIBLE_SLOPE_RATIO:g}")
    return reasons


def _above(value: float, limit: float, digits: int) -> str:
    """``value`` with ``digits`` decimals, or as many more as it takes to print it above ``limit`` (at most 6)."""
    text = f"{value:.{digits}f}"
    while digits < 6 and math.isfinite(value) and float(text) <= limit:
        digits += 1
        text = f"{value:.{digits}f}"
    return text


def _check_image(image: torch.Tensor) -> None:
    classical._check_image(image)
    if image.shape[1] not in (1, 3):
        raise ValueError(f"image must have shape (B, 1 or 3, H, W), got {tuple(image.shape)}")


def _otf_to_psf(spectrum: torch.Tensor, shape: tuple[int, int], size: int) -> torch.Tensor:
    """The ``(size, size)`` window around ``(0, 0)`` of a spectrum's spatial response, centred (MATLAB's otf2psf;
    the inverse of :func:`srdeblur.classical._transfer_function` on the PSF's support)."""
    spatial = torch.fft.irfft2(spectrum, s=shape)
    return torch.roll(spatial, (size // 2, size // 2), (0, 1))[:size, :size]


def _forward_differences(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Periodic ``(d/dx, d/dy)`` of a ``(H, W)`` plane: ``image[r, c + 1] - image[r, c]`` and the like."""
    return torch.roll(image, -1, 1) - image, torch.roll(image, -1, 0) - image


def l0_deconvolve(blurred: torch.Tensor, psf: torch.Tensor, *, smoothness: float) -> torch.Tensor:
    """``argmin_S ||psf * S - blurred||^2 + smoothness * #{pixels with grad S != 0}``, periodic boundaries.

    Half-quadratic splitting (Xu et al. 2011): alternately set the gradients whose squared magnitude is
    below ``smoothness / beta`` to zero, and solve the quadratic problem for ``S`` in the Fourier domain,
    while ``beta`` doubles from ``2 * smoothness`` to 1e5.

    Parameters
    ----------
    blurred : torch.Tensor
        ``(H, W)`` float64 plane, values in [0, 1], periodic-friendly (see :func:`estimate_psf`).
    psf : torch.Tensor
        ``(k, k)`` float64 PSF summing to 1, centre at ``(k // 2, k // 2)``, ``k`` odd.
    smoothness : float
        L0 weight ``> 0``; larger values flatten more (1e-3 to 1e-2 for images in [0, 1]).

    Returns
    -------
    torch.Tensor
        ``(H, W)`` float64 piecewise-flat latent image.
    """
    shape = tuple(blurred.shape)
    transfer = _transfer_function(psf, shape)
    # |DFT of d/dx|^2 + |DFT of d/dy|^2 = 4 - 2 cos(2 pi u / H) - 2 cos(2 pi v / W): the Laplacian's spectrum.
    gradient_energy = _laplacian_spectrum(shape, dtype=blurred.dtype)
    data_term = transfer.conj() * torch.fft.rfft2(blurred)
    blur_energy = transfer.abs().square()
    latent = blurred
    beta = 2 * smoothness
    while beta < _BETA_MAX:
        horizontal, vertical = _forward_differences(latent)
        flat = horizontal.square() + vertical.square() < smoothness / beta
        horizontal[flat] = 0
        vertical[flat] = 0
        # The adjoint of the forward differences (a negative divergence), so the solve below is exact.
        divergence = (torch.roll(horizontal, 1, 1) - horizontal) + (torch.roll(vertical, 1, 0) - vertical)
        spectrum = (data_term + beta * torch.fft.rfft2(divergence)) / (blur_energy + beta * gradient_energy)
        latent = torch.fft.irfft2(spectrum, s=shape)
        beta *= _BETA_FACTOR
    return latent


def _salient_gradients(
    latent: torch.Tensor, psf_size: int, threshold: float | None
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """The gradients of ``latent`` whose squared magnitude reaches ``threshold``, the others zeroed.

    Without a threshold, it is chosen (Cho & Lee 2009, Pan et al. 2014) as the largest value that keeps at
    least ``2 * psf_size`` pixels in each of 4 gradient-orientation bins (0-45, 45-90, 90-135, 135-180
    degrees), so that every direction of the kernel is constrained. Returns ``(d/dx, d/dy, threshold)``.
    """
    horizontal, vertical = _forward_differences(latent)
    magnitude = horizontal.square() + vertical.square()
    if threshold is None:
        orientation = torch.atan2(vertical, horizontal).remainder(math.pi)
        bins = (orientation / (math.pi / 4)).long().clamp(max=3)
        needed = 2 * psf_size
        candidates = [
            float(values.kthvalue(values.numel() - needed + 1).values)
            for values in (magnitude[bins == index] for index in range(4))
            if values.numel() >= needed
        ]
        threshold = min(candidates, default=0.0)
    weak = magnitude < threshold
    return horizontal.masked_fill(weak, 0), vertical.masked_fill(weak, 0), threshold


def _solve_psf(
    latent_gradients: tuple[torch.Tensor, torch.Tensor],
    blurred_gradients: tuple[torch.Tensor, torch.Tensor],
    *,
    size: int,
    weight: float,
) -> torch.Tensor:
    """``argmin_k sum_d ||d(latent) * k - d(blurred)||^2 + weight ||k||^2`` over ``(size, size)`` kernels.

    Conjugate gradients on the normal equations, whose operator is applied with FFTs (periodic planes).
    The result is cleaned: negatives and values below 5 % of the peak are zeroed, then it is normalised.
    """
    shape = tuple(latent_gradients[0].shape)
    latent_spectra = [torch.fft.rfft2(gradient) for gradient in latent_gradients]
    correlation = sum(
        spectrum.conj() * torch.fft.rfft2(gradient) for spectrum, gradient in zip(latent_spectra, blurred_gradients)
    )
    energy = sum(spectrum.abs().square() for spectrum in latent_spectra)

    def normal_operator(psf: torch.Tensor) -> torch.Tensor:
        return _otf_to_psf(energy * _transfer_function(psf, shape), shape, size) + weight * psf

    right_side = _otf_to_psf(correlation, shape, size)
    psf = right_side.new_full((size, size), 1.0 / size**2)
    residual = right_side - normal_operator(psf)
    direction = residual.clone()
    residual_norm = residual.square().sum()
    for _ in range(_CG_STEPS):
        product = normal_operator(direction)
        step = residual_norm / (direction * product).sum()
        psf = psf + step * direction
        residual = residual - step * product
        new_norm = residual.square().sum()
        if new_norm < _CG_TOLERANCE**2:
            break
        direction = residual + (new_norm / residual_norm) * direction
        residual_norm = new_norm
    return _clean(psf)


def _clean(psf: torch.Tensor) -> torch.Tensor:
    """Zero the negatives and the values below 5 % of the peak, normalise to sum 1 (a delta if nothing is left)."""
    return _normalised(psf.masked_fill(psf < _RELATIVE_FLOOR * psf.max(), 0))


def _normalised(psf: torch.Tensor) -> torch.Tensor:
    """Negatives zeroed, then divided by the sum (a centred delta if nothing positive is left)."""
    psf = psf.clamp(min=0)
    total = psf.sum()
    if not total > 0:
        psf = torch.zeros_like(psf)
        psf[psf.shape[0] // 2, psf.shape[1] // 2] = 1
        return psf
    return psf / total


def _drop_small_pieces(psf: torch.Tensor) -> torch.Tensor:
    """Remove the 8-connected pieces of the PSF's support carrying less than 10 % of its mass; renormalise."""
    from scipy import ndimage  # here, not at the top: it costs 0.2 s of every command's start-up

    labels, count = ndimage.label((psf > 0).numpy(), structure=[[1, 1, 1]] * 3)
    if count <= 1:
        return psf
    labels = torch.from_numpy(labels)
    masses = torch.zeros(count + 1, dtype=psf.dtype).index_add_(0, labels.flatten(), psf.flatten())
    keep = masses >= _MIN_PIECE_MASS * psf.sum()
    keep[0] = False
    return _clean(psf * keep[labels])


def _centred(psf: torch.Tensor) -> torch.Tensor:
    """The PSF shifted by whole pixels so that its centroid is at the centre pixel (content shifted off the
    edge wraps around, which does not happen for a kernel well inside its support)."""
    size = psf.shape[0]
    positions = torch.arange(size, dtype=psf.dtype)
    row = int(round(float((psf.sum(1) * positions).sum())))
    column = int(round(float((psf.sum(0) * positions).sum())))
    return torch.roll(psf, (size // 2 - row, size // 2 - column), (0, 1))


def _resized(plane: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear, antialiased resize of a ``(H, W)`` plane."""
    return F.interpolate(plane[None, None], size=size, mode="bilinear", align_corners=False, antialias=True)[0, 0]


def _pyramid_sizes(psf_size: int) -> list[int]:
    """Odd PSF sides from coarsest to finest: ``psf_size`` times powers of sqrt(1/2), down to about 5 px."""
    count = max(math.floor(math.log(_COARSEST_PSF / psf_size) / math.log(_SCALE_STEP)), 0)
    sides = [math.ceil(psf_size * _SCALE_STEP**level) for level in range(count + 1)]
    return [side + 1 - side % 2 for side in reversed(sides)]


def _periodic_plane(gray: torch.Tensor, psf_size: int) -> torch.Tensor:
    """``(H, W)`` float64 plane extended by ``psf_size`` px of reflection, tapered into a blurred copy of
    itself (:func:`srdeblur.classical.pad_for_deconvolution`), so that the periodic blur model holds."""
    smoothing = gaussian_psf(psf_size / 6 + 0.5)
    padded, _ = classical.pad_for_deconvolution(gray[None, None].float(), smoothing, pad=psf_size)
    return padded[0, 0].double()


def _estimate_one(
    gray: torch.Tensor, *, size: int, smoothness: float, kernel_weight: float, iterations: int
) -> torch.Tensor:
    """Coarse-to-fine estimate for one ``(H, W)`` float64 gray plane; ``(size, size)`` float64 PSF."""
    height, width = gray.shape
    psf = None
    for side in _pyramid_sizes(size):
        if psf is None:
            psf = gray.new_zeros(side, side)
            psf[side // 2, side // 2 - 1 : side // 2 + 1] = 0.5
        else:
            psf = _normalised(_resized(psf, (side, side)))
        factor = side / size
        shrunk = (max(8, round(height * factor)), max(8, round(width * factor)))
        plane = gray if side == size else _resized(gray, shrunk)
        blurred = _periodic_plane(plane, side)
        blurred_gradients = _forward_differences(blurred)
        weight, threshold = smoothness, None
        for _ in range(iterations):
            latent = l0_deconvolve(blurred, psf, smoothness=weight)
            *latent_gradients, threshold = _salient_gradients(latent, side, threshold)
            psf = _drop_small_pieces(_solve_psf(latent_gradients, blurred_gradients, size=side, weight=kernel_weight))
            weight = max(weight / _DECAY, _SMOOTHNESS_FLOOR)
            threshold /= _DECAY
        psf = _centred(psf)
    return _clean(psf)


def estimate_psf(
    image: torch.Tensor,
    *,
    size: int = DEFAULT_PSF_SIZE,
    smoothness: float = 4e-3,
    kernel_weight: float = 2.0,
    iterations: int = 5,
    max_side: int = 640,
    region: str = "centre",
) -> torch.Tensor:
    """Estimate the blur kernel of each image of a batch, blind (see the module docstring for the method).

    Parameters
    ----------
    image : torch.Tensor
        ``(B, C, H, W)`` floating tensor in [0, 1], C = 1 or 3; each image is blurred by one unknown PSF.
    size : int
        Side of the estimated PSF in pixels, odd, 5 to ``min(H, W) // 2``; the blur must fit in it.
    smoothness : float
        Initial weight of the L0 gradient prior of the latent image (> 0), lowered by 10 % per iteration.
    kernel_weight : float
        Tikhonov weight on the PSF (> 0); larger values give smoother, more spread-out kernels.
    iterations : int
        Latent-image / kernel alternations per pyramid scale (>= 1).
    max_side : int
        Estimate from a crop of at most this many pixels per side (>= ``2 * size``).
    region : {"centre", "edges"}
        Where the crop is: centred, or the window holding the most strong edges (:func:`edge_rich_crop`), a
        second opinion where the centre is smooth (sky, sand, water) and its estimate poor.

    Returns
    -------
    torch.Tensor
        ``(B, size, size)`` float32 PSFs, each non-negative, summing to 1, centroid at ``(size // 2,
        size // 2)``, in the convolution orientation of :func:`srdeblur.classical.blur`.

    Raises
    ------
    ValueError
        Bad shapes or options, or an image smaller than twice the PSF.
    """
    _check_image(image)
    if isinstance(size, bool) or not isinstance(size, int) or size < _COARSEST_PSF or size % 2 == 0:
        raise ValueError(f"size must be an odd integer >= {_COARSEST_PSF}, got {size!r}")
    if not (smoothness > 0 and kernel_weight > 0):
        raise ValueError(f"smoothness and kernel_weight must be > 0, got {smoothness} and {kernel_weight}")
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
        raise ValueError(f"iterations must be an integer >= 1, got {iterations!r}")
    if max_side < 2 * size:
        raise ValueError(f"max_side must be at least twice the PSF size ({2 * size}), got {max_side}")
    height, width = image.shape[-2:]
    if min(height, width) < 2 * size:
        raise ValueError(f"a {size}-px PSF needs an image of at least {2 * size} px per side, got {height}x{width}")
    if region not in ("centre", "edges"):
        raise ValueError(f"region must be 'centre' or 'edges', got {region!r}")
    options = {"size": size, "smoothness": smoothness, "kernel_weight": kernel_weight, "iterations": iterations}
    estimates = []
    for one in image:
        if region == "edges":
            top, left = edge_rich_crop(one[None], side=max_side)
        else:
            top, left = max(0, (height - max_side) // 2), max(0, (width - max_side) // 2)
        gray = one[:, top : top + max_side, left : left + max_side].mean(dim=0).double()
        estimates.append(_estimate_one(gray, **options))
    return torch.stack(estimates).float()


#: The share of a photo's pixels :func:`edge_rich_crop` counts as strong edges (the largest gradients).
EDGE_SHARE = 0.05


def edge_rich_crop(image: torch.Tensor, *, side: int, stride: int = 16) -> tuple[int, int]:
    """``(top, left)`` of the ``side`` x ``side`` window of a ``(1, C, H, W)`` image (a multiple of ``stride``
    px from the corner) holding the most strong edges: pixels whose gray gradient magnitude is among the
    largest :data:`EDGE_SHARE` of the image. Blind estimation needs such edges (Hu & Yang 2012, "Good regions to
    deblur"). ``(0, 0)`` where the image fits in the window; a side longer than the image is clipped to it."""
    height, width = image.shape[-2:]
    if height <= side and width <= side:
        return 0, 0
    gray = image[0].float().mean(dim=0)
    magnitude = torch.zeros_like(gray)
    magnitude[:-1, :-1] = torch.hypot(gray[1:, :-1] - gray[:-1, :-1], gray[:-1, 1:] - gray[:-1, :-1])
    threshold = torch.quantile(magnitude.flatten()[:: max(1, magnitude.numel() // 100_000)], 1 - EDGE_SHARE)
    strong = (magnitude > threshold).float()[None, None]
    window = (min(side, height), min(side, width))
    counts = F.avg_pool2d(strong, window, stride=stride)[0, 0]
    row, column = divmod(int(counts.argmax()), counts.shape[1])
    return row * stride, column * stride
