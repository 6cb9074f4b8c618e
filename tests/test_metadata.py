"""srdeblur.metadata: EXIF orientation against Pillow's exif_transpose, portable EXIF, ICC matching."""

from __future__ import annotations

import numpy as np
import PIL.Image
import PIL.ImageCms
import PIL.ImageOps
import pytest

from srdeblur.metadata import apply_orientation, exif_to_write, matching_icc, portable_exif, read_exif

ORIENTATION = 0x0112


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_matches_pillow_exif_transpose(orientation):
    samples = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
    img = PIL.Image.fromarray(samples)
    exif = img.getexif()
    exif[ORIENTATION] = orientation
    img.info["exif"] = exif.tobytes()
    reference = np.asarray(PIL.ImageOps.exif_transpose(img))
    np.testing.assert_array_equal(apply_orientation(samples, orientation), reference)


def test_portable_exif_keeps_description_drops_layout_and_resets_orientation():
    source = PIL.Image.Exif()
    source[271] = "Camera maker"  # Make
    source[ORIENTATION] = 6
    source[0x0103] = 5  # Compression: describes the source file, must not travel
    cleaned = PIL.Image.Exif()
    cleaned.load(portable_exif(source))
    assert cleaned[271] == "Camera maker" and cleaned[ORIENTATION] == 1 and 0x0103 not in cleaned
    assert portable_exif(PIL.Image.Exif()) is None


def test_read_exif_tolerates_damage_and_exif_to_write_resets_orientation():
    def broken() -> PIL.Image.Exif:
        raise SyntaxError("not EXIF")

    assert read_exif(broken) == (1, None)
    rotated = PIL.Image.Exif()
    rotated[271], rotated[ORIENTATION] = "maker", 8
    orientation, portable = read_exif(lambda: rotated)
    assert orientation == 8
    written = PIL.Image.Exif()
    written.load(exif_to_write(portable))
    assert written[ORIENTATION] == 1 and written[271] == "maker"
    assert exif_to_write(b"garbage") is None and exif_to_write(None) is None


def test_icc_profile_is_kept_only_for_its_colour_space():
    srgb = PIL.ImageCms.ImageCmsProfile(PIL.ImageCms.createProfile("sRGB")).tobytes()
    assert srgb[16:20] == b"RGB "
    assert matching_icc(srgb, 3) == srgb and matching_icc(srgb, 4) == srgb
    assert matching_icc(srgb, 1) is None and matching_icc(srgb, 2) is None
    assert matching_icc(None, 3) is None
