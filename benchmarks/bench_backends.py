"""Inference backends for the shipped networks, side by side in one process: which one is worth adopting?

Standalone (run by hand, not by CI; about 6-7 minutes on 2 busy cores)::

    python benchmarks/bench_backends.py [--threads 2] [--repeat 5] [--size 256] [--variants ...]
                                        [--out /tmp/bench_backends.json]

Three network configurations: ``lapsr`` at x2 (1 pyramid level) and x4 (2 levels), and ``srndeblur``, each
on one ``1 x 3 x SIZE x SIZE`` input (a crop of a BSD200 training image; for deblurring, motion-blurred
with noise). Variants of the same loaded module (``srdeblur.weights.load_model``):

* ``eager``: what ``srdeblur.inference`` does: ``torch.inference_mode``, channels_last weights and input;
* ``compile``: ``torch.compile`` (inductor, CPU, default options);
* ``compile-freeze``: the same with inductor's ``freezing`` (weights become constants: prepacked oneDNN
  convolutions with fused post-ops);
* ``bf16``: ``torch.autocast("cpu", dtype=torch.bfloat16)`` around the whole forward;
* ``bf16-mixed``: bfloat16 for the hidden feature convolutions only; the convolutions that read the image
  and write the image residual, and every image-domain operation (LapSR's bilinear image upsampler and
  residual additions, SRNDeblur's pyramid), stay float32;
* ``compile-bf16-mixed`` (on request): ``bf16-mixed`` compiled with freezing;
* ``int8``: FX graph-mode post-training static quantization (``torch.ao.quantization.quantize_fx``, x86
  backend, per-channel symmetric int8 weights, 8-bit activations from histogram observers), calibrated on
  ``--calibration-images`` images of ``data/train/T91`` (never on benchmark images);
* ``jit-fused`` (on request): TorchScript's oneDNN fusion pass,
  ``torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(...)))``;
* ``onnxruntime``: ``torch.onnx.export`` at the fixed input size, run by ONNX Runtime's CPU provider
  (``intra_op_num_threads = --threads``). onnxruntime is not a project dependency: the row is skipped with a
  note when it is not importable (install it in a separate venv, see benchmarks/README.md).

PT2E quantization (``torch.ao.quantization.quantize_pt2e``) is gone from torch 2.13 (it moved to torchao,
which is not installed), so int8 uses FX. A variant that fails to build or run is reported with a one-line
error and the script goes on.

Timing: after each variant is built and warmed up (2 untimed calls; compile time is reported separately),
the variants run in interleaved rounds (round r calls every variant once), ``--repeat`` rounds, and each
variant's seconds per forward is its median. Interleaving makes the ratios to ``eager`` fair on a machine
whose load drifts; the absolute seconds are only meaningful on an idle machine. On a machine whose cores are
already busy, ``--threads`` above 1 can be slower than 1: OpenMP's barrier after every operator waits for a
descheduled thread (compare with ``--threads 1``). The timed call includes the
variant's own conversions (e.g. tensor -> NumPy for ONNX Runtime). FLOPs are counted once per configuration
with ``torch.utils.flop_counter.FlopCounterMode`` on the eager model (convolutions and transposed
convolutions; int8/bf16 rows are "effective" GFLOP/s for the same work). The machine's reference is a
128 -> 128 channel 3 x 3 convolution of the same size, channels_last, float32 and bfloat16.

Accuracy: the max absolute difference of each variant's output from eager's on the timed input; for every
variant that differs by more than ``--psnr-threshold`` (default 1e-4), the paper-convention Y-PSNR through
``srdeblur.evaluation.evaluate`` (MATLAB-bicubic LR, 8-bit output, Y of BT.601, ``scale`` px shaved) on Set5
at the configuration's scale, against eager's in the same run. ``srndeblur`` is scored on the first
``--deblur-limit`` (8) of Levin et al.'s real blurred images (``levin``: aligned as ``srdeblur eval`` does).

Output: a Markdown table on stdout and JSON (rows with every timing, environment, arguments) in ``--out``.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib.util
import io
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from srdeblur.classical import blur
from srdeblur.degrade import add_gaussian_noise, bicubic_downscale, mod_crop, quantize_8bit
from srdeblur.evaluation import data_root, evaluate
from srdeblur.io import list_images, read_image
from srdeblur.kernels import gaussian_psf, motion_psf
from srdeblur.weights import load_model

VARIANTS = (
    "eager", "compile", "compile-freeze", "bf16", "bf16-mixed", "compile-bf16-mixed", "int8", "jit-fused",
    "onnxruntime",
)
# Run by default; "jit-fused" and "compile-bf16-mixed" only on request (--variants): measured slower than
# eager and than bf16-mixed respectively, and together they double the script's run time.
DEFAULT_VARIANTS = ("eager", "compile", "compile-freeze", "bf16", "bf16-mixed", "int8", "onnxruntime")
CONFIGS = ("lapsr-x2", "lapsr-x4", "srndeblur")
CALIBRATION_CROP = 256
Runner = Callable[[torch.Tensor], torch.Tensor]


# ----------------------------------------------------------------------------- configurations


@dataclass
class Config:
    """One network configuration: the loaded model, how to call it, and its timed input."""

    name: str
    model: nn.Module
    levels: int | None  # LapSR pyramid levels; None for SRNDeblur
    example: torch.Tensor  # (1, 3, size, size) channels_last

    @property
    def scale(self) -> int:
        return 2 ** self.levels if self.levels else 1


class LastOutput(nn.Module):
    """``model(x)[-1]`` (or ``model(x, levels)[-1]``): one tensor in, one out, for compile and export."""

    def __init__(self, model: nn.Module, levels: int | None) -> None:
        super().__init__()
        self.model = model
        self.levels = levels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.levels is None:
            return self.model(x)[-1]
        return self.model(x, self.levels)[-1]


def _train_crop(index: int, size: int) -> torch.Tensor:
    """A ``size`` x ``size`` crop of a BSD200 training image (not a benchmark image, not a calibration one)."""
    path = list_images(data_root() / "train" / "BSD200")[index]
    image = read_image(path).pixels
    if image.shape[1] == 1:
        image = image.expand(-1, 3, -1, -1)
    return image[..., :size, :size].contiguous()


def _blurred(image: torch.Tensor, psf: torch.Tensor, seed: int) -> torch.Tensor:
    noisy = add_gaussian_noise(blur(image, psf), 0.01, generator=torch.Generator().manual_seed(seed))
    return quantize_8bit(noisy.clamp(0, 1))


def build_configs(names: list[str], size: int) -> list[Config]:
    """The configurations, each on a ``size`` x ``size`` training-image crop (blurred for deblurring).

    The SR input is the crop itself: a natural image at the network's input size (an HR of 4 x 256 px
    would not fit in BSD200's 481 x 321 images; timing does not depend on the content).
    """
    configs = []
    for name in names:
        if name.startswith("lapsr"):
            model, levels = load_model("lapsr"), {"lapsr-x2": 1, "lapsr-x4": 2}[name]
            example = _train_crop(0, size)
        else:
            model, levels = load_model("srndeblur"), None
            example = _blurred(_train_crop(1, size), motion_psf(15, 30), seed=0)
        configs.append(Config(name, model, levels, example.contiguous(memory_format=torch.channels_last)))
    return configs


# ----------------------------------------------------------------------------- variants


class Autocast(nn.Module):
    """Run ``inner`` under bfloat16 autocast; return float32 when ``to_float`` (else keep bfloat16)."""

    def __init__(self, inner: nn.Module, *, to_float: bool) -> None:
        super().__init__()
        self.inner = inner
        self.to_float = to_float

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = self.inner(x)
        return y.float() if self.to_float else y


class Float32(nn.Module):
    """Run ``inner`` in float32 even inside an autocast region (its input is cast to float32)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", enabled=False):
            return self.inner(x.float())


