"""The position head's output target: the head as TensorFlow ops against its NumPy form, the
gradient against central finite differences in float64, and the refusals and cache of the
engine's target."""

from __future__ import annotations

import sensitivity  # noqa: F401  (sets the TensorFlow environment before TF is imported)

# isort: split
import keras
import numpy as np
import pytest
import tensorflow as tf

from sensitivity.engine import gradients as engine
from sensitivity.engine import position_target
from sensitivity.engine.choices import POSITION_TARGET
from sensitivity.engine.saliency import attribute
from sensitivity.model import position_head as ph


def _head(channels: int, classes: int, neighbourhoods: tuple[int, ...], seed: int = 0,
          hidden: int = 6) -> ph.PositionHead:
    """A random head of ``classes`` classes and "none"."""
    rng = np.random.default_rng(seed)
    inputs = ph.input_parts(neighbourhoods) * channels
    return ph.PositionHead(*(rng.normal(0, 1, shape).astype(np.float32) for shape in
                             ((inputs, hidden), (hidden,), (hidden, classes + 1),
                              (classes + 1,))), neighbourhoods=neighbourhoods)


@pytest.mark.parametrize("shape", [(1, 1), (2, 3), (5, 9)])
@pytest.mark.parametrize("neighbourhoods", [(3,), (3, 7)])
def test_the_graph_computes_the_heads_probabilities(shape, neighbourhoods):
    # Maps smaller than a neighbourhood too: the border is repeated as far as it reaches.
    head = _head(4, 3, neighbourhoods)
    features = np.random.default_rng(1).uniform(0, 2, (2, *shape, 4)).astype(np.float32)
    expected = head.probabilities(features)
    ours = position_target.position_probabilities(head, tf.constant(features)).numpy()
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-6)
    located = position_target.located_probabilities(head, tf.constant(features)).numpy()
    np.testing.assert_allclose(located, expected.max(axis=(1, 2)), rtol=1e-5, atol=1e-6)


def _float64_model() -> keras.Model:
    """Conv (the feature map "features", 4 channels) -> global average pooling -> Dense(3),
    all in float64 (so that central differences are exact to many digits), of any image size."""
    keras.utils.set_random_seed(2)
    inputs = keras.Input((None, None, 3), dtype="float64")
    features = keras.layers.Conv2D(4, 3, padding="same", activation="tanh", dtype="float64",
                                   kernel_initializer=keras.initializers.RandomNormal(0, 0.05),
                                   name="features")(inputs)
    pooled = keras.layers.GlobalAveragePooling2D(dtype="float64")(features)
    return keras.Model(inputs, keras.layers.Dense(3, dtype="float64")(pooled))


@pytest.fixture()
def model_with_head():
    model = _float64_model()
    head = _head(4, 3, (3, 5), seed=4)
    ph.attach_position_head(model, head)
    yield model, head
    ph.attach_position_head(model, None)


def test_scores_are_the_heads_largest_probabilities(model_with_head):
    model, head = model_with_head
    x = np.random.default_rng(5).uniform(0, 255, (3, 6, 7, 3))
    target = engine.make_target(model, POSITION_TARGET)
    weights = np.array([[1.0, 0, 0], [0, 1, 0], [0.5, 0, 2]])
    scores, logits = engine.forward(model, target, x, weights)
    features = keras.Model(model.input, model.get_layer("features").output)(x).numpy()
    located = head.probabilities(features).max(axis=(1, 2))
    np.testing.assert_allclose(scores, (located * weights).sum(axis=1), rtol=1e-5)
    np.testing.assert_allclose(logits, model(x).numpy(), rtol=1e-10)
    with pytest.raises(ValueError, match="not computed from the logits"):
        engine.output_scores(target, logits, weights)


def test_gradient_matches_central_finite_differences(model_with_head):
    model, _ = model_with_head
    rng = np.random.default_rng(6)
    x = rng.uniform(0, 255, (1, 6, 7, 3))
    weights = np.array([[0.3, 1.0, 0.0]])
    target = engine.make_target(model, POSITION_TARGET)
    _, grads, _ = engine.gradients(model, target, x, weights)
    assert np.abs(grads).max() > 1e-6
    step = 1e-4
    for index in [tuple(rng.integers(0, n) for n in x.shape[1:]) for _ in range(12)]:
        up, down = x.copy(), x.copy()
        up[(0, *index)] += step
        down[(0, *index)] -= step
        difference = (engine.forward(model, target, up, weights)[0]
                      - engine.forward(model, target, down, weights)[0])[0] / (2 * step)
        np.testing.assert_allclose(grads[(0, *index)], difference, rtol=1e-4, atol=1e-9)


