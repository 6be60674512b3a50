"""SmoothGrad (Smilkov et al. 2017): the gradient averaged over noisy copies of the image."""

from __future__ import annotations

import math

import numpy as np

from sensitivity.choices import SMOOTHGRAD_VARIANTS
from sensitivity.methods.base import Job, Runner, choice, positive_int


def run(job: Job) -> dict:
    """Mean gradient ``(N, H, W, 3)`` over ``samples`` copies with Gaussian noise of ``noise``
    x 255, or the mean of their squares (``squared``), or their variance (``vargrad``)."""
    opts = job.options
    samples = positive_int("samples", opts["samples"])
    variant = choice("variant", opts["variant"], SMOOTHGRAD_VARIANTS)
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


RUNNER = Runner(run)
