"""Attribution methods: how much each input pixel contributes to a target score.

:func:`attribute` runs one method and returns an :class:`Attribution` holding the signed,
per-channel attribution ``(N, H, W, 3)`` (or ``(N, H, W)`` for the channel-free methods: Grad-CAM,
occlusion, CAM, LayerCAM, Score-CAM and RISE) with the scores it explains;
:mod:`sensitivity.saliency` turns it into a map. :data:`METHODS` lists the methods and their
options with one-line descriptions; option ``scales`` fuses maps made at several image scales.

All gradients and forward passes come from the compiled engine in :mod:`sensitivity.gradients`;
SmoothGrad, Integrated Gradients, occlusion, Score-CAM and RISE push their samples through it
in batches of at most ``max_batch`` images (fewer for large images, see
:func:`sensitivity.gradients.batch_size`), never one image at a time.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from sensitivity import gradients as engine
from sensitivity.choices import (
    ADAPTIVE_ROUNDS,
    BASELINES,
    COMMON_OPTIONS,
    FILL_BLUR_SIGMA,
    METHODS,
    NATIVE_SIZE,
    OUTPUT_TARGETS,
    PATH_SAMPLINGS,
    SMOOTHGRAD_VARIANTS,
    patch_starts,
    scaled_length,
    scaled_sides,
)
from sensitivity.filters import gaussian_smooth
from sensitivity.inference import as_batch, softmax
from sensitivity.localising_methods import RiseMasks, blend, cam_head, fill_images, resize, upsample

ADAPTIVE_POINTS_PER_SEGMENT = 2
"""Adaptive path sampling: ``steps // 2`` equal segments, each scored by one forward pass."""

_SINGLE_PASS = ("gradient", "gradient_x_input", "guided_backprop", "gradcam", "layercam", "cam")
"""Methods whose one pass also gives the scores and logits (no forward pass first)."""

_PREDICTED_IN_PASS = ("gradient", "gradient_x_input", "guided_backprop", "cam")
"""Of those, the ones whose one pass also finds each image's predicted class (no class mask)."""

SATURATION_THRESHOLD = 0.999
"""Largest class probability above which the probability's gradient counts as vanished."""

REFERENCE_SIZE = NATIVE_SIZE
"""Patch sizes, strides and blur widths are given in pixels of a 32x32 image and scale with it."""


class SaturationWarning(UserWarning):
    """The gradient of a probability vanished because the softmax is saturated."""


@dataclass
class Attribution:
    """Result of :func:`attribute`.

    ``values``: float32 ``(N, H, W, 3)`` signed attribution per pixel and channel, or
    ``(N, H, W)`` for channel-free methods. ``scores``: ``(N,)`` the explained target score at
    the image. ``weights``: ``(N, K)`` class (or channel) weights of the target. ``logits``:
    ``(N, K)`` model outputs. For Integrated Gradients also ``baseline_scores`` ``(N,)`` and
    ``completeness_gap`` ``(N,)`` = |sum of attributions - (f(x) - f(baseline))| / |f(x) -
    f(baseline)|.
    """

    method: str
    values: np.ndarray
    scores: np.ndarray
    weights: np.ndarray
    logits: np.ndarray
    baseline_scores: np.ndarray | None = None
    completeness_gap: np.ndarray | None = None

    @property
    def has_channels(self) -> bool:
        """True when ``values`` has an RGB axis."""
        return self.values.ndim == 4


# --------------------------------------------------------------------------------------------
# Validation.


