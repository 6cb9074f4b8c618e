"""Tests for srdeblur.visual and srdeblur.html (comparing images, the HTML report; the drawing is in
test_strips.py), the lazy top-level API, the report hooks of srdeblur.evaluation, and the ``compare`` / ``eval --report`` commands. Small images only.

The browser check (does the page render?) is benchmarks/check_report_browser.py: CI may have no Chromium.
"""

from __future__ import annotations

import base64
import hashlib
import io as bytes_io
import json
import re
import subprocess
import sys
from pathlib import Path

import PIL.Image
import pytest
import torch
from typer.testing import CliRunner

from srdeblur import html, visual
from srdeblur.cli import app
from srdeblur.degrade import bicubic_downscale, mod_crop
from srdeblur.evaluation import evaluate
from srdeblur.inference import upscale
from srdeblur.io import read_image, write_image
from srdeblur.kernels import motion_psf
from srdeblur.metrics import psnr, ssim
from srdeblur.nets import LapSR, SRConfig
from srdeblur.weights import save_tensors

BAND = 18 * visual.LABEL_LINES + 4  # the label band under each panel, in pixels




def _overview_width(height: int, width: int, panel_height: int) -> int:
    """Width of the whole-image panel: the image at the crops' height, at least 150 px (room for its caption)."""
    return max(150, round(width * panel_height / height))


def _q(image: torch.Tensor) -> torch.Tensor:
    """On the 8-bit grid (panels go through uint8 arrays)."""
    return torch.round(image * 255) / 255


