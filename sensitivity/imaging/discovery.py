"""Object discovery: boxes around the regions of a saliency map that hold most of its mass.

Boxes are :class:`Box` ``(x0, y0, x1, y1, score)`` in the pixel coordinates of the map:
``x`` counts columns, ``y`` rows, ``(x0, y0)`` is the top-left pixel inside the box and
``x1, y1`` are exclusive, so the box covers ``map[y0:y1, x0:x1]`` and its area is
``(x1 - x0) * (y1 - y0)``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from scipy import ndimage

from sensitivity.imaging.filters import gaussian_smooth

EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)
"""Structuring element of 8-connectivity: diagonal neighbours join a component."""


class Box(NamedTuple):
    """A box ``map[y0:y1, x0:x1]`` (``x1``, ``y1`` exclusive) and its score (0..1)."""

    x0: int
    y0: int
    x1: int
    y1: int
    score: float = 1.0

    @property
    def width(self) -> int:
        """Number of columns."""
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        """Number of rows."""
        return self.y1 - self.y0

    @property
    def area(self) -> int:
        """Number of pixels."""
        return max(0, self.width) * max(0, self.height)


def as_map(saliency_map: np.ndarray) -> np.ndarray:
    """A finite ``(H, W)`` map as float64, or ValueError."""
    values = np.asarray(saliency_map, dtype=np.float64)
    if values.ndim != 2 or values.size == 0:
        raise ValueError(f"expected an (H, W) saliency map, got shape {np.shape(saliency_map)}")
    if not np.isfinite(values).all():
        raise ValueError("the saliency map holds NaN or infinite values")
    return values


def label_components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """8-connected components of an ``(H, W)`` bool mask (:func:`scipy.ndimage.label`).

    Returns ``(labels, count)``: ``labels`` int64 ``(H, W)`` with 0 for background and
    ``1..count`` numbered in raster order of each component's first pixel.
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"expected an (H, W) mask, got shape {mask.shape}")
    labels, count = ndimage.label(mask, structure=EIGHT_CONNECTED)
    return labels.astype(np.int64), int(count)


def component_boxes(labels: np.ndarray, count: int) -> list[Box]:
    """Bounding boxes of the components ``1..count`` of a label array, in label order
    (:func:`scipy.ndimage.find_objects`); score 1.0."""
    return [
        Box(cols.start, rows.start, cols.stop, rows.stop)
        for rows, cols in ndimage.find_objects(labels, max_label=count)
    ]


def discover_objects(
    saliency_map: np.ndarray,
    *,
    smooth_sigma: float = 1.0,
    keep_fraction: float = 0.2,
    max_objects: int = 3,
    min_area: int = 4,
) -> list[Box]:
    """Boxes around the strongest regions of an ``(H, W)`` saliency map, strongest first.

    The rule:

    1. Negative values are set to zero (a signed map counts only its positive evidence).
    2. The map is smoothed by a Gaussian of ``smooth_sigma`` pixels (0: no smoothing).
    3. The top ``keep_fraction`` of pixels of the smoothed map are kept: those at least as
       large as its ``ceil(keep_fraction * H * W)``-th largest value, and above zero.
    4. Kept pixels are grouped into 8-connected components; components of fewer than
       ``min_area`` pixels are dropped.
    5. Each component is scored by the fraction of the map's total (non-negative,
       unsmoothed) mass that lies on its pixels, and gets its bounding box.
    6. The ``max_objects`` highest-scoring boxes are returned, sorted by score, descending
       (ties: the component met first in raster order first).

    An all-zero map gives an empty list.
    """
    values = np.maximum(as_map(saliency_map), 0.0)
    if not 0 < keep_fraction <= 1:
        raise ValueError(f"keep_fraction must be in (0, 1], got {keep_fraction!r}")
    if not (isinstance(smooth_sigma, (int, float, np.number)) and 0 <= smooth_sigma < math.inf):
        raise ValueError(f"smooth_sigma must be a non-negative number, got {smooth_sigma!r}")
    if isinstance(max_objects, bool) or not isinstance(max_objects, (int, np.integer)):
        raise ValueError(f"max_objects must be a whole number, got {max_objects!r}")
    if max_objects < 1:
        raise ValueError(f"max_objects must be at least 1, got {max_objects}")
    if isinstance(min_area, bool) or not isinstance(min_area, (int, np.integer)) or min_area < 1:
        raise ValueError(f"min_area must be a positive whole number, got {min_area!r}")
    total = values.sum()
    if total <= 0:
        return []
    smoothed = gaussian_smooth(values, smooth_sigma)
    keep_count = max(1, math.ceil(keep_fraction * values.size))
    threshold = np.partition(smoothed.ravel(), values.size - keep_count)[values.size - keep_count]
    mask = (smoothed >= threshold) & (smoothed > 0)
    return mass_boxes(values, mask, min_area)[:max_objects]


