"""Tests for srdeblur.kernels: parametric PSFs, PSF files, spec parsing and random shake kernels."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from srdeblur.kernels import (
    MAX_PSF_SIZE,
    PSFError,
    disk_psf,
    gaussian_psf,
    load_psf,
    motion_psf,
    normalize_psf,
    parse_psf,
    random_motion_psf,
)


def assert_valid_psf(kernel: torch.Tensor) -> None:
    assert isinstance(kernel, torch.Tensor)
    assert kernel.dtype == torch.float32 and kernel.ndim == 2
    assert torch.isfinite(kernel).all()
    assert (kernel >= 0).all()
    assert kernel.sum().item() == pytest.approx(1.0, abs=1e-5)


def centroid(kernel: torch.Tensor) -> tuple[float, float]:
    rows = torch.arange(kernel.shape[0], dtype=torch.float64)
    cols = torch.arange(kernel.shape[1], dtype=torch.float64)
    k = kernel.double()
    return (k.sum(1) @ rows).item(), (k.sum(0) @ cols).item()


def principal_angle(kernel: torch.Tensor) -> float:
    """Direction (degrees, counter-clockwise from +x, y up) of the kernel's major inertia axis, in [0, 180)."""
    k = kernel.double()
    cy, cx = centroid(kernel)
    rows = torch.arange(k.shape[0], dtype=torch.float64)
    cols = torch.arange(k.shape[1], dtype=torch.float64)
    ys, xs = torch.meshgrid(rows, cols, indexing="ij")
    x, y = xs - cx, -(ys - cy)  # y up
    sxx, syy, sxy = (k * x * x).sum(), (k * y * y).sum(), (k * x * y).sum()
    return math.degrees(0.5 * math.atan2(2 * sxy, sxx - syy)) % 180


# --- gaussian -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sigma", [0.5, 1.0, 2.3])
def test_gaussian_matches_sampled_formula(sigma):
    kernel = gaussian_psf(sigma)
    half = math.ceil(3 * sigma)
    assert kernel.shape == (2 * half + 1, 2 * half + 1)
    axis = np.arange(-half, half + 1)
    expected = np.exp(-(axis[:, None] ** 2 + axis[None, :] ** 2) / (2 * sigma**2))
    np.testing.assert_allclose(kernel.numpy(), expected / expected.sum(), rtol=1e-5, atol=1e-8)
    assert_valid_psf(kernel)


def test_gaussian_is_symmetric_and_size_is_honoured():
    kernel = gaussian_psf(1.7, size=9)
    assert kernel.shape == (9, 9)
    torch.testing.assert_close(kernel, kernel.flip(0))
    torch.testing.assert_close(kernel, kernel.flip(1))
    torch.testing.assert_close(kernel, kernel.T)


def test_gaussian_sigma_zero_is_a_delta():
    assert torch.equal(gaussian_psf(0.0), torch.ones(1, 1))
    assert gaussian_psf(0.0, size=5)[2, 2] == 1.0


@pytest.mark.parametrize("size", [4, 0, -3, 2.0, MAX_PSF_SIZE + 2])
def test_gaussian_rejects_bad_size(size):
    with pytest.raises(PSFError):
        gaussian_psf(1.0, size=size)


# --- motion -------------------------------------------------------------------------------------------------


def test_motion_angle_zero_is_a_horizontal_line():
    kernel = motion_psf(5, 0)
    expected = torch.zeros(5, 5)
    expected[2, :] = 0.2
    torch.testing.assert_close(kernel, expected)


def test_motion_even_length_has_half_weight_end_taps():
    # A segment of length 4 centred on a pixel covers 3 pixels fully and half of the two next ones.
    kernel = motion_psf(4, 0)
    torch.testing.assert_close(kernel[2], torch.tensor([0.125, 0.25, 0.25, 0.25, 0.125]))
    assert kernel.sum(1)[[0, 1, 3, 4]].abs().max() == 0


def test_motion_angle_ninety_is_vertical_and_180_equals_0():
    torch.testing.assert_close(motion_psf(7, 90), motion_psf(7, 0).T)
    torch.testing.assert_close(motion_psf(7, 180), motion_psf(7, 0))
    torch.testing.assert_close(motion_psf(9, 30 + 360), motion_psf(9, 30))


