"""Point spread functions (PSFs): parametric blur kernels, kernel files and random camera-shake kernels.

Every PSF is a 2-D ``(kh, kw)`` float32 tensor, non-negative, summing to 1. Its centre is the pixel
``(kh // 2, kw // 2)`` (the generators below always make odd sizes, so the centre is the middle pixel); that is
the convention :mod:`srdeblur.classical` uses for convolution.

Command-line style specifications are parsed by :func:`parse_psf`:

* ``gaussian:SIGMA``        isotropic Gaussian, standard deviation in pixels;
* ``motion:LENGTH,ANGLE``   linear motion, length in pixels, angle in degrees counter-clockwise from +x;
* ``disk:RADIUS``           defocus (uniform disk), radius in pixels;
* anything else is read as the path of a ``.png`` (8/16-bit, gray or RGB) or ``.npy`` kernel file.

Invalid input raises :class:`PSFError`, a :class:`ValueError` whose message is one line meant for users.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "PSFError",
    "MAX_PSF_SIZE",
    "gaussian_psf",
    "motion_psf",
    "disk_psf",
    "load_psf",
    "parse_psf",
    "normalize_psf",
    "random_motion_psf",
]

#: Largest kernel side the parametric generators make; it bounds memory for absurd specs like ``disk:1e9``.
MAX_PSF_SIZE = 255

# Sub-samples per pixel side when area-sampling the motion line (64 sub-samples per pixel).
_SUPERSAMPLING = 8

_SPEC_HELP = "expected gaussian:SIGMA, motion:LENGTH,ANGLE, disk:RADIUS, or the path of a .png/.npy kernel file"


class PSFError(ValueError):
    """An invalid PSF, PSF specification or PSF file; ``str(error)`` is a one-line message for users."""


def normalize_psf(psf: torch.Tensor) -> torch.Tensor:
    """Validate a PSF and scale it to sum 1.

    Parameters
    ----------
    psf : torch.Tensor
        ``(kh, kw)`` real tensor, finite and non-negative, with a positive sum.

    Returns
    -------
    torch.Tensor
        ``(kh, kw)`` float32 contiguous tensor summing to 1.

    Raises
    ------
    PSFError
        If ``psf`` is not a tensor, not 2-D, empty, complex, not finite, has a negative entry or sums to 0.
    """
    if not isinstance(psf, torch.Tensor):
        raise PSFError(f"PSF must be a torch.Tensor, got {type(psf).__name__}")
    if psf.ndim != 2 or psf.numel() == 0:
        raise PSFError(f"PSF must be a non-empty 2-D array (kh, kw), got shape {tuple(psf.shape)}")
    if psf.is_complex() or psf.dtype == torch.bool:
        raise PSFError(f"PSF must be real-valued, got dtype {psf.dtype}")
    # float64 so that a 16-bit kernel or one with a huge dynamic range normalises accurately.
    kernel = psf.detach().to(torch.float64)
    if not torch.isfinite(kernel).all():
        raise PSFError("PSF contains NaN or infinite values")
    if (kernel < 0).any():
        raise PSFError("PSF contains negative values")
    # Scale by the maximum first: a kernel of huge finite values would otherwise sum to infinity.
    peak = kernel.max()
    if not peak > 0:
        raise PSFError("PSF sums to zero (all-zero kernel)")
    kernel = kernel / peak
    total = kernel.sum()
    return (kernel / total).to(torch.float32).contiguous()


def _check_number(value: float, name: str, *, minimum: float = 0.0) -> float:
    """Return ``value`` as a float if it is finite and ``>= minimum``, else raise :class:`PSFError`."""
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise PSFError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise PSFError(f"{name} must be finite, got {number}")
    if number < minimum:
        raise PSFError(f"{name} must be >= {minimum:g}, got {number:g}")
    return number


def _check_size(half: int, what: str) -> int:
    """Side ``2 * half + 1`` of a kernel, refusing kernels larger than :data:`MAX_PSF_SIZE`."""
    size = 2 * half + 1
    if size > MAX_PSF_SIZE:
        raise PSFError(f"{what} needs a {size}x{size} kernel, larger than the maximum {MAX_PSF_SIZE}")
    return size


def _half_extent(extent: float) -> int:
    """Smallest ``h`` such that pixels ``|k| <= h`` hold every pixel whose cell ``[k - 1/2, k + 1/2]`` meets
    ``[-extent, extent]`` (the epsilon keeps ``extent = 2.5`` from taking in the pixel at 3)."""
    return max(0, math.ceil(extent + 0.5 - 1e-9) - 1)


def gaussian_psf(sigma: float, *, size: int | None = None) -> torch.Tensor:
    """Isotropic Gaussian PSF, sampled at pixel centres and normalised.

    Parameters
    ----------
    sigma : float
        Standard deviation in pixels, ``>= 0`` (0 gives a delta, the identity blur).
    size : int, optional
        Odd kernel side; default ``2 * ceil(3 * sigma) + 1`` (three standard deviations each side).

    Returns
    -------
    torch.Tensor
        ``(size, size)`` float32, sum 1, symmetric.
    """
    sigma = _check_number(sigma, "gaussian sigma")
    if size is None:
        if 3 * sigma > MAX_PSF_SIZE:
            raise PSFError(f"gaussian sigma {sigma:g} is too large (kernel side limit {MAX_PSF_SIZE})")
        size = _check_size(math.ceil(3 * sigma), f"gaussian sigma {sigma:g}")
    elif isinstance(size, bool) or not isinstance(size, int) or size < 1 or size % 2 == 0 or size > MAX_PSF_SIZE:
        raise PSFError(f"gaussian size must be an odd integer in [1, {MAX_PSF_SIZE}], got {size!r}")
    from kornia.filters import get_gaussian_kernel2d  # lazily: kornia's import costs `upscale` ~0.3 s of start-up

    # Below 0.01 px every off-centre sample is exp(-5000) = 0 anyway; the floor avoids 0/0 for sigma = 0.
    kernel = get_gaussian_kernel2d((size, size), (max(sigma, 0.01), max(sigma, 0.01)), dtype=torch.float64)
    return normalize_psf(kernel[0])


def motion_psf(length: float, angle: float) -> torch.Tensor:
    """Linear (constant-velocity) motion-blur PSF, anti-aliased.

    The kernel is the area coverage of a segment of width 1 px and length ``length`` centred on the middle
    pixel, each pixel sampled by 8 x 8 sub-pixels. At ``angle = 0`` and an integer odd ``length`` it is
    exactly ``length`` equal taps on the middle row (like MATLAB's ``fspecial('motion')``); oblique lines
    spread smoothly over neighbouring pixels instead of staircasing as kornia's nearest-neighbour line does.

    Parameters
    ----------
    length : float
        Length of the motion in pixels, ``>= 0``; lengths up to 1 give a delta (no blur).
    angle : float
        Direction in degrees, counter-clockwise from the +x axis (image rows grow downwards, so 90 degrees
        is a vertical line and 45 degrees goes from bottom-left to top-right).

    Returns
    -------
    torch.Tensor
        ``(k, k)`` float32 with odd ``k``, sum 1, point-symmetric about the centre.
    """
    length = _check_number(length, "motion length")
    angle = _check_number(angle, "motion angle", minimum=-math.inf)
    if length > MAX_PSF_SIZE:
        raise PSFError(f"motion length {length:g} is too large (kernel side limit {MAX_PSF_SIZE})")
    if length <= 1.0:
        return torch.ones(1, 1)  # no motion beyond the pixel itself, whatever the angle
    theta = math.radians(angle % 360.0)
    # Unit vectors along the motion and across it, in (x right, y down) pixel coordinates.
    along = (math.cos(theta), -math.sin(theta))
    across = (math.sin(theta), math.cos(theta))
    half_length, half_width = length / 2, 0.5
    extent_x = half_length * abs(along[0]) + half_width * abs(across[0])
    extent_y = half_length * abs(along[1]) + half_width * abs(across[1])
    half = max(_half_extent(extent_x), _half_extent(extent_y))
    size = _check_size(half, f"motion length {length:g}")
    offsets = (torch.arange(_SUPERSAMPLING, dtype=torch.float64) + 0.5) / _SUPERSAMPLING - 0.5
    coords = (torch.arange(size, dtype=torch.float64) - half)[:, None] + offsets[None, :]  # (pixel, sub)
    y = coords[:, :, None, None]
    x = coords[None, None, :, :]
    within_length = (x * along[0] + y * along[1]).abs() <= half_length
    within_width = (x * across[0] + y * across[1]).abs() <= half_width
    inside = within_length & within_width
    coverage = inside.sum(dim=(1, 3), dtype=torch.float64)
    return normalize_psf(coverage)


def disk_psf(radius: float) -> torch.Tensor:
    """Defocus PSF: a uniform disk with an anti-aliased edge.

    Each pixel gets ``clip(radius + 1/2 - d, 0, 1)`` where ``d`` is the distance of its centre from the
    kernel centre: 1 inside, 0 outside, and a one-pixel linear ramp approximating the pixel's coverage on the
    rim.

    Parameters
    ----------
    radius : float
        Radius in pixels, ``>= 0`` (0 gives a delta).

    Returns
    -------
    torch.Tensor
        ``(k, k)`` float32 with odd ``k = 2 * ceil(radius + 1/2) - 1``, sum 1, rotation symmetric.
    """
    radius = _check_number(radius, "disk radius")
    if radius > MAX_PSF_SIZE:
        raise PSFError(f"disk radius {radius:g} is too large (kernel side limit {MAX_PSF_SIZE})")
    half = _half_extent(radius)
    _check_size(half, f"disk radius {radius:g}")
    axis = torch.arange(-half, half + 1, dtype=torch.float64)
    distance = torch.hypot(axis[:, None], axis[None, :])
    return normalize_psf((radius + 0.5 - distance).clamp(0.0, 1.0))


def load_psf(path: str | Path) -> torch.Tensor:
    """Read a PSF from a PNG or NPY file and normalise it to sum 1.

    Parameters
    ----------
    path : str or pathlib.Path
        ``.png`` (8- or 16-bit, gray, gray+alpha, RGB or RGBA: colour channels are averaged, alpha dropped)
        or ``.npy`` (a 2-D real array).

    Returns
    -------
    torch.Tensor
        ``(kh, kw)`` float32, sum 1.

    Raises
    ------
    PSFError
        Missing or unreadable file, unsupported type, wrong shape, or a kernel :func:`normalize_psf` refuses.
    """
    path = Path(path)
    try:
        is_file = path.is_file()
    except (OSError, ValueError):  # e.g. a name too long for the file system
        is_file = False
    if not is_file:
        raise PSFError(f"PSF file not found: {str(path)!r}")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        array = _read_npy(path)
    elif suffix == ".png":
        array = _read_png(path)
    else:
        raise PSFError(f"unsupported PSF file type {suffix or '(none)'!r} for {str(path)!r}: use .png or .npy")
    try:
        return normalize_psf(torch.from_numpy(array))
    except PSFError as error:
        raise PSFError(f"{path}: {error}") from None


def _read_npy(path: Path) -> np.ndarray:
    """A ``.npy`` kernel as a 2-D float64 array."""
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        reason = str(error).splitlines()[0] if str(error) else "invalid .npy file"
        raise PSFError(f"cannot read PSF file {str(path)!r}: {reason}") from None
    if not isinstance(array, np.ndarray) or array.dtype.kind not in "iuf":
        raise PSFError(f"{path}: PSF array must be real numbers, got dtype {getattr(array, 'dtype', type(array))}")
    if array.ndim != 2:
        raise PSFError(f"{path}: PSF array must be 2-D, got shape {array.shape}")
    return array.astype(np.float64)


def _read_png(path: Path) -> np.ndarray:
    """A ``.png`` kernel as a 2-D float64 array (colour averaged).

    Why not :mod:`srdeblur.io`: a PSF file is a weight map, not an image; its scale is irrelevant (it is
    normalised by its sum) and 16-bit precision must survive, so no image conversion applies.
    """
    import cv2  # lazy: only PNG kernels need OpenCV (it reads 16-bit RGB, which Pillow does not)

    array = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if array is None:
        raise PSFError(f"cannot read PSF file {str(path)!r}: not a valid PNG")
    if array.ndim == 3:
        channels = array.shape[2]
        colour = array[:, :, :3] if channels >= 3 else array[:, :, :1]  # drop alpha
        array = colour.astype(np.float64).mean(axis=2)
    return array.astype(np.float64)


def _parse_numbers(spec: str, arguments: str, names: tuple[str, ...]) -> list[float]:
    """Comma-separated numbers of a ``kind:ARGS`` spec; one per name, else :class:`PSFError`."""
    parts = arguments.split(",")
    if len(parts) != len(names) or any(not part.strip() for part in parts):
        raise PSFError(f"invalid PSF spec {spec!r}: expected {len(names)} number(s) {','.join(names)} after ':'")
    numbers = []
    for name, part in zip(names, parts):
        try:
            numbers.append(float(part))
        except ValueError:
            raise PSFError(f"invalid PSF spec {spec!r}: {name} {part.strip()!r} is not a number") from None
    return numbers


def parse_psf(spec: str) -> torch.Tensor:
    """Build a PSF from a command-line specification.

    Parameters
    ----------
    spec : str
        ``"gaussian:SIGMA"``, ``"motion:LENGTH,ANGLE"``, ``"disk:RADIUS"`` (pixels and degrees, see
        :func:`gaussian_psf`, :func:`motion_psf`, :func:`disk_psf`), or the path of a ``.png``/``.npy`` file
        (see :func:`load_psf`). The kind is case-insensitive; surrounding spaces are ignored.

    Returns
    -------
    torch.Tensor
        ``(kh, kw)`` float32, non-negative, sum 1.

    Raises
    ------
    PSFError
        For any malformed specification, out-of-range value or unusable file.
    """
    if not isinstance(spec, str):
        raise PSFError(f"PSF spec must be a string, got {type(spec).__name__}")
    text = spec.strip()
    if not text:
        raise PSFError(f"empty PSF spec: {_SPEC_HELP}")
    kind, colon, arguments = text.partition(":")
    kind = kind.strip().lower()
    if colon and kind == "gaussian":
        (sigma,) = _parse_numbers(spec, arguments, ("SIGMA",))
        return gaussian_psf(sigma)
    if colon and kind == "motion":
        length, angle = _parse_numbers(spec, arguments, ("LENGTH", "ANGLE"))
        return motion_psf(length, angle)
    if colon and kind == "disk":
        (radius,) = _parse_numbers(spec, arguments, ("RADIUS",))
        return disk_psf(radius)
    path = Path(text)
    try:
        exists = path.exists()
    except (OSError, ValueError):
        exists = False
    if not exists:
        raise PSFError(f"unknown PSF spec {spec!r}: {_SPEC_HELP}")
    return load_psf(path)


def _shake_trajectory(steps: int, generator: torch.Generator) -> tuple[list[float], list[float]]:
    """A camera-shake trajectory: Boracchi & Foi's (2012) random walk with inertia.

    The velocity has constant speed; at each step it turns by a Gaussian random acceleration, is pulled back
    towards the start (``centripetal``), and rarely reverses abruptly (an impulsive shake). Their parameter
    ranges and units are kept (the caller rescales the result). All random numbers are drawn up front
    from ``generator``, so the result depends only on its state.
    """
    params = torch.rand(5, generator=generator, dtype=torch.float64).tolist()
    uniforms = torch.rand(steps, 2, generator=generator, dtype=torch.float64).tolist()
    normals = torch.randn(steps, 2, generator=generator, dtype=torch.float64).tolist()
    anxiety = 0.1 * params[0] + 0.005  # > 0 so the walk is never a perfectly straight line
    centripetal = 0.7 * params[1]
    gaussian_term = 10.0 * params[2]
    big_shake_probability = 0.2 * params[3]
    # Their units: a path of at most 60 px in `steps` samples; the centripetal pull depends on this scale.
    step_length = 60.0 / steps
    velocity = complex(math.cos(2 * math.pi * params[4]), math.sin(2 * math.pi * params[4])) * anxiety
    position = 0j
    xs, ys = [0.0], [0.0]
    for (shake, turn), (n_re, n_im) in zip(uniforms, normals):
        impulse = 0j
        if shake < big_shake_probability * anxiety:
            # An abrupt shake: a push roughly opposite to the current direction.
            impulse = 2 * velocity * complex(math.cos(math.pi + turn - 0.5), math.sin(math.pi + turn - 0.5))
        acceleration = anxiety * (gaussian_term * complex(n_re, n_im) - centripetal * position) * step_length
        velocity = velocity + impulse + acceleration
        speed = abs(velocity)
        velocity = velocity / speed * step_length if speed > 0 else complex(step_length, 0.0)
        position = position + velocity
        xs.append(position.real)
        ys.append(position.imag)
    return xs, ys


def _tremor_trajectory(steps: int, generator: torch.Generator) -> tuple[list[float], list[float]]:
    """A hand-tremor trajectory sampled uniformly in TIME: a slow drift plus 1-3 random sinusoids per axis.

    A hand oscillates, so its speed falls to zero where it reverses; sampled uniformly in time, the
    exposure piles up at those turning points, which makes the bright blobs at the ends and corners of
    measured camera-shake kernels. (The Boracchi & Foi walk moves at constant speed, so it cannot dwell.)
    Frequencies are 0.3-2 cycles per exposure, amplitudes decay with frequency; units are arbitrary (the
    caller rescales). All random numbers come from ``generator``.
    """
    count = 1 + int(torch.randint(3, (1,), generator=generator))
    draws = torch.rand(2, count, 3, generator=generator, dtype=torch.float64)
    drift = (torch.rand(2, generator=generator, dtype=torch.float64) * 2 - 1) * 0.5
    t = torch.linspace(0.0, 1.0, steps, dtype=torch.float64)
    axes = []
    for axis in range(2):
        frequency = 0.3 + 1.7 * draws[axis, :, 0]
        amplitude = draws[axis, :, 1] / frequency
        phase = 2 * math.pi * draws[axis, :, 2]
        waves = amplitude[:, None] * torch.sin(2 * math.pi * frequency[:, None] * t + phase[:, None])
        axes.append((drift[axis] * t + waves.sum(0)).tolist())
    return axes[0], axes[1]


def random_motion_psf(size: int, *, generator: torch.Generator) -> torch.Tensor:
    """Random camera-shake PSF for training blind deblurring.

    Half the kernels follow a Boracchi & Foi (2012) shake trajectory (:func:`_shake_trajectory`, 2000 samples
    as in their code), exposed at constant speed; the other half a hand tremor (:func:`_tremor_trajectory`)
    exposed uniformly in time, so the exposure dwells where the hand turns. The trajectory is cut to a random
    exposure (its first 1/20 to all of it, log-uniformly: short exposures give near-linear kernels, long ones
    tangled shakes), centred on its centre of mass, scaled so that its farthest sample lies a random
    40-100 % of ``size // 2`` pixels from the kernel centre (in the max norm), and rasterised by bilinear
    (sub-pixel) splatting with equal weight per sample. Bilinear splatting preserves the centre of mass, so
    the PSF is centred and does not shift the image it blurs.

    Parameters
    ----------
    size : int
        Odd kernel side in ``[3, 99]`` (31 is typical).
    generator : torch.Generator
        Source of all randomness; equal generator states give equal kernels.

    Returns
    -------
    torch.Tensor
        ``(size, size)`` float32, non-negative, sum 1.
    """
    if isinstance(size, bool) or not isinstance(size, int) or size < 3 or size > 99 or size % 2 == 0:
        raise PSFError(f"random motion PSF size must be an odd integer in [3, 99], got {size!r}")
    if not isinstance(generator, torch.Generator):
        raise PSFError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    tremor = float(torch.rand(1, generator=generator, dtype=torch.float64)) < 0.5
    xs, ys = (_tremor_trajectory if tremor else _shake_trajectory)(2000, generator)
    exposure_draw, fraction_draw = torch.rand(2, generator=generator, dtype=torch.float64).tolist()
    # Exposure: the share of the trajectory the shutter sees (Boracchi & Foi use 1/100 ... 1).
    samples = max(2, round(len(xs) * 20.0 ** (exposure_draw - 1.0)))
    fraction = 0.4 + 0.6 * fraction_draw
    x = torch.tensor(xs[:samples], dtype=torch.float64)
    y = torch.tensor(ys[:samples], dtype=torch.float64)
    x, y = x - x.mean(), y - y.mean()
    reach = torch.maximum(x.abs().max(), y.abs().max()).item()
    half = size // 2
    scale = fraction * half / reach if reach > 0 else 0.0
    return normalize_psf(_splat(half + x * scale, half + y * scale, size))


def _splat(x: torch.Tensor, y: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear splatting of unit-weight points ``(x, y)`` (pixel coordinates in ``[0, size - 1]``)."""
    x0, y0 = x.floor(), y.floor()
    fx, fy = x - x0, y - y0
    x0, y0 = x0.long(), y0.long()
    canvas = torch.zeros(size * size, dtype=torch.float64)
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            # A point exactly on the last row/column puts weight 0 one pixel outside: clamp that index.
            rows = (y0 + dy).clamp(0, size - 1)
            cols = (x0 + dx).clamp(0, size - 1)
            canvas.index_add_(0, rows * size + cols, wy * wx)
    return canvas.view(size, size)
