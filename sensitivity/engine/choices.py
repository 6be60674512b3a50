"""The engine's choices as plain data: methods and their options, output targets, layer
reductions, sign modes and channel reductions, with one-line descriptions.

No TensorFlow here, so that a page can draw its controls while TensorFlow is still importing;
:mod:`sensitivity.methods`, :mod:`sensitivity.engine.gradients` and
:mod:`sensitivity.engine.saliency` validate against these and re-export them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace

POSITION_TARGET = "position_probabilities"
"""The output target read from the model's position head rather than its logits: each class's
largest probability over the positions of the feature map CAM reads
(:mod:`sensitivity.engine.position_target`); only for a model with a position head."""

CAM_DETAIL_POWER = 0.5
"""The power of the gradient magnitude in CAM's ``detail`` (chosen on validation, see
``benchmarks/README.md``, session 35)."""

OUTPUT_TARGETS = ("logits", "probabilities", "log_probabilities", POSITION_TARGET)
"""Targets with one value per class (weighted by a class mask); any other name is a layer of
the model."""

LAYER_REDUCTIONS = ("sum", "mean", "l2")
"""How an inner layer's output ``(N, ..., C)`` becomes one scalar per image."""

SMOOTHGRAD_VARIANTS = ("mean", "squared", "vargrad")
"""SmoothGrad's variants: mean of gradients, mean of their squares, their variance."""

BASELINES = ("black", "blurred", "noise")
"""Integrated Gradients' baselines."""

PATH_SAMPLINGS = ("adaptive", "uniform")
"""How Integrated Gradients places its points on the path
(:mod:`sensitivity.methods.path_sampling`)."""

ADAPTIVE_ROUNDS = 16
"""Rounds in which adaptive Integrated Gradients places its refinement gradients, each where
the estimate so far misses the forward passes most (more rounds: better placed, more calls)."""


OPTION_KINDS = ("int", "float", "choice", "bool", "layer")
"""What an option's value is: a whole number or a number in ``minimum..maximum``, one of
``choices``, true or false, or a layer name. An option without a kind (None) is set only by
library calls (a callable, an array, ...): the page, its links and the command line leave it
at its default."""



class _LibraryDefault:
    def __repr__(self) -> str:
        return "LIBRARY_DEFAULT"


_LIBRARY_DEFAULT = _LibraryDefault()  # page_default when the page starts at the library's default
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