@pytest.mark.parametrize("angle", [15.0, 30.0, 60.0, 120.0, 165.0])
def test_motion_angle_is_counter_clockwise(angle):
    kernel = motion_psf(15, angle)
    assert_valid_psf(kernel)
    # Centred and point-symmetric: a constant-velocity blur does not shift the image.
    half = kernel.shape[0] // 2
    assert centroid(kernel) == pytest.approx((half, half), abs=1e-6)
    torch.testing.assert_close(kernel, kernel.flip(0, 1))
    assert principal_angle(kernel) == pytest.approx(angle, abs=1.5)


def test_motion_45_degrees_runs_bottom_left_to_top_right():
    kernel = motion_psf(9, 45)
    anti_diagonal = kernel.flip(1).diagonal().sum()
    assert anti_diagonal > 5 * kernel.diagonal().sum()
    torch.testing.assert_close(kernel, kernel.T)


def test_motion_length_sets_the_spread():
    # Variance of a discrete box of L taps is (L^2 - 1) / 12.
    kernel = motion_psf(11, 0).double()
    cols = torch.arange(kernel.shape[1], dtype=torch.float64)
    marginal = kernel.sum(0)
    mean = (marginal @ cols).item()
    assert (marginal @ (cols - mean) ** 2).item() == pytest.approx((11**2 - 1) / 12)


@pytest.mark.parametrize("length", [0.0, 0.5, 1.0])
def test_short_motion_is_a_delta(length):
    assert torch.equal(motion_psf(length, 37), torch.ones(1, 1))


# --- disk ---------------------------------------------------------------------------------------------------


def test_disk_radius_one_hand_computed():
    # Weights clip(r + 1/2 - d, 0, 1): centre 1, edge neighbours 0.5, corners 1.5 - sqrt(2).
    corner = 1.5 - math.sqrt(2)
    expected = torch.tensor([[corner, 0.5, corner], [0.5, 1.0, 0.5], [corner, 0.5, corner]], dtype=torch.float64)
    torch.testing.assert_close(disk_psf(1.0), (expected / expected.sum()).float())


@pytest.mark.parametrize("radius", [2.0, 3.7, 6.0])
def test_disk_is_symmetric_flat_inside(radius):
    kernel = disk_psf(radius)
    assert_valid_psf(kernel)
    assert kernel.shape[0] == kernel.shape[1] and kernel.shape[0] % 2 == 1
    for transformed in (kernel.flip(0), kernel.flip(1), kernel.T):
        torch.testing.assert_close(kernel, transformed)
    half = kernel.shape[0] // 2
    assert kernel[half, half] == kernel.max()
    assert kernel[half, half + 1] == kernel.max()  # flat top: pixels well inside the disk are equal
    assert kernel[0, 0] == 0  # the corner of the box is outside the disk


def test_disk_radius_zero_is_a_delta():
    assert torch.equal(disk_psf(0), torch.ones(1, 1))


# --- normalize_psf ------------------------------------------------------------------------------------------


def test_normalize_scales_to_sum_one():
    kernel = normalize_psf(torch.tensor([[0, 2, 0], [1, 4, 1]], dtype=torch.int32))
    torch.testing.assert_close(kernel, torch.tensor([[0, 2, 0], [1, 4, 1]], dtype=torch.float32) / 8)


@pytest.mark.parametrize(
    "bad",
    [
        torch.ones(3),
        torch.ones(1, 3, 3),
        torch.zeros(0, 3),
        torch.zeros(3, 3),
        torch.tensor([[1.0, float("nan")]]),
        torch.tensor([[1.0, float("inf")]]),
        torch.tensor([[1.0, -0.1]]),
        torch.ones(2, 2, dtype=torch.complex64),
        np.ones((3, 3)),
    ],
)
def test_normalize_rejects_invalid(bad):
    with pytest.raises(PSFError):
        normalize_psf(bad)


# --- files --------------------------------------------------------------------------------------------------


@pytest.fixture
def weights() -> np.ndarray:
    rng = np.random.default_rng(3)
    array = rng.integers(0, 256, size=(7, 9)).astype(np.float64)
    array[3, 4] = 255
    return array


def test_load_png_8bit_gray(tmp_path, weights):
    path = tmp_path / "k.png"
    Image.fromarray(weights.astype(np.uint8)).save(path)
    torch.testing.assert_close(load_psf(path), torch.from_numpy(weights / weights.sum()).float())


