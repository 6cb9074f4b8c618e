"""Hostile and odd inputs through the real command line (``srdeblur.cli.main``, in-process) and the batch layer.

Every case checks the exit code, that the message is one ``error:`` line naming the file and the problem, that
no traceback is printed and that nothing is written for it. The corpus is built here with independent writers
(Pillow, OpenCV, raw PNG chunks) and outputs are verified with independent readers. Property-based tests
(hypothesis) cover PSF parsing, the colour fill under transparent pixels and image round-trips through a batch.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import struct
import subprocess
import zlib
from pathlib import Path

import cv2
import numpy as np
import PIL.Image
import PIL.ImageCms
import PIL.ImageOps
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from srdeblur import batch, cli, io
from srdeblur.batch import Job, fill_transparent, plan_jobs, process_image, run_jobs
from srdeblur.kernels import PSFError, parse_psf
from srdeblur.resize import imresize

HYPOTHESIS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


# ------------------------------------------------------------------------------------------------ corpus


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _save(path: Path, array: np.ndarray, **options) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    PIL.Image.fromarray(array).save(path, **options)
    return path


def make_rgb_png(path: Path, height: int = 10, width: int = 12, seed: int = 0) -> Path:
    return _save(path, _rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


def make_rgb_jpeg(path: Path, height: int = 16, width: int = 16, seed: int = 1) -> Path:
    return _save(path, _rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8), quality=95)


def make_png16(path: Path, height: int = 8, width: int = 10) -> Path:
    """16-bit RGB whose samples are not on the 8-bit grid (multiples of 257), written by OpenCV."""
    samples = _rng(2).integers(0, 65536, (height, width, 3), dtype=np.uint16)
    samples[samples % 257 == 0] += 1
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), samples)
    return path


def make_gray_png(path: Path, height: int = 9, width: int = 7) -> Path:
    return _save(path, _rng(3).integers(0, 256, (height, width), dtype=np.uint8))


def make_rgba_png(path: Path, height: int = 12, width: int = 12) -> Path:
    """An opaque red square in the middle; the rest fully transparent with green under it (the bleed trap)."""
    rgba = np.zeros((height, width, 4), dtype=np.uint8)
    rgba[..., 1] = 255
    rgba[3:9, 3:9] = (255, 0, 0, 255)
    return _save(path, rgba)


def make_palette_png(path: Path, height: int = 8, width: int = 12) -> Path:
    """Palette + tRNS: index 0 opaque red (left half), index 1 transparent green (right half)."""
    indices = np.zeros((height, width), dtype=np.uint8)
    indices[:, width // 2 :] = 1
    img = PIL.Image.fromarray(indices, mode="P")
    img.putpalette([255, 0, 0, 0, 255, 0] + [0, 0, 0] * 254)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, transparency=1)
    return path


def srgb_profile() -> bytes:
    """An sRGB ICC profile (its header holds the creation time: compare with the file's own copy)."""
    return PIL.ImageCms.ImageCmsProfile(PIL.ImageCms.createProfile("sRGB")).tobytes()


def make_rotated_jpeg(path: Path) -> Path:
    """Stored 8 rows x 12 columns with the top-left quadrant white, EXIF orientation 6 (display rotated 90
    degrees clockwise: 12 rows x 8 columns, white in the top-right quadrant), an sRGB ICC profile and a Make tag."""
    stored = np.zeros((8, 12, 3), dtype=np.uint8)
    stored[:4, :6] = 255
    exif = PIL.Image.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "HostileTestCamera"
    return _save(path, stored, quality=95, subsampling=0, exif=exif.tobytes(), icc_profile=srgb_profile())


def make_empty(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def make_truncated_png(path: Path) -> Path:
    full = make_rgb_png(path, 32, 32, seed=4).read_bytes()  # noise: the IDAT is large
    path.write_bytes(full[: len(full) * 6 // 10])
    return path


def make_truncated_jpeg(path: Path) -> Path:
    full = make_rgb_jpeg(path, 32, 32, seed=5).read_bytes()
    path.write_bytes(full[: len(full) * 6 // 10])
    return path


def make_text_png(path: Path) -> Path:
    path.write_text("this is a text file, not a PNG\n")
    return path


def make_random_bytes(path: Path) -> Path:
    path.write_bytes(_rng(6).bytes(2000))
    return path


def make_bomb_png(path: Path, side: int = 100_000) -> Path:
    """A valid PNG header claiming ``side`` x ``side`` RGB pixels (100000: 30 GB decoded) with a few bytes of data."""
    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    data = zlib.compress(b"\0" * (1 + 3 * side) * 4)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", data)
                     + _png_chunk(b"IEND", b""))
    return path


def make_image_named_folder(path: Path) -> Path:
    path.mkdir()
    return path


# name -> (maker, fragments of the one-line error)
BAD_FILES = {
    "empty.png": (make_empty, ["empty file"]),
    "truncated.png": (make_truncated_png, ["not a readable image"]),
    "truncated.jpg": (make_truncated_jpeg, ["not a readable image"]),
    "text.png": (make_text_png, ["not a readable image"]),
    "random.jpg": (make_random_bytes, ["not a readable image"]),
    "bomb.png": (make_bomb_png, ["100000x100000", "exceeds the limit"]),
}
GOOD_FILES = {
    "good.png": make_rgb_png,
    "good.jpg": make_rgb_jpeg,
    "deep16.png": make_png16,
    "gray.png": make_gray_png,
    "rgba.png": make_rgba_png,
    "palette.png": make_palette_png,
    "rotated.jpg": make_rotated_jpeg,
}


# ------------------------------------------------------------------------------------------------ helpers


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    """Run ``srdeblur ARGV`` through the console-script entry point; returns (exit code, stdout, stderr)."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


def assert_one_error(code: int, err: str, expected_code: int, *fragments: str) -> str:
    """Exactly one ``error:`` line, holding every fragment; no traceback; the right exit code."""
    assert code == expected_code, err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, err
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


def files_under(folder: Path) -> list[str]:
    """Every file (hidden included) under ``folder``, relative, sorted."""
    if not folder.exists():
        return []
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() or p.is_symlink())


def png_header(path: Path) -> tuple[int, int, int, int]:
    """(width, height, bit depth, colour type) straight from the IHDR chunk."""
    data = path.read_bytes()[:29]
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height, depth, colour_type = struct.unpack(">IIBB", data[16:26])
    return width, height, depth, colour_type


def upscale_args(source, out, *extra) -> list[str]:
    return ["upscale", str(source), "-o", str(out), "--scale", "2", "--method", "bicubic", *extra]


# ------------------------------------------------------------------------------------------------ the mixed folder


def test_mixed_folder_good_odd_and_bad(tmp_path, capsys):
    folder = tmp_path / "in"
    for name, maker in GOOD_FILES.items():
        maker(folder / name)
    for name, (maker, _) in BAD_FILES.items():
        maker(folder / name)
    make_image_named_folder(folder / "x.png")
    (folder / "notes.txt").write_text("not an image")
    make_rgb_png(folder / ".hidden.png")
    before = {name: (folder / name).read_bytes() for name in files_under(folder)}
    out = tmp_path / "out"

    code, stdout, err = run_cli(capsys, "upscale", folder, "-o", out, "--scale", "2", "--method", "bicubic", "--json")

    assert code == 1, err
    assert "Traceback" not in err
    report = json.loads(stdout)
    status = {Path(r["input"]).name: r["status"] for r in report["results"]}
    assert status == {**{n: "done" for n in GOOD_FILES}, **{n: "failed" for n in BAD_FILES}}
    for name, (_, fragments) in BAD_FILES.items():
        (line,) = [line for line in err.splitlines() if line.startswith(f"error: {folder / name}:")]
        assert all(f in line for f in fragments), line
    ignored = {Path(e["path"]).name: e["reason"] for e in report["ignored"]}
    assert set(ignored) == {"x.png", "notes.txt", ".hidden.png"}
    assert "folder" in ignored["x.png"] and "hidden" in ignored[".hidden.png"]
    assert "not an image" in ignored["notes.txt"]
    assert report["counts"] == {"done": 7, "skipped": 0, "failed": 6, "ignored": 3, "not_started": 0}

    # Nothing else written: exactly the good outputs, no temporary file, inputs untouched.
    assert files_under(out) == sorted(GOOD_FILES)
    assert {name: (folder / name).read_bytes() for name in files_under(folder)} == before

    def opened(name: str) -> PIL.Image.Image:
        img = PIL.Image.open(out / name)
        img.load()
        return img

    assert opened("good.png").mode == "RGB" and opened("good.png").size == (24, 20)
    assert opened("good.jpg").format == "JPEG" and opened("good.jpg").size == (32, 32)
    assert png_header(out / "deep16.png") == (20, 16, 16, 2)
    deep = cv2.imread(str(out / "deep16.png"), cv2.IMREAD_UNCHANGED)
    assert deep.dtype == np.uint16 and (deep % 257 != 0).any()  # real 16-bit content, not 8-bit scaled up
    assert png_header(out / "gray.png") == (14, 18, 8, 0) and opened("gray.png").mode == "L"

    rgba = np.asarray(opened("rgba.png"))
    assert rgba.shape == (24, 24, 4)
    visible = rgba[..., 3] > 0
    assert visible[8:16, 8:16].all() and not visible[:3].any()
    assert rgba[visible][:, 1].max() == 0  # no green from under the transparent pixels at the edges

    palette = np.asarray(opened("palette.png").convert("RGBA"))
    assert palette.shape == (16, 24, 4)
    assert (palette[:, :9, 3] == 255).all() and (palette[:, 15:, 3] == 0).all()
    assert palette[palette[..., 3] > 0][:, 1].max() == 0

    rotated = opened("rotated.jpg")
    assert rotated.size == (16, 24)  # upright: 8 x 12 displayed, doubled
    assert rotated.getexif().get(0x0112, 1) == 1
    assert rotated.getexif().get(0x010F) == "HostileTestCamera"
    source_icc = PIL.Image.open(folder / "rotated.jpg").info["icc_profile"]
    assert rotated.info.get("icc_profile") == source_icc and source_icc.startswith(b"\0\0")
    quadrants = np.asarray(rotated.convert("L"), dtype=np.float64) / 255
    assert quadrants[:12, 8:].mean() > 0.8  # the white corner is top-right once upright
    assert max(quadrants[:12, :8].mean(), quadrants[12:].mean()) < 0.2


def test_read_image_turns_the_rotated_jpeg_upright_as_pillow_does(tmp_path):
    """srdeblur.io applies the EXIF orientation exactly as Pillow's exif_transpose (the reference) does."""
    source = make_rotated_jpeg(tmp_path / "r.jpg")
    upright = np.asarray(PIL.ImageOps.exif_transpose(PIL.Image.open(source)).convert("RGB"), dtype=np.float32) / 255
    pixels = io.read_image(source).pixels[0].permute(1, 2, 0).numpy()
    assert pixels.shape == upright.shape == (12, 8, 3)
    np.testing.assert_allclose(pixels, upright, rtol=0, atol=1e-6)
    assert upright[:6, 4:].mean() > 0.8 and upright[6:].mean() < 0.2  # white corner top-right: really turned


# ------------------------------------------------------------------------------------------------ one hostile file


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_file_alone(tmp_path, capsys, name):
    maker, fragments = BAD_FILES[name]
    source = maker(tmp_path / name)
    out = tmp_path / "out"
    code, stdout, err = run_cli(capsys, *upscale_args(source, out / name))
    assert_one_error(code, err, 1, str(source), *fragments)
    assert err.count("\n") == 1 and stdout == ""
    assert not out.exists()


def test_bad_file_never_damages_an_existing_output(tmp_path, capsys):
    source = make_truncated_png(tmp_path / "broken.png")
    target = make_rgb_png(tmp_path / "broken_x2.png", seed=9)
    before = target.read_bytes()
    code, _, err = run_cli(capsys, "upscale", source, "--scale", "2", "--method", "bicubic", "--overwrite")
    assert_one_error(code, err, 1, "broken.png")
    assert target.read_bytes() == before


def test_bomb_is_refused_before_decoding(tmp_path, capsys, monkeypatch):
    source = make_bomb_png(tmp_path / "bomb.png")
    decoded = []
    monkeypatch.setattr(PIL.Image.Image, "load", lambda self: decoded.append(1))
    code, _, err = run_cli(capsys, *upscale_args(source, tmp_path / "o.png"))
    assert_one_error(code, err, 1, "100000x100000", f"limit of {io.DEFAULT_MAX_PIXELS} pixels")
    assert decoded == []


def test_default_pixel_limit_is_the_librarys_to_the_pixel(tmp_path, capsys, monkeypatch):
    # One pixel row and column past the square root of io's limit: refused by the CLI's default, before decoding,
    # and by the library's own default.
    side = math.isqrt(io.DEFAULT_MAX_PIXELS) + 1
    source = make_bomb_png(tmp_path / "big.png", side)

    def refuse_to_decode(self):
        raise RuntimeError("decoded the pixels of an image over the limit")

    monkeypatch.setattr(PIL.Image.Image, "load", refuse_to_decode)
    code, _, err = run_cli(capsys, *upscale_args(source, tmp_path / "o.png"))
    assert_one_error(code, err, 1, f"{side}x{side}", f"limit of {io.DEFAULT_MAX_PIXELS} pixels")
    with pytest.raises(io.ImageError, match=f"limit of {io.DEFAULT_MAX_PIXELS} pixels"):
        io.read_image(source)


def test_max_pixels_option(tmp_path, capsys):
    source = make_rgb_png(tmp_path / "a.png", 10, 10)
    code, _, err = run_cli(capsys, *upscale_args(source, tmp_path / "o.png", "--max-pixels", "99"))
    assert_one_error(code, err, 1, "10x10", "limit of 99 pixels")
    code, _, err = run_cli(capsys, *upscale_args(source, tmp_path / "o.png", "--max-pixels", "100"))
    assert code == 0, err


def test_folder_named_like_an_image(tmp_path, capsys):
    folder = make_image_named_folder(tmp_path / "x.png")
    code, _, err = run_cli(capsys, "upscale", folder, "--scale", "2", "--method", "bicubic")
    assert_one_error(code, err, 2, "no images found", "x.png")
    assert files_under(tmp_path) == []


def test_fifo_named_like_an_image(tmp_path, capsys):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    code, _, err = run_cli(capsys, "upscale", fifo, "--scale", "2", "--method", "bicubic")
    assert_one_error(code, err, 2, "pipe.png", "not a regular file")
    make_rgb_png(tmp_path / "a.png")
    code, _, err = run_cli(capsys, "upscale", tmp_path, "-o", tmp_path / "out", "-s", "2", "--method", "bicubic")
    assert code == 0, err
    assert "pipe.png: not a regular file" in err and files_under(tmp_path / "out") == ["a.png"]


def test_missing_path(tmp_path, capsys):
    code, _, err = run_cli(capsys, "upscale", tmp_path / "absent.png", "--scale", "2", "--method", "bicubic")
    assert_one_error(code, err, 2, "absent.png", "no such file")


def test_output_folder_under_a_file(tmp_path, capsys):
    a, b = make_rgb_png(tmp_path / "a.png"), make_rgb_png(tmp_path / "b.png")
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a folder should be")
    code, _, err = run_cli(capsys, "upscale", a, b, "-o", blocker / "sub", "-s", "2", "--method", "bicubic")
    assert_one_error(code, err, 2, "cannot create the output folder", "blocker is a file")
    assert files_under(tmp_path) == ["a.png", "b.png", "blocker"]


def _lock(folder: Path) -> bool:
    """Make ``folder`` unwritable: chmod for a normal user; for root (who ignores modes) the immutable flag."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        return True
    return subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode == 0


def _unlock(folder: Path) -> None:
    if os.geteuid() == 0:
        subprocess.run(["chattr", "-i", str(folder)], capture_output=True)
    folder.chmod(0o755)


def test_unwritable_output_folder(tmp_path, capsys):
    source = make_rgb_png(tmp_path / "a.png")
    locked = tmp_path / "locked"
    locked.mkdir()
    if not _lock(locked):
        pytest.skip("cannot make a folder unwritable here (root without chattr)")
    try:
        code, _, err = run_cli(capsys, *upscale_args(source, locked / "a.png"))
        assert_one_error(code, err, 2, str(locked), "not writable")
        code, _, err = run_cli(capsys, *upscale_args(source, locked / "sub" / "a.png"))
        assert_one_error(code, err, 2, str(locked), "not writable")
        assert files_under(locked) == []
    finally:
        _unlock(locked)


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc")
def test_output_folder_that_cannot_be_created(tmp_path, capsys):
    """Past the early check (e.g. a pseudo file system): the failure is that file's, in one line."""
    source = make_rgb_png(tmp_path / "a.png")
    code, _, err = run_cli(capsys, *upscale_args(source, "/proc/srdeblur-test/a.png"))
    assert_one_error(code, err, 1, "a.png", "cannot create the output folder /proc/srdeblur-test")


def test_write_failure_is_reported_for_that_file(tmp_path, capsys, monkeypatch):
    """A write that fails after the checks (disk full, a folder vanished...) fails that file only."""
    make_rgb_png(tmp_path / "in" / "a.png")
    make_rgb_png(tmp_path / "in" / "b.png", seed=1)
    real_write = io._atomic_write

    def disk_full(path, data):
        if path.name == "a.png":
            raise io.ImageError(f"{path}: cannot write ([Errno 28] No space left on device)")
        real_write(path, data)

    monkeypatch.setattr(io, "_atomic_write", disk_full)
    code, _, err = run_cli(capsys, "upscale", tmp_path / "in", "-o", tmp_path / "out", "-s", "2", "--method", "bicubic")
    assert_one_error(code, err, 1, "a.png", "No space left")
    assert files_under(tmp_path / "out") == ["b.png"]


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--scale", "5"], ["--scale", "5"]),
        (["--scale", "abc"], ["--scale", "abc"]),
        (["--scale", "2.5"], ["--scale"]),
        (["--quality", "0"], ["--quality"]),
        (["--max-pixels", "0"], ["--max-pixels"]),
        (["--format", "gif"], ["--format", "gif"]),
        (["--tile", "-3"], ["--tile", "-3"]),
        (["--tile", "big"], ["--tile", "big"]),
        (["--tile-overlap", "-1"], ["--tile-overlap"]),
        (["--method", "magic"], ["--method", "magic"]),
        (["--no-such-option"], ["--no-such-option"]),
    ],
)
def test_invalid_options_are_one_line_usage_errors(tmp_path, capsys, args, fragments):
    source = make_rgb_png(tmp_path / "a.png")
    code, stdout, err = run_cli(capsys, "upscale", source, "--method", "bicubic", *args)
    assert_one_error(code, err, 2, *fragments)
    assert err.count("\n") == 1 and stdout == ""
    assert files_under(tmp_path) == ["a.png"]


def test_unexpected_exception_is_one_line(tmp_path, capsys, monkeypatch):
    source = make_rgb_png(tmp_path / "a.png")
    monkeypatch.delenv("SRDEBLUR_DEBUG", raising=False)

    def broken(*args, **kwargs):
        raise TypeError("something the code did not expect\nsecond line")

    monkeypatch.setattr(batch, "plan_jobs", broken)
    code, _, err = run_cli(capsys, "upscale", source, "--scale", "2", "--method", "bicubic")
    assert_one_error(code, err, 1, "unexpected TypeError", "something the code did not expect second line")


# ------------------------------------------------------------------------------------------------ names and safety


def test_output_onto_another_input_is_refused_even_with_overwrite(tmp_path, capsys):
    a = make_rgb_png(tmp_path / "a.png")
    a_x2 = make_rgb_png(tmp_path / "a_x2.png", seed=1)  # an input that a.png's default output would replace
    before = a_x2.read_bytes()
    code, _, err = run_cli(capsys, "upscale", a, a_x2, "--scale", "2", "--method", "bicubic", "--overwrite")
    assert_one_error(code, err, 2, "would overwrite the input", "a_x2.png")
    assert a_x2.read_bytes() == before and files_under(tmp_path) == ["a.png", "a_x2.png"]


def test_two_inputs_one_output_name_with_format(tmp_path, capsys):
    make_rgb_png(tmp_path / "in" / "a.png")
    make_rgb_jpeg(tmp_path / "in" / "a.jpg")
    code, _, err = run_cli(capsys, "upscale", tmp_path / "in", "-o", tmp_path / "out", "--format", "png", "-s", "2",
                           "--method", "bicubic")
    assert_one_error(code, err, 2, "would both be written", "a.png")
    assert not (tmp_path / "out").exists()
    code, _, err = run_cli(capsys, "upscale", tmp_path / "in", "-o", tmp_path / "out", "-s", "2", "--method", "bicubic")
    assert code == 0 and files_under(tmp_path / "out") == ["a.jpg", "a.png"]


@pytest.mark.parametrize(("output", "fragment"), [("out.txt", "not an image file name"), ("out.png", "--format jpg")])
def test_bad_output_file_names(tmp_path, capsys, output, fragment):
    source = make_rgb_png(tmp_path / "a.png")
    code, _, err = run_cli(capsys, "upscale", source, "-o", tmp_path / output, "--format", "jpg", "-s", "2",
                           "--method", "bicubic")
    assert_one_error(code, err, 2, fragment)
    assert files_under(tmp_path) == ["a.png"]


def test_recursive_tree_notes_and_output_inside_input(tmp_path, capsys):
    shots = tmp_path / "shots"
    make_rgb_png(shots / "a.png")
    make_gray_png(shots / "day" / "b.png")
    make_rgb_png(shots / ".cache" / "c.png")
    (shots / "day" / "readme.md").write_text("hi")
    out = shots / "big"  # inside the input tree: must not become an input on the next run
    args = ["upscale", shots, "-r", "-o", out, "-s", "2", "--method", "bicubic"]
    code, _, err = run_cli(capsys, *args)
    assert code == 0, err
    assert files_under(out) == ["a.png", "day/b.png"]
    assert "note: skipped" in err and "readme.md: not an image file name" in err and ".cache: hidden folder" in err
    code, stdout, err = run_cli(capsys, *args, "--skip-existing", "--json")
    assert code == 0, err
    report = json.loads(stdout)
    assert [r["status"] for r in report["results"]] == ["skipped", "skipped"]
    assert any(e["reason"].startswith("the output folder") for e in report["ignored"])
    assert files_under(out) == ["a.png", "day/b.png"]


def test_flat_folder_notes_subfolders(tmp_path, capsys):
    make_rgb_png(tmp_path / "in" / "a.png")
    make_rgb_png(tmp_path / "in" / "sub" / "b.png")
    code, _, err = run_cli(capsys, "upscale", tmp_path / "in", "-o", tmp_path / "out", "-s", "2", "--method", "bicubic")
    assert code == 0 and "sub: a folder, not searched without --recursive" in err
    assert files_under(tmp_path / "out") == ["a.png"]


def test_interrupt_leaves_complete_files_and_resumes(tmp_path, capsys, monkeypatch):
    for index, name in enumerate("abc"):
        make_rgb_png(tmp_path / "in" / f"{name}.png", seed=index)
    real_process = batch.process_image
    calls = []

    def interrupted_on_second(image, process):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_process(image, process)

    monkeypatch.setattr(batch, "process_image", interrupted_on_second)
    args = ["upscale", tmp_path / "in", "-o", tmp_path / "out", "-s", "2", "--method", "bicubic", "--json"]
    code, stdout, err = run_cli(capsys, *args)
    assert code == 130 and "interrupted" in err and "--skip-existing" in err
    report = json.loads(stdout)
    assert report["interrupted"] and report["counts"]["done"] == 1 and report["counts"]["not_started"] == 2
    assert files_under(tmp_path / "out") == ["a.png"]
    assert PIL.Image.open(tmp_path / "out" / "a.png").size == (24, 20)

    code, stdout, err = run_cli(capsys, *args, "--skip-existing")
    assert code == 0, err
    assert [r["status"] for r in json.loads(stdout)["results"]] == ["skipped", "done", "done"]
    assert files_under(tmp_path / "out") == ["a.png", "b.png", "c.png"]


def test_interrupt_during_write_leaves_nothing(tmp_path, capsys, monkeypatch):
    source = make_rgb_png(tmp_path / "a.png")
    target = make_rgb_png(tmp_path / "out" / "a.png", seed=5)
    before = target.read_bytes()

    def interrupt(descriptor):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupt)  # between writing the temporary file and renaming it
    code, _, err = run_cli(capsys, *upscale_args(source, target, "--overwrite"))
    assert code == 130, err
    assert target.read_bytes() == before and files_under(tmp_path / "out") == ["a.png"]


def test_existing_output_skip_overwrite(tmp_path, capsys):
    source = make_rgb_png(tmp_path / "a.png")
    target = make_gray_png(tmp_path / "out.png")
    before = target.read_bytes()
    code, _, err = run_cli(capsys, *upscale_args(source, target))
    assert_one_error(code, err, 1, "out.png exists", "--overwrite or --skip-existing")
    code, _, err = run_cli(capsys, *upscale_args(source, target, "--skip-existing"))
    assert code == 0 and "skipped" in err and target.read_bytes() == before
    code, _, err = run_cli(capsys, *upscale_args(source, target, "--overwrite"))
    assert code == 0 and PIL.Image.open(target).size == (24, 20)


def test_quiet_shows_only_errors_and_json_is_alone_on_stdout(tmp_path, capsys):
    make_rgb_png(tmp_path / "in" / "a.png")
    make_text_png(tmp_path / "in" / "b.png")
    code, stdout, err = run_cli(capsys, "upscale", tmp_path / "in", "-o", tmp_path / "out", "-s", "2", "--method",
                                "bicubic", "--quiet", "--json")
    assert code == 1
    assert [line for line in err.splitlines()] == [f"error: {tmp_path / 'in' / 'b.png'}: "
                                                   "not a readable image (unknown format or damaged header; PNG, "
                                                   "JPEG, TIFF, BMP and WebP are supported)"]
    report = json.loads(stdout)
    assert [(Path(r["input"]).name, r["status"]) for r in report["results"]] == [("a.png", "done"), ("b.png", "failed")]
    code, stdout, err = run_cli(capsys, "upscale", tmp_path / "in" / "a.png", "-o", tmp_path / "c.png", "-s", "2",
                                "--method", "bicubic", "-q")
    assert (code, stdout, err) == (0, "", "")


# ------------------------------------------------------------------------------------------------ formats


def test_format_jpg_drops_alpha_with_a_note(tmp_path, capsys):
    source = make_rgba_png(tmp_path / "logo.png")
    code, stdout, err = run_cli(capsys, "upscale", source, "--format", "jpg", "-s", "2", "--method", "bicubic",
                                "--json")
    assert code == 0, err
    target = tmp_path / "logo_x2.jpg"
    img = PIL.Image.open(target)
    assert img.format == "JPEG" and img.mode == "RGB" and img.size == (24, 24)
    (result,) = json.loads(stdout)["results"]
    assert result["notes"] == ["alpha dropped: .jpg cannot store it"]
    assert "note: alpha dropped" in err


def test_format_tif_keeps_16_bits_and_quality_changes_jpeg(tmp_path, capsys):
    source = make_png16(tmp_path / "deep.png")
    code, _, err = run_cli(capsys, "upscale", source, "--format", "tif", "-s", "2", "--method", "bicubic")
    assert code == 0, err
    import tifffile

    array = tifffile.imread(tmp_path / "deep_x2.tif")
    assert array.dtype == np.uint16 and array.shape == (16, 20, 3)
    photo = make_rgb_jpeg(tmp_path / "p.jpg", 32, 32)
    sizes = {}
    for quality in ("20", "95"):
        target = tmp_path / f"q{quality}.jpg"
        code, _, err = run_cli(capsys, *upscale_args(photo, target, "--quality", quality))
        assert code == 0, err
        sizes[quality] = target.stat().st_size
    assert sizes["20"] < sizes["95"] / 2


def test_tile_options_are_passed_to_inference(tmp_path, capsys, monkeypatch):
    import srdeblur.inference

    source = make_rgb_png(tmp_path / "a.png")
    seen = []
    real = srdeblur.inference.upscale

    def spy(image, **kwargs):
        seen.append({k: kwargs[k] for k in ("tile", "tile_overlap")})
        kwargs["on_tile"](1, 4)  # the per-tile progress hook must accept calls
        return real(image, **kwargs)

    monkeypatch.setattr(srdeblur.inference, "upscale", spy)
    for extra in ([], ["--tile", "0"], ["--tile", "64", "--tile-overlap", "8"]):
        code, _, err = run_cli(capsys, *upscale_args(source, tmp_path / "o.png", "--overwrite", *extra))
        assert code == 0, err
    assert seen == [{"tile": None, "tile_overlap": 32}, {"tile": 0, "tile_overlap": 32},
                    {"tile": 64, "tile_overlap": 8}]


def test_progress_view_on_a_terminal(tmp_path):
    """The rich progress (overall bar, per-tile bar) renders on a terminal and prints one line per file."""
    from io import StringIO

    from rich.console import Console

    stream = StringIO()
    console = Console(file=stream, force_terminal=True, color_system=None, width=100)
    job = Job(tmp_path / "a [x].png", tmp_path / "out.png")
    with cli._BatchView(console, quiet=False, total=2) as view:
        view.start(job)
        for done in range(1, 5):
            view.tile(done, 4)
        view.finish(batch.JobResult(job, "failed", "broken [red]file[/red]"))
        view.start(job)
        view.finish(batch.JobResult(job, "done", seconds=0.5, notes=("alpha dropped: .jpg cannot store it",)))
    text = stream.getvalue()
    assert "tiles" in text and "ETA" in text and "2/2" in text
    assert "a [x].png: broken [red]file[/red]" in text  # markup in names and messages is shown, not interpreted
    assert "note: alpha dropped" in text and view.results[0].status == "failed"


# ------------------------------------------------------------------------------------------------ deblur and PSFs


def _psf_file(path: Path, array: np.ndarray) -> Path:
    np.save(path, array)
    return path


@pytest.mark.parametrize(
    ("kernel", "fragment"),
    [
        (np.array([[0.1, np.nan], [0.2, 0.3]]), "NaN"),
        (np.array([[0.5, -0.1], [0.2, 0.3]]), "negative"),
        (np.zeros((3, 3)), "sums to zero"),
        (np.ones((2, 2, 2)), "2-D"),
    ],
)
@pytest.mark.parametrize("method", ["wiener", "rl"])
def test_bad_psf_files(tmp_path, capsys, kernel, fragment, method):
    source = make_rgb_png(tmp_path / "a.png")
    psf = _psf_file(tmp_path / "k.npy", kernel)
    code, _, err = run_cli(capsys, "deblur", source, "--method", method, "--psf", psf)
    assert_one_error(code, err, 2, "--psf", fragment)
    assert files_under(tmp_path) == ["a.png", "k.npy"]


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [("gaussian:nan", "finite"), ("gaussian:-1", ">= 0"), ("motion:5", "LENGTH,ANGLE"), ("blur:3", "unknown"),
     ("", "empty"), ("missing.png", "missing.png"), ("disk:1e9", "too large")],
)
def test_malformed_psf_specs(tmp_path, capsys, spec, fragment):
    source = make_rgb_png(tmp_path / "a.png")
    code, _, err = run_cli(capsys, "deblur", source, "--method", "wiener", "--psf", spec)
    assert_one_error(code, err, 2, "--psf", fragment)


def test_psf_file_that_is_not_a_png(tmp_path, capsys):
    source = make_rgb_png(tmp_path / "a.png")
    code, _, err = run_cli(capsys, "deblur", source, "--psf", make_text_png(tmp_path / "k.png"))
    assert_one_error(code, err, 2, "--psf", "k.png")


def test_psf_larger_than_the_image_fails_that_file(tmp_path, capsys):
    make_rgb_png(tmp_path / "in" / "big.png", 40, 40)
    make_rgb_png(tmp_path / "in" / "small.png", 6, 9)
    code, _, err = run_cli(capsys, "deblur", tmp_path / "in", "-o", tmp_path / "out", "--psf", "gaussian:3")
    assert_one_error(code, err, 1, "small.png", "19x19 PSF is larger than the 6x9 image")
    assert files_under(tmp_path / "out") == ["big.png"]


def test_deblur_keeps_alpha_and_does_not_bleed(tmp_path, capsys):
    source = make_rgba_png(tmp_path / "logo.png")
    code, _, err = run_cli(capsys, "deblur", source, "--psf", "gaussian:1", "--method", "rl", "--iterations", "3")
    assert code == 0, err
    out = np.asarray(PIL.Image.open(tmp_path / "logo_deblurred.png"))
    assert out.shape == (12, 12, 4)
    np.testing.assert_array_equal(out[..., 3], np.asarray(PIL.Image.open(source))[..., 3])
    assert out[out[..., 3] > 0][:, 1].max() == 0


# ------------------------------------------------------------------------------------------------ weights


def _tiny_weights(folder: Path, *, corrupt: bool = False, payload: bytes | None = None) -> Path:
    from srdeblur.nets import LapSR, SRConfig
    from srdeblur.weights import save_tensors, sha256_file

    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / "lapsr.safetensors"
    if payload is None:
        model = LapSR(SRConfig(channels=8, blocks=1))
        save_tensors(weights, model.state_dict())
    else:
        weights.write_bytes(payload)
    digest = sha256_file(weights)
    if corrupt:
        weights.write_bytes(weights.read_bytes()[:-1] + b"\0")  # one byte changed after the manifest was made
    manifest = {"name": "lapsr", "architecture": "lapsr", "file": weights.name, "sha256": digest,
                "config": {"channels": 8, "blocks": 1}}
    (folder / "lapsr.json").write_text(json.dumps(manifest))
    return folder


def test_net_with_tiny_weights_works(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SRDEBLUR_WEIGHTS", str(_tiny_weights(tmp_path / "w")))
    source = make_rgba_png(tmp_path / "a.png")
    code, _, err = run_cli(capsys, "upscale", source, "-s", "2", "--tile", "0")
    assert code == 0, err
    out = np.asarray(PIL.Image.open(tmp_path / "a_x2.png"))
    assert out.shape == (24, 24, 4)


def test_corrupted_weights(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SRDEBLUR_WEIGHTS", str(_tiny_weights(tmp_path / "w", corrupt=True)))
    source = make_rgb_png(tmp_path / "a.png")
    code, _, err = run_cli(capsys, "upscale", source, "-s", "2", "--method", "net")
    assert_one_error(code, err, 1, "lapsr", "sha256")
    assert files_under(tmp_path) == ["a.png", "w/lapsr.json", "w/lapsr.safetensors"]


def test_missing_weights(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SRDEBLUR_WEIGHTS", str(tmp_path / "nothing-here"))
    code, _, err = run_cli(capsys, "deblur", make_rgb_png(tmp_path / "a.png"), "--method", "net")
    assert_one_error(code, err, 1, "srndeblur", "missing")


class _Payload:
    """Unpickling this would create the marker file: it must never happen."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_pickled_weights_are_never_unpickled(tmp_path, capsys, monkeypatch):
    marker = tmp_path / "pwned"
    folder = _tiny_weights(tmp_path / "w", payload=pickle.dumps(_Payload(marker)))  # sha256 matches
    monkeypatch.setenv("SRDEBLUR_WEIGHTS", str(folder))
    code, _, err = run_cli(capsys, "upscale", make_rgb_png(tmp_path / "a.png"), "-s", "2")
    assert_one_error(code, err, 1, "lapsr", "cannot load")
    assert not marker.exists()


# ------------------------------------------------------------------------------------------------ properties


@HYPOTHESIS
@given(sigma=st.floats(0, 20), length=st.floats(0, 40), angle=st.floats(-720, 720), radius=st.floats(0, 30))
def test_parametric_psfs_are_valid(sigma, length, angle, radius):
    for spec in (f"gaussian:{sigma!r}", f"motion:{length!r},{angle!r}", f"disk:{radius!r}"):
        psf = parse_psf(spec)
        assert psf.ndim == 2 and psf.shape[0] % 2 == 1 and psf.shape[1] % 2 == 1
        assert torch.isfinite(psf).all() and (psf >= 0).all()
        assert abs(float(psf.sum()) - 1) < 1e-5


@HYPOTHESIS
@given(spec=st.one_of(st.text(max_size=30),
                      st.builds(lambda k, a: f"{k}:{a}", st.sampled_from(["gaussian", "motion", "disk", "GAUSSIAN"]),
                                st.text(alphabet="0123456789.,-+eEinfa ", max_size=12))))
def test_any_psf_spec_is_a_valid_psf_or_a_psf_error(spec):
    try:
        psf = parse_psf(spec)
    except PSFError as error:
        assert str(error) and "\n" not in str(error)
    else:
        assert psf.ndim == 2 and torch.isfinite(psf).all() and (psf >= 0).all()
        assert abs(float(psf.sum()) - 1) < 1e-5


@HYPOTHESIS
@given(kernel=arrays(np.float64, st.tuples(st.integers(1, 5), st.integers(1, 5)),
                     elements=st.one_of(st.floats(-1, 1e300), st.sampled_from([np.nan, np.inf, -np.inf, 0.0]))))
def test_psf_files_through_the_cli(tmp_path, capsys, kernel):
    source = tmp_path / "img.png"
    if not source.exists():
        make_rgb_png(source, 6, 6)
    psf = _psf_file(tmp_path / "k.npy", kernel)
    target = tmp_path / "out.png"
    code, stdout, err = run_cli(capsys, "deblur", source, "--psf", psf, "-o", target, "--overwrite")
    valid = np.isfinite(kernel).all() and (kernel >= 0).all() and kernel.sum() > 0
    if valid:
        assert code == 0, err
        assert PIL.Image.open(target).size == (6, 6)
    else:
        assert_one_error(code, err, 2, "--psf")


@HYPOTHESIS
@given(height=st.integers(1, 7), width=st.integers(1, 7), channels=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_fill_transparent_keeps_visible_and_fills_with_visible_colours(height, width, channels, seed):
    generator = torch.Generator().manual_seed(seed)
    pixels = torch.rand(1, channels, height, width, generator=generator)
    alpha = torch.rand(1, 1, height, width, generator=generator)
    alpha = torch.where(alpha < 0.6, torch.zeros_like(alpha), alpha)  # many holes
    filled = fill_transparent(pixels, alpha)
    visible = (alpha > 0).expand_as(pixels)
    assert torch.equal(filled[visible], pixels[visible])
    if visible.any():
        colours = pixels[:, :, alpha[0, 0] > 0]  # (1, C, N)
        low, high = colours.amin(dim=-1)[..., None, None], colours.amax(dim=-1)[..., None, None]
        assert ((filled >= low - 1e-6) & (filled <= high + 1e-6)).all()
    else:
        assert torch.equal(filled, pixels)


def test_fill_transparent_golden_and_errors():
    pixels = torch.tensor([[[[0.2, 0.9, 0.4, 0.7]]]])
    alpha = torch.tensor([[[[1.0, 0.0, 0.0, 0.5]]]])
    filled = fill_transparent(pixels, alpha)
    # Level 1: blocks [0.2 (weight 1), hole] and [hole, 0.7 (weight 0.5)] -> colours 0.2 and 0.7, no hole left.
    # Back at level 0 the holes (x = 1, 2) take the bilinear upsampling (half-pixel centres) of [0.2, 0.7]:
    # x = 1 samples 0.25 -> 0.75 * 0.2 + 0.25 * 0.7 = 0.325; x = 2 samples 0.75 -> 0.25 * 0.2 + 0.75 * 0.7 = 0.575.
    torch.testing.assert_close(filled, torch.tensor([[[[0.2, 0.325, 0.575, 0.7]]]]))
    with pytest.raises(ValueError, match="alpha"):
        fill_transparent(pixels, alpha[..., :3])


def test_naive_upscale_would_bleed():
    """Guard for the bleed checks above: without the fill, bicubic mixes the hidden green into the edge."""
    pixels = torch.zeros(1, 3, 12, 12)
    pixels[:, 1] = 1
    pixels[:, :, 3:9, 3:9] = torch.tensor([1.0, 0.0, 0.0])[:, None, None]
    alpha = torch.zeros(1, 1, 12, 12)
    alpha[..., 3:9, 3:9] = 1
    naive_green = imresize(pixels, scale=2)[:, 1][imresize(alpha, scale=2)[:, 0] > 0.5]
    assert naive_green.max() > 0.05
    image = io.Image(pixels, alpha, io.ImageMeta("PNG", 8, False, True))
    result = process_image(image, lambda p: imresize(p, scale=2))
    assert result.pixels[:, 1][result.alpha[:, 0] > 0].abs().max() < 1e-6


_LAYOUTS = st.sampled_from([("L", 1, 8), ("LA", 2, 8), ("RGB", 3, 8), ("RGBA", 4, 8), ("gray16", 1, 16),
                            ("rgb16", 3, 16), ("rgba16", 4, 16)])


@HYPOTHESIS
@given(layout=_LAYOUTS, height=st.integers(1, 6), width=st.integers(1, 6), seed=st.integers(0, 2**16),
       transparent=st.floats(0, 1))
def test_batch_round_trip_is_lossless(tmp_path, layout, height, width, seed, transparent):
    """An identity restoration through read -> process_image -> write keeps every visible sample, the alpha,
    the bit depth and the channel count (files written and read with OpenCV / Pillow, not srdeblur.io)."""
    name, channels, depth = layout
    rng = _rng(seed)
    dtype = np.uint8 if depth == 8 else np.uint16
    samples = rng.integers(0, 2**depth, (height, width, channels), dtype=dtype)
    if channels in (2, 4):
        samples[..., -1][rng.random((height, width)) < transparent] = 0
    source, target = tmp_path / "in.png", tmp_path / "out.png"
    target.unlink(missing_ok=True)
    if depth == 8:
        PIL.Image.fromarray(samples[..., 0] if channels == 1 else samples, mode=name).save(source)
    else:
        code = cv2.COLOR_RGB2BGR if channels == 3 else cv2.COLOR_RGBA2BGRA
        bgr = samples if channels == 1 else cv2.cvtColor(samples, code)
        assert cv2.imwrite(str(source), bgr)
    (result,) = run_jobs([Job(source, target)], lambda image: process_image(image, lambda p: p))
    assert result.status == "done", result.message
    back = cv2.imread(str(target), cv2.IMREAD_UNCHANGED)
    if back.ndim == 2:
        back = back[..., None]
    elif channels == 2:  # OpenCV expands gray+alpha to BGRA
        back = back[..., [0, 3]]
    else:
        back = cv2.cvtColor(back, cv2.COLOR_BGR2RGB if channels == 3 else cv2.COLOR_BGRA2RGBA)
    assert back.dtype == dtype and back.shape == samples.shape
    assert png_header(target)[2:] == (depth, {1: 0, 2: 4, 3: 2, 4: 6}[channels])
    if channels in (2, 4):
        np.testing.assert_array_equal(back[..., -1], samples[..., -1])
        visible = samples[..., -1] > 0
        np.testing.assert_array_equal(back[visible], samples[visible])
    else:
        np.testing.assert_array_equal(back, samples)


def test_plan_jobs_reports_ignored_entries(tmp_path):
    make_rgb_png(tmp_path / "a.png")
    (tmp_path / "b.txt").write_text("x")
    (tmp_path / "noext").write_text("x")
    seen = []
    jobs = plan_jobs([tmp_path], output=tmp_path / "out", suffix="_x2", on_ignored=seen.append)
    assert [j.source.name for j in jobs] == ["a.png"]
    assert [(e.path.name, e.reason) for e in seen] == [
        ("b.txt", "not an image file name (.txt is not an image extension)"),
        ("noext", "not an image file name (no extension)"),
    ]
