"""Saliency maps: which input pixels the network's decision is sensitive to.

:func:`saliency` is the one call the dashboard needs: it runs an attribution method
(:data:`METHODS`) on a batch of images and turns the signed per-channel attribution into a
map with a sign mode (:data:`SIGNS`) and a channel reduction (:data:`CHANNEL_REDUCTIONS`).
:func:`to_map` applies those two to an existing :class:`Attribution`, so changing them does
not recompute any gradient.

Why the whole network, with logits (text for the README)
---------------------------------------------------------
The original experiment hit a "gradient explosion" when it differentiated through batch
normalisation in inference mode, so it only differentiated the second convolutional block.
This engine differentiates the full network, input pixels (0..255) to output, with batch
normalisation in inference mode (its moving statistics; dropout off). It differentiates the
logits by default, because the gradient of a softmax probability vanishes when the softmax
is saturated (one class near probability 1): that is the usual cause of useless or unstable
probability gradients. Differentiating ``layer="probabilities"`` is still possible, and a
:class:`SaturationWarning` is raised when the largest probability exceeds 0.999 or the
gradient vanishes, suggesting the logits (or ``"log_probabilities"``) instead. Gradients
are compiled once per model and target (:mod:`sensitivity.engine.gradients`), so changing the
image, its size, the class, the sign or the channel reduction costs no retracing.

Guided backpropagation is offered for comparison only: it is known to fail the
model-randomisation sanity check of Adebayo et al. (2018), "Sanity Checks for Saliency
Maps": its maps barely change when the network's weights are randomised, so they show
image edges more than what the model has learnt.
"""

from __future__ import annotations

import numpy as np

from sensitivity.engine.choices import (
    CHANNEL_REDUCTIONS,
    COMMON_OPTIONS,
    METHODS,
    OUTPUT_TARGETS,
    SIGNS,
    MethodInfo,
    Option,
)
from sensitivity.engine.gradients import layer_names, tracing_count
from sensitivity.methods import Attribution, SaturationWarning, attribute
from sensitivity.methods.localising import rise_masks

__all__ = [
    "CHANNEL_REDUCTIONS",
    "COMMON_OPTIONS",
    "METHODS",
    "OUTPUT_TARGETS",
    "SIGNS",
    "Attribution",
    "MethodInfo",
    "Option",
    "SaturationWarning",
    "apply_sign",
    "attribute",
    "combine_channels",
    "describe_methods",
    "layer_names",
    "rise_masks",
    "saliency",
    "to_map",
    "tracing_count",
]


def describe_methods() -> list[dict]:
    """The methods as plain dicts: name, description, and options with defaults."""
    return [
        {
            "name": name,
            "description": info.description,
            "options": {
                key: {"default": option.default, "description": option.description}
                for key, option in info.options.items()
            },
        }
        for name, info in METHODS.items()
    ]


def apply_sign(values: np.ndarray, sign: str = "abs") -> np.ndarray:
    """Float32 ``values`` (any shape) after the sign mode of :data:`SIGNS`."""
    values = np.asarray(values, np.float32)
    if sign == "abs":
        return np.abs(values)
    if sign == "positive":
        return np.maximum(values, 0.0)
    if sign == "negative":
        return np.maximum(-values, 0.0)
    if sign == "signed":
        return values.copy()
    raise ValueError(f"sign must be one of {list(SIGNS)}, got {sign!r}")


def combine_channels(values: np.ndarray, how: str = "max") -> np.ndarray:
    """``(..., 3)`` float32 values to ``(...)`` (or unchanged for ``"none"``).

    ``"max"`` takes the channel of largest magnitude with its sign (for non-negative values
    that is the plain maximum); ``"sum"`` and ``"l2"`` saturate at float32's largest value.
    """
    values = np.asarray(values, np.float32)
    if how == "none":
        return values
    if how == "max":
        index = np.abs(values).argmax(axis=-1)[..., None]
        return np.take_along_axis(values, index, axis=-1)[..., 0]
    if how in ("sum", "l2"):
        # In float64, then saturated at float32's range: extreme gradients never become inf.
        wide = values.astype(np.float64)
        combined = wide.sum(axis=-1) if how == "sum" else np.sqrt(np.square(wide).sum(axis=-1))
        limit = np.finfo(np.float32).max
        return np.clip(combined, -limit, limit).astype(np.float32)
    raise ValueError(f"reduce_channels must be one of {list(CHANNEL_REDUCTIONS)}, got {how!r}")


def _check_modes(sign: str, how: str) -> None:
    if sign not in SIGNS:
        raise ValueError(f"sign must be one of {list(SIGNS)}, got {sign!r}")
    if how not in CHANNEL_REDUCTIONS:
        raise ValueError(f"reduce_channels must be one of {list(CHANNEL_REDUCTIONS)}, got {how!r}")


def to_map(
    attribution: Attribution | np.ndarray, sign: str = "abs", reduce_channels: str = "max"
) -> np.ndarray:
    """Float32 maps ``(N, H, W)`` (``(N, H, W, 3)`` for ``"none"``) from an attribution.

    Channel-free attributions ``(N, H, W)`` (Grad-CAM, occlusion, CAM, LayerCAM, Score-CAM,
    RISE) only get the sign mode; with ``"none"`` they are repeated into three identical
    channels.
    """
    _check_modes(sign, reduce_channels)
    values = attribution.values if isinstance(attribution, Attribution) else attribution
    signed = apply_sign(values, sign)
    if signed.ndim == 4:
        return combine_channels(signed, reduce_channels)
    if reduce_channels == "none":
        return np.repeat(signed[..., None], 3, axis=-1)
    return signed


def saliency(
    model,
    images,
    *,
    method: str = "gradient",
    layer: str = "logits",
    class_mask=None,
    sign: str = "abs",
    reduce_channels: str = "max",
    **method_options,
) -> np.ndarray:
    """Saliency maps of ``images`` for ``model``: float32 ``(N, H, W)``, or ``(N, H, W, 3)``.

    ``images``: ``(N, H, W, 3)`` or one ``(H, W, 3)`` image (the result still has the batch
    axis), pixel values 0..255, any size the model takes. ``method``: a key of
    :data:`METHODS`. ``layer``: ``"logits"`` (default), ``"probabilities"``,
    ``"log_probabilities"``, ``"position_probabilities"`` (each class's largest probability by
    the model's position head: where the model finds the class) or the name (or
    ``"submodel/name"`` path) of any layer, whose output is reduced by option
    ``layer_reduction`` ("sum", "mean", "l2"), of one ``channel`` if given. ``class_mask``:
    None = each image's predicted class, an int, a list of ints, or a weight vector ``w`` over
    the model's K outputs (the score is ``sum_c w_c out_c``).
    ``sign``: a key of :data:`SIGNS`; ``reduce_channels``: a key of :data:`CHANNEL_REDUCTIONS`.
    ``method_options``: the method's options (:data:`METHODS`) and :data:`COMMON_OPTIONS`.
    Map values are in the score's units per pixel unit (gradients), score units (gradient x
    input, integrated gradients, occlusion, CAM, Grad-CAM, LayerCAM, RISE) or score units times
    the layer's units (Score-CAM); unitless with two or more ``scales``.
    """
    _check_modes(sign, reduce_channels)
    result = attribute(
        model, images, method=method, layer=layer, class_mask=class_mask, **method_options
    )
    return to_map(result, sign, reduce_channels)
