"""SmoothGrad (Smilkov et al. 2017): the gradient averaged over noisy copies of the image.

The gradient's own, streaming form (the copies' gradients are summed as they come, never all
held); any other method is smoothed the same way by the common ``smooth_samples`` option
(:mod:`sensitivity.methods.noise_tunnel`)."""

from __future__ import annotations

import math

import numpy as np

from sensitivity.engine.choices import SMOOTHGRAD_VARIANTS
from sensitivity.methods.base import Job, Runner, choice, positive_int
from sensitivity.methods.noise_tunnel import reduce_samples


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
    return {"values": reduce_samples(sums, squares, samples, variant)}


RUNNER = Runner(run)
