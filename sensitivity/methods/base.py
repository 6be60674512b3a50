"""What every attribution method shares: the :class:`Job` a method runs on (batching, chunking,
class weights, progress), the :class:`Runner` a method module declares, and the
:class:`Attribution` result.

A method module (named as its key of :data:`sensitivity.engine.choices.METHODS`) defines ``RUNNER``:
a :class:`Runner` whose ``run(job)`` returns a dict with ``values`` (and optionally
``scores``, ``logits``, ``weights`` or extra fields of :class:`Attribution`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from sensitivity.engine import gradients as engine
from sensitivity.engine.choices import FILL_BLUR_SIGMA, NATIVE_SIZE, scaled_length
from sensitivity.methods.localising import fill_images, upsample

REFERENCE_SIZE = NATIVE_SIZE
"""Patch sizes, strides and blur widths are given in pixels of a 32x32 image and scale with it."""


@dataclass
class Attribution:
    """Result of :func:`sensitivity.methods.attribute`.

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


def channel_weights(channel, num_images: int, num_channels: int) -> np.ndarray:
    """``(N, C)`` float64 weights of an inner layer's channels: all ones for ``channel`` None,
    else one-hot."""
    if channel is None:
        return np.ones((num_images, num_channels))
    if isinstance(channel, (bool, np.bool_)) or not isinstance(channel, (int, np.integer)):
        raise ValueError(f"channel must be an integer or None, got {channel!r}")
    if not 0 <= channel < num_channels:
        raise ValueError(f"channel {channel} is out of range: the layer has {num_channels}")
    weights = np.zeros((num_images, num_channels))
    weights[:, channel] = 1.0
    return weights


def positive_int(name: str, value) -> int:
    """``value`` as an int; ValueError unless it is a positive integer."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def boolean(name: str, value) -> bool:
    """``value`` as a bool; ValueError unless it is True or False (``np.bool_`` too)."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def choice(name: str, value, choices: tuple) -> str:
    """``value``; ValueError unless it is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


def scaled(value, size: int, name: str) -> int:
    """A length in 32x32-image pixels as pixels of an image of side ``size`` (at least 1)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or value <= 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return scaled_length(value, size)


# --------------------------------------------------------------------------------------------
# The job a method runs on.


def part_progress(progress: Callable, start: int, count: int, total: int) -> Callable:
    """Progress of parts ``start .. start + count`` of ``total`` as overall progress."""
    return lambda fraction: progress((start + fraction * count) / total)


@dataclass
class Job:
    """One method's work: the images ``(N, H, W, 3)`` in the model's dtype, the target, the
    class (or channel) weights ``(N, K)`` (None: each image's predicted class, found by the
    method's own pass), the target scores ``(N,)`` (None for one-pass methods: their pass gives
    them) and the completed options."""

    model: object
    target: engine.Target
    images: np.ndarray
    weights: np.ndarray | None
    scores: np.ndarray | None
    options: dict

    @property
    def max_batch(self) -> int:
        """Most images per pass (option ``max_batch``, fewer for large images)."""
        return engine.batch_size(self.options["max_batch"], *self.images.shape[1:3])

    def report(self, fraction: float) -> None:
        """Tell option ``progress`` (if any) the fraction done, clipped to 0..1."""
        if self.options["progress"] is not None:
            self.options["progress"](float(min(max(fraction, 0.0), 1.0)))

    def gradients(self, images, weights) -> np.ndarray:
        """Gradients of the target score of ``images`` weighted by ``weights``."""
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


@dataclass(frozen=True)
class Runner:
    """How :func:`sensitivity.methods.attribute` runs a method."""

    run: Callable[[Job], dict]
    """``run(job)``: a dict with ``values`` and what else the method found (see the module)."""
    one_pass: bool = False
    """Whether its one pass also gives the scores and logits (no forward pass first)."""
    finds_class: bool = False
    """Whether that pass also finds each image's predicted class (the job's weights are None
    when no class mask is given)."""
    same_units: Callable[[dict], bool] = lambda options: False
    """Whether, with these completed options, the values are in the same units at every image
    size (probabilities), so that multi-scale fusion averages them as they are."""


# --------------------------------------------------------------------------------------------
# Pieces several methods use.


def gradient_pass(job: Job, guided: bool = False) -> dict:
    """One gradient pass: the gradients (through guided ReLUs if ``guided``), scores, logits
    and, without class weights, each image's predicted class's weights."""
    if job.weights is None:  # each image's predicted class, found in the same pass
        scores, grads, logits, weights = engine.predicted_class_gradients(
            job.model, job.target, job.images, max_batch=job.max_batch, guided=guided
        )
        return {"values": grads, "scores": scores, "logits": logits, "weights": weights}
    scores, grads, logits = engine.gradients(
        job.model, job.target, job.images, job.weights, max_batch=job.max_batch, guided=guided
    )
    return {"values": grads, "scores": scores, "logits": logits}


def spatial(features: np.ndarray, layer: str, method: str) -> np.ndarray:
    """``features`` as float64 after checking they are 4-D ``(N, h, w, C)``."""
    if features.ndim != 4:
        raise ValueError(
            f"{method} needs a layer with a 4-D output; {layer!r} has shape {features.shape}"
        )
    return features.astype(np.float64)


def target_layer(job: Job) -> str:
    """Option ``target_layer``, or the model's last layer with a 4-D output."""
    return job.options["target_layer"] or engine.last_spatial_layer(job.model)


def feature_gradients(job: Job, method: str) -> tuple:
    """Features and their gradients ``(N, h, w, C)`` float64 at option ``target_layer``, then
    the scores and logits of the same pass."""
    layer = target_layer(job)
    features, grads, scores, logits = engine.feature_gradients(
        job.model, job.target, layer, job.images, job.weights, max_batch=job.max_batch
    )
    return spatial(features, layer, method), grads.astype(np.float64), scores, logits


def non_negative_upsampled(job: Job, maps: np.ndarray) -> np.ndarray:
    """Non-negative ``(N, h, w)`` maps upsampled to the images' size (rounding clipped at 0)."""
    return np.maximum(upsample(maps, *job.images.shape[1:3]), 0.0)


def fills(job: Job) -> np.ndarray:
    """The images that option ``fill`` blends masked images with."""
    sigma = FILL_BLUR_SIGMA * min(job.images.shape[1:3]) / REFERENCE_SIZE
    return fill_images(job.images, job.options["fill"], sigma)
