"""The engine's choices as plain data: methods and their options, output targets, layer
reductions, sign modes and channel reductions, with one-line descriptions.

No TensorFlow here, so that a page can draw its controls while TensorFlow is still importing;
:mod:`sensitivity.attribution`, :mod:`sensitivity.gradients` and :mod:`sensitivity.saliency`
validate against these and re-export them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

OUTPUT_TARGETS = ("logits", "probabilities", "log_probabilities")
"""Targets computed from the model's output; any other name is a layer of the model."""

LAYER_REDUCTIONS = ("sum", "mean", "l2")
"""How an inner layer's output ``(N, ..., C)`` becomes one scalar per image."""

SMOOTHGRAD_VARIANTS = ("mean", "squared", "vargrad")
"""SmoothGrad's variants: mean of gradients, mean of their squares, their variance."""

BASELINES = ("black", "blurred", "noise")
"""Integrated Gradients' baselines."""

PATH_SAMPLINGS = ("adaptive", "uniform")
"""How Integrated Gradients places its points on the path
(``sensitivity.attribution._adaptive_path_sums``)."""

ADAPTIVE_ROUNDS = 16
"""Rounds in which adaptive Integrated Gradients places its refinement gradients, each where
the estimate so far misses the forward passes most (more rounds: better placed, more calls)."""


@dataclass(frozen=True)
class Option:
    """One option of a method: its default value and a one-line description."""

    default: object
    description: str


@dataclass(frozen=True)
class MethodInfo:
    """A method's one-line description and options."""

    description: str
    options: dict[str, Option] = field(default_factory=dict)
    channels: bool = True
    """Whether the attribution has one value per RGB channel."""


COMMON_OPTIONS: dict[str, Option] = {
    "layer_reduction": Option(
        "sum", "inner layer only: its output becomes a scalar by 'sum', 'mean' or 'l2'"
    ),
    "channel": Option(None, "inner layer only: reduce this channel alone (None: all channels)"),
    "max_batch": Option(
        64, "most images per forward/backward pass (bounds memory; fewer when images are large)"
    ),
    "progress": Option(None, "callable(fraction 0..1) reporting progress of long methods"),
    "scales": Option(
        None,
        "multi-scale fusion: image scale factors, e.g. (0.5, 1, 2) (None: the image as it is); "
        "each scale's map is resized back; with two or more, each is divided by its largest "
        "|value| per image and they are averaged (unitless); scores are those at scale 1 (else "
        "the first scale), whose class is explained at every scale",
    ),
}
"""Options every method accepts."""

