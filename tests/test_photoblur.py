"""srdeblur.photoblur: blurs that vary across the frame, against hand-made references."""

from __future__ import annotations

import pytest
import torch

from srdeblur.classical import blur
from srdeblur.photoblur import object_motion_blur, rotation_blur, varying_blur
from conftest import synthetic_photo


@pytest.fixture(scope="module")
def photo() -> torch.Tensor:
    return synthetic_photo(96, 128, edge=0.5, cell=(7, 11))


@pytest.mark.parametrize("function", [varying_blur, rotation_blur, object_motion_blur])
def test_seeded_in_range_and_constant_images_stay_constant(photo, function):
    first = function(photo, generator=torch.Generator().manual_seed(3))
    again = function(photo, generator=torch.Generator().manual_seed(3))
    other = function(photo, generator=torch.Generator().manual_seed(4))
    assert first.shape == photo.shape and torch.equal(first, again) and not torch.equal(first, other)
    assert first.min() >= -1e-6 and first.max() <= 1 + 1e-6
    constant = torch.full((1, 3, 64, 64), 0.3)
    torch.testing.assert_close(function(constant, generator=torch.Generator().manual_seed(5)), constant,
                               atol=1e-5, rtol=0)


@pytest.mark.parametrize("function", [varying_blur, rotation_blur, object_motion_blur])
def test_rejects_non_batches(function):
    with pytest.raises(ValueError, match="B, C, H, W"):
        function(torch.rand(3, 32, 32), generator=torch.Generator())


def test_rotation_blur_of_no_reach_is_the_photo(photo):
    torch.testing.assert_close(rotation_blur(photo, generator=torch.Generator().manual_seed(0), max_reach=0.0), photo,
                               atol=1e-5, rtol=0)


def test_rotation_blur_moves_far_pixels_more_than_near_ones():
    # A grid of fine lines, rotated about a centre drawn inside the frame: the change grows with the distance.
    lines = torch.zeros(1, 1, 129, 129)
    lines[..., ::4, :] = 1.0
    lines[..., :, ::4] = 1.0
    for seed in range(20):  # find a draw whose centre lies well inside the frame
        generator = torch.Generator().manual_seed(seed)
        blurred = rotation_blur(lines, generator=generator, max_reach=8.0)
        change = (blurred - lines).abs()[0, 0]
        row, col = divmod(int(torch.argmin(change.unfold(0, 17, 1).unfold(1, 17, 1).mean(dim=(-1, -2)))), 113)
        if 30 < row < 80 and 30 < col < 80:
            near = change[row : row + 17, col : col + 17].mean()
            far = max(change[:17, :17].mean(), change[-17:, -17:].mean(), change[:17, -17:].mean(), change[-17:, :17].mean())
            assert far > 3 * near
            return
    pytest.fail("no draw put the rotation centre inside the frame")


def test_object_motion_blur_is_the_layered_composite_by_hand(photo):
    blurred = object_motion_blur(photo, generator=torch.Generator().manual_seed(1), size=15)
    changed = (blurred - photo).abs().amax(dim=1)[0] > 1e-4
    # Only a connected region (the object and its smear) changes, not the whole frame; and inside it the
    # image is smoother than the photo (the object is blurred).
    assert 0.02 < changed.float().mean() < 0.6
    inside = changed.nonzero()
    top, left = inside.min(0).values.tolist()
    bottom, right = inside.max(0).values.tolist()
    assert (bottom - top) < photo.shape[-2] or (right - left) < photo.shape[-1]
    gradient = lambda image: (image[..., 1:] - image[..., :-1]).abs()[..., top:bottom, left:right].mean()  # noqa: E731
    assert gradient(blurred) < gradient(photo)


def test_varying_blur_of_equal_shakes_is_that_shake(photo, monkeypatch):
    # Every anchor drawing the same kernel: the per-pixel blend of identical blurs is that one blur.
    from srdeblur import photoblur
    from srdeblur.kernels import gaussian_psf

    monkeypatch.setattr(photoblur, "random_motion_psf", lambda size, generator: gaussian_psf(1.5, size=size))
    torch.testing.assert_close(varying_blur(photo, generator=torch.Generator().manual_seed(0), size=9),
                               blur(photo, gaussian_psf(1.5, size=9)), atol=1e-5, rtol=0)
