"""What a request costs, and the operator's budget per request.

:func:`estimate_work` counts the passes through the network that a method's map takes, from
its options and the image size (each method's formula is declared once, beside its entry in
:data:`sensitivity.engine.choices.METHODS`), and the work in *forward-pass pixels*: forward-pass
equivalents (a backward pass counts as :data:`sensitivity.engine.choices.BACKWARD_COST` forward
passes) times the pixels of each pass, summed over images and scales. :func:`check_budget`
compares it with the operator's limit (``$SENSITIVITY_MAX_WORK``, :func:`max_work`) and says
what would fit. No TensorFlow here, unless a model is given to read a layer's channels from.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sensitivity.engine.choices import (
    METHODS,
    Passes,
    method_option_specs,
    scaled_sides,
)
from sensitivity.web.settings import SIZES

MAX_WORK_VARIABLE = "SENSITIVITY_MAX_WORK"
"""The environment variable holding the operator's limit, in forward-pass pixels per request
(unset or empty: no limit)."""

SCORECAM_CHANNELS = 192
"""Channels of the shipped model's last spatial layer (``final_relu`` of WRN-16-3): one
Score-CAM forward pass each."""

FORWARD_PIXELS_PER_SECOND = 150_000.0
"""Forward-pass pixels per second on the 2-core development machine, measured while other
jobs shared its cores (so pessimistic): a forward pass of 64 images of 32x32 took 0.32 s
(0.20 M/s), one of 4 images of 224x224 1.4 s (0.14 M/s); a gradient took 1.5 to 1.8 times
a forward pass (the cost model counts 3)."""

@dataclass(frozen=True)
class Work:
    """The cost of ``method`` with ``options`` (completed with their defaults) on ``images``
    images of ``height`` x ``width`` pixels (``channels``: Score-CAM's channel count):
    ``forward`` and ``backward`` passes over all images and scales, and ``forward_pixels``,
    each pass's forward-pass equivalents times its pixels, summed."""

    method: str
    options: dict
    height: int
    width: int
    images: int
    channels: int
    forward: int
    backward: int
    forward_pixels: int

    @property
    def passes(self) -> int:
        """Forward-pass equivalents over all images and scales: ``forward + BACKWARD_COST *
        backward``."""
        return Passes(self.forward, self.backward).equivalent

    @property
    def seconds(self) -> float:
        """Rough time on this server, seconds (:data:`FORWARD_PIXELS_PER_SECOND`)."""
        return self.forward_pixels / FORWARD_PIXELS_PER_SECOND


def _millions(value: float) -> str:
    return f"{value / 1e6:.3g} M"


def summary(works: Sequence[Work]) -> str:
    """The total of ``works`` in words, e.g. "about 113 forward passes (5.67 M forward-pass
    pixels), ~38 s on this server"."""
    pixels = sum(w.forward_pixels for w in works)
    return (f"about {sum(w.passes for w in works):,} forward passes ({_millions(pixels)} "
            f"forward-pass pixels), ~{pixels / FORWARD_PIXELS_PER_SECOND:.0f} s on this server")


def target_channels(model, options: Mapping) -> int:
    """Channels of Score-CAM's target layer in ``model`` (option ``target_layer``, None: the
    last spatial layer). Imports TensorFlow."""
    from sensitivity.engine.gradients import last_spatial_layer, layer_shape

    layer = options.get("target_layer") or last_spatial_layer(model)
    return int(layer_shape(model, layer)[-1])


def estimate_work(method: str, options: Mapping, height: int, width: int, images: int = 1,
                  model=None, channels: int | None = None) -> Work:
    """The :class:`Work` of ``method`` with ``options`` (missing ones at their defaults; those
    of no cost, such as ``progress``, ignored) on ``images`` images of ``height`` x ``width``
    pixels, every scale of option ``scales`` counted at its own size, option ``mirror``
    twice. ``channels``: the channels of Score-CAM's target layer (None: read from ``model``
    when given, else :data:`SCORECAM_CHANNELS`). ValueError for an unknown method or one
    without a cost."""
    specs = method_option_specs(method)
    cost = METHODS[method].cost
    if cost is None:
        raise ValueError(f"{method} declares no cost formula")
    full = {name: spec.default for name, spec in specs.items()} | dict(options)
    if channels is None:
        channels = SCORECAM_CHANNELS if model is None or method != "scorecam" else (
            target_channels(model, full))
    factors = [1.0] if full["scales"] is None else [float(f) for f in full["scales"]]
    forward = backward = pixels = 0
    for factor in factors:
        h, w = (height, width) if full["scales"] is None else scaled_sides(factor, height,
                                                                             width)
        # The noise tunnel: the image, then smooth_samples noisy copies, each at full cost.
        # Option mirror: all of it again on the mirror image.
        passes = cost(full, h, w, channels) * (1 + (full.get("smooth_samples") or 0)) * (
            2 if full.get("mirror") else 1)
        forward += passes.forward * images
        backward += passes.backward * images
        pixels += passes.equivalent * h * w * images
    return Work(method, full, height, width, images, channels, forward, backward, pixels)


def max_work(environ: Mapping[str, str] = os.environ) -> float | None:
    """The operator's limit in forward-pass pixels per request, from ``$SENSITIVITY_MAX_WORK``
    (e.g. ``16000000`` or ``16e6``); None when unset or empty (no limit). ValueError when it
    is not a positive number."""
    text = environ.get(MAX_WORK_VARIABLE, "").strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{MAX_WORK_VARIABLE} must be a positive number of forward-pass "
                         f"pixels, got {text[:40]!r}")
    return value