@dataclass(frozen=True)
class Option:
    """One option of a method: its default value, a one-line description and, for an option
    that the page, its links or the command line can set, what values it takes.

    ``kind``: one of :data:`OPTION_KINDS` (None: library calls only). ``minimum``, ``maximum``:
    the range an ``"int"`` or ``"float"`` takes from the page, a link or the command line (the
    library itself accepts more). ``step``: the page's slider step. ``choices``: the values of
    a ``"choice"``. ``optional``: None is also a value (written ``none``). ``shown``: the page
    has a control for it, labelled ``label``, starting at ``page_default`` (when it differs
    from ``default``, e.g. fewer samples for a quick first map).
    """

    default: object
    description: str
    kind: str | None = None
    minimum: float | None = None
    maximum: float | None = None
    step: float | None = None
    choices: tuple = ()
    optional: bool = False
    shown: bool = False
    label: str = ""
    page_default: object = _LIBRARY_DEFAULT
    measured_apart: bool | None = None
    """Whether a model card's ``measured_localisation`` lists the method with another value of
    this option apart (:func:`sensitivity.render.report.figures_label`); None: switches (bool
    and choice options) are, quantities such as a sample count, which make the same map more or
    less precisely, are not."""
    shown_with: str = ""
    """The shown bool option of the same method that this shown option acts under (empty:
    none): the page draws this one's control only while that one is on
    (:func:`sensitivity.web.settings.option_controls`)."""

    def __post_init__(self) -> None:
        if self.kind is not None and self.kind not in OPTION_KINDS:
            raise ValueError(f"option kind must be one of {OPTION_KINDS}, got {self.kind!r}")
        if self.kind in ("int", "float") and (self.minimum is None or self.maximum is None):
            raise ValueError(f"an {self.kind} option needs a minimum and a maximum")
        if self.kind == "int" and not all(isinstance(v, int) for v in (self.minimum, self.maximum)):
            raise ValueError("an int option's minimum and maximum are whole numbers")
        if self.kind == "choice" and not self.choices:
            raise ValueError("a choice option needs its choices")
        if self.shown and (self.kind in (None, "layer") or self.optional):
            raise ValueError("the page shows only int, float, choice and bool options, never None")
        for value in (self.default, self.initial):
            if self.kind is not None and self.check(value) != value:
                raise ValueError(f"default {value!r} is not a value of this option")

    @property
    def initial(self) -> object:
        """The value the page starts from."""
        return self.default if self.page_default is _LIBRARY_DEFAULT else self.page_default

    @property
    def apart_in_figures(self) -> bool:
        """:attr:`measured_apart`, or when None whether this option is a switch (bool or
        choice)."""
        if self.measured_apart is None:
            return self.kind in ("bool", "choice")
        return self.measured_apart

    @property
    def caption(self) -> str:
        """The page control's label."""
        return self.label or self.description

    def expected(self) -> str:
        """What a value must be, in words (for messages)."""
        if self.kind == "int":
            text = f"a whole number from {self.minimum} to {self.maximum}"
        elif self.kind == "float":
            text = f"a number from {self.minimum} to {self.maximum}"
        elif self.kind == "choice":
            text = "one of " + ", ".join(str(c) for c in self.choices)
        elif self.kind == "bool":
            text = "1 or 0 (true or false)"
        elif self.kind == "layer":
            text = "a layer name"
        else:
            return "a value set only by library calls"
        return text + (", or none" if self.optional else "")

    def read(self, text: str) -> object:
        """The value written as ``text`` (in a link or on the command line), not yet checked
        against the range (see :meth:`check`); ValueError when ``text`` is no value of this
        option at all (a word for a number, an unknown choice, a number that is not finite)."""
        text = text.strip()
        if self.optional and text.lower() in ("none", ""):
            return None
        if self.kind == "int" and re.fullmatch(r"[+-]?[0-9]{1,4000}", text):
            return int(text)
        if self.kind == "float":
            try:
                value = float(text)
            except ValueError:
                pass
            else:
                if math.isfinite(value):
                    return value
        if self.kind == "choice":
            for choice in self.choices:
                if str(choice) == text:
                    return choice
        if self.kind == "bool" and text.lower() in _TRUE + _FALSE:
            return text.lower() in _TRUE
        if self.kind == "layer" and 0 < len(text) <= 200 and text.isprintable():
            return text
        raise ValueError(f"expected {self.expected()}")

    def check(self, value: object) -> object:
        """``value`` if it is a value of this option, a number clamped into
        ``minimum..maximum``; ValueError if it is of the wrong type (or not finite)."""
        if value is None and self.optional:
            return None
        if self.kind == "int" and isinstance(value, int) and not isinstance(value, bool):
            return int(min(max(value, self.minimum), self.maximum))
        if (self.kind == "float" and isinstance(value, (int, float))
                and not isinstance(value, bool) and math.isfinite(value)):
            return float(min(max(value, self.minimum), self.maximum))
        if self.kind == "choice" and value in self.choices:
            return value
        if self.kind == "bool" and isinstance(value, bool):
            return value
        if self.kind == "layer" and isinstance(value, str) and value:
            return value
        raise ValueError(f"expected {self.expected()}, got {value!r}")

    def format(self, value: object) -> str:
        """``value`` as :meth:`read` reads it back."""
        if value is None:
            return "none"
        if isinstance(value, bool):
            return "1" if value else "0"
        return str(value)


MIN_SIDE, MAX_SIDE = 8, 1024
"""The least and the largest analysis side, pixels, that the page's links, ``explain --size``
and a card's ``localisation`` rule accept; no resize for analysis goes below ``MIN_SIDE``."""

NATIVE_SIZE = 32
"""Side of the images the shipped models were trained on (CIFAR-10), pixels: the default native
size of a model whose card does not say (:func:`sensitivity.model.cards.model_card`), and the
reference side in whose pixels the methods' lengths (patches, blur widths) are stated."""

