"""Where Integrated Gradients takes its gradients on the path from the baseline to the image:
the midpoint rule (:func:`uniform_path_sums`) or adaptive sampling
(:func:`adaptive_path_sums`), which puts them where forward passes show the estimate is worst.

Each function takes ``on_path(image_index, alpha)``, the images at the fractions ``alpha`` of
the path for the flat array ``image_index``, and returns the mean gradient along the path
``(N, H, W, 3)`` float64.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace

import numpy as np

from sensitivity.engine import gradients as engine
from sensitivity.engine.choices import ADAPTIVE_ROUNDS
from sensitivity.methods.base import Job, part_progress

ADAPTIVE_POINTS_PER_SEGMENT = 2
"""Adaptive path sampling: ``steps // 2`` equal segments, each scored by one forward pass."""

SEGMENT_SUMS_BUDGET = 64 * 2**20
"""Bytes of per-segment gradient sums adaptive Integrated Gradients holds at once (images are
taken in groups under it; one image at a time at least)."""

POINT_STEP = (3.0 - math.sqrt(5.0)) / 2.0
"""The step, as a fraction of a segment, between successive points Integrated Gradients places
in it: the golden ratio's, whose multiples (mod 1) are the most evenly spread of any step's."""


def allocate_points(shares: np.ndarray, total: int) -> np.ndarray:
    """Split ``total`` points among segments in proportion to ``shares`` ``(N, S)`` (>= 0).

    Largest remainders; ties go to the earlier segment; a row of zero shares is split evenly.
    Returns ``(N, S)`` ints, each row summing to ``total``.
    """
    n, segments = shares.shape
    sums = shares.sum(axis=1, keepdims=True)
    shares = np.where(sums > 0, shares / np.where(sums > 0, sums, 1.0), 1.0 / segments)
    quota = shares * total
    counts = np.floor(quota).astype(int)
    short = total - counts.sum(axis=1)
    order = np.argsort(-(quota - counts), axis=1, kind="stable")
    for i in range(n):
        counts[i, order[i, : short[i]]] += 1
    return counts


def segment_points(counts: np.ndarray, placed: np.ndarray | None = None) -> np.ndarray:
    """The next ``counts[i, j]`` points of segment ``j`` of S equal segments of [0, 1], after the
    ``placed[i, j]`` (default 0) it already has; ``(N, counts.sum(axis=1))`` float64, segment by
    segment (every row of ``counts`` must have the same sum).

    A segment's ``t``-th point (from 0) sits at the fraction ``0.5 + t * g`` (mod 1) of it, with
    ``g`` = :data:`POINT_STEP`: first its midpoint, then a sequence that never repeats a point
    and spreads any number of them evenly over the segment, wherever a round stops.
    """
    if placed is None:
        placed = np.zeros_like(counts)
    segments = counts.shape[1]
    return np.stack([
        np.concatenate([
            (j + (0.5 + (start + np.arange(c)) * POINT_STEP) % 1.0) / segments
            for j, (c, start) in enumerate(zip(row, starts, strict=True))
        ])
        for row, starts in zip(counts, placed, strict=True)
    ])


def uniform_path_sums(job: Job, on_path: Callable, steps: int) -> np.ndarray:
    """The midpoint rule: the mean gradient at the middles of ``steps`` equal steps."""
    alphas = (np.arange(steps) + 0.5) / steps
    sums, _ = job.sampled_gradient_sums(steps, lambda i, k: on_path(i, alphas[k]))
    sums /= steps
    return sums


