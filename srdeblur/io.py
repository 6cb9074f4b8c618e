"""Image files in and out: the only place where pixel formats are converted.

Everything else in srdeblur sees an image as a float32 tensor of shape (B, C, H, W) in [0, 1] with C = 1 (gray)
or C = 3 (RGB). This module turns PNG, JPEG, TIFF, BMP and WebP files (8 or 16 bits per sample; gray, gray+alpha,
RGB, RGBA, palette, CMYK) into such tensors and back, and carries what a user would miss if it were lost: the bit
depth, grayness, the alpha channel (kept apart from the colour tensor, straight, never premultiplied), the ICC
profile and the EXIF block.

Decoders: Pillow for 8-bit data; OpenCV for 16-bit PNG (Pillow cannot hold 16-bit RGB); tifffile for 16-bit TIFF,
with OpenCV as a fallback for compressions tifffile cannot decode without the optional ``imagecodecs``. Encoders:
Pillow for 8-bit PNG, JPEG, BMP and WebP; a small PNG writer of our own for 16-bit PNG (so that gray+alpha, ICC and
EXIF survive); tifffile for TIFF.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import secrets
import struct
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

import cv2
import numpy as np
import PIL.Image
import PIL.ImageCms
import torch


class _LazyModule:
    """A module imported on first use (tifffile costs 0.16 s of every command's start-up; few read TIFFs)."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attribute: str):
        import importlib

        return getattr(importlib.import_module(self._name), attribute)


tifffile = _LazyModule("tifffile")

__all__ = [
    "Canvas",
    "DEFAULT_MAX_PIXELS",
    "IMAGE_SUFFIXES",
    "Image",
    "ImageError",
    "ImageMeta",
    "list_images",
    "read_image",
    "to_array",
    "to_tensor",
    "write_image",
]

logger = logging.getLogger(__name__)

DEFAULT_MAX_PIXELS = 300_000_000
"""Largest width * height that :func:`read_image` decodes (about 17k x 17k); larger headers are refused."""

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp"})

_FORMAT_BY_SUFFIX = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".bmp": "BMP",
    ".webp": "WEBP",
}
_SUPPORTED_FORMATS = ("PNG", "JPEG", "TIFF", "BMP", "WEBP")
_SIXTEEN_BIT_FORMATS = frozenset({"PNG", "TIFF"})
_ALPHA_FORMATS = frozenset({"PNG", "TIFF", "WEBP"})
_ICC_FORMATS = frozenset({"PNG", "JPEG", "TIFF", "WEBP"})
_EXIF_FORMATS = frozenset({"PNG", "JPEG", "TIFF", "WEBP"})
_MAX_VALUE = {8: 255, 16: 65535}

_ORIENTATION_TAG = 0x0112
_EXIF_IFD_TAG = 0x8769
_GPS_IFD_TAG = 0x8825
_X_RESOLUTION_TAG, _Y_RESOLUTION_TAG, _RESOLUTION_UNIT_TAG = 282, 283, 296
# IFD0 tags that describe the picture rather than the layout of the file they came from. Layout tags (strip
# offsets, sample format, compression...) must not travel: written into another file they would lie about it.
# Text tags: ImageDescription, Make, Model, Software, DateTime, Artist, HostComputer, Copyright.
_ASCII_IFD0_TAGS = (270, 271, 272, 305, 306, 315, 316, 33432)
_DESCRIPTIVE_IFD0_TAGS = (*_ASCII_IFD0_TAGS, _X_RESOLUTION_TAG, _Y_RESOLUTION_TAG, _RESOLUTION_UNIT_TAG)
# Exif sub-IFD tags that go stale when the pixels change size (PixelX/YDimension) or that point into the source
# file (Interoperability IFD).
_STALE_EXIF_TAGS = frozenset({0xA002, 0xA003, 0xA005})

_JPEG_MAX_EXIF = 65_533  # one APP1 segment: 65535 bytes minus its 2-byte length
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_GRAY_ALPHA = 4
_PNG_IDAT_CHUNK = 1 << 20
_PNG_FILTER_ROWS = 256

# Pillow's own bomb check reads the module global PIL.Image.MAX_IMAGE_PIXELS; see _pillow_bomb_check_off.
_PILLOW_LIMIT_LOCK = threading.Lock()


class ImageError(Exception):
    """A file cannot be read or written as an image; the message is one line that names the file."""


@dataclass(frozen=True)
class ImageMeta:
    """What a file said about its pixels, kept so that the output can say the same.

    Attributes
    ----------
    format : str
        "PNG", "JPEG", "TIFF", "BMP" or "WEBP".
    bit_depth : int
        Bits per sample of the source, 8 or 16.
    gray : bool
        True if the source had no colour (L, LA, 1-bit, 16-bit gray).
    has_alpha : bool
        True if the source had an alpha channel or a transparent palette entry / colour key.
    icc_profile : bytes or None
        The embedded ICC profile, or None (None also after a CMYK/Lab source was converted to sRGB).
    exif : bytes or None
        The EXIF block ("Exif\\0\\0" + TIFF structure) with its orientation set to 1, because the pixels have been
        rotated upright already; None if the source had no descriptive EXIF tags.
    """

    format: str
    bit_depth: int
    gray: bool
    has_alpha: bool
    icc_profile: bytes | None = None
    exif: bytes | None = None


