"""Byte-level codecs for what Pillow cannot hold: 16-bit PNG and TIFF samples, to and from numpy arrays.

:mod:`srdeblur.io` decides formats, metadata and tensors; this module only turns ``(H, W, C)`` integer samples
(C = 1..4, alpha last when C is 2 or 4, RGB order) into bytes and back. Encoders: OpenCV for 16-bit PNG (gray,
RGB, RGBA), pypng for 16-bit gray+alpha (OpenCV has no 2-channel PNG), with the iCCP and eXIf chunks spliced
in after IHDR; tifffile for TIFF. Decoders: OpenCV for 16-bit PNG, tifffile (OpenCV as its fallback) for
16-bit TIFF.
"""

from __future__ import annotations

import struct
import zlib
from io import BytesIO
from pathlib import Path

import cv2
import numpy as np
import PIL.Image

__all__ = [
    "ImageError",
    "LazyModule",
    "decode_png16",
    "encode_png16",
    "encode_tiff",
    "from_opencv",
    "is_sixteen_bit_tiff",
    "png_chunk",
    "png_header",
    "tiff16_samples",
]

class ImageError(Exception):
    """A file cannot be read or written as an image; the message is one line that names the file."""


class LazyModule:
    """A module imported on first use (tifffile costs 0.16 s of every command's start-up; few read TIFFs)."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attribute: str):
        import importlib

        return getattr(importlib.import_module(self._name), attribute)


tifffile = LazyModule("tifffile")

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_GRAY_ALPHA = 4  # IHDR colour type
_X_RESOLUTION_TAG, _Y_RESOLUTION_TAG, _RESOLUTION_UNIT_TAG = 282, 283, 296
# IFD0 text tags: ImageDescription, Make, Model, Software, DateTime, Artist, HostComputer, Copyright.
ASCII_IFD0_TAGS = (270, 271, 272, 305, 306, 315, 316, 33432)

# ----------------------------------------------------------------------------------------------------- PNG

def png_header(path: Path) -> tuple[int, int]:
    """Bit depth and colour type from a PNG's IHDR chunk (Pillow does not report a depth of 16 for RGB)."""
    with open(path, "rb") as fh:
        header = fh.read(26)
    return (header[24], header[25]) if len(header) == 26 else (0, 0)


def decode_png16(path: Path, colour_type: int) -> tuple[np.ndarray, bool]:
    """16-bit PNG via OpenCV, which keeps all 16 bits (Pillow reduces RGB and RGBA to 8)."""
    decoded = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if decoded is None or decoded.dtype != np.uint16:
        raise ImageError(f"{path}: not a readable image (corrupt or truncated 16-bit PNG data)")
    gray = colour_type in (0, PNG_GRAY_ALPHA)
    samples = from_opencv(decoded)
    if colour_type == PNG_GRAY_ALPHA and samples.shape[2] == 4:
        samples = samples[..., [0, 3]]  # OpenCV expands gray+alpha to RGBA with R = G = B
    return np.ascontiguousarray(samples), gray


def encode_png16(samples: np.ndarray, *, icc_profile: bytes | None, exif: bytes | None) -> bytes:
    """A 16-bit PNG of ``(H, W, C)`` uint16 samples (gray, gray+alpha, RGB or RGBA) with optional iCCP and eXIf.

    OpenCV encodes (its default: zlib level 1, run-length strategy, libpng's adaptive filters); pypng encodes
    gray+alpha, which OpenCV cannot write. The ancillary chunks go right after IHDR, where the PNG
    specification wants iCCP (before IDAT) and where readers look for eXIf.
    """
    if samples.shape[2] == 2:
        png = _pypng_gray_alpha16(samples)
    else:
        code = {3: cv2.COLOR_RGB2BGR, 4: cv2.COLOR_RGBA2BGRA}.get(samples.shape[2])
        ok, encoded = cv2.imencode(".png", cv2.cvtColor(samples, code) if code is not None else samples)
        if not ok:
            raise ImageError(f"OpenCV cannot encode a {samples.shape} 16-bit PNG")
        png = encoded.tobytes()
    extra = []
    if icc_profile is not None:
        extra.append(png_chunk(b"iCCP", b"ICC profile\0\0" + zlib.compress(icc_profile)))
    if exif is not None:
        extra.append(png_chunk(b"eXIf", exif[6:] if exif.startswith(b"Exif\0\0") else exif))
    return splice_after_header(png, extra)


def _pypng_gray_alpha16(samples: np.ndarray) -> bytes:
    import png  # pypng, only for this layout

    height, width, _ = samples.shape
    buffer = BytesIO()
    writer = png.Writer(width, height, greyscale=True, alpha=True, bitdepth=16, compression=6)
    writer.write_array(buffer, samples.reshape(-1).astype(np.uint16))
    return buffer.getvalue()