def test_compare_scores_against_the_truth_and_enlarges_smaller_images(make_image):
    truth = _q(make_image(32, 40, seed=7))
    good = _q((truth + 0.02).clamp(0, 1))
    bad = _q((truth + 0.1 * torch.randn(truth.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1))
    small = truth[..., ::4, ::4]
    result = visual.compare([small, good, bad], labels=["lr", "good", "bad"], truth=truth, panel_size=32)
    assert set(result.scores) == {"good", "bad"}
    assert result.scores["good"][0] == pytest.approx(float(psnr(good, truth)[0]))
    assert result.scores["bad"][1] == pytest.approx(float(ssim(bad, truth)[0]))
    assert result.scores["good"][0] > result.scores["bad"][0]
    _, _, w, h = result.box
    zoom = max(1, round(32 / max(w, h)))
    overview_width = _overview_width(32, 40, h * zoom)
    assert result.strip.shape[-1] == overview_width + 4 * (w * zoom + 8)  # overview, lr, good, bad, truth
    with pytest.raises(ValueError, match="integer factor"):
        visual.compare([truth[..., :30, :]], truth=truth)
    with pytest.raises(ValueError, match="labels"):
        visual.compare([good], labels=["a", "b"])


# ------------------------------------------------------------------------------------------------ evaluate hooks


def test_evaluate_reports_every_output_before_its_row(png_folder):
    events = []
    result = evaluate(str(png_folder), task="sr", scale=2, methods=("bicubic", "lanczos"),
                      on_output=lambda sample, method, output: events.append(("output", sample.name, method, output)),
                      on_row=lambda row: events.append(("row", row["image"], row["method"])))
    assert [event[:3] for event in events] == [
        (kind, image, method) for image in ("a", "b") for method in ("bicubic", "lanczos")
        for kind in ("output", "row")
    ]
    hr = mod_crop(read_image(png_folder / "a.png").pixels, 2)
    expected = upscale(bicubic_downscale(hr, 2), scale=2, method="bicubic")
    torch.testing.assert_close(events[0][3], expected)
    assert len(result.rows) == 4


def test_evaluate_accepts_one_image_file(png_folder):
    result = evaluate(str(png_folder / "b.png"), scale=2, methods=("bicubic",))
    assert result.dataset == "b" and [row["image"] for row in result.rows] == ["b"]


# ------------------------------------------------------------------------------------------------ report


def _strip_images(page: str) -> list[bytes]:
    return [base64.b64decode(data) for data in re.findall(r'<img[^>]* src="data:image/png;base64,([^"]+)"', page)]


def _run_folder(folder: Path) -> Path:
    folder.mkdir()
    history = [{"step": 500 * i, "cpu_hours": 0.1 * i, "loss": 0.1, "x2": 30 + i, "x4": 26 + i / 2}
               for i in range(1, 4)]
    (folder / "last.json").write_text(json.dumps({"step": 1500, "history": history}))
    return folder


def test_evaluation_report_writes_a_self_contained_page(png_folder, tmp_path):
    folder = tmp_path / "report"
    run = _run_folder(tmp_path / "run")
    evaluation = visual.evaluation_report(str(png_folder), folder, run=run, task="sr", scale=2,
                                          methods=("bicubic", "lanczos"))
    page = (folder / "index.html").read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert len(evaluation.rows) == 4
    # every <img> is an embedded PNG, one per image, the same as the strip written beside the page
    assert page.count("<img") == 2
    embedded = _strip_images(page)
    assert len(embedded) == 2
    for data, name in zip(embedded, ("a", "b")):
        assert data == (folder / "strips" / f"{name}.png").read_bytes()
        assert PIL.Image.open(bytes_io.BytesIO(data)).size[1] > 0
    # full-size files exist, are linked, and hold the outputs
    for name in ("a", "b"):
        for stem in ("input", "bicubic", "lanczos", "truth"):
            path = folder / "full" / name / f"{stem}.png"
            assert path.is_file() and f'href="full/{name}/{stem}.png"' in page
    assert read_image(folder / "full" / "a" / "input.png").pixels.shape[-2:] == (12, 16)
    assert read_image(folder / "full" / "a" / "bicubic.png").pixels.shape[-2:] == (24, 32)
    # charts: PSNR per image (a dot per image and method) and the training curve (one polyline per series)
    assert page.count("<svg") == 2
    assert page.count("<circle") == 4 + 2 * 3
    assert page.count("<polyline") == 2
    for row in evaluation.rows:
        assert f"{row['psnr']:.2f}" in page
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")  # nothing to fetch


def test_report_with_one_crop_for_all_images(png_folder, tmp_path):
    folder = tmp_path / "report"
    visual.evaluation_report(str(png_folder), folder, scale=2, methods=("bicubic",), box=(4, 4, 8, 8),
                             write_full=False)
    strip = read_image(folder / "strips" / "a.png").pixels
    zoom = round(visual.PANEL_SIZE / 8)
    # whole image (24x32 at the crops' height), input, bicubic, ground truth; every crop 8x8 zoomed
    assert strip.shape[-2:] == (8 * zoom + BAND, _overview_width(24, 32, 8 * zoom) + 3 * (8 * zoom + 8))
    assert not (folder / "full").exists()
    page = (folder / "index.html").read_text()
    assert "crop 4,4 8x8" in page


def test_collector_keeps_only_the_current_image(png_folder, tmp_path):
    collector = visual.StripCollector(tmp_path / "r", write_full=False)
    seen = []

    def on_output(sample, method, output):
        collector.on_output(sample, method, output)
        seen.append((sample.name, method, len(collector.records)))

    evaluate(str(png_folder), scale=2, methods=("bicubic", "lanczos"), on_output=on_output,
             on_row=collector.on_row)
    # a's strip is drawn (and its tensors dropped) when b's first output arrives
    assert seen == [("a", "bicubic", 0), ("a", "lanczos", 0), ("b", "bicubic", 1), ("b", "lanczos", 1)]
    records = collector.finish()
    assert [r.name for r in records] == ["a", "b"]


def test_report_with_a_tiny_network(png_folder, tmp_path):
    torch.manual_seed(0)
    model = LapSR(SRConfig(channels=4, blocks=1)).eval()
    folder = tmp_path / "report"
    evaluation = visual.evaluation_report(str(png_folder), folder, scale=2, methods=("bicubic", "net"),
                                          models={"sr": model}, limit=1)
    assert [row["method"] for row in evaluation.rows] == ["bicubic", "net"]
    assert (folder / "full" / "a" / "net.png").is_file()
    assert "net" in (folder / "index.html").read_text()


def test_deblur_report_shows_the_blurred_input_once(tmp_path, make_image):
    root = tmp_path / "data"
    (root / "deblur" / "levin" / "kernels").mkdir(parents=True)
    (root / "deblur" / "SunHays80").mkdir(parents=True)
    psf = motion_psf(5, 30)
    write_image(root / "deblur" / "levin" / "kernels" / "kernel1.png", (psf / psf.max())[None, None])
    write_image(root / "deblur" / "SunHays80" / "p1.png", make_image(32, 40, seed=6))
    widths = []
    for methods in (("input", "wiener"), ("wiener",)):
        folder = tmp_path / "-".join(methods)
        visual.evaluation_report("sun2013", folder, root=root, methods=methods, box=(0, 0, 16, 16))
        page = (folder / "index.html").read_text()
        assert page.count("<img") == 1 and "p1/kernel1" in page
        assert {p.name for p in (folder / "full" / "p1_kernel1").iterdir()} == {"input.png", "wiener.png", "truth.png"}
        widths.append(read_image(folder / "strips" / "p1_kernel1.png").pixels.shape[-1])
    # whole image, input, wiener, ground truth in both: the input is a method in the first, added in the second
    assert widths[0] == widths[1] == _overview_width(32, 40, 16 * 12) + 3 * (16 * 12 + 8)


def test_read_run_history_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="last.json"):
        visual.read_run_history(tmp_path)
    (tmp_path / "last.json").write_text("{not json")
    with pytest.raises(ValueError, match="not a training run"):
        visual.read_run_history(tmp_path)
    (tmp_path / "last.json").write_text(json.dumps({"history": 3}))
    with pytest.raises(ValueError, match="history"):
        visual.read_run_history(tmp_path)


