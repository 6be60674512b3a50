"""The entry point: :func:`attribute` checks the arguments, finds the classes to explain, runs
one method (its module's ``RUNNER``), fuses scales (option ``scales``, :func:`_fused`),
averages with the mirror image (option ``mirror``, :func:`_mirrored`) and smooths any method
over noisy copies (option ``smooth_samples``,
:mod:`sensitivity.methods.noise_tunnel`)."""

from __future__ import annotations

import importlib
import math
import warnings
from dataclasses import replace

import numpy as np

from sensitivity.engine import gradients as engine
from sensitivity.engine.choices import COMMON_OPTIONS, METHODS, OUTPUT_TARGETS, scaled_sides
from sensitivity.engine.inference import as_batch, softmax
from sensitivity.methods.base import (
    Attribution,
    Job,
    Runner,
    boolean,
    channel_weights,
    class_weights,
    part_progress,
    positive_int,
)
from sensitivity.methods.localising import resize
from sensitivity.methods.noise_tunnel import smoothed

RUNNERS: dict[str, Runner] = {
    name: importlib.import_module(f"sensitivity.methods.{name}").RUNNER for name in METHODS
}
"""Each method of :data:`METHODS`, run by the ``RUNNER`` of the module of the same name."""

SATURATION_THRESHOLD = 0.999
"""Largest class probability above which the probability's gradient counts as vanished."""


class SaturationWarning(UserWarning):
    """The gradient of a probability vanished because the softmax is saturated."""


def method_options(method: str, options: dict) -> dict:
    """``options`` completed with the defaults of ``method``; unknown names raise ValueError."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {list(METHODS)}")
    allowed = {**COMMON_OPTIONS, **METHODS[method].options}
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"method {method!r} has no option {unknown}; its options: {list(allowed)}")
    return {name: options.get(name, option.default) for name, option in allowed.items()}


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
    takes. ``layer``: an output target (:data:`OUTPUT_TARGETS`) or a layer's name or path
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
    return _mirrored(model, images, method, layer, class_mask, opts)


def _mirrored(model, images, method: str, layer: str, class_mask, opts: dict) -> Attribution:
    """:func:`_smoothed_or_plain`, and with option ``mirror`` also of the images flipped left to
    right, that map flipped back and the two averaged. The images' own result gives the scores,
    weights, logits and extras, and its class weights (the predicted classes when
    ``class_mask`` is None) are the ones explained in the mirror image."""
    if not boolean("mirror", opts["mirror"]):
        return _smoothed_or_plain(model, images, method, layer, class_mask, opts)
    batch = _images(model, images)
    progress = opts["progress"]

    def part(index: int) -> dict:
        return opts | {"progress": None if progress is None else part_progress(progress, index,
                                                                                 1, 2)}

    first = _smoothed_or_plain(model, batch, method, layer, class_mask, part(0))
    if len(batch) == 0:
        return first
    if layer in OUTPUT_TARGETS:
        class_mask = first.weights.astype(np.float64)
    second = _smoothed_or_plain(model, batch[:, :, ::-1], method, layer, class_mask, part(1))
    values = (first.values + second.values[:, :, ::-1]) / 2
    return replace(first, values=values.astype(np.float32))


def _smoothed_or_plain(model, images, method: str, layer: str, class_mask, opts: dict
                       ) -> Attribution:
    """:func:`_attribute`, through the noise tunnel when ``smooth_samples`` is set."""
    if not opts["smooth_samples"]:
        return _attribute(model, images, method, layer, class_mask, opts)
    return smoothed(
        lambda batch, mask, o: _attribute(model, batch, method, layer, mask, o),
        _images(model, images), class_mask, opts, explains_classes=layer in OUTPUT_TARGETS,
    )


def _attribute(model, images, method: str, layer: str, class_mask, opts: dict) -> Attribution:
    """:func:`attribute` at the images' own scale, with the completed options ``opts``."""
    positive_int("max_batch", opts["max_batch"])
    target = engine.make_target(model, layer, opts["layer_reduction"])
    batch = _images(model, images)
    size = engine.weight_size(model, target)
    runner = RUNNERS[method]
    weights = _given_weights(target, class_mask, opts["channel"], len(batch), size)
    if len(batch) == 0:
        return _empty(method, batch, size)
    weights, scores, logits = _first_pass(model, target, batch, weights, size, runner,
                                          class_mask is None, opts["max_batch"])
    result = runner.run(Job(model, target, batch, weights, scores, opts))
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