def method_options(method: str, options: dict) -> dict:
    """``options`` completed with the defaults of ``method``; unknown names raise ValueError."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {list(METHODS)}")
    allowed = {**COMMON_OPTIONS, **METHODS[method].options}
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"method {method!r} has no option {unknown}; its options: {list(allowed)}")
    return {name: options.get(name, option.default) for name, option in allowed.items()}


def class_weights(class_mask, num_images: int, num_classes: int) -> np.ndarray:
    """``(N, K)`` float64 weights from an int, a list of ints, or a weight vector / matrix.

    Integers select classes (one-hot, or multi-hot for a list); a float vector of length K is
    used as it is for every image, a float ``(N, K)`` array per image.
    """
    if isinstance(class_mask, (bool, np.bool_)):
        raise ValueError("class_mask must be a class index, a list of them, or weights; got a bool")
    array = np.asarray(class_mask)
    if array.dtype == object or not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"class_mask must be numeric, got {class_mask!r}")
    if np.issubdtype(array.dtype, np.integer):
        classes = array.reshape(-1)
        if array.ndim > 1 or classes.size == 0:
            raise ValueError(
                f"class_mask must be a class index or a list of them, got {class_mask}"
            )
        bad = classes[(classes < 0) | (classes >= num_classes)]
        if bad.size:
            raise ValueError(
                f"class {int(bad[0])} is out of range: classes are 0..{num_classes - 1}"
            )
        if len(set(classes.tolist())) != classes.size:
            raise ValueError(
                f"class_mask {classes.tolist()} repeats a class; pass weights as floats instead"
            )
        row = np.zeros(num_classes)
        row[classes] = 1.0
        return np.tile(row, (num_images, 1))
    weights = array.astype(np.float64)
    if not np.isfinite(weights).all():
        raise ValueError("class_mask weights hold NaN or infinite values")
    if weights.ndim == 1:
        if weights.size != num_classes:
            raise ValueError(
                f"a class weight vector needs {num_classes} values, got {weights.size}"
            )
        return np.tile(weights, (num_images, 1))
    if weights.shape != (num_images, num_classes):
        raise ValueError(
            f"class weights must have shape ({num_classes},) or ({num_images}, {num_classes}), "
            f"got {weights.shape}"
        )
    return weights


def _channel_weights(channel, num_images: int, num_channels: int) -> np.ndarray:
    if channel is None:
        return np.ones((num_images, num_channels))
    if isinstance(channel, (bool, np.bool_)) or not isinstance(channel, (int, np.integer)):
        raise ValueError(f"channel must be an integer or None, got {channel!r}")
    if not 0 <= channel < num_channels:
        raise ValueError(f"channel {channel} is out of range: the layer has {num_channels}")
    weights = np.zeros((num_images, num_channels))
    weights[:, channel] = 1.0
    return weights


def _images(model, images) -> np.ndarray:
    batch = as_batch(images)  # shape check; ValueError on NaN or infinite values
    spec = engine.input_signature(model)
    expected = spec.shape[1:]
    if not expected.is_compatible_with(batch.shape[1:]):
        raise ValueError(f"the model takes images of shape {expected}, got {batch.shape[1:]}")
    dtype = spec.dtype.as_numpy_dtype
    if dtype == np.float32:
        return batch
    return np.asarray(images, dtype=dtype).reshape(batch.shape)


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _choice(name: str, value, choices: tuple) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


def _scaled(value, size: int, name: str) -> int:
    """A length in 32x32-image pixels as pixels of an image of side ``size`` (at least 1)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or value <= 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return scaled_length(value, size)


# --------------------------------------------------------------------------------------------
# The methods. Each takes a _Job and returns values (and optionally extra fields).


@dataclass
class _Job:
    model: object
    target: engine.Target
    images: np.ndarray
    weights: np.ndarray | None  # None: each image's predicted class, found by the pass
    scores: np.ndarray | None  # None for single-pass methods: their pass gives them
    options: dict

    @property
    def max_batch(self) -> int:
        return engine.batch_size(self.options["max_batch"], *self.images.shape[1:3])

    def report(self, fraction: float) -> None:
        if self.options["progress"] is not None:
            self.options["progress"](float(min(max(fraction, 0.0), 1.0)))

    def gradients(self, images, weights) -> np.ndarray:
        _, grads, _ = engine.gradients(
            self.model, self.target, images, weights, max_batch=self.max_batch
        )
        return grads

    def index_chunks(self, count: int):
        """``(image_index, sample_index)`` flat arrays over ``count`` samples of every image, in
        chunks of at most ``max_batch``: samples of all images are batched together."""
        total = len(self.images) * count
        for start in range(0, total, self.max_batch):
            flat = np.arange(start, min(start + self.max_batch, total))
            yield flat // count, flat % count

    def sampled_gradient_sums(
        self, count: int, make_samples: Callable, sample_weights: np.ndarray | None = None
    ) -> tuple:
        """Sums over ``count`` samples per image of the gradient and its square, float64.

        ``make_samples(image_index, sample_index)`` returns the sample images for the given
        flat arrays of indices; samples of all images are batched together.
        ``sample_weights`` ``(N, count)``, if given, weights each sample's terms in the sums.
        """
        total = len(self.images) * count
        done = 0
        sums = np.zeros(self.images.shape, np.float64)
        squares = np.zeros(self.images.shape, np.float64)
        for image_index, sample_index in self.index_chunks(count):
            grads = self.gradients(
                make_samples(image_index, sample_index), self.weights[image_index]
            ).astype(np.float64)
            w = np.ones(len(image_index)) if sample_weights is None else sample_weights[
                image_index, sample_index]
            w = w[:, None, None, None]
            for i in np.unique(image_index):
                rows = image_index == i
                sums[i] += (w[rows] * grads[rows]).sum(axis=0)
                squares[i] += (w[rows] * np.square(grads[rows])).sum(axis=0)
            done += len(image_index)
            self.report(done / total)
        return sums, squares


def _single_pass(job: _Job, guided: bool = False) -> dict:
    if job.weights is None:  # each image's predicted class, found in the same pass
        scores, grads, logits, weights = engine.predicted_class_gradients(
            job.model, job.target, job.images, max_batch=job.max_batch, guided=guided
        )
        return {"values": grads, "scores": scores, "logits": logits, "weights": weights}
    scores, grads, logits = engine.gradients(
        job.model, job.target, job.images, job.weights, max_batch=job.max_batch, guided=guided
    )
    return {"values": grads, "scores": scores, "logits": logits}