def adaptive_path_sums(job: Job, on_path: Callable, delta: np.ndarray,
                       baseline_scores: np.ndarray, steps: int) -> np.ndarray:
    """:func:`_adaptive_group_sums` over groups of images whose per-segment sums fit in
    :data:`SEGMENT_SUMS_BUDGET`; ``(N, H, W, 3)`` float64."""
    n = len(job.images)
    segments = max(1, steps // ADAPTIVE_POINTS_PER_SEGMENT)
    group = max(1, SEGMENT_SUMS_BUDGET // (segments * job.images[0].nbytes))
    progress = job.options["progress"]
    sums = np.empty(job.images.shape, np.float64)
    for start in range(0, n, group):
        index = np.arange(start, min(start + group, n))
        report = None if progress is None else part_progress(progress, start, len(index), n)
        part = replace(job, images=job.images[index], weights=job.weights[index],
                       scores=job.scores[index], options=job.options | {"progress": report})
        sums[index] = _adaptive_group_sums(
            part, lambda i, alpha, index=index: on_path(index[i], alpha), delta[index],
            baseline_scores[index], steps)
    return sums


def _adaptive_group_sums(job: Job, on_path: Callable, delta: np.ndarray,
                         baseline_scores: np.ndarray, steps: int) -> np.ndarray:
    """The path integral of the gradient, ``(N, H, W, 3)`` float64, from ``steps`` gradients
    placed where the forward passes show the estimate is worst.

    Forward passes score the path at the ends of ``S = steps // 2`` equal segments, so each
    segment's integral of the score's slope along the path is known exactly. The first round
    takes one gradient at each segment's midpoint; up to :data:`ADAPTIVE_ROUNDS` more rounds
    share the other ``steps - S`` gradients among the segments in proportion to how far the
    estimate so far (the mean slope of the segment's points) misses the forward passes'
    difference (a ReLU network's slope along the path is piecewise constant, and the misses show
    where it jumps). A segment's points follow :func:`segment_points` and are weighted
    equally. The forward passes only choose where to look: the attributions are the gradients'
    weighted sum, never rescaled to match the scores, so the completeness gap stays an honest
    measure of the quadrature's error.
    """
    n = len(job.images)
    segments = max(1, steps // ADAPTIVE_POINTS_PER_SEGMENT)
    path_scores = np.empty((n, segments + 1))
    path_scores[:, 0], path_scores[:, -1] = baseline_scores, job.scores
    for image_index, inner_index in job.index_chunks(segments - 1):
        point = inner_index + 1
        path_scores[image_index, point], _ = engine.forward(
            job.model, job.target, on_path(image_index, point / segments),
            job.weights[image_index], max_batch=job.max_batch,
        )
    counts = np.ones((n, segments), int)
    segment_sums = np.zeros((n, segments) + job.images.shape[1:], job.images.dtype)
    slope_sums = np.zeros((n, segments))
    _accumulate_by_segment(job, on_path, delta, segment_points(counts), segment_sums, slope_sums,
                           0, steps)
    refinement = steps - segments
    rounds = min(ADAPTIVE_ROUNDS, refinement)
    for round_index in range(rounds):
        done = segments + refinement * round_index // rounds
        size = segments + refinement * (round_index + 1) // rounds - done
        misses = np.abs(slope_sums / (counts * segments) - np.diff(path_scores, axis=1))
        extra = allocate_points(misses, size)
        _accumulate_by_segment(job, on_path, delta, segment_points(extra, counts),
                               segment_sums, slope_sums, done, steps)
        counts += extra
    sums = np.zeros(job.images.shape, np.float64)
    for j in range(segments):
        sums += (1.0 / (segments * counts[:, j]))[:, None, None, None] * segment_sums[:, j]
    return sums


def _accumulate_by_segment(job: Job, on_path: Callable, delta: np.ndarray, alphas: np.ndarray,
                           segment_sums: np.ndarray, slope_sums: np.ndarray, done: int,
                           steps: int) -> None:
    """Add the gradient at each point ``alphas`` ``(N, M)`` to its segment's sum in
    ``segment_sums`` ``(N, S, H, W, 3)``, and its slope along the path (the gradient dotted
    with ``delta``) to ``slope_sums`` ``(N, S)``. ``done`` and ``steps`` scale the progress."""
    n, count = alphas.shape
    segments = segment_sums.shape[1]
    for image_index, sample_index in job.index_chunks(count):
        grads = job.gradients(
            on_path(image_index, alphas[image_index, sample_index]), job.weights[image_index]
        )
        slopes = np.einsum(
            "nhwc,nhwc->n", grads.astype(np.float64), delta[image_index].astype(np.float64))
        segment = np.minimum((alphas[image_index, sample_index] * segments).astype(int),
                             segments - 1)
        np.add.at(segment_sums, (image_index, segment), grads)
        np.add.at(slope_sums, (image_index, segment), slopes)
        job.report((done * n + image_index[-1] * count + sample_index[-1] + 1) / (steps * n))
