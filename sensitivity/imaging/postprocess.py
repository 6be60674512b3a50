"""Turning a saliency map into masks and display values.

Maps are ``(H, W)`` float arrays (any units; :func:`normalize_map` also takes ``(H, W, 3)``);
they must be finite and non-empty, else ValueError.
"""

from __future__ import annotations

import numpy as np


def _finite_map(saliency_map, two_d: bool = True) -> np.ndarray:
    values = np.asarray(saliency_map, dtype=np.float64)
    if (two_d and values.ndim != 2) or values.size == 0:
        raise ValueError(f"expected an (H, W) map, got shape {values.shape}")
    if not np.isfinite(values).all():
        raise ValueError("the saliency map holds NaN or infinite values")
    return values


def top_k_mask(saliency_map, k: int) -> np.ndarray:
    """``(H, W)`` bool mask of exactly ``k`` pixels with the largest values.

    ``k`` is clipped to ``0..H*W``. Ties are broken deterministically: among equal values the
    pixel with the smaller row-major index wins.
    """
    values = _finite_map(saliency_map)
    k = int(np.clip(k, 0, values.size))
    flat = values.reshape(-1)
    order = np.lexsort((np.arange(flat.size), -flat))  # by -value, then by flat index
    mask = np.zeros(flat.size, dtype=bool)
    mask[order[:k]] = True
    return mask.reshape(values.shape)


def is_flat(saliency_map) -> bool:
    """Whether every value of the ``(H, W)`` map is the same (an all-zero Grad-CAM, say): no
    pixel stands out, so a top-k mask of it (:func:`top_k_mask`) only follows the tie order."""
    values = _finite_map(saliency_map)
    return bool(values.min() == values.max())


def strongest_pixels(saliency_map, k: int, sign: str) -> np.ndarray:
    """``(H, W)`` bool mask of the ``k`` strongest pixels of a map made with sign mode
    ``sign``: for ``"signed"`` maps the largest magnitudes (evidence either way), otherwise
    the largest values (:func:`top_k_mask`). The page and ``explain`` both use it."""
    values = _finite_map(saliency_map)
    return top_k_mask(np.abs(values) if sign == "signed" else values, k)


def percentile_mask(saliency_map, percentile: float) -> np.ndarray:
    """``(H, W)`` bool mask of the pixels at or above the ``percentile`` (0..100) of the map."""
    values = _finite_map(saliency_map)
    if not 0.0 <= float(percentile) <= 100.0:
        raise ValueError(f"percentile must be in 0..100, got {percentile}")
    return values >= np.percentile(values, percentile)


def normalize_map(saliency_map, percentile: float = 99.0) -> np.ndarray:
    """The map's magnitude as float32 in 0..1, same shape: ``|map|`` / its ``percentile``, clipped.

    Robust to outliers (the top 1 % saturate at 1) and to constant maps (a constant non-zero
    map becomes all ones, an all-zero map all zeros). Signed maps are scaled by magnitude.
    """
    values = np.abs(_finite_map(saliency_map, two_d=False))
    if not 0.0 < float(percentile) <= 100.0:
        raise ValueError(f"percentile must be in (0, 100], got {percentile}")
    scale = np.percentile(values, percentile)
    if scale <= 0.0:
        scale = values.max()
    if scale <= 0.0:
        return np.zeros(values.shape, np.float32)
    return np.clip(values / scale, 0.0, 1.0).astype(np.float32)