BACKWARD_COST = 2
"""A backward pass costs about this many forward passes (the cost model's convention)."""


@dataclass(frozen=True)
class Passes:
    """Passes through the network that one image takes at one scale. A gradient counts as one
    forward and one backward pass; a forward pass to an inner layer counts as a whole one."""

    forward: int
    backward: int = 0

    @property
    def equivalent(self) -> int:
        """Forward-pass equivalents: ``forward + BACKWARD_COST * backward``."""
        return self.forward + BACKWARD_COST * self.backward

    def __mul__(self, times: int) -> Passes:
        """The passes of ``times`` runs."""
        return Passes(self.forward * times, self.backward * times)


Cost = Callable[[dict, int, int, int], Passes]
"""A method's cost formula: ``cost(options, height, width, channels)`` -> :class:`Passes` of
one image of ``height`` x ``width`` pixels, ``options`` completed with their defaults,
``channels`` the number of channels of the target layer (Score-CAM's masks)."""


def scaled_length(value: float, size: int) -> int:
    """A length in pixels of a :data:`NATIVE_SIZE` image as pixels of an image side ``size``
    (at least 1, at most ``size``)."""
    return max(1, min(size, round(value * size / NATIVE_SIZE)))


MIN_SCALED_SIDE = 8
"""Multi-scale fusion (option ``scales``) never shrinks an image side below this many pixels."""


def scaled_sides(factor: float, height: int, width: int) -> tuple[int, int]:
    """``(height, width)`` of an image resized by ``factor`` in multi-scale fusion."""
    return tuple(max(MIN_SCALED_SIDE, round(factor * side)) for side in (height, width))


def patch_starts(size: int, patch: int, stride: int) -> list[int]:
    """Where occlusion's patches of ``patch`` pixels start along a side of ``size`` pixels,
    ``stride`` apart, the last one flush with the end."""
    starts = list(range(0, size - patch + 1, stride))
    if starts[-1] != size - patch:
        starts.append(size - patch)
    return starts


@dataclass(frozen=True)
class MethodInfo:
    """A method's one-line description and options."""

    description: str
    options: dict[str, Option] = field(default_factory=dict)
    channels: bool = True
    """Whether the attribution has one value per RGB channel."""
    slow: bool = False
    """Whether a map takes many passes (the page shows a progress bar)."""
    caveat: str = ""
    """A known failure, told beside the map (empty: none)."""
    caveat_above_native: bool = False
    """Whether :attr:`caveat` applies only to analyses larger than the model's native size."""
    cost: Cost | None = None
    """Its cost formula (see :data:`Cost`; ``sensitivity.engine.budget.estimate_work`` sums it over
    images and scales)."""

    def __post_init__(self) -> None:
        for name, option in self.options.items():
            switch = self.options.get(option.shown_with) if option.shown_with else None
            if option.shown_with and not (option.shown and switch is not None
                                          and switch.shown and switch.kind == "bool"):
                raise ValueError(f"option {name!r} is shown with {option.shown_with!r}: both "
                                 "must be shown, and that one a bool option of the method")

    def caveat_at(self, size: int, native_size: int = NATIVE_SIZE, layer: str = "logits") -> str:
        """The caveat that applies to a map of a ``size`` x ``size`` analysis of a model of
        ``native_size`` explaining ``layer`` ("" if none). A caveat above the native size
        concerns the model's whole-picture output: explaining the position head's target
        (:data:`POSITION_TARGET`), these methods were measured to find the object."""
        if self.caveat_above_native and (size <= native_size or layer == POSITION_TARGET):
            return ""
        return self.caveat


FILLS = ("blur", "black", "mean")
"""What Score-CAM and RISE blend a masked image with: the image blurred by a Gaussian of
:data:`FILL_BLUR_SIGMA`, black, or the image's mean colour."""

FILL_BLUR_SIGMA = 4.0
"""Gaussian sigma of the 'blur' fill, in pixels of a 32x32 image (scaled with the image)."""