@dataclass(frozen=True)
class Image:
    """A decoded image file.

    Attributes
    ----------
    pixels : torch.Tensor
        (1, C, H, W) float32 in [0, 1]; C = 1 for gray sources, 3 otherwise. Upright (EXIF orientation applied).
    alpha : torch.Tensor or None
        (1, 1, H, W) float32 in [0, 1], straight (not premultiplied), or None if the source had no alpha.
    meta : ImageMeta
        What the file said about its pixels.
    """

    pixels: torch.Tensor
    alpha: torch.Tensor | None
    meta: ImageMeta


# --------------------------------------------------------------------------------------------------------------
# array <-> tensor


def to_tensor(array: np.ndarray) -> torch.Tensor:
    """Convert an image array to a float tensor in [0, 1].

    Parameters
    ----------
    array : np.ndarray
        (H, W) or (H, W, C) array of uint8 (divided by 255), uint16 of either byte order (divided by 65535), bool,
        or floating point (taken as [0, 1] and clipped to it). Channels are kept in their order.

    Returns
    -------
    torch.Tensor
        (1, C, H, W) float32 in [0, 1]; C = 1 for a 2-D array.

    Raises
    ------
    ValueError
        If the array is not 2-D or 3-D, has an empty axis, has another dtype, or holds NaN.
    """
    if array.ndim not in (2, 3) or 0 in array.shape:
        raise ValueError(f"expected an (H, W) or (H, W, C) array with no empty axis, got shape {array.shape}")
    kind, size = array.dtype.kind, array.dtype.itemsize
    if kind == "u" and size in (1, 2):
        scaled = array.astype(np.float32) / np.float32(_MAX_VALUE[8 * size])
    elif kind == "b":
        scaled = array.astype(np.float32)
    elif kind == "f":
        if np.isnan(array).any():
            raise ValueError("the array holds NaN")
        scaled = np.clip(array.astype(np.float32), 0.0, 1.0)
    else:
        raise ValueError(f"expected a uint8, uint16, bool or float array, got {array.dtype}")
    chw = scaled[None] if scaled.ndim == 2 else np.moveaxis(scaled, -1, 0)
    return torch.from_numpy(np.ascontiguousarray(chw)).unsqueeze(0)


def to_array(pixels: torch.Tensor, *, bit_depth: int = 8) -> np.ndarray:
    """Convert a float image tensor to an integer array, the inverse of :func:`to_tensor`.

    Parameters
    ----------
    pixels : torch.Tensor
        (1, C, H, W) or (C, H, W) floating-point tensor, nominally in [0, 1]; values outside are clipped.
    bit_depth : int, optional
        8 for uint8 (0..255) or 16 for uint16 (0..65535). Values are rounded half to even:
        ``np.round(clip(x, 0, 1) * (2**bit_depth - 1))``.

    Returns
    -------
    np.ndarray
        (H, W) if C == 1, else (H, W, C); uint8 or uint16.

    Raises
    ------
    ValueError
        On a bad shape, a batch larger than 1, a non-float dtype, NaN, or a bit depth other than 8 or 16.
    """
    if bit_depth not in _MAX_VALUE:
        raise ValueError(f"bit_depth must be 8 or 16, got {bit_depth}")
    chw = _single_image(pixels, "pixels")
    if torch.isnan(chw).any():
        raise ValueError("pixels hold NaN")
    scaled = chw.detach().to("cpu", torch.float32).numpy()
    scaled = np.round(np.clip(scaled, 0.0, 1.0) * np.float32(_MAX_VALUE[bit_depth]))
    array = scaled.astype(np.uint8 if bit_depth == 8 else np.uint16)
    return array[0] if array.shape[0] == 1 else np.ascontiguousarray(np.moveaxis(array, 0, -1))


def _single_image(pixels: torch.Tensor, name: str) -> torch.Tensor:
    """Return a (C, H, W) view of a (1, C, H, W) or (C, H, W) floating-point tensor."""
    if not isinstance(pixels, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(pixels).__name__}")
    if not pixels.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor in [0, 1], got {pixels.dtype}")
    if pixels.ndim == 4 and pixels.shape[0] == 1:
        pixels = pixels[0]
    if pixels.ndim != 3 or 0 in pixels.shape:
        raise ValueError(f"{name} must have shape (1, C, H, W) or (C, H, W), got {tuple(pixels.shape)}")
    return pixels


# --------------------------------------------------------------------------------------------------------------
# reading


def read_image(path: str | os.PathLike[str], *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image:
    """Read an image file into an upright float tensor, its alpha channel and its metadata.

    Parameters
    ----------
    path : str or os.PathLike
        A PNG, JPEG, TIFF, BMP or WebP file (recognised by content, not by suffix). Non-ASCII paths are fine.
    max_pixels : int, optional
        Refuse images whose header claims more than this many pixels (width * height), before decoding them.

    Returns
    -------
    Image
        ``pixels`` (1, C, H, W) float32 in [0, 1] with C = 1 for gray sources and 3 otherwise (palette and CMYK
        become RGB); ``alpha`` (1, 1, H, W) float32 or None; ``meta`` with format, bit depth (8 or 16), grayness,
        ICC profile and EXIF. The EXIF orientation has been applied to pixels and alpha.

    Raises
    ------
    ImageError
        If the file is missing, a folder, empty, not an image of a supported format, truncated or corrupt, larger
        than ``max_pixels``, or of an unsupported pixel type (e.g. 32-bit float). The message is one line
        starting with the path.
    """
    path = Path(path)
    _check_readable_file(path)
    try:
        if _is_sixteen_bit_tiff(path):
            return _read_tiff16(path, max_pixels)  # Pillow cannot hold 16-bit RGB(A) nor 16-bit gray+alpha
        with _pillow_bomb_check_off(), PIL.Image.open(path, formats=_SUPPORTED_FORMATS) as img:
            return _decode(img, path, max_pixels)
    except ImageError:
        raise
    except PIL.UnidentifiedImageError as exc:
        supported = "PNG, JPEG, TIFF, BMP and WebP are supported"
        raise ImageError(f"{path}: not a readable image (unknown format or damaged header; {supported})") from exc
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, KeyError, struct.error, zlib.error) as exc:
        # (tifffile.TiffFileError is a ValueError)
        raise ImageError(f"{path}: not a readable image (corrupt or truncated data: {_one_line(exc)})") from exc
    except MemoryError as exc:
        raise ImageError(f"{path}: not enough memory to decode this image") from exc


