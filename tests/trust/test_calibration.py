"""Temperature scaling and the calibration measures, checked against hand computations."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

import sensitivity
from sensitivity.engine.gradients import gradients, make_target
from sensitivity.trust import calibration


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_fit_temperature_recovers_the_temperature_the_labels_were_drawn_with():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (8000, 10))
    for true in (0.5, 2.0):
        p = _softmax(logits / true)
        labels = (p.cumsum(axis=1) > rng.random((len(p), 1))).argmax(axis=1)
        assert calibration.fit_temperature(logits, labels) == pytest.approx(true, rel=0.08)


def test_the_fitted_temperature_minimises_the_negative_log_likelihood():
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 2, (500, 4))
    labels = (_softmax(logits / 1.5).cumsum(axis=1) > rng.random((500, 1))).argmax(axis=1)
    t = calibration.fit_temperature(logits, labels)
    assert 0.5 < t < 5
    best = calibration.negative_log_likelihood(logits, labels, t)
    for other in (t * 0.9, t * 1.1):
        assert calibration.negative_log_likelihood(logits, labels, other) > best
    by_hand = -np.mean(np.log(_softmax(logits / t)[np.arange(500), labels]))
    assert best == pytest.approx(by_hand, rel=1e-9)


def test_ece_brier_and_reliability_by_hand():
    # Four images; confidences 0.9 (right), 0.9 (wrong), 0.6 (right), 1.0 (right).
    p = np.array([[0.9, 0.1], [0.9, 0.1], [0.4, 0.6], [1.0, 0.0]])
    labels = np.array([0, 1, 1, 0])
    table = calibration.reliability(p, labels, bins=10)
    assert table["count"].tolist() == [0, 0, 0, 0, 0, 1, 0, 0, 2, 1]  # 0.6 is in (0.5, 0.6]
    assert table["accuracy"][8] == 0.5 and table["confidence"][8] == pytest.approx(0.9)
    # |0.6 - 1| x 1/4 + |0.9 - 0.5| x 2/4 + |1 - 1| x 1/4
    expected = 0.4 / 4 + 0.4 * 2 / 4
    assert calibration.expected_calibration_error(p, labels, bins=10) == pytest.approx(expected)
    brier = (0.01 + 0.01 + 0.81 + 0.81 + 0.16 + 0.16 + 0 + 0) / 4
    assert calibration.brier_score(p, labels) == pytest.approx(brier)


def test_calibration_report_keeps_the_accuracy_and_lowers_the_ece_of_overconfident_logits():
    rng = np.random.default_rng(2)
    logits = rng.normal(0, 2, (5000, 10))
    labels = (_softmax(logits).cumsum(axis=1) > rng.random((5000, 1))).argmax(axis=1)
    hot = logits * 3  # over-confident: the right temperature is 3
    t = calibration.fit_temperature(hot, labels)
    raw, fixed = (calibration.calibration_report(hot, labels, temp) for temp in (1.0, t))
    assert raw["accuracy"] == fixed["accuracy"]
    assert fixed["ece"] < raw["ece"] / 3 and fixed["nll"] < raw["nll"]


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_a_temperature_must_be_positive_and_finite(bad):
    with pytest.raises(ValueError, match="positive"):
        calibration.attach(keras.Sequential([keras.Input((2,)), keras.layers.Dense(2)]), bad)


def _linear_model():
    inputs = keras.Input((4, 4, 3))
    dense = keras.layers.Dense(3, name="logits")
    model = keras.Model(inputs, dense(keras.layers.Flatten()(inputs)))
    rng = np.random.default_rng(3)
    dense.set_weights([rng.normal(0, 0.05, (48, 3)).astype(np.float32), np.zeros(3, np.float32)])
    return model


def test_predict_divides_the_logits_by_the_attached_temperature():
    model = _linear_model()
    x = np.random.default_rng(4).uniform(0, 255, (5, 4, 4, 3)).astype(np.float32)
    z = np.asarray(model(x), np.float64)
    assert calibration.temperature_of(model) == 1.0
    np.testing.assert_allclose(sensitivity.predict(model, x), _softmax(z), atol=1e-6)
    calibration.attach(model, 2.5)
    np.testing.assert_allclose(sensitivity.predict(model, x), _softmax(z / 2.5), atol=1e-6)


def test_the_probabilities_target_differentiates_the_calibrated_softmax():
    model = _linear_model()
    calibration.attach(model, 0.5)
    x = np.random.default_rng(5).uniform(0, 255, (2, 4, 4, 3)).astype(np.float32)
    weights = np.eye(3, dtype=np.float32)[[0, 2]]
    target = make_target(model, "probabilities")
    _, grad, _ = gradients(model, target, x, weights)
    xt = tf.constant(x)
    with tf.GradientTape() as tape:  # an independent tape on softmax(model(x) / T)
        tape.watch(xt)
        p = tf.nn.softmax(model(xt) / 0.5)
        score = tf.reduce_sum(p * weights, axis=1)
    np.testing.assert_allclose(grad, tape.gradient(score, xt).numpy(), rtol=1e-4, atol=1e-9)
    # The logits target is never rescaled.
    _, logit_grad, _ = gradients(model, make_target(model, "logits"), x, weights)
    kernel = model.get_layer("logits").kernel.numpy()
    np.testing.assert_allclose(logit_grad[0].reshape(-1), kernel[:, 0], rtol=1e-5)