COMMON_OPTIONS: dict[str, Option] = {
    "layer_reduction": Option(
        "sum", "inner layer only: its output becomes a scalar by 'sum', 'mean' or 'l2'",
        kind="choice", choices=LAYER_REDUCTIONS,
    ),
    "channel": Option(None, "inner layer only: reduce this channel alone (None: all channels)",
                      kind="int", minimum=0, maximum=65535, optional=True),
    "max_batch": Option(
        64, "most images per forward/backward pass (bounds memory; fewer when images are large)",
        kind="int", minimum=1, maximum=4096,
    ),
    "progress": Option(None, "callable(fraction 0..1) reporting progress of long methods"),
    "scales": Option(
        None,
        "multi-scale fusion: image scale factors, e.g. (0.5, 1, 2) (None: the image as it is); "
        "each scale's map is resized back; with two or more, each is divided by its largest "
        "|value| per image and they are averaged (unitless); scores are those at scale 1 (else "
        "the first scale), whose class is explained at every scale",
    ),
    "mirror": Option(
        False, "also attribute each image's left-right mirror image, mirror that map back and "
        "average it with the image's (twice the passes); the class explained and the scores are "
        "the image's own", kind="bool",
    ),
    "smooth_samples": Option(
        0, "SmoothGrad for any method: also attribute this many noisy copies of the image, "
        "with the image's own class, and reduce their maps by smooth_variant (0: off)",
        kind="int", minimum=0, maximum=128, shown=True, label="Smooth: noisy copies (0: off)",
    ),
    "smooth_noise": Option(
        0.15, "noise standard deviation of smooth_samples, as a fraction of the range 0..255",
        kind="float", minimum=0.0, maximum=0.5, step=0.01, shown=True,
        label="Smooth: noise (fraction of 0..255)",
    ),
    "smooth_variant": Option(
        "mean", "how smooth_samples' maps are reduced: 'mean', 'squared' (mean of squares) or "
        "'vargrad' (variance)", kind="choice", choices=SMOOTHGRAD_VARIANTS,
    ),
    "smooth_seed": Option(0, "random seed of smooth_samples' noise (None: a fresh one)",
                          kind="int", minimum=0, maximum=2**32 - 1, optional=True),
}
"""Options every method accepts."""

_SCATTERS = (
    "the vanilla gradient of the model's output above the native size scatters over the whole "
    "picture and rarely finds the object (measured: see benchmarks/README.md); to find objects "
    f"use cam, or explain the layer {POSITION_TARGET}"
)

_ONE_GRADIENT = Passes(1, 1)
"""The cost of the single-pass gradient methods: one gradient, which also gives the scores."""