def _check_readable_file(path: Path) -> None:
    """Raise ImageError unless ``path`` is an existing, non-empty regular file."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except OSError as exc:
        raise ImageError(f"{path}: cannot open ({_one_line(exc)})") from exc
    if path.is_dir():
        raise ImageError(f"{path}: is a folder, not an image file")
    if info.st_size == 0:
        raise ImageError(f"{path}: empty file")


@contextlib.contextmanager
def _pillow_bomb_check_off():
    """Switch Pillow's global decompression-bomb limit off for one read, then restore it.

    Pillow checks the module global ``PIL.Image.MAX_IMAGE_PIXELS`` (89 Mpx by default, errors at twice that) in
    ``open`` and again while decoding TIFF. :func:`read_image` enforces its own ``max_pixels`` from the header
    before any decoding, so Pillow's check would only refuse images the caller allowed. The lock serialises
    concurrent reads in this process so that the global is always restored to the caller's value.
    """
    with _PILLOW_LIMIT_LOCK:
        previous = PIL.Image.MAX_IMAGE_PIXELS
        PIL.Image.MAX_IMAGE_PIXELS = None
        try:
            yield
        finally:
            PIL.Image.MAX_IMAGE_PIXELS = previous


def _decode(img: PIL.Image.Image, path: Path, max_pixels: int) -> Image:
    """Decode an opened (header-only) Pillow image; the size is checked before any pixel is decoded."""
    _check_size(path, *img.size, max_pixels)
    icc_profile = img.info.get("icc_profile") or None
    png_depth, png_colour_type = _png_header(path) if img.format == "PNG" else (0, 0)
    if png_depth == 16:
        samples, gray = _decode_png16(path, png_colour_type)
        # PngImageFile.getexif would decode the whole file again (in 8 bits) to look for an eXIf chunk after the
        # pixel data; the base method reads the chunks before it, which is where writers put eXIf.
        load_exif = functools.partial(PIL.Image.Image.getexif, img)
    else:
        samples, gray, icc_profile = _decode_with_pillow(img, path, icc_profile)
        load_exif = img.getexif
    orientation, exif = _read_exif(load_exif)
    file_format = "JPEG" if img.format == "MPO" else img.format  # Pillow calls multi-picture JPEGs "MPO"
    return _assemble(samples, gray=gray, orientation=orientation, file_format=file_format, icc=icc_profile, exif=exif)


def _check_size(path: Path, width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise ImageError(
            f"{path}: {width}x{height} pixels exceeds the limit of {max_pixels} pixels (possible decompression bomb)"
        )


def _assemble(
    samples: np.ndarray, *, gray: bool, orientation: int, file_format: str, icc: bytes | None, exif: bytes | None
) -> Image:
    """Turn (H, W, C) integer samples (alpha last when C is 2 or 4) upright and split them into an Image."""
    samples = _apply_orientation(samples, orientation)
    has_alpha = samples.shape[2] in (2, 4)
    colour = samples[..., :-1] if has_alpha else samples
    meta = ImageMeta(
        format=file_format,
        bit_depth=8 * samples.dtype.itemsize,
        gray=gray,
        has_alpha=has_alpha,
        icc_profile=icc,
        exif=exif,
    )
    return Image(pixels=to_tensor(colour), alpha=to_tensor(samples[..., -1]) if has_alpha else None, meta=meta)


def _png_header(path: Path) -> tuple[int, int]:
    """Bit depth and colour type from a PNG's IHDR chunk (Pillow does not report a depth of 16 for RGB)."""
    with open(path, "rb") as fh:
        header = fh.read(26)
    return (header[24], header[25]) if len(header) == 26 else (0, 0)


def _decode_png16(path: Path, colour_type: int) -> tuple[np.ndarray, bool]:
    """16-bit PNG via OpenCV, which keeps all 16 bits (Pillow reduces RGB and RGBA to 8)."""
    decoded = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if decoded is None or decoded.dtype != np.uint16:
        raise ImageError(f"{path}: not a readable image (corrupt or truncated 16-bit PNG data)")
    gray = colour_type in (0, _PNG_GRAY_ALPHA)
    samples = _from_opencv(decoded)
    if colour_type == _PNG_GRAY_ALPHA and samples.shape[2] == 4:
        samples = samples[..., [0, 3]]  # OpenCV expands gray+alpha to RGBA with R = G = B
    return np.ascontiguousarray(samples), gray


