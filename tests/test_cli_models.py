"""The shipped weights from the command line: ``srdeblur models``, ``upscale --model`` and its default
choice, ``deblur --psf ... --method net`` and ``--noise``, ``eval --degradation``.

These run the shipped ``weights/`` on small crops of the shipped samples, so a broken export cannot land.
"""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from srdeblur import inference
from srdeblur.classical import blur, wiener
from srdeblur.cli import app
from srdeblur.degrade import add_gaussian_noise, bicubic_downscale, degradation_generator, quantize_8bit, realistic_downscale
from srdeblur.evaluation import samples_dir
from srdeblur.io import read_image, write_image
from srdeblur.kernels import gaussian_psf, motion_psf
from srdeblur.metrics import psnr


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def _crop(name: str, size: int = 96, top: int = 100, left: int = 100) -> torch.Tensor:
    pixels = read_image(samples_dir() / f"{name}.png").pixels
    return pixels[..., top : top + size, left : left + size]


def _one_error_line(result, code: int, *fragments: str) -> None:
    assert result.exit_code == code, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_models_lists_every_shipped_weight_with_its_task(runner):
    result = runner.invoke(app, ["models", "--json"])
    assert result.exit_code == 0, result.output
    listed = {entry["name"]: entry for entry in json.loads(result.stdout)["models"]}
    assert {"lapsr", "lapsr-real", "srgate", "srndeblur", "usrdeconv", "blurgate"} <= set(listed)
    assert listed["lapsr-real"]["task"] == "sr" and listed["usrdeconv"]["task"] == "nonblind"
    assert all(entry["description"] for entry in listed.values())
    for name in listed:
        assert name in result.stderr


def test_upscale_model_errors_name_the_valid_weights(runner, tmp_path):
    source = tmp_path / "in.png"
    write_image(source, _crop("coffee", 16))
    _one_error_line(runner.invoke(app, ["upscale", str(source), "--model", "nope"]), 2, "lapsr", "lapsr-real")
    _one_error_line(runner.invoke(app, ["upscale", str(source), "--model", "srndeblur"]), 1, "deblur", "not super-resolution")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.png"]


def test_the_gate_picks_the_clean_network_for_bicubic_and_the_real_one_for_degraded_photos():
    chosen = {"clean": [], "degraded": []}
    for index, name in enumerate(("astronaut", "chelsea", "coffee", "rocket")):
        hr = read_image(samples_dir() / f"{name}.png").pixels[..., :256, :256]
        chosen["clean"].append(inference.default_sr_weights(bicubic_downscale(hr, 4)))
        strong = realistic_downscale(hr, 4, "strong", generator=degradation_generator(11, index))
        chosen["degraded"].append(inference.default_sr_weights(strong))
    assert chosen["clean"].count("lapsr") >= 3, chosen
    assert chosen["degraded"].count("lapsr-real") >= 3, chosen


@pytest.mark.parametrize("scale", [2, 4])
def test_lapsr_real_beats_bicubic_and_the_clean_network_on_degraded_crops(scale):
    # 4 sample crops through the strong preset (measured: +1.1 dB over bicubic at x2, +0.9 at x4, on average)
    gains = {"bicubic": [], "clean": []}
    for index, name in enumerate(("astronaut", "chelsea", "coffee", "rocket")):
        hr = read_image(samples_dir() / f"{name}.png").pixels[..., 64:256, 64:256]
        lr = realistic_downscale(hr, scale, "strong", generator=degradation_generator(5, index))
        real = float(psnr(inference.upscale(lr, scale=scale, model=inference.shipped_model("lapsr-real")), hr, shave=scale)[0])
        for label, kwargs in (("bicubic", {"method": "bicubic"}), ("clean", {"model": inference.shipped_model("lapsr")})):
            gains[label].append(real - float(psnr(inference.upscale(lr, scale=scale, **kwargs), hr, shave=scale)[0]))
    assert sum(gains["bicubic"]) / 4 > 0.6 and sum(gains["clean"]) / 4 > 0.6, gains


def test_the_default_upscale_follows_the_gate(runner, tmp_path):
    hr = read_image(samples_dir() / "rocket.png").pixels[..., 64:256, 64:256]
    lr = realistic_downscale(hr, 4, "strong", generator=degradation_generator(5, 3))
    source = tmp_path / "degraded.png"
    write_image(source, lr)
    assert inference.default_sr_weights(lr) == "lapsr-real"
    for arguments, name in ((["--model", "lapsr-real"], "real.png"), ([], "default.png")):
        result = runner.invoke(app, ["upscale", str(source), "--scale", "4", *arguments, "-o", str(tmp_path / name)])
        assert result.exit_code == 0, result.output
    assert torch.equal(read_image(tmp_path / "default.png").pixels, read_image(tmp_path / "real.png").pixels)
    assert inference.default_sr_weights(bicubic_downscale(hr, 4)) == "lapsr"


