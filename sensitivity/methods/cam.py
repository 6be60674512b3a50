"""CAM (Zhou et al. 2016): the dense head's class weights applied to the last feature map."""

from __future__ import annotations

import numpy as np

from sensitivity.engine import gradients as engine
from sensitivity.engine.choices import CAM_DETAIL_POWER, POSITION_TARGET
from sensitivity.methods.base import Job, Runner, boolean, positive_int, spatial
from sensitivity.methods.localising import cam_head, position_probabilities, upsample


def run(job: Job) -> dict:
    """CAM from one forward pass to the head's feature map (:func:`cam_head`): ``sum_c w_c sum_k
    W[k, c] f_k(i, j)``, signed, bias ignored, upsampled bilinearly; score units (its mean over
    the feature map's positions is the score less the bias term). With option ``probability``
    the head is applied to each position with its bias and each class's logit goes through a
    sigmoid: ``sum_c w_c sigmoid(b_c + sum_k W[k, c] f_k(i, j))``, 0..1 per class; for a model
    with a position head (:func:`sensitivity.model.position_head.position_head_of`), that head's
    probabilities instead (:func:`position_probabilities`), each raised to the power
    ``exponent`` (ignored without ``probability``). With option ``detail`` the map is
    multiplied by each pixel's gradient magnitude (largest over the colour channels) of the
    position head's target for the same class weights (the logits' without a position head),
    to the power :data:`CAM_DETAIL_POWER`."""
    if job.target.layer != "logits":
        raise ValueError(
            f"CAM explains logits (layer='logits'), not {job.target.layer!r}; method='gradcam' "
            "differentiates any target"
        )
    probability = boolean("probability", job.options["probability"])
    layer, kernel, bias = cam_head(job.model)
    features, logits = engine.feature_forward(
        job.model, layer, job.images, max_batch=job.max_batch
    )
    features = spatial(features, layer, "CAM")
    result = {"logits": logits}
    weights = job.weights
    if weights is None:  # each image's predicted class, from this pass's logits
        weights = result["weights"] = np.eye(kernel.shape[1], dtype=logits.dtype)[
            logits.argmax(axis=1)]
    result["scores"] = engine.output_scores(job.target, logits, weights)
    weights = np.asarray(weights, np.float64)
    if probability:
        exponent = positive_int("exponent", job.options["exponent"])
        per_position = position_probabilities(job.model, features, kernel, bias) ** exponent
        cam = np.einsum("nhwc,nc->nhw", per_position, weights)
    else:
        cam = np.einsum("nhwk,nk->nhw", features, weights @ kernel.T)  # sum_c w_c W[k, c]
    result["values"] = upsample(cam, *job.images.shape[1:3])
    if boolean("detail", job.options["detail"]):
        result["values"] = result["values"] * pixel_detail(job, weights)
    return result


def pixel_detail(job: Job, weights: np.ndarray) -> np.ndarray:
    """``(N, H, W)``: each pixel's gradient magnitude (largest over the colour channels) of
    the position head's target with ``weights`` (the logits' for a model without a position
    head), to the power :data:`CAM_DETAIL_POWER`."""
    layer = POSITION_TARGET if POSITION_TARGET in engine.output_targets(job.model) else "logits"
    _, grads, _ = engine.gradients(job.model, engine.make_target(job.model, layer), job.images,
                                   weights.astype(job.images.dtype), max_batch=job.max_batch)
    return np.abs(grads).max(axis=-1).astype(np.float64) ** CAM_DETAIL_POWER


RUNNER = Runner(run, one_pass=True, finds_class=True,
                same_units=lambda options: bool(options["probability"])
                and not options["detail"])
