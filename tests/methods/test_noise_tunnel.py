"""The noise tunnel (option ``smooth_samples``): any method averaged over noisy copies, checked
on f = ½·Σx², whose gradient x + ε and Integrated Gradients (x + ε)²/2 are known."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from sensitivity.engine.budget import estimate_work
from sensitivity.methods import attribute
from tests.helpers import colour_model

SIGMA = 0.1  # of 0..255


def _half_square_model():
    """logit 0 = ½·Σx², logit 1 = 0."""
    inputs = keras.Input((4, 4, 3))
    squares = keras.layers.Flatten()(keras.layers.Multiply()([inputs, inputs]))
    dense = keras.layers.Dense(2, use_bias=False, name="logits")
    model = keras.Model(inputs, dense(squares))
    kernel = np.zeros((48, 2), np.float32)
    kernel[:, 0] = 0.5
    dense.set_weights([kernel])
    return model


@pytest.fixture(scope="module")
def image():
    return np.random.default_rng(0).uniform(50, 200, (1, 4, 4, 3)).astype(np.float32)


def test_smoothed_gradient_has_the_noise_variance_as_vargrad_and_x2_plus_s2_squared(image):
    model, s2 = _half_square_model(), (SIGMA * 255) ** 2
    common = {"smooth_samples": 128, "smooth_noise": SIGMA, "class_mask": 0}
    mean = attribute(model, image, **common).values
    np.testing.assert_allclose(mean, image, atol=4 * SIGMA * 255 / np.sqrt(128))
    var = attribute(model, image, smooth_variant="vargrad", **common).values
    assert var.mean() == pytest.approx(s2, rel=0.05)
    squared = attribute(model, image, smooth_variant="squared", **common).values
    assert (squared - image**2).mean() == pytest.approx(s2, rel=0.1)


def test_integrated_gradients_smoothed_is_the_mean_of_its_noisy_values(image):
    model, s2 = _half_square_model(), (SIGMA * 255) ** 2
    plain = attribute(model, image, method="integrated_gradients", class_mask=0, steps=16)
    np.testing.assert_allclose(plain.values, image**2 / 2, rtol=1e-3)  # black baseline
    smooth = attribute(model, image, method="integrated_gradients", class_mask=0, steps=16,
                       smooth_samples=128, smooth_noise=SIGMA)
    # E[(x + e)^2 / 2] = (x^2 + s^2) / 2, averaged over the 48 pixels.
    assert (smooth.values - image**2 / 2).mean() == pytest.approx(s2 / 2, rel=0.1)
    np.testing.assert_array_equal(smooth.scores, plain.scores)  # the clean image's score


def test_without_noise_the_tunnel_returns_the_methods_own_map():
    model = colour_model()
    image = np.full((1, 8, 8, 3), 128, np.float32)
    image[0, 2:5, 2:5] = (250, 10, 10)
    for method in ("gradcam", "occlusion", "gradient_x_input"):
        plain = attribute(model, image, method=method)
        smooth = attribute(model, image, method=method, smooth_samples=3, smooth_noise=0.0)
        np.testing.assert_allclose(smooth.values, plain.values, rtol=1e-6, atol=1e-7)
        np.testing.assert_array_equal(smooth.weights, plain.weights)
        var = attribute(model, image, method=method, smooth_samples=3, smooth_noise=0.0,
                        smooth_variant="vargrad")
        np.testing.assert_allclose(var.values, 0.0, atol=1e-6)


def test_the_copies_explain_the_clean_images_class():
    # Noise as large as the signal flips the predicted class of some copies; the explained
    # class stays the image's own (one-hot at its argmax), and so do the scores.
    model = colour_model()
    image = np.full((1, 8, 8, 3), 128, np.float32)
    image[0, 3:5, 3:5] = (200, 90, 90)
    plain = attribute(model, image)
    smooth = attribute(model, image, smooth_samples=8, smooth_noise=0.3)
    np.testing.assert_array_equal(smooth.weights, plain.weights)
    np.testing.assert_array_equal(smooth.scores, plain.scores)


def test_bad_tunnel_options_are_refused_and_the_cost_counts_every_copy():
    model = _half_square_model()
    with pytest.raises(ValueError, match="smooth_noise"):
        attribute(model, np.zeros((1, 4, 4, 3), np.float32), smooth_samples=2, smooth_noise=-1)
    with pytest.raises(ValueError, match="smooth_variant"):
        attribute(model, np.zeros((1, 4, 4, 3), np.float32), smooth_samples=2,
                  smooth_variant="median")
    plain = estimate_work("gradcam", {}, 32, 32)
    smooth = estimate_work("gradcam", {"smooth_samples": 4}, 32, 32)
    assert smooth.forward_pixels == 5 * plain.forward_pixels
    assert (smooth.forward, smooth.backward) == (5 * plain.forward, 5 * plain.backward)
