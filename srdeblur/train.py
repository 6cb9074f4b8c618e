"""Time-boxed, resumable training on the CPU (deterministic) or a GPU (DistributedDataParallel-aware).

The loop is the same for every task; a task only says how to make a batch from ground-truth images and
how to build its network. Every batch is drawn on the CPU from a generator seeded by ``(seed, step, rank)``
and then moved to the training device, so a run resumed from a checkpoint sees exactly the batches an
uninterrupted run would have seen. On the CPU a resumed run is bit-exact; on CUDA the batches are the same
but cuDNN's kernels and mixed precision are not bit-reproducible.

Checkpoints are safetensors of CPU tensors (model, Adam moments, step; loadable without a GPU) plus a JSON
sidecar (config, history, CPU and device time, the device type); nothing is pickled.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, ContextManager, Mapping, Sequence, TypeVar

import torch
from torch import nn
from torch.nn import functional as F

from srdeblur.devices import DeviceError, default_device, distributed_shard, parse_device
from srdeblur.inference import uses_bfloat16
from srdeblur.nets import (DeblurConfig, DeconvConfig, DegradationGate, GateConfig, LapSR, SRConfig, SRNDeblur,
                           USRDeconv, count_parameters, load_grown,
                           resample_iterations)
from srdeblur.training_data import (TRAINING_DEGRADATIONS, kernel_size_at, load_training_images, make_deblur_batch,
                                    make_blurgate_batch, make_gate_batch, make_nonblind_batch, make_sr_batch, perturb_psf, random_blur_kernel,
                                    random_nonblind_psf, random_patches, realistic_lr, validate_blurgate, validate_deblur, validate_gate,
                                    validate_nonblind, validate_sr, validation_kernels)
from srdeblur.weights import load_tensors, save_tensors

log = logging.getLogger(__name__)
T = TypeVar("T")

# The batch makers and validations live in srdeblur.training_data; their names stay importable from here.
__all__ = ["TrainConfig", "train", "training_device", "autocast_dtype", "export_weights", "build_model", "charbonnier",
           "log_charbonnier", "frequency_l1", "training_loss",
           "load_training_images", "make_sr_batch", "make_deblur_batch", "make_nonblind_batch", "make_gate_batch",
           "realistic_lr", "random_patches", "random_blur_kernel", "random_nonblind_psf", "perturb_psf",
           "kernel_size_at", "validation_kernels", "validate_sr", "validate_deblur", "validate_nonblind",
           "validate_gate", "TRAINING_DEGRADATIONS"]


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
    degradation : SR inputs: ``"bicubic"`` (MATLAB bicubic of clean images, the papers') or ``"realistic"``
        (per patch: clean bicubic with probability ``clean_fraction``, else :data:`TRAINING_DEGRADATIONS`'s
        mild (35 %) or strong (65 %) two-round blur / resize / noise / JPEG, stages shuffled 30 % of the time;
        ``noisy_fraction`` of the degraded patches: bicubic plus white noise alone, see :func:`realistic_lr`).
    precision : ``"auto"``: forward passes under bfloat16 autocast where the CPU computes bfloat16 natively
        (hidden layers only; the image path, the loss, the weights and Adam stay float32; measured 1.65x
        (SR) and 1.74x (deblur) CPU time per step), on CUDA bfloat16 or float16 (:func:`autocast_dtype`);
        ``"float32"``: everything in float32.
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
    degradation: str = "bicubic"
    clean_fraction: float = 0.15
    noisy_fraction: float = 0.0
    sr: SRConfig = field(default_factory=SRConfig)
    deblur: DeblurConfig = field(default_factory=DeblurConfig)
    nonblind: DeconvConfig = field(default_factory=DeconvConfig)
    gate: GateConfig = field(default_factory=GateConfig)


# ----------------------------------------------------------------------------- losses


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


def log_charbonnier(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ``log`` of each image's :func:`charbonnier` loss, ``(B, C, H, W)`` each.

    Why: a PSNR-like loss weights every image alike. With the plain mean, the known-PSF network's loss was
    dominated by its largest blurs (losses 4-8x the small ones') and it got worse on small PSFs while learning
    the large ones (measured: 0.5-1.3 dB below its own Wiener start on 7-15 px PSFs after 400 steps).
    """
    per_image = torch.sqrt((prediction.float() - target) ** 2 + 1e-6).mean(dim=(1, 2, 3))
    return per_image.log().mean()


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
    data["nonblind"] = DeconvConfig(**data.get("nonblind", {}))
    data["gate"] = GateConfig(**data.get("gate", {}))
    for key in ("data", "scale_probabilities"):
        if key in data:
            data[key] = tuple(data[key])
    return TrainConfig(**data)


