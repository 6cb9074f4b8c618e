"""Training: batches, schedule, determinism, time-boxed resume, and a two-process DDP run."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from srdeblur.io import write_image
from srdeblur.nets import SRConfig
from srdeblur.train import (
    TrainConfig,
    charbonnier,
    frequency_l1,
    learning_rate_at,
    load_checkpoint,
    load_training_images,
    make_sr_batch,
    train,
    training_loss,
)
from srdeblur.weights import load_tensors


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("train_images")
    generator = torch.Generator().manual_seed(3)
    for index in range(6):
        # Smooth random images (upsampled noise) look more like photos than white noise does.
        coarse = torch.rand(1, 3, 12, 10 + index, generator=generator)
        image = torch.nn.functional.interpolate(coarse, size=(72, 64 + 4 * index), mode="bicubic").clamp(0, 1)
        write_image(folder / f"img{index}.png", image)
    return folder


def tiny_config(folder: Path, out: Path, **changes) -> TrainConfig:
    config = TrainConfig(
        data=(str(folder),), out=str(out), batch=2, patch=24, total_steps=6, warmup_steps=2,
        val_every=3, val_fraction=3, val_crop=48, sr=SRConfig(channels=8, blocks=1),
    )
    return replace(config, **changes)


def test_make_sr_batch_shapes_and_levels(image_folder):
    images, _ = load_training_images((str(image_folder),), val_fraction=100)
    config = TrainConfig(batch=3, patch=24, scale_probabilities=(0.0, 0.0, 1.0))
    lr, targets = make_sr_batch(images, config, generator=torch.Generator().manual_seed(0))
    # x8 uses a patch of 4/3 the size, rounded down to a multiple of 8: 32.
    assert lr.shape == (3, 3, 4, 4)
    assert [t.shape[-1] for t in targets] == [8, 16, 32]
    assert torch.allclose(lr * 255, torch.round(lr * 255), atol=1e-4)  # 8-bit LR, like a saved file


def test_make_sr_batch_is_deterministic_given_the_generator(image_folder):
    images, _ = load_training_images((str(image_folder),), val_fraction=100)
    config = TrainConfig(batch=2, patch=24)
    first = make_sr_batch(images, config, generator=torch.Generator().manual_seed(5))
    second = make_sr_batch(images, config, generator=torch.Generator().manual_seed(5))
    third = make_sr_batch(images, config, generator=torch.Generator().manual_seed(6))
    assert torch.equal(first[0], second[0])
    assert not torch.equal(first[1][-1], third[1][-1])


def test_validation_images_are_held_out(image_folder):
    train_images, val_images = load_training_images((str(image_folder),), val_fraction=3)
    assert len(train_images) == 4 and len(val_images) == 2
    assert all(img.dtype == torch.uint8 and img.shape[0] == 3 for img in train_images + val_images)


def test_learning_rate_schedule():
    config = TrainConfig(learning_rate=1e-3, min_learning_rate=1e-5, warmup_steps=10, total_steps=110)
    assert learning_rate_at(0, config) == pytest.approx(1e-4)
    assert learning_rate_at(9, config) == pytest.approx(1e-3)
    assert learning_rate_at(60, config) == pytest.approx((1e-3 + 1e-5) / 2)
    assert learning_rate_at(110, config) == pytest.approx(1e-5)


def test_charbonnier_matches_hand_value():
    prediction, target = torch.zeros(1, 1, 1, 2), torch.tensor([[[[0.0, 0.3]]]])
    expected = (math.sqrt(1e-6) + math.sqrt(0.09 + 1e-6)) / 2
    assert float(charbonnier(prediction, target)) == pytest.approx(expected)


def test_frequency_l1_matches_hand_values():
    # A difference of +1 at pixel (1, 2) of a 4x4 image: every orthonormal coefficient is (1/4) e^(-i pi (k/2 + l)),
    # i.e. +-1/4 or +-i/4; rfft2 keeps 4x3 of them -> mean |.| over 12 real and 12 imaginary parts = 3 / 24.
    prediction, target = torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 4)
    prediction[..., 1, 2] = 1.0
    assert float(frequency_l1(prediction, target)) == pytest.approx(0.125)
    # a constant difference c lives in the DC coefficient alone: 4c / 24
    assert float(frequency_l1(torch.full((1, 1, 4, 4), 0.3), torch.zeros(1, 1, 4, 4))) == pytest.approx(1.2 / 24)


def test_training_loss_sums_levels_and_weights_the_frequency_term():
    generator = torch.Generator().manual_seed(0)
    outputs = [torch.rand(2, 3, 8, 8, generator=generator), torch.rand(2, 3, 16, 16, generator=generator)]
    targets = [torch.rand(2, 3, 8, 8, generator=generator), torch.rand(2, 3, 16, 16, generator=generator)]
    pixel = sum(charbonnier(o, t) for o, t in zip(outputs, targets))
    spectral = sum(frequency_l1(o, t) for o, t in zip(outputs, targets))
    assert float(training_loss(outputs, targets, frequency_weight=0.0)) == pytest.approx(float(pixel))
    assert float(training_loss(outputs, targets, frequency_weight=0.5)) == pytest.approx(float(pixel + 0.5 * spectral))
    with pytest.raises(ValueError):
        training_loss(outputs, targets[:1], frequency_weight=0.0)


def test_interrupted_and_resumed_run_equals_an_uninterrupted_one(image_folder, tmp_path):
    whole = train(tiny_config(image_folder, tmp_path / "whole"))
    train(tiny_config(image_folder, tmp_path / "split"), max_steps=4)
    resumed = train(tiny_config(image_folder, tmp_path / "split"), resume=True)
    assert whole["step"] == resumed["step"] == 6
    a = load_tensors(tmp_path / "whole" / "last.safetensors")
    b = load_tensors(tmp_path / "split" / "last.safetensors")
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    assert [h["x2"] for h in whole["history"]] == [h["x2"] for h in resumed["history"]]


def test_checkpoints_are_safetensors_with_json_sidecars(image_folder, tmp_path):
    info = train(tiny_config(image_folder, tmp_path / "run"))
    for stem in ("last", "best"):
        assert (tmp_path / "run" / f"{stem}.safetensors").is_file()
        sidecar = json.loads((tmp_path / "run" / f"{stem}.json").read_text())
        assert sidecar["config"]["sr"]["channels"] == 8
    assert info["best"]["step"] in (3, 6)
    assert info["cpu_seconds"] > 0
    # The best checkpoint's CPU time is the one at its validation, not a stale one from an earlier save.
    best = json.loads((tmp_path / "run" / "best.json").read_text())
    assert best["cpu_seconds"] >= best["best"]["cpu_hours"] * 3600 - 1e-6
    # Training moved the weights away from their initial values, and validation PSNR is a real number.
    assert all(math.isfinite(h["x2"]) and h["x2"] > 10 for h in info["history"])


def test_time_box_stops_early(image_folder, tmp_path):
    info = train(tiny_config(image_folder, tmp_path / "boxed", total_steps=10_000), minutes=0.0)
    assert info["step"] == 1  # one step, then the (already expired) time box ends the run and saves
    assert (tmp_path / "boxed" / "last.safetensors").is_file()


def test_cli_train_runs_under_torchrun_with_two_processes(image_folder, tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
        "-m", "srdeblur", "train", "--task", "sr", "--data", str(image_folder), "--out", str(out),
        "--steps", "2", "--batch", "2", "--patch", "24", "--val-every", "2", "--quiet",
    ]
    completed = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert completed.returncode == 0, completed.stderr[-2000:]
    info = json.loads((out / "last.json").read_text())
    assert info["step"] == 2
    model = load_tensors(out / "last.safetensors")
    assert any(name.startswith("model.") for name in model)


def test_make_deblur_batch_blurs_with_a_normalised_kernel(image_folder):
    from srdeblur.train import make_deblur_batch

    images, _ = load_training_images((str(image_folder),), val_fraction=100)
    config = TrainConfig(task="deblur", batch=2, patch=32, max_kernel=15, max_noise=0.0)
    blurred, targets = make_deblur_batch(images, config, step=10**6, generator=torch.Generator().manual_seed(1))
    assert blurred.shape == (2, 3, 32, 32)
    assert [t.shape[-1] for t in targets] == [8, 16, 32]
    # A normalised blur keeps the mean brightness (up to border effects and 8-bit rounding) ...
    assert torch.allclose(blurred.mean(dim=(1, 2, 3)), targets[-1].mean(dim=(1, 2, 3)), atol=0.03)
    # ... and removes detail: the blurred patch has less gradient energy than the sharp one.
    def energy(x):
        return (x[..., 1:, :] - x[..., :-1, :]).abs().mean()
    assert energy(blurred) < energy(targets[-1])
    # The coarser targets are 2x2 averages of the finer ones.
    assert torch.allclose(targets[1], torch.nn.functional.avg_pool2d(targets[2], 2))


def test_kernel_curriculum_grows_from_small_to_full_size():
    from srdeblur.train import kernel_size_at

    config = TrainConfig(task="deblur", total_steps=1000, curriculum=0.5, max_kernel=31)
    sizes = [kernel_size_at(step, config) for step in (0, 250, 500, 900)]
    assert sizes == [7, 19, 31, 31]
    assert all(size % 2 == 1 for size in sizes)
    without = replace(config, curriculum=0.0)
    assert [kernel_size_at(step, without) for step in (0, 1, 500)] == [31, 31, 31]


def test_deblur_training_runs_and_validates(image_folder, tmp_path):
    from srdeblur.nets import DeblurConfig

    config = replace(tiny_config(image_folder, tmp_path / "deblur"), task="deblur", patch=32, max_kernel=9,
                     total_steps=2, val_every=2, val_crop=32, deblur=DeblurConfig(channels=4, blocks=1))
    info = train(config)
    entry = info["history"][-1]
    assert info["step"] == 2 and set(entry) >= {"psnr", "input", "gain"}
    assert entry["gain"] == pytest.approx(entry["psnr"] - entry["input"])


@pytest.mark.parametrize("size", [7, 15, 31])
def test_random_blur_kernels_never_exceed_the_curriculum_size(size):
    from srdeblur.train import random_blur_kernel

    generator = torch.Generator().manual_seed(size)
    for _ in range(200):
        kernel = random_blur_kernel(size, generator=generator)
        assert max(kernel.shape) <= size
        assert float(kernel.sum()) == pytest.approx(1.0, abs=1e-5)


def test_init_starts_from_given_weights(image_folder, tmp_path):
    from srdeblur.nets import LapSR
    from srdeblur.weights import save_tensors

    config = tiny_config(image_folder, tmp_path / "base", total_steps=1, val_every=1)
    torch.manual_seed(123)
    start = LapSR(config.sr).state_dict()
    save_tensors(tmp_path / "start.safetensors", start)
    info = train(replace(config, out=str(tmp_path / "fine")), max_steps=0 + 1, init=tmp_path / "start.safetensors")
    assert info["init"] == {"file": "start.safetensors", "steps": 0, "cpu_hours": 0.0}  # no manifest beside it
    tuned = {k[len("model."):]: v for k, v in load_tensors(tmp_path / "fine" / "last.safetensors").items()
             if k.startswith("model.")}
    # One small Adam step from the given weights: close to them, far from a fresh seed-0 initialisation.
    fresh = train(replace(config, out=str(tmp_path / "fresh")))
    fresh_model = {k[len("model."):]: v for k, v in load_tensors(tmp_path / "fresh" / "last.safetensors").items()
                   if k.startswith("model.")}
    name = "embed.weight"
    assert (tuned[name] - start[name]).abs().max() < 0.01
    assert (fresh_model[name] - start[name]).abs().max() > 0.01


def test_fine_tune_manifest_counts_the_starting_weights_cost(image_folder, tmp_path):
    from srdeblur.nets import LapSR
    from srdeblur.train import export_weights
    from srdeblur.weights import save_tensors

    config = tiny_config(image_folder, tmp_path / "fine", total_steps=4, val_every=2)
    torch.manual_seed(7)
    save_tensors(tmp_path / "start.safetensors", LapSR(config.sr).state_dict())
    (tmp_path / "start.json").write_text(json.dumps({"training": {"steps": 1000, "cpu_hours": 2.5}}))
    train(config, max_steps=2, init=tmp_path / "start.safetensors")
    info = train(config, resume=True)  # the record of the starting weights survives a resume
    assert info["step"] == 4

    manifest = export_weights(tmp_path / "fine", "tuned", folder=tmp_path / "shipped", checkpoint="last")
    training = manifest["training"]
    assert training["steps"] == 1004
    assert training["cpu_hours"] == pytest.approx(2.5 + info["cpu_seconds"] / 3600, abs=1e-3)
    assert training["fine_tuned_from"] == {"file": "start.safetensors", "steps": 1000, "cpu_hours": 2.5}


def test_precision_is_checked_and_float32_differs_from_bfloat16(image_folder, tmp_path):
    from srdeblur.inference import bfloat16_is_native

    with pytest.raises(ValueError, match="precision must be one of"):
        train(tiny_config(image_folder, tmp_path / "bad", precision="float16"))
    runs = {}
    for precision in ("float32", "auto"):
        train(tiny_config(image_folder, tmp_path / precision, total_steps=2, precision=precision))
        runs[precision] = load_tensors(tmp_path / precision / "last.safetensors")["model.embed.weight"]
    assert runs["float32"].dtype == runs["auto"].dtype == torch.float32  # the weights stay float32
    # Two steps from the same start: nearly equal, and equal only if the CPU had no bfloat16 to use.
    assert torch.allclose(runs["float32"], runs["auto"], atol=1e-2)
    assert torch.equal(runs["float32"], runs["auto"]) != bfloat16_is_native()