@pytest.mark.parametrize("value", ["-0.01", "nan", "0.6", "51%", "loud"])
def test_deblur_noise_must_be_auto_or_a_sigma(runner, tmp_path, value):
    source = tmp_path / "in.png"
    write_image(source, _crop("coffee", 32))
    _one_error_line(runner.invoke(app, ["deblur", str(source), "--psf", "gaussian:1", "--method", "net",
                                        "--noise", value]), 2, "--noise")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.png"]


def test_deblur_known_psf_network_beats_wiener_on_a_sample(runner, tmp_path):
    sharp = _crop("coffee", 128, 150, 150)
    psf = motion_psf(9, 30)
    blurred = quantize_8bit(add_gaussian_noise(blur(sharp, psf), 0.01, generator=torch.Generator().manual_seed(0)))
    source = tmp_path / "blurred.png"
    write_image(source, blurred)
    result = runner.invoke(app, ["deblur", str(source), "--psf", "motion:9,30", "--method", "net", "-o", str(tmp_path / "net.png")])
    assert result.exit_code == 0, result.output
    restored = read_image(tmp_path / "net.png").pixels
    baseline = wiener(blurred, psf, balance=0.005)
    score = {label: float(psnr(image, sharp, shave=12)[0]) for label, image in
             (("net", restored), ("wiener", baseline), ("input", blurred))}
    assert score["net"] > score["wiener"] + 0.5 and score["wiener"] > score["input"], score
    # the library call is the same computation, with the noise level estimated from the image
    library = inference.deblur(blurred, method="net", psf=psf)
    assert (quantize_8bit(library) - restored).abs().max() <= 1 / 255 + 1e-6
    # a given noise level is used as given: a far-off one changes the result
    told = inference.deblur(blurred, method="net", psf=psf, noise=0.2)
    assert float(psnr(told, sharp, shave=12)[0]) < score["net"] - 0.5


def test_known_psf_network_tiles_like_the_whole_image():
    sharp = _crop("astronaut", 160, 40, 40)
    psf = gaussian_psf(2.0)
    blurred = quantize_8bit(blur(sharp, psf))
    whole = inference.deblur(blurred, method="net", psf=psf, tile=0, noise=0.004)
    tiled = inference.deblur(blurred, method="net", psf=psf, tile=64, noise=0.004)
    assert (whole - tiled).abs().max() <= 2 / 255


def test_eval_realistic_degradation_is_seeded_and_checked(runner, tmp_path):
    folder = tmp_path / "truth"
    folder.mkdir()
    write_image(folder / "a.png", _crop("chelsea", 64))
    arguments = ["eval", "--dataset", str(folder), "--scale", "2", "--method", "bicubic", "--json", "-q",
                 "--degradation", "realistic-mild"]
    first, second = runner.invoke(app, arguments), runner.invoke(app, arguments)
    assert first.exit_code == 0, first.output
    rows = [json.loads(r.stdout)["rows"][0]["psnr"] for r in (first, second)]
    clean = json.loads(runner.invoke(app, arguments[:-2]).stdout)["rows"][0]["psnr"]
    assert rows[0] == rows[1] and rows[0] < clean
    _one_error_line(runner.invoke(app, ["eval", "--dataset", str(folder), "--degradation", "jpeg"]), 2, "realistic-strong")


# ------------------------------------------------------------------------------------------------ deblur's blur gate

SAMPLE_NAMES = ("astronaut", "camera", "chelsea", "coffee", "rocket")


@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_the_shipped_blur_gate_leaves_sharp_samples_alone_and_passes_shaken_ones(name):
    from srdeblur.kernels import disk_psf, random_motion_psf

    gate = inference.shipped_model("blurgate")
    photo = read_image(samples_dir() / f"{name}.png").pixels
    # Measured: the sharp samples score -8.9 to -4.4, their shaken / defocused copies -0.7 to 7.3.
    assert inference.blur_logit(photo, gate) < inference.BLUR_GATE_THRESHOLD - 2
    blurs = [random_motion_psf(21, generator=torch.Generator().manual_seed(seed)) for seed in range(3)]
    for psf in [*blurs, disk_psf(4)]:
        blurred = quantize_8bit(add_gaussian_noise(blur(photo, psf), 0.01, generator=torch.Generator().manual_seed(9)))
        assert inference.blur_logit(blurred, gate) > inference.BLUR_GATE_THRESHOLD + 1


def test_deblur_by_default_returns_a_sharp_photo_untouched(runner, tmp_path):
    source = samples_dir() / "astronaut.png"
    out = tmp_path / "astronaut.png"
    result = runner.invoke(app, ["deblur", str(source), "-o", str(out), "--json"])
    assert result.exit_code == 0, result.output
    (entry,) = json.loads(result.stdout)["results"]
    assert entry["deblur"]["path"] == "none" and entry["deblur"]["blur_logit"] < inference.BLUR_GATE_THRESHOLD
    assert torch.equal(read_image(out).pixels, read_image(source).pixels)