def _integrated_gradients_cost(options: dict, _height: int, _width: int, _channels: int) -> Passes:
    """The scores, the baseline's score, ``steps`` gradients and, with adaptive sampling, the
    ``steps // 2 - 1`` inner ends of its segments."""
    steps = options["steps"]
    inner = max(1, steps // 2) - 1 if options["path_sampling"] == "adaptive" else 0
    return Passes(2 + steps + inner, steps)


def _occlusion_cost(options: dict, height: int, width: int, _channels: int) -> Passes:
    """The scores, then one forward pass per patch position."""
    patch = options["patch"]
    stride = patch / 2 if options["stride"] is None else options["stride"]
    positions = 1
    for side in (height, width):
        positions *= len(patch_starts(side, scaled_length(patch, side),
                                      scaled_length(stride, side)))
    return Passes(1 + positions)


def _scorecam_cost(options: dict, _height: int, _width: int, channels: int) -> Passes:
    """The scores, the features, the fill's score, one forward pass per scored channel."""
    limit = options["max_channels"]
    return Passes(3 + (channels if limit is None else min(limit, channels)))


METHODS: dict[str, MethodInfo] = {
    "gradient": MethodInfo("gradient of the target score with respect to each pixel value",
                           caveat=_SCATTERS, caveat_above_native=True,
                           cost=lambda options, h, w, c: _ONE_GRADIENT),
    "gradient_x_input": MethodInfo(
        "gradient times the pixel value (0..255): a first-order contribution against black",
        caveat=_SCATTERS, caveat_above_native=True, cost=lambda options, h, w, c: _ONE_GRADIENT,
    ),
    "smoothgrad": MethodInfo(
        "gradient averaged over noisy copies of the image (Smilkov et al. 2017)",
        {
            "samples": Option(50, "number of noisy copies", kind="int", minimum=1, maximum=128,
                              shown=True, label="Samples", page_default=32),
            "noise": Option(0.15, "noise standard deviation as a fraction of the range 0..255",
                            kind="float", minimum=0.0, maximum=0.5, step=0.01, shown=True,
                            label="Noise (fraction of 0..255)"),
            "variant": Option(
                "mean", "'mean' of gradients, 'squared' (mean of squares) or 'vargrad' (variance)",
                kind="choice", choices=SMOOTHGRAD_VARIANTS, shown=True, label="Variant",
            ),
            "seed": Option(0, "random seed of the noise (None: a fresh one)", kind="int",
                           minimum=0, maximum=2**32 - 1, optional=True),
        },
        slow=True,
        # the scores, then one gradient per noisy copy
        cost=lambda options, h, w, c: Passes(1 + options["samples"], options["samples"]),
    ),
    "integrated_gradients": MethodInfo(
        "path integral of the gradient from a baseline image (Sundararajan et al. 2017)",
        {
            "steps": Option(50, "gradient evaluations along the path", kind="int", minimum=2,
                            maximum=256, shown=True, label="Steps", page_default=32),
            "path_sampling": Option(
                "adaptive",
                "'adaptive': half the points at the middles of steps // 2 segments scored by "
                f"forward passes, the other half in {ADAPTIVE_ROUNDS} rounds, each where the "
                "estimate so far missed the segment's score change most; 'uniform': the "
                "midpoint rule",
                kind="choice", choices=PATH_SAMPLINGS, shown=True, label="Path sampling",
            ),
            "baseline": Option("black", "'black', 'blurred' (Gaussian blur) or 'noise' (uniform)",
                               kind="choice", choices=BASELINES, shown=True, label="Baseline"),
            "blur_sigma": Option(4.0, "blurred baseline: Gaussian sigma in 32x32-image pixels",
                                 kind="float", minimum=0.5, maximum=16.0, step=0.5),
            "seed": Option(0, "noise baseline: random seed (None: a fresh one)", kind="int",
                           minimum=0, maximum=2**32 - 1, optional=True),
        },
        slow=True,
        cost=_integrated_gradients_cost,
    ),
    "gradcam": MethodInfo(
        "Grad-CAM: feature maps weighted by their mean gradient, ReLU, upsampled bilinearly",
        {
            "target_layer": Option(None, "layer with a 4-D output (None: the last such layer)",
                                   kind="layer", optional=True),
            "plus_plus": Option(False, "use the Grad-CAM++ weights (Chattopadhay et al. 2018)",
                                kind="bool", shown=True, label="Grad-CAM++ weights"),
        },
        channels=False,
        # the predicted class's forward pass (none with a class mask), then one gradient
        cost=lambda options, h, w, c: Passes(2, 1),
    ),
    "guided_backprop": MethodInfo(
        "gradient passed through ReLUs only where input and incoming gradient are positive; "
        "fails the model-randomisation sanity check (Adebayo et al. 2018)",
        caveat=_SCATTERS, caveat_above_native=True, cost=lambda options, h, w, c: _ONE_GRADIENT,
    ),
    "occlusion": MethodInfo(
        "gradient-free: drop in the score when a patch covering the pixel is filled",
        {
            "patch": Option(4, "patch side in 32x32-image pixels", kind="int", minimum=1,
                            maximum=16, shown=True, label="Patch (pixels of 32x32)"),
            "stride": Option(None, "patch step in 32x32-image pixels (None: half the patch)",
                             kind="float", minimum=0.5, maximum=16.0, optional=True),
            "fill": Option("mean", "fill value 0..255, an RGB triple, or 'mean' (image's mean)"),
        },
        channels=False,
        slow=True,
        cost=_occlusion_cost,
    ),
    "cam": MethodInfo(
        "CAM (Zhou et al. 2016): the dense head's class weights applied to the last feature map "
        "before global average pooling, sum_k W[k, c] f_k, signed (no ReLU, bias ignored; its "
        "mean is the logit less the bias), upsampled bilinearly; needs a head feature map -> "
        "global average pooling -> Dense logits; one forward pass",
        {"probability": Option(
            False, "each position's class probability, 0..1: by the model's position head when "
            "its card names one (fitted on scenes with the model frozen: python -m sensitivity "
            "fit-positions; the WRN-16-3's), else the dense head with its bias applied to each "
            "position and each class's logit through a sigmoid, sigmoid(b_c + sum_k W[k, c] f_k) "
            "(for a model trained per position, wrn-16-3-scenes, the share of that position the "
            "class covers)",
            kind="bool", shown=True, label="per-position probability", page_default=True),
         "exponent": Option(
            1, "per-position probability only: the map is the probability raised to this power; "
            "above 1 it fades the positions where the class is unsure, so that the map's mass "
            "stays on the object of the class and leaves an object of a look-alike class; the "
            "page starts at 3, chosen on validation scenes (see DEFAULT_METHOD)",
            kind="int", minimum=1, maximum=8, shown=True, label="probability exponent",
            page_default=3, measured_apart=True, shown_with="probability"),
         "detail": Option(
            False, "multiply the map by each pixel's sensitivity: the magnitude (largest over the "
            "colour channels) of the gradient of the position head's target "
            f"({POSITION_TARGET}; the logits' for a model without a position head) for the same "
            f"classes, to the power {CAM_DETAIL_POWER}, as Guided Grad-CAM multiplies Grad-CAM by "
            "a gradient; the map keeps CAM's regions, and within them ranks the pixels the class "
            "depends on (chosen on validation for the faithfulness of ROAD's insertion, see "
            "DEFAULT_METHOD); one more gradient",
            kind="bool", shown=True, label="pixel detail", page_default=True),
         # The common option, shown for CAM alone: its page default doubles the passes.
         "mirror": replace(
             COMMON_OPTIONS["mirror"], shown=True, label="average with the mirror image",
             page_default=True, description=COMMON_OPTIONS["mirror"].description + "; the page "
             "starts with it on for CAM, chosen on validation scenes (see DEFAULT_METHOD)")},
        channels=False,
        cost=lambda options, h, w, c: Passes(2, 1) if options["detail"] else Passes(1),
    ),
    "layercam": MethodInfo(
        "LayerCAM (Jiang et al. 2021): ReLU(sum_k ReLU(dS/dA_k) A_k) per position of a spatial "
        "layer, upsampled bilinearly",
        {"target_layer": Option(None, "layer with a 4-D output (None: the last such layer)",
                                kind="layer", optional=True)},
        channels=False,
        # the predicted class's forward pass (none with a class mask), then one gradient
        cost=lambda options, h, w, c: Passes(2, 1),
    ),
    "scorecam": MethodInfo(
        "Score-CAM (Wang et al. 2020): each channel of a layer, upsampled and scaled to 0..1, "
        "masks the image over a fill; its weight is the masked image's score less the fill's; "
        "ReLU(sum_k w_k A_k) upsampled bilinearly; one forward pass per channel",
        {
            "target_layer": Option(None, "layer with a 4-D output (None: the last such layer)",
                                   kind="layer", optional=True),
            "fill": Option("blur", "what the mask blends with: 'blur', 'black' or 'mean'",
                           kind="choice", choices=FILLS),
            "max_channels": Option(
                None, "score only this many channels of largest mean activation per image "
                "(None: all)", kind="int", minimum=1, maximum=4096, optional=True,
            ),
        },
        channels=False,
        slow=True,
        cost=_scorecam_cost,
    ),
    "rise": MethodInfo(
        "RISE (Petsiuk et al. 2018): sum_n (S_n - mean S) M_n / (masks * keep) over random "
        "smooth masks M_n blending the image with a fill, S_n the masked image's score; score "
        "units; one forward pass per mask",
        {
            "masks": Option(1000, "number of random masks", kind="int", minimum=10,
                            maximum=4000, step=10, shown=True, label="Masks",
                            page_default=500),
            "grid": Option(7, "cells per side of the random binary grid", kind="int", minimum=2,
                           maximum=32),
            "keep": Option(0.5, "probability that a grid cell keeps the image", kind="float",
                           minimum=0.05, maximum=0.95),
            "fill": Option("blur", "what the mask blends with: 'blur', 'black' or 'mean'",
                           kind="choice", choices=FILLS),
            "seed": Option(0, "random seed of the masks", kind="int", minimum=0,
                           maximum=2**32 - 1),
        },
        channels=False,
        slow=True,
        # the scores, then one forward pass per mask
        cost=lambda options, h, w, c: Passes(1 + options["masks"]),
    ),
}
"""Every method, with its description and its own options (besides :data:`COMMON_OPTIONS`)."""

DEFAULT_METHOD = "cam"
"""The page's method, with its ``probability`` switch on and its ``exponent`` at 3 (those options'
page defaults): each position's class probability by the model's position head, cubed, times
each pixel's sensitivity (``detail``), averaged with the same map of the mirror image
(``mirror``). Chosen on 150 validation scenes
(``benchmarks/tune_localisation.py``, ``benchmarks/tune-localisation.md``, sessions 32 to 34):
for the WRN-16-3 with its position head the probability points at the asked object 0.906-0.919
of the time at sides 112 to 144 and its first box finds it 0.752-0.801 of the time, against
0.733-0.798 and 0.355-0.427 for Grad-CAM (the default before); cubing it changes neither where
its maximum lies nor the order of its pixels, but keeps its mass on the asked object when a
second object is of a look-alike class (``benchmarks/tune-exponent.md``; with session 34's head,
discrimination 0.884 plain, 0.923 cubed). Its ``detail`` switch is on too (session 35,
``benchmarks/README.md``): on 100 native validation images, ROAD's insertion curve of the cubed
map alone is above the random order's by 0.031 (0.017), within two standard errors, and by 0.072
(0.016) with the map times the square root of the position head's gradient magnitude (0.060 with
its fourth root, 0.079 with the magnitude itself), its deletion curve below random's by 0.308
(0.021); on the 150 validation scenes that map points 0.915 and tells objects apart 0.911 (0.912
and 0.923 without); one forward pass and one gradient. Its ``mirror`` switch is on too (session
36): on 600 validation scenes, more than before, the map with the detail told objects apart
only 0.895 (0.010), 0.908 without the detail; averaged with the mirror image's map it points
0.909 (0.008) and tells them apart 0.915 (0.009), and on 500 native validation images its ROAD
insertion is above random's by 0.045 (0.008), its deletion below by 0.278 (0.010); twice the
passes. ``sensitivity.saliency`` with ``method="cam"`` alone is plain CAM (the dense head's
weights)."""


def method_option_specs(method: str) -> dict[str, Option]:
    """Every option ``method`` takes: :data:`COMMON_OPTIONS` and its own (ValueError for an
    unknown method)."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    return {**COMMON_OPTIONS, **METHODS[method].options}


def shown_options() -> dict[str, Option]:
    """The options the page shows, over all methods, by name: a name means one setting (one
    control, one key of the link) whichever method uses it, so methods that share a shown
    option's name must declare it alike (ValueError otherwise)."""
    found: dict[str, Option] = {}
    for method, info in METHODS.items():
        for name, option in info.options.items():
            if not option.shown:
                continue
            if name in found and found[name] != option:
                raise ValueError(f"{method} declares the shown option {name!r} unlike another "
                                 "method; give it another name")
            found[name] = option
    return found


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


def method_table() -> str:
    """The methods and their options as a Markdown table (README.md holds it verbatim)."""

    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    rows = [
        "| method | option | default | page default | values from the page, a link or "
        "`--option` | meaning |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    groups = [(f"`{name}`", info.description, info.options) for name, info in METHODS.items()]
    groups.append(("every method", "options that every method takes", COMMON_OPTIONS))
    for title, description, options in groups:
        rows.append(f"| {title} | | | | | {cell(description)} |")
        for name, option in options.items():
            page = f"`{option.initial!r}`" if option.shown else ""
            rows.append(f"| | `{name}` | `{option.default!r}` | {page} | "
                        f"{cell(option.expected())} | {cell(option.description)} |")
    return "\n".join(rows) + "\n"

