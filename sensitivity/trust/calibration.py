"""Calibrated probabilities: temperature scaling and the measures of calibration.

A model's logits ``z`` give probabilities ``softmax(z / T)``; the temperature ``T`` is fitted
on held-out labelled images by minimising the negative log-likelihood (Guo et al. 2017), which
leaves every argmax, hence the accuracy, unchanged. The fitted temperature lives in the model
card (``calibration.temperature``); :func:`sensitivity.model.io.load_model` attaches it to the
model it loads (:func:`attach`), and :func:`temperature_of` is what every probability the
library reports is divided by. A model loaded otherwise has ``T = 1``.
"""

from __future__ import annotations

import weakref

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax

ECE_BINS = 15
"""Equal-width confidence bins of the expected calibration error and the reliability diagram."""

_TEMPERATURE_RANGE = (0.05, 20.0)
_TEMPERATURES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def attach(model, temperature: float) -> None:
    """Make ``temperature`` (> 0) the one :func:`temperature_of` gives for ``model``."""
    temperature = float(temperature)
    if not np.isfinite(temperature) or temperature <= 0:
        raise ValueError(f"a temperature must be a positive number, got {temperature!r}")
    _TEMPERATURES[model] = temperature


def temperature_of(model) -> float:
    """The temperature attached to ``model`` (1.0 when none was)."""
    return _TEMPERATURES.get(model, 1.0)


def negative_log_likelihood(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0
                            ) -> float:
    """Mean ``-log softmax(logits / temperature)[label]`` over ``(N, C)`` logits, in nats."""
    z = np.asarray(logits, np.float64) / temperature
    labels = np.asarray(labels, np.int64)
    return float(-np.mean(log_softmax(z, axis=1)[np.arange(len(labels)), labels]))


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature in 0.05..20 that minimises :func:`negative_log_likelihood` of ``(N, C)``
    logits and ``(N,)`` int labels (a one-dimensional search over ``log T``)."""
    logits = np.asarray(logits, np.float64)
    labels = np.asarray(labels, np.int64)
    if logits.ndim != 2 or len(logits) != len(labels) or not len(labels):
        raise ValueError(f"expected (N, C) logits and (N,) labels, got {logits.shape}, "
                         f"{labels.shape}")
    low, high = np.log(_TEMPERATURE_RANGE)
    result = minimize_scalar(
        lambda s: negative_log_likelihood(logits, labels, np.exp(s)),
        bounds=(low, high), method="bounded", options={"xatol": 1e-6},
    )
    return float(np.exp(result.x))


def reliability(probabilities: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS
                ) -> dict[str, np.ndarray]:
    """Per confidence bin (``bins`` equal widths of the top probability, ``(lo, hi]``):
    ``edges`` ``(bins + 1,)``, ``count`` ``(bins,)``, mean ``confidence`` and ``accuracy``
    ``(bins,)`` (NaN in empty bins)."""
    probabilities = np.asarray(probabilities, np.float64)
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == np.asarray(labels)
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    count = np.bincount(index, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = np.bincount(index, confidence, bins) / count
        accuracy = np.bincount(index, correct.astype(np.float64), bins) / count
    return {"edges": edges, "count": count, "confidence": mean_confidence, "accuracy": accuracy}


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray,
                               bins: int = ECE_BINS) -> float:
    """Sum over :func:`reliability` bins of (share of images) x |accuracy - confidence|."""
    table = reliability(probabilities, labels, bins)
    used = table["count"] > 0
    weights = table["count"][used] / table["count"].sum()
    return float(np.sum(weights * np.abs(table["accuracy"][used] - table["confidence"][used])))


def brier_score(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Mean over images of the squared distance between ``(N, C)`` probabilities and the
    one-hot label (0 is perfect, 2 the worst)."""
    probabilities = np.asarray(probabilities, np.float64)
    onehot = np.eye(probabilities.shape[1])[np.asarray(labels, np.int64)]
    return float(np.mean(np.sum((probabilities - onehot) ** 2, axis=1)))


def calibration_report(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0
                       ) -> dict[str, float]:
    """Accuracy, mean top probability, ECE (:data:`ECE_BINS` bins), NLL and Brier score of
    ``softmax(logits / temperature)`` against ``(N,)`` labels."""
    probabilities = softmax(np.asarray(logits, np.float64) / temperature, axis=1)
    return {
        "accuracy": float(np.mean(probabilities.argmax(axis=1) == labels)),
        "mean_confidence": float(probabilities.max(axis=1).mean()),
        "ece": expected_calibration_error(probabilities, labels),
        "nll": negative_log_likelihood(logits, labels, temperature),
        "brier": brier_score(probabilities, labels),
        "n": int(len(labels)),
    }
