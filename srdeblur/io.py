"""Image files in and out: the only place where pixel formats are converted.

Everything else in srdeblur sees an image as a float32 tensor of shape (B, C, H, W) in [0, 1] with C = 1 (gray)
or C = 3 (RGB). This module turns PNG, JPEG, TIFF, BMP and WebP files (8 or 16 bits per sample; gray, gray+alpha,
RGB, RGBA, palette, CMYK) into such tensors and back, and carries what a user would miss if it were lost: the bit
depth, grayness, the alpha channel (kept apart from the colour tensor, straight, never premultiplied), the ICC
profile and the EXIF block.

Decoders: Pillow for 8-bit data; OpenCV for 16-bit PNG (Pillow cannot hold 16-bit RGB); tifffile for 16-bit TIFF,
with OpenCV as a fallback for compressions tifffile cannot decode without the optional ``imagecodecs``. Encoders:
Pillow for 8-bit PNG, JPEG, BMP and WebP; OpenCV (pypng for gray+alpha) for 16-bit PNG, with the ICC and EXIF
chunks spliced in; tifffile for TIFF. The byte-level 16-bit codecs live in :mod:`srdeblur.codecs`.
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
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

import numpy as np
import PIL.Image
import torch

from srdeblur.codecs import (
    ImageError,
    decode_png16,
    encode_png16,
    encode_tiff,
    is_sixteen_bit_tiff,
    png_header,
    tiff16_samples,
    tifffile,
)
from srdeblur.metadata import apply_orientation, exif_to_write, matching_icc, read_exif, to_srgb


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


_JPEG_MAX_EXIF = 65_533  # one APP1 segment: 65535 bytes minus its 2-byte length

# Pillow's own bomb check reads the module global PIL.Image.MAX_IMAGE_PIXELS; see _pillow_bomb_check_off.
_PILLOW_LIMIT_LOCK = threading.Lock()


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
        if is_sixteen_bit_tiff(path):
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
    png_depth, png_colour_type = png_header(path) if img.format == "PNG" else (0, 0)
    if png_depth == 16:
        samples, gray = decode_png16(path, png_colour_type)
        # PngImageFile.getexif would decode the whole file again (in 8 bits) to look for an eXIf chunk after the
        # pixel data; the base method reads the chunks before it, which is where writers put eXIf.
        load_exif = functools.partial(PIL.Image.Image.getexif, img)
    else:
        samples, gray, icc_profile = _decode_with_pillow(img, path, icc_profile)
        load_exif = img.getexif
    orientation, exif = read_exif(load_exif)
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
    samples = apply_orientation(samples, orientation)
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


def _read_tiff16(path: Path, max_pixels: int) -> Image:
    """16-bit TIFF via tifffile, which reports the photometric and extra-sample tags needed to interpret it."""
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        _check_size(path, page.imagewidth, page.imagelength, max_pixels)
        icc_profile = page.iccprofile or None
        samples, gray = tiff16_samples(page, path)
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

        return read_exif(load)


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
        return _pillow_samples(to_srgb(img, icc_profile), "RGB"), False, None
    target = "RGBA" if mode in ("RGBA", "RGBa", "PA") or transparent else "RGB"
    return _pillow_samples(img, target), False, icc_profile


def _pillow_samples(img: PIL.Image.Image, mode: str) -> np.ndarray:
    converted = img if img.mode == mode else img.convert(mode)
    array = np.asarray(converted)
    return array[..., None] if array.ndim == 2 else array


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
    icc_profile = matching_icc(meta.icc_profile if meta else None, samples.shape[2]) if file_format in _ICC_FORMATS else None
    exif = exif_to_write(meta.exif if meta else None) if file_format in _EXIF_FORMATS else None
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


def _encode(
    samples: np.ndarray, file_format: str, *, icc_profile: bytes | None, exif: bytes | None, quality: int
) -> bytes:
    """Encode (H, W, C) uint8/uint16 samples (alpha last if C is 2 or 4) to the bytes of a file."""
    if file_format == "TIFF":
        return encode_tiff(samples, icc_profile=icc_profile, exif=exif)
    if samples.dtype == np.uint16:
        return encode_png16(samples, icc_profile=icc_profile, exif=exif)
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
