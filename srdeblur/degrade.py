"""Degradations: how low-resolution and blurred inputs are made from ground truth.

Two kinds of LR: the SR papers' clean MATLAB-bicubic downscale (:func:`bicubic_downscale`), and the
*realistic* one of photos from phones, scanners and the web (:func:`realistic_downscale`): two rounds of
blur (Gaussian, anisotropic, generalized Gaussian, plateau, sinc), random resize, Gaussian or Poisson noise
(colour or gray) and real JPEG, then a resize to the LR size with sinc ringing and a last JPEG (Real-ESRGAN's
second-order model, Wang et al. 2021; BSRGAN's shuffled stage order as an option, Zhang et al. 2021),
presets ``mild`` and ``strong`` (:data:`PRESETS`).

Every random draw goes through an explicit ``torch.Generator`` so evaluation and training data are
bit-for-bit repeatable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from srdeblur.resize import imresize

__all__ = ["mod_crop", "quantize_8bit", "bicubic_downscale", "add_gaussian_noise", "RoundConfig", "RealisticConfig",
           "PRESETS", "realistic_downscale", "estimate_noise", "degradation_generator", "jpeg_compress", "anisotropic_gaussian_kernel",
           "generalized_gaussian_kernel", "plateau_kernel", "sinc_kernel"]


def mod_crop(image: torch.Tensor, multiple: int) -> torch.Tensor:
    """Crop ``(B, C, H, W)`` at the bottom/right so H and W are multiples of ``multiple`` (SR convention)."""
    if multiple < 1:
        raise ValueError(f"multiple must be >= 1, got {multiple}")
    height, width = image.shape[-2:]
    height, width = height - height % multiple, width - width % multiple
    if height == 0 or width == 0:
        raise ValueError(f"image of size {tuple(image.shape[-2:])} is smaller than the scale {multiple}")
    return image[..., :height, :width]


def quantize_8bit(image: torch.Tensor) -> torch.Tensor:
    """Clamp to [0, 1] and round to the 8-bit grid (k / 255), as saving to an 8-bit file would."""
    return torch.round(image.clamp(0, 1) * 255) / 255


def bicubic_downscale(hr: torch.Tensor, scale: int, *, quantize: bool = True) -> torch.Tensor:
    """The SR literature's low-resolution image: MATLAB ``imresize(hr, 1/scale)`` (antialiased bicubic).

    Parameters
    ----------
    hr : (B, C, H, W) float tensor in [0, 1]; H and W must be multiples of ``scale`` (see :func:`mod_crop`).
    scale : integer downscaling factor.
    quantize : round the result to 8 bits, as the published LR images are.

    Returns
    -------
    (B, C, H / scale, W / scale) tensor in [0, 1].
    """
    height, width = hr.shape[-2:]
    if height % scale or width % scale:
        raise ValueError(f"HR size {(height, width)} is not a multiple of the scale {scale}; mod_crop first")
    lr = imresize(hr, size=(height // scale, width // scale))
    return quantize_8bit(lr) if quantize else lr.clamp(0, 1)


def estimate_noise(image: torch.Tensor) -> torch.Tensor:
    """Noise sigma (on the [0, 1] scale) of each ``(B, C, H, W)`` image: scikit-image's ``estimate_sigma``
    (Donoho's median absolute deviation of the finest diagonal wavelet band), averaged over channels;
    returns a ``(B,)`` float32 tensor. Reliable on blurred photos, whose finest band is mostly noise."""
    from skimage.restoration import estimate_sigma

    planes = image.detach().float().cpu().permute(0, 2, 3, 1).double().numpy()
    return torch.tensor([estimate_sigma(plane, channel_axis=-1, average_sigmas=True) for plane in planes],
                        dtype=torch.float32)


def add_gaussian_noise(
    image: torch.Tensor, sigma: float | torch.Tensor, *, generator: torch.Generator
) -> torch.Tensor:
    """Add white Gaussian noise of standard deviation ``sigma`` (on the [0, 1] scale; 0.01 = 2.55/255).

    ``sigma`` may be a float or a ``(B,)`` tensor (one level per image). The result is not clamped.
    """
    noise = torch.randn(image.shape, generator=generator, dtype=image.dtype, device=image.device)
    sigma = torch.as_tensor(sigma, dtype=image.dtype, device=image.device)
    if sigma.ndim == 1:
        sigma = sigma.view(-1, *([1] * (image.ndim - 1)))
    return image + sigma * noise


# ----------------------------------------------------------------------------- realistic degradation
#
# After Real-ESRGAN's second-order model (Wang et al. 2021) with BSRGAN's shuffled order as an option
# (Zhang et al. 2021). Each image gets its own draws; filtering, resizing and JPEG are OpenCV's.


@dataclass(frozen=True)
class RoundConfig:
    """One round of degradation: blur, random resize, noise, JPEG (each with its probability).

    Sigmas are in pixels of the image the round acts on; noise sigmas on the [0, 1] scale (0.01 = 2.55/255).
    ``resize_probabilities`` are (up, down, keep); ``resize_range`` bounds the factor (below 1 shrinks).
    ``poisson_scale`` multiplies Poisson noise drawn at 256 photons per unit intensity (Real-ESRGAN's).
    """

    blur_probability: float = 1.0
    kernel_sizes: tuple[int, int] = (7, 21)
    blur_sigma: tuple[float, float] = (0.2, 3.0)
    kernel_probabilities: tuple[float, float, float, float, float, float] = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)
    betag_range: tuple[float, float] = (0.5, 4.0)
    betap_range: tuple[float, float] = (1.0, 2.0)
    sinc_probability: float = 0.1
    resize_probabilities: tuple[float, float, float] = (0.2, 0.7, 0.1)
    resize_range: tuple[float, float] = (0.15, 1.5)
    gaussian_noise_probability: float = 0.5
    noise_sigma: tuple[float, float] = (1 / 255, 30 / 255)
    poisson_scale: tuple[float, float] = (0.05, 3.0)
    gray_noise_probability: float = 0.4
    jpeg_probability: float = 1.0
    jpeg_quality: tuple[int, int] = (30, 95)


@dataclass(frozen=True)
class RealisticConfig:
    """A two-round degradation (Real-ESRGAN) ending with a resize to the LR size and JPEG.

    second_probability : how often the second round runs at all.
    shuffle_probability : how often a round's four stages run in a random order (BSRGAN) instead of
        blur, resize, noise, JPEG.
    final_sinc_probability : how often the final resize is followed by a 2-D sinc filter (ringing and
        overshoot of sharpened or resampled photos).
    """

    first: RoundConfig = RoundConfig()
    second: RoundConfig = RoundConfig(blur_probability=0.8, blur_sigma=(0.2, 1.5), resize_probabilities=(0.3, 0.4, 0.3),
                                      resize_range=(0.3, 1.2), noise_sigma=(1 / 255, 25 / 255),
                                      poisson_scale=(0.05, 2.5))
    second_probability: float = 1.0
    shuffle_probability: float = 0.0
    final_sinc_probability: float = 0.8
    final_jpeg_quality: tuple[int, int] = (30, 95)


_MILD_ROUND = RoundConfig(kernel_sizes=(7, 15), blur_sigma=(0.2, 1.6), sinc_probability=0.0,
                          resize_probabilities=(0.2, 0.5, 0.3), resize_range=(0.5, 1.3),
                          gaussian_noise_probability=0.6, noise_sigma=(1 / 255, 10 / 255), poisson_scale=(0.05, 1.0),
                          jpeg_probability=0.7, jpeg_quality=(60, 95))
PRESETS: dict[str, RealisticConfig] = {
    "mild": RealisticConfig(first=_MILD_ROUND, second=_MILD_ROUND, second_probability=0.0, final_sinc_probability=0.3,
                            final_jpeg_quality=(60, 95)),
    "strong": RealisticConfig(),
}


def degradation_generator(seed: int, index: int) -> torch.Generator:
    """The generator of image ``index`` in a seeded set: the same (seed, index) gives the same draws."""
    return torch.Generator().manual_seed(int(seed) * 1_000_003 + int(index) * 7919 + 17)


def _uniform(low: float, high: float, generator: torch.Generator) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator, dtype=torch.float64))


def _choice(probabilities, generator: torch.Generator) -> int:
    weights = torch.as_tensor(probabilities, dtype=torch.float64)
    return int(torch.multinomial(weights, 1, generator=generator))


def _chance(probability: float, generator: torch.Generator) -> bool:
    return float(torch.rand((), generator=generator, dtype=torch.float64)) < probability


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    half = size // 2
    y, x = np.mgrid[-half : half + 1, -half : half + 1].astype(np.float64)
    return x, y


def _quadratic_form(size: int, sigma_x: float, sigma_y: float, theta: float) -> np.ndarray:
    """``d^T Sigma^-1 d`` on the kernel grid, Sigma = R diag(sx^2, sy^2) R^T (rotation ``theta``, radians)."""
    x, y = _grid(size)
    cos, sin = math.cos(theta), math.sin(theta)
    u, v = cos * x + sin * y, -sin * x + cos * y
    return (u / sigma_x) ** 2 + (v / sigma_y) ** 2


def anisotropic_gaussian_kernel(size: int, sigma_x: float, sigma_y: float, theta: float) -> np.ndarray:
    """Normalised ``size`` x ``size`` (odd) Gaussian with axis sigmas (px) rotated by ``theta`` radians."""
    kernel = np.exp(-0.5 * _quadratic_form(size, sigma_x, sigma_y, theta))
    return kernel / kernel.sum()


def generalized_gaussian_kernel(size: int, sigma_x: float, sigma_y: float, theta: float, beta: float) -> np.ndarray:
    """``exp(-0.5 q^beta)`` with ``q`` the anisotropic quadratic form (beta 2 is close to a box; 0.5 heavy tails)."""
    kernel = np.exp(-0.5 * _quadratic_form(size, sigma_x, sigma_y, theta) ** beta)
    return kernel / kernel.sum()


def plateau_kernel(size: int, sigma_x: float, sigma_y: float, theta: float, beta: float) -> np.ndarray:
    """``1 / (1 + q^beta)``: a flat top with polynomial tails."""
    kernel = 1.0 / (1.0 + _quadratic_form(size, sigma_x, sigma_y, theta) ** beta)
    return kernel / kernel.sum()


def sinc_kernel(size: int, cutoff: float) -> np.ndarray:
    """Circular low-pass (ideal 2-D sinc, ``cutoff`` in radians per pixel, (0, pi]) on an odd grid, normalised."""
    from scipy.special import j1

    x, y = _grid(size)
    radius = np.hypot(x, y)
    with np.errstate(divide="ignore", invalid="ignore"):
        kernel = cutoff * j1(cutoff * radius) / (2 * np.pi * radius)
    kernel[size // 2, size // 2] = cutoff**2 / (4 * np.pi)
    return kernel / kernel.sum()


def _random_kernel(config: RoundConfig, generator: torch.Generator) -> np.ndarray:
    low, high = config.kernel_sizes
    size = 2 * int(torch.randint(low // 2, high // 2 + 1, (), generator=generator)) + 1
    if _chance(config.sinc_probability, generator):
        cutoff = _uniform(math.pi / 3, math.pi, generator) if size < 13 else _uniform(math.pi / 5, math.pi, generator)
        return sinc_kernel(size, cutoff)
    kind = _choice(config.kernel_probabilities, generator)
    isotropic = kind in (0, 2, 4)
    sigma_x = _uniform(*config.blur_sigma, generator)
    sigma_y = sigma_x if isotropic else _uniform(*config.blur_sigma, generator)
    theta = 0.0 if isotropic else _uniform(-math.pi, math.pi, generator)
    if kind < 2:
        return anisotropic_gaussian_kernel(size, sigma_x, sigma_y, theta)
    if kind < 4:
        return generalized_gaussian_kernel(size, sigma_x, sigma_y, theta, _uniform(*config.betag_range, generator))
    return plateau_kernel(size, sigma_x, sigma_y, theta, _uniform(*config.betap_range, generator))


_INTERPOLATIONS = (cv2.INTER_AREA, cv2.INTER_LINEAR, cv2.INTER_CUBIC)


def _resize(image: np.ndarray, size: tuple[int, int], generator: torch.Generator) -> np.ndarray:
    """OpenCV resize of an ``(H, W, 3)`` float32 image to ``size`` = (height, width), random interpolation."""
    interpolation = _INTERPOLATIONS[int(torch.randint(3, (), generator=generator))]
    height, width = size
    return cv2.resize(image, (max(1, width), max(1, height)), interpolation=interpolation)


def _filter(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    # filter2D correlates; the kernel is flipped so this is a convolution (no difference for symmetric kernels).
    return cv2.filter2D(image, -1, kernel[::-1, ::-1].astype(np.float32), borderType=cv2.BORDER_REFLECT_101)


def _add_noise(image: np.ndarray, config: RoundConfig, generator: torch.Generator) -> np.ndarray:
    gray = _chance(config.gray_noise_probability, generator)
    pixels = torch.from_numpy(image)
    shape = (*pixels.shape[:2], 1) if gray else pixels.shape
    if _chance(config.gaussian_noise_probability, generator):
        sigma = _uniform(*config.noise_sigma, generator)
        noise = sigma * torch.randn(shape, generator=generator)
    else:  # Poisson (shot) noise at 256 levels per unit (an 8-bit source), scaled; gray: from the luma
        base = pixels.clamp(0, 1).double()
        if gray:
            base = (base * torch.tensor([0.299, 0.587, 0.114], dtype=torch.float64)).sum(-1, keepdim=True)
        noisy = torch.poisson(base * 256, generator=generator) / 256
        noise = (noisy - base).float() * _uniform(*config.poisson_scale, generator)
    return np.clip(image + noise.expand(pixels.shape).numpy(), 0, 1)


def jpeg_compress(image: np.ndarray, quality: int) -> np.ndarray:
    """Real JPEG (OpenCV's libjpeg, 4:2:0) of an ``(H, W, 3)`` RGB float image in [0, 1]; returns float32."""
    bgr = np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)[..., ::-1]
    ok, encoded = cv2.imencode(".jpg", np.ascontiguousarray(bgr), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("OpenCV could not encode a JPEG")
    return cv2.imdecode(encoded, cv2.IMREAD_COLOR)[..., ::-1].astype(np.float32) / 255


def _jpeg(image: np.ndarray, quality_range: tuple[int, int], generator: torch.Generator) -> np.ndarray:
    quality = int(torch.randint(quality_range[0], quality_range[1] + 1, (), generator=generator))
    return jpeg_compress(image, quality)


def _round(image: np.ndarray, config: RoundConfig, reference: tuple[int, int], shuffle: bool,
           generator: torch.Generator) -> np.ndarray:
    def blur_stage(x):
        return _filter(x, _random_kernel(config, generator)) if _chance(config.blur_probability, generator) else x

    def resize_stage(x):
        direction = _choice(config.resize_probabilities, generator)
        low, high = config.resize_range
        factor = _uniform(1.0, high, generator) if direction == 0 else _uniform(low, 1.0, generator) if direction == 1 else 1.0
        height, width = x.shape[:2]
        # never below a quarter of the LR size: the final resize has to have something to work with
        size = (max(int(height * factor), reference[0] // 4, 2), max(int(width * factor), reference[1] // 4, 2))
        return _resize(x, size, generator) if size != (height, width) else x

    def noise_stage(x):
        return _add_noise(x, config, generator)

    def jpeg_stage(x):
        return _jpeg(x, config.jpeg_quality, generator) if _chance(config.jpeg_probability, generator) else x

    stages = [blur_stage, resize_stage, noise_stage, jpeg_stage]
    if shuffle:
        stages = [stages[i] for i in torch.randperm(4, generator=generator).tolist()]
    for stage in stages:
        image = stage(image)
    return image


def realistic_degrade_one(hr: np.ndarray, scale: int, config: RealisticConfig, *, generator: torch.Generator) -> np.ndarray:
    """Degrade one ``(H, W, 3)`` float32 RGB image in [0, 1] into ``(H // scale, W // scale, 3)``, 8-bit valued."""
    height, width = hr.shape[:2]
    lr_size = (height // scale, width // scale)
    image = np.ascontiguousarray(hr, dtype=np.float32)
    image = _round(image, config.first, lr_size, _chance(config.shuffle_probability, generator), generator)
    if _chance(config.second_probability, generator):
        image = _round(image, config.second, lr_size, _chance(config.shuffle_probability, generator), generator)

    def final_resize(x):
        x = _resize(x, lr_size, generator)
        if _chance(config.final_sinc_probability, generator):
            size = 2 * int(torch.randint(3, 11, (), generator=generator)) + 1
            x = _filter(x, sinc_kernel(size, _uniform(math.pi / 3, math.pi, generator)))
        return x

    def final_jpeg(x):
        return _jpeg(x, config.final_jpeg_quality, generator)

    order = (final_resize, final_jpeg) if _chance(0.5, generator) else (final_jpeg, final_resize)
    for stage in order:
        image = stage(image)
    return np.round(np.clip(image, 0, 1) * 255).astype(np.float32) / 255


def realistic_downscale(hr: torch.Tensor, scale: int, config: RealisticConfig | str = "strong", *,
                        generator: torch.Generator) -> torch.Tensor:
    """Low-resolution photos as cameras, phones and the web make them (blur, resize, noise, JPEG, twice).

    Parameters
    ----------
    hr : (B, 3, H, W) float tensor in [0, 1]; H and W multiples of ``scale``.
    scale : integer downscaling factor.
    config : a :class:`RealisticConfig` or the name of a preset (``"mild"``, ``"strong"``).
    generator : every random draw (kernels, factors, noise, JPEG qualities) comes from it, image by image.

    Returns
    -------
    (B, 3, H / scale, W / scale) float32 tensor on the 8-bit grid in [0, 1].
    """
    if isinstance(config, str):
        if config not in PRESETS:
            raise ValueError(f"unknown degradation preset {config!r}; expected one of {', '.join(PRESETS)}")
        config = PRESETS[config]
    if hr.ndim != 4 or hr.shape[1] != 3:
        raise ValueError(f"realistic_downscale expects (B, 3, H, W), got {tuple(hr.shape)}")
    height, width = hr.shape[-2:]
    if height % scale or width % scale:
        raise ValueError(f"HR size {(height, width)} is not a multiple of the scale {scale}; mod_crop first")
    planes = hr.detach().float().cpu().permute(0, 2, 3, 1).numpy()
    out = [realistic_degrade_one(plane, scale, config, generator=generator) for plane in planes]
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).contiguous()