def _gradient(job: _Job) -> dict:
    return _single_pass(job)


def _gradient_x_input(job: _Job) -> dict:
    result = _single_pass(job)
    result["values"] = result["values"] * job.images
    return result


def _smoothgrad(job: _Job) -> dict:
    opts = job.options
    samples = _positive_int("samples", opts["samples"])
    variant = _choice("variant", opts["variant"], SMOOTHGRAD_VARIANTS)
    noise = opts["noise"]
    if not isinstance(noise, (int, float, np.number)) or not 0 <= noise < math.inf:
        raise ValueError(f"noise must be a non-negative fraction of 0..255, got {noise!r}")
    sigma = float(noise) * 255.0
    rng = np.random.default_rng(opts["seed"])

    def make_samples(image_index, _sample_index):
        base = job.images[image_index]
        return base + rng.normal(0.0, sigma, base.shape).astype(base.dtype)

    sums, squares = job.sampled_gradient_sums(samples, make_samples)
    mean = sums / samples
    if variant == "mean":
        values = mean
    elif variant == "squared":
        values = squares / samples
    else:
        values = np.maximum(squares / samples - np.square(mean), 0.0)
    return {"values": values}


def _baseline(job: _Job) -> np.ndarray:
    kind = _choice("baseline", job.options["baseline"], BASELINES)
    images = job.images
    if kind == "black":
        return np.zeros_like(images)
    if kind == "noise":
        rng = np.random.default_rng(job.options["seed"])
        return rng.uniform(0.0, 255.0, images.shape).astype(images.dtype)
    sigma = job.options["blur_sigma"]
    if not isinstance(sigma, (int, float, np.number)) or not 0 < sigma < math.inf:
        raise ValueError(f"blur_sigma must be a positive number, got {sigma!r}")
    scaled = float(sigma) * min(images.shape[1:3]) / REFERENCE_SIZE
    blurred = np.empty_like(images)
    for i, image in enumerate(images):
        blurred[i] = gaussian_smooth(image, scaled)
    return blurred


def allocate_points(shares: np.ndarray, total: int) -> np.ndarray:
    """Split ``total`` points among segments in proportion to ``shares`` ``(N, S)`` (>= 0).

    Largest remainders; ties go to the earlier segment; a row of zero shares is split evenly.
    Returns ``(N, S)`` ints, each row summing to ``total``.
    """
    n, segments = shares.shape
    sums = shares.sum(axis=1, keepdims=True)
    shares = np.where(sums > 0, shares / np.where(sums > 0, sums, 1.0), 1.0 / segments)
    quota = shares * total
    counts = np.floor(quota).astype(int)
    short = total - counts.sum(axis=1)
    order = np.argsort(-(quota - counts), axis=1, kind="stable")
    for i in range(n):
        counts[i, order[i, : short[i]]] += 1
    return counts


def segment_points(counts: np.ndarray, placed: np.ndarray | None = None) -> np.ndarray:
    """The next ``counts[i, j]`` points of segment ``j`` of S equal segments of [0, 1], after the
    ``placed[i, j]`` (default 0) it already has; ``(N, counts.sum(axis=1))`` float64, segment by
    segment (every row of ``counts`` must have the same sum).

    A segment's ``t``-th point (from 0) sits at the fraction ``0.5 + t * g`` (mod 1) of it, with
    ``g`` = :data:`POINT_STEP`: first its midpoint, then a sequence that never repeats a point
    and spreads any number of them evenly over the segment, wherever a round stops.
    """
    if placed is None:
        placed = np.zeros_like(counts)
    segments = counts.shape[1]
    return np.stack([
        np.concatenate([
            (j + (0.5 + (start + np.arange(c)) * POINT_STEP) % 1.0) / segments
            for j, (c, start) in enumerate(zip(row, starts, strict=True))
        ])
        for row, starts in zip(counts, placed, strict=True)
    ])


SEGMENT_SUMS_BUDGET = 64 * 2**20
"""Bytes of per-segment gradient sums adaptive Integrated Gradients holds at once (images are
taken in groups under it; one image at a time at least)."""

POINT_STEP = (3.0 - math.sqrt(5.0)) / 2.0
"""The step, as a fraction of a segment, between successive points Integrated Gradients places
in it: the golden ratio's, whose multiples (mod 1) are the most evenly spread of any step's."""

