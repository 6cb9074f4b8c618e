"""Tests for the ``srdeblur`` command line (typer's CliRunner on srdeblur.cli.app; one real subprocess).

No network. The ``net`` method runs with tiny untrained weights written by the test (``SRDEBLUR_WEIGHTS``),
except in the tests named ``..._shipped_...``, which run the shipped ``weights/`` on small crops of a sample.
Every method is checked for doing its job: its output equals the library's and, where that is the point,
comes closer to the ground truth than the input.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import typer
from typer.testing import CliRunner

from srdeblur import cli
from srdeblur.cli import app
from srdeblur.evaluation import evaluate
from srdeblur.inference import upscale
from srdeblur.io import read_image, write_image
from srdeblur.kernels import gaussian_psf


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def _png(path: Path, image: torch.Tensor, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_image(path, image, **kwargs)
    return path


def _assert_clean_error(result, code: int, *fragments: str) -> None:
    """Exit ``code`` with one ``error:`` line on stderr naming ``fragments``, and no traceback anywhere."""
    assert result.exit_code == code, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)  # not an uncaught exception
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    for fragment in fragments:
        assert fragment in lines[0]
    assert result.stdout == ""


# ------------------------------------------------------------------------------------------------ upscale


def test_upscale_file_writes_default_sibling(runner, tmp_path, make_image):
    source = _png(tmp_path / "photo.png", make_image(6, 9))
    result = runner.invoke(app, ["upscale", str(source), "--scale", "2", "--method", "bicubic"])
    assert result.exit_code == 0, result.output
    written = read_image(tmp_path / "photo_x2.png").pixels
    assert written.shape == (1, 3, 12, 18)
    expected = upscale(read_image(source).pixels, scale=2, method="bicubic")
    torch.testing.assert_close(written, expected, rtol=0, atol=0.5 / 255 + 1e-6)
    assert result.stdout == ""  # progress goes to stderr


def test_upscale_output_file_and_lanczos_x3(runner, tmp_path, make_image):
    source = _png(tmp_path / "photo.png", make_image(5, 7))
    target = tmp_path / "out" / "big.png"
    result = runner.invoke(app, ["upscale", str(source), "-s", "3", "--method", "lanczos", "-o", str(target)])
    assert result.exit_code == 0, result.output
    written = read_image(target).pixels
    assert written.shape == (1, 3, 15, 21)
    assert not (tmp_path / "photo_x3.png").exists()
    # Lanczos ran, not bicubic: the file is the library's Lanczos result, not bicubic's.
    pixels = read_image(source).pixels
    lanczos, bicubic = (upscale(pixels, scale=3, method=m) for m in ("lanczos", "bicubic"))
    torch.testing.assert_close(written, lanczos, rtol=0, atol=0.5 / 255 + 1e-6)
    assert (written - bicubic).abs().max() > 0.5 / 255


def test_upscale_folder_to_folder(runner, png_folder):
    out = png_folder.parent / "results"
    result = runner.invoke(app, ["upscale", str(png_folder), "--scale", "4", "--method", "bicubic", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png"]
    assert read_image(out / "a.png").pixels.shape == (1, 3, 96, 128)
    assert read_image(out / "b.png").pixels.shape == (1, 3, 80, 112)


def test_upscale_folder_default_sibling_and_json(runner, png_folder):
    result = runner.invoke(app, ["upscale", str(png_folder), "--scale", "2", "--method", "bicubic", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    out = png_folder.parent / "images_x2"
    assert [(Path(r["output"]), r["status"]) for r in report["results"]] == [
        (out / "a.png", "done"), (out / "b.png", "done"),
    ]
    assert (out / "a.png").is_file() and (out / "b.png").is_file()


def test_upscale_gray_stays_gray_and_alpha_is_kept(runner, tmp_path, make_image):
    gray = _png(tmp_path / "gray.png", make_image(5, 6, 1))
    rgba = _png(tmp_path / "rgba.png", make_image(5, 6), alpha=torch.linspace(0, 1, 30).reshape(1, 1, 5, 6))
    result = runner.invoke(app, ["upscale", str(gray), str(rgba), "--scale", "2", "--method", "bicubic"])
    assert result.exit_code == 0, result.output
    gray_out = read_image(tmp_path / "gray_x2.png")
    assert gray_out.pixels.shape == (1, 1, 10, 12) and gray_out.meta.gray
    rgba_out = read_image(tmp_path / "rgba_x2.png")
    assert rgba_out.pixels.shape == (1, 3, 10, 12)
    assert rgba_out.alpha is not None and rgba_out.alpha.shape == (1, 1, 10, 12)


@pytest.mark.parametrize("scale", ["5", "1", "16"])
def test_upscale_invalid_scale(runner, tmp_path, make_image, scale):
    source = _png(tmp_path / "photo.png", make_image(4, 4))
    result = runner.invoke(app, ["upscale", str(source), "--scale", scale, "--method", "bicubic"])
    _assert_clean_error(result, 2, "--scale", scale)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photo.png"]


def test_upscale_missing_input(runner, tmp_path):
    missing = tmp_path / "absent.png"
    result = runner.invoke(app, ["upscale", str(missing), "--scale", "2", "--method", "bicubic"])
    _assert_clean_error(result, 2, "absent.png")


def test_upscale_broken_image_among_good_ones(runner, png_folder):
    (png_folder / "broken.png").write_text("not a png at all")
    before = {p.name: p.read_bytes() for p in png_folder.iterdir()}
    result = runner.invoke(app, ["upscale", str(png_folder), "--scale", "2", "--method", "bicubic"])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert "broken.png" in result.stderr
    out = png_folder.parent / "images_x2"
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png"]
    assert {p.name: p.read_bytes() for p in png_folder.iterdir()} == before  # inputs untouched


def test_upscale_existing_output(runner, tmp_path, make_image):
    source = _png(tmp_path / "photo.png", make_image(4, 5))
    existing = _png(tmp_path / "photo_x2.png", torch.zeros(1, 3, 2, 2))
    args = ["upscale", str(source), "--scale", "2", "--method", "bicubic"]
    assert runner.invoke(app, args).exit_code == 1
    assert read_image(existing).pixels.shape == (1, 3, 2, 2)
    assert runner.invoke(app, [*args, "--skip-existing"]).exit_code == 0
    assert read_image(existing).pixels.shape == (1, 3, 2, 2)
    assert runner.invoke(app, [*args, "--overwrite"]).exit_code == 0
    assert read_image(existing).pixels.shape == (1, 3, 8, 10)


def test_upscale_output_onto_input_is_a_usage_error(runner, tmp_path, make_image):
    source = _png(tmp_path / "photo.png", make_image(4, 5))
    before = source.read_bytes()
    result = runner.invoke(app, ["upscale", str(source), "--method", "bicubic", "-o", str(source), "--overwrite"])
    _assert_clean_error(result, 2, "overwrite the input")
    assert source.read_bytes() == before


def test_upscale_net_without_weights_fails_cleanly(runner, tmp_path, make_image, monkeypatch):
    monkeypatch.setenv("SRDEBLUR_WEIGHTS", str(tmp_path / "no-weights"))
    source = _png(tmp_path / "photo.png", make_image(4, 5))
    result = runner.invoke(app, ["upscale", str(source), "--scale", "2"])  # default method: net
    _assert_clean_error(result, 1, "lapsr")
    assert not (tmp_path / "photo_x2.png").exists()


def test_upscale_current_folder(runner, png_folder, monkeypatch):
    monkeypatch.chdir(png_folder)
    result = runner.invoke(app, ["upscale", ".", "--scale", "2", "--method", "bicubic"])
    assert result.exit_code == 0, repr(result.exception)
    assert (png_folder.parent / "images_x2" / "a.png").is_file()


# ------------------------------------------------------------------------------------------------ deblur


def _psnr(image: torch.Tensor, truth: torch.Tensor) -> float:
    from srdeblur.metrics import psnr

    return float(psnr(image, truth)[0])


def _blurred_pair(make_image, channels: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """A sharp (1, C, 48, 40) image and its 8-bit blur by gaussian:1.0."""
    from srdeblur.classical import blur
    from srdeblur.degrade import quantize_8bit

    sharp = make_image(48, 40, channels)
    return sharp, quantize_8bit(blur(sharp, gaussian_psf(1.0)))


@pytest.mark.parametrize("method", ["wiener", "rl"])
def test_deblur_with_psf(runner, tmp_path, make_image, method):
    from srdeblur.inference import deblur

    sharp, blurred = _blurred_pair(make_image)
    source = _png(tmp_path / "photo.png", blurred)
    result = runner.invoke(app, ["deblur", str(source), "--method", method, "--psf", "gaussian:1.0",
                                 "--iterations", "30"])
    assert result.exit_code == 0, result.output
    written = read_image(tmp_path / "photo_deblurred.png").pixels
    assert written.shape == (1, 3, 48, 40)
    expected = deblur(blurred, method=method, psf=gaussian_psf(1.0), iterations=30)
    torch.testing.assert_close(written, expected, rtol=0, atol=0.5 / 255 + 1e-6)
    # Measured: 23.9 dB blurred, 26.3 (Wiener) and 27.1 (RL) restored.
    assert _psnr(written, sharp) > _psnr(blurred, sharp) + 2


def test_deblur_with_psf_file(runner, tmp_path, make_image):
    from srdeblur.inference import deblur
    from srdeblur.kernels import load_psf

    sharp, blurred = _blurred_pair(make_image, 1)
    source = _png(tmp_path / "photo.png", blurred)
    kernel = tmp_path / "kernel.png"
    psf = gaussian_psf(1.0)
    write_image(kernel, (psf / psf.max())[None, None])
    result = runner.invoke(app, ["deblur", str(source), "--method", "wiener", "--psf", str(kernel)])
    assert result.exit_code == 0, result.output
    written = read_image(tmp_path / "photo_deblurred.png").pixels
    assert written.shape == (1, 1, 48, 40)
    expected = deblur(blurred, method="wiener", psf=load_psf(kernel))
    torch.testing.assert_close(written, expected, rtol=0, atol=0.5 / 255 + 1e-6)
    assert _psnr(written, sharp) > _psnr(blurred, sharp) + 2


@pytest.mark.parametrize("method", ["wiener", "rl"])
def test_deblur_without_psf(runner, tmp_path, make_image, method):
    source = _png(tmp_path / "photo.png", make_image(8, 8))
    result = runner.invoke(app, ["deblur", str(source), "--method", method])
    _assert_clean_error(result, 2, "--psf")
    assert not (tmp_path / "photo_deblurred.png").exists()


@pytest.mark.parametrize("spec", ["gauss:1", "gaussian:abc", "motion:5", "gaussian:-1", "nofile.png"])
def test_deblur_malformed_psf(runner, tmp_path, make_image, spec):
    source = _png(tmp_path / "photo.png", make_image(8, 8))
    result = runner.invoke(app, ["deblur", str(source), "--method", "wiener", "--psf", spec])
    _assert_clean_error(result, 2, "--psf")


def test_deblur_blind_estimates_the_psf_and_needs_no_weights(runner, tmp_path, make_image, monkeypatch):
    monkeypatch.setenv("SRDEBLUR_WEIGHTS", str(tmp_path / "no-weights"))
    source = _png(tmp_path / "photo.png", make_image(40, 36))
    result = runner.invoke(app, ["deblur", str(source), "--method", "blind", "--psf-size", "9", "--iterations", "3",
                                 "--quiet"])
    assert result.exit_code == 0, result.output
    written = read_image(tmp_path / "photo_deblurred.png").pixels
    assert written.shape == (1, 3, 40, 36)
    # The estimated PSF, then Richardson-Lucy with the CLI's TV weight: the library's blind result.
    from srdeblur.inference import deblur

    expected = deblur(read_image(source).pixels, method="blind", psf_size=9, iterations=3, tv_weight=cli.BLIND_TV_WEIGHT)
    torch.testing.assert_close(written, expected, rtol=0, atol=0.5 / 255 + 1e-6)


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--method", "blind", "--psf", "gaussian:1"], "is blind"),
        (["--method", "auto", "--psf", "gaussian:1"], "is blind"),
        (["--method", "blind", "--psf-size", "10"], "--psf-size must be odd"),
    ],
)
def test_deblur_blind_usage_errors(runner, tmp_path, make_image, arguments, message):
    source = _png(tmp_path / "photo.png", make_image(8, 8))
    result = runner.invoke(app, ["deblur", str(source), *arguments])
    _assert_clean_error(result, 2, message)
    assert not (tmp_path / "photo_deblurred.png").exists()


def test_deblur_blind_on_an_image_smaller_than_twice_the_psf_fails_that_image(runner, tmp_path, make_image):
    source = _png(tmp_path / "photo.png", make_image(20, 20))
    result = runner.invoke(app, ["deblur", str(source), "--method", "blind", "--json", "--quiet"])
    assert result.exit_code == 1
    assert "at least 50 px" in result.stdout
    assert not (tmp_path / "photo_deblurred.png").exists()


def test_deblur_cli_defaults_match_the_library():
    from srdeblur import blind
    from srdeblur.evaluation import DeblurSettings

    assert cli.BLIND_TV_WEIGHT == DeblurSettings().rl_tv_weight
    options = {option.name: option for option in typer.main.get_command(app).commands["deblur"].params}
    assert options["psf_size"].default == blind.DEFAULT_PSF_SIZE


def test_deblur_net_without_weights_fails_cleanly(runner, tmp_path, make_image, monkeypatch):
    monkeypatch.setenv("SRDEBLUR_WEIGHTS", str(tmp_path / "no-weights"))
    source = _png(tmp_path / "photo.png", make_image(8, 8))
    result = runner.invoke(app, ["deblur", str(source), "--method", "net"])
    _assert_clean_error(result, 1)


# ------------------------------------------------------------------------------------------------ eval


def test_eval_folder_json(runner, png_folder):
    result = runner.invoke(app, ["eval", "--dataset", str(png_folder), "--scale", "2", "--method", "bicubic",
                                 "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)  # stdout holds exactly one JSON document
    assert {"rows", "summary"} <= set(report)
    assert {"psnr", "ssim"} <= set(report["summary"]["bicubic"])
    assert [(r["image"], r["method"]) for r in report["rows"]] == [("a", "bicubic"), ("b", "bicubic")]
    direct = evaluate(str(png_folder), scale=2, methods=("bicubic",)).summary()["bicubic"]
    assert report["summary"]["bicubic"]["psnr"] == pytest.approx(direct["psnr"], abs=1e-9)
    assert report["summary"]["bicubic"]["ssim"] == pytest.approx(direct["ssim"], abs=1e-9)
    assert "PSNR" in result.stderr  # the human table goes to stderr


def test_eval_several_methods_and_limit(runner, png_folder):
    result = runner.invoke(app, ["eval", "--dataset", str(png_folder), "--scale", "3", "--method",
                                 "bicubic, lanczos", "--limit", "1", "--json", "--quiet"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert set(report["summary"]) == {"bicubic", "lanczos"}
    assert report["scale"] == 3 and len(report["rows"]) == 2
    assert result.stderr == ""


def test_eval_deblur_on_data_root_groups_by_kernel(runner, tmp_path, make_image):
    root = tmp_path / "data"
    kernel = gaussian_psf(1.0)
    _png(root / "deblur" / "levin" / "kernels" / "kernel1.png", (kernel / kernel.max())[None, None])
    _png(root / "deblur" / "SunHays80" / "p1.png", make_image(24, 24))
    result = runner.invoke(app, ["eval", "--dataset", "sun2013", "--data-root", str(root), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["task"] == "deblur"
    assert set(report["summary"]) == {"input", "wiener", "rl"}
    assert "wiener|kernel1" in report["summary_by_group"]


def test_eval_records_the_self_ensemble(runner, tmp_path, make_image, monkeypatch):
    _use_tiny_deblur_weights(tmp_path / "weights", monkeypatch)
    root = tmp_path / "data"
    kernel = gaussian_psf(1.0)
    _png(root / "deblur" / "levin" / "kernels" / "kernel1.png", (kernel / kernel.max())[None, None])
    _png(root / "deblur" / "SunHays80" / "p1.png", make_image(32, 40))
    args = ["eval", "--dataset", "sun2013", "--data-root", str(root), "--method", "net", "--json", "--quiet"]
    single = json.loads(runner.invoke(app, args).stdout)
    result = runner.invoke(app, [*args, "--ensemble", "8"])
    assert result.exit_code == 0, result.output
    ensembled = json.loads(result.stdout)
    assert ensembled["conventions"]["net"] == "self-ensemble of 8 flips/rotations" and "net" not in single["conventions"]
    assert ensembled["summary"]["net"]["psnr"] != single["summary"]["net"]["psnr"]


@pytest.mark.parametrize("command", ["upscale", "deblur", "eval"])
def test_bad_ensemble_is_a_usage_error(runner, tmp_path, make_image, command):
    source = _png(tmp_path / "photo.png", make_image(6, 9))
    args = [command, str(source)] if command != "eval" else [command, "--dataset", str(tmp_path)]
    result = runner.invoke(app, [*args, "--ensemble", "3"])
    _assert_clean_error(result, 2, "--ensemble must be 1, 2, 4 or 8")
    assert not (tmp_path / "photo_x4.png").exists() and not (tmp_path / "photo_deblurred.png").exists()


def test_eval_unknown_dataset(runner):
    result = runner.invoke(app, ["eval", "--dataset", "nonexistent", "--scale", "2", "--method", "bicubic"])
    _assert_clean_error(result, 2, "nonexistent")


def test_eval_named_dataset_missing_from_data_root(runner, tmp_path):
    result = runner.invoke(app, ["eval", "--dataset", "set5", "--data-root", str(tmp_path), "--method", "bicubic"])
    _assert_clean_error(result, 2, "set5")


def test_eval_bad_method_and_scale(runner, png_folder):
    bad_method = runner.invoke(app, ["eval", "--dataset", str(png_folder), "--scale", "2", "--method", "wiener"])
    _assert_clean_error(bad_method, 2, "wiener")
    bad_scale = runner.invoke(app, ["eval", "--dataset", str(png_folder), "--scale", "5", "--method", "bicubic"])
    _assert_clean_error(bad_scale, 2, "--scale")


# ------------------------------------------------------------------------------------------------ entry points


def test_no_arguments_shows_help(runner):
    result = runner.invoke(app, [])
    assert "upscale" in result.output and "deblur" in result.output


def test_python_dash_m_help():
    completed = subprocess.run([sys.executable, "-m", "srdeblur", "--help"], capture_output=True, text=True,
                               timeout=120)
    assert completed.returncode == 0, completed.stderr
    for command in ("upscale", "deblur", "eval", "train"):
        assert command in completed.stdout
    assert completed.stderr == ""


def _use_tiny_deblur_weights(folder: Path, monkeypatch) -> None:
    """Ship a tiny untrained srndeblur in ``folder`` and point SRDEBLUR_WEIGHTS at it."""
    from srdeblur.nets import DeblurConfig, SRNDeblur
    from srdeblur.weights import save_tensors, sha256_file

    folder.mkdir()
    monkeypatch.setenv("SRDEBLUR_WEIGHTS", str(folder))
    torch.manual_seed(0)
    config = DeblurConfig(channels=4)
    save_tensors(folder / "srndeblur.safetensors", SRNDeblur(config).state_dict())
    manifest = {"name": "srndeblur", "architecture": "srndeblur", "file": "srndeblur.safetensors",
                "sha256": sha256_file(folder / "srndeblur.safetensors"), "config": config.to_dict()}
    (folder / "srndeblur.json").write_text(json.dumps(manifest))


def test_deblur_defaults_to_auto_without_psf_and_to_wiener_with_one(runner, tmp_path, make_image, monkeypatch):
    _use_tiny_deblur_weights(tmp_path / "weights", monkeypatch)
    from srdeblur.inference import deblur
    from srdeblur.weights import load_model

    model = load_model("srndeblur")
    close = dict(rtol=0, atol=0.5 / 255 + 1e-6)
    source = _png(tmp_path / "blurred.png", make_image(20, 28))  # too small for a PSF: the network alone
    result = runner.invoke(app, ["deblur", str(source), "--json", "--quiet"])
    assert result.exit_code == 0, result.output
    pixels = read_image(source).pixels
    torch.testing.assert_close(read_image(tmp_path / "blurred_deblurred.png").pixels,
                               deblur(pixels, method="net", model=model), **close)
    big = _png(tmp_path / "big.png", make_image(40, 48))
    result = runner.invoke(app, ["deblur", str(big), "--psf-size", "9", "--iterations", "2", "--quiet"])
    assert result.exit_code == 0, result.output
    expected = deblur(read_image(big).pixels, method="auto", model=model, psf_size=9, iterations=2,
                      tv_weight=cli.BLIND_TV_WEIGHT)
    torch.testing.assert_close(read_image(tmp_path / "big_deblurred.png").pixels, expected, **close)
    # With a PSF and no --method, Wiener runs: no weights needed.
    monkeypatch.setenv("SRDEBLUR_WEIGHTS", str(tmp_path / "nowhere"))
    result = runner.invoke(app, ["deblur", str(source), "--psf", "gaussian:1", "-o", str(tmp_path / "w.png")])
    assert result.exit_code == 0, result.output
    torch.testing.assert_close(read_image(tmp_path / "w.png").pixels,
                               deblur(pixels, method="wiener", psf=gaussian_psf(1.0)), **close)


@pytest.mark.parametrize("mix", ["0.5,0.5", "1,-1,1", "0,0,0", "a,b,c"])
def test_train_rejects_a_bad_scale_mix(runner, tmp_path, mix):
    result = runner.invoke(app, ["train", "--data", str(tmp_path), "--out", str(tmp_path / "run"), "--scale-mix", mix])
    assert result.exit_code == 2
    assert "--scale-mix must be three non-negative weights" in result.output
    assert not (tmp_path / "run").exists()


def _training_folder(folder, make_image):
    """Three 64x64 training images in a new ``folder``."""
    folder.mkdir()
    for index in range(3):
        write_image(folder / f"im{index}.png", make_image(64, 64, seed=index))
    return folder


def test_train_scale_mix_reaches_the_run_config(runner, tmp_path, make_image):
    data = _training_folder(tmp_path / "images", make_image)
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", "--data", str(data), "--out", str(out), "--steps", "1", "--batch", "1",
                                 "--patch", "24", "--scale-mix", "1,0,0", "--warmup", "1", "--quiet"])
    assert result.exit_code == 0, result.output
    config = json.loads((out / "last.json").read_text())["config"]
    assert config["scale_probabilities"] == [1.0, 0.0, 0.0]
    assert config["warmup_steps"] == 1
    assert config["curriculum"] == 0.3  # a fresh run grows its blurs


def test_deblur_precision_float32_writes_the_float32_network_result(runner, tmp_path, make_image, monkeypatch):
    from srdeblur.inference import deblur
    from srdeblur.weights import load_model

    _use_tiny_deblur_weights(tmp_path / "weights", monkeypatch)
    source = _png(tmp_path / "blurred.png", make_image(24, 20))
    result = runner.invoke(app, ["deblur", str(source), "--precision", "float32", "-o", str(tmp_path / "out.png")])
    assert result.exit_code == 0, result.output
    expected = deblur(read_image(source).pixels, model=load_model("srndeblur"), precision="float32")
    torch.testing.assert_close(read_image(tmp_path / "out.png").pixels, expected, rtol=0, atol=0.5 / 255 + 1e-6)


def test_unknown_precision_is_a_usage_error(runner, tmp_path, make_image):
    source = _png(tmp_path / "photo.png", make_image(6, 9))
    result = runner.invoke(app, ["upscale", str(source), "--precision", "float16"])
    assert result.exit_code == 2
    assert "float16" in result.output
    assert not (tmp_path / "photo_x4.png").exists()


@pytest.mark.parametrize(("args", "message"), [
    (["--blocks", "0"], "--blocks must be at least 1"),
    (["--task", "sr", "--spectral"], "--spectral applies to --task deblur only"),
    (["--task", "sr", "--gated"], "--gated applies to --task deblur only"),
    (["--frequency-loss", "-1"], "--frequency-loss must be non-negative"),
    (["--curriculum", "1.5"], "--curriculum must be a fraction in [0, 1]"),
])
def test_train_rejects_bad_architecture_options(runner, tmp_path, args, message):
    result = runner.invoke(app, ["train", "--data", str(tmp_path), "--out", str(tmp_path / "run"), *args])
    assert result.exit_code == 2
    assert message in result.output
    assert not (tmp_path / "run").exists()


def test_train_grows_a_deblur_network_from_init_weights(runner, tmp_path, make_image):
    from srdeblur.nets import DeblurConfig, SRNDeblur, count_parameters
    from srdeblur.weights import save_tensors

    data = _training_folder(tmp_path / "images", make_image)
    torch.manual_seed(0)
    small = SRNDeblur(DeblurConfig(blocks=1))
    save_tensors(tmp_path / "small.safetensors", small.state_dict())
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", "--task", "deblur", "--data", str(data), "--out", str(out), "--steps", "1",
                                 "--batch", "1", "--patch", "32", "--warmup", "1", "--blocks", "3", "--spectral",
                                 "--gated", "--frequency-loss", "0.5",
                                 "--init", str(tmp_path / "small.safetensors"), "--quiet"])
    assert result.exit_code == 0, result.output
    record = json.loads((out / "last.json").read_text())
    deblur = record["config"]["deblur"]
    assert deblur["blocks"] == 3 and deblur["spectral"] is True and deblur["gated"] is True
    assert record["config"]["frequency_loss"] == 0.5
    assert record["params"] == count_parameters(SRNDeblur(DeblurConfig(blocks=3, spectral=True, gated=True)))
    assert record["init"]["file"].endswith("small.safetensors")
    assert record["config"]["curriculum"] == 0.0  # a fine-tune starts with full-size blurs


# ------------------------------------------------------------------------------------------------ shipped weights

SAMPLES = Path(__file__).resolve().parents[1] / "samples"


def _sample_crop(name: str = "chelsea") -> torch.Tensor:
    return read_image(SAMPLES / f"{name}.png").pixels[..., 60:156, 150:246]  # 96 x 96, on the 8-bit grid


def test_upscale_net_with_the_shipped_weights_beats_bicubic(runner, tmp_path):
    from srdeblur.degrade import bicubic_downscale
    from srdeblur.metrics import psnr

    truth = _sample_crop()
    source = _png(tmp_path / "small.png", bicubic_downscale(truth, 2))
    results = {}
    for method in ("net", "bicubic"):
        target = tmp_path / f"{method}.png"
        result = runner.invoke(app, ["upscale", str(source), "--scale", "2", "--method", method, "-o", str(target)])
        assert result.exit_code == 0, result.output
        results[method] = float(psnr(read_image(target).pixels, truth, shave=2)[0])
    # Measured on this crop: 33.4 dB bicubic, 34.8 dB net.
    assert results["net"] > results["bicubic"] + 0.7


@pytest.mark.parametrize("command", ["upscale", "deblur"])
def test_ensemble_8_of_the_shipped_networks_from_the_cli(runner, tmp_path, command):
    from srdeblur import inference

    pixels = _sample_crop()[..., :64, :64]
    source = _png(tmp_path / "photo.png", pixels)
    extra = ["--scale", "2"] if command == "upscale" else ["--method", "net"]
    written = {}
    for ensemble in ("1", "8"):
        target = tmp_path / f"ensemble{ensemble}.png"
        result = runner.invoke(app, [command, str(source), *extra, "--ensemble", ensemble, "-o", str(target), "--quiet"])
        assert result.exit_code == 0, result.output
        written[ensemble] = read_image(target).pixels
    if command == "upscale":
        expected = inference.upscale(pixels, scale=2, method="net", ensemble=8)
    else:
        expected = inference.deblur(pixels, method="net", ensemble=8)
    torch.testing.assert_close(written["8"], expected, rtol=0, atol=0.5 / 255 + 1e-6)
    assert (written["8"] - written["1"]).abs().max() > 2 / 255  # the eight passes did run
