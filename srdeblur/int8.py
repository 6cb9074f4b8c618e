"""int8 inference for the super-resolution network's feature path (PyTorch's x86 quantized kernels).

:meth:`srdeblur.nets.SRStage.upsample_features` — the residual blocks, the long skip and the transposed
convolution — and the ``to_residual`` convolution after it hold nearly all of :class:`~srdeblur.nets.LapSR`'s
arithmetic. Here they run in int8, written out below as the float path is in :mod:`srdeblur.nets`: weights
symmetric per output channel (per tensor for the transposed convolution, the engine's limit), activations affine
per tensor over ranges measured once on training images (:func:`calibrate`) and stored in the weights' manifest
(``"int8"``), so a run never calibrates and every run computes the same numbers. The features stay quantized from
one pyramid level to the next. The layers that read the image and carry it up (``embed``, ``image_up``) stay
float32; the residual added to the upsampled image is rounded to 1/255 of its calibrated range. In float32,
``to_residual`` (3 output channels at the output's resolution) and the dequantization before it took 8 ms of
the 44 per 80 x 120 input at x4 on two threads, a sixth of the network's time.

Built from ``torch.ao.nn.quantized`` modules directly rather than by FX graph tracing, which imports
``torch._dynamo`` (2.3 s per process here) before the first image.

Measured on this machine's CPU (AVX512-VNNI), x4 on 80 x 120 inputs, one thread: 1.4x faster than the bfloat16
path; Set5 0.03 (x4) to 0.07 dB (x2) below it (the README's "Speed and memory" has the numbers and commands).
"""

from __future__ import annotations

import warnings

import torch
from torch import nn
from torch.nn import functional as F
from srdeblur.nets import LapSR, ResidualBlock

__all__ = ["available", "calibrate", "quantize", "Int8LapSR", "ENGINE", "RANGE_MARGIN", "observation_points"]

ENGINE = "x86"
# Activation ranges are widened by this share of their span on each side: inputs beyond what calibration
# saw (harsher contrast, other noise) saturate later, for a resolution cost of 1/(1 + 2 x margin).
RANGE_MARGIN = 0.1
_LEAK = 0.2  # the float network's leaky ReLU slope


def available() -> bool:
    """Whether this PyTorch build has the x86 quantized engine (int8 convolutions with VNNI / AVX2)."""
    return ENGINE in torch.backends.quantized.supported_engines


def observation_points(model: LapSR) -> list[str]:
    """Names of the activations whose ranges int8 needs, in the order the feature path computes them."""
    blocks = [f"block{i}.{part}" for i in range(model.config.blocks) for part in ("conv1", "conv2", "sum")]
    return ["input", *blocks, "body_out", "skip", "feature_up", "residual"]


def _check_plain(model: LapSR) -> None:
    for block in model.stage.body:
        if not isinstance(block, ResidualBlock) or block.gate is not None or block.spectral is not None:
            raise ValueError("int8 covers plain residual blocks only (no gates, no spectral branches)")


@torch.inference_mode()
def calibrate(model: LapSR, images: list[torch.Tensor], *, levels: tuple[int, ...] = (1, 2)) -> dict[str, list[float]]:
    """Activation ranges of ``model``'s feature path over ``images`` (each ``(1, 3, h, w)`` in [0, 1], the LR
    inputs it will see) run at every pyramid depth in ``levels``: ``{point: [min, max]}`` for every
    :func:`observation_points` name, JSON-ready, widened by :data:`RANGE_MARGIN`."""
    _check_plain(model)
    stage = model.stage
    seen: dict[str, list[float]] = {}

    def record(name: str, value: torch.Tensor) -> None:
        low, high = float(value.min()), float(value.max())
        old = seen.get(name, [low, high])
        seen[name] = [min(old[0], low), max(old[1], high)]

    modules = {"body_out": stage.body_out, "feature_up": stage.feature_up.deconv, "residual": stage.to_residual}
    for i, block in enumerate(stage.body):
        modules.update({f"block{i}.conv1": block.conv1, f"block{i}.conv2": block.conv2, f"block{i}.sum": block})
    hooks = [module.register_forward_hook(lambda _m, _i, out, name=name: record(name, out))
             for name, module in modules.items()]
    hooks.append(stage.feature_up.deconv.register_forward_pre_hook(lambda _m, args: record("skip", args[0])))

    def path(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        record("input", features)
        up = stage.upsample_features(features)
        return up, stage.to_residual(up)

    try:
        for image in images:
            for depth in levels:
                model(image.float(), depth, feature_path=path)
    finally:
        for hook in hooks:
            hook.remove()
    ranges = {}
    for name in observation_points(model):
        low, high = seen[name]
        span = high - low
        ranges[name] = [round(low - RANGE_MARGIN * span, 6), round(high + RANGE_MARGIN * span, 6)]
    return ranges


def _affine(low: float, high: float) -> tuple[float, int]:
    """quint8 ``(scale, zero_point)`` covering ``[low, high]`` and 0 (torch's MinMaxObserver rule)."""
    low, high = min(low, 0.0), max(high, 0.0)
    scale = max((high - low) / 255, 1e-8)
    return scale, int(min(255, max(0, round(-low / scale))))


def _quantized_conv(layer: nn.Conv2d | nn.ConvTranspose2d, output: list[float]) -> nn.Module:
    """The int8 twin of a float convolution, its output quantized over the ``[min, max]`` range ``output``."""
    import torch.ao.nn.quantized as nnq

    weight = layer.weight.detach().float().contiguous()
    if isinstance(layer, nn.ConvTranspose2d):
        scale = max(float(weight.abs().max()) / 127.5, 1e-8)
        qweight = torch.quantize_per_tensor(weight, scale, 0, torch.qint8)
        twin = nnq.ConvTranspose2d(layer.in_channels, layer.out_channels, layer.kernel_size, stride=layer.stride,
                                   padding=layer.padding, groups=layer.groups)
    else:
        scales = (weight.abs().amax(dim=(1, 2, 3)) / 127.5).clamp_min(1e-8).double()
        zeros = torch.zeros(weight.shape[0], dtype=torch.long)
        qweight = torch.quantize_per_channel(weight, scales, zeros, 0, torch.qint8)
        twin = nnq.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, stride=layer.stride,
                          padding=layer.padding, groups=layer.groups)
    twin.set_weight_bias(qweight, None if layer.bias is None else layer.bias.detach().float())
    twin.scale, twin.zero_point = _affine(*output)
    return twin


