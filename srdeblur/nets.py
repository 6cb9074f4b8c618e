"""The networks, readable in one file.

The networks are built from the same small parts — a residual block, a transposed-convolution x2
upsampler — and each reuses ONE set of weights at every scale or iteration:

* :class:`LapSR` (super-resolution, after LapSRN / MS-LapSRN): a single x2 stage is applied once for x2,
  twice for x4 and three times for x8. Each application doubles the feature map with a transposed
  convolution and adds a predicted residual to the image doubled by another transposed convolution
  (initialised to bilinear interpolation), so every pyramid level has an output that can be supervised.
* :class:`SRNDeblur` (blind deblurring, after SRN-DeblurNet's scale recurrence): one encoder-decoder of
  residual blocks runs coarse to fine over an image pyramid (1/4, 1/2, 1); at each scale it sees the blurred
  image and the previous scale's estimate, doubled by a transposed convolution, and predicts a residual
  correction to that estimate — iterative residual deconvolution with the same weights at every scale.
* :class:`USRDeconv` (deconvolution with a known PSF, after USRNet / DPIR): unrolled half-quadratic
  splitting, a closed-form FFT data step with the PSF alternating with ONE learned prior (an encoder-decoder
  of residual blocks, told the noise level) at every iteration.
* :class:`DegradationGate` (a small classifier): does an LR image look clean or degraded? ``upscale``'s
  default uses it to pick the SR weights.

Shapes: images are ``(B, C, H, W)`` float32 in [0, 1], ``C`` = 3 (RGB); grayscale images are replicated to
three channels by the caller (:mod:`srdeblur.inference`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import torch
from torch import nn
from torch.nn import functional as F

__all__ = [
    "SRConfig", "LapSR", "DeblurConfig", "SRNDeblur", "ResidualBlock", "bilinear_upsampler_weight", "count_parameters",
    "float32_layer", "SpectralBranch", "GlobalGate", "global_gate", "load_grown", "DeconvConfig", "USRDeconv",
    "hqs_schedule", "resample_iterations", "GateConfig", "DegradationGate",
]


@dataclass(frozen=True)
class SRConfig:
    """Architecture of :class:`LapSR`; stored in the weights manifest so a checkpoint rebuilds its network.

    channels : feature channels of the stage.
    blocks : residual blocks in the stage's body.
    recursions : how many times the body is applied per stage (shared weights: depth without parameters).
    image_channels : 3 for RGB.
    """

    channels: int = 48
    blocks: int = 4
    recursions: int = 1
    image_channels: int = 3

    def to_dict(self) -> dict:
        return asdict(self)


def bilinear_upsampler_weight(channels: int, factor: int = 2) -> torch.Tensor:
    """Weight of a depthwise ``ConvTranspose2d(kernel=2*factor, stride=factor, padding=factor//2)`` that
    performs bilinear upsampling (align_corners=False); shape ``(channels, 1, 2*factor, 2*factor)``."""
    size = 2 * factor
    centre = factor - 0.5
    taps = 1 - torch.abs(torch.arange(size, dtype=torch.float32) - centre) / factor
    kernel = taps[:, None] * taps[None, :]
    return kernel.expand(channels, 1, size, size).clone()


def float32_layer(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``layer(x)`` computed in float32 even under a bfloat16 ``torch.autocast``.

    Inference may run the hidden layers in bfloat16 (about 3 significant digits, see
    :mod:`srdeblur.inference`); the layers that read or write the image keep float32 so the image itself is
    never rounded coarser than its 8- or 16-bit steps. Outside autocast this is just ``layer(x)``.
    """
    with torch.autocast(x.device.type, enabled=False):
        return layer(x.float())


class SpectralBranch(nn.Module):
    """Image-wide filtering in the Fourier domain (DeepRFT's Res FFT-ReLU branch, Mao et al. 2021).

    ``irfft2(W2 lrelu(W1 rfft2(x)))``: the real and imaginary parts of every frequency are mixed across
    channels by 1x1 convolutions with a nonlinearity between them; ``(B, C, H, W) -> (B, C, H, W)``.
    A blur is a convolution, so undoing it takes a filter as long as the blur; 3x3 convolutions need many
    layers to build one, this branch reaches the whole feature map in one step. The weights do not depend
    on the frequency, so any image size works. The last mixing layer starts at zero: a new branch adds
    nothing until training gives it a use. Runs in float32 (CPU FFTs have no bfloat16).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.mix1 = nn.Conv2d(2 * channels, 2 * channels, 1, bias=False)
        self.mix2 = nn.Conv2d(2 * channels, 2 * channels, 1, bias=False)
        nn.init.zeros_(self.mix2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        with torch.autocast(x.device.type, enabled=False):
            # "ortho" keeps a coefficient's size independent of the image size, so the nonlinearity acts
            # the same on a training patch and on a whole photo.
            spectrum = torch.fft.rfft2(x.float(), norm="ortho")
            mixed = self.mix2(F.leaky_relu(self.mix1(torch.cat([spectrum.real, spectrum.imag], 1)), 0.2))
            real, imag = mixed.chunk(2, dim=1)
            return torch.fft.irfft2(torch.complex(real, imag), s=(height, width), norm="ortho")


def global_gate(features: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``features * (1 + W mean(features) + b)``: every channel scaled by a factor computed from the mean
    of every channel over the whole map; ``(B, C, H, W) -> (B, C, H, W)``, ``weight`` ``(C, C)``, ``bias``
    ``(C,)``. The means are taken in float32 (a bfloat16 sum over a photo would round them)."""
    if features.ndim != 4 or weight.shape != (features.shape[1], features.shape[1]):
        raise ValueError(f"global_gate expects (B, C, H, W) features and a (C, C) weight, got "
                         f"{tuple(features.shape)} and {tuple(weight.shape)}")
    means = features.float().mean(dim=(-2, -1))
    scale = 1 + F.linear(means, weight.float(), bias.float())
    return features * scale[..., None, None].to(features.dtype)


class GlobalGate(nn.Module):
    """:func:`global_gate` with learned ``W``, ``b`` (NAFNet's simplified channel attention, Chen et al.
    2022, written to start as the identity).

    Why: a camera shake blurs the whole photo the same way, but a 3x3-convolution network sees only a
    window of it and must guess the blur from local evidence; where it cannot, it smooths. The gate lets
    evidence from the whole image (a channel's mean response, e.g. how much edge energy survives in one
    direction) turn filters up or down everywhere. ``W`` and ``b`` start at zero, i.e. as the identity.
    Unlike a convolution, the result depends on the whole map, so tiled inference differs from whole-image
    inference by how much a tile's means differ from the image's.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.fc = nn.Linear(channels, channels)
        nn.init.zeros_(self.fc.weight)
        nn.init.zeros_(self.fc.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return global_gate(x, self.fc.weight, self.fc.bias)


class ResidualBlock(nn.Module):
    """``x + conv(gate(lrelu(conv(x))))`` with 3x3 convolutions; ``gate`` is a :class:`GlobalGate` if
    ``gated``, else the identity; plus a :class:`SpectralBranch` if ``spectral``;
    ``(B, C, H, W) -> (B, C, H, W)``."""

    def __init__(self, channels: int, *, spectral: bool = False, gated: bool = False) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.gate = GlobalGate(channels) if gated else None
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.spectral = SpectralBranch(channels) if spectral else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = F.leaky_relu(self.conv1(x), 0.2, inplace=True)
        local = self.conv2(hidden if self.gate is None else self.gate(hidden))
        if self.spectral is None:
            return x + local
        return x + local + self.spectral(x)


class Upsampler2x(nn.Module):
    """Transposed convolution that doubles the feature map: ``(B, C, H, W) -> (B, C, 2H, 2W)``.

    Kernel 4 with stride 2 (a multiple of the stride) so every output pixel receives the same number of
    taps: no checkerboard artefacts.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.deconv = nn.ConvTranspose2d(channels, channels, 4, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(self.deconv(x), 0.2, inplace=True)


class SRStage(nn.Module):
    """One x2 level of the pyramid; the SAME instance serves every level.

    ``forward(features, image)`` maps features ``(B, F, H, W)`` and the current image ``(B, C, H, W)`` to
    features ``(B, F, 2H, 2W)`` and image ``(B, C, 2H, 2W)`` = bilinear-initialised transposed-conv
    upsampling of the image + a predicted residual.
    """

    def __init__(self, config: SRConfig) -> None:
        super().__init__()
        self.recursions = config.recursions
        self.body = nn.Sequential(*[ResidualBlock(config.channels) for _ in range(config.blocks)])
        self.body_out = nn.Conv2d(config.channels, config.channels, 3, padding=1)
        self.feature_up = Upsampler2x(config.channels)
        self.to_residual = nn.Conv2d(config.channels, config.image_channels, 3, padding=1)
        c = config.image_channels
        self.image_up = nn.ConvTranspose2d(c, c, 4, stride=2, padding=1, groups=c, bias=False)
        with torch.no_grad():
            self.image_up.weight.copy_(bilinear_upsampler_weight(c))

    def upsample_features(self, features: torch.Tensor) -> torch.Tensor:
        """The feature path, ``(B, F, H, W) -> (B, F, 2H, 2W)``: residual blocks, a long skip, the transposed
        convolution. Nearly all of the stage's arithmetic (:mod:`srdeblur.int8` quantizes exactly this)."""
        x = features
        for _ in range(self.recursions):
            x = self.body(x)
        return self.feature_up(features + self.body_out(x))

    def forward(self, features: torch.Tensor, image: torch.Tensor, feature_path: nn.Module | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """``feature_path``: a stand-in (e.g. the int8 one) for :meth:`upsample_features` followed by
        ``to_residual``, mapping ``features`` to ``(upsampled features, float32 residual (B, C, 2H, 2W))``; the
        features it returns are only ever given back to it at the next level (int8 keeps them quantized)."""
        if feature_path is None:
            x = self.upsample_features(features)
            residual = float32_layer(self.to_residual, x)
        else:
            x, residual = feature_path(features)
        return x, float32_layer(self.image_up, image) + residual


class LapSR(nn.Module):
    """Laplacian-pyramid super-resolution network with one x2 stage shared across all levels.

    ``forward(lr, levels)`` takes ``lr`` ``(B, C, h, w)`` in [0, 1] and returns the list of ``levels``
    outputs ``[(B, C, 2h, 2w), (B, C, 4h, 4w), ...]`` (not clamped; clamp for display). ``levels`` = 1, 2, 3
    gives x2, x4, x8.
    """

    def __init__(self, config: SRConfig = SRConfig()) -> None:
        super().__init__()
        self.config = config
        self.embed = nn.Conv2d(config.image_channels, config.channels, 3, padding=1)
        self.stage = SRStage(config)

    def forward(self, lr: torch.Tensor, levels: int = 1, feature_path: nn.Module | None = None) -> list[torch.Tensor]:
        """``feature_path``: passed to every level's :meth:`SRStage.forward` (None: the float layers)."""
        if lr.ndim != 4 or lr.shape[1] != self.config.image_channels:
            raise ValueError(
                f"LapSR expects (B, {self.config.image_channels}, H, W), got {tuple(lr.shape)}"
            )
        if levels < 1:
            raise ValueError(f"levels must be >= 1, got {levels}")
        # Centre the data: the residual path then starts unbiased.
        image = lr - 0.5
        features = F.leaky_relu(float32_layer(self.embed, image), 0.2)
        outputs = []
        for _ in range(levels):
            features, image = self.stage(features, image, feature_path)
            outputs.append(image + 0.5)
        return outputs

    @staticmethod
    def levels_for_scale(scale: int) -> int:
        """Pyramid levels needed for a power-of-two scale: 2 -> 1, 4 -> 2, 8 -> 3."""
        levels = int(round(math.log2(scale)))
        if 2**levels != scale or levels < 1:
            raise ValueError(f"LapSR scales are powers of two (2, 4, 8), got {scale}")
        return levels


def load_grown(model: nn.Module, tensors: dict[str, torch.Tensor]) -> list[str]:
    """Load the weights of a smaller network of the same kind into ``model``, which has grown from it.

    ``model`` may have more residual blocks per level (appended after the existing ones) and
    :class:`SpectralBranch` es or :class:`GlobalGate` s the tensors lack. Those start as the identity — a fresh
    block's second convolution, a fresh branch's last mixing layer and a fresh gate are zeroed — so the grown
    network computes exactly
    what the smaller one did, and fine-tuning it keeps what the smaller one learned.

    Returns the names of the tensors that started fresh. Raises ``ValueError`` if ``tensors`` holds a name
    ``model`` lacks, a shape that differs, or if a fresh tensor belongs to no fresh block or branch (e.g. a
    wider network: widening cannot start as the identity).
    """
    own = model.state_dict()
    unexpected = sorted(set(tensors) - set(own))
    mismatched = sorted(k for k in tensors if k in own and tensors[k].shape != own[k].shape)
    if unexpected or mismatched:
        raise ValueError(f"cannot grow from these weights: unknown {unexpected[:3]}, other shapes {mismatched[:3]}")
    fresh = [k for k in own if k not in tensors]
    fresh_set, covered = set(fresh), set()
    with torch.no_grad():
        for name, module in model.named_modules():
            if not isinstance(module, (ResidualBlock, SpectralBranch, GlobalGate)):
                continue
            keys = {f"{name}.{k}" for k in module.state_dict()}
            if not keys <= fresh_set:
                continue
            last = getattr(module, {ResidualBlock: "conv2", SpectralBranch: "mix2", GlobalGate: "fc"}[type(module)])
            for parameter in last.parameters():
                parameter.zero_()
            covered |= keys
    orphans = [k for k in fresh if k not in covered]
    if orphans:
        raise ValueError(f"cannot grow from these weights: {orphans[:3]} cannot start as the identity")
    model.load_state_dict(tensors, strict=False)
    return fresh


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@dataclass(frozen=True)
class DeblurConfig:
    """Architecture of :class:`SRNDeblur`.

    channels : feature channels at full resolution; the encoder doubles them at each of its 2 downsamplings.
    blocks : residual blocks per encoder and per decoder level.
    scales : levels of the image pyramid the shared network runs over (3: 1/4, 1/2, 1).
    image_channels : 3 for RGB.
    spectral : give the bottom level's residual blocks (1/4 of the input's resolution) a
        :class:`SpectralBranch`, i.e. image-wide filtering; there it costs about 15% more time per training
        step, where every block having one would double it.
    gated : give every residual block a :class:`GlobalGate` (image-wide context; cheap: one mean per
        channel and a C x C matrix).
    """

    channels: int = 24
    blocks: int = 1
    scales: int = 3
    image_channels: int = 3
    spectral: bool = False
    gated: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


def _level(channels: int, blocks: int, *, spectral: bool, gated: bool) -> nn.Sequential:
    return nn.Sequential(*[ResidualBlock(channels, spectral=spectral, gated=gated) for _ in range(blocks)])


class EncoderDecoder(nn.Module):
    """U-shaped net of residual blocks: two stride-2 convolutions down, two transposed convolutions up,
    with skip connections; ``(B, in_channels, H, W) -> (B, C, H, W)`` residual (``in_channels`` defaults to
    ``2 C``: an image and an estimate). H and W must be multiples of 4."""

    def __init__(self, config: DeblurConfig, *, in_channels: int | None = None) -> None:
        super().__init__()
        c, n, img, g = config.channels, config.blocks, config.image_channels, config.gated
        self.head = nn.Conv2d(in_channels or 2 * img, c, 3, padding=1)
        self.enc1 = _level(c, n, spectral=False, gated=g)
        self.down1 = nn.Conv2d(c, 2 * c, 3, stride=2, padding=1)
        self.enc2 = _level(2 * c, n, spectral=False, gated=g)
        self.down2 = nn.Conv2d(2 * c, 4 * c, 3, stride=2, padding=1)
        self.bottom = _level(4 * c, 2 * n, spectral=config.spectral, gated=g)
        self.up2 = nn.ConvTranspose2d(4 * c, 2 * c, 4, stride=2, padding=1)
        self.dec2 = _level(2 * c, n, spectral=False, gated=g)
        self.up1 = nn.ConvTranspose2d(2 * c, c, 4, stride=2, padding=1)
        self.dec1 = _level(c, n, spectral=False, gated=g)
        self.tail = nn.Conv2d(c, img, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        act = lambda t: F.leaky_relu(t, 0.2)  # noqa: E731
        e1 = self.enc1(act(float32_layer(self.head, x)))
        e2 = self.enc2(act(self.down1(e1)))
        b = self.bottom(act(self.down2(e2)))
        d2 = self.dec2(act(self.up2(b)) + e2)
        d1 = self.dec1(act(self.up1(d2)) + e1)
        return float32_layer(self.tail, d1)


class SRNDeblur(nn.Module):
    """Scale-recurrent blind deblurring: one :class:`EncoderDecoder` shared by every pyramid scale.

    ``forward(blurred)`` takes ``(B, C, H, W)`` in [0, 1] with H, W multiples of ``4 * 2**(scales-1)`` (the
    caller pads, see :mod:`srdeblur.inference`) and returns the estimates coarse to fine,
    ``[(B, C, H/4, W/4), (B, C, H/2, W/2), (B, C, H, W)]`` for 3 scales (not clamped).
    """

    def __init__(self, config: DeblurConfig = DeblurConfig()) -> None:
        super().__init__()
        self.config = config
        self.net = EncoderDecoder(config)
        c = config.image_channels
        self.estimate_up = nn.ConvTranspose2d(c, c, 4, stride=2, padding=1, groups=c, bias=False)
        with torch.no_grad():
            self.estimate_up.weight.copy_(bilinear_upsampler_weight(c))

    @property
    def multiple(self) -> int:
        """Input sides must be multiples of this."""
        return 4 * 2 ** (self.config.scales - 1)

    def forward(self, blurred: torch.Tensor) -> list[torch.Tensor]:
        if blurred.ndim != 4 or blurred.shape[1] != self.config.image_channels:
            raise ValueError(f"SRNDeblur expects (B, {self.config.image_channels}, H, W), got {tuple(blurred.shape)}")
        if blurred.shape[-2] % self.multiple or blurred.shape[-1] % self.multiple:
            raise ValueError(f"SRNDeblur needs sides that are multiples of {self.multiple}, got {tuple(blurred.shape[-2:])}")
        pyramid = [blurred - 0.5]
        for _ in range(self.config.scales - 1):
            pyramid.append(F.avg_pool2d(pyramid[-1], 2))
        estimates, estimate = [], None
        for level in reversed(pyramid):
            estimate = level if estimate is None else float32_layer(self.estimate_up, estimate)
            estimate = estimate + self.net(torch.cat([level, estimate], dim=1))
            estimates.append(estimate + 0.5)
        return estimates


# ----------------------------------------------------------------------------- known-PSF deconvolution


@dataclass(frozen=True)
class DeconvConfig:
    """Architecture of :class:`USRDeconv`.

    channels, blocks : width and depth of the shared prior (an :class:`EncoderDecoder`).
    iterations : half-quadratic-splitting iterations; the prior's weights are the same at every one.
    first_sigma : noise level (on [0, 1]) the first prior step removes; the schedule falls geometrically
        from it to the image's own noise level (DPIR's).
    min_sigma : floor of the noise level the schedule ends at (8-bit quantisation alone is 0.0011).
    """

    channels: int = 32
    blocks: int = 1
    iterations: int = 5
    first_sigma: float = 49 / 255
    min_sigma: float = 1 / 255
    image_channels: int = 3

    def to_dict(self) -> dict:
        return asdict(self)


def hqs_schedule(sigma: torch.Tensor, *, iterations: int, first_sigma: float, min_sigma: float,
                 log_alphas: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-iteration prior noise levels ``sigma_i`` and data weights ``alpha_i``, each ``(B, iterations)``.

    ``sigma`` is the ``(B,)`` noise level of the blurred images, floored at ``min_sigma``. ``sigma_i`` falls
    geometrically from ``first_sigma`` to it (DPIR's schedule: what the prior is told to remove);
    ``alpha_i = exp(log_alphas_i) (sigma / 0.01)^2``: noisier images hold the estimate closer to the prior's.
    """
    floor = sigma.clamp_min(min_sigma)
    steps = torch.linspace(0, 1, iterations, dtype=sigma.dtype, device=sigma.device)
    log_sigmas = math.log(first_sigma) + steps[None, :] * (floor.log()[:, None] - math.log(first_sigma))
    alphas = log_alphas.exp()[None, :] * (floor[:, None] / 0.01) ** 2
    return log_sigmas.exp(), alphas


class USRDeconv(nn.Module):
    """Deconvolution with a known PSF by unrolled half-quadratic splitting (after USRNet and DPIR).

    It starts from the Wiener estimate (Laplacian regulariser, weight ``exp(log_balance) sigma^2``), then each
    iteration ``i`` solves the data term in closed form with FFTs, ``x = argmin |k * x - y|^2 + alpha_i |x - z|^2``,
    and applies the learned prior, ``z = x + prior([x, sigma_i])`` — one :class:`EncoderDecoder` shared by every
    iteration, told the noise level ``sigma_i`` by a constant extra input plane, working on the 4 polyphase
    sub-images at half resolution (FFDNet's reversible downsampling: wider layers on a quarter of the pixels,
    measured faster on the CPU). Untrained (the prior's last layer is zero, ``alpha_i`` = 1) it is the Wiener
    estimate nudged towards the data, so training starts from a sane deconvolution: started instead from
    DPIR's schedule with ``z_0`` the blurred image, it began near the inverse filter (20-27 dB where Wiener
    gives 30-33) and was still below Wiener after 500 steps.

    The work happens on :func:`srdeblur.classical.deconvolution_domain`'s reflect-padded, edge-tapered
    array (pad: the PSF's radius + 8 px), the same at training and inference, and is cropped back.
    """

    def __init__(self, config: DeconvConfig = DeconvConfig()) -> None:
        super().__init__()
        self.config = config
        c = config.image_channels
        self.prior = EncoderDecoder(DeblurConfig(channels=config.channels, blocks=config.blocks, image_channels=4 * c),
                                    in_channels=4 * c + 1)
        with torch.no_grad():
            self.prior.tail.weight.zero_()
            self.prior.tail.bias.zero_()
        self.log_balance = nn.Parameter(torch.tensor(math.log(50.0)))  # Wiener weight 0.005 at sigma 0.01
        self.log_alphas = nn.Parameter(torch.zeros(config.iterations))

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """The prior's residual for ``x`` (B, C, M, N), M and N multiples of 8, at noise levels ``sigma`` (B,)."""
        sub = F.pixel_unshuffle(x - 0.5, 2)
        level = (sigma * 10).view(-1, 1, 1, 1).expand(-1, 1, *sub.shape[-2:]).to(sub.dtype)
        return F.pixel_shuffle(self.prior(torch.cat([sub, level], dim=1)), 2)

    @staticmethod
    def padding(psf_shape: tuple[int, int]) -> int:
        """Pixels added on each side before the FFTs."""
        return max(psf_shape) // 2 + 8

    def forward(self, blurred: torch.Tensor, psf: torch.Tensor, sigma: torch.Tensor) -> list[torch.Tensor]:
        """``blurred`` (B, C, H, W) in [0, 1]; ``psf`` (kh, kw) shared or (B, kh, kw), each summing to 1;
        ``sigma`` (B,) noise levels on [0, 1]. Returns ``[(B, C, H, W)]``, the restored images (not clamped)."""
        from srdeblur.classical import _laplacian_spectrum, deconvolution_domain

        if blurred.ndim != 4 or blurred.shape[1] != self.config.image_channels:
            raise ValueError(f"USRDeconv expects (B, {self.config.image_channels}, H, W), got {tuple(blurred.shape)}")
        psfs = psf.expand(blurred.shape[0], *psf.shape[-2:]) if psf.ndim == 2 else psf
        if psfs.ndim != 3 or psfs.shape[0] != blurred.shape[0]:
            raise ValueError(f"psf must be (kh, kw) or (B, kh, kw), got {tuple(psf.shape)}")
        pad = self.padding(tuple(psfs.shape[-2:]))
        domains = [deconvolution_domain(image[None].float(), kernel.float(), pad=pad, multiple=8)
                   for image, kernel in zip(blurred, psfs)]
        y = torch.cat([d[0] for d in domains])
        transfer = torch.stack([d[2] for d in domains])[:, None]  # (B, 1, M, N//2+1)
        (top, left), (height, width) = domains[0][1], blurred.shape[-2:]
        shape = tuple(y.shape[-2:])
        numerator = transfer.conj() * torch.fft.rfft2(y)
        power = transfer.abs().square()
        floor = sigma.float().clamp_min(self.config.min_sigma).to(y.device)
        regulariser = _laplacian_spectrum(shape, dtype=power.dtype).to(y.device).square()
        balance = (self.log_balance.exp() * floor**2).view(-1, 1, 1, 1)
        z = torch.fft.irfft2(numerator / (power + balance * regulariser), s=shape)
        sigmas, alphas = hqs_schedule(floor, iterations=self.config.iterations, first_sigma=self.config.first_sigma,
                                      min_sigma=self.config.min_sigma, log_alphas=self.log_alphas)
        for i in range(self.config.iterations):
            alpha = alphas[:, i].view(-1, 1, 1, 1)
            x = torch.fft.irfft2((numerator + alpha * torch.fft.rfft2(z)) / (power + alpha), s=shape)
            z = x + self.denoise(x, sigmas[:, i])
        return [z[..., top : top + height, left : left + width]]


def resample_iterations(tensors: dict[str, torch.Tensor], iterations: int) -> dict[str, torch.Tensor]:
    """:class:`USRDeconv` tensors for ``iterations`` HQS iterations: its per-iteration ``log_alphas`` linearly
    interpolated over the schedule's positions (first to last iteration), everything else unchanged.

    The prior is shared by the iterations and told its noise level, so the same weights run at another
    iteration count; measured on ``sun2013`` (4 photos x 8 kernels, 1 % noise) the shipped 5-iteration weights
    gave 32.89 dB at 5, 33.00 at 6 and 33.13 at 8 iterations before any fine-tuning.
    """
    log_alphas = tensors["log_alphas"].float()
    count = log_alphas.numel()
    if count == iterations:
        return tensors
    position = torch.linspace(0, count - 1, iterations)
    below = position.floor().long().clamp(max=count - 1)
    above = (below + 1).clamp(max=count - 1)
    weight = position - below
    resampled = log_alphas[below] * (1 - weight) + log_alphas[above] * weight
    return {**tensors, "log_alphas": resampled.to(tensors["log_alphas"].dtype).contiguous()}


def with_iterations(model: USRDeconv, iterations: int) -> USRDeconv:
    """A copy of ``model`` that runs ``iterations`` HQS iterations (:func:`resample_iterations`), same device,
    memory format and mode; ``model`` itself if it already does."""
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}")
    if model.config.iterations == iterations:
        return model
    parameter = next(model.parameters())
    twin = USRDeconv(replace(model.config, iterations=iterations)).to(parameter.device)
    twin.load_state_dict(resample_iterations(model.state_dict(), iterations))
    channels_last = model.prior.tail.weight.is_contiguous(memory_format=torch.channels_last)
    twin = twin.to(memory_format=torch.channels_last) if channels_last else twin
    return twin.train(model.training)


# ----------------------------------------------------------------------------- clean or degraded input


@dataclass(frozen=True)
class GateConfig:
    """Architecture of :class:`DegradationGate`: ``channels`` at full resolution (x2, x4 after each stride)."""

    channels: int = 16
    image_channels: int = 3

    def to_dict(self) -> dict:
        return asdict(self)


class DegradationGate(nn.Module):
    """Does a low-resolution image look degraded (noise, JPEG, blur) rather than a clean bicubic downscale?

    The image and its high-pass residual (image minus its 3x3 box mean, x10: noise and JPEG blocks live
    there, and a plain CNN on the image alone measured at chance after 250 steps), five 3x3 convolutions (two
    of stride 2), then each channel's mean and log-variance over the image and a linear layer:
    ``(B, C, H, W)`` in [0, 1] -> ``[(B,)]`` logits of "degraded". Any size of at least 8 x 8 pixels; about
    40 K parameters, negligible beside an SR network.
    """

    def __init__(self, config: GateConfig = GateConfig()) -> None:
        super().__init__()
        self.config = config
        c, img = config.channels, config.image_channels
        layers, width = [], 2 * img
        for out, stride in ((c, 1), (2 * c, 2), (2 * c, 1), (4 * c, 2), (4 * c, 1)):
            layers += [nn.Conv2d(width, out, 3, stride=stride, padding=1), nn.LeakyReLU(0.2)]
            width = out
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(2 * width, 1)

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        if image.ndim != 4 or image.shape[1] != self.config.image_channels:
            raise ValueError(f"DegradationGate expects (B, {self.config.image_channels}, H, W), got {tuple(image.shape)}")
        centred = image.float() - 0.5
        high_pass = (centred - F.avg_pool2d(F.pad(centred, (1, 1, 1, 1), mode="replicate"), 3, stride=1)) * 10
        features = self.features(torch.cat([centred, high_pass], dim=1)).float()
        pooled = torch.cat([features.mean(dim=(2, 3)), (features.var(dim=(2, 3)) + 1e-6).log()], dim=1)
        return [self.head(pooled)[:, 0]]
