"""Tests for srdeblur.io: exact round trips per format, layout and bit depth, EXIF orientation against Pillow's
own exif_transpose, metadata carried across formats, hostile files, atomic writes and folder listing.
All test images are built in tmp_path."""

from __future__ import annotations

import os
import re
import stat
import struct
import zlib
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import tifffile
import torch
from PIL import ImageCms, ImageOps

from srdeblur import io as sio
from srdeblur.io import ImageError, ImageMeta, list_images, read_image, to_array, to_tensor, write_image

RNG_SEED = 1234
HEIGHT, WIDTH = 13, 17  # odd and unequal, so a transposition or off-by-one shows


# ---------------------------------------------------------------------------------------------- helpers
def random_samples(channels: int, depth: int, seed: int = RNG_SEED) -> np.ndarray:
    """(H, W, C) random integers covering the full range of the bit depth."""
    rng = np.random.default_rng(seed)
    dtype = np.uint8 if depth == 8 else np.uint16
    return rng.integers(0, 2**depth, size=(HEIGHT, WIDTH, channels), dtype=dtype)


def smooth_samples(channels: int) -> np.ndarray:
    """(H, W, C) uint8 gradients, which a lossy codec keeps close."""
    y, x = np.mgrid[0:32, 0:48]
    planes = [40 + 3 * x, 30 + 5 * y, 200 - 2 * x - y][:channels]
    return np.stack(planes, axis=-1).astype(np.uint8)


