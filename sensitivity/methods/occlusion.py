"""Occlusion: the drop in the score when a patch covering the pixel is filled (no gradient)."""

from __future__ import annotations

import numpy as np

from sensitivity.engine import gradients as engine
from sensitivity.engine.choices import patch_starts
from sensitivity.methods.base import Job, Runner, choice, scaled


def run(job: Job) -> dict:
    """The mean score drop ``(N, H, W)`` over the patches (side ``patch``, step ``stride``, in
    32x32-image pixels) that cover each pixel, filled with ``fill``; score units."""
    images = job.images
    n, height, width, _ = images.shape
    ph, pw = (scaled(job.options["patch"], s, "patch") for s in (height, width))
    stride = job.options["stride"]
    stride = job.options["patch"] / 2 if stride is None else stride
    sh, sw = (scaled(stride, s, "stride") for s in (height, width))
    fill = job.options["fill"]
    if isinstance(fill, str):
        choice("fill", fill, ("mean",))
        colours = images.mean(axis=(1, 2))
    else:
        colour = np.broadcast_to(np.asarray(fill, np.float64), (3,))
        if not np.isfinite(colour).all():
            raise ValueError(f"fill must be finite, got {fill!r}")
        colours = np.tile(colour, (n, 1))
    colours = colours.astype(images.dtype)
    patches = [(y, x) for y in patch_starts(height, ph, sh) for x in patch_starts(width, pw, sw)]
    count = len(patches)
    total = n * count
    drops = np.zeros((n, height, width), np.float64)
    covered = np.zeros((height, width), np.float64)
    for y, x in patches:
        covered[y : y + ph, x : x + pw] += 1.0
    for start in range(0, total, job.max_batch):
        flat = np.arange(start, min(start + job.max_batch, total))
        image_index, patch_index = flat // count, flat % count
        batch = images[image_index].copy()
        for row, (i, p) in enumerate(zip(image_index, patch_index, strict=True)):
            y, x = patches[p]
            batch[row, y : y + ph, x : x + pw] = colours[i]
        scores, _ = engine.forward(
            job.model, job.target, batch, job.weights[image_index], max_batch=job.max_batch
        )
        for row, (i, p) in enumerate(zip(image_index, patch_index, strict=True)):
            y, x = patches[p]
            drops[i, y : y + ph, x : x + pw] += job.scores[i] - scores[row]
        job.report((flat[-1] + 1) / total)
    return {"values": drops / covered}


RUNNER = Runner(run)