def _is_sixteen_bit_tiff(path: Path) -> bool:
    """True for a TIFF whose first image has 16-bit samples; other TIFFs are left to Pillow."""
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic not in (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+"):
        return False
    try:
        with tifffile.TiffFile(path) as tif:
            return tif.pages[0].bitspersample == 16
    except (tifffile.TiffFileError, OSError, IndexError, ValueError):
        return False  # let Pillow try, and word the error


def _read_tiff16(path: Path, max_pixels: int) -> Image:
    """16-bit TIFF via tifffile, which reports the photometric and extra-sample tags needed to interpret it."""
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        _check_size(path, page.imagewidth, page.imagelength, max_pixels)
        icc_profile = page.iccprofile or None
        samples, gray = _tiff16_samples(page, path)
    orientation, portable_exif = _tiff_exif(path)
    return _assemble(
        samples, gray=gray, orientation=orientation, file_format="TIFF", icc=icc_profile, exif=portable_exif
    )


def _tiff_exif(path: Path) -> tuple[int, bytes | None]:
    """Orientation and portable EXIF from the first IFD of a TIFF file, read without decoding the image."""
    with open(path, "rb") as fh:

        def load() -> PIL.Image.Exif:
            exif = PIL.Image.Exif()
            exif.load_from_fp(fh)
            return exif

        return _read_exif(load)


def _tiff16_samples(page: tifffile.TiffPage, path: Path) -> tuple[np.ndarray, bool]:
    """Decode a tifffile page to (H, W, C) uint16 samples (C = 1..4, straight alpha last) and the grayness."""
    photometric = page.photometric
    if photometric not in (tifffile.PHOTOMETRIC.MINISBLACK, tifffile.PHOTOMETRIC.MINISWHITE, tifffile.PHOTOMETRIC.RGB):
        raise ImageError(f"{path}: unsupported 16-bit TIFF colour space {photometric.name}")
    if page.dtype != np.uint16:
        raise ImageError(f"{path}: unsupported TIFF sample type {page.dtype} (8 or 16-bit unsigned supported)")
    colour_count = 3 if photometric == tifffile.PHOTOMETRIC.RGB else 1
    # A missing ExtraSamples tag (OpenCV writes none) means straight alpha to Pillow and OpenCV; so it does here.
    alpha_kind = page.extrasamples[0] if page.extrasamples else tifffile.EXTRASAMPLE.UNASSALPHA
    has_alpha = page.samplesperpixel > colour_count and alpha_kind != tifffile.EXTRASAMPLE.UNSPECIFIED
    samples = _tiff16_page_samples(page, path)[..., : colour_count + has_alpha]
    if photometric == tifffile.PHOTOMETRIC.MINISWHITE:
        samples[..., :colour_count] = 65535 - samples[..., :colour_count]
    if has_alpha and alpha_kind == tifffile.EXTRASAMPLE.ASSOCALPHA:
        samples = _unpremultiply(samples)
    return np.ascontiguousarray(samples), colour_count == 1


def _tiff16_page_samples(page: tifffile.TiffPage, path: Path) -> np.ndarray:
    """All samples of a 16-bit page as (H, W, S) in file order; OpenCV decodes what tifffile cannot."""
    try:
        return _to_yxs(page.asarray(), page.axes, path)
    except (ValueError, KeyError) as exc:
        # tifffile needs the optional imagecodecs package for LZW, PackBits, JPEG...; OpenCV's libtiff does not.
        if "imagecodecs" not in str(exc) or page.photometric == tifffile.PHOTOMETRIC.MINISWHITE:
            raise
    decoded = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    channels = 1 if decoded is None or decoded.ndim == 2 else decoded.shape[2]
    if decoded is None or decoded.dtype != np.uint16 or channels != page.samplesperpixel:
        raise ImageError(f"{path}: not a readable image (corrupt 16-bit TIFF or unsupported compression/layout)")
    return _from_opencv(decoded)


def _to_yxs(array: np.ndarray, axes: str, path: Path) -> np.ndarray:
    """Reorder a tifffile page array to (height, width, samples)."""
    if axes == "YX":
        return array[..., None]
    if axes == "YXS":
        return array
    if axes == "SYX":
        return np.moveaxis(array, 0, -1)
    raise ImageError(f"{path}: unsupported TIFF layout {axes!r} (one 2-D image expected)")


def _unpremultiply(samples: np.ndarray) -> np.ndarray:
    """Turn associated (premultiplied) colour into straight colour; fully transparent pixels become 0."""
    alpha = samples[..., -1:].astype(np.float64)
    colour = samples[..., :-1].astype(np.float64)
    straight = np.divide(colour * 65535.0, alpha, out=np.zeros_like(colour), where=alpha > 0)
    straight = np.round(np.clip(straight, 0, 65535)).astype(np.uint16)
    return np.concatenate([straight, samples[..., -1:]], axis=-1)


def _from_opencv(decoded: np.ndarray) -> np.ndarray:
    """OpenCV's (H, W), BGR or BGRA array as (H, W, C) in RGB(A) order."""
    if decoded.ndim == 2:
        return decoded[..., None]
    if decoded.shape[2] == 3:
        return cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)
    return cv2.cvtColor(decoded, cv2.COLOR_BGRA2RGBA)


def _decode_with_pillow(
    img: PIL.Image.Image, path: Path, icc_profile: bytes | None
) -> tuple[np.ndarray, bool, bytes | None]:
    """Fully decode an 8-bit (or 16-bit gray) image with Pillow; returns samples, grayness and the ICC profile.

    The full decode happens here, so a truncated file fails now rather than later.
    """
    img.load()
    mode = img.mode
    transparent = "transparency" in img.info
    if mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        return np.asarray(img).astype(np.uint16)[..., None], True, icc_profile
    if mode in ("I", "F"):
        raise ImageError(f"{path}: unsupported 32-bit {'float' if mode == 'F' else 'integer'} samples")
    if mode in ("1", "L", "LA", "La"):
        target = "LA" if mode in ("LA", "La") or transparent else "L"
        return _pillow_samples(img, target), True, icc_profile
    if mode in ("CMYK", "YCbCr", "LAB"):
        # The source profile describes another colour space; the converted pixels are sRGB, so none is kept.
        return _pillow_samples(_to_srgb(img, icc_profile), "RGB"), False, None
    target = "RGBA" if mode in ("RGBA", "RGBa", "PA") or transparent else "RGB"
    return _pillow_samples(img, target), False, icc_profile