def bf16_mixed_model(model: nn.Module) -> nn.Module:
    """A copy whose hidden feature convolutions run in bfloat16 and whose image path stays float32.

    The rule: the convolution that reads the image, the one that writes the image residual, and every
    image-domain operation stay float32. LapSR: ``embed`` and ``to_residual`` float32, ``body``,
    ``body_out`` and ``feature_up`` bfloat16 (features stay bfloat16 between them), added to the float32
    bilinear ``image_up``. SRNDeblur: the encoder-decoder runs in bfloat16 except ``head`` and ``tail``; the
    pyramid, ``estimate_up`` and the additions stay float32.
    """
    mixed = copy.deepcopy(model)
    if hasattr(mixed, "stage"):
        for name in ("body", "body_out", "feature_up"):
            setattr(mixed.stage, name, Autocast(getattr(mixed.stage, name), to_float=False))
        mixed.stage.to_residual = Float32(mixed.stage.to_residual)
    else:
        mixed.net.head = Float32(mixed.net.head)
        mixed.net.tail = Float32(mixed.net.tail)
        mixed.net = Autocast(mixed.net, to_float=True)
    return mixed


def _calibration_inputs(config: Config, count: int) -> list[tuple[torch.Tensor, int | None]]:
    """``(input, levels)`` pairs from the first ``count`` T91 images (training data only)."""
    paths = list_images(data_root() / "train" / "T91")[:count]
    pairs: list[tuple[torch.Tensor, int | None]] = []
    for index, path in enumerate(paths):
        image = read_image(path).pixels
        if image.shape[1] == 1:
            image = image.expand(-1, 3, -1, -1)
        image = image[..., :CALIBRATION_CROP, :CALIBRATION_CROP]  # activation ranges, not sizes, matter
        if config.levels is not None:
            # One quantized model serves x2 and x4: calibrate on both pyramid depths.
            for levels in (1, 2):
                lr = bicubic_downscale(mod_crop(image, 2**levels), 2**levels)
                pairs.append((lr.contiguous(memory_format=torch.channels_last), levels))
        else:
            multiple = config.model.multiple
            cropped = image[..., : image.shape[-2] // multiple * multiple, : image.shape[-1] // multiple * multiple]
            for k, psf in enumerate((motion_psf(11 + 4 * index, 25 * index), gaussian_psf(1.0 + 0.5 * index))):
                blurred = _blurred(cropped.contiguous(), psf, seed=10 * index + k)
                pairs.append((blurred.contiguous(memory_format=torch.channels_last), None))
    return pairs


def _no_inplace_quantized_leaky_relu(module: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """quantized::leaky_relu has no in-place form and warns on every call with ``inplace=True``."""
    for node in module.graph.nodes:
        if node.op == "call_function" and "leaky_relu" in str(node.target) and node.kwargs.get("inplace"):
            node.kwargs = {**node.kwargs, "inplace": False}
    module.recompile()
    return module


def int8_model(config: Config, calibration_count: int) -> nn.Module:
    """FX static int8 copy of the network (x86 backend), calibrated on training images.

    The networks' own ``forward`` checks shapes with Python ``if`` statements that FX cannot trace, so the
    traceable submodules are quantized (LapSR: ``embed`` and the shared ``stage``; SRNDeblur: the
    encoder-decoder ``net``) and the float glue around them stays as it is.
    """
    from torch.ao.quantization import HistogramObserver, QConfig, default_per_channel_weight_observer
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    torch.backends.quantized.engine = "x86"
    mapping = get_default_qconfig_mapping("x86")
    # x86's default halves the activation range (7 bits) against int16 overflow on CPUs without VNNI; with
    # VNNI (checked below) the full 8 bits are safe and measured 0.06 dB better on Set5 x2.
    if _cpu_has("avx512_vnni") or _cpu_has("avx_vnni"):
        mapping.set_global(QConfig(activation=HistogramObserver.with_args(reduce_range=False),
                                   weight=default_per_channel_weight_observer))
    quantized = copy.deepcopy(config.model)
    small = torch.rand(1, 3, 32, 32)
    if config.levels is not None:
        quantized.embed = prepare_fx(quantized.embed, mapping, (small,))
        features = torch.rand(1, quantized.config.channels, 32, 32)
        quantized.stage = prepare_fx(quantized.stage, mapping, (features, small))
        parts = ("embed", "stage")
    else:
        quantized.net = prepare_fx(quantized.net, mapping, (torch.rand(1, 6, 32, 32),))
        parts = ("net",)
    with torch.inference_mode():
        for example, levels in _calibration_inputs(config, calibration_count):
            quantized(example) if levels is None else quantized(example, levels)
    for part in parts:
        setattr(quantized, part, _no_inplace_quantized_leaky_relu(convert_fx(getattr(quantized, part))))
    return quantized.eval()


def _onnx_session(module: nn.Module, example: torch.Tensor, threads: int):
    """Export ``module`` at ``example``'s size (dynamo exporter) and open it in ONNX Runtime's CPU provider."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.onnx"
        chatter = io.StringIO()  # the exporter prints its progress
        with contextlib.redirect_stdout(chatter), contextlib.redirect_stderr(chatter), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, (example.contiguous(),), str(path), dynamo=True)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def onnx_runner(module: nn.Module, example: torch.Tensor, threads: int) -> Runner:
    """ONNX Runtime session exported at ``example``'s size; other sizes get their own export (for PSNR)."""
    sessions = {tuple(example.shape): _onnx_session(module, example, threads)}

    def run(x: torch.Tensor) -> torch.Tensor:
        shape = tuple(x.shape)
        if shape not in sessions:
            sessions[shape] = _onnx_session(module, x, threads)
        session = sessions[shape]
        feed = {session.get_inputs()[0].name: x.contiguous().numpy()}
        return torch.from_numpy(session.run(None, feed)[0])

    return run


def build_variant(name: str, config: Config, args: argparse.Namespace) -> Runner:
    """A function ``(1, 3, h, w) channels_last -> output`` for variant ``name`` (raises if unavailable)."""
    forward = LastOutput(config.model, config.levels).eval()
    if name == "eager":
        return forward
    if name in ("compile", "compile-freeze", "compile-bf16-mixed"):
        if not (os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")):
            raise RuntimeError("no C++ compiler (g++ / c++ / $CXX) for inductor's CPU backend")
        module = forward if name != "compile-bf16-mixed" else LastOutput(bf16_mixed_model(config.model), config.levels)
        options = {"freezing": True} if name != "compile" else None
        return torch.compile(module, backend="inductor", options=options)
    if name == "bf16":
        if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
            raise RuntimeError("this CPU has no native bfloat16 (oneDNN would emulate it)")
        return Autocast(forward, to_float=True)
    if name == "bf16-mixed":
        if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
            raise RuntimeError("this CPU has no native bfloat16 (oneDNN would emulate it)")
        return LastOutput(bf16_mixed_model(config.model), config.levels).eval()
    if name == "int8":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # FX quantization's deprecation notices
            return LastOutput(int8_model(config, args.calibration_images), config.levels).eval()
    if name == "jit-fused":
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(forward, config.example)
            return torch.jit.optimize_for_inference(torch.jit.freeze(traced))
    if name == "onnxruntime":
        if importlib.util.find_spec("onnxruntime") is None:
            raise RuntimeError(f"onnxruntime is not importable in {sys.executable} (not a project dependency; "
                               "see benchmarks/README.md)")
        return onnx_runner(forward, config.example, args.threads)
    raise ValueError(f"unknown variant {name!r}")


# ----------------------------------------------------------------------------- measuring


def _cpu_has(flag: str) -> bool:
    try:
        return flag in Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False


def one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text[:240]}"


def count_flops(config: Config) -> int:
    forward = LastOutput(config.model, config.levels)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        forward(config.example)
    return int(counter.get_total_flops())


def reference_conv(size: int, repeat: int) -> dict[str, float]:
    """GFLOP/s of a 128 -> 128 channel 3x3 convolution of ``size`` x ``size`` (float32, bfloat16)."""
    conv = nn.Conv2d(128, 128, 3, padding=1).to(memory_format=torch.channels_last).eval()
    x = torch.rand(1, 128, size, size).contiguous(memory_format=torch.channels_last)
    flops = 2 * 128 * 128 * 9 * size * size
    result = {}
    with torch.inference_mode():
        for label, context in (("float32", contextlib.nullcontext), ("bfloat16", None)):
            if context is None:
                if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
                    continue
                context = lambda: torch.autocast("cpu", dtype=torch.bfloat16)  # noqa: E731
            with context():
                conv(x)
                times = []
                for _ in range(repeat):
                    started = time.perf_counter()
                    conv(x)
                    times.append(time.perf_counter() - started)
            result[label] = flops / statistics.median(times) / 1e9
    return result


@dataclass
class Row:
    config: str
    variant: str
    gflop: float = 0.0  # per forward, counted on eager
    build_seconds: float = 0.0  # build + 2 warm-up calls (compile, export, calibration)
    times: list[float] = field(default_factory=list)
    seconds: float | None = None
    gflops_per_second: float | None = None
    speedup: float | None = None
    max_abs_diff: float | None = None
    psnr: float | None = None
    psnr_delta: float | None = None
    error: str | None = None


def _model_like(runner: Runner, config: Config):
    """What ``srdeblur.inference`` calls (``model(x, levels)`` / ``model(x)`` with ``.multiple``) -> [output]."""
    if config.levels is not None:
        def sr(x: torch.Tensor, levels: int) -> list[torch.Tensor]:
            if levels != config.levels:
                raise ValueError(f"built for {config.levels} levels, called with {levels}")
            return [runner(x)]

        return sr

    class Deblur:
        multiple = config.model.multiple

        def __call__(self, x: torch.Tensor) -> list[torch.Tensor]:
            return [runner(x)]

    return Deblur()


def score(runner: Runner, config: Config, args: argparse.Namespace) -> float:
    """Mean Y-PSNR (dB) through srdeblur.evaluation: Set5 at the config's scale, or Levin's first images."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if config.levels is not None:
            result = evaluate("set5", scale=config.scale, methods=("net",), models={"sr": _model_like(runner, config)})
        else:
            result = evaluate("levin", task="deblur", methods=("net",), limit=args.deblur_limit,
                              models={"deblur": _model_like(runner, config)})
    return float(result.summary()["net"]["psnr"])


def measure_config(config: Config, variants: list[str], args: argparse.Namespace, log) -> list[Row]:
    flops = count_flops(config)
    rows: dict[str, Row] = {}
    runners: dict[str, Runner] = {}
    with torch.inference_mode():
        reference = LastOutput(config.model, config.levels)(config.example)
    for name in variants:
        row = rows[name] = Row(config.name, name, gflop=flops / 1e9)
        started = time.perf_counter()
        try:
            runner = build_variant(name, config, args)
            with torch.inference_mode():
                for _ in range(2):  # compile / export / first-call allocations happen here, untimed
                    output = runner(config.example)
            row.max_abs_diff = float((output.float() - reference).abs().max())
            runners[name] = runner
        except Exception as error:  # report any backend failure in one line and go on
            row.error = one_line(error)
        row.build_seconds = time.perf_counter() - started
        log(f"  {config.name:10s} {name:20s} built in {row.build_seconds:6.1f} s"
            + (f"  FAILED {row.error}" if row.error else f"  max|diff| {row.max_abs_diff:.2e}"))
    with torch.inference_mode():
        for _ in range(args.repeat):
            for name, runner in runners.items():
                started = time.perf_counter()
                runner(config.example)
                rows[name].times.append(time.perf_counter() - started)
    eager = statistics.median(rows["eager"].times) if rows.get("eager") and rows["eager"].times else None
    for row in rows.values():
        if row.times:
            row.seconds = statistics.median(row.times)
            row.gflops_per_second = flops / row.seconds / 1e9
            row.speedup = eager / row.seconds if eager else None
    if "eager" in runners:
        baseline = score(runners["eager"], config, args)
        rows["eager"].psnr = baseline
        for name, runner in runners.items():
            row = rows[name]
            if name == "eager" or row.max_abs_diff is None or row.max_abs_diff <= args.psnr_threshold:
                continue
            started = time.perf_counter()
            try:
                row.psnr = score(runner, config, args)
                row.psnr_delta = row.psnr - baseline
            except Exception as error:
                row.error = f"PSNR: {one_line(error)}"
            log(f"  {config.name:10s} {name:20s} PSNR {_fmt(row.psnr, '.4f')} (eager {baseline:.4f}) "
                f"in {time.perf_counter() - started:.1f} s")
    return list(rows.values())


# ----------------------------------------------------------------------------- report


def _fmt(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def render_markdown(report: dict[str, Any]) -> str:
    env = report["environment"]
    lines = [
        f"# Inference backends ({env['threads']} threads, {report['arguments']['size']}x"
        f"{report['arguments']['size']} input, median of {report['arguments']['repeat']} interleaved runs)",
        "",
        f"torch {env['torch']}, onnxruntime {env['onnxruntime'] or 'not installed'}, CPU capability "
        f"{env['cpu_capability']}, load average {env['load_average_start']} -> {env['load_average_end']}.",
        "Reference 128->128 3x3 conv: "
        + ", ".join(f"{dtype} {rate:.1f} GFLOP/s" for dtype, rate in report["reference_conv"].items()) + ".",
        "",
        "| model | GFLOP | variant | s / forward | GFLOP/s | x eager | max abs diff | Y-PSNR (dB) | Δ PSNR "
        "| build s | note |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in report["rows"]:
        psnr_label = _fmt(row["psnr"], ".4f")
        lines.append(
            f"| {row['config']} | {row['gflop']:.1f} | {row['variant']} | {_fmt(row['seconds'], '.3f')} | "
            f"{_fmt(row['gflops_per_second'], '.1f')} | {_fmt(row['speedup'], '.2f')} | "
            f"{_fmt(row['max_abs_diff'], '.1e')} | {psnr_label} | {_fmt(row['psnr_delta'], '+.4f')} | "
            f"{row['build_seconds']:.1f} | {row['error'] or ''} |"
        )
    lines += ["", "PSNR: lapsr on Set5 at its scale, srndeblur on the first "
              f"{report['arguments']['deblur_limit']} Levin blurred images (aligned); shown for eager and for "
              f"variants whose output differs from eager's by more than {report['arguments']['psnr_threshold']:g}."]
    return "\n".join(lines)


def environment(threads: int) -> dict[str, Any]:
    try:
        import onnxruntime

        ort_version = onnxruntime.__version__
    except ImportError:
        ort_version = None
    return {
        "python": sys.version.split()[0],
        "executable": sys.executable,
        "torch": torch.__version__,
        "onnxruntime": ort_version,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "bf16_native": bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()),
        "vnni": _cpu_has("avx512_vnni") or _cpu_has("avx_vnni"),
        "cxx": os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++"),
        "threads": threads,
        "load_average_start": [round(v, 2) for v in os.getloadavg()],
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="torch and ONNX Runtime intra-op threads")
    parser.add_argument("--repeat", type=int, default=5, help="timed interleaved rounds (median; >= 5)")
    parser.add_argument("--size", type=int, default=256, help="side of the timed input")
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=CONFIGS)
    parser.add_argument("--variants", nargs="+", default=list(DEFAULT_VARIANTS), choices=VARIANTS,
                        help="eager is always run (the baseline); default: all but jit-fused, compile-bf16-mixed")
    parser.add_argument("--calibration-images", type=int, default=4, help="T91 images for int8 calibration")
    parser.add_argument("--psnr-threshold", type=float, default=1e-4,
                        help="score variants whose max abs output difference exceeds this")
    parser.add_argument("--deblur-limit", type=int, default=8, help="Levin images to score srndeblur on")
    parser.add_argument("--out", type=Path, default=Path("/tmp/bench_backends.json"))
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch._dynamo.config.cache_size_limit = 64  # one entry per variant, config and (for PSNR) input size
    variants = ["eager"] + [v for v in args.variants if v != "eager"]
    log = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731
    started = time.perf_counter()
    report: dict[str, Any] = {"environment": environment(args.threads),
                              "arguments": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}}
    report["reference_conv"] = reference_conv(args.size, args.repeat)
    rows = []
    for config in build_configs(args.configs, args.size):
        log(f"{config.name}: input {tuple(config.example.shape)}")
        rows += [row.__dict__ for row in measure_config(config, variants, args, log)]
        torch._dynamo.reset()  # free the compiled graphs of this configuration
    report["rows"] = rows
    report["environment"]["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
    report["environment"]["total_seconds"] = round(time.perf_counter() - started, 1)
    print(render_markdown(report))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    log(f"wrote {args.out} in {report['environment']['total_seconds']} s")


if __name__ == "__main__":
    main()
