"""Objective measures of saliency maps, and the controls they are compared with.

- Faithfulness: deletion and insertion curves and their areas (Petsiuk et al., "RISE", 2018),
  and the counterfactual top-k check with a random-k control.
- Localisation: the pointing game, CorLoc, the share of a map's mass in a box
  (:func:`mass_in_box`) and MaxBoxAcc (Choe et al., "Evaluating Weakly Supervised Object
  Localization Methods Right", CVPR 2020), against ground-truth boxes (the breakdown by
  object size is :func:`sensitivity.metrics.localisation_benchmark.summarise`'s).
- Class discrimination: in a two-object scene, does the map of one object's class put more
  of its mass in that object's box than in the other's?
- Sanity: the cascading model-randomisation check (Adebayo et al., "Sanity checks for
  saliency maps", 2018) with Spearman rank correlation.
- Controls that ignore the model: :func:`random_map`, :func:`edge_map`, :func:`center_map` and
  :func:`center_box`.

Maps are ``(H, W)`` arrays (larger = more salient) of the same size as the ``(H, W, 3)``
image (pixels 0..255). Probabilities come from :func:`sensitivity.predict` (softmax of the
logits); the data-set path :func:`perturbation_curves` streams through ``tf.data`` and runs
under a ``tf.distribute`` strategy (:mod:`sensitivity.model.distributed`).

Fills (what a removed pixel becomes, and where insertion starts), see :func:`fill_image`:
``"blur"`` the image blurred by a Gaussian of ``blur_sigma`` pixels of a 32x32 image (scaled
with the image's size), ``"mean"`` the image's mean colour, ``"black"`` zeros, and ``"road"``
(:func:`road_impute`): removed pixels interpolated from the kept ones, plus a little noise
(Rong et al., "A Consistent and Efficient Evaluation Strategy for Attribution Methods",
ICML 2022), so the fill does not reveal the shape of the removed set.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.sparse.linalg import splu

from sensitivity.engine.choices import NATIVE_SIZE
from sensitivity.imaging.discovery import Box, as_map, component_boxes, iou, label_components
from sensitivity.imaging.filters import gaussian_smooth, grey, sobel_magnitude

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

MapFunction = Callable[[object, np.ndarray, np.ndarray], np.ndarray]
"""``(model, images (N, H, W, 3), classes (N,)) -> maps (N, H, W)``."""


# --------------------------------------------------------------------------------------------
# Inputs and fills.


def _image(image) -> np.ndarray:
    array = np.asarray(image, dtype=np.float32)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) image, got shape {np.shape(image)}")
    if not np.isfinite(array).all():
        raise ValueError("the image holds NaN or infinite values")
    return array


def _map_for(image: np.ndarray, saliency_map) -> np.ndarray:
    values = as_map(saliency_map)
    if values.shape != image.shape[:2]:
        raise ValueError(
            f"the map is {values.shape[0]}x{values.shape[1]} but the image is "
            f"{image.shape[0]}x{image.shape[1]}"
        )
    return values


def _class(class_index, num_classes: int = 10) -> int:
    if isinstance(class_index, bool) or not isinstance(class_index, (int, np.integer)):
        raise ValueError(f"class_index must be a whole number, got {class_index!r}")
    if not 0 <= class_index < num_classes:
        raise ValueError(f"class_index must be in 0..{num_classes - 1}, got {class_index}")
    return int(class_index)


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive whole number, got {value!r}")
    return int(value)


def fill_image(image, fill: str = "blur", blur_sigma: float = BLUR_SIGMA) -> np.ndarray:
    """The ``(H, W, 3)`` float32 values that replace removed pixels of ``image``.

    ``"blur"``: Gaussian blur of ``blur_sigma * min(H, W) / 32`` pixels; ``"mean"``: every
    pixel the image's mean colour; ``"black"``: zeros. ``"road"`` depends on which pixels
    are removed and has no single fill image: see :func:`road_impute`.
    """
    image = _image(image)
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
    image = _image(image)
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


def _replaced(
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


def saliency_order(saliency_map) -> np.ndarray:
    """Flat pixel indices ``(H * W,)`` by decreasing saliency; ties in raster order."""
    values = as_map(saliency_map).ravel()
    return np.argsort(-values, kind="stable")


def step_counts(num_pixels: int, steps: int) -> np.ndarray:
    """``(steps + 1,)`` pixels changed after each step: ``round(i * num_pixels / steps)``."""
    steps = _positive_int("steps", steps)
    return np.rint(np.arange(steps + 1) * num_pixels / steps).astype(np.int64)


# --------------------------------------------------------------------------------------------
# Deletion and insertion.


@dataclass(frozen=True)
class Curve:
    """A deletion or insertion curve: ``fractions`` ``(S + 1,)`` of pixels changed (0..1),
    ``probabilities`` ``(S + 1,)`` of the class after each step, and the trapezoid ``auc``."""

    kind: str
    class_index: int
    fractions: np.ndarray
    probabilities: np.ndarray
    auc: float


def area_under_curve(fractions, values) -> float:
    """Trapezoid-rule area under ``values`` over ``fractions`` (both ``(S + 1,)``, 0..1)."""
    x = np.asarray(fractions, dtype=np.float64)
    y = np.asarray(values, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1 or len(x) < 2:
        raise ValueError("need two 1-D arrays of the same length, at least 2")
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2.0))


def perturbed_images(
    image,
    saliency_map,
    kind: str = "deletion",
    *,
    steps: int = 32,
    fill: str = "blur",
    blur_sigma: float = BLUR_SIGMA,
    road_noise: float = ROAD_NOISE_STD,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """``(fractions (S + 1,), images (S + 1, H, W, 3) float32)`` of a deletion or insertion.

    Deletion: after step ``i`` the ``round(i * H * W / S)`` most salient pixels (all three
    channels) hold the fill. Insertion: the same pixels hold the image, all others the fill.
    With ``fill="road"`` the filled pixels are imputed (:func:`road_impute`, noise
    ``road_noise``, ``seed``) from the others at every step: for deletion from the pixels
    still kept, for insertion from the pixels inserted so far (none: the mean colour).
    """
    image = _image(image)
    values = _map_for(image, saliency_map)
    if kind not in ("deletion", "insertion"):
        raise ValueError(f"kind must be 'deletion' or 'insertion', got {kind!r}")
    counts = step_counts(values.size, steps)
    rank = np.empty(values.size, np.int64)
    rank[saliency_order(values)] = np.arange(values.size)
    changed = rank.reshape(values.shape)[None] < counts[:, None, None]  # (S + 1, H, W)
    replace = changed if kind == "deletion" else ~changed
    images = _replaced(image, replace, fill, blur_sigma, road_noise, seed)
    return counts / values.size, images


def _curve(model, image, saliency_map, class_index, kind, batch_size, **options):
    from sensitivity.engine.inference import predict

    class_index = _class(class_index)
    fractions, images = perturbed_images(image, saliency_map, kind, **options)
    probabilities = predict(model, images, batch_size=batch_size)[:, class_index]
    probabilities = probabilities.astype(np.float64)
    return Curve(
        kind, class_index, fractions, probabilities, area_under_curve(fractions, probabilities)
    )


def deletion_curve(
    model,
    image,
    saliency_map,
    class_index: int,
    *,
    steps: int = 32,
    fill: str = "blur",
    blur_sigma: float = BLUR_SIGMA,
    road_noise: float = ROAD_NOISE_STD,
    seed: int = 0,
    batch_size: int = 64,
) -> Curve:
    """Class probability as the most salient pixels are removed (filled), in ``steps`` steps.

    A faithful map makes the probability fall fast: a low area is good. The images are
    those of :func:`perturbed_images` (``road_noise``, ``seed``: the ``"road"`` fill).
    """
    return _curve(
        model, image, saliency_map, class_index, "deletion", batch_size, steps=steps, fill=fill,
        blur_sigma=blur_sigma, road_noise=road_noise, seed=seed,
    )  # fmt: skip


def insertion_curve(
    model,
    image,
    saliency_map,
    class_index: int,
    *,
    steps: int = 32,
    fill: str = "blur",
    blur_sigma: float = BLUR_SIGMA,
    road_noise: float = ROAD_NOISE_STD,
    seed: int = 0,
    batch_size: int = 64,
) -> Curve:
    """Class probability as the most salient pixels are put back into the fill.

    A faithful map makes the probability rise fast: a high area is good. The images are
    those of :func:`perturbed_images` (``road_noise``, ``seed``: the ``"road"`` fill).
    """
    return _curve(
        model, image, saliency_map, class_index, "insertion", batch_size, steps=steps, fill=fill,
        blur_sigma=blur_sigma, road_noise=road_noise, seed=seed,
    )  # fmt: skip


def perturbation_curves(
    model,
    images,
    maps,
    class_indices,
    *,
    kind: str = "deletion",
    steps: int = 32,
    fill: str = "blur",
    blur_sigma: float = BLUR_SIGMA,
    road_noise: float = ROAD_NOISE_STD,
    seed: int = 0,
    batch_size: int = 64,
    strategy=None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Deletion or insertion curves of a data set: ``(fractions (S + 1,), probabilities
    (N, S + 1), aucs (N,))``.

    ``images`` ``(N, H, W, 3)``, ``maps`` ``(N, H, W)``, ``class_indices`` ``(N,)``. The
    perturbed images are made lazily in a ``tf.data`` pipeline (from the arrays) and run
    under ``strategy`` (default :func:`sensitivity.model.distributed.default_strategy`: mirrored
    over several GPUs or logical devices). Same numbers as :func:`deletion_curve` /
    :func:`insertion_curve` image by image, up to float rounding; with ``fill="road"`` image
    ``i`` uses the noise seed ``seed + i`` and its images are made in a Python generator.
    """
    import tensorflow as tf

    from sensitivity.model.distributed import predict_dataset

    images = np.asarray(images, dtype=np.float32)
    maps = np.asarray(maps, dtype=np.float64)
    classes = np.asarray(class_indices).reshape(-1)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"expected images of shape (N, H, W, 3), got {images.shape}")
    if maps.shape != images.shape[:3]:
        raise ValueError(f"maps must have shape {images.shape[:3]}, got {maps.shape}")
    if len(classes) != len(images):
        raise ValueError("give one class index per image")
    if kind not in ("deletion", "insertion"):
        raise ValueError(f"kind must be 'deletion' or 'insertion', got {kind!r}")
    classes = np.array([_class(c) for c in classes], dtype=np.int64)
    n, height, width = maps.shape
    counts = step_counts(height * width, steps)
    fractions = counts / (height * width)
    if n == 0:
        return fractions, np.zeros((0, len(counts))), np.zeros(0)
    if fill == "road":

        def generate():
            for i in range(n):
                yield from perturbed_images(
                    images[i], maps[i], kind, steps=steps, fill=fill, road_noise=road_noise,
                    seed=seed + i,
                )[1]  # fmt: skip

        dataset = tf.data.Dataset.from_generator(
            generate, output_signature=tf.TensorSpec((height, width, 3), tf.float32)
        )
    else:
        dataset = _static_fill_dataset(images, maps, counts, kind, fill, blur_sigma)
    probabilities = predict_dataset(
        model, dataset, n * len(counts), batch_size=batch_size, strategy=strategy
    ).reshape(n, len(counts), -1)
    chosen = probabilities[np.arange(n), :, classes].astype(np.float64)
    aucs = np.array([area_under_curve(fractions, row) for row in chosen])
    return fractions, chosen, aucs


