"""srdeblur.codecs: 16-bit PNG encoding (OpenCV / pypng) with spliced iCCP and eXIf chunks."""

from __future__ import annotations

import struct
import zlib
from io import BytesIO

import cv2
import numpy as np
import PIL.Image
import png
import pytest

from srdeblur.codecs import PNG_SIGNATURE, encode_png16, png_chunk, splice_after_header


def _chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """(type, payload) of every chunk of a PNG file, checking each CRC."""
    assert data.startswith(PNG_SIGNATURE)
    chunks, offset = [], len(PNG_SIGNATURE)
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind, payload = data[offset + 4 : offset + 8], data[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack(">I", data[offset + 8 + length : offset + 12 + length])
        assert crc == zlib.crc32(kind + payload)
        chunks.append((kind, payload))
        offset += 12 + length
    return chunks


def _samples(channels: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 65536, (7, 11, channels), dtype=np.uint16)


@pytest.mark.parametrize(("channels", "colour_type"), [(1, 0), (3, 2), (4, 6)])
def test_png16_decodes_to_the_same_samples_with_opencv(channels, colour_type):
    samples = _samples(channels)
    data = encode_png16(samples, icc_profile=None, exif=None)
    header = _chunks(data)[0]
    assert header[0] == b"IHDR" and header[1][8:10] == bytes([16, colour_type])
    back = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    back = back[..., None] if back.ndim == 2 else cv2.cvtColor(back, {3: cv2.COLOR_BGR2RGB, 4: cv2.COLOR_BGRA2RGBA}[channels])
    np.testing.assert_array_equal(back, samples)


def test_png16_gray_alpha_keeps_two_channels():
    samples = _samples(2, seed=1)
    data = encode_png16(samples, icc_profile=None, exif=None)
    width, height, rows, info = png.Reader(bytes=data).read_flat()
    assert (width, height, info["bitdepth"], info["greyscale"], info["alpha"]) == (11, 7, 16, True, True)
    np.testing.assert_array_equal(np.array(rows, dtype=np.uint16).reshape(7, 11, 2), samples)


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_icc_and_exif_chunks_come_right_after_the_header(channels):
    profile, exif = b"profile-bytes" * 20, b"Exif\0\0II*\0\x08\0\0\0\0\0"
    data = encode_png16(_samples(channels), icc_profile=profile, exif=exif)
    kinds = [kind for kind, _ in _chunks(data)]
    assert kinds[:3] == [b"IHDR", b"iCCP", b"eXIf"] and kinds[-1] == b"IEND" and b"IDAT" in kinds
    chunks = dict(_chunks(data))
    name, _, rest = chunks[b"iCCP"].partition(b"\0")
    assert name == b"ICC profile" and rest[0] == 0 and zlib.decompress(rest[1:]) == profile
    assert chunks[b"eXIf"] == exif[6:]  # the APP1 "Exif\0\0" prefix is not part of a PNG eXIf chunk
    if channels != 2:  # Pillow cannot open 16-bit gray+alpha
        assert PIL.Image.open(BytesIO(data)).info["icc_profile"] == profile


def test_splice_rejects_what_is_not_a_png():
    with pytest.raises(ValueError, match="not a PNG"):
        splice_after_header(b"GIF89a" + bytes(30), [png_chunk(b"tEXt", b"a\0b")])
