"""Integrated Gradients (Sundararajan et al. 2017): the path integral of the gradient from a
baseline image; the points on the path are placed by :mod:`sensitivity.methods.path_sampling`."""

from __future__ import annotations

import math

import numpy as np

from sensitivity.engine import gradients as engine
from sensitivity.engine.choices import BASELINES, PATH_SAMPLINGS
from sensitivity.imaging.filters import gaussian_smooth
from sensitivity.methods.base import REFERENCE_SIZE, Job, Runner, choice, positive_int
from sensitivity.methods.path_sampling import adaptive_path_sums, uniform_path_sums


def baseline(job: Job) -> np.ndarray:
    """The baseline images ``(N, H, W, 3)`` of option ``baseline``: black, uniform noise
    (option ``seed``) or the images blurred by ``blur_sigma`` pixels of a 32x32 image."""
    kind = choice("baseline", job.options["baseline"], BASELINES)
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


def run(job: Job) -> dict:
    """``(x - baseline)`` times the mean gradient along the straight path, from ``steps``
    gradients; also the baseline's scores and the completeness gap."""
    steps = positive_int("steps", job.options["steps"])
    sampling = choice("path_sampling", job.options["path_sampling"], PATH_SAMPLINGS)
    start = baseline(job)
    delta = job.images - start

    def on_path(image_index, alpha):
        a = np.asarray(alpha, job.images.dtype)[:, None, None, None]
        return start[image_index] + a * delta[image_index]

    baseline_scores, _ = engine.forward(
        job.model, job.target, start, job.weights, max_batch=job.max_batch
    )
    if sampling == "uniform":
        sums = uniform_path_sums(job, on_path, steps)
    else:
        sums = adaptive_path_sums(job, on_path, delta, baseline_scores, steps)
    values = delta * sums
    change = job.scores.astype(np.float64) - baseline_scores
    total = values.reshape(len(values), -1).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        gap = np.abs(total - change) / np.abs(change)
    gap = np.where((change == 0) & (total == 0), 0.0, gap)
    return {"values": values, "baseline_scores": baseline_scores, "completeness_gap": gap}


RUNNER = Runner(run)