def _integrated_gradients(job: _Job) -> dict:
    steps = _positive_int("steps", job.options["steps"])
    sampling = _choice("path_sampling", job.options["path_sampling"], PATH_SAMPLINGS)
    baseline = _baseline(job)
    delta = job.images - baseline

    def on_path(image_index, alpha):
        a = np.asarray(alpha, job.images.dtype)[:, None, None, None]
        return baseline[image_index] + a * delta[image_index]

    baseline_scores, _ = engine.forward(
        job.model, job.target, baseline, job.weights, max_batch=job.max_batch
    )
    if sampling == "uniform":
        alphas = (np.arange(steps) + 0.5) / steps  # the midpoint rule
        sums, _ = job.sampled_gradient_sums(steps, lambda i, k: on_path(i, alphas[k]))
        sums /= steps
    else:
        sums = _adaptive_path_sums(job, on_path, delta, baseline_scores, steps)
    values = delta * sums
    change = job.scores.astype(np.float64) - baseline_scores
    total = values.reshape(len(values), -1).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        gap = np.abs(total - change) / np.abs(change)
    gap = np.where((change == 0) & (total == 0), 0.0, gap)
    return {"values": values, "baseline_scores": baseline_scores, "completeness_gap": gap}


def _adaptive_path_sums(job: _Job, on_path: Callable, delta: np.ndarray,
                        baseline_scores: np.ndarray, steps: int) -> np.ndarray:
    """:func:`_adaptive_group_sums` over groups of images whose per-segment sums fit in
    :data:`SEGMENT_SUMS_BUDGET`; ``(N, H, W, 3)`` float64."""
    n = len(job.images)
    segments = max(1, steps // ADAPTIVE_POINTS_PER_SEGMENT)
    group = max(1, SEGMENT_SUMS_BUDGET // (segments * job.images[0].nbytes))
    progress = job.options["progress"]
    sums = np.empty(job.images.shape, np.float64)
    for start in range(0, n, group):
        index = np.arange(start, min(start + group, n))
        report = None if progress is None else _part_progress(progress, start, len(index), n)
        part = replace(job, images=job.images[index], weights=job.weights[index],
                       scores=job.scores[index], options=job.options | {"progress": report})
        sums[index] = _adaptive_group_sums(
            part, lambda i, alpha, index=index: on_path(index[i], alpha), delta[index],
            baseline_scores[index], steps)
    return sums


def _part_progress(progress: Callable, start: int, count: int, total: int) -> Callable:
    """Progress of images ``start .. start + count`` of ``total`` as overall progress."""
    return lambda fraction: progress((start + fraction * count) / total)


def _adaptive_group_sums(job: _Job, on_path: Callable, delta: np.ndarray,
                         baseline_scores: np.ndarray, steps: int) -> np.ndarray:
    """The path integral of the gradient, ``(N, H, W, 3)`` float64, from ``steps`` gradients
    placed where the forward passes show the estimate is worst.

    Forward passes score the path at the ends of ``S = steps // 2`` equal segments, so each
    segment's integral of the score's slope along the path is known exactly. The first round
    takes one gradient at each segment's midpoint; up to :data:`ADAPTIVE_ROUNDS` more rounds
    share the other ``steps - S`` gradients among the segments in proportion to how far the
    estimate so far (the mean slope of the segment's points) misses the forward passes'
    difference (a ReLU network's slope along the path is piecewise constant, and the misses show
    where it jumps). A segment's points follow :func:`segment_points` and are weighted
    equally. The forward passes only choose where to look: the attributions are the gradients'
    weighted sum, never rescaled to match the scores, so the completeness gap stays an honest
    measure of the quadrature's error.
    """
    n = len(job.images)
    segments = max(1, steps // ADAPTIVE_POINTS_PER_SEGMENT)
    path_scores = np.empty((n, segments + 1))
    path_scores[:, 0], path_scores[:, -1] = baseline_scores, job.scores
    for image_index, inner_index in job.index_chunks(segments - 1):
        point = inner_index + 1
        path_scores[image_index, point], _ = engine.forward(
            job.model, job.target, on_path(image_index, point / segments),
            job.weights[image_index], max_batch=job.max_batch,
        )
    counts = np.ones((n, segments), int)
    segment_sums = np.zeros((n, segments) + job.images.shape[1:], job.images.dtype)
    slope_sums = np.zeros((n, segments))
    _accumulate_by_segment(job, on_path, delta, segment_points(counts), segment_sums, slope_sums,
                           0, steps)
    refinement = steps - segments
    rounds = min(ADAPTIVE_ROUNDS, refinement)
    for round_index in range(rounds):
        done = segments + refinement * round_index // rounds
        size = segments + refinement * (round_index + 1) // rounds - done
        misses = np.abs(slope_sums / (counts * segments) - np.diff(path_scores, axis=1))
        extra = allocate_points(misses, size)
        _accumulate_by_segment(job, on_path, delta, segment_points(extra, counts),
                               segment_sums, slope_sums, done, steps)
        counts += extra
    sums = np.zeros(job.images.shape, np.float64)
    for j in range(segments):
        sums += (1.0 / (segments * counts[:, j]))[:, None, None, None] * segment_sums[:, j]
    return sums


def _accumulate_by_segment(job: _Job, on_path: Callable, delta: np.ndarray, alphas: np.ndarray,
                           segment_sums: np.ndarray, slope_sums: np.ndarray, done: int,
                           steps: int) -> None:
    """Add the gradient at each point ``alphas`` ``(N, M)`` to its segment's sum in
    ``segment_sums`` ``(N, S, H, W, 3)``, and its slope along the path (the gradient dotted
    with ``delta``) to ``slope_sums`` ``(N, S)``. ``done`` and ``steps`` scale the progress."""
    n, count = alphas.shape
    segments = segment_sums.shape[1]
    for image_index, sample_index in job.index_chunks(count):
        grads = job.gradients(
            on_path(image_index, alphas[image_index, sample_index]), job.weights[image_index]
        )
        slopes = np.einsum(
            "nhwc,nhwc->n", grads.astype(np.float64), delta[image_index].astype(np.float64))
        segment = np.minimum((alphas[image_index, sample_index] * segments).astype(int),
                             segments - 1)
        np.add.at(segment_sums, (image_index, segment), grads)
        np.add.at(slope_sums, (image_index, segment), slopes)
        job.report((done * n + image_index[-1] * count + sample_index[-1] + 1) / (steps * n))


def _spatial(features: np.ndarray, layer: str, method: str) -> np.ndarray:
    """``features`` as float64 after checking they are 4-D ``(N, h, w, C)``."""
    if features.ndim != 4:
        raise ValueError(
            f"{method} needs a layer with a 4-D output; {layer!r} has shape {features.shape}"
        )
    return features.astype(np.float64)


def _feature_gradients(job: _Job, method: str) -> tuple:
    """Features and their gradients ``(N, h, w, C)`` float64 at option ``target_layer``, then
    the scores and logits of the same pass."""
    layer = job.options["target_layer"] or engine.last_spatial_layer(job.model)
    features, grads, scores, logits = engine.feature_gradients(
        job.model, job.target, layer, job.images, job.weights, max_batch=job.max_batch
    )
    return _spatial(features, layer, method), grads.astype(np.float64), scores, logits


def _gradcam(job: _Job) -> dict:
    features, grads, scores, logits = _feature_gradients(job, "Grad-CAM")
    if job.options["plus_plus"]:
        g2 = np.square(grads)
        denominator = 2.0 * g2 + features.sum(axis=(1, 2), keepdims=True) * g2 * grads
        alpha = g2 / np.where(denominator != 0.0, denominator, 1.0)
        channel_weights = (alpha * np.maximum(grads, 0.0)).sum(axis=(1, 2))
    else:
        channel_weights = grads.mean(axis=(1, 2))
    cam = np.maximum(np.einsum("nhwc,nc->nhw", features, channel_weights), 0.0)
    return {"values": _non_negative_upsampled(job, cam), "scores": scores, "logits": logits}


def _non_negative_upsampled(job: _Job, maps: np.ndarray) -> np.ndarray:
    """Non-negative ``(N, h, w)`` maps upsampled to the images' size (rounding clipped at 0)."""
    return np.maximum(upsample(maps, *job.images.shape[1:3]), 0.0)


def _layercam(job: _Job) -> dict:
    features, grads, scores, logits = _feature_gradients(job, "LayerCAM")
    cam = np.maximum(np.einsum("nhwc,nhwc->nhw", np.maximum(grads, 0.0), features), 0.0)
    return {"values": _non_negative_upsampled(job, cam), "scores": scores, "logits": logits}


def _cam(job: _Job) -> dict:
    """CAM from one forward pass to the head's feature map (:func:`cam_head`): ``sum_c w_c sum_k
    W[k, c] f_k(i, j)``, signed, bias ignored, upsampled bilinearly; score units (its mean over
    the feature map's positions is the score less the bias term)."""
    if job.target.layer != "logits":
        raise ValueError(
            f"CAM explains logits (layer='logits'), not {job.target.layer!r}; method='gradcam' "
            "differentiates any target"
        )
    layer, kernel = cam_head(job.model)
    features, logits = engine.feature_forward(
        job.model, layer, job.images, max_batch=job.max_batch
    )
    features = _spatial(features, layer, "CAM")
    result = {"logits": logits}
    weights = job.weights
    if weights is None:  # each image's predicted class, from this pass's logits
        weights = result["weights"] = np.eye(kernel.shape[1], dtype=logits.dtype)[
            logits.argmax(axis=1)]
    result["scores"] = engine.output_scores(job.target, logits, weights)
    class_kernel = np.asarray(weights, np.float64) @ kernel.T  # (N, C): sum_c w_c W[k, c]
    cam = np.einsum("nhwk,nk->nhw", features, class_kernel)
    result["values"] = upsample(cam, *job.images.shape[1:3])
    return result


def _fills(job: _Job) -> np.ndarray:
    """The images that option ``fill`` blends masked images with."""
    sigma = FILL_BLUR_SIGMA * min(job.images.shape[1:3]) / REFERENCE_SIZE
    return fill_images(job.images, job.options["fill"], sigma)


def _scorecam(job: _Job) -> dict:
    """Score-CAM: channel ``k``'s activation upsampled bilinearly and scaled to 0..1 (a constant
    channel gives an all-fill mask, weight 0) masks the image over the fill; ``w_k`` = masked
    score - fill score (no softmax); ``ReLU(sum_k w_k A_k)`` upsampled; score x feature units.
    ``max_channels`` keeps each image's channels of largest mean activation."""
    layer = job.options["target_layer"] or engine.last_spatial_layer(job.model)
    fills = _fills(job)
    features, _ = engine.feature_forward(job.model, layer, job.images, max_batch=job.max_batch)
    features = _spatial(features, layer, "Score-CAM")
    n, _, _, channels = features.shape
    limit = job.options["max_channels"]
    kept = channels if limit is None else min(_positive_int("max_channels", limit), channels)
    # The kept channels of each image, largest mean activation first.
    order = np.argsort(-features.mean(axis=(1, 2)), axis=1, kind="stable")[:, :kept]
    fill_scores, _ = engine.forward(
        job.model, job.target, fills, job.weights, max_batch=job.max_batch
    )
    channel_weights = np.zeros((n, kept))
    height, width = job.images.shape[1:3]
    for image_index, rank in job.index_chunks(kept):
        maps = upsample(features[image_index, :, :, order[image_index, rank]], height, width)
        low = maps.min(axis=(1, 2), keepdims=True)
        span = maps.max(axis=(1, 2), keepdims=True) - low
        masks = np.where(span > 0, (maps - low) / np.where(span > 0, span, 1.0), 0.0)
        scores, _ = engine.forward(
            job.model, job.target, blend(job.images[image_index], fills[image_index], masks),
            job.weights[image_index], max_batch=job.max_batch,
        )
        channel_weights[image_index, rank] = scores - fill_scores[image_index]
        job.report((image_index[-1] * kept + rank[-1] + 1) / (n * kept))
    activations = np.take_along_axis(features, order[:, None, None, :], axis=3)
    cam = np.maximum(np.einsum("nhwk,nk->nhw", activations, channel_weights), 0.0)
    return {"values": _non_negative_upsampled(job, cam)}


def _rise(job: _Job) -> dict:
    """RISE, ``sum_n (S_n - mean S) M_n / (masks * keep)``, in score units.

    The original ``sum_n S_n M_n / (masks * keep)`` equals this plus ``mean S`` times the
    masks' empirical density ``sum_n M_n / (masks * keep)``, which is 1 on average and carries
    only the masks' Monte-Carlo unevenness, nothing about the model: subtracting the mean
    score removes that noise (a control variate), so fewer masks give a stable map. The
    expected value is ``Cov(S, M(x)) / keep``: positive where keeping the pixel raises the
    score, negative where it lowers it, zero where it does not matter.

    Default fill 'blur' (the original used black): a blurred copy keeps each image's colours
    and coarse layout, so a masked image loses only the detail under the dropped cells instead
    of gaining black blotches whose edges the network also reacts to; it is also Score-CAM's
    default, so the two compare. A blur still shows the coarse shape of a large object, which
    can weaken the signal; 'black' and 'mean' remain available.
    """
    opts = job.options
    count = _positive_int("masks", opts["masks"])
    grid = _positive_int("grid", opts["grid"])
    keep = opts["keep"]
    if isinstance(keep, bool) or not isinstance(keep, (int, float, np.number)) or not (
            0 < keep <= 1):
        raise ValueError(f"keep must be a probability in (0, 1], got {keep!r}")
    n, height, width = job.images.shape[:3]
    generator = RiseMasks(count, height, width, grid, float(keep), opts["seed"])
    fills = _fills(job)
    weighted = np.zeros((n, height, width))  # sum_n S_n M_n per image
    mask_sums = np.zeros((n, height, width))  # sum_n M_n per image
    score_sums = np.zeros(n)
    for image_index, mask_index in job.index_chunks(count):
        masks = generator.take(mask_index)
        scores, _ = engine.forward(
            job.model, job.target, blend(job.images[image_index], fills[image_index], masks),
            job.weights[image_index], max_batch=job.max_batch,
        )
        for i in np.unique(image_index):
            rows = image_index == i
            weighted[i] += np.tensordot(scores[rows], masks[rows], axes=1)
            mask_sums[i] += masks[rows].sum(axis=0)
            score_sums[i] += scores[rows].sum()
        job.report((image_index[-1] * count + mask_index[-1] + 1) / (n * count))
    mean_scores = (score_sums / count)[:, None, None]
    return {"values": (weighted - mean_scores * mask_sums) / (count * float(keep))}


def _guided_backprop(job: _Job) -> dict:
    return _single_pass(job, guided=True)  # guided ReLUs change the backward pass only


def _occlusion(job: _Job) -> dict:
    images = job.images
    n, height, width, _ = images.shape
    ph, pw = (_scaled(job.options["patch"], s, "patch") for s in (height, width))
    stride = job.options["stride"]
    stride = job.options["patch"] / 2 if stride is None else stride
    sh, sw = (_scaled(stride, s, "stride") for s in (height, width))
    fill = job.options["fill"]
    if isinstance(fill, str):
        _choice("fill", fill, ("mean",))
        colours = images.mean(axis=(1, 2))
    else:
        colour = np.broadcast_to(np.asarray(fill, np.float64), (3,))
        if not np.isfinite(colour).all():
            raise ValueError(f"fill must be finite, got {fill!r}")
        colours = np.tile(colour, (n, 1))
    colours = colours.astype(images.dtype)
    patches = [(y, x) for y in patch_starts(height, ph, sh) for x in patch_starts(width, pw, sw)]
    count = len(patches)
    total = n * count
    drops = np.zeros((n, height, width), np.float64)
    covered = np.zeros((height, width), np.float64)
    for y, x in patches:
        covered[y : y + ph, x : x + pw] += 1.0
    for start in range(0, total, job.max_batch):
        flat = np.arange(start, min(start + job.max_batch, total))
        image_index, patch_index = flat // count, flat % count
        batch = images[image_index].copy()
        for row, (i, p) in enumerate(zip(image_index, patch_index, strict=True)):
            y, x = patches[p]
            batch[row, y : y + ph, x : x + pw] = colours[i]
        scores, _ = engine.forward(
            job.model, job.target, batch, job.weights[image_index], max_batch=job.max_batch
        )
        for row, (i, p) in enumerate(zip(image_index, patch_index, strict=True)):
            y, x = patches[p]
            drops[i, y : y + ph, x : x + pw] += job.scores[i] - scores[row]
        job.report((flat[-1] + 1) / total)
    return {"values": drops / covered}


_RUNNERS: dict[str, Callable[[_Job], dict]] = {
    "gradient": _gradient,
    "gradient_x_input": _gradient_x_input,
    "smoothgrad": _smoothgrad,
    "integrated_gradients": _integrated_gradients,
    "gradcam": _gradcam,
    "guided_backprop": _guided_backprop,
    "occlusion": _occlusion,
    "cam": _cam,
    "layercam": _layercam,
    "scorecam": _scorecam,
    "rise": _rise,
}


# --------------------------------------------------------------------------------------------
# Public entry point.


def _warn_if_saturated(logits: np.ndarray, values: np.ndarray, gradient_based: bool) -> None:
    top = softmax(logits).max(axis=1)
    saturated = top > SATURATION_THRESHOLD
    vanished = ~np.any(values.reshape(len(values), -1) != 0, axis=1) & gradient_based
    if saturated.any() or vanished.any():
        worst = float(top.max())
        warnings.warn(
            f"the softmax is saturated (largest class probability {worst:.6f} for "
            f"{int((saturated | vanished).sum())} of {len(top)} images): the gradient of the "
            "probability vanishes. Use layer='logits' (the default) or 'log_probabilities'.",
            SaturationWarning,
            stacklevel=3,
        )


def attribute(
    model,
    images,
    *,
    method: str = "gradient",
    layer: str = "logits",
    class_mask=None,
    **options,
) -> Attribution:
    """Attribute the target score of ``images`` to their pixels with ``method``.

    ``images``: ``(N, H, W, 3)`` or ``(H, W, 3)`` pixel values 0..255 of any size the model
    takes. ``layer``: "logits", "probabilities", "log_probabilities" or a layer's name or path
    (differentiating the ``layer_reduction`` of its output, or of one ``channel``).
    ``class_mask`` (output targets only): None for each image's predicted class, a class
    index, a list of them, or a length-K weight vector; the score is ``sum_c w_c out_c``.
    ``options``: see :data:`METHODS` and :data:`COMMON_OPTIONS` (``scales``: multi-scale
    fusion, see :func:`_fused`). Raises ValueError on bad arguments and on NaN or infinite
    pixels; warns :class:`SaturationWarning` when a probability's gradient vanishes.
    """
    opts = method_options(method, options)
    if opts["scales"] is not None:
        return _fused(model, images, method, layer, class_mask, opts)
    return _attribute(model, images, method, layer, class_mask, opts)


def _attribute(model, images, method: str, layer: str, class_mask, opts: dict) -> Attribution:
    """:func:`attribute` at the images' own scale, with the completed options ``opts``."""
    _positive_int("max_batch", opts["max_batch"])
    target = engine.make_target(model, layer, opts["layer_reduction"])
    batch = _images(model, images)
    n = len(batch)
    size = engine.weight_size(model, target)
    dtype = batch.dtype
    channels = METHODS[method].channels
    if target.is_output:
        if opts["channel"] is not None:
            raise ValueError("channel applies to an inner layer; for classes use class_mask")
        if class_mask is not None:
            weights = class_weights(class_mask, n, size)
    else:
        if class_mask is not None:
            raise ValueError(
                "class_mask applies to logits, probabilities and log_probabilities; "
                "for an inner layer use the channel option"
            )
        weights = _channel_weights(opts["channel"], n, size)
    if n == 0:
        shape = batch.shape if channels else batch.shape[:3]
        empty = np.zeros(0, np.float32)
        return Attribution(
            method, np.zeros(shape, np.float32), empty, np.zeros((0, size), np.float32),
            np.zeros((0, size), np.float32),
        )
    scores = logits = None  # single-pass methods with known weights get both from their pass
    in_pass = target.is_output and class_mask is None and method in _PREDICTED_IN_PASS
    if in_pass:
        weights = None  # the method's one pass finds each image's predicted class
    elif target.is_output and (class_mask is None or method not in _SINGLE_PASS):
        # One forward pass gives the logits; the predicted class and the scores follow from them.
        _, logits = engine.forward(
            model, target, batch, np.zeros((n, size), dtype), max_batch=opts["max_batch"]
        )
        if class_mask is None:
            weights = np.eye(size)[logits.argmax(axis=1)]
    if weights is not None:
        weights = weights.astype(dtype)
    if logits is not None:
        scores = engine.output_scores(target, logits, weights)
    elif method not in _SINGLE_PASS:
        scores, logits = engine.forward(model, target, batch, weights, max_batch=opts["max_batch"])
    result = _RUNNERS[method](_Job(model, target, batch, weights, scores, opts))
    scores, logits = result.pop("scores", scores), result.pop("logits", logits)
    weights = result.pop("weights", weights)
    values = np.asarray(result.pop("values"), np.float32)
    if not np.isfinite(values).all():
        raise ValueError(f"{method} produced non-finite values (the model overflowed)")
    if target.layer == "probabilities" and method != "occlusion":
        _warn_if_saturated(logits, values, gradient_based=METHODS[method].channels)
    if opts["progress"] is not None:
        opts["progress"](1.0)
    extras = {k: np.asarray(v, np.float32) for k, v in result.items()}
    return Attribution(
        method,
        values,
        scores.astype(np.float32),
        weights.astype(np.float32),
        logits.astype(np.float32),
        **extras,
    )


def _scale_factors(scales) -> list[float]:
    if isinstance(scales, (str, bytes)) or not hasattr(scales, "__len__") or len(scales) == 0:
        raise ValueError(f"scales must be a non-empty sequence of factors, got {scales!r}")
    factors = []
    for factor in scales:
        if isinstance(factor, (bool, np.bool_)) or not isinstance(
                factor, (int, float, np.number)) or not 0 < factor < math.inf:
            raise ValueError(f"scales must be positive finite numbers, got {scales!r}")
        factors.append(float(factor))
    return factors


def _fused(model, images, method: str, layer: str, class_mask, opts: dict) -> Attribution:
    """Multi-scale fusion (option ``scales``): the images resized bilinearly (antialiased) by
    each factor (:func:`sensitivity.choices.scaled_sides`), attributed, and the values
    resized back to ``(H, W)``. With one scale those are the values, in the method's units.
    With several, each scale's values are divided by their largest magnitude per image (an
    all-zero attribution stays zero) and averaged: unitless, at most 1 in magnitude.

    The reference scale is 1 if listed, else the first: it runs first, and its scores,
    weights, logits (and Integrated Gradients' extras, which describe its own unfused
    attribution) are reported; its class weights (the predicted classes when ``class_mask`` is
    None) are the ones explained at every other scale.
    """
    factors = _scale_factors(opts["scales"])
    batch = _images(model, images)
    single = opts | {"scales": None}
    if len(batch) == 0:
        return _attribute(model, batch, method, layer, class_mask, single)
    n, height, width = batch.shape[:3]
    reference = factors.index(1.0) if 1.0 in factors else 0
    order = [reference] + [k for k in range(len(factors)) if k != reference]
    progress = opts["progress"]
    fused = None
    for step, k in enumerate(order):
        size = scaled_sides(factors[k], height, width)
        scaled = resize(batch, *size, antialias=True).astype(batch.dtype)
        report = None if progress is None else _part_progress(progress, step, 1, len(order))
        result = _attribute(model, scaled, method, layer, class_mask, single | {"progress": report})
        values = result.values if result.has_channels else result.values[..., None]
        values = resize(values, height, width, antialias=True)
        if not result.has_channels:
            values = values[..., 0]
        if step == 0:
            first = result
            if layer in OUTPUT_TARGETS:
                class_mask = result.weights.astype(np.float64)
        if len(factors) > 1:
            peak = np.abs(values).reshape(n, -1).max(axis=1)
            values = values / np.where(peak > 0, peak, 1.0).reshape((n,) + (1,) * (values.ndim - 1))
        fused = values if fused is None else fused + values
    return replace(first, values=(fused / len(factors)).astype(np.float32))
