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
from srdeblur.nets import LapSR, SRConfig
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
from conftest import run_cli


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


def _assert_same_checkpoints(first: Path, second: Path) -> None:
    a, b = load_tensors(first / "last.safetensors"), load_tensors(second / "last.safetensors")
    assert a.keys() == b.keys() and any(name.startswith("optimizer.") for name in a)
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_runs_stopped_by_the_time_box_resume_bit_exactly(image_folder, tmp_path):
    # An expired time box (minutes=0) stops after one step and saves: stopped twice, then run to the end.
    whole = train(tiny_config(image_folder, tmp_path / "whole"))
    for expected_step in (1, 2):
        boxed = train(tiny_config(image_folder, tmp_path / "boxed"), minutes=0.0, resume=expected_step > 1)
        assert boxed["step"] == expected_step
    resumed = train(tiny_config(image_folder, tmp_path / "boxed"), resume=True)
    assert resumed["step"] == whole["step"] == 6
    _assert_same_checkpoints(tmp_path / "whole", tmp_path / "boxed")
    assert [h["x2"] for h in whole["history"]] == [h["x2"] for h in resumed["history"]]


def _tiny_deblur_config(folder: Path, out: Path) -> TrainConfig:
    from srdeblur.nets import DeblurConfig

    # The blur curriculum grows over the whole schedule, so the resumed half sees other kernel sizes.
    return replace(tiny_config(folder, out), task="deblur", patch=32, max_kernel=11, total_steps=4, val_every=2,
                   val_crop=32, curriculum=1.0, deblur=DeblurConfig(channels=4, blocks=1))


def test_interrupted_deblur_run_resumes_bit_exactly(image_folder, tmp_path):
    whole = train(_tiny_deblur_config(image_folder, tmp_path / "whole"))
    train(_tiny_deblur_config(image_folder, tmp_path / "split"), max_steps=1)
    train(_tiny_deblur_config(image_folder, tmp_path / "split"), minutes=0.0, resume=True)
    resumed = train(_tiny_deblur_config(image_folder, tmp_path / "split"), resume=True)
    assert whole["step"] == resumed["step"] == 4
    _assert_same_checkpoints(tmp_path / "whole", tmp_path / "split")
    assert [h["psnr"] for h in whole["history"]] == [h["psnr"] for h in resumed["history"]]


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