def _given_weights(target, class_mask, channel, n: int, size: int) -> np.ndarray | None:
    """``(n, size)`` weights of the class mask (an output target) or of the channel (an inner
    layer); None for an output target without a mask (each image's predicted class)."""
    if target.is_output:
        if channel is not None:
            raise ValueError("channel applies to an inner layer; for classes use class_mask")
        return None if class_mask is None else class_weights(class_mask, n, size)
    if class_mask is not None:
        raise ValueError(
            f"class_mask applies to the output targets ({', '.join(OUTPUT_TARGETS)}); "
            "for an inner layer use the channel option"
        )
    return channel_weights(channel, n, size)


def _empty(method: str, batch: np.ndarray, size: int) -> Attribution:
    """The attribution of no images: empty arrays of the right shapes."""
    shape = batch.shape if METHODS[method].channels else batch.shape[:3]
    return Attribution(
        method, np.zeros(shape, np.float32), np.zeros(0, np.float32),
        np.zeros((0, size), np.float32), np.zeros((0, size), np.float32),
    )


def _first_pass(model, target, batch: np.ndarray, weights, size: int, runner, predicted: bool,
                max_batch: int) -> tuple:
    """``(weights, scores, logits)`` before the method runs. A one-pass method that finds the
    class (``predicted``: no class mask) gets none of them; else one forward pass gives the
    logits, the predicted class's weights when ``predicted``, and the scores (a second
    forward pass for a target not computed from the logits alone, unless the method's own
    pass gives them); a one-pass method with known weights takes its scores and logits from
    its own pass (None here)."""
    scores = logits = None
    if target.is_output and predicted and runner.finds_class:
        weights = None  # the method's one pass finds each image's predicted class
    elif target.is_output and (predicted or not runner.one_pass):
        _, logits = engine.forward(
            model, target, batch, np.zeros((len(batch), size), batch.dtype), max_batch=max_batch
        )
        if predicted:
            weights = np.eye(size)[logits.argmax(axis=1)]
    if weights is not None:
        weights = weights.astype(batch.dtype)
    if logits is not None and target.from_logits:
        scores = engine.output_scores(target, logits, weights)
    elif not runner.one_pass:
        scores, logits = engine.forward(model, target, batch, weights, max_batch=max_batch)
    return weights, scores, logits


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
    each factor (:func:`sensitivity.engine.choices.scaled_sides`), attributed, and the values
    resized back to ``(H, W)``. With one scale those are the values, in the method's units.
    With several, each scale's values are divided by their largest magnitude per image (an
    all-zero attribution stays zero) and averaged: unitless, at most 1 in magnitude; values in
    the same units at every size (the runner's ``same_units``: CAM's probabilities) are averaged
    as they are.

    The reference scale is 1 if listed, else the first: it runs first, and its scores,
    weights, logits (and Integrated Gradients' extras, which describe its own unfused
    attribution) are reported; its class weights (the predicted classes when ``class_mask`` is
    None) are the ones explained at every other scale.
    """
    factors = _scale_factors(opts["scales"])
    batch = _images(model, images)
    single = opts | {"scales": None}
    if len(batch) == 0:
        return _smoothed_or_plain(model, batch, method, layer, class_mask, single)
    n, height, width = batch.shape[:3]
    reference = factors.index(1.0) if 1.0 in factors else 0
    order = [reference] + [k for k in range(len(factors)) if k != reference]
    progress = opts["progress"]
    fused = None
    for step, k in enumerate(order):
        size = scaled_sides(factors[k], height, width)
        scaled = resize(batch, *size, antialias=True).astype(batch.dtype)
        report = None if progress is None else part_progress(progress, step, 1, len(order))
        result = _mirrored(model, scaled, method, layer, class_mask,
                           single | {"progress": report})
        values = result.values if result.has_channels else result.values[..., None]
        values = resize(values, height, width, antialias=True)
        if not result.has_channels:
            values = values[..., 0]
        if step == 0:
            first = result
            if layer in OUTPUT_TARGETS:
                class_mask = result.weights.astype(np.float64)
        if len(factors) > 1 and not RUNNERS[method].same_units(opts):
            peak = np.abs(values).reshape(n, -1).max(axis=1)
            values = values / np.where(peak > 0, peak, 1.0).reshape((n,) + (1,) * (values.ndim - 1))
        fused = values if fused is None else fused + values
    return replace(first, values=(fused / len(factors)).astype(np.float32))