METHODS: dict[str, MethodInfo] = {
    "gradient": MethodInfo("gradient of the target score with respect to each pixel value"),
    "gradient_x_input": MethodInfo(
        "gradient times the pixel value (0..255): a first-order contribution against black"
    ),
    "smoothgrad": MethodInfo(
        "gradient averaged over noisy copies of the image (Smilkov et al. 2017)",
        {
            "samples": Option(50, "number of noisy copies"),
            "noise": Option(0.15, "noise standard deviation as a fraction of the range 0..255"),
            "variant": Option(
                "mean", "'mean' of gradients, 'squared' (mean of squares) or 'vargrad' (variance)"
            ),
            "seed": Option(0, "random seed of the noise (None: a fresh one)"),
        },
    ),
    "integrated_gradients": MethodInfo(
        "path integral of the gradient from a baseline image (Sundararajan et al. 2017)",
        {
            "steps": Option(50, "gradient evaluations along the path"),
            "path_sampling": Option(
                "adaptive",
                "'adaptive': half the points at the middles of steps // 2 segments scored by "
                f"forward passes, the other half in {ADAPTIVE_ROUNDS} rounds, each where the "
                "estimate so far missed the segment's score change most; 'uniform': the "
                "midpoint rule",
            ),
            "baseline": Option("black", "'black', 'blurred' (Gaussian blur) or 'noise' (uniform)"),
            "blur_sigma": Option(4.0, "blurred baseline: Gaussian sigma in 32x32-image pixels"),
            "seed": Option(0, "noise baseline: random seed"),
        },
    ),
    "gradcam": MethodInfo(
        "Grad-CAM: feature maps weighted by their mean gradient, ReLU, upsampled bilinearly",
        {
            "target_layer": Option(None, "layer with a 4-D output (None: the last such layer)"),
            "plus_plus": Option(False, "use the Grad-CAM++ weights (Chattopadhay et al. 2018)"),
        },
        channels=False,
    ),
    "guided_backprop": MethodInfo(
        "gradient passed through ReLUs only where input and incoming gradient are positive; "
        "fails the model-randomisation sanity check (Adebayo et al. 2018)"
    ),
    "occlusion": MethodInfo(
        "gradient-free: drop in the score when a patch covering the pixel is filled",
        {
            "patch": Option(4, "patch side in 32x32-image pixels"),
            "stride": Option(None, "patch step in 32x32-image pixels (None: half the patch)"),
            "fill": Option("mean", "fill value 0..255, an RGB triple, or 'mean' (image's mean)"),
        },
        channels=False,
    ),
    "cam": MethodInfo(
        "CAM (Zhou et al. 2016): the dense head's class weights applied to the last feature map "
        "before global average pooling, sum_k W[k, c] f_k, signed (no ReLU, bias ignored; its "
        "mean is the logit less the bias), upsampled bilinearly; needs a head feature map -> "
        "global average pooling -> Dense logits; one forward pass",
        {},
        channels=False,
    ),
    "layercam": MethodInfo(
        "LayerCAM (Jiang et al. 2021): ReLU(sum_k ReLU(dS/dA_k) A_k) per position of a spatial "
        "layer, upsampled bilinearly",
        {"target_layer": Option(None, "layer with a 4-D output (None: the last such layer)")},
        channels=False,
    ),
    "scorecam": MethodInfo(
        "Score-CAM (Wang et al. 2020): each channel of a layer, upsampled and scaled to 0..1, "
        "masks the image over a fill; its weight is the masked image's score less the fill's; "
        "ReLU(sum_k w_k A_k) upsampled bilinearly; one forward pass per channel",
        {
            "target_layer": Option(None, "layer with a 4-D output (None: the last such layer)"),
            "fill": Option("blur", "what the mask blends with: 'blur', 'black' or 'mean'"),
            "max_channels": Option(
                None, "score only this many channels of largest mean activation per image "
                "(None: all)"
            ),
        },
        channels=False,
    ),
    "rise": MethodInfo(
        "RISE (Petsiuk et al. 2018): sum_n (S_n - mean S) M_n / (masks * keep) over random "
        "smooth masks M_n blending the image with a fill, S_n the masked image's score; score "
        "units; one forward pass per mask",
        {
            "masks": Option(1000, "number of random masks"),
            "grid": Option(7, "cells per side of the random binary grid"),
            "keep": Option(0.5, "probability that a grid cell keeps the image"),
            "fill": Option("blur", "what the mask blends with: 'blur', 'black' or 'mean'"),
            "seed": Option(0, "random seed of the masks"),
        },
        channels=False,
    ),
}
"""Every method, with its description and its own options (besides :data:`COMMON_OPTIONS`)."""


SIGNS: dict[str, str] = {
    "abs": "magnitude |g|: sensitivity in either direction",
    "positive": "max(g, 0): pixels whose increase raises the score",
    "negative": "max(-g, 0): pixels whose increase lowers the score",
    "signed": "g itself, positive and negative",
}
"""Sign modes applied to the attribution ``g``, with one-line descriptions."""

CHANNEL_REDUCTIONS: dict[str, str] = {
    "max": "largest value over RGB (signed: the value of largest magnitude, sign kept)",
    "sum": "sum over RGB",
    "l2": "Euclidean norm over RGB",
    "none": "keep the three channels: maps of shape (N, H, W, 3)",
}
"""How the three colour channels become one value per pixel."""

FILLS = ("blur", "black", "mean")
"""What Score-CAM and RISE blend a masked image with: the image blurred by a Gaussian of
:data:`FILL_BLUR_SIGMA`, black, or the image's mean colour."""

FILL_BLUR_SIGMA = 4.0
"""Gaussian sigma of the 'blur' fill, in pixels of a 32x32 image (scaled with the image)."""