def _pillow_samples(img: PIL.Image.Image, mode: str) -> np.ndarray:
    converted = img if img.mode == mode else img.convert(mode)
    array = np.asarray(converted)
    return array[..., None] if array.ndim == 2 else array


def _to_srgb(img: PIL.Image.Image, icc_profile: bytes | None) -> PIL.Image.Image:
    """Convert CMYK, Lab and YCbCr to sRGB, through the embedded profile when there is one."""
    if icc_profile is not None or img.mode == "LAB":
        try:
            if icc_profile is not None:
                source = PIL.ImageCms.ImageCmsProfile(BytesIO(icc_profile))
            else:
                source = PIL.ImageCms.createProfile("LAB")  # Pillow has no plain Lab -> RGB conversion
            target = PIL.ImageCms.createProfile("sRGB")
            return PIL.ImageCms.profileToProfile(img, source, target, outputMode="RGB")
        except (PIL.ImageCms.PyCMSError, OSError, ValueError) as exc:
            logger.debug("ICC conversion to sRGB failed (%s); using Pillow's plain conversion", exc)
    return img.convert("RGB")


def _read_exif(load: Callable[[], PIL.Image.Exif]) -> tuple[int, bytes | None]:
    """Return the EXIF orientation (1..8) and the portable EXIF block, tolerating broken EXIF."""
    try:
        exif = load()
        orientation = exif.get(_ORIENTATION_TAG, 1)
        portable = _portable_exif(exif)
    except Exception as exc:  # noqa: BLE001 - damaged EXIF must not make the pixels unreadable
        logger.debug("ignoring unreadable EXIF: %s", exc)
        return 1, None
    return orientation if orientation in range(1, 9) else 1, portable


def _portable_exif(source: PIL.Image.Exif) -> bytes | None:
    """Descriptive EXIF tags (camera, date, exposure, GPS...) with orientation 1, or None if there are none."""
    clean = PIL.Image.Exif()
    for tag in _DESCRIPTIVE_IFD0_TAGS:
        if tag in source:
            clean[tag] = source[tag]
    if clean.get(_RESOLUTION_UNIT_TAG) == 1:  # "no unit": a placeholder many writers (tifffile) put in, no DPI
        for tag in (_X_RESOLUTION_TAG, _Y_RESOLUTION_TAG, _RESOLUTION_UNIT_TAG):
            clean.pop(tag, None)
    exif_ifd = {tag: value for tag, value in source.get_ifd(_EXIF_IFD_TAG).items() if tag not in _STALE_EXIF_TAGS}
    if exif_ifd:
        clean[_EXIF_IFD_TAG] = exif_ifd
    gps_ifd = dict(source.get_ifd(_GPS_IFD_TAG))
    if gps_ifd:
        clean[_GPS_IFD_TAG] = gps_ifd
    if not clean:
        return None
    clean[_ORIENTATION_TAG] = 1
    return clean.tobytes()


def _apply_orientation(samples: np.ndarray, orientation: int) -> np.ndarray:
    """Turn (H, W, C) samples upright according to an EXIF orientation value (1 = already upright)."""
    transforms = {
        1: lambda a: a,
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.swapaxes(0, 1),
        6: lambda a: np.rot90(a, -1),
        7: lambda a: np.rot90(a, 2).swapaxes(0, 1),
        8: lambda a: np.rot90(a, 1),
    }
    return np.ascontiguousarray(transforms[orientation](samples))


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


# --------------------------------------------------------------------------------------------------------------
# writing


class Canvas:
    """An output image assembled band by band directly as 8- or 16-bit samples.

    The memory-bounded path for outputs too large to hold as float32 (a x4 of a 12-megapixel photo is
    2.3 GB as float32, 576 MB as 8-bit): tiled inference pastes each finished band of rows, converted here
    (the one place for conversions), and :func:`write_image` accepts the canvas in place of a tensor.

    ``shape`` is ``(1, C, H, W)`` like the tensor it stands for.
    """

    def __init__(self, channels: int, height: int, width: int, *, bit_depth: int = 8) -> None:
        if channels not in (1, 3):
            raise ValueError(f"a canvas has 1 or 3 channels, got {channels}")
        if bit_depth not in _MAX_VALUE:
            raise ValueError(f"bit_depth must be 8 or 16, got {bit_depth}")
        self.bit_depth = bit_depth
        self.shape = (1, channels, height, width)
        self.ndim = 4
        self.samples = np.zeros((height, width, channels), dtype=np.uint8 if bit_depth == 8 else np.uint16)

    def paste(self, top: int, band: torch.Tensor) -> None:
        """Convert ``band`` ``(1, C, rows, W)`` float in [0, 1] into rows ``top:top + rows``."""
        if tuple(band.shape[:2]) != self.shape[:2] or band.shape[-1] != self.shape[-1]:
            raise ValueError(f"band of shape {tuple(band.shape)} does not fit a canvas of shape {self.shape}")
        rows = band.shape[-2]
        self.samples[top : top + rows] = to_array(band, bit_depth=self.bit_depth).reshape(rows, self.shape[-1], -1)


