"""Class probabilities from the model, calibrated by its temperature."""

from __future__ import annotations

import numpy as np
from scipy.special import expit

from sensitivity.engine import gradients as engine
from sensitivity.trust.calibration import temperature_of


def as_batch(images) -> np.ndarray:
    """``(H, W, 3)`` or ``(N, H, W, 3)`` pixel values to a float32 ``(N, H, W, 3)`` batch."""
    batch = np.asarray(images, dtype=np.float32)
    if batch.ndim == 3:
        batch = batch[None]
    if batch.ndim != 4 or batch.shape[-1] != 3:
        raise ValueError(f"expected images of shape (N, H, W, 3), got {np.shape(images)}")
    if not np.isfinite(batch).all():
        raise ValueError("the images hold NaN or infinite values")
    return batch


def logits(model, images, batch_size: int = 256) -> np.ndarray:
    """``(N, K)`` float32 logits for ``(N, H, W, 3)`` pixel values in 0..255 (the values before
    the model's final softmax or sigmoid when it has one,
    :func:`sensitivity.engine.gradients.head_of`).

    Runs the model's compiled forward pass (traced once per model, shared with the gradient
    engine), in chunks of at most ``batch_size`` images (fewer for large images).
    """
    batch = as_batch(images)
    target = engine.make_target(model, "logits")
    empty = np.zeros((len(batch), engine.weight_size(model, target)), np.float32)
    if not len(batch):
        return empty
    _, values = engine.forward(model, target, batch, empty, max_batch=batch_size)
    return values.astype(np.float32)


def softmax(values: np.ndarray) -> np.ndarray:
    """Row-wise softmax of ``(N, C)`` values, computed stably in float64, returned float32."""
    z = np.asarray(values, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


def log_softmax(values: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax of ``(N, C)`` values, computed stably, float64."""
    z = np.asarray(values, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def probabilities(model, values: np.ndarray) -> np.ndarray:
    """``(N, C)`` float32 calibrated class probabilities from ``(N, C)`` logits of ``model``:
    ``softmax(logits / T)`` with the model's temperature
    (:func:`sensitivity.trust.calibration.temperature_of`; 1 for a model without calibration), or
    ``sigmoid(logits / T)`` for a sigmoid (multi-label) head, whose rows need not sum to 1."""
    scaled = np.asarray(values, np.float64) / temperature_of(model)
    if engine.head_of(model) == "sigmoid":
        return expit(scaled).astype(np.float32)
    return softmax(scaled)


def predict(model, images, batch_size: int = 256) -> np.ndarray:
    """``(N, K)`` float32 calibrated class probabilities (:func:`probabilities`) for
    ``(N, H, W, 3)`` pixel values in 0..255."""
    return probabilities(model, logits(model, images, batch_size))
