"""The networks, readable in one file.

Both networks are built from the same small parts — a residual block, a transposed-convolution x2
upsampler — and both reuse ONE set of weights at every scale:

* :class:`LapSR` (super-resolution, after LapSRN / MS-LapSRN): a single x2 stage is applied once for x2,
  twice for x4 and three times for x8. Each application doubles the feature map with a transposed
  convolution and adds a predicted residual to the image doubled by another transposed convolution
  (initialised to bilinear interpolation), so every pyramid level has an output that can be supervised.

Shapes: images are ``(B, C, H, W)`` float32 in [0, 1], ``C`` = 3 (RGB); grayscale images are replicated to
three channels by the caller (:mod:`srdeblur.inference`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["SRConfig", "LapSR", "ResidualBlock", "bilinear_upsampler_weight", "count_parameters"]


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


class ResidualBlock(nn.Module):
    """``x + conv(lrelu(conv(x)))`` with 3x3 convolutions; ``(B, C, H, W) -> (B, C, H, W)``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.leaky_relu(self.conv1(x), 0.2, inplace=True))


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
        return x, self.image_up(image) + self.to_residual(x)


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
        features = F.leaky_relu(self.embed(image), 0.2)
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


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