def _again(work: Work, **changes) -> Work:
    """``work`` re-estimated with some options, sizes or the image count changed."""
    options = work.options | changes.pop("options", {})
    size = {"height": work.height, "width": work.width, "images": work.images} | changes
    return estimate_work(work.method, options, size["height"], size["width"], size["images"],
                         channels=work.channels)


def _fitting_option(work: Work, name: str, limit: float) -> str | None:
    """The value of int option ``name`` nearest its current one at which ``work`` fits, in
    words ("at most 40 steps", "patch at least 9"); None when none does or it costs nothing."""
    spec = METHODS[work.method].options[name]
    low, high = int(spec.minimum), int(spec.maximum)

    def cost(value: int) -> int:
        return _again(work, options={name: value}).forward_pixels

    if cost(low) == cost(high):
        return None
    rising = cost(high) > cost(low)
    current = work.options[name]
    # Binary search for the fitting value nearest the current one (cost is monotonic in it).
    bad, good = (current, low) if rising else (current, high)
    if cost(good) > limit:
        return None
    while abs(good - bad) > 1:
        middle = (good + bad) // 2
        if cost(middle) <= limit:
            good = middle
        else:
            bad = middle
    return f"at most {good} {name}" if rising else f"{name} at least {good}"


def check_budget(work: Work, limit: float | None, sizes: Sequence[int] = SIZES) -> str | None:
    """None when ``work`` fits ``limit`` forward-pass pixels (None: no limit), else a message
    naming settings that fit: the method's shown whole-number options at this size, the
    current options at a smaller size of ``sizes`` (square images; default the page's analysis
    sizes), fewer images."""
    if limit is None or work.forward_pixels <= limit:
        return None
    side = max(work.height, work.width)
    fits = []
    for name, spec in METHODS[work.method].options.items():
        if spec.shown and spec.kind == "int":
            fitting = _fitting_option(work, name, limit)
            if fitting is not None:
                fits.append(f"{fitting} at {side} px")
    if work.height == work.width:
        smaller = [s for s in sizes if s < side
                   and _again(work, height=s, width=s).forward_pixels <= limit]
        if smaller:
            fits.append(f"the same settings at {max(smaller)} px")
    per_image = work.forward_pixels / work.images
    if work.images > 1 and per_image <= limit:
        count = int(limit // per_image)
        fits.append(f"{count} image{'s' * (count > 1)} at a time")
    advice = ("use " + ", or ".join(fits)) if fits else (
        "nothing near these settings fits: choose a smaller size or a single-pass method "
        "such as gradcam")
    return (f"this request ({work.method} on {work.images} image{'s' * (work.images > 1)} "
            f"at {work.height}x{work.width}) needs {_millions(work.forward_pixels)} "
            f"forward-pass pixels; the server allows {_millions(limit)} per request: {advice}")