def write_image(
    path: str | os.PathLike[str],
    pixels: torch.Tensor | Canvas,
    *,
    alpha: torch.Tensor | None = None,
    meta: ImageMeta | None = None,
    bit_depth: int | None = None,
    quality: int = 95,
) -> None:
    """Write an image file atomically; the format follows the suffix.

    Parameters
    ----------
    path : str or os.PathLike
        Output file; its suffix (case-insensitive) picks the format: .png, .jpg/.jpeg, .tif/.tiff, .bmp, .webp.
    pixels : torch.Tensor or Canvas
        (1, C, H, W) or (C, H, W) float in [0, 1] (clipped); C = 1 writes a gray file, C = 3 an RGB file.
        A :class:`Canvas` holds samples already converted band by band (large outputs).
    alpha : torch.Tensor, optional
        (1, 1, H, W), (1, H, W) or (H, W) straight alpha in [0, 1]. Kept by PNG, TIFF and WebP; JPEG and BMP
        cannot store it, so it is dropped there (not flattened onto a background).
    meta : ImageMeta, optional
        Source metadata: its ICC profile (if its colour space matches the output) and EXIF (orientation forced
        to 1) are embedded where the format allows (not BMP; TIFF keeps only the text and resolution tags of EXIF), and
        its bit depth is the default for ``bit_depth``.
    bit_depth : int, optional
        8 or 16; default ``meta.bit_depth``, or 8 without meta. Only PNG and TIFF store 16 bits; the other
        formats are written with 8. Samples are ``np.round(clip(x, 0, 1) * (2**bit_depth - 1))``.
    quality : int, optional
        1..100, for JPEG and WebP. JPEG is written with 4:4:4 chroma (no subsampling). WebP at quality 100 is
        written lossless (and exact under transparent pixels); below 100 it is lossy. PNG, TIFF and BMP are
        always lossless.

    Raises
    ------
    ValueError
        On a bad tensor shape or dtype, NaN, a bit depth other than 8 or 16, or a quality outside 1..100.
    ImageError
        If the suffix is not an image suffix, or the file cannot be written (missing folder, permission, disk
        full...). The file is written to a temporary name in the same folder, flushed to disk and renamed over
        ``path``, so ``path`` is never left half-written and no temporary file remains after a failure.
    """
    path = Path(path)
    file_format = _FORMAT_BY_SUFFIX.get(path.suffix.lower())
    if file_format is None:
        supported = ", ".join(sorted(IMAGE_SUFFIXES))
        raise ImageError(f"{path}: cannot write this file type (use one of {supported})")
    if not 1 <= quality <= 100:
        raise ValueError(f"quality must be in 1..100, got {quality}")
    default_depth = pixels.bit_depth if isinstance(pixels, Canvas) else 8
    depth = bit_depth if bit_depth is not None else (meta.bit_depth if meta is not None else default_depth)
    if depth not in _MAX_VALUE:
        raise ValueError(f"bit_depth must be 8 or 16, got {depth}")
    if file_format not in _SIXTEEN_BIT_FORMATS:
        depth = 8
    if isinstance(pixels, Canvas):
        samples = _canvas_samples(pixels, alpha, depth, keep_alpha=file_format in _ALPHA_FORMATS)
    else:
        samples = _samples_to_write(pixels, alpha, depth, keep_alpha=file_format in _ALPHA_FORMATS, path=path)
    icc_profile = _matching_icc(meta, samples.shape[2]) if file_format in _ICC_FORMATS else None
    exif = _exif_to_write(meta) if file_format in _EXIF_FORMATS else None
    data = _encode(samples, file_format, icc_profile=icc_profile, exif=exif, quality=quality)
    _atomic_write(path, data)


