"""SmoothGrad for any method (a noise tunnel): the attribution averaged over noisy copies.

Option ``smooth_samples`` (0: off) of every method: the image's own attribution gives the
scores and the explained class (or channel), then ``smooth_samples`` copies with Gaussian
noise of ``smooth_noise`` x 255 are attributed with that same class, in one batch through the
method, and their values reduced per image by ``smooth_variant``: their ``mean``, the mean of
their squares (``squared``), or their variance (``vargrad``), as :func:`reduce_samples` does
for the SmoothGrad method (Smilkov et al. 2017; Adebayo et al. 2018 for VarGrad).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np

from sensitivity.engine.choices import SMOOTHGRAD_VARIANTS
from sensitivity.methods.base import Attribution, choice, part_progress, positive_int


def reduce_samples(sums: np.ndarray, squares: np.ndarray, count: int, variant: str
                   ) -> np.ndarray:
    """Per image, from the sums of ``count`` samples' values and of their squares: the mean
    (``"mean"``), the mean square (``"squared"``) or the variance, never negative
    (``"vargrad"``)."""
    mean = sums / count
    if variant == "mean":
        return mean
    if variant == "squared":
        return squares / count
    return np.maximum(squares / count - np.square(mean), 0.0)


def noise_options(opts: dict) -> tuple[int, float, str, int | None]:
    """The checked ``smooth_samples``, noise sigma in pixel units, variant and seed."""
    samples = opts["smooth_samples"]
    if samples != 0:
        positive_int("smooth_samples", samples)
    noise = opts["smooth_noise"]
    if isinstance(noise, bool) or not isinstance(noise, (int, float, np.number)) or not (
            0 <= noise <= 1):
        raise ValueError(f"smooth_noise must be a fraction of 0..255 in 0..1, got {noise!r}")
    variant = choice("smooth_variant", opts["smooth_variant"], SMOOTHGRAD_VARIANTS)
    return int(samples), float(noise) * 255.0, variant, opts["smooth_seed"]


def smoothed(run: Callable[..., Attribution], batch: np.ndarray, class_mask, opts: dict,
             explains_classes: bool) -> Attribution:
    """The attribution of ``batch`` ``(N, H, W, 3)`` smoothed over noisy copies.

    ``run(images, class_mask, opts)`` attributes without smoothing; ``explains_classes``: the
    target is an output, so the clean images' class weights are kept for their copies.
    """
    samples, sigma, variant, seed = noise_options(opts)
    single = opts | {"smooth_samples": 0}
    progress = opts["progress"]

    def part(step: int, of: int) -> dict:
        return {"progress": None if progress is None else part_progress(progress, step, 1, of)}

    clean = run(batch, class_mask, single | part(0, 2))
    n = len(batch)
    if n == 0:
        return clean
    rng = np.random.default_rng(seed)
    noise = rng.normal(0.0, sigma, (n, samples, *batch.shape[1:])).astype(batch.dtype)
    copies = (batch[:, None] + noise).reshape(n * samples, *batch.shape[1:])
    mask = np.repeat(clean.weights.astype(np.float64), samples, axis=0) if explains_classes else (
        None)
    noisy = run(copies, mask, single | part(1, 2))
    values = noisy.values.astype(np.float64).reshape(n, samples, *noisy.values.shape[1:])
    reduced = reduce_samples(values.sum(axis=1), np.square(values).sum(axis=1), samples, variant)
    return replace(clean, values=reduced.astype(np.float32))
