"""Faithfulness: deletion and insertion curves and their areas (Petsiuk et al., "RISE", 2018),
and the counterfactual top-k check with a random-k control.

Maps are ``(H, W)`` arrays (larger = more salient) of the same size as the ``(H, W, 3)``
image (pixels 0..255). Probabilities come from :func:`sensitivity.predict` (softmax of the
logits); the data-set path :func:`perturbation_curves` streams through ``tf.data`` and runs
under a ``tf.distribute`` strategy (:mod:`sensitivity.model.distributed`). What a removed
pixel becomes is a fill (:mod:`sensitivity.metrics.fills`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sensitivity.imaging.discovery import as_map
from sensitivity.metrics.fills import (
    BLUR_SIGMA,
    ROAD_NOISE_STD,
    fill_image,
    replaced_pixels,
)
from sensitivity.metrics.inputs import checked_class, checked_count, checked_image, checked_map


def saliency_order(saliency_map) -> np.ndarray:
    """Flat pixel indices ``(H * W,)`` by decreasing saliency; ties in raster order."""
    values = as_map(saliency_map).ravel()
    return np.argsort(-values, kind="stable")


def step_counts(num_pixels: int, steps: int) -> np.ndarray:
    """``(steps + 1,)`` pixels changed after each step: ``round(i * num_pixels / steps)``."""
    steps = checked_count("steps", steps)
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
    image = checked_image(image)
    values = checked_map(image, saliency_map)
    if kind not in ("deletion", "insertion"):
        raise ValueError(f"kind must be 'deletion' or 'insertion', got {kind!r}")
    counts = step_counts(values.size, steps)
    rank = np.empty(values.size, np.int64)
    rank[saliency_order(values)] = np.arange(values.size)
    changed = rank.reshape(values.shape)[None] < counts[:, None, None]  # (S + 1, H, W)
    replace = changed if kind == "deletion" else ~changed
    images = replaced_pixels(image, replace, fill, blur_sigma, road_noise, seed)
    return counts / values.size, images


def _curve(model, image, saliency_map, class_index, kind, batch_size, **options):
    from sensitivity.engine.inference import predict

    class_index = checked_class(class_index)
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
    from sensitivity.model.distributed import predict_dataset

    images, maps, classes = _checked_curves_input(images, maps, class_indices, kind)
    n, height, width = maps.shape
    counts = step_counts(height * width, steps)
    fractions = counts / (height * width)
    if n == 0:
        return fractions, np.zeros((0, len(counts))), np.zeros(0)
    if fill == "road":
        dataset = _road_dataset(images, maps, kind, steps, road_noise, seed)
    else:
        dataset = _static_fill_dataset(images, maps, counts, kind, fill, blur_sigma)
    probabilities = predict_dataset(
        model, dataset, n * len(counts), batch_size=batch_size, strategy=strategy
    ).reshape(n, len(counts), -1)
    chosen = probabilities[np.arange(n), :, classes].astype(np.float64)
    aucs = np.array([area_under_curve(fractions, row) for row in chosen])
    return fractions, chosen, aucs


def _checked_curves_input(images, maps, class_indices, kind: str) -> tuple:
    """``(images (N, H, W, 3) float32, maps (N, H, W) float64, classes (N,) int64)``;
    ValueError naming what does not fit."""
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
    return images, maps, np.array([checked_class(c) for c in classes], dtype=np.int64)


def _road_dataset(images, maps, kind: str, steps: int, road_noise: float, seed: int):
    """A ``tf.data`` dataset of the ROAD-filled images of each image in turn (image ``i`` with
    the noise seed ``seed + i``), made in a Python generator."""
    import tensorflow as tf

    def generate():
        for i in range(len(images)):
            yield from perturbed_images(
                images[i], maps[i], kind, steps=steps, fill="road", road_noise=road_noise,
                seed=seed + i,
            )[1]  # fmt: skip

    return tf.data.Dataset.from_generator(
        generate, output_signature=tf.TensorSpec(images.shape[1:], tf.float32)
    )


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

    image = checked_image(image)
    values = checked_map(image, saliency_map)
    class_index = checked_class(class_index)
    k = checked_count("k", k)
    trials = checked_count("trials", trials)
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
    changed = replaced_pixels(image, replace, fill, blur_sigma, road_noise, seed)
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