def split(samples: np.ndarray, alpha: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Colour tensor and optional alpha tensor of (H, W, C) samples whose last channel is alpha if asked."""
    colour = samples[..., :-1] if alpha else samples
    return to_tensor(colour), to_tensor(samples[..., -1]) if alpha else None


def samples_of(image: sio.Image) -> np.ndarray:
    """The (H, W, C) integer samples of a read image, alpha last, at its own bit depth."""
    depth = image.meta.bit_depth
    colour = to_array(image.pixels, bit_depth=depth)
    parts = [colour.reshape(*colour.shape[:2], -1)]
    if image.alpha is not None:
        parts.append(to_array(image.alpha, bit_depth=depth)[..., None])
    return np.concatenate(parts, axis=-1)


def srgb_profile() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def exif_bytes(orientation: int, make: str = "TestCam") -> bytes:
    exif = PIL.Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = make
    exif[0x8769] = {0x9003: "2021:02:03 04:05:06", 0xA002: 999}  # DateTimeOriginal, PixelXDimension
    return exif.tobytes()


def parse_exif(data: bytes | None) -> PIL.Image.Exif:
    exif = PIL.Image.Exif()
    if data:
        exif.load(data)
    return exif


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def leftovers(folder: Path, keep: set[str]) -> list[str]:
    return sorted(name for name in os.listdir(folder) if name not in keep)


def assert_one_line_naming(error: pytest.ExceptionInfo, path: Path) -> None:
    message = str(error.value)
    assert path.name in message
    assert "\n" not in message


# ---------------------------------------------------------------------------------------------- to_tensor / to_array
def test_to_tensor_golden_values_and_layout():
    array = np.array([[[0, 51, 255], [128, 1, 254]]], dtype=np.uint8)  # (1, 2, 3)
    tensor = to_tensor(array)
    assert tensor.shape == (1, 3, 1, 2) and tensor.dtype == torch.float32
    expected = torch.tensor([[0, 128], [51, 1], [255, 254]], dtype=torch.float32).reshape(1, 3, 1, 2) / 255
    torch.testing.assert_close(tensor, expected, rtol=0, atol=1e-7)
    assert to_tensor(np.array([[0, 65535]], dtype=">u2")).tolist() == [[[[0.0, 1.0]]]]
    assert to_tensor(np.zeros((4, 5))).shape == (1, 1, 4, 5)
    floats = to_tensor(np.array([[-0.5, 0.25, 2.0]], dtype=np.float64))
    assert floats.flatten().tolist() == [0.0, 0.25, 1.0]


@pytest.mark.parametrize("depth", [8, 16])
def test_integer_float_integer_is_identity_for_every_value(depth):
    values = np.arange(2**depth, dtype=np.uint8 if depth == 8 else np.uint16).reshape(-1, 256)
    assert np.array_equal(to_array(to_tensor(values), bit_depth=depth), values)


def test_to_array_rounds_clips_and_keeps_channel_order():
    pixels = torch.tensor([-0.3, 0.0, 10.2 / 255, 10.7 / 255, 1.0, 1.7]).reshape(1, 1, 1, 6)
    assert to_array(pixels).tolist() == [[0, 0, 10, 11, 255, 255]]
    assert to_array(pixels, bit_depth=16).tolist() == [[0, 0, 2621, 2750, 65535, 65535]]  # 10.2 * 257, 10.7 * 257
    rgb = torch.stack([torch.full((2, 3), v) for v in (0.0, 0.5, 1.0)])  # (3, H, W) also accepted
    assert to_array(rgb).shape == (2, 3, 3)
    assert to_array(rgb)[0, 0].tolist() == [0, 128, 255]


@pytest.mark.parametrize(
    "array", [np.zeros((2, 3, 4, 1), np.uint8), np.zeros((2, 3), np.int32), np.array([[np.nan]]), np.zeros((0, 3))]
)
def test_to_tensor_rejects_bad_arrays(array):
    with pytest.raises(ValueError):
        to_tensor(array)


@pytest.mark.parametrize(
    ("pixels", "depth"),
    [
        (torch.zeros(2, 3, 4, 4), 8),  # batch of two
        (torch.zeros(4, 4), 8),  # no channel axis
        (torch.zeros(1, 3, 4, 4, dtype=torch.uint8), 8),  # not float
        (torch.full((1, 1, 2, 2), float("nan")), 8),
        (torch.zeros(1, 1, 2, 2), 12),
    ],
)
def test_to_array_rejects_bad_tensors(pixels, depth):
    with pytest.raises(ValueError):
        to_array(pixels, bit_depth=depth)


# ---------------------------------------------------------------------------------------------- round trips
LOSSLESS_CASES = [
    (suffix, fmt, layout, depth)
    for suffix, fmt in ((".png", "PNG"), (".tif", "TIFF"))
    for layout in ("gray", "gray_alpha", "rgb", "rgba")
    for depth in (8, 16)
] + [(".bmp", "BMP", layout, 8) for layout in ("gray", "rgb")]
CHANNELS = {"gray": 1, "gray_alpha": 2, "rgb": 3, "rgba": 4}


@pytest.mark.parametrize(("suffix", "fmt", "layout", "depth"), LOSSLESS_CASES)
def test_lossless_round_trip_is_exact(tmp_path, suffix, fmt, layout, depth):
    samples = random_samples(CHANNELS[layout], depth)
    alpha = layout.endswith("alpha") or layout == "rgba"
    pixels, alpha_tensor = split(samples, alpha)
    path = tmp_path / f"image{suffix}"
    write_image(path, pixels, alpha=alpha_tensor, bit_depth=depth)

    image = read_image(path)

    gray = layout.startswith("gray")
    assert image.meta == ImageMeta(format=fmt, bit_depth=depth, gray=gray, has_alpha=alpha)
    assert image.pixels.shape == (1, 1 if gray else 3, HEIGHT, WIDTH) and image.pixels.dtype == torch.float32
    assert (image.alpha is not None) == alpha
    assert np.array_equal(samples_of(image), samples)
    # Pillow (another decoder) agrees with what was written, where it can hold the depth.
    if depth == 8:
        assert np.array_equal(np.asarray(PIL.Image.open(path)).reshape(samples.shape), samples)


def test_webp_quality_100_is_lossless_and_keeps_alpha(tmp_path):
    samples = random_samples(4, 8)
    pixels, alpha = split(samples, alpha=True)
    alpha[..., 0, :] = 0.0  # fully transparent row: colour under it must survive ("exact")
    samples[0, :, 3] = 0
    write_image(tmp_path / "a.webp", pixels, alpha=alpha, quality=100)
    image = read_image(tmp_path / "a.webp")
    assert image.meta.format == "WEBP" and image.meta.has_alpha
    assert np.array_equal(samples_of(image), samples)


def test_webp_has_no_gray_mode_so_gray_comes_back_as_equal_rgb(tmp_path):
    samples = random_samples(1, 8)
    write_image(tmp_path / "g.webp", to_tensor(samples), quality=100)
    image = read_image(tmp_path / "g.webp")
    assert image.pixels.shape == (1, 3, HEIGHT, WIDTH)
    for channel in range(3):
        assert np.array_equal(to_array(image.pixels[:, channel : channel + 1]), samples[..., 0])


@pytest.mark.parametrize(("suffix", "tolerance"), [(".jpg", 3.0), (".webp", 4.0)])
@pytest.mark.parametrize("channels", [1, 3])
def test_lossy_round_trip_is_close(tmp_path, suffix, tolerance, channels):
    samples = smooth_samples(channels)
    write_image(tmp_path / f"x{suffix}", to_tensor(samples), quality=95)
    image = read_image(tmp_path / f"x{suffix}")
    got = samples_of(image).astype(float)
    if suffix == ".webp" and channels == 1:
        got = got[..., :1]
    assert got.shape == samples.shape
    assert np.abs(got - samples).mean() < tolerance


@pytest.mark.parametrize("suffix", [".jpg", ".bmp"])
def test_formats_without_alpha_drop_it_and_keep_the_colour(tmp_path, suffix):
    samples = smooth_samples(3)
    alpha = torch.full((1, 1, *samples.shape[:2]), 0.25)
    write_image(tmp_path / f"x{suffix}", to_tensor(samples), alpha=alpha)
    image = read_image(tmp_path / f"x{suffix}")
    assert image.alpha is None and not image.meta.has_alpha
    assert np.abs(samples_of(image).astype(float) - samples).mean() < 3.0  # not flattened onto a background


@pytest.mark.parametrize("suffix", [".jpg", ".bmp", ".webp"])
def test_sixteen_bits_fall_back_to_eight_where_the_format_has_no_sixteen(tmp_path, suffix):
    write_image(tmp_path / f"x{suffix}", to_tensor(smooth_samples(3)), bit_depth=16)
    assert read_image(tmp_path / f"x{suffix}").meta.bit_depth == 8


def test_bit_depth_defaults_to_the_source_meta(tmp_path):
    samples = random_samples(3, 16)
    write_image(tmp_path / "in.png", to_tensor(samples), bit_depth=16)
    source = read_image(tmp_path / "in.png")
    write_image(tmp_path / "out.tif", source.pixels, meta=source.meta)
    write_image(tmp_path / "plain.png", source.pixels)
    assert read_image(tmp_path / "out.tif").meta.bit_depth == 16
    assert np.array_equal(samples_of(read_image(tmp_path / "out.tif")), samples)
    assert read_image(tmp_path / "plain.png").meta.bit_depth == 8


def test_sixteen_bit_png_is_read_at_full_precision_from_an_opencv_file(tmp_path):
    import cv2

    samples = random_samples(4, 16)
    path = tmp_path / "cv.png"
    assert cv2.imwrite(str(path), samples[..., [2, 1, 0, 3]])  # OpenCV writes BGRA
    assert np.array_equal(samples_of(read_image(path)), samples)


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_sixteen_bit_lzw_tiff_is_read_although_tifffile_lacks_the_codec(tmp_path, channels):
    import cv2

    samples = random_samples(channels, 16)
    path = tmp_path / "lzw.tif"
    order = {1: [0], 3: [2, 1, 0], 4: [2, 1, 0, 3]}[channels]  # OpenCV writes BGR(A), LZW-compressed
    assert cv2.imwrite(str(path), samples[..., order].squeeze(-1) if channels == 1 else samples[..., order])
    image = read_image(path)
    assert image.meta.bit_depth == 16 and image.meta.gray == (channels == 1)
    assert np.array_equal(samples_of(image), samples)


# ---------------------------------------------------------------------------------------------- layouts on read
def test_palette_with_transparency_becomes_rgba(tmp_path):
    palette_image = PIL.Image.new("P", (3, 2))
    palette_image.putpalette([255, 0, 0, 0, 0, 255])
    palette_image.putpixel((1, 0), 1)
    palette_image.save(tmp_path / "p.png", transparency=0)
    palette_image.save(tmp_path / "opaque.png")

    image = read_image(tmp_path / "p.png")
    assert image.meta.has_alpha and not image.meta.gray
    assert image.alpha[0, 0].tolist() == [[0.0, 1.0, 0.0], [0.0, 0.0, 0.0]]
    assert to_array(image.pixels)[0, 1].tolist() == [0, 0, 255] and to_array(image.pixels)[0, 0].tolist() == [255, 0, 0]
    opaque = read_image(tmp_path / "opaque.png")
    assert opaque.alpha is None and opaque.pixels.shape == (1, 3, 2, 3)


def test_gray_colour_key_becomes_gray_alpha(tmp_path):
    gray = np.array([[10, 20], [30, 10]], dtype=np.uint8)
    PIL.Image.fromarray(gray).save(tmp_path / "k.png", transparency=10)
    image = read_image(tmp_path / "k.png")
    assert image.meta.gray and image.pixels.shape == (1, 1, 2, 2)
    assert image.alpha[0, 0].tolist() == [[0.0, 1.0], [1.0, 0.0]]


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    PIL.Image.new("CMYK", (4, 3), (0, 255, 255, 0)).save(tmp_path / "c.jpg", quality=100)
    image = read_image(tmp_path / "c.jpg")
    assert image.pixels.shape == (1, 3, 3, 4) and image.meta.icc_profile is None
    assert np.abs(to_array(image.pixels)[0, 0].astype(int) - [255, 0, 0]).max() <= 2  # pure cyan-free red


def test_lab_tiff_becomes_rgb(tmp_path):
    rgb = PIL.Image.new("RGB", (4, 3), (200, 30, 40))
    srgb, cielab = ImageCms.createProfile("sRGB"), ImageCms.createProfile("LAB")
    lab = ImageCms.profileToProfile(rgb, srgb, cielab, outputMode="LAB")
    lab.save(tmp_path / "lab.tif")
    image = read_image(tmp_path / "lab.tif")
    assert image.pixels.shape == (1, 3, 3, 4) and not image.meta.gray
    assert np.abs(to_array(image.pixels)[1, 2].astype(int) - [200, 30, 40]).max() <= 3


def test_one_bit_image_reads_as_gray(tmp_path):
    PIL.Image.fromarray(np.array([[True, False]])).save(tmp_path / "b.png")
    image = read_image(tmp_path / "b.png")
    assert image.meta.gray and image.meta.bit_depth == 8
    assert image.pixels.flatten().tolist() == [1.0, 0.0]


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"photometric": "rgb", "extrasamples": ["assocalpha"]}, "unpremultiplied"),
        ({"photometric": "miniswhite"}, "inverted"),
        ({"photometric": "rgb", "planarconfig": "separate"}, "planar"),
    ],
)
def test_sixteen_bit_tiff_variants(tmp_path, kwargs, expected):
    path = tmp_path / "v.tif"
    if expected == "unpremultiplied":
        straight = np.array([[[40000, 20000, 0, 32768], [1000, 2000, 3000, 0]]], dtype=np.uint16)
        premultiplied = straight.astype(float)
        premultiplied[..., :3] *= straight[..., 3:] / 65535
        tifffile.imwrite(path, np.round(premultiplied).astype(np.uint16), **kwargs)
        image = read_image(path)
        assert to_array(image.alpha, bit_depth=16).tolist() == [[32768, 0]]
        assert np.abs(to_array(image.pixels, bit_depth=16)[0, 0].astype(int) - [40000, 20000, 0]).max() <= 2
        assert to_array(image.pixels, bit_depth=16)[0, 1].tolist() == [0, 0, 0]  # nothing to recover under alpha 0
    elif expected == "inverted":
        tifffile.imwrite(path, np.array([[0, 1000, 65535]], dtype=np.uint16), **kwargs)
        assert to_array(read_image(path).pixels, bit_depth=16).tolist() == [[65535, 64535, 0]]
    else:
        samples = random_samples(3, 16)
        tifffile.imwrite(path, np.moveaxis(samples, -1, 0), **kwargs)
        assert np.array_equal(samples_of(read_image(path)), samples)


# ---------------------------------------------------------------------------------------------- orientation
@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_pillow_exif_transpose(tmp_path, orientation):
    samples = random_samples(4, 8)
    path = tmp_path / "o.png"
    PIL.Image.fromarray(samples).save(path, exif=exif_bytes(orientation))
    expected = np.asarray(ImageOps.exif_transpose(PIL.Image.open(path)))

    image = read_image(path)

    assert np.array_equal(samples_of(image), expected)
    assert parse_exif(image.meta.exif)[0x0112] == 1


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_exif_orientation_applies_to_sixteen_bit_files(tmp_path, suffix):
    samples = random_samples(3, 16)
    meta = ImageMeta("PNG", 16, gray=False, has_alpha=False)
    write_image(tmp_path / f"s{suffix}", to_tensor(samples), meta=meta)
    if suffix == ".png":  # our writer resets the orientation, so put a rotated one in by hand
        data = (tmp_path / "s.png").read_bytes()
        exif = exif_bytes(8)[6:]
        data = data[:33] + png_chunk(b"eXIf", exif) + data[33:]
    else:
        with tifffile.TiffWriter(tmp_path / "t.tif") as tif:
            tif.write(samples, photometric="rgb", extratags=[(274, "H", 1, 8, True)])
        data = (tmp_path / "t.tif").read_bytes()
    (tmp_path / f"rotated{suffix}").write_bytes(data)
    image = read_image(tmp_path / f"rotated{suffix}")
    assert np.array_equal(samples_of(image), np.rot90(samples, 1))  # orientation 8 = rotate 90 counter-clockwise


def test_orientation_six_rotates_a_jpeg_clockwise(tmp_path):
    samples = np.zeros((32, 48, 3), dtype=np.uint8)
    samples[:16, :16] = 255  # bright top-left block
    PIL.Image.fromarray(samples).save(tmp_path / "r.jpg", exif=exif_bytes(6), quality=100)
    image = read_image(tmp_path / "r.jpg")
    assert image.pixels.shape == (1, 3, 48, 32)  # H and W swapped
    upright = to_array(image.pixels)
    assert upright[:16, -16:].mean() > 240 and upright[:, :16].mean() < 15  # top-left went to top-right


# ---------------------------------------------------------------------------------------------- metadata
@pytest.mark.parametrize(("suffix", "depth"), [(".png", 8), (".png", 16), (".jpg", 8), (".tif", 16), (".webp", 8)])
def test_icc_profile_is_carried(tmp_path, suffix, depth):
    profile = srgb_profile()
    PIL.Image.fromarray(smooth_samples(3)).save(tmp_path / "in.png", icc_profile=profile)
    source = read_image(tmp_path / "in.png")
    assert source.meta.icc_profile == profile

    write_image(tmp_path / f"out{suffix}", source.pixels, meta=source.meta, bit_depth=depth)

    assert read_image(tmp_path / f"out{suffix}").meta.icc_profile == profile
    assert PIL.Image.open(tmp_path / f"out{suffix}").info.get("icc_profile") == profile  # another reader agrees


def test_rgb_profile_is_not_attached_to_a_gray_output(tmp_path):
    meta = ImageMeta("PNG", 8, gray=False, has_alpha=False, icc_profile=srgb_profile())
    write_image(tmp_path / "g.png", torch.zeros(1, 1, 4, 4), meta=meta)
    assert read_image(tmp_path / "g.png").meta.icc_profile is None


@pytest.mark.parametrize(("suffix", "depth"), [(".png", 8), (".png", 16), (".jpg", 8), (".webp", 8)])
def test_exif_is_carried_with_orientation_reset(tmp_path, suffix, depth):
    PIL.Image.fromarray(smooth_samples(3)).save(tmp_path / "in.jpg", exif=exif_bytes(6))
    source = read_image(tmp_path / "in.jpg")

    write_image(tmp_path / f"out{suffix}", source.pixels, meta=source.meta, bit_depth=depth)

    written = PIL.Image.open(tmp_path / f"out{suffix}").getexif()  # read by Pillow, not by us
    assert written[0x0112] == 1 and written[0x010F] == "TestCam"
    exif_ifd = written.get_ifd(0x8769)
    assert exif_ifd[0x9003] == "2021:02:03 04:05:06"
    assert 0xA002 not in exif_ifd  # the source's pixel dimensions would be stale
    assert read_image(tmp_path / f"out{suffix}").pixels.shape == source.pixels.shape  # not rotated twice


def test_exif_orientation_passed_by_the_caller_is_forced_to_one(tmp_path):
    meta = ImageMeta("JPEG", 8, gray=False, has_alpha=False, exif=exif_bytes(8))
    write_image(tmp_path / "o.jpg", torch.zeros(1, 3, 4, 6), meta=meta)
    assert read_image(tmp_path / "o.jpg").pixels.shape == (1, 3, 4, 6)
    assert PIL.Image.open(tmp_path / "o.jpg").getexif()[0x0112] == 1


def test_exif_too_long_for_jpeg_is_dropped_not_fatal(tmp_path):
    exif = PIL.Image.Exif()
    exif[0x010F] = "TestCam"
    exif[0x8769] = {0x927C: b"m" * 70_000}  # a 70 kB maker note: fine in PNG, over JPEG's 64 kB APP1 limit
    meta = ImageMeta("PNG", 8, gray=False, has_alpha=False, exif=exif.tobytes())
    write_image(tmp_path / "big.png", torch.zeros(1, 3, 4, 4), meta=meta)
    write_image(tmp_path / "big.jpg", torch.zeros(1, 3, 4, 4), meta=meta)
    assert parse_exif(read_image(tmp_path / "big.png").meta.exif)[0x010F] == "TestCam"
    assert read_image(tmp_path / "big.jpg").meta.exif is None


@pytest.mark.parametrize("depth", [8, 16])
def test_tiff_keeps_the_text_tags_of_exif(tmp_path, depth):
    meta = ImageMeta("JPEG", depth, gray=False, has_alpha=False, exif=exif_bytes(1, make="Nikon"))
    write_image(tmp_path / "t.tif", torch.zeros(1, 3, 4, 6), meta=meta)
    with tifffile.TiffFile(tmp_path / "t.tif") as tif:
        assert tif.pages[0].tags[271].value == "Nikon"
    assert parse_exif(read_image(tmp_path / "t.tif").meta.exif)[0x010F] == "Nikon"


# ---------------------------------------------------------------------------------------------- paths
@pytest.mark.parametrize(("suffix", "depth"), [(".png", 8), (".png", 16), (".tif", 16), (".jpg", 8)])
def test_non_ascii_path(tmp_path, suffix, depth):
    folder = tmp_path / "папка"
    folder.mkdir()
    path = folder / f"фото_写真{suffix}"
    samples = random_samples(3, depth) if suffix != ".jpg" else smooth_samples(3)
    write_image(path, to_tensor(samples), bit_depth=depth)
    image = read_image(path)
    assert image.meta.bit_depth == depth
    if suffix != ".jpg":
        assert np.array_equal(samples_of(image), samples)
    assert list_images(folder) == [path]


# ---------------------------------------------------------------------------------------------- hostile files
def truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


def png_bytes(tmp_path: Path, depth: int) -> bytes:
    write_image(tmp_path / "whole.png", to_tensor(random_samples(3, depth)), bit_depth=depth)
    return (tmp_path / "whole.png").read_bytes()


def jpeg_bytes(tmp_path: Path) -> bytes:
    write_image(tmp_path / "whole.jpg", to_tensor(random_samples(3, 8)))
    return (tmp_path / "whole.jpg").read_bytes()


def tiff_bytes(tmp_path: Path, depth: int) -> bytes:
    write_image(tmp_path / "whole.tif", to_tensor(random_samples(3, depth)), bit_depth=depth)
    return (tmp_path / "whole.tif").read_bytes()


def bomb_png() -> bytes:
    """A valid-looking 100000 x 100000 PNG header followed by a few bytes of data."""
    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 300_001)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


HOSTILE_CASES = {
    "empty": lambda tmp: b"",
    "text_named_png": lambda tmp: b"this is not an image\n" * 20,
    "random_bytes": lambda tmp: np.random.default_rng(7).integers(0, 256, 4096, dtype=np.uint8).tobytes(),
    "truncated_png": lambda tmp: truncated(png_bytes(tmp, 8)),
    "truncated_png16": lambda tmp: truncated(png_bytes(tmp, 16)),
    "truncated_jpeg": lambda tmp: truncated(jpeg_bytes(tmp)),
    "png_with_bad_crc": lambda tmp: png_bytes(tmp, 8)[:29] + b"\0\0\0\0" + png_bytes(tmp, 8)[33:],
    "truncated_tiff": lambda tmp: truncated(tiff_bytes(tmp, 8)),
    "truncated_tiff16": lambda tmp: truncated(tiff_bytes(tmp, 16)),
    "decompression_bomb": lambda tmp: bomb_png(),
    "gif": lambda tmp: b"GIF89a\x01\x00\x01\x00\x00\x00\x00;",
}


@pytest.mark.parametrize("case", sorted(HOSTILE_CASES))
def test_hostile_files_raise_image_error_naming_the_file(tmp_path, case):
    data = HOSTILE_CASES[case](tmp_path)
    path = tmp_path / f"hostile_{case}.png"
    path.write_bytes(data)
    limit_before = PIL.Image.MAX_IMAGE_PIXELS
    with pytest.raises(ImageError) as error:
        read_image(path)
    assert_one_line_naming(error, path)
    assert PIL.Image.MAX_IMAGE_PIXELS == limit_before  # Pillow's global limit restored


def test_decompression_bomb_is_refused_before_decoding(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(bomb_png())
    with pytest.raises(ImageError, match="100000x100000 pixels exceeds the limit"):
        read_image(path)


@pytest.mark.parametrize(("suffix", "depth"), [(".png", 8), (".png", 16), (".tif", 8), (".tif", 16), (".jpg", 8)])
def test_max_pixels_limit_is_the_callers_on_every_decoder_path(tmp_path, suffix, depth):
    path = tmp_path / f"s{suffix}"
    write_image(path, torch.zeros(1, 3, 10, 10), bit_depth=depth)
    assert read_image(path, max_pixels=100).pixels.shape == (1, 3, 10, 10)
    with pytest.raises(ImageError, match="10x10 pixels exceeds the limit of 99 pixels"):
        read_image(path, max_pixels=99)


def test_missing_file_and_folder_raise_image_error(tmp_path):
    with pytest.raises(ImageError, match="no such file") as error:
        read_image(tmp_path / "missing.png")
    assert_one_line_naming(error, tmp_path / "missing.png")
    (tmp_path / "folder.png").mkdir()
    with pytest.raises(ImageError, match="folder") as error:
        read_image(tmp_path / "folder.png")
    assert_one_line_naming(error, tmp_path / "folder.png")


def test_thirty_two_bit_float_tiff_is_refused_clearly(tmp_path):
    tifffile.imwrite(tmp_path / "f.tif", np.zeros((4, 4), dtype=np.float32))
    with pytest.raises(ImageError, match="unsupported 32-bit float"):
        read_image(tmp_path / "f.tif")


# ---------------------------------------------------------------------------------------------- atomic writes
def test_write_into_a_missing_folder_fails_and_creates_nothing(tmp_path):
    with pytest.raises(ImageError, match="does not exist") as error:
        write_image(tmp_path / "nope" / "out.png", torch.zeros(1, 3, 4, 4))
    assert_one_line_naming(error, tmp_path / "out.png")
    assert os.listdir(tmp_path) == []


def test_write_over_a_folder_fails_and_leaves_no_temporary_file(tmp_path):
    (tmp_path / "taken.png").mkdir()
    with pytest.raises(ImageError, match="cannot write"):
        write_image(tmp_path / "taken.png", torch.zeros(1, 3, 4, 4))
    assert leftovers(tmp_path, keep={"taken.png"}) == []


def test_failure_during_write_keeps_the_old_file_and_removes_the_temporary(tmp_path, monkeypatch):
    target = tmp_path / "out.png"
    write_image(target, torch.zeros(1, 3, 4, 4))
    before = target.read_bytes()

    def failing_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(sio.os, "fsync", failing_fsync)
    with pytest.raises(ImageError, match="No space left on device"):
        write_image(target, torch.ones(1, 3, 4, 4))
    assert target.read_bytes() == before
    assert leftovers(tmp_path, keep={"out.png"}) == []


def test_overwrite_replaces_the_file_with_umask_permissions(tmp_path):
    target = tmp_path / "out.png"
    write_image(target, torch.zeros(1, 3, 4, 4))
    write_image(target, torch.ones(1, 3, 4, 4))
    assert read_image(target).pixels.min() == 1.0
    assert leftovers(tmp_path, keep={"out.png"}) == []
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask


def test_write_rejects_unknown_suffix_and_bad_arguments(tmp_path):
    with pytest.raises(ImageError, match="cannot write this file type"):
        write_image(tmp_path / "x.gif", torch.zeros(1, 3, 4, 4))
    with pytest.raises(ValueError, match="1 \\(gray\\) or 3 \\(RGB\\)"):
        write_image(tmp_path / "x.png", torch.zeros(1, 2, 4, 4))
    with pytest.raises(ValueError, match="alpha must be"):
        write_image(tmp_path / "x.png", torch.zeros(1, 3, 4, 4), alpha=torch.zeros(1, 1, 4, 5))
    with pytest.raises(ValueError, match="quality"):
        write_image(tmp_path / "x.jpg", torch.zeros(1, 3, 4, 4), quality=0)
    with pytest.raises(ValueError, match="bit_depth"):
        write_image(tmp_path / "x.png", torch.zeros(1, 3, 4, 4), bit_depth=12)
    assert os.listdir(tmp_path) == []


def test_write_accepts_unbatched_tensors_and_suffix_case(tmp_path):
    write_image(tmp_path / "X.PNG", torch.full((3, 4, 5), 0.5), alpha=torch.ones(4, 5))
    image = read_image(tmp_path / "X.PNG")
    assert image.pixels.shape == (1, 3, 4, 5) and image.alpha.shape == (1, 1, 4, 5)


# ---------------------------------------------------------------------------------------------- list_images
def test_list_images_sorted_filtered_and_optionally_recursive(tmp_path):
    for name in ["b.PNG", "a.jpg", "c.tiff", "notes.txt", ".hidden.png", "d.webp", "e.JPEG", "f.bmp", "g.tif"]:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "dir.png").mkdir()
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "z.png").write_bytes(b"x")
    (tmp_path / ".cache").mkdir()
    (tmp_path / ".cache" / "y.png").write_bytes(b"x")

    flat = [p.name for p in list_images(tmp_path)]
    assert flat == ["a.jpg", "b.PNG", "c.tiff", "d.webp", "e.JPEG", "f.bmp", "g.tif"]
    deep = [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path, recursive=True)]
    assert deep == [*flat, "sub/z.png"]
    assert all(p.parent == tmp_path for p in list_images(tmp_path))


def test_list_images_rejects_a_missing_folder(tmp_path):
    with pytest.raises(ImageError, match="not a folder"):
        list_images(tmp_path / "missing")


# ---------------------------------------------------------------------------------------------- shipped samples
def test_shipped_samples_are_small_readable_and_include_gray():
    samples = Path(__file__).resolve().parents[1] / "samples"
    readme = (samples / "README.md").read_text(encoding="utf-8")
    shipped = re.findall(r"^\| `([^`]+)` \|", readme, flags=re.MULTILINE)  # one licence row per file
    paths = [samples / name for name in shipped]
    assert 4 <= len(paths) <= 5 and all(path.is_file() for path in paths)
    # Anything else in the folder must be an output of the README's commands (git-ignored), e.g. astronaut_x4.png.
    generated = re.compile(r"_(x\d|deblurred)")
    assert {p.name for p in list_images(samples) if not generated.search(p.stem)} == set(shipped)
    assert sum(p.stat().st_size for p in paths) < 1.5e6
    images = [read_image(p) for p in paths]
    assert all(max(image.pixels.shape[-2:]) <= 512 for image in images)
    assert any(image.meta.gray for image in images) and any(not image.meta.gray for image in images)
