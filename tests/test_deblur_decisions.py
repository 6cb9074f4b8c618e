"""What ``deblur`` says it did: the library's ``on_decision`` reports, the gate's reasons
(:func:`srdeblur.blind.why_not_credible`), ``srdeblur deblur --json`` and ``--save-psf``, and the batch's side images.

The photos are the synthetic ones of ``tests/test_blind.py`` (measured there: the real gate sends the sharp one to
the network, edges about 3x steeper than its estimate allows, and deconvolves the camera-shaken one); they are
stored as 16-bit PNGs so that the CLI sees the same pixels as the library up to 1/65535. The network is a tiny
untrained one (``SRDEBLUR_WEIGHTS``): what matters here is which path ran, not how well.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from srdeblur import blind, classical, inference
from srdeblur.batch import Restored, SideImage, plan_jobs, process_image, run_jobs
from srdeblur.cli import BLIND_TV_WEIGHT, app
from srdeblur.degrade import estimate_noise
from srdeblur.inference import deblur
from srdeblur.io import read_image, write_image
from srdeblur.kernels import gaussian_psf, load_psf, random_motion_psf
from conftest import synthetic_photo, uniform_psf


@pytest.fixture(scope="module")
def sharp() -> torch.Tensor:
    return synthetic_photo(128, 128, edge=0.5, cell=(9, 13))


@pytest.fixture(scope="module")
def shaken(sharp) -> torch.Tensor:
    shake = random_motion_psf(13, generator=torch.Generator().manual_seed(0))
    noise = 0.01 * torch.randn(sharp.shape, generator=torch.Generator().manual_seed(2))
    return (classical.blur(sharp, shake) + noise).clamp(0, 1)


@pytest.fixture(scope="module")
def tiny_network() -> nn.Module:
    from srdeblur.nets import DeblurConfig, SRNDeblur

    torch.manual_seed(0)
    return SRNDeblur(DeblurConfig(channels=4, blocks=1)).eval()


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def tiny_weights(tmp_path, monkeypatch) -> Path:
    """A tiny untrained ``srndeblur`` shipped in a temporary weights folder (SRDEBLUR_WEIGHTS)."""
    from srdeblur.nets import DeblurConfig, SRNDeblur
    from srdeblur.weights import save_tensors, sha256_file

    folder = tmp_path / "weights"
    folder.mkdir()
    monkeypatch.setenv("SRDEBLUR_WEIGHTS", str(folder))
    torch.manual_seed(0)
    config = DeblurConfig(channels=4, blocks=1)
    save_tensors(folder / "srndeblur.safetensors", SRNDeblur(config).state_dict())
    manifest = {"name": "srndeblur", "architecture": "srndeblur", "file": "srndeblur.safetensors",
                "sha256": sha256_file(folder / "srndeblur.safetensors"), "config": config.to_dict()}
    (folder / "srndeblur.json").write_text(json.dumps(manifest))
    return folder


@pytest.fixture
def photos(tmp_path, sharp, shaken) -> Path:
    """A folder with ``sharp.png`` and ``shaken.png``, 16-bit gray."""
    folder = tmp_path / "photos"
    folder.mkdir()
    write_image(folder / "sharp.png", sharp, bit_depth=16)
    write_image(folder / "shaken.png", shaken, bit_depth=16)
    return folder


def _by_name(report: dict) -> dict:
    return {Path(entry["input"]).name: entry for entry in report["results"]}


def _assert_clean_usage_error(result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    for fragment in fragments:
        assert fragment in lines[0]
    assert result.stdout == ""


# ------------------------------------------------------------------------------------------------ the reasons


def test_why_not_credible_at_the_thresholds():
    assert blind.CREDIBLE_SPREAD == 180 and blind.CREDIBLE_SLOPE_RATIO == 2.5
    assert blind.why_not_credible(180.0, 2.5) == []  # "at most" passes
    assert blind.why_not_credible(1.0, 0.0) == []
    # Just above: the number is printed with enough decimals to be visibly above the limit.
    assert blind.why_not_credible(180.01, 2.5) == ["spread 180.01 px > 180"]
    assert blind.why_not_credible(180.0, 2.51) == ["edges 2.51x steeper than the PSF allows > 2.5"]
    assert blind.why_not_credible(212.3, 3.14) == ["spread 212 px > 180",
                                                   "edges 3.1x steeper than the PSF allows > 2.5"]
    # A measure that is not a number is no evidence of credibility.
    assert len(blind.why_not_credible(float("nan"), float("nan"))) == 2


def test_is_credible_is_why_not_credible_being_empty():
    """The hand-built cases of test_blind at the thresholds: both functions agree on them."""
    flat = torch.full((1, 1, 64, 64), 0.5)

    box = torch.zeros(5, 5)
    box[2, :] = 0.2  # a sharp step of height h has slope ratio 5 h against it

    def step(height: float) -> torch.Tensor:
        image = torch.full((1, 1, 48, 64), 0.1)
        image[..., 32:] += height
        return image

    cases = [(flat, uniform_psf(179), []), (flat, uniform_psf(181), ["spread 181 px > 180"]), (step(0.48), box, []),
             (step(0.52), box, ["edges 2.6x steeper than the PSF allows > 2.5"])]
    for image, psf, expected in cases:
        reasons = blind.why_not_credible(blind.psf_spread(psf), blind.edge_slope_ratio(image, psf))
        assert reasons == expected
        assert blind.is_credible(image, psf) == (not expected)


# ------------------------------------------------------------------------------------------------ the library


def test_auto_reports_one_decision_per_image_of_a_batch(sharp, shaken, tiny_network, monkeypatch):
    # The synthetic photo is no camera photo: its estimate's residual is above the shipped limit; this test is
    # about what is reported and run, the limit is tested below.
    monkeypatch.setattr(inference, "REBLUR_LIMIT", 100.0)
    decisions, estimates = [], []
    restored = deblur(torch.cat([sharp, shaken]), method="auto", model=tiny_network, tv_weight=BLIND_TV_WEIGHT,
                      on_psf=estimates.append, on_decision=decisions.append, blur_gate=False)
    assert [d["path"] for d in decisions] == ["net", "blind"]
    for decision, image, estimate in zip(decisions, (sharp, shaken), estimates):
        assert set(decision) == {"path", "blur_logit", "region", "psf_spread", "edge_slope_ratio", "reblur_ratio",
                                 "reasons"}
        assert decision["region"] == "centre"  # the photos fit in the estimation crop: no second region
        assert decision["blur_logit"] is None  # no blur gate asked
        assert decision["psf_spread"] == blind.psf_spread(estimate)
        assert decision["edge_slope_ratio"] == blind.edge_slope_ratio(image, estimate)
    fell_back, deconvolved = decisions
    assert fell_back["reasons"] and any("steeper than the PSF allows" in r for r in fell_back["reasons"])
    assert fell_back["edge_slope_ratio"] > blind.CREDIBLE_SLOPE_RATIO
    assert deconvolved["reasons"] == []
    assert fell_back["reblur_ratio"] is None and deconvolved["reblur_ratio"] <= inference.REBLUR_LIMIT
    # What was reported is what ran: the network on the first image; on the second the mean of the learned
    # deconvolution and Richardson-Lucy with the same estimate.
    torch.testing.assert_close(restored[:1], deblur(sharp, method="net", model=tiny_network), rtol=0, atol=0)
    at_auto_iterations = inference._shipped_deconvolution(inference.AUTO_DECONV_ITERATIONS)
    learned = deblur(shaken, method="net", psf=estimates[1], model=at_auto_iterations).clamp(0, 1)
    lucy = deblur(shaken, method="rl", psf=estimates[1], iterations=inference.MIX_RL_ITERATIONS,
                  tv_weight=BLIND_TV_WEIGHT)
    torch.testing.assert_close(restored[1:], (0.5 * (learned + lucy)).clamp(0, 1), rtol=0, atol=0)
    assert deconvolved["reblur_ratio"] == round(
        blind.reblur_ratio(shaken, estimates[1], learned, float(estimate_noise(shaken)[0])), 3)


def test_auto_falls_back_on_the_network_where_the_psf_does_not_explain_the_photo(shaken, tiny_network, monkeypatch):
    """A credible but wrong PSF (a vertical line where the shake is not) leaves edges in the re-blurred residual."""
    wrong = torch.zeros(25, 25)
    wrong[6:19, 12] = 1 / 13
    monkeypatch.setattr(blind, "estimate_psf", lambda image, **_: wrong[None].expand(image.shape[0], -1, -1))
    decisions = []
    restored = deblur(shaken, method="auto", model=tiny_network, on_decision=decisions.append, blur_gate=False)
    (decision,) = decisions
    assert decision["path"] == "net" and decision["reblur_ratio"] > inference.REBLUR_LIMIT
    assert decision["reasons"] == [f"the PSF does not explain the photo: re-blurred residual "
                                   f"{decision['reblur_ratio']:.1f}x the noise > {inference.REBLUR_LIMIT:g}"]
    torch.testing.assert_close(restored, deblur(shaken, method="net", model=tiny_network), rtol=0, atol=0)


def test_auto_retries_on_the_edge_rich_crop_where_the_centre_estimate_fails(shaken, tiny_network, monkeypatch):
    """The centre's estimate (a wrong line) fails the re-blur check; the edge-rich crop's (the true shake) is
    deconvolved, and the report says which region it came from. Where both fail, both reasons are reported."""
    wrong = torch.zeros(25, 25)
    wrong[6:19, 12] = 1 / 13
    good = blind.estimate_psf(shaken)[0]
    asked = []

    def estimate(image, *, region, **_):
        asked.append(region)
        return (good if region == "edges" else wrong)[None].expand(image.shape[0], -1, -1)

    monkeypatch.setattr(blind, "estimate_psf", estimate)
    monkeypatch.setattr(inference, "_estimate_regions", lambda image: ("centre", "edges"))
    monkeypatch.setattr(inference, "REBLUR_LIMIT", 3.0)  # the synthetic photo's true-shake ratio is about 2
    decisions, estimates = [], []
    restored = deblur(shaken, method="auto", model=tiny_network, tv_weight=BLIND_TV_WEIGHT, blur_gate=False,
                      on_decision=decisions.append, on_psf=estimates.append)
    (decision,) = decisions
    assert asked == ["centre", "edges"]
    assert decision["path"] == "blind" and decision["region"] == "edges" and decision["reasons"] == []
    torch.testing.assert_close(estimates[0], good)  # --save-psf writes the estimate that was used
    at_auto_iterations = inference._shipped_deconvolution(inference.AUTO_DECONV_ITERATIONS)
    learned = deblur(shaken, method="net", psf=good, model=at_auto_iterations).clamp(0, 1)
    lucy = deblur(shaken, method="rl", psf=good, iterations=inference.MIX_RL_ITERATIONS, tv_weight=BLIND_TV_WEIGHT)
    torch.testing.assert_close(restored, (0.5 * (learned + lucy)).clamp(0, 1), rtol=0, atol=0)

    monkeypatch.setattr(inference, "REBLUR_LIMIT", 0.01)  # nothing explains the photo now
    decisions.clear()
    restored = deblur(shaken, method="auto", model=tiny_network, blur_gate=False, on_decision=decisions.append)
    (decision,) = decisions
    assert decision["path"] == "net" and decision["region"] == "edges"
    first, second = decision["reasons"]
    assert first.startswith("the PSF does not explain the photo") and second.startswith("edge-rich crop: the PSF")
    assert f"{decision['reblur_ratio']:.1f}x" in second  # the ratio reported is the last estimate's
    torch.testing.assert_close(restored, deblur(shaken, method="net", model=tiny_network), rtol=0, atol=0)


def test_estimate_regions_add_the_edge_rich_crop_only_where_it_differs(monkeypatch):
    monkeypatch.setattr(inference, "ESTIMATE_SIDE", 96)  # the centred crop of a 200-px-wide photo starts at 52
    flat = torch.full((1, 3, 64, 200), 0.5)
    texture = torch.rand(1, 3, 48, 96, generator=torch.Generator().manual_seed(0))
    assert inference._estimate_regions(flat[..., :96]) == ("centre",)  # fits in the crop
    corner = flat.clone()
    corner[..., 8:56, 104:200] = texture
    assert inference._estimate_regions(corner) == ("centre", "edges")
    middle = flat.clone()
    middle[..., 8:56, 48:144] = texture  # the edge-rich window starts at 48: 4 px from the centred one
    assert inference._estimate_regions(middle) == ("centre",)


def test_blind_reports_the_gate_objections_but_deconvolves(sharp):
    decisions = []
    deblur(sharp, method="blind", iterations=2, on_decision=decisions.append)
    (decision,) = decisions
    assert decision["path"] == "blind"
    assert decision["reasons"] == blind.why_not_credible(decision["psf_spread"], decision["edge_slope_ratio"])
    assert decision["reasons"]  # the sharp photo: auto would have run the network


class _Identity(nn.Module):
    """Stands in for the known-PSF network: returns its input."""

    def forward(self, blurred, psf, sigma):
        return [blurred]


@pytest.mark.parametrize(
    "options, expected",
    [
        (dict(method="wiener", psf=gaussian_psf(1.0)), {"path": "wiener"}),
        (dict(method="rl", psf=gaussian_psf(1.0), iterations=2), {"path": "rl"}),
        (dict(method="net"), {"path": "net"}),
        (dict(method="net", psf=gaussian_psf(1.0), model=_Identity()), {"path": "net-psf"}),
        (dict(method="auto", blur_gate=False), {"path": "net", "blur_logit": None, "region": None, "psf_spread": None,
                                                "edge_slope_ratio": None, "reblur_ratio": None,
                                                "reasons": ["image smaller than twice the 25-px PSF"]}),
    ],
)
def test_every_path_reports_itself_once_per_image(tiny_network, options, expected):
    image = synthetic_photo(40, 44, edge=0.3, cell=(5, 7)).expand(2, 3, -1, -1).contiguous()
    options = {"model": tiny_network, **options}
    decisions = []
    deblur(image, on_decision=decisions.append, **options)
    assert decisions == [expected, expected]


# ------------------------------------------------------------------------------------------------ the CLI


def test_json_says_what_auto_did_to_a_sharp_and_a_shaken_photo(runner, photos, tmp_path, tiny_weights):
    out = tmp_path / "out"
    result = runner.invoke(app, ["deblur", str(photos), "-o", str(out), "--json"])
    assert result.exit_code == 0, result.output
    report = _by_name(json.loads(result.stdout))
    sharp, shaken = report["sharp.png"]["deblur"], report["shaken.png"]["deblur"]
    assert sharp["path"] == "net"
    assert sharp["reasons"] and any("steeper than the PSF allows > 2.5" in r for r in sharp["reasons"])
    assert sharp["edge_slope_ratio"] > blind.CREDIBLE_SLOPE_RATIO and sharp["psf_spread"] <= blind.CREDIBLE_SPREAD
    assert shaken == {"path": "blind", "blur_logit": None, "region": "centre", "psf_spread": pytest.approx(shaken["psf_spread"]),
                      "edge_slope_ratio": pytest.approx(shaken["edge_slope_ratio"]), "reblur_ratio": None,
                      "reasons": []}  # tiny_weights has no usrdeconv: Richardson-Lucy alone
    # The numbers are the library's on the file's pixels.
    pixels = read_image(photos / "shaken.png").pixels
    estimate = blind.estimate_psf(pixels)[0]
    assert shaken["psf_spread"] == pytest.approx(blind.psf_spread(estimate), rel=1e-9)
    assert shaken["edge_slope_ratio"] == pytest.approx(blind.edge_slope_ratio(pixels, estimate), rel=1e-9)
    # The per-file lines (stderr) name the path, and the fallback's reason.
    lines = {line.split()[1]: line for line in result.stderr.splitlines() if line.startswith("done ")}
    assert ", net: edges" in lines[str(photos / "sharp.png")]
    assert ", blind)" in lines[str(photos / "shaken.png")]


def test_json_of_a_photo_too_small_for_the_psf(runner, tmp_path, tiny_weights):
    source = tmp_path / "small.png"
    write_image(source, synthetic_photo(40, 40, edge=0.3, cell=(5, 7)))
    result = runner.invoke(app, ["deblur", str(source), "--json", "--quiet", "--save-psf"])
    assert result.exit_code == 0, result.output
    (entry,) = json.loads(result.stdout)["results"]
    assert entry["deblur"] == {"path": "net", "blur_logit": None, "region": None, "psf_spread": None,
                               "edge_slope_ratio": None, "reblur_ratio": None, "reasons": ["image smaller than twice the 25-px PSF"]}
    assert (tmp_path / "small_deblurred.png").exists()
    assert not (tmp_path / "small_deblurred_psf.png").exists()  # no estimate, nothing to save


def test_json_of_a_known_psf_method(runner, tmp_path):
    source = tmp_path / "photo.png"
    write_image(source, synthetic_photo(24, 24, edge=0.3, cell=(5, 7)))
    result = runner.invoke(app, ["deblur", str(source), "--psf", "gaussian:1", "--json", "--quiet"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["results"][0]["deblur"] == {"path": "wiener"}


def test_save_psf_writes_the_estimates_and_they_load_back(runner, photos, tmp_path, tiny_weights):
    out = tmp_path / "out"
    result = runner.invoke(app, ["deblur", str(photos), "-o", str(out), "--save-psf", "--json", "--quiet"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    # Side files are no jobs: two results, two done.
    assert report["counts"]["done"] == 2 and len(report["results"]) == 2
    assert sorted(p.name for p in out.iterdir()) == ["shaken.png", "shaken_psf.png", "sharp.png", "sharp_psf.png"]
    for name in ("sharp", "shaken"):  # also the estimate auto rejected for the sharp photo
        written = read_image(out / f"{name}_psf.png")
        assert written.meta.bit_depth == 16 and written.pixels.shape == (1, 1, 25, 25)
        estimate = blind.estimate_psf(read_image(photos / f"{name}.png").pixels)[0].float()
        assert float(written.pixels.max()) == 1.0  # peak at 65535
        loaded = load_psf(out / f"{name}_psf.png")
        assert loaded.shape == (25, 25) and float(loaded.sum()) == pytest.approx(1, abs=1e-5)
        # Within 16-bit rounding: half a step of the peak, relative to the kernel's sum.
        torch.testing.assert_close(loaded, estimate, rtol=0, atol=float(estimate.max()) / 65535 + 1e-7)
        assert report["results"][0]["notes"] == [] and report["results"][1]["notes"] == []


def test_save_psf_is_named_after_the_output_whatever_its_format(runner, photos, tmp_path):
    target = tmp_path / "out" / "restored.jpg"
    result = runner.invoke(app, ["deblur", str(photos / "shaken.png"), "--method", "blind", "--iterations", "2",
                                 "--save-psf", "-o", str(target), "--quiet"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in target.parent.iterdir()) == ["restored.jpg", "restored_psf.png"]


@pytest.mark.parametrize("folder_exists", [True, False])
def test_save_psf_leaves_nothing_when_the_output_fails(runner, photos, tmp_path, monkeypatch, folder_exists):
    from srdeblur import batch
    from srdeblur.io import ImageError

    real_write = batch.write_image

    def failing_output(path, *args, **kwargs):
        if not Path(path).name.endswith("_psf.png"):
            raise ImageError(f"{path}: disk full")
        real_write(path, *args, **kwargs)

    monkeypatch.setattr(batch, "write_image", failing_output)
    out = tmp_path / "out"
    if folder_exists:
        out.mkdir()
    result = runner.invoke(app, ["deblur", str(photos / "shaken.png"), "--method", "blind", "--iterations", "2",
                                 "--save-psf", "-o", str(out / "x.png"), "--json", "--quiet"])
    assert result.exit_code == 1, result.output
    (entry,) = json.loads(result.stdout)["results"]
    assert entry["status"] == "failed" and "disk full" in entry["message"]
    assert entry["deblur"]["path"] == "blind"  # what was done before the write failed
    # Neither the output, nor its PSF, nor the folder made for them.
    assert (list(out.iterdir()) == []) if folder_exists else not out.exists()


@pytest.mark.parametrize(
    "arguments, fragment",
    [
        (["--psf", "gaussian:1"], "--psf gives a known one"),
        (["--psf", "gaussian:1", "--method", "rl"], "--psf gives a known one"),
        (["--psf", "gaussian:1", "--method", "net"], "--psf gives a known one"),
        (["--method", "net"], "--method net estimates none"),
    ],
)
def test_save_psf_usage_errors(runner, photos, tmp_path, arguments, fragment):
    before = sorted(p.name for p in photos.iterdir())
    result = runner.invoke(app, ["deblur", str(photos), "--save-psf", *arguments])
    _assert_clean_usage_error(result, "--save-psf", fragment)
    assert sorted(p.name for p in photos.iterdir()) == before
    assert not (tmp_path / "photos_deblurred").exists()


# ------------------------------------------------------------------------------------------------ the batch


def _with_side(image):
    restored = process_image(image, lambda pixels: 1 - pixels)
    side = SideImage("_side.png", torch.linspace(0, 1, 12).reshape(1, 1, 3, 4), bit_depth=16)
    return Restored(restored, {"what": {"kind": "inverted"}}, (side,))


@pytest.mark.parametrize("pipeline", [True, False])
def test_run_jobs_writes_side_images_and_carries_info(tmp_path, pipeline):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a", "b"):
        write_image(folder / f"{name}.png", torch.full((1, 3, 5, 6), 0.25))
    jobs = plan_jobs([folder], output=tmp_path / "out", suffix="_x")
    results = run_jobs(jobs, _with_side, pipeline=pipeline)
    assert [r.status for r in results] == ["done", "done"]
    assert all(r.info == {"what": {"kind": "inverted"}} and r.notes == () for r in results)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "a_side.png", "b.png", "b_side.png"]
    side = read_image(tmp_path / "out" / "a_side.png")
    assert side.meta.bit_depth == 16
    torch.testing.assert_close(side.pixels, torch.linspace(0, 1, 12).reshape(1, 1, 3, 4), rtol=0, atol=0.5 / 65535)
    # A restoration returning a bare image still works, with empty info.
    (plain,) = run_jobs(jobs[:1], lambda image: process_image(image, lambda p: p), overwrite=True, pipeline=pipeline)
    assert plain.status == "done" and plain.info == {}


def test_a_side_image_never_replaces_an_input(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    write_image(folder / "a.png", torch.full((1, 3, 5, 6), 0.25))
    write_image(folder / "a_x_side.png", torch.full((1, 3, 5, 6), 0.5))  # an input where a's side image would go
    jobs = plan_jobs([folder / "a.png", folder / "a_x_side.png"], output=None, suffix="_x")
    results = run_jobs(jobs, _with_side)
    assert [r.status for r in results] == ["done", "done"]
    assert results[0].notes == ("a_x_side.png not written: it would replace an input or output of this batch",)
    torch.testing.assert_close(read_image(folder / "a_x_side.png").pixels, torch.full((1, 3, 5, 6), 0.5),
                               rtol=0, atol=1 / 255)


# ------------------------------------------------------------------------------------------------ the blur gate


def _constant_gate(logit: float) -> nn.Module:
    """A blur gate that says ``logit`` whatever the photo: zero weights, that bias."""
    from srdeblur.nets import DegradationGate, GateConfig

    gate = DegradationGate(GateConfig(channels=4))
    for parameter in gate.parameters():
        nn.init.zeros_(parameter)
    nn.init.constant_(gate.head.bias, logit)
    return gate.eval()


def test_auto_leaves_a_photo_the_gate_finds_sharp_exactly_as_it_is(shaken, tiny_network):
    from srdeblur.inference import BLUR_GATE_THRESHOLD

    decisions, estimates = [], []
    restored = deblur(shaken, method="auto", model=tiny_network, blur_gate=_constant_gate(BLUR_GATE_THRESHOLD),
                      on_psf=estimates.append, on_decision=decisions.append)
    assert torch.equal(restored, shaken) and restored.data_ptr() != shaken.data_ptr()
    assert estimates == []  # no PSF is estimated for a photo left alone
    (decision,) = decisions
    assert decision["path"] == "none" and decision["blur_logit"] == pytest.approx(BLUR_GATE_THRESHOLD)
    assert decision["psf_spread"] is None and decision["reasons"][0].startswith("looks sharp: blur gate")


def test_auto_past_the_gate_is_what_it_was_without_one(sharp, shaken, tiny_network, monkeypatch):
    from srdeblur.inference import BLUR_GATE_SURE

    monkeypatch.setattr(inference, "REBLUR_LIMIT", 100.0)  # as in test_auto_reports_one_decision_per_image_of_a_batch

    batch = torch.cat([sharp, shaken])
    gated, decisions = [], []
    restored = deblur(batch, method="auto", model=tiny_network, tv_weight=BLIND_TV_WEIGHT,
                      blur_gate=_constant_gate(BLUR_GATE_SURE + 0.01), on_decision=decisions.append)
    ungated = deblur(batch, method="auto", model=tiny_network, tv_weight=BLIND_TV_WEIGHT, blur_gate=False,
                     on_decision=gated.append)
    torch.testing.assert_close(restored, ungated, rtol=0, atol=0)
    assert [d["path"] for d in decisions] == ["net", "blind"]
    assert [d["blur_logit"] for d in decisions] == [pytest.approx(BLUR_GATE_SURE + 0.01)] * 2
    assert [d["blur_logit"] for d in gated] == [None, None]


@pytest.mark.parametrize("margin", [0.01, "sure"])
def test_auto_runs_the_network_where_the_gate_is_unsure(sharp, shaken, tiny_network, margin):
    from srdeblur.inference import BLUR_GATE_SURE, BLUR_GATE_THRESHOLD

    logit = BLUR_GATE_SURE if margin == "sure" else BLUR_GATE_THRESHOLD + margin
    decisions, estimates = [], []
    restored = deblur(shaken, method="auto", model=tiny_network, blur_gate=_constant_gate(logit),
                      on_psf=estimates.append, on_decision=decisions.append)
    torch.testing.assert_close(restored, deblur(shaken, method="net", model=tiny_network), rtol=0, atol=0)
    assert estimates == []
    (decision,) = decisions
    assert decision["path"] == "net" and decision["reasons"][0].startswith("blur gate unsure")


def test_json_and_output_of_a_photo_the_shipped_gate_leaves_alone(runner, photos, tmp_path, tiny_weights):
    from srdeblur.weights import save_tensors, sha256_file

    gate = _constant_gate(-5.0)
    save_tensors(tiny_weights / "blurgate.safetensors", gate.state_dict())
    manifest = {"name": "blurgate", "architecture": "degradationgate", "file": "blurgate.safetensors",
                "sha256": sha256_file(tiny_weights / "blurgate.safetensors"), "config": gate.config.to_dict()}
    (tiny_weights / "blurgate.json").write_text(json.dumps(manifest))
    out = tmp_path / "out"
    result = runner.invoke(app, ["deblur", str(photos / "shaken.png"), "-o", str(out / "shaken.png"), "--json",
                                 "--save-psf"])
    assert result.exit_code == 0, result.output
    (entry,) = json.loads(result.stdout)["results"]
    assert entry["deblur"]["path"] == "none" and entry["deblur"]["blur_logit"] == pytest.approx(-5.0)
    assert ", none: looks sharp" in result.stderr
    assert torch.equal(read_image(out / "shaken.png").pixels, read_image(photos / "shaken.png").pixels)


def test_auto_and_the_known_psf_path_run_the_shipped_network_at_their_own_iteration_counts(monkeypatch):
    from srdeblur import inference

    auto = inference._shipped_deconvolution(inference.AUTO_DECONV_ITERATIONS)
    if auto is None:
        pytest.skip("no shipped usrdeconv")
    known = inference._shipped_deconvolution(inference.KNOWN_PSF_ITERATIONS)
    assert auto.config.iterations == inference.AUTO_DECONV_ITERATIONS
    assert known.config.iterations == inference.KNOWN_PSF_ITERATIONS
    assert inference._shipped_deconvolution(inference.KNOWN_PSF_ITERATIONS) is known  # built once per process
    assert inference.known_psf_network() is known  # the library's and the CLI's network is this one
    torch.testing.assert_close(auto.prior.tail.weight, known.prior.tail.weight)  # one prior, two schedules
    # deblur --psf K --method net takes the known-PSF count
    seen = []
    real = inference.deconvolve_with_net
    monkeypatch.setattr(inference, "deconvolve_with_net",
                        lambda piece, model, *a, **k: seen.append(model.config.iterations) or real(piece, model, *a, **k))
    image = torch.rand(1, 3, 40, 40, generator=torch.Generator().manual_seed(0))
    inference.deblur(image, method="net", psf=torch.ones(3, 3) / 9, tile=0)
    assert seen and set(seen) == {inference.KNOWN_PSF_ITERATIONS}
