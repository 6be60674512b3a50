"""Sanity: the cascading model-randomisation check (Adebayo et al., "Sanity checks for
saliency maps", 2018) with Spearman rank correlation."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sensitivity.metrics.inputs import MapFunction

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
    work, fresh = _trained_clone(model)
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
    batch, classes = _images_and_classes(model, images, classes)
    map_fn = saliency_function(method, **options) if isinstance(method, str) else method
    work, fresh = _trained_clone(model)
    cascade = cascade_layers(work, layers)
    per_image_array = _cascade_correlations(work, fresh, cascade, map_fn, batch, classes,
                                            np.random.default_rng(seed))
    return RandomizationCheck(
        tuple(cascade),
        per_image_array.mean(axis=1),
        per_image_array,
        math.ceil(len(cascade) / 2),
        float(threshold),
    )


def _trained_clone(model):
    """``(work, fresh)``: a clone of ``model`` with its trained weights, to randomise, and an
    untrained clone, only for the layers' initial vectors; ``model`` is never changed."""
    import keras

    work = keras.models.clone_model(model)
    work.set_weights(model.get_weights())
    fresh = keras.models.clone_model(model)
    return work, fresh


def _images_and_classes(model, images, classes) -> tuple[np.ndarray, np.ndarray]:
    """The batch ``(N, H, W, 3)`` and the ``(N,)`` int64 classes its maps explain (default: the
    model's predictions); ValueError for no image or a class count that does not match."""
    from sensitivity.engine.inference import as_batch, predict

    batch = as_batch(images)
    if len(batch) == 0:
        raise ValueError("the randomisation check needs at least one image")
    if classes is None:
        classes = predict(model, batch).argmax(axis=1)
    classes = np.asarray(classes, dtype=np.int64).reshape(-1)
    if len(classes) != len(batch):
        raise ValueError("give one class per image")
    return batch, classes


def _cascade_correlations(work, fresh, cascade: list[str], map_fn: MapFunction,
                          batch: np.ndarray, classes: np.ndarray,
                          rng: np.random.Generator) -> np.ndarray:
    """``(L + 1, N)``: per image, the Spearman correlation of the map of ``work`` as trained
    (step 0: 1) with its map after each layer of ``cascade`` is re-initialised in turn."""
    reference = np.asarray(map_fn(work, batch, classes), dtype=np.float64)
    per_image = [np.ones(len(batch))]
    for name in cascade:
        reinitialise_layer(work, fresh, name, rng)
        maps = np.asarray(map_fn(work, batch, classes), dtype=np.float64)
        per_image.append(np.array([spearman(r, m) for r, m in zip(reference, maps, strict=True)]))
    return np.stack(per_image)
