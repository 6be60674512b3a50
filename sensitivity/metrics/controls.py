"""Controls that ignore the model: :func:`random_map`, :func:`edge_map`, :func:`center_map`
and :func:`center_box`, the baselines a saliency method's measures are compared with."""

from __future__ import annotations

import numpy as np

from sensitivity.imaging.discovery import Box
from sensitivity.imaging.filters import grey, sobel_magnitude
from sensitivity.metrics.inputs import checked_image


def random_map(shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    """``(H, W)`` float32 uniform noise in [0, 1): a map with no information."""
    height, width = (int(v) for v in tuple(shape)[:2])
    return np.random.default_rng(seed).random((height, width)).astype(np.float32)


def edge_map(image) -> np.ndarray:
    """``(H, W)`` float32 Sobel gradient magnitude of the image's grey level (0..255 scale)."""
    return sobel_magnitude(grey(checked_image(image))).astype(np.float32)


def center_map(shape: tuple[int, int], sigma: float | None = None) -> np.ndarray:
    """``(H, W)`` float32 Gaussian bump at the image centre (``sigma`` default min(H, W) / 6)."""
    height, width = (int(v) for v in tuple(shape)[:2])
    sigma = min(height, width) / 6 if sigma is None else float(sigma)
    y = (np.arange(height) - (height - 1) / 2) / sigma
    x = (np.arange(width) - (width - 1) / 2) / sigma
    return np.exp(-0.5 * (y[:, None] ** 2 + x[None, :] ** 2)).astype(np.float32)


def center_box(shape: tuple[int, int], box_size: tuple[int, int]) -> Box:
    """A ``(box_h, box_w)`` box centred in an image of ``shape`` ``(H, W)`` (rounded down)."""
    height, width = (int(v) for v in tuple(shape)[:2])
    box_h, box_w = (min(int(v), s) for v, s in zip(box_size, (height, width), strict=True))
    y0 = (height - box_h) // 2
    x0 = (width - box_w) // 2
    return Box(x0, y0, x0 + box_w, y0 + box_h)
