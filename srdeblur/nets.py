"""The networks, readable in one file.

Both networks are built from the same small parts — a residual block, a transposed-convolution x2
upsampler — and both reuse ONE set of weights at every scale:

* :class:`LapSR` (super-resolution, after LapSRN / MS-LapSRN): a single x2 stage is applied once for x2,
  twice for x4 and three times for x8. Each application doubles the feature map with a transposed
  convolution and adds a predicted residual to the image doubled by another transposed convolution
  (initialised to bilinear interpolation), so every pyramid level has an output that can be supervised.
* :class:`SRNDeblur` (blind deblurring, after SRN-DeblurNet's scale recurrence): one encoder-decoder of
  residual blocks runs coarse to fine over an image pyramid (1/4, 1/2, 1); at each scale it sees the blurred
  image and the previous scale's estimate, doubled by a transposed convolution, and predicts a residual
  correction to that estimate — iterative residual deconvolution with the same weights at every scale.

Shapes: images are ``(B, C, H, W)`` float32 in [0, 1], ``C`` = 3 (RGB); grayscale images are replicated to
three channels by the caller (:mod:`srdeblur.inference`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F

__all__ = [
    "SRConfig", "LapSR", "DeblurConfig", "SRNDeblur", "ResidualBlock", "bilinear_upsampler_weight", "count_parameters",
    "float32_layer", "SpectralBranch", "GlobalGate", "global_gate", "load_grown",
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

    def forward(self, features: torch.Tensor, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = features
        for _ in range(self.recursions):
            x = self.body(x)
        x = self.feature_up(features + self.body_out(x))
        return x, float32_layer(self.image_up, image) + float32_layer(self.to_residual, x)


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

    def forward(self, lr: torch.Tensor, levels: int = 1) -> list[torch.Tensor]:
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
            features, image = self.stage(features, image)
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
    with skip connections; ``(B, 2C, H, W) -> (B, C, H, W)`` residual. H and W must be multiples of 4."""

    def __init__(self, config: DeblurConfig) -> None:
        super().__init__()
        c, n, img, g = config.channels, config.blocks, config.image_channels, config.gated
        self.head = nn.Conv2d(2 * img, c, 3, padding=1)
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
