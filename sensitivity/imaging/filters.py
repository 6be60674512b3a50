"""Image filters on top of :mod:`scipy.ndimage`: one Gaussian and the Sobel gradient magnitude.

Both work on the first two axes of an ``(H, W)`` or ``(H, W, C)`` array with one border rule:
``scipy.ndimage`` mode ``"reflect"`` (the edge pixel is repeated, then the image mirrored,
``numpy.pad``'s ``"symmetric"``), so a constant image stays constant.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

LUMA = (0.299, 0.587, 0.114)
"""ITU-R BT.601 weights that turn RGB into a grey level."""

BORDER = "reflect"
"""``scipy.ndimage`` border mode of every filter here (edge pixel repeated, then mirrored)."""


def gaussian_smooth(values: np.ndarray, sigma: float) -> np.ndarray:
    """``(H, W[, C])`` array blurred over its first two axes by a Gaussian of ``sigma``
    pixels; float64, same shape.

    The sampled kernel has radius ``max(1, ceil(3 sigma))`` and is normalised to sum 1.
    ``sigma == 0`` returns an unblurred float64 copy.
    """
    array = np.asarray(values, dtype=np.float64)
    if array.ndim not in (2, 3):
        raise ValueError(f"expected an (H, W) or (H, W, C) array, got shape {array.shape}")
    if not (isinstance(sigma, (int, float, np.number)) and 0 <= sigma < math.inf):
        raise ValueError(f"sigma must be a non-negative number of pixels, got {sigma!r}")
    if sigma == 0:
        return array.copy()
    radius = max(1, math.ceil(3 * float(sigma)))
    return ndimage.gaussian_filter(array, float(sigma), mode=BORDER, radius=radius, axes=(0, 1))


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
    gx = ndimage.sobel(array, axis=1, mode=BORDER)
    gy = ndimage.sobel(array, axis=0, mode=BORDER)
    return np.hypot(gx, gy)