def mass_boxes(values: np.ndarray, mask: np.ndarray, min_area: int = 1) -> list[Box]:
    """Boxes of the 8-connected components of ``mask`` of at least ``min_area`` pixels, each
    scored by its share of the non-negative ``values``' total, strongest first (ties: the
    component met first in raster order). ``values``, ``mask``: ``(H, W)``; ``[]`` when the
    values sum to zero or nothing is kept."""
    total = values.sum()
    labels, count = label_components(mask)
    if count == 0 or total <= 0:
        return []
    flat = labels.ravel()
    areas = np.bincount(flat, minlength=count + 1)
    masses = np.bincount(flat, weights=values.ravel(), minlength=count + 1)
    boxes = component_boxes(labels, count)
    candidates = [c for c in range(1, count + 1) if areas[c] >= min_area]
    candidates.sort(key=lambda c: -masses[c])  # stable: raster order breaks ties
    return [boxes[c - 1]._replace(score=float(masses[c] / total)) for c in candidates]


def iou(box_a, box_b) -> float:
    """Intersection over union of two boxes ``(x0, y0, x1, y1, ...)`` (exclusive ends), 0..1."""
    ax0, ay0, ax1, ay1 = (float(v) for v in tuple(box_a)[:4])
    bx0, by0, bx1, by1 = (float(v) for v in tuple(box_b)[:4])
    inter = max(0.0, min(ax1, bx1) - max(ax0, bx0)) * max(0.0, min(ay1, by1) - max(ay0, by0))
    union = (
        max(0.0, ax1 - ax0) * max(0.0, ay1 - ay0)
        + max(0.0, bx1 - bx0) * max(0.0, by1 - by0)
        - inter
    )
    return inter / union if union > 0 else 0.0


def boxes_to_image(boxes, map_shape: tuple[int, int], image_shape: tuple[int, ...]) -> list[Box]:
    """Boxes on the network's input (the resized centred square) mapped onto the photo.

    ``map_shape``: ``(h, w)`` of the map / network input; ``image_shape``: ``(H, W[, 3])`` of
    the original photo, whose centred square (:func:`sensitivity.imaging.images.center_square_box`)
    was resized to ``(h, w)``. Edges are scaled and shifted, then rounded outwards (``x0``,
    ``y0`` down, ``x1``, ``y1`` up) so the photo box covers every pixel that contributed;
    scores are kept.
    """
    from sensitivity.imaging.images import center_square_box

    map_h, map_w = (int(v) for v in map_shape[:2])
    height, width = (int(v) for v in image_shape[:2])
    if min(map_h, map_w, height, width) < 1:
        raise ValueError("map and image sizes must be positive")
    sx0, sy0, sx1, sy1 = center_square_box(height, width)
    scale_x = (sx1 - sx0) / map_w
    scale_y = (sy1 - sy0) / map_h
    eps = 1e-9  # keeps exact multiples exact despite rounding in the scale
    out = []
    for box in boxes:
        x0, y0, x1, y1 = (float(v) for v in tuple(box)[:4])
        score = float(tuple(box)[4]) if len(tuple(box)) > 4 else 1.0
        out.append(
            Box(
                max(sx0, math.floor(sx0 + x0 * scale_x + eps)),
                max(sy0, math.floor(sy0 + y0 * scale_y + eps)),
                min(sx1, math.ceil(sx0 + x1 * scale_x - eps)),
                min(sy1, math.ceil(sy0 + y1 * scale_y - eps)),
                score,
            )
        )
    return out


def boxes_to_map(boxes, image_shape: tuple[int, ...], map_shape: tuple[int, int]) -> list[Box]:
    """Boxes on the photo mapped onto the network's input: the inverse of
    :func:`boxes_to_image`.

    ``image_shape``: ``(H, W[, 3])`` of the photo, whose centred square
    (:func:`sensitivity.imaging.images.center_square_box`) was resized to ``map_shape`` ``(h, w)``.
    Each box is clipped to the square, then shifted and scaled, rounded outwards (``x0``,
    ``y0`` down, ``x1``, ``y1`` up) so the map box covers every map pixel the photo box
    touches; a box with no area inside the square is dropped. Scores are kept, order too.
    """
    from sensitivity.imaging.images import center_square_box

    map_h, map_w = (int(v) for v in map_shape[:2])
    height, width = (int(v) for v in image_shape[:2])
    if min(map_h, map_w, height, width) < 1:
        raise ValueError("map and image sizes must be positive")
    sx0, sy0, sx1, sy1 = center_square_box(height, width)
    scale_x = map_w / (sx1 - sx0)
    scale_y = map_h / (sy1 - sy0)
    eps = 1e-9  # keeps exact multiples exact despite rounding in the scale
    out = []
    for box in boxes:
        x0, y0, x1, y1 = (float(v) for v in tuple(box)[:4])
        score = float(tuple(box)[4]) if len(tuple(box)) > 4 else 1.0
        x0, y0, x1, y1 = max(x0, sx0), max(y0, sy0), min(x1, sx1), min(y1, sy1)
        if x1 <= x0 or y1 <= y0:
            continue
        out.append(
            Box(
                max(0, math.floor((x0 - sx0) * scale_x + eps)),
                max(0, math.floor((y0 - sy0) * scale_y + eps)),
                min(map_w, math.ceil((x1 - sx0) * scale_x - eps)),
                min(map_h, math.ceil((y1 - sy0) * scale_y - eps)),
                score,
            )
        )
    return out
