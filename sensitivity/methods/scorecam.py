"""Score-CAM (Wang et al. 2020): each channel of a layer masks the image; its weight is the
masked image's score less the fill's."""

from __future__ import annotations

import numpy as np

from sensitivity.engine import gradients as engine
from sensitivity.methods.base import (
    Job,
    Runner,
    fills,
    non_negative_upsampled,
    positive_int,
    spatial,
    target_layer,
)
from sensitivity.methods.localising import blend, upsample


def run(job: Job) -> dict:
    """Score-CAM: channel ``k``'s activation upsampled bilinearly and scaled to 0..1 (a constant
    channel gives an all-fill mask, weight 0) masks the image over the fill; ``w_k`` = masked
    score - fill score (no softmax); ``ReLU(sum_k w_k A_k)`` upsampled; score x feature units.
    ``max_channels`` keeps each image's channels of largest mean activation."""
    layer = target_layer(job)
    fill = fills(job)
    features, _ = engine.feature_forward(job.model, layer, job.images, max_batch=job.max_batch)
    features = spatial(features, layer, "Score-CAM")
    n, _, _, channels = features.shape
    limit = job.options["max_channels"]
    kept = channels if limit is None else min(positive_int("max_channels", limit), channels)
    # The kept channels of each image, largest mean activation first.
    order = np.argsort(-features.mean(axis=(1, 2)), axis=1, kind="stable")[:, :kept]
    fill_scores, _ = engine.forward(
        job.model, job.target, fill, job.weights, max_batch=job.max_batch
    )
    channel_weights = np.zeros((n, kept))
    height, width = job.images.shape[1:3]
    for image_index, rank in job.index_chunks(kept):
        maps = upsample(features[image_index, :, :, order[image_index, rank]], height, width)
        low = maps.min(axis=(1, 2), keepdims=True)
        span = maps.max(axis=(1, 2), keepdims=True) - low
        masks = np.where(span > 0, (maps - low) / np.where(span > 0, span, 1.0), 0.0)
        scores, _ = engine.forward(
            job.model, job.target, blend(job.images[image_index], fill[image_index], masks),
            job.weights[image_index], max_batch=job.max_batch,
        )
        channel_weights[image_index, rank] = scores - fill_scores[image_index]
        job.report((image_index[-1] * kept + rank[-1] + 1) / (n * kept))
    activations = np.take_along_axis(features, order[:, None, None, :], axis=3)
    cam = np.maximum(np.einsum("nhwk,nk->nhw", activations, channel_weights), 0.0)
    return {"values": non_negative_upsampled(job, cam)}


RUNNER = Runner(run)