#: Run under torchrun (or alone): ``srdeblur train`` through the CLI, with each process recording what it did.
#: Every process's CPU clock (as srdeblur.train reads it) is replaced by a fake one that advances
#: ``(rank + 1) ** 3`` seconds per reading (1 on rank 0, 8 on rank 1), so the recorded CPU time shows whose time
#: was counted. Each process saves its own copy of the weights and the sums of the batches it trained on.
DDP_SCRIPT = """
import json, os, sys, time
import srdeblur.train as t
from srdeblur.weights import save_tensors

rank = int(os.environ.get("RANK", "0"))
out = sys.argv[sys.argv.index("--out") + 1]
models, readings = [], []

class Recorded(t.LapSR):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.batches = []
        models.append(self)

    def forward(self, lr, levels=1):
        if self.training:
            self.batches.append(float(lr.double().sum()))
        return super().forward(lr, levels)

class FakeClock:
    monotonic = staticmethod(time.monotonic)
    def process_time(self):
        readings.append((len(readings) + 1) * (rank + 1) ** 3)
        return float(readings[-1])

t.LapSR, t.time = Recorded, FakeClock()
from srdeblur.cli import app
try:
    app(sys.argv[1:])
except SystemExit as exit:
    assert not exit.code, exit.code
save_tensors(os.path.join(out, f"rank{rank}.safetensors"), models[0].state_dict())
with open(os.path.join(out, f"rank{rank}.json"), "w") as file:
    json.dump({"batches": models[0].batches, "cpu": readings[-1] - readings[0]}, file)
"""


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_two_process_ddp_run_averages_both_ranks_and_sums_their_cpu_time(image_folder, tmp_path):
    script = tmp_path / "ddp_run.py"
    script.write_text(DDP_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    arguments = ["train", "--task", "sr", "--data", str(image_folder), "--steps", "2", "--batch", "2", "--patch", "24",
                 "--val-every", "2", "--threads", "1", "--quiet"]
    launch = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
              "--master_port", str(_free_port())]
    runs = {"ddp": [*launch, str(script), *arguments, "--out", str(tmp_path / "ddp")],
            "alone": [sys.executable, str(script), *arguments, "--out", str(tmp_path / "alone")]}
    for command in runs.values():
        completed = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
        assert completed.returncode == 0, completed.stderr[-3000:]
    ddp, alone = tmp_path / "ddp", tmp_path / "alone"
    info = json.loads((ddp / "last.json").read_text())
    assert info["step"] == 2
    records = [json.loads((ddp / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    # Both ranks trained every step, each on its own batches ...
    assert [len(record["batches"]) for record in records] == [2, 2]
    assert all(a != b for a, b in zip(records[0]["batches"], records[1]["batches"]))
    # ... and ended with identical weights, those of the checkpoint ...
    weights = [load_tensors(ddp / f"rank{rank}.safetensors") for rank in (0, 1)]
    saved = {k[len("model."):]: v for k, v in load_tensors(ddp / "last.safetensors").items() if k.startswith("model.")}
    assert weights[0].keys() == weights[1].keys() == saved.keys()
    for name in saved:
        assert torch.equal(weights[0][name], weights[1][name]) and torch.equal(weights[0][name], saved[name]), name
    # ... which differ from one process's alone on rank 0's batches: rank 1's gradients were averaged in.
    single = load_tensors(alone / "rank0.safetensors")
    assert json.loads((alone / "rank0.json").read_text())["batches"] == records[0]["batches"]
    assert not torch.equal(single["embed.weight"], weights[0]["embed.weight"])
    # The recorded CPU time is the sum over the processes (8x rank 0's from rank 1 on the fake clocks).
    cpu = [record["cpu"] for record in records]
    assert cpu[0] > 0 and cpu[1] == 8 * cpu[0]
    assert info["cpu_seconds"] == pytest.approx(cpu[0] + cpu[1])


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
        runs[precision] = {k[len("model."):]: v for k, v in load_tensors(tmp_path / precision / "last.safetensors").items()
                           if k.startswith("model.")}
    assert all(v.dtype == torch.float32 for run in runs.values() for v in run.values())  # weights stay float32
    # Two Adam steps move every parameter by at most the sum of the learning rates (2.5e-4 + 5e-4: Adam's first
    # steps are about lr * sign(gradient)), so no absolute tolerance above that can fail. What bfloat16 may change
    # is which way the small gradients point: measured, the two runs' moves differ by 3.4 % of the move
    # (||auto - float32|| / ||float32 - start||); weights rounded to bfloat16 after each step would give 25 %.
    torch.manual_seed(0)
    start = LapSR(SRConfig(channels=8, blocks=1)).state_dict()
    move, difference = [], []
    for name, value in start.items():
        move.append((runs["float32"][name] - value).flatten())
        difference.append((runs["auto"][name] - runs["float32"][name]).flatten())
    move, difference = torch.cat(move), torch.cat(difference)
    assert float(move.abs().max()) <= 7.5e-4 * (1 + 1e-3)
    assert float(difference.norm() / move.norm()) < 0.1
    # Equal only if the CPU had no bfloat16 to use.
    assert torch.equal(difference, torch.zeros_like(difference)) != bfloat16_is_native()


def test_training_learns_a_tiny_problem(tmp_path):
    """80 steps of a tiny network at x2: the loss on fixed batches falls and validation PSNR rises past what the
    untrained network reaches from any of 5 initialisations, or with its residual branch zeroed (the bilinear
    upsampler it starts from)."""
    from conftest import textured_image
    from srdeblur.train import validate_sr

    folder = tmp_path / "images"
    folder.mkdir()
    for index in range(5):
        write_image(folder / f"t{index}.png", textured_image(64, 64, seed=index))
    config = TrainConfig(data=(str(folder),), out=str(tmp_path / "run"), batch=4, patch=32, total_steps=80,
                         warmup_steps=2, learning_rate=4e-3, val_every=80, val_fraction=5, val_crop=64,
                         scale_probabilities=(1.0, 0.0, 0.0), sr=SRConfig(channels=8, blocks=1), precision="float32")
    train_images, val_images = load_training_images(config.data, val_fraction=config.val_fraction)

    def untrained(seed: int, *, residual: bool = True) -> LapSR:
        torch.manual_seed(seed)
        model = LapSR(config.sr).eval()
        if not residual:
            torch.nn.init.zeros_(model.stage.to_residual.weight)
            torch.nn.init.zeros_(model.stage.to_residual.bias)
        return model

    batches = [make_sr_batch(train_images, config, generator=torch.Generator().manual_seed(100 + k)) for k in range(4)]

    @torch.no_grad()
    def fixed_loss(model: LapSR) -> float:
        return sum(float(training_loss(model(lr, 1), targets, frequency_weight=0.0)) for lr, targets in batches) / 4

    start = untrained(0)
    before, loss_before = validate_sr(start, val_images, crop=64)["x2"], fixed_loss(start)
    best_untrained = max([validate_sr(untrained(seed), val_images, crop=64)["x2"] for seed in range(5)]
                         + [validate_sr(untrained(0, residual=False), val_images, crop=64)["x2"]])
    info = train(config)
    trained = LapSR(config.sr).eval()
    trained.load_state_dict({k[len("model."):]: v for k, v in load_tensors(tmp_path / "run" / "last.safetensors").items()
                             if k.startswith("model.")})
    after = info["history"][-1]["x2"]
    # Measured: loss 0.101 -> 0.060, PSNR 20.4 -> 23.8 dB; untrained at best 23.1 dB (the bilinear skeleton).
    assert fixed_loss(trained) < 0.75 * loss_before
    assert after > before + 2.5
    assert after > best_untrained + 0.4


# ------------------------------------------------------------------------------------------------ realistic SR,
# known-PSF deconvolution and the SR gate


def test_realistic_sr_batch_mixes_clean_and_degraded(image_folder):
    from srdeblur.degrade import bicubic_downscale
    from srdeblur.train import random_patches, realistic_lr

    images, _ = load_training_images((str(image_folder),), val_fraction=3)
    hr = random_patches(images, 16, 32, generator=torch.Generator().manual_seed(0))
    lr = realistic_lr(hr, 2, 0.5, generator=torch.Generator().manual_seed(1))
    clean = bicubic_downscale(hr, 2)
    same = [torch.equal(a, b) for a, b in zip(lr, clean)]
    assert lr.shape == clean.shape and 3 <= sum(same) <= 13  # about half left clean
    assert torch.equal(realistic_lr(hr, 2, 1.0, generator=torch.Generator().manual_seed(1)), clean)
    config = replace(tiny_config(image_folder, Path("unused")), degradation="realistic", batch=4)
    lr_batch, targets = make_sr_batch(images, config, generator=torch.Generator().manual_seed(5))
    assert targets[-1].shape[-1] == lr_batch.shape[-1] * 2 ** len(targets)


def test_nonblind_batch_psfs_noise_and_targets(image_folder):
    from srdeblur.train import make_nonblind_batch

    images, _ = load_training_images((str(image_folder),), val_fraction=3)
    config = replace(tiny_config(image_folder, Path("unused")), task="nonblind", batch=6, patch=24, max_kernel=15,
                     curriculum=0.0, max_noise=0.05)
    (blurred, psfs, sigma), (target,) = make_nonblind_batch(images, config, step=0, generator=torch.Generator().manual_seed(2))
    assert blurred.shape == target.shape == (6, 3, 24, 24)
    assert psfs.shape[0] == 6 and psfs.shape[1] == psfs.shape[2] and psfs.shape[1] % 2 == 1 and psfs.shape[1] <= 15
    torch.testing.assert_close(psfs.sum(dim=(1, 2)), torch.ones(6))
    assert (sigma >= 0).all() and (sigma < 0.08).all()
    again = make_nonblind_batch(images, config, step=0, generator=torch.Generator().manual_seed(2))
    assert torch.equal(again[0][0], blurred) and torch.equal(again[0][1], psfs)


def test_random_nonblind_psfs_fit_and_are_normalised():
    from srdeblur.train import perturb_psf, random_nonblind_psf

    generator = torch.Generator().manual_seed(0)
    for size in (7, 31, 75):
        for _ in range(12):
            psf = random_nonblind_psf(size, generator=generator)
            assert max(psf.shape) <= size and (psf >= 0).all()
            assert float(psf.sum()) == pytest.approx(1.0, abs=1e-5)
    line = torch.zeros(15, 15)
    line[7, 2:13] = 1 / 11
    warped = perturb_psf(line, generator=torch.Generator().manual_seed(3))
    assert float(warped.sum()) == pytest.approx(1.0, abs=1e-5) and not torch.equal(warped, line)
    assert float((warped - line).abs().sum()) < 1.5  # a perturbation, not a different kernel


def test_nonblind_and_gate_training_run_validate_and_export(image_folder, tmp_path):
    from srdeblur.nets import DeconvConfig, GateConfig
    from srdeblur.train import export_weights
    from srdeblur.weights import load_model

    nonblind = replace(tiny_config(image_folder, tmp_path / "nonblind"), task="nonblind", patch=24, max_kernel=9,
                       total_steps=2, val_every=2, val_crop=40, nonblind=DeconvConfig(channels=4, iterations=2))
    info = train(nonblind)
    assert set(info["history"][-1]) >= {"psnr", "wiener", "gain"}
    gate = replace(tiny_config(image_folder, tmp_path / "gate"), task="srgate", patch=32, total_steps=2, val_every=2,
                   val_crop=32, gate=GateConfig(channels=4))
    info = train(gate)
    assert 0 <= info["history"][-1]["accuracy"] <= 1
    for run, name, architecture in ((tmp_path / "nonblind", "nb", "usrdeconv"), (tmp_path / "gate", "g", "degradationgate")):
        manifest = export_weights(run, name, folder=tmp_path / "weights")
        assert manifest["architecture"] == architecture
        assert type(load_model(name, folder=tmp_path / "weights")).__name__ in ("USRDeconv", "DegradationGate")


def test_log_charbonnier_weights_every_image_alike():
    from srdeblur.train import log_charbonnier

    target = torch.zeros(2, 3, 4, 4)
    prediction = torch.stack([torch.full((3, 4, 4), 0.2), torch.full((3, 4, 4), 0.05)])
    expected = (math.log(math.sqrt(0.2**2 + 1e-6)) + math.log(math.sqrt(0.05**2 + 1e-6))) / 2
    assert float(log_charbonnier(prediction, target)) == pytest.approx(expected, rel=1e-5)
    # halving one image's error lowers the loss by the same amount whichever image it is
    for index in (0, 1):
        better = prediction.clone()
        better[index] /= 2
        assert float(log_charbonnier(prediction, target) - log_charbonnier(better, target)) == pytest.approx(
            math.log(2) / 2, abs=2e-3)


# ------------------------------------------------------------------------------------------------ devices


def test_cli_train_on_the_cpu_records_no_device_time(image_folder, tmp_path, capsys):
    from srdeblur.train import export_weights

    code, _, err = run_cli(capsys, "train", "--data", image_folder, "--out", tmp_path / "run", "--steps", "2",
                            "--batch", "2", "--patch", "24", "--val-every", "2", "--blocks", "1", "--device", "cpu",
                            "--quiet")
    assert code == 0, err
    record = json.loads((tmp_path / "run" / "last.json").read_text())
    assert record["step"] == 2 and record["device"] == "cpu"
    assert record["device_seconds"] == 0 and record["cpu_seconds"] > 0
    # (six images hold none out at the CLI's validation fraction: no best checkpoint, so export the last)
    training = export_weights(tmp_path / "run", "tiny", folder=tmp_path / "weights", checkpoint="last")["training"]
    assert training["device"] == "cpu" and training["device_hours"] == 0
    assert training["cpu_hours"] == pytest.approx(record["cpu_seconds"] / 3600, abs=1e-3)


def test_cli_train_nonblind_iterations_from_weights_with_fewer(image_folder, tmp_path, capsys):
    from srdeblur.nets import DeconvConfig, USRDeconv
    from srdeblur.weights import save_tensors

    torch.manual_seed(0)
    save_tensors(tmp_path / "five.safetensors", USRDeconv(DeconvConfig(iterations=5)).state_dict())
    code, _, err = run_cli(capsys, "train", "--task", "nonblind", "--data", image_folder, "--out", tmp_path / "run",
                           "--steps", "1", "--batch", "1", "--patch", "32", "--val-every", "5", "--iterations", "7",
                           "--init", tmp_path / "five.safetensors", "--quiet")
    assert code == 0, err
    record = json.loads((tmp_path / "run" / "last.json").read_text())
    assert record["config"]["nonblind"]["iterations"] == 7
    assert load_tensors(tmp_path / "run" / "last.safetensors")["model.log_alphas"].shape == (7,)
    for bad in (("--task", "sr", "--iterations", "3"), ("--task", "nonblind", "--iterations", "0")):
        code, _, err = run_cli(capsys, "train", *bad, "--data", image_folder, "--out", tmp_path / "bad", "--quiet")
        assert code == 2 and "--iterations" in err
    assert not (tmp_path / "bad").exists()


def test_device_record_of_old_checkpoints_and_of_weights_trained_on_a_gpu(image_folder, tmp_path):
    """A checkpoint from before ``--device`` (no device fields) resumes as a CPU run; weights trained on a GPU
    pass their device-hours and device type on to a CPU fine-tune's manifest."""
    from srdeblur.train import export_weights
    from srdeblur.weights import save_tensors

    config = tiny_config(image_folder, tmp_path / "old", total_steps=2, val_every=2)
    train(config, max_steps=1)
    sidecar = tmp_path / "old" / "last.json"
    legacy = {k: v for k, v in json.loads(sidecar.read_text()).items() if k not in ("device", "device_seconds")}
    sidecar.write_text(json.dumps(legacy))
    info = train(config, resume=True)
    assert info["step"] == 2 and info["device"] == "cpu" and info["device_seconds"] == 0
    assert info["history"][-1]["device_hours"] == 0 and info["history"][-1]["cpu_hours"] > 0

    torch.manual_seed(7)
    save_tensors(tmp_path / "gpu.safetensors", LapSR(config.sr).state_dict())
    (tmp_path / "gpu.json").write_text(json.dumps(
        {"training": {"steps": 500, "cpu_hours": 0.1, "device_hours": 1.5, "device": "cuda"}}))
    info = train(replace(config, out=str(tmp_path / "tuned")), init=tmp_path / "gpu.safetensors")
    assert info["init"] == {"file": "gpu.safetensors", "steps": 500, "cpu_hours": 0.1, "device_hours": 1.5,
                            "device": "cuda"}
    training = export_weights(tmp_path / "tuned", "tuned", folder=tmp_path / "weights", checkpoint="last")["training"]
    assert training["device_hours"] == 1.5 and training["device"] == "cpu+cuda"


def test_torchrun_on_cuda_takes_one_gpu_per_process(monkeypatch):
    from srdeblur.devices import DeviceError
    from srdeblur.train import training_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    torchrun = {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}
    assert training_device("auto", environ=torchrun) == torch.device("cuda", 1)
    assert training_device("cuda:1", environ=torchrun) == torch.device("cuda", 1)
    assert training_device("cpu", environ=torchrun) == torch.device("cpu")
    assert training_device(None, environ=torchrun) == torch.device("cpu")  # the library's default device
    assert training_device("cuda:0", environ={}) == torch.device("cuda", 0)  # one process: any GPU
    # NCCL refuses two ranks on one GPU: another rank's GPU, or more local processes than GPUs, exit early.
    with pytest.raises(DeviceError, match=r"GPU of its LOCAL_RANK \(cuda:1 here\)"):
        training_device("cuda:0", environ=torchrun)
    with pytest.raises(DeviceError, match="3 processes on this machine, which has 2 GPU"):
        training_device("cuda", environ={**torchrun, "WORLD_SIZE": "3", "LOCAL_WORLD_SIZE": "3"})


def test_process_group_is_nccl_on_cuda_and_gloo_otherwise(monkeypatch):
    from srdeblur import train as training

    calls = []
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: False)
    monkeypatch.setattr(torch.distributed, "init_process_group", lambda backend: calls.append(("init", backend)))
    monkeypatch.setattr(torch.distributed, "get_rank", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: calls.append(("set_device", device)))
    assert training._distributed(torch.device("cuda", 1)) == (1, 2)
    assert calls == [("set_device", torch.device("cuda", 1)), ("init", "nccl")]
    calls.clear()
    assert training._distributed(torch.device("cpu")) == (1, 2)
    assert calls == [("init", "gloo")]


def test_autocast_dtype_per_device(monkeypatch):
    from srdeblur.inference import uses_bfloat16
    from srdeblur.train import autocast_dtype

    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)
    assert autocast_dtype(cpu, "auto") == (torch.bfloat16 if uses_bfloat16("auto") else None)  # as before --device
    assert autocast_dtype(cpu, "float32") is None
    asked = []
    for native, expected in ((True, torch.bfloat16), (False, torch.float16)):
        monkeypatch.setattr(torch.cuda, "is_bf16_supported",
                            lambda including_emulation=True, native=native: asked.append(including_emulation) or native)
        assert autocast_dtype(cuda, "auto") == expected
    assert asked == [False, False]  # emulated bfloat16 (pre-Ampere) is slower than float16: not taken
    assert autocast_dtype(cuda, "float32") is None
    assert autocast_dtype(torch.device("mps"), "auto") is None
    with pytest.raises(ValueError, match="precision must be one of"):
        autocast_dtype(cuda, "float16")


def test_validation_runs_the_network_on_the_training_device():
    """Validation crops are made on the CPU; on a GPU the network gets them there and keeps its attributes.
    ``meta`` (shapes, no data) stands in for a GPU: the output cannot come back, having no data."""
    from srdeblur.nets import DeblurConfig, DegradationGate, GateConfig, SRNDeblur
    from srdeblur.train import _OnDevice

    seen = []
    gate = DegradationGate(GateConfig(channels=4)).to("meta")
    gate.register_forward_pre_hook(lambda module, arguments: seen.append(arguments[0].device.type))
    with pytest.raises(NotImplementedError):
        _OnDevice(gate, torch.device("meta"))(torch.zeros(1, 3, 16, 16))
    assert seen == ["meta"]
    deblur = SRNDeblur(DeblurConfig(channels=4, blocks=1))
    assert _OnDevice(deblur, torch.device("meta")).multiple == deblur.multiple


def test_degrade_photo_kinds_labels_and_determinism(image_folder):
    from srdeblur.blind import psf_spread
    from srdeblur.training_data import DEBLURRABLE, MIN_BLUR_SPREAD, PHOTO_BLURS, degrade_photo, random_patches
    from srdeblur.kernels import gaussian_psf

    images, _ = load_training_images((str(image_folder),), val_fraction=1000)
    sharp = random_patches(images, 1, 48, generator=torch.Generator().manual_seed(0))
    kinds = set()
    for seed in range(60):
        degraded, kind = degrade_photo(sharp, generator=torch.Generator().manual_seed(seed))
        again, same_kind = degrade_photo(sharp, generator=torch.Generator().manual_seed(seed))
        assert torch.equal(degraded, again) and kind == same_kind and kind in PHOTO_BLURS
        assert degraded.shape == sharp.shape
        torch.testing.assert_close(degraded * 255, (degraded * 255).round(), atol=1e-4, rtol=0)  # 8-bit
        kinds.add(kind)
    assert kinds == set(PHOTO_BLURS)
    assert set(DEBLURRABLE) == {"uniform", "varying"}
    # The softness boundary: a Gaussian of sigma 1 is a sharp photo's softness, Levin's shakes are blurs.
    assert psf_spread(gaussian_psf(1.0)) < MIN_BLUR_SPREAD < psf_spread(gaussian_psf(1.5))


def test_blurgate_batches_label_the_deblurrable_kinds(image_folder, monkeypatch):
    from srdeblur import training_data

    seen: list[str] = []
    original = training_data.degrade_photo

    def spy(sharp, *, generator):
        degraded, kind = original(sharp, generator=generator)
        seen.append(kind)
        return degraded, kind

    monkeypatch.setattr(training_data, "degrade_photo", spy)
    images, _ = load_training_images((str(image_folder),), val_fraction=1000)
    config = replace(tiny_config(image_folder, Path("unused")), task="blurgate", batch=12, patch=40)
    inputs, (labels,) = training_data.make_blurgate_batch(images, config, generator=torch.Generator().manual_seed(1))
    assert inputs.shape == (12, 3, 40, 40)
    assert labels.tolist() == [float(kind in training_data.DEBLURRABLE) for kind in seen]


def test_blurgate_task_trains_validates_and_exports(image_folder, tmp_path):
    from srdeblur.nets import GateConfig
    from srdeblur.train import export_weights
    from srdeblur.weights import load_model

    config = replace(tiny_config(image_folder, tmp_path / "blurgate"), task="blurgate", patch=40, total_steps=2,
                     val_every=2, val_crop=48, gate=GateConfig(channels=4))
    info = train(config)
    scores = info["history"][-1]
    assert set(scores) >= {"accuracy", "deblurrable", "other"}
    assert scores["accuracy"] == pytest.approx((scores["deblurrable"] + scores["other"]) / 2)
    manifest = export_weights(tmp_path / "blurgate", "blurgate", folder=tmp_path / "weights")
    assert manifest["architecture"] == "degradationgate" and manifest["task"] == "blurgate"
    assert type(load_model("blurgate", folder=tmp_path / "weights")).__name__ == "DegradationGate"


def test_realistic_lr_noisy_share_is_bicubic_plus_white_noise_alone():
    from srdeblur.degrade import add_gaussian_noise, bicubic_downscale, quantize_8bit
    from srdeblur.training_data import realistic_lr

    hr = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    lr = realistic_lr(hr, 2, 0.0, generator=torch.Generator().manual_seed(5), noisy_fraction=1.0)
    generator = torch.Generator().manual_seed(5)  # the same draws by hand: clean?, noisy?, sigma, noise
    expected = []
    for patch in hr.split(1):
        torch.rand((), generator=generator), torch.rand((), generator=generator)
        sigma = (1 + 14 * float(torch.rand((), generator=generator))) / 255
        expected.append(quantize_8bit(add_gaussian_noise(bicubic_downscale(patch, 2, quantize=False), sigma,
                                                         generator=generator)))
    torch.testing.assert_close(lr, torch.cat(expected), rtol=0, atol=0)
    residual = (lr - bicubic_downscale(hr, 2, quantize=False)).std(dim=(1, 2, 3))
    assert bool(((residual > 0.8 / 255) & (residual < 16 / 255)).all())
