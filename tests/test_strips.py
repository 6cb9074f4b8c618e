"""Tests for srdeblur.strips: choosing the crop, drawing panels and strips (small images; values by hand)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from srdeblur import strips

BAND = 18 * strips.LABEL_LINES + 4  # the label band under each panel, in pixels


def _planted(make_image, *, height=48, width=64, box=(37, 21, 12, 12), amount=0.3):
    """Two images equal everywhere except inside ``box``, where the second is brighter."""
    first = make_image(height, width, seed=5)
    second = first.clone()
    x, y, w, h = box
    second[..., y : y + h, x : x + w] = (second[..., y : y + h, x : x + w] + amount).clamp(0, 1)
    return first, second




def _q(image: torch.Tensor) -> torch.Tensor:
    """On the 8-bit grid (panels go through uint8 arrays)."""
    return torch.round(image * 255) / 255

# ------------------------------------------------------------------------------------------------ the crop


def test_method_spread_is_the_variance_across_images():
    zeros, ones = torch.zeros(1, 3, 4, 5), torch.ones(1, 1, 4, 5)  # a gray image counts as RGB
    spread = strips.method_spread([zeros, ones])
    assert spread.shape == (4, 5)
    torch.testing.assert_close(spread, torch.full((4, 5), 0.25))  # values 0 and 1: mean 0.5, variance 0.25
    assert float(strips.method_spread([ones]).abs().max()) == 0.0


def test_pick_crop_finds_the_planted_difference(make_image):
    first, second = _planted(make_image, box=(37, 21, 12, 12))
    assert strips.pick_crop([first, second], size=12) == (37, 21, 12, 12)
    assert strips.pick_crop([second, first, first], size=(12, 12)) == (37, 21, 12, 12)
    # a larger window still contains the whole planted block
    x, y, w, h = strips.pick_crop([first, second], size=20)
    assert (w, h) == (20, 20) and x <= 37 and x + w >= 49 and y <= 21 and y + h >= 33


def test_pick_crop_margin_avoids_the_border(make_image):
    image = make_image(40, 40, seed=2)
    other = image.clone()
    other[..., :, :3] = 1 - other[..., :, :3]  # large differences along the left border
    other[..., 20:28, 20:28] += 0.05  # a small one inside
    assert strips.pick_crop([image, other], size=8)[0] == 0
    x, y, w, h = strips.pick_crop([image, other], size=8, margin=6)
    assert x >= 6 and y >= 6 and x + w <= 34 and y + h <= 34
    assert (x, y) == (20, 20)


def test_pick_crop_identical_images_give_the_centre_and_size_is_clipped(make_image):
    image = make_image(30, 50)
    assert strips.pick_crop([image, image.clone()], size=10) == (20, 10, 10, 10)
    assert strips.pick_crop([image], size=100) == (0, 0, 50, 30)
    assert strips.pick_crop([image])[2:] == (strips.default_crop_size(30, 50),) * 2 == (16, 16)
    with pytest.raises(ValueError, match="same height and width"):
        strips.pick_crop([image, make_image(30, 49)])
    with pytest.raises(ValueError, match="positive"):
        strips.pick_crop([image], size=0)


def test_default_crop_size_bounds():
    assert strips.default_crop_size(512, 512) == 96
    assert strips.default_crop_size(300, 448) == 75
    assert strips.default_crop_size(40, 40) == 16
    assert strips.default_crop_size(8, 40) == 8


def test_parse_and_clamp_box():
    assert strips.parse_box("10, 20,30,40") == (10, 20, 30, 40)
    for bad in ("1,2,3", "a,b,c,d", "1,2,0,4", "-1,2,3,4", "1,2,3,4,5"):
        with pytest.raises(ValueError, match="crop"):
            strips.parse_box(bad)
    assert strips.clamp_box((50, 50, 30, 30), 60, 70) == (40, 30, 30, 30)
    assert strips.clamp_box((0, 0, 100, 10), 20, 40) == (0, 0, 40, 10)


def test_crop_and_zoom_nearest(make_image):
    image = make_image(10, 12, seed=3)
    part = strips.crop(image, (2, 3, 4, 5))
    assert torch.equal(part, image[..., 3:8, 2:6])
    with pytest.raises(ValueError, match="does not fit"):
        strips.crop(image, (10, 0, 4, 4))
    zoomed = strips.zoom_nearest(part, 3)
    assert zoomed.shape == (1, 3, 15, 12)
    expected = np.kron(part[0, 1].numpy(), np.ones((3, 3), dtype=np.float32))
    np.testing.assert_array_equal(zoomed[0, 1].numpy(), expected)
    with pytest.raises(ValueError, match="integer >= 1"):
        strips.zoom_nearest(part, 0)


# ------------------------------------------------------------------------------------------------ drawing


def test_labelled_panel_keeps_the_image_and_draws_text(make_image):
    image = _q(make_image(40, 120, seed=4))
    blank = strips.labelled_panel(image, [])
    labelled = strips.labelled_panel(image, ["bicubic", "28.42 dB / 0.8104"])
    other = strips.labelled_panel(image, ["lanczos", "28.42 dB / 0.8104"])
    assert labelled.shape == (1, 3, 40 + BAND, 120) and labelled.dtype == torch.float32
    torch.testing.assert_close(labelled[..., :40, :], image, rtol=0, atol=1e-6)
    assert torch.all(blank[..., 40:, :] == 1.0)  # no text: a white band
    band = labelled[..., 40:, :]
    assert float(band.min()) < 0.3  # dark text on white
    assert not torch.equal(band[..., :BAND // 2, :], other[..., 40 : 40 + BAND // 2, :])  # first line differs
    torch.testing.assert_close(band[..., BAND // 2 + 2 :, :], other[..., 40 + BAND // 2 + 2 :, :])  # second equal
    gray = strips.labelled_panel(image[:, :1], ["gray"])
    assert gray.shape == (1, 3, 40 + BAND, 120)
    with pytest.raises(ValueError, match="do not fit"):
        strips.labelled_panel(image, ["a", "b", "c"])


def test_long_labels_are_cut_to_the_panel_width(make_image):
    narrow = strips.labelled_panel(make_image(10, 60), ["a very long method name indeed"])
    band = narrow[..., 10:, :]
    assert narrow.shape[-1] == 60 and float(band.min()) < 0.3  # some text is drawn...
    assert torch.all(band[..., -2:] == 1.0)  # ...and ends (with an ellipsis) before the right edge


def test_overview_panel_outlines_the_crop(make_image):
    image = torch.full((1, 3, 60, 90), 0.5)
    panel = strips.overview_panel(image, (30, 15, 30, 30), height=40)
    assert panel.shape == (1, 3, 40, 60)
    red = (panel[0, 0] > 0.8) & (panel[0, 1] < 0.3) & (panel[0, 2] < 0.3)
    rows, cols = torch.nonzero(red, as_tuple=True)
    assert int(cols.min()) == 20 and int(rows.min()) == 10  # 30, 15 scaled by 40/60
    assert 38 <= int(cols.max()) <= 40 and 28 <= int(rows.max()) <= 30
    assert not bool(red[25, 30])  # the inside is not filled
    with pytest.raises(ValueError, match="does not fit"):
        strips.overview_panel(image, (80, 0, 20, 20), height=40)


def test_make_strip_places_panels_with_white_gaps():
    a, b = torch.zeros(1, 3, 5, 4), torch.full((1, 1, 7, 3), 0.5)
    strip = strips.make_strip([a, b], gap=2)
    assert strip.shape == (1, 3, 7, 9)
    assert torch.all(strip[..., :5, :4] == 0) and torch.all(strip[..., 5:, :4] == 1)  # short panel padded white
    assert torch.all(strip[..., 4:6] == 1)  # the gap
    assert torch.all(strip[..., 6:] == 0.5)
    with pytest.raises(ValueError, match="at least one"):
        strips.make_strip([])


def test_comparison_strip_shows_the_same_zoomed_crop_of_every_panel(make_image):
    first, second = _planted(make_image, box=(37, 21, 12, 12))
    first, second = _q(first), _q(second)
    panels = [strips.Panel("a", first, "x"), strips.Panel("b", second, "y"),
              strips.Panel("ignored", torch.ones_like(first), choose_crop=False)]
    strip, box, zoom = strips.comparison_strip(panels, crop_size=12, panel_size=48)
    assert box == (37, 21, 12, 12) and zoom == 4
    assert strip.shape == (1, 3, 48 + BAND, 3 * 48 + 2 * 8)
    torch.testing.assert_close(strip[..., :48, :48], strips.zoom_nearest(first[..., 21:33, 37:49], 4))
    torch.testing.assert_close(strip[..., :48, 56:104], strips.zoom_nearest(second[..., 21:33, 37:49], 4))
    with_overview, _, _ = strips.comparison_strip(panels, box=(0, 0, 16, 12), panel_size=32, overview=first)
    # overview: 64x48 scaled to the crop height 24 -> 32 wide, padded to 150 for its caption
    assert with_overview.shape == (1, 3, 24 + BAND, 150 + 8 + 3 * (32 + 8) - 8)
    with pytest.raises(ValueError, match="does not fit"):
        strips.comparison_strip(panels, box=(60, 0, 10, 10))