# ----------------------------------------------------------------------------- devices


def training_device(spec: str | torch.device | None, *, environ: Mapping[str, str] | None = None) -> torch.device:
    """The device :func:`train` computes on for ``spec`` ("auto", "cpu", "cuda", "cuda:N", "mps"; ``None``: the
    library's default device, the CPU unless inside :func:`srdeblur.devices.using_device`).

    Under torchrun (``WORLD_SIZE`` > 1) a CUDA run needs one GPU per process, because NCCL refuses two ranks
    on one GPU: the device must be ``cuda:LOCAL_RANK`` (what "auto" and "cuda" pick there) and the machine
    must have a GPU for each of its ``LOCAL_WORLD_SIZE`` processes.

    Raises
    ------
    DeviceError
        What :func:`srdeblur.devices.parse_device` refuses, or a CUDA device that breaks the rule above (one line).
    ShardError
        A malformed RANK / WORLD_SIZE / LOCAL_RANK in the environment.
    """
    environ = os.environ if environ is None else environ
    device = default_device() if spec is None else parse_device(spec, environ=environ)
    _, world = distributed_shard(environ)
    if device.type != "cuda" or world == 1:
        return device
    local_rank, local_world = int(environ.get("LOCAL_RANK", "0")), int(environ.get("LOCAL_WORLD_SIZE", "1"))
    count = torch.cuda.device_count()
    if local_world > count:
        raise DeviceError(f"torchrun started {local_world} processes on this machine, which has {count} GPU(s): "
                          f"NCCL needs one GPU per process (use --nproc_per_node {count}, or --device cpu)")
    if device.index != local_rank:
        raise DeviceError(f"--device {spec}: under torchrun each process trains on the GPU of its LOCAL_RANK "
                          f"(cuda:{local_rank} here); use --device cuda or auto")
    return device


def autocast_dtype(device: torch.device, precision: str) -> torch.dtype | None:
    """The dtype of the training forward pass's autocast on ``device``, or ``None`` for float32.

    CPU: bfloat16 where the CPU computes it natively and ``precision="auto"``
    (:func:`srdeblur.inference.uses_bfloat16`), as before ``--device`` existed. CUDA with ``precision="auto"``:
    bfloat16 on GPUs with native bfloat16 (Ampere and later; emulated bfloat16 is slower than float32), else
    float16, whose gradients need a GradScaler (:func:`train` makes one). MPS: float32, since its autocast is
    float16 and training there has not been checked with a GradScaler. Raises ValueError for an unknown
    ``precision``.
    """
    cpu_bfloat16 = uses_bfloat16(precision)  # also rejects an unknown precision
    if device.type == "cpu":
        return torch.bfloat16 if cpu_bfloat16 else None
    if device.type == "cuda" and precision != "float32":
        return torch.bfloat16 if torch.cuda.is_bf16_supported(including_emulation=False) else torch.float16
    return None


def _creating_on(device: torch.device) -> ContextManager:
    """Make tensors created without a device land on ``device`` (a no-op on the CPU).

    Why: the networks' FFT helpers (USRDeconv's padding indices, tapers, Laplacian) call factory functions
    without a device, as inference runs them inside the same context (:func:`srdeblur.inference._on_device`).
    """
    return nullcontext() if device.type == "cpu" else torch.device(device)


def _to_device(values: Sequence[T], device: torch.device) -> list[T]:
    """Each tensor of ``values`` moved to ``device`` (the same tensors on the CPU); other values as they are."""
    return [v.to(device) if isinstance(v, torch.Tensor) else v for v in values]