class _Adder(nn.Module):
    """``a + b`` of two quantized tensors, requantized over a stored range."""

    def __init__(self, output: list[float]) -> None:
        super().__init__()
        self.scale, self.zero_point = _affine(*output)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.ops.quantized.add(a, b, self.scale, self.zero_point)


class _Int8Block(nn.Module):
    """:class:`~srdeblur.nets.ResidualBlock` in int8: ``x + conv2(lrelu(conv1(x)))``."""

    def __init__(self, block: ResidualBlock, ranges: dict[str, list[float]], prefix: str) -> None:
        super().__init__()
        self.conv1 = _quantized_conv(block.conv1, ranges[f"{prefix}.conv1"])
        self.conv2 = _quantized_conv(block.conv2, ranges[f"{prefix}.conv2"])
        self.sum = _Adder(ranges[f"{prefix}.sum"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # F.leaky_relu keeps its input's scale: requantizing it (torch.ao's functional form) measured 3.5x
        # slower for the whole network, for 0.02-0.03 dB on Set5.
        return self.sum(x, self.conv2(F.leaky_relu(self.conv1(x), _LEAK)))


class _Int8FeaturePath(nn.Module):
    """:meth:`~srdeblur.nets.SRStage.upsample_features` and ``to_residual`` in int8: features (float32 from
    ``embed``, or this path's own quantized ones) in; quantized features and the float32 residual out."""

    def __init__(self, model: LapSR, ranges: dict[str, list[float]]) -> None:
        super().__init__()
        stage = model.stage
        self.recursions = stage.recursions
        self.input_scale, self.input_zero_point = _affine(*ranges["input"])
        self.blocks = nn.ModuleList(_Int8Block(b, ranges, f"block{i}") for i, b in enumerate(stage.body))
        self.body_out = _quantized_conv(stage.body_out, ranges["body_out"])
        self.skip = _Adder(ranges["skip"])
        self.feature_up = _quantized_conv(stage.feature_up.deconv, ranges["feature_up"])
        self.to_residual = _quantized_conv(stage.to_residual, ranges["residual"])

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        q = features if features.is_quantized else torch.quantize_per_tensor(
            features.float(), self.input_scale, self.input_zero_point, torch.quint8)
        x = q
        for _ in range(self.recursions):
            for block in self.blocks:
                x = block(x)
        up = F.leaky_relu(self.feature_up(self.skip(q, self.body_out(x))), _LEAK)
        return up, self.to_residual(up).dequantize()


class Int8LapSR(nn.Module):
    """:class:`~srdeblur.nets.LapSR` with its feature path in int8; same call, ``(lr, levels) -> [outputs]``."""

    def __init__(self, model: LapSR, path: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.path = path
        self.config = model.config

    def forward(self, lr: torch.Tensor, levels: int = 1) -> list[torch.Tensor]:
        with torch.autocast(lr.device.type, enabled=False):  # quantized kernels take float32 in and out
            return self.model(lr.float(), levels, feature_path=self.path)


def quantize(model: LapSR, ranges: dict[str, list[float]]) -> Int8LapSR:
    """``model`` with its feature path in int8 over the stored ``ranges`` (from :func:`calibrate`).

    Raises ValueError if ``ranges`` does not name exactly this architecture's :func:`observation_points` (or
    the network has gated or spectral blocks), RuntimeError where the x86 quantized engine is missing.
    """
    if not available():
        raise RuntimeError(f"this PyTorch has no {ENGINE!r} quantized engine")
    _check_plain(model)
    expected = set(observation_points(model))
    if set(ranges) != expected:
        raise ValueError(f"int8 ranges name {sorted(set(ranges) ^ expected)[:3]}, which this network "
                         f"{'lacks' if set(ranges) - expected else 'needs'}")
    torch.backends.quantized.engine = ENGINE
    with warnings.catch_warnings():  # torch's notice that quantized tensors move to torchao one day (<2.14 pinned)
        warnings.simplefilter("ignore", UserWarning)
        path = _Int8FeaturePath(model, ranges)
    return Int8LapSR(model.float().eval(), path).eval()