# ------------------------------------------------------------------------------------------------ html


def test_nice_ticks_and_curve_series():
    assert html.nice_ticks(27.3, 31.9) == [27, 28, 29, 30, 31, 32]
    assert html.nice_ticks(0, 0.37) == [0, 0.1, 0.2, 0.3, 0.4]
    history = [{"step": 1, "cpu_hours": 0.5, "psnr": 27.0, "input": 26.5}, {"step": 2, "psnr": 28.0},
               {"step": 3, "cpu_hours": 1.0, "psnr": 28.5, "input": 26.5}]
    assert html.curve_series(history) == {"psnr": [(0.5, 27.0), (1.0, 28.5)], "input": [(0.5, 26.5), (1.0, 26.5)]}


def test_render_report_escapes_names():
    evaluation = {"dataset": "d", "task": "sr", "scale": 2, "methods": ["bicubic"], "conventions": {"m": "a<b"},
                  "summary": {"bicubic": {"psnr": 30.0, "ssim": 0.9, "seconds": 0.1, "count": 1}},
                  "rows": [{"image": "<script>x", "method": "bicubic", "psnr": 30.0, "ssim": 0.9, "seconds": 0.1}]}
    strips = [{"name": "<script>x", "src": "strips/a b.png", "width": 10, "height": 5, "box": (0, 0, 2, 2),
               "zoom": 3, "links": [("input", "full/x/input.png")]}]
    page = html.render_report(evaluation, strips, title="t & u")
    assert "<script" not in page and "&lt;script&gt;x" in page and "a&lt;b" in page and "t &amp; u" in page
    assert '<img class="strip" src="strips/a b.png" width="10" height="5"' in page
    assert page.count("<svg") == 1  # no run, no curve


# ------------------------------------------------------------------------------------------------ package API


def test_import_srdeblur_does_not_import_torch():
    code = ("import srdeblur, sys; assert 'torch' not in sys.modules, 'torch imported'; "
            "assert 'upscale' in dir(srdeblur)")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_lazy_api_names_are_the_library_functions(png_folder):
    import srdeblur
    import srdeblur.evaluation as evaluate_module
    from srdeblur import inference, io

    assert srdeblur.upscale is inference.upscale and srdeblur.deblur is inference.deblur
    assert srdeblur.read_image is io.read_image and srdeblur.write_image is io.write_image
    assert srdeblur.compare is visual.compare
    assert srdeblur.evaluate is evaluate_module.evaluate
    result = srdeblur.evaluate(str(png_folder), scale=2, methods=("bicubic",), limit=1)
    assert [row["image"] for row in result.rows] == ["a"]
    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        srdeblur.nonexistent  # noqa: B018


# ------------------------------------------------------------------------------------------------ CLI


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_compare_command_writes_a_labelled_strip(runner, tmp_path, make_image):
    truth = _q(make_image(32, 40, seed=8))
    write_image(tmp_path / "gt.png", truth)
    write_image(tmp_path / "a.png", (truth + 0.03).clamp(0, 1))
    write_image(tmp_path / "b.png", truth.flip(-1))
    out = tmp_path / "out" / "strip.png"
    arguments = ["compare", "--truth", str(tmp_path / "gt.png"), str(tmp_path / "a.png"), str(tmp_path / "b.png"),
                 "-o", str(out), "--crop", "4,4,16,16", "--json"]
    result = runner.invoke(app, arguments)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    a = read_image(tmp_path / "a.png").pixels
    assert summary["scores"]["a"]["psnr"] == pytest.approx(float(psnr(a, truth)[0]))
    assert summary["box"] == [4, 4, 16, 16]
    assert f"a: {summary['scores']['a']['psnr']:.2f} dB" in result.stderr
    zoom = round(visual.PANEL_SIZE / 16)
    width = _overview_width(32, 40, 16 * zoom) + 3 * (16 * zoom + 8)  # whole image, a, b, ground truth
    assert read_image(out).pixels.shape == (1, 3, 16 * zoom + BAND, width)
    # the existing output is kept unless --overwrite
    again = runner.invoke(app, arguments)
    assert again.exit_code == 2 and "--overwrite" in again.stderr
    assert runner.invoke(app, [*arguments, "--overwrite"]).exit_code == 0


