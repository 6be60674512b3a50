"""Fills: what a removed pixel becomes, and where insertion starts (:func:`fill_image`).

``"blur"`` the image blurred by a Gaussian of ``blur_sigma`` pixels of a 32x32 image (scaled
with the image's size), ``"mean"`` the image's mean colour, ``"black"`` zeros, and ``"road"``
(:func:`road_impute`): removed pixels interpolated from the kept ones, plus a little noise
(Rong et al., "A Consistent and Efficient Evaluation Strategy for Attribution Methods",
ICML 2022), so the fill does not reveal the shape of the removed set.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import sparse
from scipy.sparse.linalg import splu

from sensitivity.engine.choices import NATIVE_SIZE
from sensitivity.imaging.filters import gaussian_smooth
from sensitivity.metrics.inputs import checked_image

FILLS = ("blur", "mean", "black", "road")
"""Replacement values for removed pixels; see :func:`fill_image` and :func:`road_impute`."""

ROAD_NOISE_STD = 2.55
"""Standard deviation (pixel units) of the noise on ROAD-imputed pixels: 1 % of 0..255."""

_ROAD_NEIGHBOURS = (
    (-1, 0, 2.0), (1, 0, 2.0), (0, -1, 2.0), (0, 1, 2.0),
    (-1, -1, 1.0), (-1, 1, 1.0), (1, -1, 1.0), (1, 1, 1.0),
)  # fmt: skip
"""``(dy, dx, weight)``: direct neighbours weigh 1/6, diagonal ones 1/12 (here 2 : 1)."""

BLUR_SIGMA = 4.0
"""Default blur of the ``"blur"`` fill, in pixels of a 32x32 image (scaled with image size)."""

REFERENCE_SIZE = NATIVE_SIZE
"""Blur widths are given in pixels of a 32x32 image and scale with the image."""


def fill_image(image, fill: str = "blur", blur_sigma: float = BLUR_SIGMA) -> np.ndarray:
    """The ``(H, W, 3)`` float32 values that replace removed pixels of ``image``.

    ``"blur"``: Gaussian blur of ``blur_sigma * min(H, W) / 32`` pixels; ``"mean"``: every
    pixel the image's mean colour; ``"black"``: zeros. ``"road"`` depends on which pixels
    are removed and has no single fill image: see :func:`road_impute`.
    """
    image = checked_image(image)
    if fill == "road":
        raise ValueError("the 'road' fill depends on the removed pixels: use road_impute")
    if fill == "blur":
        if not (isinstance(blur_sigma, (int, float, np.number)) and 0 < blur_sigma < math.inf):
            raise ValueError(f"blur_sigma must be a positive number, got {blur_sigma!r}")
        sigma = float(blur_sigma) * min(image.shape[:2]) / REFERENCE_SIZE
        return gaussian_smooth(image, sigma).astype(np.float32)
    if fill == "mean":
        return np.broadcast_to(image.mean(axis=(0, 1)), image.shape).astype(np.float32)
    if fill == "black":
        return np.zeros_like(image)
    raise ValueError(f"fill must be one of {list(FILLS)}, got {fill!r}")


def road_impute(image, removed, *, noise_std: float = ROAD_NOISE_STD, seed: int = 0) -> np.ndarray:
    """``(H, W, 3)`` float32 image whose ``removed`` pixels are imputed from the kept ones
    (ROAD's noisy linear imputation); kept pixels are returned unchanged.

    ``removed``: ``(H, W)`` bool. Each removed pixel's value (per channel) equals the weighted
    mean of its neighbours inside the image (direct ones weigh 1/6, diagonal ones 1/12,
    renormalised at the border), kept neighbours being fixed: one sparse linear system for
    all removed pixels and the three channels. With nothing kept, every pixel gets the
    image's mean colour. Then Gaussian noise of ``noise_std`` pixel values (a field drawn
    for the whole image from ``numpy.random.default_rng(seed)``, so a pixel's noise does not
    depend on the removed set) is added to the removed pixels, which are clipped to 0..255.
    """
    image = checked_image(image)
    removed = np.asarray(removed, dtype=bool)
    if removed.shape != image.shape[:2]:
        raise ValueError(f"removed must have shape {image.shape[:2]}, got {removed.shape}")
    if not (isinstance(noise_std, (int, float, np.number)) and 0 <= noise_std < math.inf):
        raise ValueError(f"noise_std must be a non-negative number, got {noise_std!r}")
    if not removed.any():
        return image.copy()
    out = image.astype(np.float64)
    if removed.all():
        out[:] = image.mean(axis=(0, 1), dtype=np.float64)
    else:
        out[removed] = _harmonic_fill(out, removed)
    if noise_std > 0:
        noise = np.random.default_rng(seed).normal(0.0, float(noise_std), image.shape)
        out[removed] += noise[removed]
    out[removed] = np.clip(out[removed], 0.0, 255.0)
    return out.astype(np.float32)


def _harmonic_fill(image: np.ndarray, removed: np.ndarray) -> np.ndarray:
    """``(M, 3)`` values of the ``M`` removed pixels (raster order) solving ROAD's system;
    at least one pixel must be kept (then every removed region touches a kept pixel and
    the system, weakly diagonally dominant and irreducible, has one solution)."""
    inside = np.pad(np.ones(removed.shape, bool), 1)
    gone = np.pad(removed, 1)
    values = np.pad(image, ((1, 1), (1, 1), (0, 0)))
    index = np.full(gone.shape, -1, np.int64)
    count = int(removed.sum())
    index[gone] = np.arange(count)
    rows, cols = np.nonzero(gone)
    diagonal = np.zeros(count)
    rhs = np.zeros((count, image.shape[2]))
    entries, targets, weights = [], [], []
    for dy, dx, weight in _ROAD_NEIGHBOURS:
        r, c = rows + dy, cols + dx
        diagonal += weight * inside[r, c]
        unknown = gone[r, c]
        entries.append(np.flatnonzero(unknown))
        targets.append(index[r[unknown], c[unknown]])
        weights.append(np.full(int(unknown.sum()), -weight))
        known = inside[r, c] & ~unknown
        rhs[known] += weight * values[r[known], c[known]]
    diagonal_index = np.arange(count)
    row_index = np.concatenate([diagonal_index, *entries])
    column_index = np.concatenate([diagonal_index, *targets])
    matrix = sparse.csc_matrix(
        (np.concatenate([diagonal, *weights]), (row_index, column_index)), shape=(count, count)
    )
    return splu(matrix).solve(rhs)


def replaced_pixels(
    image: np.ndarray,
    replace: np.ndarray,
    fill: str,
    blur_sigma: float,
    road_noise: float,
    seed: int,
) -> np.ndarray:
    """``(K, H, W, 3)`` float32: ``image`` with the pixels of each ``(K, H, W)`` bool mask
    replaced by the fill (``"road"``: imputed from the pixels the mask keeps)."""
    if fill == "road":
        return np.stack(
            [road_impute(image, mask, noise_std=road_noise, seed=seed) for mask in replace]
        )
    filled = fill_image(image, fill, blur_sigma)
    return np.where(replace[..., None], filled[None], image[None]).astype(np.float32)