def splice_after_header(png: bytes, chunks: list[bytes]) -> bytes:
    """Insert whole chunks (from :func:`png_chunk`) into a PNG file's bytes right after its IHDR chunk."""
    if not png.startswith(PNG_SIGNATURE) or png[12:16] != b"IHDR":
        raise ValueError("not a PNG stream that starts with IHDR")
    end_of_header = 8 + 12 + struct.unpack(">I", png[8:12])[0]
    return png[:end_of_header] + b"".join(chunks) + png[end_of_header:]


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


# ---------------------------------------------------------------------------------------------------- TIFF

def is_sixteen_bit_tiff(path: Path) -> bool:
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


def tiff16_samples(page: tifffile.TiffPage, path: Path) -> tuple[np.ndarray, bool]:
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
    samples = tiff16_page_samples(page, path)[..., : colour_count + has_alpha]
    if photometric == tifffile.PHOTOMETRIC.MINISWHITE:
        samples[..., :colour_count] = 65535 - samples[..., :colour_count]
    if has_alpha and alpha_kind == tifffile.EXTRASAMPLE.ASSOCALPHA:
        samples = unpremultiply(samples)
    return np.ascontiguousarray(samples), colour_count == 1


def tiff16_page_samples(page: tifffile.TiffPage, path: Path) -> np.ndarray:
    """All samples of a 16-bit page as (H, W, S) in file order; OpenCV decodes what tifffile cannot."""
    try:
        return to_yxs(page.asarray(), page.axes, path)
    except (ValueError, KeyError) as exc:
        # tifffile needs the optional imagecodecs package for LZW, PackBits, JPEG...; OpenCV's libtiff does not.
        if "imagecodecs" not in str(exc) or page.photometric == tifffile.PHOTOMETRIC.MINISWHITE:
            raise
    decoded = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    channels = 1 if decoded is None or decoded.ndim == 2 else decoded.shape[2]
    if decoded is None or decoded.dtype != np.uint16 or channels != page.samplesperpixel:
        raise ImageError(f"{path}: not a readable image (corrupt 16-bit TIFF or unsupported compression/layout)")
    return from_opencv(decoded)


def to_yxs(array: np.ndarray, axes: str, path: Path) -> np.ndarray:
    """Reorder a tifffile page array to (height, width, samples)."""
    if axes == "YX":
        return array[..., None]
    if axes == "YXS":
        return array
    if axes == "SYX":
        return np.moveaxis(array, 0, -1)
    raise ImageError(f"{path}: unsupported TIFF layout {axes!r} (one 2-D image expected)")


def unpremultiply(samples: np.ndarray) -> np.ndarray:
    """Turn associated (premultiplied) colour into straight colour; fully transparent pixels become 0."""
    alpha = samples[..., -1:].astype(np.float64)
    colour = samples[..., :-1].astype(np.float64)
    straight = np.divide(colour * 65535.0, alpha, out=np.zeros_like(colour), where=alpha > 0)
    straight = np.round(np.clip(straight, 0, 65535)).astype(np.uint16)
    return np.concatenate([straight, samples[..., -1:]], axis=-1)


def encode_tiff(samples: np.ndarray, *, icc_profile: bytes | None, exif: bytes | None) -> bytes:
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
        **tiff_tags_from_exif(exif),
    )
    return buffer.getvalue()


def tiff_tags_from_exif(exif: bytes | None) -> dict[str, object]:
    """tifffile options for the text tags (make, model, date, artist...) and resolution of an EXIF IFD0."""
    if exif is None:
        return {}
    parsed = PIL.Image.Exif()
    parsed.load(exif)
    text = [(tag, parsed[tag]) for tag in ASCII_IFD0_TAGS if isinstance(parsed.get(tag), str)]
    options: dict[str, object] = {"extratags": [(tag, "s", 0, value, True) for tag, value in text if value.isascii()]}
    if _X_RESOLUTION_TAG in parsed and _Y_RESOLUTION_TAG in parsed:
        options["resolution"] = (float(parsed[_X_RESOLUTION_TAG]), float(parsed[_Y_RESOLUTION_TAG]))
        options["resolutionunit"] = int(parsed.get(_RESOLUTION_UNIT_TAG, 2))  # EXIF's default unit is the inch
    return options


# ----------------------------------------------------------------------------------------------- OpenCV

def from_opencv(decoded: np.ndarray) -> np.ndarray:
    """OpenCV's (H, W), BGR or BGRA array as (H, W, C) in RGB(A) order."""
    if decoded.ndim == 2:
        return decoded[..., None]
    if decoded.shape[2] == 3:
        return cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)
    return cv2.cvtColor(decoded, cv2.COLOR_BGRA2RGBA)
