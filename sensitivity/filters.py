"""Small image filters in NumPy: a separable Gaussian and the Sobel gradient magnitude.

Both work on the first two axes of an ``(H, W)`` or ``(H, W, C)`` array and mirror the
border (``numpy.pad`` mode ``"symmetric"``: the edge pixel is repeated, then the image
reflected), so a constant image stays constant.
"""

from __future__ import annotations

import math

import numpy as np

LUMA = (0.299, 0.587, 0.114)
"""ITU-R BT.601 weights that turn RGB into a grey level."""


def gaussian_kernel(sigma: float) -> np.ndarray:
    """Normalised 1-D Gaussian of standard deviation ``sigma`` pixels, radius ``ceil(3 sigma)``."""
    if not (isinstance(sigma, (int, float, np.number)) and 0 < sigma < math.inf):
        raise ValueError(f"sigma must be a positive number of pixels, got {sigma!r}")
    radius = max(1, math.ceil(3 * float(sigma)))
    offsets = np.arange(-radius, radius + 1, dtype=np.float64)
    # Clipped exponent: a tiny sigma gives a unit impulse instead of an overflow.
    with np.errstate(over="ignore", divide="ignore"):
        kernel = np.exp(-0.5 * np.minimum((offsets / float(sigma)) ** 2, 1e4))
    return kernel / kernel.sum()


def correlate_axis(
    values: np.ndarray, kernel: np.ndarray, axis: int, mode: str = "symmetric"
) -> np.ndarray:
    """Correlate ``values`` with an odd-length ``kernel`` along ``axis``; ``mode`` is
    ``np.pad``'s border mode (default: mirrored, edge pixel repeated)."""
    radius = len(kernel) // 2
    pad = [(0, 0)] * values.ndim
    pad[axis] = (radius, radius)
    padded = np.pad(values, pad, mode=mode)
    size = values.shape[axis]
    out = np.zeros_like(values)
    for k, weight in enumerate(kernel):
        if weight:
            out += weight * np.take(padded, np.arange(k, k + size), axis=axis)
    return out


def gaussian_smooth(values: np.ndarray, sigma: float) -> np.ndarray:
    """``(H, W[, C])`` array blurred by a Gaussian of ``sigma`` pixels; float64, same shape.

    ``sigma == 0`` returns an unblurred float64 copy.
    """
    array = np.asarray(values, dtype=np.float64)
    if array.ndim not in (2, 3):
        raise ValueError(f"expected an (H, W) or (H, W, C) array, got shape {array.shape}")
    if sigma == 0:
        return array.copy()
    kernel = gaussian_kernel(sigma)
    return correlate_axis(correlate_axis(array, kernel, 0), kernel, 1)


def grey(image: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` RGB (any scale) to an ``(H, W)`` float64 grey level with :data:`LUMA`."""
    array = np.asarray(image, dtype=np.float64)
    if array.ndim == 2:
        return array.copy()
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) image, got shape {array.shape}")
    return array @ np.asarray(LUMA)


def sobel_magnitude(values: np.ndarray) -> np.ndarray:
    """Sobel gradient magnitude ``sqrt(gx**2 + gy**2)`` of an ``(H, W)`` array; float64 ``(H, W)``.

    ``gx`` is the 3x3 Sobel derivative along x (columns): smoothing ``[1, 2, 1]`` along y
    times the central difference ``[-1, 0, 1]`` along x; ``gy`` the same transposed.
    """
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 2:
        raise ValueError(f"expected an (H, W) array, got shape {array.shape}")
    smooth = np.array([1.0, 2.0, 1.0])
    diff = np.array([-1.0, 0.0, 1.0])
    gx = correlate_axis(correlate_axis(array, smooth, 0), diff, 1)
    gy = correlate_axis(correlate_axis(array, diff, 0), smooth, 1)
    return np.hypot(gx, gy)
