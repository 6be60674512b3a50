"""What every measure checks first: an ``(H, W, 3)`` image, a map of its size, a class index,
a positive count; and the shape of a map-making function (:data:`MapFunction`)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from sensitivity.imaging.discovery import as_map

MapFunction = Callable[[object, np.ndarray, np.ndarray], np.ndarray]
"""``(model, images (N, H, W, 3), classes (N,)) -> maps (N, H, W)``."""


def checked_image(image) -> np.ndarray:
    """``image`` as ``(H, W, 3)`` float32 with finite values, else ValueError."""
    array = np.asarray(image, dtype=np.float32)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) image, got shape {np.shape(image)}")
    if not np.isfinite(array).all():
        raise ValueError("the image holds NaN or infinite values")
    return array


def checked_map(image: np.ndarray, saliency_map) -> np.ndarray:
    """``saliency_map`` as an ``(H, W)`` map of ``image``'s size, else ValueError."""
    values = as_map(saliency_map)
    if values.shape != image.shape[:2]:
        raise ValueError(
            f"the map is {values.shape[0]}x{values.shape[1]} but the image is "
            f"{image.shape[0]}x{image.shape[1]}"
        )
    return values


def checked_class(class_index, num_classes: int = 10) -> int:
    """``class_index`` as an int in ``0..num_classes - 1``, else ValueError."""
    if isinstance(class_index, bool) or not isinstance(class_index, (int, np.integer)):
        raise ValueError(f"class_index must be a whole number, got {class_index!r}")
    if not 0 <= class_index < num_classes:
        raise ValueError(f"class_index must be in 0..{num_classes - 1}, got {class_index}")
    return int(class_index)


def checked_count(name: str, value) -> int:
    """``value`` as a positive int (not a bool), else ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive whole number, got {value!r}")
    return int(value)
