"""Localisation: the pointing game, CorLoc, the share of a map's mass in a box
(:func:`mass_in_box`) and MaxBoxAcc (Choe et al., "Evaluating Weakly Supervised Object
Localization Methods Right", CVPR 2020), against ground-truth boxes (the breakdown by object
size is :func:`sensitivity.metrics.localisation_benchmark.summarise`'s); and class
discrimination: in a two-object scene, does the map of one object's class put more of its
mass in that object's box than in the other's?

Maps are ``(H, W)`` arrays (larger = more salient).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sensitivity.imaging.discovery import Box, as_map, component_boxes, iou, label_components
from sensitivity.metrics.inputs import checked_count


def pointing_game(saliency_map, box, tolerance: int = 0) -> bool:
    """Whether the map's maximum lies in ``box`` ``(x0, y0, x1, y1)`` grown by ``tolerance``
    pixels on each side. Ties: the first maximum in raster order counts."""
    values = as_map(saliency_map)
    y, x = np.unravel_index(int(np.argmax(values)), values.shape)
    x0, y0, x1, y1 = tuple(box)[:4]
    return bool(x0 - tolerance <= x < x1 + tolerance and y0 - tolerance <= y < y1 + tolerance)


def corloc(boxes: Sequence, truth, *, threshold: float = 0.5, top: int | None = 1) -> bool:
    """Correct localisation: one of the ``top`` strongest ``boxes`` (all when None) has
    IoU >= ``threshold`` with the ground-truth box. No boxes: False."""
    candidates = list(boxes) if top is None else list(boxes)[: checked_count("top", top)]
    return any(iou(b, truth) >= threshold for b in candidates)


def mass_in_box(saliency_map, box) -> float:
    """Share (0..1) of the map's non-negative mass inside ``box``: negative values count as
    0; 0 for a map with no positive value."""
    values = np.maximum(as_map(saliency_map), 0.0)
    total = values.sum()
    x0, y0, x1, y1 = (max(0, int(v)) for v in tuple(box)[:4])
    return float(values[y0:y1, x0:x1].sum() / total) if total > 0 else 0.0


def discriminates(saliency_map, target_box, other_box) -> bool:
    """Whether the map (computed for the target object's class) puts more of its mass in
    ``target_box`` than in ``other_box``."""
    return mass_in_box(saliency_map, target_box) > mass_in_box(saliency_map, other_box)


# --------------------------------------------------------------------------------------------
# MaxBoxAcc (Choe et al., CVPR 2020).


BOX_FRACTIONS = tuple(i / 100 for i in range(100))
"""Thresholds of the normalised map tried by MaxBoxAcc: 0, 0.01, ..., 0.99 (as in the paper)."""

IOU_THRESHOLDS = (0.3, 0.5, 0.7)
"""IoU levels of MaxBoxAccV2; its score is the mean over them."""


def threshold_box(saliency_map, fraction: float) -> Box | None:
    """Box around the largest 8-connected region of the map at or above ``fraction`` (0..1)
    of its range, or None when no pixel is kept.

    The ``(H, W)`` map is min-max normalised to 0..1 (a constant map to all zeros); pixels
    ``>= fraction`` are kept; of their components the one with most pixels (ties: the first
    in raster order) gives the box (score 1.0).
    """
    values = as_map(saliency_map)
    if not (isinstance(fraction, (int, float, np.number)) and 0 <= fraction <= 1):
        raise ValueError(f"fraction must be a number in 0..1, got {fraction!r}")
    low, high = values.min(), values.max()
    normalised = (values - low) / (high - low) if high > low else np.zeros_like(values)
    labels, count = label_components(normalised >= fraction)
    if count == 0:
        return None
    areas = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    return component_boxes(labels, count)[int(np.argmax(areas))]


def threshold_ious(maps, truth_boxes: Sequence, fractions=BOX_FRACTIONS) -> np.ndarray:
    """``(N, T)`` float64 IoU of each map's :func:`threshold_box` at each of the ``T``
    ``fractions`` with its ground-truth box (0 where there is no box).

    ``maps``: ``N`` ``(H, W)`` maps (an ``(N, H, W)`` array or a list of maps of any sizes);
    ``truth_boxes``: one box ``(x0, y0, x1, y1, ...)`` per map.
    """
    fractions = np.asarray(fractions, dtype=np.float64).reshape(-1)
    if len(maps) != len(truth_boxes):
        raise ValueError(f"give one truth box per map: {len(maps)} maps, {len(truth_boxes)} boxes")
    out = np.zeros((len(maps), len(fractions)))
    for i, (saliency_map, truth) in enumerate(zip(maps, truth_boxes, strict=True)):
        for t, fraction in enumerate(fractions):
            box = threshold_box(saliency_map, float(fraction))
            out[i, t] = 0.0 if box is None else iou(box, truth)
    return out


def box_accuracy(
    maps, truth_boxes: Sequence, fractions=BOX_FRACTIONS, iou_threshold: float = 0.5
) -> np.ndarray:
    """``(T,)`` float64 BoxAcc: per fraction, the share of maps whose :func:`threshold_box`
    has IoU >= ``iou_threshold`` with its truth box."""
    if len(maps) == 0:
        raise ValueError("box accuracy needs at least one map")
    return (threshold_ious(maps, truth_boxes, fractions) >= iou_threshold).mean(axis=0)


@dataclass(frozen=True)
class BoxAccuracy:
    """Box accuracy at each IoU level with one threshold fraction per level.

    ``iou_thresholds``, ``fractions`` (the chosen threshold per level), ``accuracies`` and
    ``standard_errors`` (binomial, ``sqrt(p (1 - p) / n)``) are ``(L,)`` arrays; ``mean`` is
    MaxBoxAccV2 (mean over the levels) and ``mean_standard_error`` the standard error of the
    mean over the ``count`` images of each image's share of levels hit (the levels are
    scored on the same images, so their errors are not independent).
    """

    iou_thresholds: np.ndarray
    fractions: np.ndarray
    accuracies: np.ndarray
    standard_errors: np.ndarray
    mean: float
    mean_standard_error: float
    count: int


def _box_accuracy_at(ious: np.ndarray, levels: np.ndarray, fractions, chosen) -> BoxAccuracy:
    hits = np.stack([ious[:, t] >= level for level, t in zip(levels, chosen, strict=True)], 1)
    count = len(ious)
    accuracies = hits.mean(axis=0)
    per_image = hits.mean(axis=1)
    return BoxAccuracy(
        levels,
        np.asarray(fractions, dtype=np.float64)[np.asarray(chosen, dtype=np.int64)],
        accuracies,
        np.sqrt(accuracies * (1 - accuracies) / count),
        float(per_image.mean()),
        float(per_image.std() / math.sqrt(count)),
        count,
    )


def _levels(iou_thresholds) -> np.ndarray:
    levels = np.asarray(iou_thresholds, dtype=np.float64).reshape(-1)
    if levels.size == 0 or not ((levels > 0) & (levels <= 1)).all():
        raise ValueError(f"IoU thresholds must be in (0, 1], got {iou_thresholds!r}")
    return levels


def max_box_accuracy(
    validation_maps,
    validation_boxes: Sequence,
    test_maps,
    test_boxes: Sequence,
    *,
    fractions=BOX_FRACTIONS,
    iou_thresholds=IOU_THRESHOLDS,
) -> BoxAccuracy:
    """MaxBoxAcc with the threshold chosen on held-out data: for each IoU level the fraction
    with the best :func:`box_accuracy` on the validation maps (ties: the smallest fraction),
    scored on the test maps. Maps and boxes as in :func:`threshold_ious`."""
    if len(validation_maps) == 0 or len(test_maps) == 0:
        raise ValueError("need at least one validation map and one test map")
    return box_accuracy_from_ious(
        threshold_ious(validation_maps, validation_boxes, fractions),
        threshold_ious(test_maps, test_boxes, fractions),
        fractions=fractions,
        iou_thresholds=iou_thresholds,
    )


def box_accuracy_from_ious(
    validation_ious: np.ndarray,
    test_ious: np.ndarray,
    *,
    fractions=BOX_FRACTIONS,
    iou_thresholds=IOU_THRESHOLDS,
) -> BoxAccuracy:
    """As :func:`max_box_accuracy` from IoUs already measured: ``(N, T)`` arrays of each box's
    IoU at each of the ``T`` ``fractions`` (validation and test; the same array for the
    same-set version), from any box rule."""
    levels = _levels(iou_thresholds)
    validation = np.asarray(validation_ious, np.float64)
    chosen = [int(np.argmax((validation >= level).mean(axis=0))) for level in levels]
    return _box_accuracy_at(np.asarray(test_ious, np.float64), levels, fractions, chosen)


def max_box_accuracy_same_set(
    maps, truth_boxes: Sequence, *, fractions=BOX_FRACTIONS, iou_thresholds=IOU_THRESHOLDS
) -> BoxAccuracy:
    """The paper's MaxBoxAcc(V2): for each IoU level the best :func:`box_accuracy` over the
    fractions on these same maps (ties: the smallest fraction). Optimistic, as the threshold
    is tuned on the images it scores; the standard errors ignore that choice."""
    if len(maps) == 0:
        raise ValueError("box accuracy needs at least one map")
    ious = threshold_ious(maps, truth_boxes, fractions)
    return box_accuracy_from_ious(ious, ious, fractions=fractions, iou_thresholds=iou_thresholds)