def _canvas_samples(canvas: Canvas, alpha: torch.Tensor | None, depth: int, *, keep_alpha: bool) -> np.ndarray:
    """A canvas's samples at ``depth`` bits, with alpha appended if given and kept."""
    samples = canvas.samples
    if depth != canvas.bit_depth:
        # 16 -> 8 bits (a format without 16-bit support): round(x / 257), in place-friendly steps.
        samples = ((samples.astype(np.uint32) + 128) // 257).astype(np.uint8) if depth == 8 else samples.astype(np.uint16) * 257
    if alpha is None or not keep_alpha:
        return samples
    height, width = canvas.shape[-2:]
    alpha_samples = to_array(alpha.reshape(1, height, width), bit_depth=depth)[..., None]
    return np.concatenate([samples, alpha_samples], axis=-1)


def _samples_to_write(
    pixels: torch.Tensor, alpha: torch.Tensor | None, depth: int, *, keep_alpha: bool, path: Path
) -> np.ndarray:
    """Validate the tensors and return (H, W, C) integer samples, alpha last, C = 1..4."""
    colour = _single_image(pixels, "pixels")
    if colour.shape[0] not in (1, 3):
        raise ValueError(f"pixels must have 1 (gray) or 3 (RGB) channels, got {colour.shape[0]}")
    arrays = [to_array(colour, bit_depth=depth).reshape(*colour.shape[1:], -1)]
    if alpha is not None:
        size = tuple(colour.shape[1:])
        shape = tuple(alpha.shape) if isinstance(alpha, torch.Tensor) else None
        if shape is None or shape[:-2] not in ((), (1,), (1, 1)) or shape[-2:] != size:
            raise ValueError(f"alpha must be (1, 1, H, W), (1, H, W) or (H, W) with (H, W) = {size}, got {shape}")
        if keep_alpha:
            arrays.append(to_array(alpha.reshape(1, *size), bit_depth=depth)[..., None])
        else:
            logger.info("%s: %s cannot store alpha; the alpha channel is dropped", path, path.suffix)
    return np.concatenate(arrays, axis=-1) if len(arrays) > 1 else arrays[0]


def _matching_icc(meta: ImageMeta | None, channels: int) -> bytes | None:
    """The meta's ICC profile if its colour space (header bytes 16..20) fits the output; else None."""
    if meta is None or not meta.icc_profile:
        return None
    wanted = b"GRAY" if channels in (1, 2) else b"RGB "
    if meta.icc_profile[16:20] != wanted:
        logger.info("ICC profile for %r dropped: the output is %r", meta.icc_profile[16:20], wanted)
        return None
    return meta.icc_profile


def _exif_to_write(meta: ImageMeta | None) -> bytes | None:
    """Re-clean the meta's EXIF so that the orientation written is 1 whatever the caller put there."""
    if meta is None or not meta.exif:
        return None
    try:
        exif = PIL.Image.Exif()
        exif.load(meta.exif)
        return _portable_exif(exif)
    except Exception as exc:  # noqa: BLE001 - unusable EXIF is dropped, the pixels still get written
        logger.info("EXIF dropped, it cannot be parsed: %s", exc)
        return None


def _encode(
    samples: np.ndarray, file_format: str, *, icc_profile: bytes | None, exif: bytes | None, quality: int
) -> bytes:
    """Encode (H, W, C) uint8/uint16 samples (alpha last if C is 2 or 4) to the bytes of a file."""
    if file_format == "TIFF":
        return _encode_tiff(samples, icc_profile=icc_profile, exif=exif)
    if samples.dtype == np.uint16:
        return _encode_png16(samples, icc_profile=icc_profile, exif=exif)
    options: dict[str, object] = {}
    if icc_profile is not None:
        options["icc_profile"] = icc_profile
    if exif is not None:
        options["exif"] = exif
    if file_format == "JPEG":
        options.update(quality=quality, subsampling=0)
        if exif is not None and len(exif) > _JPEG_MAX_EXIF:
            logger.info("EXIF dropped: %d bytes do not fit in a JPEG APP1 segment", len(exif))
            del options["exif"]
    elif file_format == "WEBP":
        options.update(quality=quality, lossless=quality == 100, exact=True)
    elif file_format == "PNG":
        # Run-length deflate after Pillow's per-row filters: on photos 5-7x faster than the default strategy
        # at level 6 (13 vs 62-94 ms for a 0.15-MP RGB image) and within +-2% of its size (measured on the
        # samples and BSD68 x4 outputs; flat synthetic images compress less well). Lossless either way.
        options.update(compress_type=zlib.Z_RLE)
    mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[samples.shape[2]]
    img = PIL.Image.fromarray(samples[..., 0] if mode == "L" else samples, mode=mode)
    if file_format == "WEBP" and mode in ("L", "LA"):
        img = img.convert("RGBA" if mode == "LA" else "RGB")  # WebP has no gray mode
    buffer = BytesIO()
    img.save(buffer, format=file_format, **options)
    return buffer.getvalue()


def _encode_png16(samples: np.ndarray, *, icc_profile: bytes | None, exif: bytes | None) -> bytes:
    """A 16-bit PNG (gray, gray+alpha, RGB or RGBA) with optional iCCP and eXIf chunks."""
    height, width, channels = samples.shape
    colour_type = {1: 0, 2: _PNG_GRAY_ALPHA, 3: 2, 4: 6}[channels]
    rows = np.ascontiguousarray(samples, dtype=">u2").view(np.uint8).reshape(height, width * channels * 2)
    filtered = _png_paeth_filter(rows, bytes_per_pixel=channels * 2)
    compressed = zlib.compress(filtered.tobytes(), 6)
    chunks = [_png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0))]
    if icc_profile is not None:
        chunks.append(_png_chunk(b"iCCP", b"ICC profile\0\0" + zlib.compress(icc_profile)))
    if exif is not None:
        chunks.append(_png_chunk(b"eXIf", exif[6:] if exif.startswith(b"Exif\0\0") else exif))
    for start in range(0, len(compressed), _PNG_IDAT_CHUNK):
        chunks.append(_png_chunk(b"IDAT", compressed[start : start + _PNG_IDAT_CHUNK]))
    chunks.append(_png_chunk(b"IEND", b""))
    return _PNG_SIGNATURE + b"".join(chunks)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_paeth_filter(rows: np.ndarray, *, bytes_per_pixel: int) -> np.ndarray:
    """Apply PNG filter type 4 (Paeth) to every row of (H, N) bytes; returns (H, N + 1) with the filter bytes.

    Encoding needs only the unfiltered neighbours, so the whole image filters at once; rows are processed in
    blocks to bound the int16 temporaries.
    """
    out = np.empty((rows.shape[0], rows.shape[1] + 1), dtype=np.uint8)
    out[:, 0] = 4
    for start in range(0, rows.shape[0], _PNG_FILTER_ROWS):
        block = rows[start : start + _PNG_FILTER_ROWS].astype(np.int16)
        above = np.empty_like(block)
        above[0] = rows[start - 1] if start > 0 else 0
        above[1:] = block[:-1]
        left = np.zeros_like(block)
        left[:, bytes_per_pixel:] = block[:, :-bytes_per_pixel]
        upper_left = np.zeros_like(block)
        upper_left[:, bytes_per_pixel:] = above[:, :-bytes_per_pixel]
        estimate = left + above - upper_left
        dist_left, dist_above, dist_ul = (np.abs(estimate - n) for n in (left, above, upper_left))
        predictor = np.where(
            (dist_left <= dist_above) & (dist_left <= dist_ul), left, np.where(dist_above <= dist_ul, above, upper_left)
        )
        out[start : start + len(block), 1:] = (block - predictor).astype(np.uint8)
    return out


