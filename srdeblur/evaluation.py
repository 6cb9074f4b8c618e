"""Evaluation: datasets by name or folder -> degrade -> restore with each method -> metrics -> rows.

Nothing is printed here: :func:`evaluate` returns an :class:`Evaluation` (rows, per-method summary and the
conventions used) and reports each row through a callback, so the CLI can render progress, and each restored
image through another, so a report can keep what it needs to show (see :mod:`srdeblur.visual`).

``srdeblur.evaluate(...)`` is :func:`evaluate` (a lazy attribute of the package).

Conventions (the SR papers'): HR cropped to a multiple of the scale, LR by MATLAB-style bicubic quantised
to 8 bits, outputs quantised to 8 bits, PSNR/SSIM on the Y channel of MATLAB's ``rgb2ycbcr`` with ``scale``
pixels shaved, Wang et al.'s SSIM (Gaussian window 11, sigma 1.5). Deblurring: ground truth blurred with
the kernel (reflect borders) plus Gaussian noise from a generator seeded by the image and kernel indices,
quantised to 8 bits; every deblurred output (and the blurred input) is scored at its best shift of at
most 5 px in quarter-pixel steps with 15 px shaved, as Levin et al.'s ``comp_upto_shift`` does, since a
blind method cannot know where an off-centre kernel put the image (:meth:`DeblurSettings.alignment`).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import torch

from srdeblur import blind, inference
from srdeblur.classical import blur
from srdeblur.degrade import (add_gaussian_noise, bicubic_downscale, degradation_generator, mod_crop, quantize_8bit,
                              realistic_downscale)
from srdeblur.io import IMAGE_SUFFIXES, list_images, read_image
from srdeblur.kernels import load_psf
from srdeblur.metrics import align_shift, psnr, ssim
from srdeblur.photoblur import varying_blur

__all__ = [
    "DATASETS",
    "DeblurSettings",
    "Evaluation",
    "Sample",
    "data_root",
    "evaluate",
    "resolve_dataset",
    "samples_dir",
]

# name -> (folder under the data root, task it is meant for)
DATASETS: dict[str, tuple[str, str]] = {
    "set5": ("bench/Set5", "sr"),
    "set14": ("bench/Set14", "sr"),
    "bsd68": ("bench/BSD68", "sr"),
    "levin": ("deblur/levin", "deblur"),
    "sun2013": ("deblur/SunHays80", "deblur"),
}
SR_METHODS = ("bicubic", "lanczos", "net", "lapsr", "lapsr-real")
DEBLUR_EVAL_METHODS = ("input", "wiener", "rl", "net-psf", "blind", "blind-net", "auto", "net")
# SR inputs: the papers' clean bicubic LR, or the seeded realistic presets of srdeblur.degrade.
SR_DEGRADATIONS = ("bicubic", "realistic-mild", "realistic-strong")
# The seed of the realistic SR benchmarks: image i of a dataset always gets degradation_generator(seed, i).
REALISTIC_SEED = 2026


@dataclass(frozen=True)
class DeblurSettings:
    """Parameters of the classical deconvolutions in ``--task deblur``, tuned once, then fixed.

    Tuned on the last 2 SunHays80 photos x 8 kernels (evaluations with ``limit`` use the first photos):
    Wiener balance 0.002 / 0.005 / 0.01 / 0.02 gave 29.50 / 29.79 / 29.70 / 29.37 dB; RL 15 / 30 iterations
    29.03 / 29.59 dB, and 30 iterations with TV weight 0.002 30.30 dB (input 23.18 dB).
    """

    noise_sigma: float = 0.01
    wiener_balance: float = 0.005
    rl_iterations: int = 30
    rl_tv_weight: float = 0.002
    max_shift: int = 5
    shift_step: float = 0.25
    border: int = 15

    def alignment(self, height: int, width: int) -> dict:
        """Options of :func:`srdeblur.metrics.align_shift` for scoring an ``height`` x ``width`` result.

        Levin et al.'s ``comp_upto_shift``: shifts up to 5 px in quarter-pixel steps (bilinear), 15 px
        shaved. A sharp result pays for a sub-pixel misregistration far more than a blurred one, so
        integer shifts alone would favour the input. On images too small for 15 px the border is a quarter
        of the shorter side (never below ``max_shift``).
        """
        border = min(self.border, max(self.max_shift, min(height, width) // 4))
        return {"max_shift": self.max_shift, "step": self.shift_step, "border": border}


@dataclass(frozen=True)
class Sample:
    """One evaluation case: the degraded input, its ground truth, and the true PSF (deblurring)."""

    name: str
    degraded: torch.Tensor
    ground_truth: torch.Tensor
    psf: torch.Tensor | None = None
    group: str = ""  # e.g. the kernel name, for per-kernel summaries


@dataclass
class Evaluation:
    dataset: str
    task: str
    scale: int
    methods: tuple[str, ...]
    conventions: dict
    rows: list[dict] = field(default_factory=list)

    def summary(self, key: str | None = None) -> dict[str, dict[str, float]]:
        """Mean ``psnr``, ``ssim`` and ``seconds`` per method (per method and ``key`` value if given)."""
        groups: dict[str, list[dict]] = {}
        for row in self.rows:
            label = row["method"] if key is None else f"{row['method']}|{row[key]}"
            groups.setdefault(label, []).append(row)
        return {
            label: {
                metric: sum(r[metric] for r in rows) / len(rows) for metric in ("psnr", "ssim", "seconds")
            }
            | {"count": len(rows)}
            for label, rows in groups.items()
        }

    def to_dict(self) -> dict:
        return {
            "dataset": self.dataset,
            "task": self.task,
            "scale": self.scale,
            "methods": list(self.methods),
            "conventions": self.conventions,
            "summary": self.summary(),
            "rows": self.rows,
        }


def data_root(explicit: str | os.PathLike | None = None) -> Path:
    """Where named datasets live: ``explicit``, else ``$SRDEBLUR_DATA``, else ``../shared/data`` beside the repo."""
    if explicit:
        return Path(explicit)
    if os.environ.get("SRDEBLUR_DATA"):
        return Path(os.environ["SRDEBLUR_DATA"])
    return Path(__file__).resolve().parent.parent.parent / "shared" / "data"


#: The photos shipped in ``samples/`` (samples/README.md). The ``samples`` dataset is exactly these, not the outputs
#: commands write beside them (the README's ``srdeblur upscale samples/astronaut.png`` writes ``astronaut_x4.png``).
SAMPLE_PHOTOS = ("astronaut.png", "camera.png", "chelsea.png", "coffee.png", "rocket.png")


def samples_dir() -> Path:
    """The shipped sample photos (repository ``samples/``)."""
    return Path(__file__).resolve().parent.parent / "samples"


def resolve_dataset(name_or_dir: str, *, root: str | os.PathLike | None = None) -> tuple[str, Path]:
    """``(name, folder)`` for a dataset name (``set5``, ``levin``, ``samples``...), a folder of images, or one
    image file (``(stem, file)``: a one-image dataset)."""
    key = name_or_dir.lower()
    if key == "samples":
        return "samples", samples_dir()
    if key in DATASETS:
        folder = data_root(root) / DATASETS[key][0]
        if not folder.is_dir():
            raise FileNotFoundError(
                f"dataset {name_or_dir!r} not found at {folder}; set --data-root or SRDEBLUR_DATA"
            )
        return key, folder
    folder = Path(name_or_dir)
    if folder.is_dir():
        return folder.name, folder
    if folder.is_file() and folder.suffix.lower() in IMAGE_SUFFIXES:
        return folder.stem, folder
    known = ", ".join(["samples", *DATASETS])
    raise FileNotFoundError(f"{name_or_dir!r} is neither a folder nor a known dataset ({known})")


def _read_rgb_or_gray(path: Path) -> torch.Tensor:
    return read_image(path).pixels


def _image_paths(folder_or_file: Path, limit: int | None) -> list[Path]:
    """The images of a folder in sorted order, or the one given file."""
    paths = [folder_or_file] if folder_or_file.is_file() else list_images(folder_or_file)
    if folder_or_file.resolve() == samples_dir().resolve():
        paths = [path for path in paths if path.name in SAMPLE_PHOTOS]
    return paths[:limit]


def sr_samples(folder: Path, *, scale: int, limit: int | None = None, degradation: str = "bicubic") -> Iterator[Sample]:
    """Ground-truth images of ``folder``, mod-cropped, with their LR (8-bit): MATLAB bicubic, or the
    ``realistic-mild`` / ``realistic-strong`` preset drawn from ``degradation_generator(REALISTIC_SEED, i)``
    for the i-th image (grayscale images are degraded as RGB and kept gray)."""
    if degradation not in SR_DEGRADATIONS:
        raise ValueError(f"unknown degradation {degradation!r}; expected one of {', '.join(SR_DEGRADATIONS)}")
    for index, path in enumerate(_image_paths(folder, limit)):
        hr = mod_crop(_read_rgb_or_gray(path), scale)
        if degradation == "bicubic":
            lr = bicubic_downscale(hr, scale)
        else:
            generator = degradation_generator(REALISTIC_SEED, index)
            lr = realistic_downscale(hr.expand(-1, 3, -1, -1), scale, degradation.split("-")[1], generator=generator)
            if hr.shape[1] == 1:
                lr = quantize_8bit(lr.mean(dim=1, keepdim=True))
        yield Sample(path.stem, lr, hr)


def _noise_generator(image_index: int, kernel_index: int) -> torch.Generator:
    return torch.Generator().manual_seed(1_000 * image_index + kernel_index)


def synthetic_blur_samples(
    folder: Path, kernels: list[tuple[str, torch.Tensor]], *, noise_sigma: float, limit: int | None = None
) -> Iterator[Sample]:
    """Every image of ``folder`` blurred by every kernel, plus seeded Gaussian noise, quantised to 8 bits."""
    for image_index, path in enumerate(_image_paths(folder, limit)):
        sharp = _read_rgb_or_gray(path)
        for kernel_index, (kernel_name, psf) in enumerate(kernels):
            blurred = blur(sharp, psf)
            noisy = add_gaussian_noise(blurred, noise_sigma, generator=_noise_generator(image_index, kernel_index))
            yield Sample(f"{path.stem}/{kernel_name}", quantize_8bit(noisy), sharp, psf, kernel_name)


# Blurs of the synthetic deblurring sets (sun2013, or any folder with task "deblur").
BLURS = ("levin", "varying", "none")
# The seed of the spatially varying benchmark: image i always gets degradation_generator(VARYING_SEED, i).
VARYING_SEED = 2027


def varying_blur_samples(folder: Path, *, noise_sigma: float, limit: int | None = None) -> Iterator[Sample]:
    """Every image of ``folder`` under its own seeded :func:`varying_blur` plus noise, 8-bit."""
    for index, path in enumerate(_image_paths(folder, limit)):
        sharp = _read_rgb_or_gray(path)
        generator = degradation_generator(VARYING_SEED, index)
        noisy = add_gaussian_noise(varying_blur(sharp, generator=generator), noise_sigma, generator=generator)
        yield Sample(f"{path.stem}/varying", quantize_8bit(noisy), sharp, None, "varying")


def unblurred_samples(folder: Path, *, limit: int | None = None) -> Iterator[Sample]:
    """Every image of ``folder`` as its own input and ground truth: a deblurring method should leave it alone."""
    for path in _image_paths(folder, limit):
        sharp = quantize_8bit(_read_rgb_or_gray(path))
        yield Sample(f"{path.stem}/sharp", sharp, sharp, None, "sharp")


def levin_kernels(levin_folder: Path) -> list[tuple[str, torch.Tensor]]:
    """The 8 Levin et al. 2009 kernels, normalised to sum 1, as ``[("kernel1", psf), ...]``."""
    paths = sorted((levin_folder / "kernels").glob("kernel*.png"), key=lambda p: int(p.stem[6:]))
    return [(p.stem, load_psf(p)) for p in paths]


def levin_samples(levin_folder: Path, *, limit: int | None = None) -> Iterator[Sample]:
    """The dataset's own 32 blurred images with their sharp originals and kernels.

    The stored kernels are in correlation orientation: as a convolution PSF they are rotated by 180 degrees
    (measured: Richardson-Lucy reaches 28.65 dB with the rotated kernels, 26.11 dB — worse than doing
    nothing for three kernels — with them as stored).
    """
    kernels = {name: psf.flip(0, 1) for name, psf in levin_kernels(levin_folder)}
    blurred_paths = sorted((levin_folder / "blurred").glob("im*_kernel*_img.png"))[:limit]
    for path in blurred_paths:
        image_name, kernel_name, _ = path.stem.split("_")
        sharp = _read_rgb_or_gray(levin_folder / "sharp" / f"{image_name}.png")
        yield Sample(f"{image_name}/{kernel_name}", read_image(path).pixels, sharp, kernels[kernel_name], kernel_name)


def _restore_sr(sample: Sample, method: str, scale: int, model, ensemble: int) -> torch.Tensor:
    if method in ("bicubic", "lanczos"):
        return inference.upscale(sample.degraded, scale=scale, method=method)
    if method != "net":  # a shipped SR weight by name, at the default precision (int8 where it applies)
        model = inference.shipped_model(method, int8=inference.int8_applies("auto"))
    return inference.upscale(sample.degraded, scale=scale, method="net", model=model, ensemble=ensemble)


def _restore_deblur(sample: Sample, method: str, settings: DeblurSettings, model, ensemble: int) -> torch.Tensor:
    if method == "input":
        return sample.degraded
    if method == "net-psf":  # the learned known-PSF deconvolution, noise level estimated from the image
        return inference.deblur(sample.degraded, method="net", psf=sample.psf)
    if method == "blind-net":  # blind's PSF estimate, then the learned deconvolution instead of Richardson-Lucy
        estimate = blind.estimate_psf(sample.degraded)[0]
        return inference.deblur(sample.degraded, method="net", psf=estimate)
    # wiener and rl get the true PSF; every method takes only the settings that apply to it.
    return inference.deblur(
        sample.degraded, method=method, psf=sample.psf if method in ("wiener", "rl") else None,
        balance=settings.wiener_balance, iterations=settings.rl_iterations, tv_weight=settings.rl_tv_weight,
        model=model, ensemble=ensemble,
    )


def evaluate(
    dataset: str,
    *,
    task: str | None = None,
    scale: int = 4,
    methods: tuple[str, ...] | None = None,
    root: str | os.PathLike | None = None,
    limit: int | None = None,
    settings: DeblurSettings = DeblurSettings(),
    models: dict[str, torch.nn.Module] | None = None,
    ensemble: int = 1,
    degradation: str = "bicubic",
    blur_kind: str = "levin",
    on_row: Callable[[dict], None] | None = None,
    on_output: Callable[[Sample, str, torch.Tensor], None] | None = None,
) -> Evaluation:
    """Evaluate ``methods`` on ``dataset`` (a name, a folder of ground-truth images, or one image file).

    Parameters
    ----------
    task : "sr" or "deblur"; default: the dataset's own task (``sr`` for folders).
    scale : SR factor (2, 3, 4, 8); also the shave in pixels. Ignored for deblurring (shave 0).
    methods : SR: "bicubic", "lanczos", "net" (the default weights, chosen per image), or a shipped SR weight
        by name ("lapsr", "lapsr-real"); deblur: "input", "wiener", "rl", "net-psf" (true kernel), "blind"
        (estimated kernel, then the same Richardson-Lucy), "auto" (blind where the estimate is credible,
        else the network), "blind-net" (the estimate, then the learned deconvolution), "net".
    limit : evaluate only the first ``limit`` images (in sorted order) — for quick looks.
    models : loaded networks by task (``{"sr": model}``), default: the shipped weights.
    ensemble : the network's self-ensemble, 1, 2, 4 or 8 transforms (see :mod:`srdeblur.inference`).
    blur_kind : synthetic deblurring sets (``sun2013``, folders): ``"levin"`` (8 Levin kernels), ``"varying"``
        (:func:`varying_blur`, seeded per image) or ``"none"`` (sharp photos as they are: scores say how little a
        method harms them). ``wiener``, ``rl`` and ``net-psf`` need ``"levin"`` (one true kernel).
    degradation : SR inputs: ``"bicubic"`` (the papers'), ``"realistic-mild"`` or ``"realistic-strong"``
        (:func:`srdeblur.degrade.realistic_downscale`, seeded per image: every run sees the same LR).
    on_row : called with each row as soon as it is measured.
    on_output : called as ``on_output(sample, method, output)`` with each restored image, a ``(1, C, H, W)``
        float32 tensor in [0, 1] (not quantised and, for ``levin``, not aligned), right before its row is
        measured; a sample's methods arrive one after another, then the next sample's. Nothing is kept for
        it: a report keeps what it needs, so memory stays bounded.

    Returns
    -------
    Evaluation with one row per (image, method): ``image``, ``method``, ``psnr`` (dB), ``ssim``, ``seconds``.
    """
    name, folder = resolve_dataset(dataset, root=root)
    task = task or DATASETS.get(name, ("", "sr"))[1]
    if task not in ("sr", "deblur"):
        raise ValueError(f"task must be 'sr' or 'deblur', got {task!r}")
    allowed = SR_METHODS if task == "sr" else DEBLUR_EVAL_METHODS
    methods = tuple(methods or (("bicubic", "net") if task == "sr" else ("input", "wiener", "rl")))
    for method in methods:
        if method not in allowed:
            raise ValueError(f"unknown {task} method {method!r}; expected some of {', '.join(allowed)}")
    if ensemble not in inference.ENSEMBLES:
        raise ValueError(f"ensemble must be one of {inference.ENSEMBLES}, got {ensemble}")
    if blur_kind not in BLURS:
        raise ValueError(f"unknown blur {blur_kind!r}; expected one of {', '.join(BLURS)}")
    needs_kernel = {"wiener", "rl", "net-psf"} & set(methods)
    if task == "deblur" and blur_kind != "levin" and needs_kernel:
        raise ValueError(f"{', '.join(sorted(needs_kernel))} need a known kernel: --blur {blur_kind} has none")
    model = (models or {}).get(task)
    if {"net", "auto"} & set(methods) and model is None and task == "deblur":
        model = inference.shipped_model("srndeblur")

    if task == "sr":
        samples = sr_samples(folder, scale=scale, limit=limit, degradation=degradation)
        described = (f"MATLAB imresize bicubic x1/{scale} (antialiased, a=-0.5), HR mod-cropped, LR 8-bit"
                     if degradation == "bicubic" else
                     f"srdeblur.degrade {degradation} preset x1/{scale}, image i seeded by "
                     f"degradation_generator({REALISTIC_SEED}, i), HR mod-cropped, LR 8-bit")
        shave, conventions = scale, {
            "degradation": described,
            "metric": f"Y of BT.601 rgb2ycbcr, 8-bit output, shave {scale}px, SSIM gaussian 11/1.5",
        }
    else:
        shave = 0
        if name == "levin":
            samples = levin_samples(folder, limit=limit)
            degradation = "the dataset's 32 real blurred images"
        elif blur_kind == "varying":
            samples = varying_blur_samples(folder, noise_sigma=settings.noise_sigma, limit=limit)
            degradation = (f"2-4 random 31-px shakes blended across the frame (seed {VARYING_SEED}), reflect borders, "
                           f"noise sigma {settings.noise_sigma:g}, 8-bit")
        elif blur_kind == "none":
            samples = unblurred_samples(folder, limit=limit)
            degradation = "none: the sharp photos themselves (output scored against its own input)"
        else:
            kernel_folder = data_root(root) / DATASETS["levin"][0]
            samples = synthetic_blur_samples(
                folder, levin_kernels(kernel_folder), noise_sigma=settings.noise_sigma, limit=limit
            )
            degradation = f"8 Levin kernels, reflect borders, noise sigma {settings.noise_sigma:g}, 8-bit"
        conventions = {
            "degradation": degradation,
            "metric": "Y of BT.601 rgb2ycbcr, 8-bit output, SSIM gaussian 11/1.5",
            "alignment": f"best shift up to {settings.max_shift} px in {settings.shift_step:g}-px steps (bilinear), "
                         f"{settings.border} px shaved (Levin et al.'s comp_upto_shift)",
            "classical": f"true kernel; wiener balance {settings.wiener_balance:g}; "
            f"rl {settings.rl_iterations} iterations, tv {settings.rl_tv_weight:g}",
            "blind": "kernel estimated from the blurred image (srdeblur.blind, default options), then the same rl",
            "auto": "blind where srdeblur.blind.is_credible accepts the estimate, else net",
        }

    if ensemble > 1 and "net" in methods:
        conventions["net"] = f"self-ensemble of {ensemble} flips/rotations"
    evaluation = Evaluation(name, task, scale if task == "sr" else 1, methods, conventions)
    for sample in samples:
        for method in methods:
            started = time.perf_counter()
            if task == "sr":
                output = _restore_sr(sample, method, scale, model, ensemble)
            else:
                output = _restore_deblur(sample, method, settings, model, ensemble)
            seconds = time.perf_counter() - started
            if on_output:
                on_output(sample, method, output)
            prediction, target = output, sample.ground_truth
            if task == "deblur":
                # Blind deblurring is defined up to a translation (an off-centre kernel shifts the image: 4.4 px
                # for Levin's kernel 6), so every method, the input included, is scored at its best
                # (sub-pixel) shift, as in Levin et al.'s protocol.
                alignment = settings.alignment(*target.shape[-2:])
                prediction, target = align_shift(quantize_8bit(prediction), target, **alignment)
            row = {
                "image": sample.name,
                "group": sample.group,
                "method": method,
                "psnr": float(psnr(prediction, target, shave=shave)[0]),
                "ssim": float(ssim(prediction, target, shave=shave)[0]),
                "seconds": seconds,
            }
            evaluation.rows.append(row)
            if on_row:
                on_row(row)
    return evaluation