def _static_fill_dataset(images, maps, counts, kind, fill, blur_sigma):
    """The perturbed images of :func:`perturbation_curves` for a fill that does not depend
    on the removed set, made lazily in ``tf.data`` from the images and fills."""
    import tensorflow as tf

    n, height, width = maps.shape
    ranks = np.empty((n, height * width), np.int64)
    for i in range(n):
        ranks[i, saliency_order(maps[i])] = np.arange(height * width)
    fills = np.stack([fill_image(im, fill, blur_sigma) for im in images])
    deletion = kind == "deletion"
    counts_t = tf.constant(counts)

    def expand(image, filled, rank):
        changed = rank[None] < counts_t[:, None, None]
        first, second = (filled, image) if deletion else (image, filled)
        return tf.data.Dataset.from_tensor_slices(
            tf.where(changed[..., None], first[None], second[None])
        )

    return tf.data.Dataset.from_tensor_slices(
        (images, fills, ranks.reshape(n, height, width))
    ).flat_map(expand)


# --------------------------------------------------------------------------------------------
# Controls that ignore the model.


def random_map(shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    """``(H, W)`` float32 uniform noise in [0, 1): a map with no information."""
    height, width = (int(v) for v in tuple(shape)[:2])
    return np.random.default_rng(seed).random((height, width)).astype(np.float32)


def edge_map(image) -> np.ndarray:
    """``(H, W)`` float32 Sobel gradient magnitude of the image's grey level (0..255 scale)."""
    return sobel_magnitude(grey(_image(image))).astype(np.float32)


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


# --------------------------------------------------------------------------------------------
# Localisation and class discrimination.


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
    candidates = list(boxes) if top is None else list(boxes)[: _positive_int("top", top)]
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


# --------------------------------------------------------------------------------------------
# Counterfactual top-k check.


@dataclass(frozen=True)
class Counterfactual:
    """Class probability ``before`` and ``after`` changing the top-k pixels, and the mean
    (``random_after``) and each (``random_trials``) of the same change on k random pixels."""

    class_index: int
    k: int
    mode: str
    before: float
    after: float
    random_after: float
    random_trials: np.ndarray


def counterfactual(
    model,
    image,
    saliency_map,
    class_index: int,
    k: int,
    *,
    mode: str = "remove",
    fill: str = "blur",
    blur_sigma: float = BLUR_SIGMA,
    road_noise: float = ROAD_NOISE_STD,
    trials: int = 8,
    seed: int = 0,
) -> Counterfactual:
    """Remove the ``k`` most salient pixels (``mode="remove"``: they take the fill) or keep
    only them (``mode="keep"``: all others take the fill), and predict again.

    The top-k pixels come from :func:`sensitivity.imaging.postprocess.top_k_mask`; the control does
    the same to ``trials`` random sets of ``k`` pixels (``numpy`` generator of ``seed``;
    ``seed`` and ``road_noise`` also set the noise of the ``"road"`` fill).
    """
    from sensitivity.engine.inference import predict
    from sensitivity.imaging.postprocess import top_k_mask

    image = _image(image)
    values = _map_for(image, saliency_map)
    class_index = _class(class_index)
    k = _positive_int("k", k)
    trials = _positive_int("trials", trials)
    if k > values.size:
        raise ValueError(f"k must be at most the number of pixels ({values.size}), got {k}")
    if mode not in ("remove", "keep"):
        raise ValueError(f"mode must be 'remove' or 'keep', got {mode!r}")
    rng = np.random.default_rng(seed)
    masks = [np.asarray(top_k_mask(values, k), dtype=bool)]
    for _ in range(trials):
        mask = np.zeros(values.size, dtype=bool)
        mask[rng.choice(values.size, size=k, replace=False)] = True
        masks.append(mask.reshape(values.shape))
    stack = np.stack(masks)  # (1 + trials, H, W): True = the chosen pixels
    replace = stack if mode == "remove" else ~stack
    changed = _replaced(image, replace, fill, blur_sigma, road_noise, seed)
    probabilities = predict(model, np.concatenate([image[None], changed]))[:, class_index]
    probabilities = probabilities.astype(np.float64)
    return Counterfactual(
        class_index,
        k,
        mode,
        float(probabilities[0]),
        float(probabilities[1]),
        float(probabilities[2:].mean()),
        probabilities[2:],
    )


# --------------------------------------------------------------------------------------------
# Model-randomisation sanity check.


RANDOMIZATION_THRESHOLD = 0.5
"""Default flagging threshold of :func:`randomization_check`. On the WRN-16-2 training
checkpoint (4 test images) the correlations with the top half of the layers random were:
gradient 0.27, gradient x input 0.37, Grad-CAM -0.02, guided backprop 0.80 (known to fail
the check), an edge map 1.0; a threshold of 0.9 would have let guided backprop pass."""


def rank_values(values) -> np.ndarray:
    """Ranks 1..n of a 1-D array (float64), tied values sharing their average rank."""
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    order = np.argsort(x, kind="stable")
    sorted_x = x[order]
    starts = np.concatenate([[True], sorted_x[1:] != sorted_x[:-1]])
    group = np.cumsum(starts) - 1
    first = np.flatnonzero(starts)
    last = np.concatenate([first[1:], [len(x)]]) - 1
    average = (first + last) / 2.0 + 1.0
    ranks = np.empty(len(x))
    ranks[order] = average[group]
    return ranks


def spearman(a, b) -> float:
    """Spearman rank correlation of two equally sized arrays (Pearson correlation of their
    average ranks), -1..1; 0 when either is constant."""
    ra, rb = rank_values(a), rank_values(b)
    if ra.shape != rb.shape:
        raise ValueError("the two arrays must have the same number of values")
    ra -= ra.mean()
    rb -= rb.mean()
    denominator = math.sqrt(float(ra @ ra) * float(rb @ rb))
    return float(ra @ rb / denominator) if denominator > 0 else 0.0


@dataclass(frozen=True)
class RandomizationCheck:
    """Result of :func:`randomization_check`.

    ``layers[i]``: the layer randomised at cascade step ``i + 1`` (top first).
    ``correlations`` ``(L + 1,)``: mean Spearman correlation over the images between the map
    of the trained model and of the model after step ``i`` (step 0: nothing randomised, 1).
    ``per_image`` ``(L + 1, N)``. ``middle_step``: the step at which the top half of the
    layers is randomised. ``flagged``: the correlation there is still above ``threshold``.
    """

    layers: tuple[str, ...]
    correlations: np.ndarray
    per_image: np.ndarray
    middle_step: int
    threshold: float

    @property
    def flagged(self) -> bool:
        """True when the maps barely depend on the weights (the method fails the check)."""
        return bool(self.correlations[self.middle_step] > self.threshold)


def saliency_function(method: str, **options) -> MapFunction:
    """A :data:`MapFunction` running :func:`sensitivity.engine.saliency.saliency` with ``method``
    for the given classes (one call per distinct class)."""
    from sensitivity.engine.saliency import saliency

    def run(model, images: np.ndarray, classes: np.ndarray) -> np.ndarray:
        maps = None
        for c in np.unique(classes):
            rows = np.flatnonzero(classes == c)
            part = np.asarray(
                saliency(model, images[rows], method=method, class_mask=int(c), **options)
            )
            if maps is None:
                maps = np.zeros((len(images),) + part.shape[1:], np.float32)
            maps[rows] = part
        return maps

    return run


def _weighted_layers(model) -> list:
    return [layer for layer in model.layers if layer.trainable_weights]


def cascade_layers(model, layers: Sequence[str] | None = None) -> list[str]:
    """The layers a randomisation cascade re-initialises, in order: ``layers`` (each must have
    weights) or, by default, every layer with trainable weights from the output down."""
    if layers is None:
        return [layer.name for layer in reversed(_weighted_layers(model))]
    cascade = list(layers)
    names = {layer.name for layer in _weighted_layers(model)}
    unknown = [name for name in cascade if name not in names]
    if unknown or not cascade:
        raise ValueError(
            f"layers to randomise must be layers with weights; unknown: {unknown}"
            if unknown
            else "give at least one layer to randomise"
        )
    return cascade


def reinitialise_layer(model, fresh, name: str, rng: np.random.Generator) -> None:
    """Re-initialise the layer ``name`` of ``model`` in place: arrays of two or more dimensions
    drawn He-normal (standard deviation ``sqrt(2 / fan_in)``) from ``rng``, vectors (biases,
    batch-norm scales, offsets and statistics) set to those of the same layer of ``fresh``, an
    untrained clone."""
    new_weights = []
    for value, initial in zip(
        model.get_layer(name).get_weights(), fresh.get_layer(name).get_weights(), strict=True
    ):
        if value.ndim >= 2:
            fan_in = int(np.prod(value.shape[:-1]))
            new_weights.append(rng.normal(0.0, math.sqrt(2.0 / fan_in), value.shape)
                               .astype(value.dtype))
        else:
            new_weights.append(initial)
    model.get_layer(name).set_weights(new_weights)


def randomised_copy(model, count: int | None = None, seed: int = 0):
    """A clone of ``model`` (which is not changed) with its top ``count`` layers that have
    weights re-initialised in cascade (:func:`cascade_layers`, :func:`reinitialise_layer`);
    default: the top half, the depth at which :func:`randomization_check` judges a method."""
    import keras

    work = keras.models.clone_model(model)
    work.set_weights(model.get_weights())
    fresh = keras.models.clone_model(model)  # only for the layers' initial vectors
    cascade = cascade_layers(work)
    count = math.ceil(len(cascade) / 2) if count is None else count
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= len(cascade):
        raise ValueError(f"count must be 1..{len(cascade)} layers, got {count!r}")
    rng = np.random.default_rng(seed)
    for name in cascade[:count]:
        reinitialise_layer(work, fresh, name, rng)
    return work


def randomization_check(
    model,
    images,
    method: str | MapFunction = "gradient",
    *,
    layers: Sequence[str] | None = None,
    classes=None,
    threshold: float = RANDOMIZATION_THRESHOLD,
    seed: int = 0,
    **options,
) -> RandomizationCheck:
    """Cascading model-randomisation check (Adebayo et al., 2018) of a saliency method.

    ``method``: a name for :func:`sensitivity.engine.saliency.saliency` (``options`` go to it) or a
    :data:`MapFunction`. ``images``: ``(N, H, W, 3)`` pixels 0..255. ``classes``: ``(N,)``
    classes the maps explain (default: the trained model's predictions), kept fixed along
    the cascade. ``layers``: the layers to randomise in order (default: every layer with
    trainable weights, from the output down).

    The work happens on a clone of the model (``keras.models.clone_model`` with the trained
    weights); the caller's model is never changed. At each step one more layer is
    re-initialised: its arrays of two or more dimensions are drawn from a He-normal
    distribution (standard deviation ``sqrt(2 / fan_in)``, NumPy generator of ``seed``), its
    vectors (biases, batch-norm scales, offsets and statistics) reset to the layer's initial
    values. The map is recomputed and compared with the trained model's map by Spearman rank
    correlation, per image; a method whose mean correlation is still above ``threshold``
    once the top half of the layers is random is flagged (see
    :data:`RANDOMIZATION_THRESHOLD`).
    """
    import keras

    from sensitivity.engine.inference import as_batch, predict

    batch = as_batch(images)
    if len(batch) == 0:
        raise ValueError("the randomisation check needs at least one image")
    map_fn = saliency_function(method, **options) if isinstance(method, str) else method
    if classes is None:
        classes = predict(model, batch).argmax(axis=1)
    classes = np.asarray(classes, dtype=np.int64).reshape(-1)
    if len(classes) != len(batch):
        raise ValueError("give one class per image")
    work = keras.models.clone_model(model)
    work.set_weights(model.get_weights())
    fresh = keras.models.clone_model(model)  # only for the layers' initial vectors
    cascade = cascade_layers(work, layers)
    rng = np.random.default_rng(seed)
    reference = np.asarray(map_fn(work, batch, classes), dtype=np.float64)
    per_image = [np.ones(len(batch))]
    for name in cascade:
        reinitialise_layer(work, fresh, name, rng)
        maps = np.asarray(map_fn(work, batch, classes), dtype=np.float64)
        per_image.append(np.array([spearman(r, m) for r, m in zip(reference, maps, strict=True)]))
    per_image_array = np.stack(per_image)
    return RandomizationCheck(
        tuple(cascade),
        per_image_array.mean(axis=1),
        per_image_array,
        math.ceil(len(cascade) / 2),
        float(threshold),
    )