def _encode_tiff(samples: np.ndarray, *, icc_profile: bytes | None, exif: bytes | None) -> bytes:
    """An 8- or 16-bit deflate-compressed TIFF; alpha is written as unassociated (straight) alpha.

    tifffile rather than Pillow: Pillow cannot hold 16-bit RGB, and its libtiff writer fails on EXIF sub-IFDs.
    Of the EXIF block, the text tags and the resolution of IFD0 are written as TIFF tags.
    """
    channels = samples.shape[2]
    buffer = BytesIO()
    tifffile.imwrite(
        buffer,
        samples[..., 0] if channels == 1 else samples,
        photometric="minisblack" if channels in (1, 2) else "rgb",
        planarconfig="contig" if channels > 1 else None,
        extrasamples=["unassalpha"] if channels in (2, 4) else None,
        compression="zlib",
        predictor=True,
        iccprofile=icc_profile,
        software=False,
        metadata=None,
        **_tiff_tags_from_exif(exif),
    )
    return buffer.getvalue()


def _tiff_tags_from_exif(exif: bytes | None) -> dict[str, object]:
    """tifffile options for the text tags (make, model, date, artist...) and resolution of an EXIF IFD0."""
    if exif is None:
        return {}
    parsed = PIL.Image.Exif()
    parsed.load(exif)
    text = [(tag, parsed[tag]) for tag in _ASCII_IFD0_TAGS if isinstance(parsed.get(tag), str)]
    options: dict[str, object] = {"extratags": [(tag, "s", 0, value, True) for tag, value in text if value.isascii()]}
    if _X_RESOLUTION_TAG in parsed and _Y_RESOLUTION_TAG in parsed:
        options["resolution"] = (float(parsed[_X_RESOLUTION_TAG]), float(parsed[_Y_RESOLUTION_TAG]))
        options["resolutionunit"] = int(parsed.get(_RESOLUTION_UNIT_TAG, 2))  # EXIF's default unit is the inch
    return options


def _atomic_write(path: Path, data: bytes) -> None:
    """Write bytes to a hidden temporary file beside ``path``, fsync it, then rename it over ``path``."""
    folder = path.parent
    if not folder.is_dir():
        raise ImageError(f"{path}: cannot write (folder {folder} does not exist)")
    temporary = folder / f".{path.name}.{secrets.token_hex(6)}.tmp"
    try:
        # os.open with mode 0o666 lets the umask decide the permissions, as a plain open() would.
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    except OSError as exc:
        raise ImageError(f"{path}: cannot write ({_one_line(exc)})") from exc
    try:
        with os.fdopen(descriptor, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(temporary, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        if isinstance(exc, OSError):
            raise ImageError(f"{path}: cannot write ({_one_line(exc)})") from exc
        raise
    _fsync_folder(folder)


# Folders whose fsync is deferred to the end of a :func:`deferred_folder_sync` block (None: sync at once).
_deferred_folders: set[Path] | None = None
_deferred_lock = threading.Lock()


@contextlib.contextmanager
def deferred_folder_sync():
    """Sync each output folder once at the end of the block instead of after every file written in it.

    Every file is still written to a temporary name, fsynced and renamed, so no output is ever half-written;
    what waits is making the renames durable (one folder fsync per folder instead of one per file). When
    the block ends, normally or not, every rename done inside it is durable. Process-wide: writes from
    other threads during the block are deferred too (and synced at its end).
    """
    global _deferred_folders
    with _deferred_lock:
        outer = _deferred_folders
        if outer is None:
            _deferred_folders = set()
    try:
        yield
    finally:
        if outer is None:
            with _deferred_lock:
                folders, _deferred_folders = _deferred_folders or set(), None
            for folder in sorted(folders):
                _sync_folder_now(folder)


def _fsync_folder(folder: Path) -> None:
    """Make the rename durable where the platform allows syncing a folder (POSIX); best effort. Inside
    :func:`deferred_folder_sync`, only noted (synced at its end)."""
    with _deferred_lock:
        if _deferred_folders is not None:
            _deferred_folders.add(folder)
            return
    _sync_folder_now(folder)


def _sync_folder_now(folder: Path) -> None:
    if os.name != "posix":
        return
    with contextlib.suppress(OSError):
        descriptor = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


# --------------------------------------------------------------------------------------------------------------
# folders


def list_images(folder: str | os.PathLike[str], *, recursive: bool = False) -> list[Path]:
    """List the image files in a folder.

    Parameters
    ----------
    folder : str or os.PathLike
        The folder to scan.
    recursive : bool, optional
        Also scan sub-folders (symbolic links to folders are not followed).

    Returns
    -------
    list of Path
        Regular files whose suffix is in :data:`IMAGE_SUFFIXES` (case-insensitive), sorted; hidden files and
        hidden folders (name starting with ".") are skipped. Paths start with ``folder`` as given.

    Raises
    ------
    ImageError
        If ``folder`` is not an existing folder.
    """
    root = Path(folder)
    if not root.is_dir():
        raise ImageError(f"{root}: not a folder")
    found: list[Path] = []
    for current, dirnames, filenames in os.walk(root):
        dirnames[:] = [name for name in dirnames if not name.startswith(".")]
        found.extend(Path(current, name) for name in filenames if _is_listed_image(Path(current, name)))
        if not recursive:
            break
    return sorted(found)


def _is_listed_image(path: Path) -> bool:
    return not path.name.startswith(".") and path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()
