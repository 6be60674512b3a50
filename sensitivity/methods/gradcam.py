"""Grad-CAM (and Grad-CAM++): feature maps weighted by their gradients, ReLU, upsampled."""

from __future__ import annotations

import numpy as np

from sensitivity.methods.base import Job, Runner, feature_gradients, non_negative_upsampled


def run(job: Job) -> dict:
    """``ReLU(sum_c w_c A_c)`` upsampled, ``w_c`` the mean gradient of channel ``c`` (or the
    Grad-CAM++ weights with ``plus_plus``); score units."""
    features, grads, scores, logits = feature_gradients(job, "Grad-CAM")
    if job.options["plus_plus"]:
        g2 = np.square(grads)
        denominator = 2.0 * g2 + features.sum(axis=(1, 2), keepdims=True) * g2 * grads
        alpha = g2 / np.where(denominator != 0.0, denominator, 1.0)
        channel_weights = (alpha * np.maximum(grads, 0.0)).sum(axis=(1, 2))
    else:
        channel_weights = grads.mean(axis=(1, 2))
    cam = np.maximum(np.einsum("nhwc,nc->nhw", features, channel_weights), 0.0)
    return {"values": non_negative_upsampled(job, cam), "scores": scores, "logits": logits}


RUNNER = Runner(run, one_pass=True)