class _OnDevice(nn.Module):
    """``model`` called with CPU tensors: the arguments go to ``device``, the outputs come back to the CPU as
    float32; other attributes (e.g. ``multiple``) are the model's.

    Why: the validations (:mod:`srdeblur.training_data`) make their crops and score the outputs on the CPU.
    """

    def __init__(self, model: nn.Module, device: torch.device) -> None:
        super().__init__()
        self.model, self.device = model, device

    def forward(self, *arguments: torch.Tensor | int) -> list[torch.Tensor]:
        with _creating_on(self.device):
            outputs = self.model(*_to_device(arguments, self.device))
        return [output.float().cpu() for output in outputs]

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(super().__getattr__("model"), name)


def _distributed(device: torch.device) -> tuple[int, int]:
    """(rank, world size); under torchrun initialises the process group: NCCL when training on CUDA (each
    process on its own GPU, made the current one so NCCL's collectives use it), gloo otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
    rank = torch.distributed.get_rank() if world > 1 else 0
    return rank, world


def _devices_used(*labels: str | None) -> str:
    """The device types in ``labels`` ("cpu", "cuda", "cpu+cuda", ...) as one label, sorted: what a run
    resumed on another device, or fine-tuned from weights trained elsewhere, has trained on."""
    kinds = {kind for label in labels if label for kind in label.split("+")}
    return "+".join(sorted(kinds))


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


def _init_record(path: Path) -> dict:
    """What the starting weights of a fine-tune had cost: file, steps and CPU-hours from their manifest, and
    device-hours and device type when they were trained on a GPU (omitted for CPU-trained weights, whose
    record stays as it was before ``--device``)."""
    manifest_path = path.with_suffix(".json")
    training = json.loads(manifest_path.read_text()).get("training", {}) if manifest_path.is_file() else {}
    record = {"file": path.name, "steps": int(training.get("steps", 0)),
              "cpu_hours": float(training.get("cpu_hours", 0.0))}
    if training.get("device_hours"):
        record.update(device_hours=float(training["device_hours"]), device=training.get("device", "cuda"))
    return record


TASKS = ("sr", "deblur", "nonblind", "srgate", "blurgate")
ARCHITECTURES = {"sr": "lapsr", "deblur": "srndeblur", "nonblind": "usrdeconv", "srgate": "degradationgate",
                 "blurgate": "degradationgate"}
# The classifiers: a DegradationGate each, trained on logits with binary cross-entropy.
GATE_TASKS = ("srgate", "blurgate")


def build_model(config: TrainConfig) -> nn.Module:
    """The untrained network of ``config.task`` with its architecture config."""
    if config.task == "sr":
        return LapSR(config.sr)
    if config.task == "deblur":
        return SRNDeblur(config.deblur)
    if config.task in GATE_TASKS:
        return DegradationGate(config.gate)
    return USRDeconv(config.nonblind)


def _architecture_config(config: TrainConfig):
    return {"sr": config.sr, "deblur": config.deblur, "nonblind": config.nonblind, "srgate": config.gate,
            "blurgate": config.gate}[config.task]


def _batch(config: TrainConfig, images: list[torch.Tensor], step: int, generator: torch.Generator,
           memory_format: torch.memory_format) -> tuple[Sequence, list[torch.Tensor]]:
    """The network's arguments and the targets of training step ``step``, on the CPU (as
    :mod:`srdeblur.training_data` makes them), image inputs in ``memory_format``."""
    if config.task == "sr":
        inputs, targets = make_sr_batch(images, config, generator=generator)
        return (inputs.contiguous(memory_format=memory_format), len(targets)), targets
    if config.task == "deblur":
        inputs, targets = make_deblur_batch(images, config, step=step, generator=generator)
        return (inputs.contiguous(memory_format=memory_format),), targets
    if config.task == "nonblind":
        return make_nonblind_batch(images, config, step=step, generator=generator)
    make = make_blurgate_batch if config.task == "blurgate" else make_gate_batch
    inputs, targets = make(images, config, generator=generator)
    return (inputs.contiguous(memory_format=memory_format),), targets


def _task_loss(config: TrainConfig, outputs: list[torch.Tensor], targets: list[torch.Tensor]) -> torch.Tensor:
    """The float32 loss ``config.task`` trains on."""
    if config.task in GATE_TASKS:
        return F.binary_cross_entropy_with_logits(outputs[0].float(), targets[0])
    if config.task == "nonblind":
        return log_charbonnier(outputs[-1], targets[-1])
    return training_loss(outputs, targets, frequency_weight=config.frequency_loss)


def _optimizer_step(loss: torch.Tensor, model: nn.Module, optimizer: torch.optim.Optimizer,
                    scaler: torch.amp.GradScaler | None, grad_clip: float) -> None:
    """Backward, gradients clipped to norm ``grad_clip``, one Adam step.

    With a ``scaler`` (float16 autocast) the loss is scaled so that small float16 gradients do not flush to
    zero, the gradients are unscaled before clipping, and a step whose gradients overflowed is skipped.
    """
    optimizer.zero_grad(set_to_none=True)
    if scaler is None:
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        return
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    scaler.step(optimizer)
    scaler.update()


def _validate(config: TrainConfig, model: nn.Module, images: list[torch.Tensor]) -> tuple[dict[str, float], float]:
    """``config.task``'s validation scores on the held-out ``images`` and the one score the best checkpoint is
    chosen by (dB, or the gate's accuracy)."""
    if config.task == "sr":
        scores = validate_sr(model, images, crop=config.val_crop, degradation=config.degradation)
        keys = ("strong_x2", "strong_x4") if config.degradation == "realistic" else ("x2", "x4")
        return scores, sum(scores[k] for k in keys) / 2
    if config.task == "deblur":
        scores = validate_deblur(model, images, crop=config.val_crop)
        return scores, scores["psnr"]
    if config.task == "nonblind":
        scores = validate_nonblind(model, images, crop=config.val_crop)
        return scores, scores["psnr"]
    validate = validate_blurgate if config.task == "blurgate" else validate_gate
    scores = validate(model, images, crop=config.val_crop)
    return scores, scores["accuracy"]


def train(
    config: TrainConfig,
    *,
    minutes: float | None = None,
    resume: bool = False,
    max_steps: int | None = None,
    init: str | os.PathLike | None = None,
    on_progress: Callable[[dict], None] | None = None,
    device: str | torch.device | None = None,
) -> dict:
    """Train until ``total_steps``, ``max_steps`` (this call) or ``minutes`` of wall time, whichever first.

    ``init`` starts a new run from the model tensors of a safetensors file (e.g. the shipped
    ``weights/lapsr.safetensors``), ignored when ``resume`` finds a checkpoint.

    ``device`` (checked by :func:`training_device`; default the library's default device, the CPU) holds the
    model, the optimizer, the batches (made on the CPU, then moved) and the loss; the forward pass runs
    under :func:`autocast_dtype`'s autocast. Under torchrun a CUDA device means NCCL, one GPU per process.

    Writes ``{out}/last.safetensors`` (resumable) and ``{out}/best.safetensors`` (best validation) with
    JSON sidecars. Returns the final info dict: step, history, ``cpu_seconds`` (process CPU time summed over
    the processes), ``device_seconds`` (wall time x the processes computing on a GPU; 0 on the CPU),
    ``wall_seconds``, ``device`` (the device types trained on, e.g. "cpu", "cuda", "cpu+cuda") and the best
    validation.
    """
    if config.task not in TASKS:
        raise ValueError(f"unknown task {config.task!r}; expected one of {', '.join(TASKS)}")
    target = training_device(device)
    mixed = autocast_dtype(target, config.precision)
    rank, world = _distributed(target)
    if config.threads:
        torch.set_num_threads(config.threads)
    out = Path(config.out)
    last_path, best_path = out / "last.safetensors", out / "best.safetensors"

    torch.manual_seed(config.seed)  # the initial weights (drawn on the CPU: the same on every device)
    model = build_model(config).to(target)  # before Adam is made, so that its moments live there too
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    info = {"step": 0, "cpu_seconds": 0.0, "device_seconds": 0.0, "wall_seconds": 0.0, "history": [], "best": None,
            "params": count_parameters(model), "init": None, "device": None}
    scaler_state = None
    if resume and last_path.exists():
        stored = load_checkpoint(last_path, model, optimizer)
        if stored["config"] != json.loads(json.dumps(asdict(config))):
            log.warning("resuming with a changed config; the stored one was %s", stored["config"])
        info = {**info, **{k: stored[k] for k in info if k in stored}}
        info["device"] = stored.get("device", "cpu")  # checkpoints from before --device were trained on the CPU
        scaler_state = stored.get("grad_scaler")
    elif init is not None:
        # Fine-tune from shipped weights (model tensors only: a new optimizer and schedule start at step 0).
        tensors = load_tensors(Path(init))
        if isinstance(model, USRDeconv):  # --iterations may differ from the starting weights'
            tensors = resample_iterations(tensors, model.config.iterations)
        fresh = load_grown(model, tensors)
        if fresh:
            log.info("grown from %s: %d tensors start as the identity", init, len(fresh))
        info["init"] = _init_record(Path(init))
    info["config"] = asdict(config)
    info["device"] = _devices_used(info["device"], target.type)
    scaler = torch.amp.GradScaler("cuda") if mixed == torch.float16 else None
    if scaler is not None and scaler_state:
        scaler.load_state_dict(scaler_state)  # a resumed float16 run continues with its loss scale
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    trainee: nn.Module = model
    if world > 1:
        gpu = [target.index] if target.type == "cuda" else None
        trainee = nn.parallel.DistributedDataParallel(model, device_ids=gpu)
    validated = model if target.type == "cpu" else _OnDevice(model, target)

    train_images, val_images = load_training_images(config.data, val_fraction=config.val_fraction)
    started, cpu_started = time.monotonic(), time.process_time()
    wall_base, cpu_base, device_base = info["wall_seconds"], info["cpu_seconds"], info["device_seconds"]
    gpu_processes = 0 if target.type == "cpu" else world
    steps_this_call = 0
    stop = _install_stop_handler()

    # CPU time of every process (under torchrun, rank 0's alone would undercount): summed at each step.
    all_ranks_cpu = 0.0

    def cpu_seconds() -> float:
        return cpu_base + (all_ranks_cpu if world > 1 else time.process_time() - cpu_started)

    def device_seconds() -> float:
        return device_base + gpu_processes * (time.monotonic() - started)

    def clock() -> None:
        info["wall_seconds"] = wall_base + time.monotonic() - started
        info["cpu_seconds"] = cpu_seconds()
        info["device_seconds"] = device_seconds()
        if scaler is not None:  # float16's loss scale, so that a resumed run continues with it
            info["grad_scaler"] = scaler.state_dict()

    def checkpoint() -> None:
        clock()
        if rank == 0:
            save_checkpoint(last_path, model, optimizer, info)

    try:
        while info["step"] < config.total_steps:
            step = info["step"]
            generator = torch.Generator().manual_seed(config.seed * 1_000_003 + step * 7919 + rank)
            arguments, targets = _batch(config, train_images, step, generator, memory_format)
            arguments, targets = _to_device(arguments, target), _to_device(targets, target)
            for group in optimizer.param_groups:
                group["lr"] = learning_rate_at(step, config)
            with _creating_on(target):
                with torch.autocast(target.type, dtype=mixed or torch.bfloat16, enabled=mixed is not None):
                    outputs = trainee(*arguments)
                loss = _task_loss(config, outputs, targets)
            _optimizer_step(loss, model, optimizer, scaler, config.grad_clip)
            info["step"] = step + 1
            steps_this_call += 1

            time_up = stop.requested or (minutes is not None and time.monotonic() - started > minutes * 60)
            if max_steps is not None and steps_this_call >= max_steps:
                time_up = True
            if world > 1:  # every rank must stop at the same step
                # NCCL reduces CUDA tensors only, gloo CPU ones.
                shared = torch.tensor([float(time_up), time.process_time() - cpu_started], dtype=torch.float64,
                                      device=target if target.type == "cuda" else "cpu")
                torch.distributed.all_reduce(shared)
                time_up, all_ranks_cpu = bool(shared[0] > 0), float(shared[1])
            at_validation = info["step"] % config.val_every == 0 or info["step"] == config.total_steps
            if rank == 0 and at_validation and val_images:
                model.eval()
                scores, score = _validate(config, validated, val_images)
                model.train()
                cpu = cpu_seconds()
                wall = wall_base + time.monotonic() - started
                entry = {"step": info["step"], "cpu_hours": cpu / 3600, "device_hours": device_seconds() / 3600,
                         "wall_hours": wall / 3600, "loss": float(loss.detach()), **scores}
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


def export_weights(run: Path, name: str, *, folder: Path | None = None, checkpoint: str = "best",
                   description: str | None = None) -> dict:
    """Write the model of ``run/<checkpoint>.safetensors`` as shipped weights ``<folder>/<name>.safetensors``
    (model tensors only, float32) with its manifest ``<name>.json``; returns the manifest.

    The manifest holds the architecture config, sha256, parameter count, and the training data, recipe,
    steps, time (``cpu_hours``: process CPU time summed over the processes; ``device_hours``: wall time x the
    processes computing on a GPU, 0 for CPU training; ``wall_hours``), the ``device`` types trained on
    ("cpu", "cuda", "cpu+cuda", ...) and the validation curve; ``metrics`` (measured with ``srdeblur eval``)
    is kept from an existing manifest of the same weights or left empty, and ``description`` (one line for
    ``srdeblur models``) from an existing manifest unless given.
    """
    from srdeblur.weights import read_manifest, sha256_file, weights_dir

    folder = Path(folder or weights_dir())
    source = Path(run) / f"{checkpoint}.safetensors"
    info = json.loads(source.with_suffix(".json").read_text())
    config = config_from_dict(info["config"])
    tensors = {k[len("model."):]: v for k, v in load_tensors(source).items() if k.startswith("model.")}
    inherited = info.get("init") or {"steps": 0, "cpu_hours": 0.0}
    model = build_model(config)
    model.load_state_dict(tensors)  # proves the tensors rebuild the network before anything is written
    target = folder / f"{name}.safetensors"
    save_tensors(target, model.state_dict(), metadata={"name": name, "task": config.task})
    previous = {}
    if (folder / f"{name}.json").is_file():
        previous = read_manifest(name, folder=folder)
    architecture = ARCHITECTURES[config.task]
    manifest = {
        "name": name,
        "description": description or previous.get("description", ""),
        "task": config.task,
        "architecture": architecture,
        "file": target.name,
        "sha256": sha256_file(target),
        "config": asdict(_architecture_config(config)),
        "scales": [2, 3, 4, 8] if config.task == "sr" else [1],
        "params": count_parameters(model),
        "training": {
            "data": list(config.data),
            "held_out_for_validation": f"every {config.val_fraction}th image in sorted path order",
            # A fine-tune's totals include what its starting weights had cost (``init``).
            "steps": info["step"] + inherited["steps"],
            "checkpoint_step": info.get("best", {}).get("step", info["step"]) if checkpoint == "best" else info["step"],
            "cpu_hours": round(info["cpu_seconds"] / 3600 + inherited["cpu_hours"], 3),
            "device_hours": round(info.get("device_seconds", 0.0) / 3600 + inherited.get("device_hours", 0.0), 3),
            # Runs from before --device have no "device": they trained on the CPU.
            "device": _devices_used(info.get("device", "cpu"), inherited.get("device")),
            "wall_hours": round(info["wall_seconds"] / 3600, 3),
            "fine_tuned_from": info.get("init"),
            "seed": config.seed,
            "recipe": {k: v for k, v in asdict(config).items() if k not in ("data", "out", "sr", "deblur", "nonblind", "gate")},
            "validation_curve": info["history"],
        },
        "metrics": previous.get("metrics", {}) if previous.get("sha256") == sha256_file(target) else {},
        "created": time.strftime("%Y-%m-%d"),
    }
    temporary = folder / f".{name}.json.tmp"
    temporary.write_text(json.dumps(manifest, indent=1) + "\n")
    os.replace(temporary, folder / f"{name}.json")
    return manifest
