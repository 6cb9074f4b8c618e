"""Time-boxed, resumable, deterministic training on a CPU (DistributedDataParallel-aware).

The loop is the same for every task; a task only says how to make a batch from ground-truth images and
how to build its network. Every batch is drawn from a generator seeded by ``(seed, step, rank)``, so a run
resumed from a checkpoint sees exactly the batches an uninterrupted run would have seen.

Checkpoints are safetensors (model, Adam moments, step) plus a JSON sidecar (config, history, CPU time);
nothing is pickled.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterator

import torch
from torch import nn
from torch.nn import functional as F

from srdeblur.degrade import add_gaussian_noise, bicubic_downscale, mod_crop, quantize_8bit
from srdeblur.inference import uses_bfloat16
from srdeblur.io import list_images, read_image
from srdeblur.kernels import disk_psf, gaussian_psf, random_motion_psf
from srdeblur.metrics import psnr
from srdeblur.nets import DeblurConfig, LapSR, SRConfig, SRNDeblur, count_parameters, load_grown
from srdeblur.weights import load_tensors, save_tensors

log = logging.getLogger(__name__)

__all__ = ["TrainConfig", "train", "load_training_images", "make_sr_batch", "make_deblur_batch", "charbonnier",
           "frequency_l1", "training_loss"]


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (saved in every checkpoint).

    patch : SR: HR patch side for x2 and x4 (x8 uses ``patch * 4 / 3``, so its LR patch is 16 px);
        deblur: sharp patch side (a multiple of 16).
    total_steps : length of the cosine learning-rate schedule; a run may stop earlier (``minutes``) and resume.
    scale_probabilities : how often each SR scale (2, 4, 8) is drawn for a step.
    max_kernel / curriculum : deblur: largest blur kernel side (odd); it grows linearly from 7 px to
        ``max_kernel`` over the first ``curriculum`` fraction of ``total_steps`` (small blurs first; 0: none,
        for fine-tunes of weights that already know large blurs).
    max_noise : deblur: noise sigma drawn uniformly in [0, max_noise] (on the [0, 1] scale).
    frequency_loss : weight of :func:`frequency_l1` beside the Charbonnier loss at every output (0: off).
    val_every : steps between validations on held-out images; the best model is kept.
    val_fraction : every n-th training image (sorted by path) is held out for validation.
    precision : ``"auto"``: forward passes under bfloat16 autocast where the CPU computes bfloat16 natively
        (hidden layers only; the image path, the loss, the weights and Adam stay float32; measured 1.65x
        (SR) and 1.74x (deblur) CPU time per step); ``"float32"``: everything in float32.
    """

    task: str = "sr"
    data: tuple[str, ...] = ()
    out: str = "runs/sr"
    seed: int = 0
    batch: int = 16
    patch: int = 96
    learning_rate: float = 5e-4
    min_learning_rate: float = 1e-6
    warmup_steps: int = 300
    total_steps: int = 60_000
    grad_clip: float = 0.5
    scale_probabilities: tuple[float, float, float] = (0.4, 0.4, 0.2)
    val_every: int = 500
    val_fraction: int = 29
    val_crop: int = 192
    max_kernel: int = 31
    curriculum: float = 0.3
    max_noise: float = 0.02
    frequency_loss: float = 0.0
    channels_last: bool = True
    threads: int = 0  # 0: torch's default (one per core)
    precision: str = "auto"
    sr: SRConfig = field(default_factory=SRConfig)
    deblur: DeblurConfig = field(default_factory=DeblurConfig)


# ----------------------------------------------------------------------------- data


