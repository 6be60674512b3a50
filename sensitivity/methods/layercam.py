"""LayerCAM (Jiang et al. 2021): the positive gradient times the activation, per position."""

from __future__ import annotations

import numpy as np

from sensitivity.methods.base import Job, Runner, feature_gradients, non_negative_upsampled


def run(job: Job) -> dict:
    """``ReLU(sum_k ReLU(dS/dA_k) A_k)`` at each position of option ``target_layer``,
    upsampled; score units."""
    features, grads, scores, logits = feature_gradients(job, "LayerCAM")
    cam = np.maximum(np.einsum("nhwc,nhwc->nhw", np.maximum(grads, 0.0), features), 0.0)
    return {"values": non_negative_upsampled(job, cam), "scores": scores, "logits": logits}


RUNNER = Runner(run, one_pass=True)
