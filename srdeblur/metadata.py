"""What travels with the pixels: EXIF orientation and the portable EXIF block, ICC profiles, conversion to sRGB.

Pure functions over Pillow's EXIF objects, bytes and ``(H, W, C)`` numpy samples, used by :mod:`srdeblur.io`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from io import BytesIO

import numpy as np
import PIL.Image
import PIL.ImageCms

from srdeblur.codecs import ASCII_IFD0_TAGS

__all__ = ["apply_orientation", "exif_to_write", "matching_icc", "portable_exif", "read_exif", "to_srgb"]

logger = logging.getLogger(__name__)

_ORIENTATION_TAG = 0x0112
_EXIF_IFD_TAG = 0x8769
_GPS_IFD_TAG = 0x8825
_X_RESOLUTION_TAG, _Y_RESOLUTION_TAG, _RESOLUTION_UNIT_TAG = 282, 283, 296
# IFD0 tags that describe the picture rather than the layout of the file they came from. Layout tags (strip
# offsets, sample format, compression...) must not travel: written into another file they would lie about it.
# Text tags: codecs.ASCII_IFD0_TAGS.
_DESCRIPTIVE_IFD0_TAGS = (*ASCII_IFD0_TAGS, _X_RESOLUTION_TAG, _Y_RESOLUTION_TAG, _RESOLUTION_UNIT_TAG)
# Exif sub-IFD tags that go stale when the pixels change size (PixelX/YDimension) or that point into the source
# file (Interoperability IFD).
_STALE_EXIF_TAGS = frozenset({0xA002, 0xA003, 0xA005})


def read_exif(load: Callable[[], PIL.Image.Exif]) -> tuple[int, bytes | None]:
    """Return the EXIF orientation (1..8) and the portable EXIF block, tolerating broken EXIF."""
    try:
        exif = load()
        orientation = exif.get(_ORIENTATION_TAG, 1)
        portable = portable_exif(exif)
    except Exception as exc:  # noqa: BLE001 - damaged EXIF must not make the pixels unreadable
        logger.debug("ignoring unreadable EXIF: %s", exc)
        return 1, None
    return orientation if orientation in range(1, 9) else 1, portable

def portable_exif(source: PIL.Image.Exif) -> bytes | None:
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

def apply_orientation(samples: np.ndarray, orientation: int) -> np.ndarray:
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

def exif_to_write(exif_bytes: bytes | None) -> bytes | None:
    """Re-clean an EXIF block so that the orientation written is 1 whatever the caller put there."""
    if not exif_bytes:
        return None
    try:
        exif = PIL.Image.Exif()
        exif.load(exif_bytes)
        return portable_exif(exif)
    except Exception as exc:  # noqa: BLE001 - unusable EXIF is dropped, the pixels still get written
        logger.info("EXIF dropped, it cannot be parsed: %s", exc)
        return None

def matching_icc(icc_profile: bytes | None, channels: int) -> bytes | None:
    """``icc_profile`` if its colour space (header bytes 16..20) fits an output of ``channels``; else None."""
    if not icc_profile:
        return None
    wanted = b"GRAY" if channels in (1, 2) else b"RGB "
    if icc_profile[16:20] != wanted:
        logger.info("ICC profile for %r dropped: the output is %r", icc_profile[16:20], wanted)
        return None
    return icc_profile

def to_srgb(img: PIL.Image.Image, icc_profile: bytes | None) -> PIL.Image.Image:
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