def load_training_images(folders: tuple[str, ...], *, val_fraction: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Read every image under ``folders`` as ``(3, H, W)`` uint8 tensors (compact in memory).

    Returns (train, validation): every ``val_fraction``-th image, in sorted path order, is held out.
    """
    paths = sorted(p for folder in folders for p in list_images(folder, recursive=True))
    if not paths:
        raise ValueError(f"no training images found under {', '.join(folders)}")
    train_images, val_images = [], []
    for index, path in enumerate(paths):
        pixels = read_image(path).pixels[0]
        if pixels.shape[0] == 1:
            pixels = pixels.expand(3, -1, -1)
        as_uint8 = torch.round(pixels * 255).to(torch.uint8)
        (val_images if index % val_fraction == val_fraction - 1 else train_images).append(as_uint8)
    return train_images, val_images


def random_patches(
    images: list[torch.Tensor], count: int, size: int, *, generator: torch.Generator
) -> torch.Tensor:
    """``count`` random ``size``-square crops with random flips/90-degree rotations -> (count, 3, size, size) in [0, 1]."""
    crops = []
    eligible = [img for img in images if min(img.shape[-2:]) >= size]
    if not eligible:
        raise ValueError(f"no training image is at least {size} px on its short side")
    for _ in range(count):
        image = eligible[int(torch.randint(len(eligible), (1,), generator=generator))]
        top = int(torch.randint(image.shape[1] - size + 1, (1,), generator=generator))
        left = int(torch.randint(image.shape[2] - size + 1, (1,), generator=generator))
        crop = image[:, top : top + size, left : left + size]
        flips = torch.randint(2, (3,), generator=generator).tolist()
        if flips[0]:
            crop = crop.flip(-1)
        if flips[1]:
            crop = crop.flip(-2)
        if flips[2]:
            crop = crop.transpose(-1, -2)
        crops.append(crop)
    return torch.stack(crops).float() / 255


def make_sr_batch(
    images: list[torch.Tensor], config: TrainConfig, *, generator: torch.Generator
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """One SR training batch: LR input and the target at every pyramid level.

    Returns ``lr`` (B, 3, h, w) 8-bit-quantised MATLAB-bicubic downscale, and targets
    ``[(B, 3, 2h, 2w), ..., (B, 3, H, W)]`` (the HR patch downscaled to each level).
    """
    probabilities = torch.tensor(config.scale_probabilities, dtype=torch.float64)
    levels = int(torch.multinomial(probabilities, 1, generator=generator)) + 1
    scale = 2**levels
    size = config.patch if levels < 3 else (config.patch * 4 // 3) // 8 * 8
    hr = random_patches(images, config.batch, size, generator=generator)
    lr = bicubic_downscale(hr, scale)
    targets = [bicubic_downscale(hr, 2 ** (levels - level), quantize=False) if level < levels else hr
               for level in range(1, levels + 1)]
    return lr, targets


def kernel_size_at(step: int, config: TrainConfig) -> int:
    """Curriculum: the largest kernel side at ``step`` (odd, from 7 to ``max_kernel``; ``max_kernel`` throughout
    if ``config.curriculum`` is 0)."""
    if config.curriculum <= 0:
        return config.max_kernel
    progress = min(1.0, step / max(1.0, config.curriculum * config.total_steps))
    size = 7 + progress * (config.max_kernel - 7)
    return int(size) // 2 * 2 + 1


def random_blur_kernel(size: int, *, generator: torch.Generator) -> torch.Tensor:
    """A training blur no larger than ``size``: camera shake (70%), defocus disk (15%) or Gaussian (15%)."""
    kind, amount = torch.rand(2, generator=generator).tolist()
    if kind < 0.7:
        return random_motion_psf(size, generator=generator)
    if kind < 0.85:
        return disk_psf(1.0 + amount * (size // 2 - 1.5))
    return gaussian_psf(0.5 + amount * (size / 6 - 0.5), size=size)


def make_deblur_batch(
    images: list[torch.Tensor], config: TrainConfig, *, step: int, generator: torch.Generator
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """One deblurring batch: blurred, noisy, 8-bit input and the sharp target at every pyramid scale.

    Each sharp patch is cut with a margin, convolved with its own random kernel (one grouped convolution
    for the batch, 'valid' so no border is invented) and cropped to ``patch``. Targets are the sharp patch
    average-pooled like the network's input pyramid: ``[(B,3,P/4,P/4), (B,3,P/2,P/2), (B,3,P,P)]``.
    """
    size = kernel_size_at(step, config)
    margin = config.max_kernel // 2
    sharp = random_patches(images, config.batch, config.patch + 2 * margin, generator=generator)
    kernels = torch.zeros(config.batch, config.max_kernel, config.max_kernel)
    for index in range(config.batch):
        kernel = random_blur_kernel(size, generator=generator)
        kh, kw = kernel.shape
        top, left = (config.max_kernel - kh) // 2, (config.max_kernel - kw) // 2
        kernels[index, top : top + kh, left : left + kw] = kernel.flip(0, 1)  # conv2d correlates
    weight = kernels.repeat_interleave(3, dim=0)[:, None]
    blurred = F.conv2d(sharp.reshape(1, -1, *sharp.shape[-2:]), weight, groups=3 * config.batch)
    blurred = blurred.reshape(config.batch, 3, config.patch, config.patch)
    sigma = torch.rand(config.batch, generator=generator) * config.max_noise
    blurred = quantize_8bit(add_gaussian_noise(blurred, sigma, generator=generator))
    target = sharp[..., margin : margin + config.patch, margin : margin + config.patch]
    targets = [target]
    for _ in range(config.deblur.scales - 1):
        targets.insert(0, F.avg_pool2d(targets[0], 2))
    return blurred, targets


def validation_kernels(count: int = 6, *, size: int = 31) -> list[torch.Tensor]:
    """Fixed validation blurs (seeded, never the Levin kernels): 4 camera shakes, a disk and a Gaussian."""
    generator = torch.Generator().manual_seed(20261122)
    shakes = [random_motion_psf(size, generator=generator) for _ in range(count - 2)]
    return shakes + [disk_psf(4.0), gaussian_psf(2.0)]


def charbonnier(prediction: torch.Tensor, target: torch.Tensor, *, eps: float = 1e-3) -> torch.Tensor:
    """Mean Charbonnier (smooth L1) loss ``sqrt((x - y)^2 + eps^2)``."""
    return torch.sqrt((prediction - target) ** 2 + eps * eps).mean()


def frequency_l1(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of the orthonormal 2-D Fourier coefficients (real and imaginary parts),
    ``(B, C, H, W)`` each (MIMO-UNet's frequency loss, Cho et al. 2021).

    Why: a pixel loss lets a network that cannot identify a blur settle for the smooth mean of the
    images it could be; every Fourier coefficient counts alike here, so lost fine detail (many small
    high-frequency coefficients) costs as much as a wrong large one. Orthonormal, so the value does not
    grow with the patch size (Parseval: the sums of squares equal the pixels').
    """
    difference = torch.fft.rfft2(prediction.float() - target.float(), norm="ortho")
    return torch.view_as_real(difference).abs().mean()


def training_loss(outputs: list[torch.Tensor], targets: list[torch.Tensor], *, frequency_weight: float) -> torch.Tensor:
    """Sum over the pyramid levels of Charbonnier + ``frequency_weight`` x :func:`frequency_l1`."""
    loss = torch.zeros(())
    for output, target in zip(outputs, targets, strict=True):
        loss = loss + charbonnier(output.float(), target)
        if frequency_weight:
            loss = loss + frequency_weight * frequency_l1(output, target)
    return loss


# ----------------------------------------------------------------------------- schedule and checkpoints


def learning_rate_at(step: int, config: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to ``min_learning_rate`` at ``total_steps``."""
    if step < config.warmup_steps:
        return config.learning_rate * (step + 1) / config.warmup_steps
    progress = min(1.0, (step - config.warmup_steps) / max(1, config.total_steps - config.warmup_steps))
    return config.min_learning_rate + 0.5 * (config.learning_rate - config.min_learning_rate) * (1 + math.cos(math.pi * progress))


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    tensors = {}
    for index, state in optimizer.state_dict()["state"].items():
        for key, value in state.items():
            tensors[f"optimizer.{index}.{key}"] = torch.as_tensor(value)
    return tensors


def _load_optimizer_tensors(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor]) -> None:
    state_dict = optimizer.state_dict()
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, value in tensors.items():
        if name.startswith("optimizer."):
            _, index, key = name.split(".", 2)
            state.setdefault(int(index), {})[key] = value
    state_dict["state"] = state
    optimizer.load_state_dict(state_dict)


def save_checkpoint(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, info: dict) -> None:
    """Model + optimizer tensors in ``path`` (safetensors) and ``info`` in ``path.with_suffix('.json')``."""
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    tensors.update(_optimizer_tensors(optimizer))
    save_tensors(path, tensors)
    sidecar = path.with_suffix(".json")
    temporary = sidecar.with_name(f".{sidecar.name}.tmp")
    temporary.write_text(json.dumps(info, indent=1))
    os.replace(temporary, sidecar)


def load_checkpoint(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer | None) -> dict:
    tensors = load_tensors(path)
    model.load_state_dict({k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")})
    if optimizer is not None:
        _load_optimizer_tensors(optimizer, tensors)
    return json.loads(path.with_suffix(".json").read_text())


def config_from_dict(data: dict) -> TrainConfig:
    data = dict(data)
    data["sr"] = SRConfig(**data.get("sr", {}))
    data["deblur"] = DeblurConfig(**data.get("deblur", {}))
    for key in ("data", "scale_probabilities"):
        if key in data:
            data[key] = tuple(data[key])
    return TrainConfig(**data)


# ----------------------------------------------------------------------------- validation


@torch.inference_mode()
def validate_sr(model: LapSR, images: list[torch.Tensor], *, crop: int) -> dict[str, float]:
    """Mean Y-PSNR (paper conventions) at x2 and x4 on centre crops of the held-out images."""
    results = {}
    for scale in (2, 4):
        values = []
        for image in images:
            top = max(0, (image.shape[1] - crop) // 2)
            left = max(0, (image.shape[2] - crop) // 2)
            hr = image[None, :, top : top + crop, left : left + crop].float() / 255
            hr = mod_crop(hr, scale)
            sr = model(bicubic_downscale(hr, scale), LapSR.levels_for_scale(scale))[-1]
            values.append(float(psnr(sr.clamp(0, 1), hr, shave=scale)[0]))
        results[f"x{scale}"] = sum(values) / len(values)
    return results


@torch.inference_mode()
def validate_deblur(model: SRNDeblur, images: list[torch.Tensor], *, crop: int) -> dict[str, float]:
    """Mean Y-PSNR of the deblurred result and of the blurred input on held-out centre crops, over fixed
    validation kernels with 1% noise: ``{"psnr": ..., "input": ..., "gain": ...}``."""
    from srdeblur.classical import blur

    outputs, inputs = [], []
    crop = crop // model.multiple * model.multiple
    for index, image in enumerate(images):
        top, left = max(0, (image.shape[1] - crop) // 2), max(0, (image.shape[2] - crop) // 2)
        sharp = image[None, :, top : top + crop, left : left + crop].float() / 255
        sharp = mod_crop(sharp, model.multiple)
        for k, kernel in enumerate(validation_kernels()):
            generator = torch.Generator().manual_seed(1000 * index + k)
            blurred = quantize_8bit(add_gaussian_noise(blur(sharp, kernel), 0.01, generator=generator))
            restored = model(blurred)[-1].clamp(0, 1)
            outputs.append(float(psnr(restored, sharp)[0]))
            inputs.append(float(psnr(blurred, sharp)[0]))
    mean_out, mean_in = sum(outputs) / len(outputs), sum(inputs) / len(inputs)
    return {"psnr": mean_out, "input": mean_in, "gain": mean_out - mean_in}


# ----------------------------------------------------------------------------- the loop


class _StopFlag:
    """Set by SIGTERM/SIGINT during training so the loop ends after the current step and saves."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, object] = {}

    def __call__(self, signum, frame) -> None:  # signal handler
        self.requested = True

    def restore(self) -> None:
        import signal

        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


def _install_stop_handler() -> _StopFlag:
    import signal
    import threading

    flag = _StopFlag()
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            flag._previous[signum] = signal.signal(signum, flag)
    return flag


def _distributed() -> tuple[int, int]:
    """(rank, world size); initialises the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("gloo" if not torch.cuda.is_available() else "nccl")
    rank = torch.distributed.get_rank() if world > 1 else 0
    return rank, world


def _init_record(path: Path) -> dict:
    """What the starting weights of a fine-tune had cost: file, steps and CPU-hours from their manifest."""
    manifest_path = path.with_suffix(".json")
    training = json.loads(manifest_path.read_text()).get("training", {}) if manifest_path.is_file() else {}
    return {"file": path.name, "steps": int(training.get("steps", 0)),
            "cpu_hours": float(training.get("cpu_hours", 0.0))}


def train(
    config: TrainConfig,
    *,
    minutes: float | None = None,
    resume: bool = False,
    max_steps: int | None = None,
    init: str | os.PathLike | None = None,
    on_progress: Callable[[dict], None] | None = None,
) -> dict:
    """Train until ``total_steps``, ``max_steps`` (this call) or ``minutes`` of wall time, whichever first.

    ``init`` starts a new run from the model tensors of a safetensors file (e.g. the shipped
    ``weights/lapsr.safetensors``), ignored when ``resume`` finds a checkpoint.

    Writes ``{out}/last.safetensors`` (resumable) and ``{out}/best.safetensors`` (best validation) with
    JSON sidecars. Returns the final info dict (step, history, CPU seconds, best validation).
    """
    if config.task not in ("sr", "deblur"):
        raise ValueError(f"unknown task {config.task!r}; expected 'sr' or 'deblur'")
    bfloat16 = uses_bfloat16(config.precision)
    rank, world = _distributed()
    if config.threads:
        torch.set_num_threads(config.threads)
    out = Path(config.out)
    last_path, best_path = out / "last.safetensors", out / "best.safetensors"

    torch.manual_seed(config.seed)  # the initial weights
    model: nn.Module = LapSR(config.sr) if config.task == "sr" else SRNDeblur(config.deblur)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    info = {"step": 0, "cpu_seconds": 0.0, "wall_seconds": 0.0, "history": [], "best": None,
            "params": count_parameters(model), "init": None}
    if resume and last_path.exists():
        stored = load_checkpoint(last_path, model, optimizer)
        if stored["config"] != json.loads(json.dumps(asdict(config))):
            log.warning("resuming with a changed config; the stored one was %s", stored["config"])
        info = {k: stored[k] for k in info if k in stored}
    elif init is not None:
        # Fine-tune from shipped weights (model tensors only: a new optimizer and schedule start at step 0).
        fresh = load_grown(model, load_tensors(Path(init)))
        if fresh:
            log.info("grown from %s: %d tensors start as the identity", init, len(fresh))
        info["init"] = _init_record(Path(init))
    info["config"] = asdict(config)
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    trainee: nn.Module = model
    if world > 1:
        trainee = nn.parallel.DistributedDataParallel(model)

    train_images, val_images = load_training_images(config.data, val_fraction=config.val_fraction)
    started, cpu_started = time.monotonic(), time.process_time()
    wall_base, cpu_base = info["wall_seconds"], info["cpu_seconds"]
    steps_this_call = 0
    stop = _install_stop_handler()

    # CPU time of every process (under torchrun, rank 0's alone would undercount): summed at each step.
    all_ranks_cpu = 0.0

    def cpu_seconds() -> float:
        return cpu_base + (all_ranks_cpu if world > 1 else time.process_time() - cpu_started)

    def clock() -> None:
        info["wall_seconds"] = wall_base + time.monotonic() - started
        info["cpu_seconds"] = cpu_seconds()

    def checkpoint() -> None:
        clock()
        if rank == 0:
            save_checkpoint(last_path, model, optimizer, info)

    try:
        while info["step"] < config.total_steps:
            step = info["step"]
            generator = torch.Generator().manual_seed(config.seed * 1_000_003 + step * 7919 + rank)
            if config.task == "sr":
                inputs, targets = make_sr_batch(train_images, config, generator=generator)
            else:
                inputs, targets = make_deblur_batch(train_images, config, step=step, generator=generator)
            inputs = inputs.contiguous(memory_format=memory_format)
            for group in optimizer.param_groups:
                group["lr"] = learning_rate_at(step, config)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bfloat16):
                outputs = trainee(inputs, len(targets)) if config.task == "sr" else trainee(inputs)
            loss = training_loss(outputs, targets, frequency_weight=config.frequency_loss)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            info["step"] = step + 1
            steps_this_call += 1

            time_up = stop.requested or (minutes is not None and time.monotonic() - started > minutes * 60)
            if max_steps is not None and steps_this_call >= max_steps:
                time_up = True
            if world > 1:  # every rank must stop at the same step
                shared = torch.tensor([float(time_up), time.process_time() - cpu_started], dtype=torch.float64)
                torch.distributed.all_reduce(shared)
                time_up, all_ranks_cpu = bool(shared[0] > 0), float(shared[1])
            at_validation = info["step"] % config.val_every == 0 or info["step"] == config.total_steps
            if rank == 0 and at_validation and val_images:
                model.eval()
                if config.task == "sr":
                    scores = validate_sr(model, val_images, crop=config.val_crop)
                    score = (scores["x2"] + scores["x4"]) / 2
                else:
                    scores = validate_deblur(model, val_images, crop=config.val_crop)
                    score = scores["psnr"]
                model.train()
                cpu = cpu_seconds()
                wall = wall_base + time.monotonic() - started
                entry = {"step": info["step"], "cpu_hours": cpu / 3600, "wall_hours": wall / 3600,
                         "loss": float(loss.detach()), **scores}
                info["history"].append(entry)
                if info["best"] is None or score > info["best"]["score"]:
                    info["best"] = {**entry, "score": score}
                    clock()  # the best checkpoint records the CPU time spent up to it
                    save_checkpoint(best_path, model, optimizer, {**info, "config": asdict(config)})
                checkpoint()
                if on_progress:
                    on_progress(entry)
            if time_up:
                break
    finally:
        stop.restore()
    checkpoint()
    if world > 1:
        torch.distributed.barrier()
    return info


# ----------------------------------------------------------------------------- export


def export_weights(run: Path, name: str, *, folder: Path | None = None, checkpoint: str = "best") -> dict:
    """Write the model of ``run/<checkpoint>.safetensors`` as shipped weights ``<folder>/<name>.safetensors``
    (model tensors only, float32) with its manifest ``<name>.json``; returns the manifest.

    The manifest holds the architecture config, sha256, parameter count, and the training data, recipe,
    steps, CPU-hours and validation curve; ``metrics`` (measured with ``srdeblur eval``) is kept from an
    existing manifest of the same weights or left empty.
    """
    from srdeblur.weights import read_manifest, sha256_file, weights_dir

    folder = Path(folder or weights_dir())
    source = Path(run) / f"{checkpoint}.safetensors"
    info = json.loads(source.with_suffix(".json").read_text())
    config = config_from_dict(info["config"])
    tensors = {k[len("model."):]: v for k, v in load_tensors(source).items() if k.startswith("model.")}
    inherited = info.get("init") or {"steps": 0, "cpu_hours": 0.0}
    model = LapSR(config.sr) if config.task == "sr" else SRNDeblur(config.deblur)
    model.load_state_dict(tensors)  # proves the tensors rebuild the network before anything is written
    target = folder / f"{name}.safetensors"
    save_tensors(target, model.state_dict(), metadata={"name": name, "task": config.task})
    previous = {}
    if (folder / f"{name}.json").is_file():
        previous = read_manifest(name, folder=folder)
    architecture = "lapsr" if config.task == "sr" else "srndeblur"
    manifest = {
        "name": name,
        "task": config.task,
        "architecture": architecture,
        "file": target.name,
        "sha256": sha256_file(target),
        "config": asdict(config.sr if config.task == "sr" else config.deblur),
        "scales": [2, 3, 4, 8] if config.task == "sr" else [1],
        "params": count_parameters(model),
        "training": {
            "data": list(config.data),
            "held_out_for_validation": f"every {config.val_fraction}th image in sorted path order",
            # A fine-tune's totals include what its starting weights had cost (``init``).
            "steps": info["step"] + inherited["steps"],
            "checkpoint_step": info.get("best", {}).get("step", info["step"]) if checkpoint == "best" else info["step"],
            "cpu_hours": round(info["cpu_seconds"] / 3600 + inherited["cpu_hours"], 3),
            "wall_hours": round(info["wall_seconds"] / 3600, 3),
            "fine_tuned_from": info.get("init"),
            "seed": config.seed,
            "recipe": {k: v for k, v in asdict(config).items() if k not in ("data", "out", "sr", "deblur")},
            "validation_curve": info["history"],
        },
        "metrics": previous.get("metrics", {}) if previous.get("sha256") == sha256_file(target) else {},
        "created": time.strftime("%Y-%m-%d"),
    }
    temporary = folder / f".{name}.json.tmp"
    temporary.write_text(json.dumps(manifest, indent=1) + "\n")
    os.replace(temporary, folder / f"{name}.json")
    return manifest