def test_compare_command_methods_on_a_truth(runner, tmp_path, make_image):
    write_image(tmp_path / "gt.png", make_image(32, 48, seed=9))
    out = tmp_path / "strip.png"
    result = runner.invoke(app, ["compare", "--truth", str(tmp_path / "gt.png"), "--method", "bicubic,lanczos",
                                 "--scale", "2", "-o", str(out)])
    assert result.exit_code == 0, result.output
    rows = {r["method"]: r for r in evaluate(str(tmp_path / "gt.png"), scale=2, methods=("bicubic", "lanczos")).rows}
    assert f"bicubic: {rows['bicubic']['psnr']:.2f} dB / {rows['bicubic']['ssim']:.4f}" in result.stderr
    assert read_image(out).pixels.shape[1] == 3


@pytest.mark.parametrize(("arguments", "message"), [
    (["a.png"], "-o/--output is required"),
    (["-o", "s.png"], "give IMAGES"),
    (["a.png", "--method", "bicubic", "--truth", "a.png", "-o", "s.png"], "no IMAGES"),
    (["a.png", "b.png", "--labels", "x", "-o", "s.png"], "1 labels for 2 images"),
    (["a.png", "-o", "s.png", "--crop", "1,2"], "--crop"),
    (["a.png", "-o", "a.png"], "one of the inputs"),
    (["a.png", "missing.png", "-o", "s.png"], "no such image file: missing.png"),
])
def test_compare_command_usage_errors(runner, tmp_path, make_image, monkeypatch, arguments, message):
    monkeypatch.chdir(tmp_path)
    write_image(tmp_path / "a.png", make_image(8, 8))
    write_image(tmp_path / "b.png", make_image(8, 8))
    result = runner.invoke(app, ["compare", *arguments])
    assert result.exit_code == 2, result.output
    assert message in result.stderr and "Traceback" not in result.output


def test_compare_command_mismatched_sizes_is_a_clean_error(runner, tmp_path, make_image):
    write_image(tmp_path / "gt.png", make_image(16, 16))
    write_image(tmp_path / "a.png", make_image(15, 16))
    result = runner.invoke(app, ["compare", "--truth", str(tmp_path / "gt.png"), str(tmp_path / "a.png"),
                                 "-o", str(tmp_path / "s.png")])
    assert result.exit_code == 2 and "integer factor" in result.stderr
    assert not (tmp_path / "s.png").exists()


def _tiny_lapsr_weights(folder: Path) -> Path:
    """A random LapSR saved as the shipped ``lapsr`` (manifest + safetensors) in ``folder``."""
    folder.mkdir()
    torch.manual_seed(0)
    config = SRConfig(channels=4, blocks=1)
    save_tensors(folder / "lapsr.safetensors", LapSR(config).state_dict())
    manifest = {"architecture": "lapsr", "file": "lapsr.safetensors", "config": config.to_dict(),
                "sha256": hashlib.sha256((folder / "lapsr.safetensors").read_bytes()).hexdigest()}
    (folder / "lapsr.json").write_text(json.dumps(manifest))
    return folder


def test_eval_command_report_with_net(runner, png_folder, tmp_path, monkeypatch):
    monkeypatch.setenv("SRDEBLUR_WEIGHTS", str(_tiny_lapsr_weights(tmp_path / "weights")))
    report = tmp_path / "report"
    run = _run_folder(tmp_path / "run")
    result = runner.invoke(app, ["eval", "--dataset", str(png_folder), "--scale", "2", "--method", "bicubic,net",
                                 "--report", str(report), "--run", str(run), "--crop", "2,2,8,8", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["report"] == str(report / "index.html")
    page = (report / "index.html").read_text()
    assert page.count("<img") == 2 and len(_strip_images(page)) == 2
    assert page.count("<svg") == 2 and "crop 2,2 8x8" in page
    assert (report / "full" / "b" / "net.png").is_file()


@pytest.mark.parametrize(("extra", "message"), [
    (["--crop", "1,1,4,4"], "go with --report"),
    (["--report", "r", "--crop", "x"], "--crop"),
    (["--report", "r", "--run", "missing-run"], "last.json"),
])
def test_eval_command_report_usage_errors(runner, png_folder, tmp_path, monkeypatch, extra, message):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["eval", "--dataset", str(png_folder), "--scale", "2", "--method", "bicubic", *extra])
    assert result.exit_code == 2, result.output
    assert message in result.stderr and "Traceback" not in result.output