def test_load_png_16bit_gray_keeps_precision(tmp_path, weights):
    values = weights * 256 + weights % 7  # uses the low byte too
    path = tmp_path / "k16.png"
    cv2.imwrite(str(path), values.astype(np.uint16))
    torch.testing.assert_close(load_psf(path), torch.from_numpy(values / values.sum()).float())


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_load_png_rgb_is_channel_mean(tmp_path, weights, dtype):
    rgb = np.stack([weights, weights[::-1], np.full_like(weights, 7)], axis=2)
    path = tmp_path / "rgb.png"
    cv2.imwrite(str(path), rgb.astype(dtype))  # channel order does not matter for the mean
    mean = rgb.mean(axis=2)
    torch.testing.assert_close(load_psf(path), torch.from_numpy(mean / mean.sum()).float())


def test_load_npy(tmp_path, weights):
    path = tmp_path / "k.npy"
    np.save(path, weights / 3.0)
    torch.testing.assert_close(load_psf(str(path)), torch.from_numpy(weights / weights.sum()).float())


def test_load_real_levin_kernel():
    path = "/work/shared/data/deblur/levin/kernels/kernel1.png"
    try:
        kernel = load_psf(path)
    except PSFError:
        pytest.skip("shared Levin kernels not available")
    assert kernel.shape == (19, 19)
    assert_valid_psf(kernel)


def test_load_rejects_bad_files(tmp_path):
    zeros_png = tmp_path / "zeros.png"
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(zeros_png)
    zeros_npy = tmp_path / "zeros.npy"
    np.save(zeros_npy, np.zeros((5, 5)))
    cube = tmp_path / "cube.npy"
    np.save(cube, np.ones((3, 3, 3)))
    negative = tmp_path / "negative.npy"
    np.save(negative, -np.ones((3, 3)))
    text = tmp_path / "k.txt"
    text.write_text("1 2 3")
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG not really")
    corrupt_npy = tmp_path / "corrupt.npy"
    corrupt_npy.write_bytes(b"garbage")
    for path in (zeros_png, zeros_npy, cube, negative, text, corrupt, corrupt_npy, tmp_path / "missing.png", tmp_path):
        with pytest.raises(PSFError) as info:
            load_psf(path)
        assert "\n" not in str(info.value)


# --- parse_psf ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("gaussian:1.5", lambda: gaussian_psf(1.5)),
        ("motion:7,30", lambda: motion_psf(7, 30)),
        ("motion:12.5,-20", lambda: motion_psf(12.5, -20)),
        ("disk:2", lambda: disk_psf(2)),
        ("  Gaussian: 1.5 ", lambda: gaussian_psf(1.5)),
        ("MOTION: 7 , 30", lambda: motion_psf(7, 30)),
    ],
)
def test_parse_parametric_specs(spec, expected):
    torch.testing.assert_close(parse_psf(spec), expected(), rtol=0, atol=0)


def test_parse_file_specs(tmp_path, weights):
    png, npy = tmp_path / "k.png", tmp_path / "k.npy"
    Image.fromarray(weights.astype(np.uint8)).save(png)
    np.save(npy, weights)
    for path in (png, npy):
        torch.testing.assert_close(parse_psf(str(path)), load_psf(path))


@pytest.mark.parametrize(
    "spec",
    [
        "gaussian:",
        "gaussian:-1",
        "gaussian:nan",
        "gaussian:inf",
        "gaussian:1,",
        "gaussian:1e9",
        "motion:5",
        "motion:5,",
        "motion:,30",
        "motion:5,30,2",
        "motion:-3,0",
        "motion:5,inf",
        "motion:1e300,0",
        "disk:abc",
        "disk:-0.5",
        "disk:1e9",
        "foo:1",
        "gaussian",
        "",
        "   ",
        "no/such/kernel.png",
    ],
)
def test_parse_rejects_malformed(spec):
    with pytest.raises(PSFError) as info:
        parse_psf(spec)
    message = str(info.value)
    assert message and "\n" not in message


def test_parse_rejects_non_string_and_directory(tmp_path):
    with pytest.raises(PSFError):
        parse_psf(None)  # type: ignore[arg-type]
    with pytest.raises(PSFError):
        parse_psf(str(tmp_path))


finite = {"allow_nan": False, "allow_infinity": False}
valid_specs = st.one_of(
    st.floats(0, 20, **finite).map(lambda s: f"gaussian:{s!r}"),
    st.tuples(st.floats(0, 60, **finite), st.floats(-720, 720, **finite)).map(lambda la: f"motion:{la[0]!r},{la[1]!r}"),
    st.floats(0, 30, **finite).map(lambda r: f"disk:{r!r}"),
)