def test_every_method_explains_the_target_with_its_predicted_class(model_with_head):
    model, head = model_with_head
    x = np.random.default_rng(7).uniform(0, 255, (2, 6, 7, 3))
    features = keras.Model(model.input, model.get_layer("features").output)(x).numpy()
    located = head.probabilities(features).max(axis=(1, 2))
    predicted = model(x).numpy().argmax(axis=1)
    for method in ("gradient", "layercam", "gradcam", "integrated_gradients", "occlusion"):
        result = attribute(model, x, method=method, layer=POSITION_TARGET)
        np.testing.assert_array_equal(result.weights.argmax(axis=1), predicted)
        np.testing.assert_allclose(result.scores, located[[0, 1], predicted], rtol=1e-5)
        assert np.abs(result.values).max() > 0


def test_a_model_without_a_fitting_head_is_refused():
    model = _float64_model()
    with pytest.raises(ValueError, match="needs the model's position head.*fit-positions"):
        engine.make_target(model, POSITION_TARGET)
    ph.attach_position_head(model, _head(5, 3, (3,)))
    try:
        with pytest.raises(ValueError, match="reads 5 channels and 3 classes.*has 4"):
            attribute(model, np.zeros((1, 6, 7, 3)), layer=POSITION_TARGET)
    finally:
        ph.attach_position_head(model, None)


def test_another_head_gets_its_own_compiled_function(model_with_head):
    model, first = model_with_head
    x = np.random.default_rng(8).uniform(0, 255, (1, 6, 7, 3))
    before = attribute(model, x, layer=POSITION_TARGET, class_mask=1)
    traces = engine.tracing_count(model)
    again = attribute(model, x[:, :5, :6], layer=POSITION_TARGET, class_mask=2)
    assert engine.tracing_count(model) == traces  # another size and class: no retrace
    assert again.values.shape == (1, 5, 6, 3)
    ph.attach_position_head(model, _head(4, 3, (3,), seed=9))
    after = attribute(model, x, layer=POSITION_TARGET, class_mask=1)
    assert not np.allclose(after.scores, before.scores)
    assert not np.allclose(after.values, before.values)
    ph.attach_position_head(model, first)
    np.testing.assert_allclose(attribute(model, x, layer=POSITION_TARGET, class_mask=1).values,
                               before.values)


def test_cams_pixel_detail_is_the_map_times_the_targets_gradient_magnitude(model_with_head):
    """CAM's ``detail``: the map times each pixel's gradient magnitude (largest over the colour
    channels) of the position head's target for the same classes, to CAM_DETAIL_POWER; the
    logits' gradient for a model without a head; the predicted class found once for both."""
    from sensitivity.engine.choices import CAM_DETAIL_POWER

    model, _ = model_with_head
    x = np.random.default_rng(10).uniform(0, 255, (2, 6, 7, 3))
    for class_mask in (None, [0, 2]):
        options = {"method": "cam", "class_mask": class_mask, "probability": True}
        plain = attribute(model, x, **options)
        detailed = attribute(model, x, detail=True, **options)
        gradient = attribute(model, x, method="gradient", layer=POSITION_TARGET,
                             class_mask=plain.weights.astype(np.float64))
        expected = plain.values * np.abs(gradient.values).max(axis=-1) ** CAM_DETAIL_POWER
        np.testing.assert_allclose(detailed.values, expected, rtol=1e-5, atol=1e-12)
        np.testing.assert_array_equal(detailed.weights, plain.weights)
        assert not np.allclose(detailed.values, plain.values)
    ph.attach_position_head(model, None)
    plain = attribute(model, x, method="cam", class_mask=1)
    logits = attribute(model, x, method="gradient", class_mask=1)
    np.testing.assert_allclose(
        attribute(model, x, method="cam", class_mask=1, detail=True).values,
        plain.values * np.abs(logits.values).max(axis=-1) ** CAM_DETAIL_POWER, rtol=1e-5,
        atol=1e-12)
