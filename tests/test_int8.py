"""srdeblur.int8: the SR network's feature path in int8 from stored activation ranges."""

from __future__ import annotations

import json

import pytest
import torch

from srdeblur import inference, int8
from srdeblur.metrics import psnr
from srdeblur.nets import LapSR, SRConfig
from srdeblur.weights import load_model, save_tensors, sha256_file

pytestmark = pytest.mark.skipif(not int8.available(), reason="no x86 quantized engine in this PyTorch")


@pytest.fixture(scope="module")
def small() -> LapSR:
    torch.manual_seed(0)
    model = LapSR(SRConfig(channels=8, blocks=1)).eval()
    with torch.no_grad():  # a residual path that does something (a fresh to_residual is near zero)
        model.stage.to_residual.weight.mul_(20)
    return model


def _images(count: int, seed: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    smooth = [torch.nn.functional.interpolate(torch.rand(1, 3, 6, 6, generator=generator), size=(20, 24),
                                              mode="bicubic", align_corners=False).clamp(0, 1) for _ in range(count)]
    return smooth


def test_calibrate_measures_every_activation_and_widens_the_range(small):
    ranges = int8.calibrate(small, _images(3, 0), levels=(1, 2))
    assert ranges and list(ranges) == int8.observation_points(small)
    for low, high in ranges.values():
        assert low < high
    narrow = int8.RANGE_MARGIN
    try:
        int8.RANGE_MARGIN = 0.0
        tight = int8.calibrate(small, _images(3, 0), levels=(1, 2))
    finally:
        int8.RANGE_MARGIN = narrow
    for name, (low, high) in tight.items():
        span = high - low
        assert ranges[name][0] == pytest.approx(low - narrow * span, abs=2e-6)
        assert ranges[name][1] == pytest.approx(high + narrow * span, abs=2e-6)


def test_int8_network_is_close_to_the_float_one_at_every_depth(small):
    ranges = json.loads(json.dumps(int8.calibrate(small, _images(4, 1), levels=(1, 2))))  # as stored
    quantized = int8.quantize(small, ranges)
    image = _images(1, 2)[0]
    with torch.inference_mode():
        for levels in (1, 2):
            exact = small(image, levels)
            approx = quantized(image, levels)
            assert len(approx) == levels
            for a, b in zip(approx, exact):
                assert a.shape == b.shape and a.dtype == torch.float32
                # int8 features, float32 image path: far closer than one 8-bit level on average
                assert float(psnr(a.clamp(0, 1), b.clamp(0, 1), channel="rgb")[0]) > 40
                assert not torch.equal(a, b)  # it is not the float network in disguise
    # the same ranges give the same network: nothing is calibrated at load time
    again = int8.quantize(small, ranges)
    with torch.inference_mode():
        torch.testing.assert_close(again(image, 2)[-1], quantized(image, 2)[-1], rtol=0, atol=0)


def test_quantize_rejects_ranges_of_another_network(small):
    ranges = int8.calibrate(small, _images(1, 0), levels=(1,))
    with pytest.raises(ValueError, match="needs"):
        int8.quantize(small, dict(list(ranges.items())[:-1]))
    with pytest.raises(ValueError, match="lacks"):
        int8.quantize(small, {**ranges, "block99.conv1": [0.0, 1.0]})


def _shipped(folder, model: LapSR, ranges: dict | None) -> None:
    save_tensors(folder / "tiny.safetensors", model.state_dict())
    manifest = {"name": "tiny", "architecture": "lapsr", "task": "sr", "file": "tiny.safetensors",
                "sha256": sha256_file(folder / "tiny.safetensors"), "config": model.config.to_dict()}
    if ranges is not None:
        manifest["int8"] = {"engine": "x86", "activation_ranges": ranges}
    (folder / "tiny.json").write_text(json.dumps(manifest))


def test_load_model_gives_the_int8_network_only_where_the_manifest_has_ranges(small, tmp_path):
    _shipped(tmp_path, small, int8.calibrate(small, _images(2, 0), levels=(1, 2)))
    assert isinstance(load_model("tiny", folder=tmp_path, int8=True), int8.Int8LapSR)
    assert isinstance(load_model("tiny", folder=tmp_path), LapSR)  # int8 is asked for, never implied
    _shipped(tmp_path, small, None)
    assert isinstance(load_model("tiny", folder=tmp_path, int8=True), LapSR)  # no ranges: float, as before


def test_int8_applies_to_auto_on_the_cpu_only():
    assert inference.int8_applies("auto", "cpu")
    assert not inference.int8_applies("bfloat16", "cpu") and not inference.int8_applies("float32", "cpu")
    with pytest.raises(ValueError, match="precision"):
        inference.int8_applies("int4")


def test_upscale_by_default_runs_the_shipped_int8_network_and_tiles_within_one_level(make_image):
    image = make_image(40, 52)
    default = inference.upscale(image, scale=4, tile=0)
    float_path = inference.upscale(image, scale=4, tile=0, precision="bfloat16")
    int8_model = inference.shipped_model(inference.default_sr_weights(image), int8=True)
    assert isinstance(int8_model, int8.Int8LapSR)
    torch.testing.assert_close(default, inference.upscale(image, scale=4, tile=0, model=int8_model), rtol=0, atol=0)
    assert not torch.equal(default, float_path)
    assert float(psnr(default, float_path)[0]) > 40  # Y-PSNR of the int8 result against the bfloat16 one


def test_int8_tiles_within_one_8bit_level_of_the_whole_image(make_image):
    image = make_image(96, 112)
    whole = inference.upscale(image, scale=2, tile=0)
    tiled = inference.upscale(image, scale=2, tile=48)  # the default overlap, as for the float network
    assert float((tiled - whole).abs().max()) <= 1 / 255


def test_features_stay_quantized_between_pyramid_levels(small):
    quantized = int8.quantize(small, int8.calibrate(small, _images(2, 3), levels=(1, 2)))
    seen = []
    quantized.path.register_forward_hook(lambda _m, args, out: seen.append((args[0].is_quantized, out[0].is_quantized,
                                                                            out[1].dtype)))
    with torch.inference_mode():
        quantized(_images(1, 4)[0], 3)
    # float features from embed at the first level only; the residual always comes back as float32
    assert seen == [(False, True, torch.float32), (True, True, torch.float32), (True, True, torch.float32)]