@settings(max_examples=60, deadline=None)
@given(valid_specs)
def test_parse_valid_specs_give_valid_kernels(spec):
    kernel = parse_psf(spec)
    assert_valid_psf(kernel)
    assert kernel.shape[0] % 2 == 1 and kernel.shape[1] % 2 == 1


junk_specs = st.one_of(
    st.text(max_size=40),
    st.builds("{}:{}".format, st.sampled_from(["gaussian", "motion", "disk", "Motion"]), st.text(max_size=20)),
    st.builds("{}:{},{}".format, st.sampled_from(["gaussian", "motion", "disk"]), st.floats(), st.floats()),
)


@settings(max_examples=150, deadline=None)
@given(junk_specs)
def test_parse_junk_raises_only_psf_error(spec):
    # Junk must never escape as another exception type; the rare junk that happens to be valid must give a PSF.
    try:
        kernel = parse_psf(spec)
    except PSFError as error:
        assert "\n" not in str(error)
    else:
        assert_valid_psf(kernel)


# --- random_motion_psf --------------------------------------------------------------------------------------


def test_random_motion_is_deterministic_per_seed():
    first = random_motion_psf(31, generator=torch.Generator().manual_seed(7))
    again = random_motion_psf(31, generator=torch.Generator().manual_seed(7))
    other = random_motion_psf(31, generator=torch.Generator().manual_seed(8))
    assert torch.equal(first, again)
    assert not torch.allclose(first, other)


@pytest.mark.parametrize("size", [3, 15, 31, 63])
def test_random_motion_is_valid_and_centred(size):
    generator = torch.Generator().manual_seed(size)
    kernels = [random_motion_psf(size, generator=generator) for _ in range(4)]
    for kernel in kernels:
        assert kernel.shape == (size, size)
        assert_valid_psf(kernel)
        assert centroid(kernel) == pytest.approx((size // 2, size // 2), abs=1e-4)
    # Successive draws from one generator differ.
    assert not torch.allclose(kernels[0], kernels[1])


def test_random_motion_is_a_thin_path_not_a_blob():
    # Camera shake is a curve: most of the box stays empty.
    generator = torch.Generator().manual_seed(0)
    for _ in range(5):
        kernel = random_motion_psf(31, generator=generator)
        assert (kernel > 0).float().mean() < 0.5
        assert (kernel > 0).sum() > 3


@pytest.mark.parametrize("size", [1, 2, 32, 101, 15.0, True])
def test_random_motion_rejects_bad_size(size):
    with pytest.raises(PSFError):
        random_motion_psf(size, generator=torch.Generator().manual_seed(0))


def test_random_motion_requires_a_generator():
    with pytest.raises(PSFError):
        random_motion_psf(15, generator=0)  # type: ignore[arg-type]


def _step_lengths(xs: list[float], ys: list[float]) -> torch.Tensor:
    x, y = torch.tensor(xs), torch.tensor(ys)
    return torch.hypot(x.diff(), y.diff())


def test_shake_walk_moves_at_constant_speed_and_tremor_dwells():
    from srdeblur.kernels import _shake_trajectory, _tremor_trajectory

    walk = _step_lengths(*_shake_trajectory(500, torch.Generator().manual_seed(0)))
    torch.testing.assert_close(walk, torch.full_like(walk, walk[0].item()))
    for seed in range(5):
        steps = _step_lengths(*_tremor_trajectory(500, torch.Generator().manual_seed(seed)))
        # Sampled uniformly in time: the slowest tenth of the exposure moves far less than the fastest.
        assert steps.quantile(0.1) < 0.5 * steps.quantile(0.9)


def test_random_motion_draws_both_kinds_of_trajectory(monkeypatch):
    import srdeblur.kernels as kernels

    calls = {"tremor": 0, "walk": 0}
    for name, key in (("_tremor_trajectory", "tremor"), ("_shake_trajectory", "walk")):
        original = getattr(kernels, name)

        def counted(*args, _original=original, _key=key, **kwargs):
            calls[_key] += 1
            return _original(*args, **kwargs)

        monkeypatch.setattr(kernels, name, counted)
    generator = torch.Generator().manual_seed(0)
    for _ in range(40):
        assert_valid_psf(random_motion_psf(15, generator=generator))
    assert calls["tremor"] + calls["walk"] == 40
    assert 10 <= calls["tremor"] <= 30
