"""Tests for srdeblur.evaluation: dataset resolution, SR and deblurring evaluation on tiny synthetic folders, and
the published Set5 bicubic numbers (skipped without the shared data)."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import pytest
import torch

from srdeblur import inference
from srdeblur.classical import blur
from srdeblur.degrade import bicubic_downscale, mod_crop, quantize_8bit
from srdeblur.evaluation import (
    DATASETS,
    DeblurSettings,
    Sample,
    _restore_deblur,
    data_root,
    evaluate,
    levin_kernels,
    resolve_dataset,
    samples_dir,
    synthetic_blur_samples,
)
from srdeblur.inference import upscale
from srdeblur.io import read_image, write_image
from srdeblur.kernels import gaussian_psf, load_psf, motion_psf
from srdeblur.metrics import align_shift, psnr, ssim
from srdeblur.nets import DeblurConfig, LapSR, SRConfig, SRNDeblur

SHARED_DATA = Path(os.environ.get("SRDEBLUR_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")
KERNELS = {1: motion_psf(7, 30), 2: gaussian_psf(1.2), 10: motion_psf(5, 100)}


def _write_kernels(folder: Path) -> None:
    folder.mkdir(parents=True)
    for index, psf in KERNELS.items():
        write_image(folder / f"kernel{index}.png", (psf / psf.max())[None, None])  # 8-bit like Levin's


@pytest.fixture
def fake_root(tmp_path: Path, make_image) -> Path:
    """A data root with a Levin-like kernel folder, a Sun-like photo folder and a Levin-like blurred set."""
    root = tmp_path / "data"
    levin = root / "deblur" / "levin"
    _write_kernels(levin / "kernels")
    sun = root / "deblur" / "SunHays80"
    sun.mkdir(parents=True)
    write_image(sun / "p1.png", make_image(40, 48, seed=1))
    write_image(sun / "p2.png", make_image(36, 44, 1, seed=2))  # a gray photo
    (levin / "sharp").mkdir()
    (levin / "blurred").mkdir()
    sharp = quantize_8bit(make_image(40, 40, 1, seed=3))
    write_image(levin / "sharp" / "im1.png", sharp)
    for index in (1, 2):
        stored = load_psf(levin / "kernels" / f"kernel{index}.png")
        # Levin's files hold the kernel in correlation orientation: the convolution PSF is the flipped file.
        blurred = quantize_8bit(blur(sharp, stored.flip(0, 1)))
        write_image(levin / "blurred" / f"im1_kernel{index}_img.png", blurred)
    return root


def _mean(rows: list[dict], method: str, metric: str) -> float:
    values = [row[metric] for row in rows if row["method"] == method]
    return sum(values) / len(values)


# ------------------------------------------------------------------------------------------------ datasets


def test_resolve_dataset_folder_and_samples(png_folder):
    assert resolve_dataset(str(png_folder)) == ("images", png_folder)
    name, folder = resolve_dataset("SAMPLES")
    assert name == "samples" and folder == samples_dir()


def test_resolve_dataset_named_under_root(tmp_path):
    (tmp_path / "bench" / "Set5").mkdir(parents=True)
    assert resolve_dataset("Set5", root=tmp_path) == ("set5", tmp_path / "bench" / "Set5")


def test_resolve_dataset_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither a folder nor a known dataset"):
        resolve_dataset(str(tmp_path / "nonexistent"))
    with pytest.raises(FileNotFoundError, match="SRDEBLUR_DATA"):
        resolve_dataset("set14", root=tmp_path)  # a known name whose folder is missing


def test_data_root_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("SRDEBLUR_DATA", str(tmp_path / "env"))
    assert data_root(tmp_path / "explicit") == tmp_path / "explicit"
    assert data_root() == tmp_path / "env"
    monkeypatch.delenv("SRDEBLUR_DATA")
    assert data_root().parts[-2:] == ("shared", "data")
    assert set(DATASETS) == {"set5", "set14", "bsd68", "levin", "sun2013"}


# ------------------------------------------------------------------------------------------------ SR


def test_sr_evaluation_rows_and_summary(png_folder):
    seen = []
    result = evaluate(str(png_folder), task="sr", scale=2, methods=("bicubic", "lanczos"), on_row=seen.append)
    assert result.task == "sr" and result.scale == 2 and result.methods == ("bicubic", "lanczos")
    assert [(r["image"], r["method"]) for r in result.rows] == [
        ("a", "bicubic"), ("a", "lanczos"), ("b", "bicubic"), ("b", "lanczos"),
    ]
    assert seen == result.rows
    for row in result.rows:
        assert 15 < row["psnr"] < 60 and 0 < row["ssim"] <= 1 and row["seconds"] >= 0
    summary = result.summary()
    assert set(summary) == {"bicubic", "lanczos"}
    for method in ("bicubic", "lanczos"):
        assert summary[method]["count"] == 2
        assert summary[method]["psnr"] == pytest.approx(_mean(result.rows, method, "psnr"))
        assert summary[method]["ssim"] == pytest.approx(_mean(result.rows, method, "ssim"))
    as_dict = result.to_dict()
    assert {"dataset", "task", "scale", "methods", "conventions", "summary", "rows"} <= set(as_dict)


def test_sr_row_is_the_paper_protocol(png_folder):
    # One row recomputed from the documented protocol: mod-crop, 8-bit MATLAB-bicubic LR, upscale, Y PSNR/SSIM
    # with `scale` pixels shaved. b.png is 20x28, so x3 needs the crop to 18x27.
    from srdeblur.io import read_image

    result = evaluate(str(png_folder), task="sr", scale=3, methods=("bicubic",))
    hr = mod_crop(read_image(png_folder / "b.png").pixels, 3)
    assert hr.shape[-2:] == (18, 27)
    output = upscale(bicubic_downscale(hr, 3), scale=3, method="bicubic")
    row = [r for r in result.rows if r["image"] == "b"][0]
    assert row["psnr"] == pytest.approx(float(psnr(output, hr, shave=3)[0]), abs=1e-9)
    assert row["ssim"] == pytest.approx(float(ssim(output, hr, shave=3)[0]), abs=1e-9)


def test_sr_evaluation_is_repeatable(png_folder):
    first = evaluate(str(png_folder), task="sr", scale=2, methods=("bicubic", "lanczos"))
    second = evaluate(str(png_folder), task="sr", scale=2, methods=("bicubic", "lanczos"))
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert strip(first.rows) == strip(second.rows)


def test_sr_net_with_given_model_and_limit(png_folder):
    torch.manual_seed(0)
    model = LapSR(SRConfig(channels=4, blocks=1)).eval()
    result = evaluate(str(png_folder), scale=2, methods=("net",), models={"sr": model}, limit=1)
    assert result.task == "sr"  # a folder defaults to SR
    assert [(r["image"], r["method"]) for r in result.rows] == [("a", "net")]
    # The row is the given network's output, measured by the paper conventions (not the shipped weights').
    hr = mod_crop(read_image(png_folder / "a.png").pixels, 2)
    output = upscale(bicubic_downscale(hr, 2), scale=2, method="net", model=model)
    assert result.rows[0]["psnr"] == pytest.approx(float(psnr(output, hr, shave=2)[0]), abs=1e-9)
    assert result.rows[0]["ssim"] == pytest.approx(float(ssim(output, hr, shave=2)[0]), abs=1e-9)


def test_evaluate_rejects_bad_method_and_task(png_folder):
    with pytest.raises(ValueError, match="unknown sr method 'wiener'"):
        evaluate(str(png_folder), task="sr", scale=2, methods=("wiener",))
    with pytest.raises(ValueError, match="task"):
        evaluate(str(png_folder), task="denoise", scale=2, methods=("bicubic",))
    with pytest.raises(FileNotFoundError):
        evaluate("nonexistent-dataset", scale=2, methods=("bicubic",))


# ------------------------------------------------------------------------------------------------ deblur


def test_levin_kernels_are_sorted_numerically_and_normalised(fake_root):
    kernels = levin_kernels(fake_root / "deblur" / "levin")
    assert [name for name, _ in kernels] == ["kernel1", "kernel2", "kernel10"]
    for _, psf in kernels:
        assert psf.sum().item() == pytest.approx(1.0, abs=1e-5)


def test_synthetic_blur_samples_are_seeded(fake_root):
    folder = fake_root / "deblur" / "SunHays80"
    kernels = levin_kernels(fake_root / "deblur" / "levin")
    first = list(synthetic_blur_samples(folder, kernels, noise_sigma=0.01))
    second = list(synthetic_blur_samples(folder, kernels, noise_sigma=0.01))
    assert [s.name for s in first] == [f"{p}/kernel{k}" for p in ("p1", "p2") for k in (1, 2, 10)]
    for a, b in zip(first, second):
        assert torch.equal(a.degraded, b.degraded)
    # the noise differs between (image, kernel) pairs: residuals of two kernels on one image are not equal
    residual = [s.degraded - quantize_8bit(blur(s.ground_truth, s.psf)) for s in first[:2]]
    assert not torch.equal(residual[0], residual[1])
    assert 0.005 < residual[0].std().item() < 0.02  # sigma 0.01 plus quantisation
    assert first[3].degraded.shape == (1, 1, 36, 44)  # gray stays gray


def test_deblur_evaluation_on_sun_like_folder(fake_root):
    result = evaluate("sun2013", root=fake_root)
    assert result.task == "deblur" and result.scale == 1
    assert result.methods == ("input", "wiener", "rl")
    assert len(result.rows) == 2 * 3 * 3
    assert {r["group"] for r in result.rows} == {"kernel1", "kernel2", "kernel10"}
    assert _mean(result.rows, "wiener", "psnr") > _mean(result.rows, "input", "psnr") + 1.0
    assert _mean(result.rows, "rl", "psnr") > _mean(result.rows, "input", "psnr") + 1.0
    for image in {r["image"] for r in result.rows}:
        by_method = {r["method"]: r for r in result.rows if r["image"] == image}
        assert by_method["wiener"]["ssim"] > by_method["input"]["ssim"]
    groups = result.summary("group")
    assert groups["wiener|kernel10"]["count"] == 2
    # repeatable, noise included
    again = evaluate("sun2013", root=fake_root)
    assert [r["psnr"] for r in again.rows] == [r["psnr"] for r in result.rows]


def test_deblur_input_row_is_psnr_of_the_degraded_sample(fake_root):
    folder = fake_root / "deblur" / "SunHays80"
    kernels = levin_kernels(fake_root / "deblur" / "levin")
    first = next(iter(synthetic_blur_samples(folder, kernels, noise_sigma=0.01)))
    result = evaluate("sun2013", root=fake_root, methods=("input",), limit=1)
    assert result.rows[0]["image"] == first.name
    alignment = DeblurSettings().alignment(*first.ground_truth.shape[-2:])
    aligned, target = align_shift(first.degraded, first.ground_truth, **alignment)
    assert result.rows[0]["psnr"] == pytest.approx(float(psnr(aligned, target)[0]), abs=1e-9)


def test_deblur_scores_every_method_at_its_best_shift(tmp_path, make_image):
    """An off-centre kernel only translates the image: blind methods are scored up to that translation."""
    root = tmp_path / "data"
    kernels = root / "deblur" / "levin" / "kernels"
    kernels.mkdir(parents=True)
    shift = torch.zeros(1, 1, 7, 7)
    shift[..., 1, 5] = 1.0  # a delta 2 px above and 2 px right of the centre
    write_image(kernels / "kernel1.png", shift)
    sun = root / "deblur" / "SunHays80"
    sun.mkdir(parents=True)
    write_image(sun / "p1.png", make_image(40, 48, seed=4))
    sample = next(iter(synthetic_blur_samples(sun, levin_kernels(root / "deblur" / "levin"), noise_sigma=0.01)))
    unaligned = float(psnr(sample.degraded, sample.ground_truth)[0])

    row = evaluate("sun2013", root=root, methods=("input",)).rows[0]

    # Only 1 % noise and 8-bit rounding are left once the 2 px translation is undone (about 40 dB).
    assert row["psnr"] > 38.0
    assert row["psnr"] > unaligned + 10.0


def test_alignment_follows_levin_and_shrinks_the_border_on_small_images():
    settings = DeblurSettings()
    assert settings.alignment(255, 255) == {"max_shift": 5, "step": 0.25, "border": 15}
    assert settings.alignment(40, 48)["border"] == 10
    assert settings.alignment(12, 30)["border"] == 5  # never below the largest shift


def test_deblur_evaluation_on_levin_like_folder(fake_root):
    result = evaluate("levin", root=fake_root, methods=("input", "wiener"))
    assert [(r["image"], r["method"]) for r in result.rows] == [
        ("im1/kernel1", "input"), ("im1/kernel1", "wiener"), ("im1/kernel2", "input"), ("im1/kernel2", "wiener"),
    ]
    for kernel in ("kernel1", "kernel2"):
        rows = {r["method"]: r for r in result.rows if r["group"] == kernel}
        assert rows["wiener"]["psnr"] > rows["input"]["psnr"] + 1.0


def test_deblur_net_with_given_model(fake_root):
    torch.manual_seed(0)
    model = SRNDeblur(DeblurConfig(channels=4, blocks=1)).eval()
    result = evaluate("sun2013", root=fake_root, methods=("input", "net"), models={"deblur": model}, limit=1)
    assert [(r["image"], r["method"]) for r in result.rows] == [
        (f"p1/kernel{k}", m) for k in (1, 2, 10) for m in ("input", "net")
    ]
    # Each net row is the given network's output on that blurred sample, saved as 8 bits, at its best shift.
    folder = fake_root / "deblur" / "SunHays80"
    samples = list(synthetic_blur_samples(folder, levin_kernels(fake_root / "deblur" / "levin"), noise_sigma=0.01))
    for sample, row in zip(samples[:3], result.rows[1::2]):
        output = inference.deblur(sample.degraded, method="net", model=model)
        alignment = DeblurSettings().alignment(*sample.ground_truth.shape[-2:])
        expected = float(psnr(*align_shift(quantize_8bit(output), sample.ground_truth, **alignment))[0])
        assert row["image"] == sample.name and row["psnr"] == pytest.approx(expected, abs=1e-9)


def test_deblur_rejects_sr_methods(fake_root):
    with pytest.raises(ValueError, match="unknown deblur method 'bicubic'"):
        evaluate("sun2013", root=fake_root, methods=("bicubic",))


# ------------------------------------------------------------------------------------------------ Set5


#: Published bicubic Set5 Y-PSNR / SSIM (MATLAB): Kim et al., VDSR (CVPR 2016), Table 3.
PUBLISHED_SET5_BICUBIC = {2: (33.66, 0.9299), 3: (30.39, 0.8682), 4: (28.42, 0.8104)}
#: What the README's "Evaluation conventions" table says ``srdeblur eval --dataset set5 --method bicubic`` gives.
README_SET5_BICUBIC = {2: (33.65, 0.9295), 3: (30.39, 0.8679), 4: (28.42, 0.8102)}


@pytest.mark.skipif(not (SHARED_DATA / "bench" / "Set5").is_dir(), reason="shared Set5 not available")
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_set5_bicubic_matches_published_numbers(scale):
    result = evaluate("set5", scale=scale, methods=("bicubic",), root=SHARED_DATA)
    summary = result.summary()["bicubic"]
    assert summary["count"] == 5
    # The README's numbers, to their rounding ...
    readme_psnr, readme_ssim = README_SET5_BICUBIC[scale]
    assert summary["psnr"] == pytest.approx(readme_psnr, abs=0.006)
    assert summary["ssim"] == pytest.approx(readme_ssim, abs=0.0001)
    # ... and MATLAB's published ones, which srdeblur.resize reimplements: within 0.015 dB and 0.0005.
    published_psnr, published_ssim = PUBLISHED_SET5_BICUBIC[scale]
    assert summary["psnr"] == pytest.approx(published_psnr, abs=0.015)
    assert summary["ssim"] == pytest.approx(published_ssim, abs=0.0005)


def test_blind_evaluation_is_the_estimated_psf_then_the_settings_richardson_lucy(make_image):
    sharp = make_image(80, 80, seed=3)
    sample = Sample("p/kernel1", blur(sharp, gaussian_psf(1.5)), sharp, gaussian_psf(1.5), "kernel1")
    settings = DeblurSettings()
    expected = inference.deblur(sample.degraded, method="blind", iterations=settings.rl_iterations,
                                tv_weight=settings.rl_tv_weight)
    assert torch.equal(_restore_deblur(sample, "blind", settings, None, 1), expected)


# ------------------------------------------------------------------------------------------------ protocols for
# real photos: realistic SR inputs, spatially varying blur, sharp photos left alone


def test_varying_blur_is_a_convex_blend_of_shakes_and_seeded(make_image):
    from srdeblur.photoblur import varying_blur

    sharp = make_image(48, 40)
    first = varying_blur(sharp, generator=torch.Generator().manual_seed(0), size=9)
    again = varying_blur(sharp, generator=torch.Generator().manual_seed(0), size=9)
    other = varying_blur(sharp, generator=torch.Generator().manual_seed(1), size=9)
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert first.shape == sharp.shape
    # a blend of normalised blurs keeps the mean and stays within the image's range
    assert float(first.mean()) == pytest.approx(float(sharp.mean()), abs=0.01)
    assert first.min() >= sharp.min() - 1e-6 and first.max() <= sharp.max() + 1e-6
    constant = torch.full((1, 3, 20, 20), 0.3)
    torch.testing.assert_close(varying_blur(constant, generator=torch.Generator().manual_seed(2), size=9), constant)


def test_deblur_protocols_varying_and_none(tmp_path, make_image):
    folder = tmp_path / "photos"
    folder.mkdir()
    write_image(folder / "a.png", make_image(64, 64, seed=3))
    unblurred = evaluate(str(folder), task="deblur", methods=("input", "blind"), blur_kind="none")
    rows = {r["method"]: r for r in unblurred.rows}
    assert rows["input"]["psnr"] == float("inf") and rows["blind"]["psnr"] < float("inf")
    varying = evaluate(str(folder), task="deblur", methods=("input",), blur_kind="varying")
    assert 10 < varying.rows[0]["psnr"] < 40 and varying.rows[0]["group"] == "varying"
    with pytest.raises(ValueError, match="known kernel"):
        evaluate(str(folder), task="deblur", methods=("wiener",), blur_kind="varying")
    with pytest.raises(ValueError, match="unknown blur"):
        evaluate(str(folder), task="deblur", methods=("input",), blur_kind="rotation")


def test_realistic_sr_samples_are_seeded_per_image_and_gray_stays_gray(tmp_path, make_image):
    from srdeblur.evaluation import sr_samples

    folder = tmp_path / "hr"
    folder.mkdir()
    write_image(folder / "a.png", make_image(32, 32, seed=1))
    write_image(folder / "b.png", make_image(32, 32, channels=1, seed=2))
    first = list(sr_samples(folder, scale=2, degradation="realistic-strong"))
    second = list(sr_samples(folder, scale=2, degradation="realistic-strong"))
    assert all(torch.equal(a.degraded, b.degraded) for a, b in zip(first, second))
    assert first[0].degraded.shape == (1, 3, 16, 16) and first[1].degraded.shape == (1, 1, 16, 16)
    clean = list(sr_samples(folder, scale=2))
    assert not torch.equal(first[0].degraded, clean[0].degraded)


# ------------------------------------------------------------------------------------------------ README, samples

REPOSITORY = Path(__file__).resolve().parents[1]
SHIPPED_SAMPLES = ["astronaut", "camera", "chelsea", "coffee", "rocket"]


def _readme_first_commands() -> list[list[str]]:
    """The ``srdeblur`` commands of the README's first code block, in order (comments and ``pip ... &&`` dropped)."""
    block = (REPOSITORY / "README.md").read_text().split("```bash\n", 1)[1].split("```", 1)[0]
    commands = []
    for line in block.splitlines():
        for part in line.split("#", 1)[0].split("&&"):
            words = shlex.split(part)
            if words[:1] == ["srdeblur"]:
                commands.append(words[1:])
    return commands


def test_readme_commands_in_order_leave_the_samples_dataset_the_five_shipped_photos(tmp_path, monkeypatch):
    import json
    import shutil

    from typer.testing import CliRunner

    from srdeblur import evaluation
    from srdeblur.cli import app

    shutil.copytree(REPOSITORY / "samples", tmp_path / "samples")  # a copy: the commands write beside the photos
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(evaluation, "samples_dir", lambda: tmp_path / "samples")
    commands = _readme_first_commands()
    assert commands == [["upscale", "samples/astronaut.png", "--scale", "4"]]
    for command in commands:
        result = CliRunner().invoke(app, [*command, "--quiet"])
        assert result.exit_code == 0, result.output
    assert (tmp_path / "samples" / "astronaut_x4.png").is_file()  # where the README says it goes
    result = CliRunner().invoke(app, ["eval", "--json", "--quiet"])  # default dataset: samples
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert sorted({row["image"] for row in report["rows"]}) == SHIPPED_SAMPLES
    assert {summary["count"] for summary in report["summary"].values()} == {5}
    assert evaluate("samples", methods=("bicubic",)).summary()["bicubic"]["count"] == 5
