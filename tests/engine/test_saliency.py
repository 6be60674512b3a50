"""Tests of the gradient engine and the attribution methods, on tiny models only."""

from __future__ import annotations

import warnings

import sensitivity  # noqa: F401  (sets the TensorFlow environment before TF is imported)

# isort: split
import keras
import numpy as np
import pytest
import tensorflow as tf
from scipy import ndimage

from sensitivity.engine import gradients as engine
from sensitivity.engine.saliency import (
    CHANNEL_REDUCTIONS,
    METHODS,
    SIGNS,
    SaturationWarning,
    attribute,
    describe_methods,
    layer_names,
    saliency,
    to_map,
    tracing_count,
)
from sensitivity.methods import path_sampling
from sensitivity.methods.path_sampling import allocate_points, segment_points
from sensitivity.model.wrn import build_wrn

# --------------------------------------------------------------------------------------------
# Models.


def _randomise_batch_norm(model, rng) -> None:
    """Non-trivial moving statistics, so inference-mode batch norm matters."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights(
                [
                    rng.uniform(0.5, 1.5, gamma.shape).astype(gamma.dtype),
                    rng.normal(0.0, 0.1, beta.shape).astype(beta.dtype),
                    rng.normal(0.0, 0.2, mean.shape).astype(mean.dtype),
                    rng.uniform(0.5, 1.5, var.shape).astype(var.dtype),
                ]
            )


@pytest.fixture(scope="module")
def wrn():
    keras.utils.set_random_seed(0)
    model = build_wrn(10, 1)
    _randomise_batch_norm(model, np.random.default_rng(0))
    return model


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(1).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)


def _dense_model(weights: np.ndarray, bias: np.ndarray | None = None, side: int = 4):
    """Flatten + Dense: the gradient of logit c at pixel (i, j, ch) is weights[flat, c]."""
    inputs = keras.Input((side, side, 3))
    dense = keras.layers.Dense(weights.shape[1], name="logits")
    model = keras.Model(inputs, dense(keras.layers.Flatten()(inputs)))
    dense.set_weights([weights, np.zeros(weights.shape[1]) if bias is None else bias])
    return model


@pytest.fixture(scope="module")
def linear():
    """A Dense model over 4x4 pixels with known weights ``W`` of shape (48, 10)."""
    weights = np.random.default_rng(2).normal(0, 1, (48, 10)).astype(np.float32)
    return _dense_model(weights), weights


def _pointwise_model(kernel: np.ndarray):
    """1x1 convolution (3 -> 10, no bias) and global average pooling: fully convolutional."""
    inputs = keras.Input((None, None, 3))
    conv = keras.layers.Conv2D(10, 1, use_bias=False, name="pointwise")
    pooled = keras.layers.GlobalAveragePooling2D()(conv(inputs))
    model = keras.Model(inputs, pooled)
    conv.set_weights([kernel.reshape(1, 1, 3, 10)])
    return model


def _tape_gradient(fn, x: np.ndarray) -> np.ndarray:
    """Independent eager gradient of ``sum(fn(x))`` with respect to ``x``."""
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        total = tf.reduce_sum(fn(x))
    return tape.gradient(total, x).numpy()


def _close(actual: np.ndarray, expected: np.ndarray, rtol: float = 1e-4) -> None:
    scale = float(np.abs(expected).max())
    assert scale > 0
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale)


def _raw(model, x, **kwargs) -> np.ndarray:
    return saliency(model, x, sign="signed", reduce_channels="none", **kwargs)


# --------------------------------------------------------------------------------------------
# Correctness of the gradient.


def test_gradient_matches_central_finite_differences_in_float64():
    keras.utils.set_random_seed(3)
    inputs = keras.Input((5, 5, 3), dtype="float64")
    h = keras.layers.Conv2D(4, 3, activation="tanh", dtype="float64")(inputs)
    h = keras.layers.BatchNormalization(dtype="float64")(h)
    h = keras.layers.Flatten(dtype="float64")(h)
    model = keras.Model(inputs, keras.layers.Dense(10, dtype="float64")(h))
    _randomise_batch_norm(model, np.random.default_rng(3))
    for layer in model.layers:  # scale weights so that 0..255 pixels keep tanh unsaturated
        if isinstance(layer, keras.layers.Conv2D):
            layer.set_weights([w * 0.002 for w in layer.get_weights()])
    x = np.random.default_rng(4).uniform(0, 255, (1, 5, 5, 3))
    for layer, cls in (("logits", 2), ("log_probabilities", 7)):
        ours = _raw(model, x, layer=layer, class_mask=cls)[0].astype(np.float64)
        eps = 1e-3
        basis = np.eye(x.size).reshape(-1, 5, 5, 3) * eps
        plus = model(x + basis, training=False).numpy()
        minus = model(x - basis, training=False).numpy()
        if layer == "log_probabilities":
            plus, minus = (v - np.log(np.exp(v).sum(1, keepdims=True)) for v in (plus, minus))
        fd = ((plus[:, cls] - minus[:, cls]) / (2 * eps)).reshape(5, 5, 3)
        error = np.linalg.norm(ours - fd) / np.linalg.norm(fd)
        assert error < 1e-3, (layer, error)


def test_gradients_match_an_eager_tape(wrn, images):
    logits = wrn(images, training=False).numpy()
    predicted = logits.argmax(axis=1)
    onehot = tf.one_hot(predicted, 10)
    expected = _tape_gradient(lambda x: wrn(x, training=False) * onehot, images)
    _close(_raw(wrn, images), expected)

    with warnings.catch_warnings():
        warnings.simplefilter("error", SaturationWarning)  # not saturated here
        ours = _raw(wrn, images, layer="probabilities", class_mask=3)
    expected = _tape_gradient(lambda x: tf.nn.softmax(wrn(x, training=False))[:, 3], images)
    _close(ours, expected)

    inner = keras.Model(wrn.input, wrn.get_layer("group2_block1").output)
    expected = _tape_gradient(lambda x: inner(x, training=False), images)
    _close(_raw(wrn, images, layer="group2_block1"), expected)


@pytest.mark.parametrize("reduction", ["sum", "mean", "l2"])
@pytest.mark.parametrize("channel", [None, 5])
def test_inner_layer_reductions(wrn, images, reduction, channel):
    inner = keras.Model(wrn.input, wrn.get_layer("group1_block1_conv1").output)

    def score(x):
        h = inner(x, training=False)
        h = h if channel is None else h[..., channel : channel + 1]
        if reduction == "sum":
            return tf.reduce_sum(h, axis=[1, 2, 3])
        if reduction == "mean":
            return tf.reduce_mean(h, axis=[1, 2, 3])
        return tf.norm(tf.reshape(h, [tf.shape(h)[0], -1]), axis=1)

    ours = _raw(
        wrn, images[:1], layer="group1_block1_conv1", layer_reduction=reduction, channel=channel
    )
    _close(ours, _tape_gradient(score, images[:1]))


def test_class_mask_is_linear(wrn, images):
    g1 = _raw(wrn, images, class_mask=1)
    g4 = _raw(wrn, images, class_mask=4)
    weights = np.zeros(10)
    weights[[1, 4]] = [0.7, -2.0]
    _close(_raw(wrn, images, class_mask=weights), 0.7 * g1 - 2.0 * g4)
    _close(_raw(wrn, images, class_mask=[1, 4]), g1 + g4)


@pytest.mark.parametrize("sign", list(SIGNS))
@pytest.mark.parametrize("reduction", list(CHANNEL_REDUCTIONS))
def test_sign_and_channel_reduction_by_hand(linear, sign, reduction):
    model, weights = linear
    x = np.full((1, 4, 4, 3), 100.0, np.float32)
    grad = weights[:, 6].reshape(4, 4, 3)  # the gradient of logit 6, by hand
    processed = {
        "abs": np.abs(grad),
        "positive": np.maximum(grad, 0),
        "negative": np.maximum(-grad, 0),
        "signed": grad,
    }[sign]
    if reduction == "max":
        index = np.abs(processed).argmax(axis=-1)
        expected = np.take_along_axis(processed, index[..., None], axis=-1)[..., 0]
    elif reduction == "sum":
        expected = processed.sum(axis=-1)
    elif reduction == "l2":
        expected = np.sqrt((processed**2).sum(axis=-1))
    else:
        expected = processed
    ours = saliency(model, x, class_mask=6, sign=sign, reduce_channels=reduction)
    assert ours.dtype == np.float32
    assert ours.shape == (1, 4, 4) + ((3,) if reduction == "none" else ())
    np.testing.assert_allclose(ours[0], expected, rtol=1e-6, atol=1e-7)


def test_signed_max_keeps_the_sign_of_the_largest_magnitude():
    values = np.array([[[[0.5, -2.0, 1.0]]]], np.float32)
    assert to_map(values, "signed", "max")[0, 0, 0] == -2.0
    assert to_map(values, "abs", "max")[0, 0, 0] == 2.0
    assert to_map(values, "positive", "max")[0, 0, 0] == 1.0


def test_gradient_x_input_by_hand(linear):
    model, weights = linear
    x = np.random.default_rng(5).uniform(0, 255, (1, 4, 4, 3)).astype(np.float32)
    ours = _raw(model, x, method="gradient_x_input", class_mask=2)[0]
    np.testing.assert_allclose(ours, weights[:, 2].reshape(4, 4, 3) * x[0], rtol=1e-5)


def test_dropout_stays_off(linear):
    _, weights = linear
    inputs = keras.Input((4, 4, 3))
    dense = keras.layers.Dense(10)
    hidden = keras.layers.Dropout(0.9)(keras.layers.Flatten()(inputs))
    model = keras.Model(inputs, dense(hidden))
    dense.set_weights([weights, np.zeros(10)])
    x = np.full((3, 4, 4, 3), 10.0, np.float32)
    ours = _raw(model, x, class_mask=1)
    np.testing.assert_allclose(ours, np.broadcast_to(weights[:, 1].reshape(4, 4, 3), x.shape))


def test_single_image_and_predicted_class(linear):
    model, weights = linear
    x = np.random.default_rng(6).uniform(0, 255, (4, 4, 3)).astype(np.float32)
    predicted = int((x.reshape(-1) @ weights).argmax())
    ours = _raw(model, x)
    assert ours.shape == (1, 4, 4, 3)
    np.testing.assert_allclose(ours[0], weights[:, predicted].reshape(4, 4, 3), rtol=1e-6)


# --------------------------------------------------------------------------------------------
# Validation.


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"class_mask": 10}, "out of range"),
        ({"class_mask": -1}, "out of range"),
        ({"class_mask": [1, 12]}, "out of range"),
        ({"class_mask": [1, 1]}, "repeats"),
        ({"class_mask": np.ones(9)}, "needs 10 values"),
        ({"class_mask": np.r_[np.ones(9), np.nan]}, "NaN"),
        ({"class_mask": True}, "bool"),
        ({"class_mask": "cat"}, "numeric"),
        ({"layer": "no_such_layer"}, "no layer"),
        ({"layer": "group1_block1_conv1", "class_mask": 3}, "inner layer"),
        ({"layer": "group1_block1_conv1", "channel": 16}, "out of range"),
        ({"layer": "group1_block1_conv1", "layer_reduction": "max"}, "layer_reduction"),
        ({"channel": 1}, "inner layer"),
        ({"method": "lime"}, "unknown method"),
        ({"samples": 5}, "no option"),
        ({"method": "smoothgrad", "samples": 0}, "positive integer"),
        ({"method": "smoothgrad", "variant": "median"}, "variant"),
        ({"method": "integrated_gradients", "baseline": "white"}, "baseline"),
        ({"method": "gradcam", "target_layer": "pool"}, "4-D"),
        ({"sign": "both"}, "sign"),
        ({"reduce_channels": "mean"}, "reduce_channels"),
    ],
)
def test_bad_arguments_raise_clear_errors(wrn, images, kwargs, message):
    with pytest.raises(ValueError, match=message):
        saliency(wrn, images[:1], **kwargs)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_images_are_rejected(wrn, images, bad):
    x = images[:1].copy()
    x[0, 3, 4, 1] = bad
    with pytest.raises(ValueError, match="NaN or infinite"):
        saliency(wrn, x)


def test_every_method_runs_from_its_own_module():
    """``sensitivity.methods.<name>`` declares the runner of each method of ``METHODS``; a runner
    that finds the predicted class in its pass must also give the scores there (one pass)."""
    import importlib

    from sensitivity.methods import entry

    assert set(entry.RUNNERS) == set(METHODS)
    for name, runner in entry.RUNNERS.items():
        assert importlib.import_module(f"sensitivity.methods.{name}").RUNNER is runner
        assert runner.one_pass or not runner.finds_class, name


def test_methods_are_described():
    described = {entry["name"]: entry for entry in describe_methods()}
    assert (
        set(described)
        == set(METHODS)
        == {
            "gradient",
            "gradient_x_input",
            "smoothgrad",
            "integrated_gradients",
            "gradcam",
            "guided_backprop",
            "occlusion",
            "cam",
            "layercam",
            "scorecam",
            "rise",
        }
    )
    assert described["smoothgrad"]["options"]["samples"]["default"] == 50
    assert all(entry["description"] for entry in described.values())


# --------------------------------------------------------------------------------------------
# SmoothGrad and Integrated Gradients.


def test_smoothgrad_on_a_linear_model(linear):
    model, weights = linear
    x = np.full((2, 4, 4, 3), 128.0, np.float32)
    grad = weights[:, 3].reshape(4, 4, 3)
    fractions = []
    kw = {"method": "smoothgrad", "class_mask": 3, "samples": 10, "max_batch": 6}
    mean = _raw(model, x, progress=fractions.append, **kw)
    squared = _raw(model, x, variant="squared", **kw)
    vargrad = _raw(model, x, variant="vargrad", **kw)
    np.testing.assert_allclose(mean, np.broadcast_to(grad, mean.shape), rtol=1e-5)
    np.testing.assert_allclose(squared, np.broadcast_to(grad**2, mean.shape), rtol=1e-5)
    assert np.abs(vargrad).max() < 1e-6 * np.abs(grad).max() ** 2
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and len(fractions) >= 4


def test_smoothgrad_noise_scale_on_a_quadratic_model():
    # Logit 0 = 0.5 * sum(x^2) (a product of the input with itself, pooled, then a dense layer
    # that undoes the average): its gradient at x + eps is x + eps, so over n samples of
    # eps ~ N(0, sigma^2), sigma = noise * 255, the mean is x + mean(eps), VarGrad (the
    # variance with 1 / n) is sigma^2 (n - 1) / n and the squared variant x^2 + sigma^2 on
    # average.
    side, n, noise = 8, 200, 0.1
    sigma = noise * 255.0
    inputs = keras.Input((side, side, 3))
    squares = keras.layers.Multiply()([inputs, inputs])
    dense = keras.layers.Dense(10, use_bias=False, name="logits")
    model = keras.Model(inputs, dense(keras.layers.GlobalAveragePooling2D()(squares)))
    kernel = np.zeros((3, 10), np.float32)
    kernel[:, 0] = 0.5 * side * side
    dense.set_weights([kernel])
    x = np.random.default_rng(17).uniform(0, 30, (1, side, side, 3)).astype(np.float32)
    np.testing.assert_allclose(_raw(model, x, class_mask=0), x, rtol=1e-5)  # the gradient is x
    kw = {"method": "smoothgrad", "class_mask": 0, "samples": n, "noise": noise, "seed": 3}
    mean = _raw(model, x, **kw).astype(np.float64)
    vargrad = _raw(model, x, variant="vargrad", **kw).astype(np.float64)
    squared = _raw(model, x, variant="squared", **kw).astype(np.float64)
    # Per pixel: mean(eps) has standard deviation sigma / sqrt(n); allow 5 of them.
    assert np.abs(mean - x).max() < 5 * sigma / np.sqrt(n)
    # Over the 192 values, the average VarGrad has a relative standard deviation of
    # sqrt(2 / n) / sqrt(192) = 0.7 %; the squared variant's 2 x mean(eps) term adds 0.6 %.
    np.testing.assert_allclose(vargrad.mean(), sigma**2 * (n - 1) / n, rtol=0.05)
    np.testing.assert_allclose((squared - x.astype(np.float64) ** 2).mean(), sigma**2,
                               rtol=0.05)
    # Per pixel the sample variance (relative standard deviation sqrt(2 / n) = 10 %) stays
    # within a factor of 2 of sigma^2: at least 5 standard deviations.
    assert 0.5 < vargrad.min() / sigma**2 and vargrad.max() / sigma**2 < 2.0


def test_smoothgrad_is_reproducible_and_smooths(wrn, images):
    a = _raw(wrn, images[:1], method="smoothgrad", samples=6, seed=1)
    b = _raw(wrn, images[:1], method="smoothgrad", samples=6, seed=1)
    np.testing.assert_array_equal(a, b)
    c = _raw(wrn, images[:1], method="smoothgrad", samples=6, seed=2)
    assert not np.allclose(a, c)
    zero = _raw(wrn, images[:1], method="smoothgrad", samples=3, noise=0.0, class_mask=2)
    _close(zero, _raw(wrn, images[:1], class_mask=2))


def test_integrated_gradients_on_a_linear_model(linear):
    model, weights = linear
    x = np.random.default_rng(7).uniform(0, 255, (2, 4, 4, 3)).astype(np.float32)
    result = attribute(model, x, method="integrated_gradients", steps=4, class_mask=8)
    np.testing.assert_allclose(result.values, x * weights[:, 8].reshape(4, 4, 3), rtol=1e-4)
    assert result.completeness_gap.max() < 1e-4


@pytest.mark.parametrize("baseline", ["blurred", "noise"])
def test_integrated_gradients_baselines_on_a_linear_model(baseline):
    # On a linear model the attribution is (x - baseline) * w exactly, pixel by pixel, so the
    # baseline is x - attribution / w; compare it with a blur (sigma 4 pixels of a 32x32 image
    # is 2 pixels here, radius ceil(3 sigma), border "reflect") or the seeded uniform noise.
    side, cls = 16, 5
    weights = np.random.default_rng(15).normal(0, 1, (side * side * 3, 10)).astype(np.float32)
    model = _dense_model(weights, side=side)
    x = np.random.default_rng(16).uniform(0, 255, (2, side, side, 3)).astype(np.float32)
    result = attribute(model, x, method="integrated_gradients", steps=4, class_mask=cls,
                       baseline=baseline, blur_sigma=4.0, seed=7)
    w = weights[:, cls].reshape(side, side, 3).astype(np.float64)
    usable = np.abs(w) > 1e-2
    recovered = x - result.values.astype(np.float64) / np.where(usable, w, 1.0)
    if baseline == "blurred":
        expected = np.stack([ndimage.gaussian_filter(image.astype(np.float64), 2.0,
                                                     mode="reflect", radius=6, axes=(0, 1))
                             for image in x])
    else:
        expected = np.random.default_rng(7).uniform(0.0, 255.0, x.shape).astype(np.float32)
    usable = np.broadcast_to(usable, x.shape)
    np.testing.assert_allclose(recovered[usable], expected[usable], rtol=0, atol=1e-2)
    direct = model(expected.astype(np.float32), training=False).numpy()[:, cls]
    np.testing.assert_allclose(result.baseline_scores, direct, rtol=1e-5, atol=1e-3)


def test_allocate_points_splits_in_proportion_with_largest_remainders():
    shares = np.array([[0.0, 1.0, 3.0, 0.0], [1.0, 1.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    counts = allocate_points(shares, 6)
    assert counts.dtype.kind == "i" and (counts.sum(axis=1) == 6).all()
    # 1.5 and 4.5: one remainder of 0.5 left over, to the earlier of the two.
    np.testing.assert_array_equal(counts[0], [0, 2, 4, 0])
    np.testing.assert_array_equal(counts[1], [2, 2, 2, 0])
    # No shares at all: even split, the remainder to the earliest segments.
    np.testing.assert_array_equal(counts[2], [2, 2, 1, 1])
    np.testing.assert_array_equal(allocate_points(shares[:1], 0), [[0, 0, 0, 0]])


def test_segment_points_start_at_midpoints_and_continue_without_repeats():
    counts = np.array([[1, 3, 0, 2], [2, 2, 1, 1]])
    # One point per segment: the midpoint rule.
    np.testing.assert_allclose(segment_points(np.ones((1, 4), int))[0], (np.arange(4) + 0.5) / 4)
    g = (3 - np.sqrt(5)) / 2
    first = segment_points(counts)
    np.testing.assert_allclose(
        first[0],
        np.r_[1 / 8, (1 + (0.5 + np.arange(3) * g) % 1) / 4, (3 + np.array([0.5, 0.5 + g])) / 4],
    )
    # A later round continues each segment's sequence where the last one stopped.
    more = np.array([[2, 0, 1, 1], [0, 1, 2, 1]])
    second = segment_points(more, placed=counts)
    for i in range(2):
        together = segment_points((counts + more)[i:i + 1])[0]
        np.testing.assert_allclose(np.sort(np.r_[first[i], second[i]]), np.sort(together))
    # Every point lies inside its segment, and no segment gets the same point twice.
    many = segment_points(np.array([[40, 0, 25]]))[0]
    segment = np.repeat([0, 2], [40, 25])
    assert ((many * 3 >= segment) & (many * 3 < segment + 1)).all()
    assert len(np.unique(np.round(many, 12))) == 65
    # Spread evenly: 40 points leave no gap wider than 2 / 40 of the segment.
    assert np.diff(np.r_[0, np.sort(many[:40] * 3), 1]).max() < 2 / 40


def test_adaptive_path_sampling_beats_the_midpoint_rule_at_kinks():
    # f(x) = relu(sum(x) - 100) on 1x1 images, from black to v per channel: the kink at
    # alpha = 100 / (3 v) moves along the path with v. f(x) = 3 v - 100, one third per channel.
    inputs = keras.Input((None, None, 3))
    total = keras.layers.Lambda(lambda t: keras.ops.sum(t, axis=(1, 2, 3)))(inputs)
    relu = keras.layers.ReLU()(keras.layers.Reshape((1,))(total) - 100.0)
    model = keras.Model(inputs, keras.layers.Concatenate()([relu] * 10))
    v = np.linspace(40.0, 120.0, 41)
    x = np.broadcast_to(v[:, None, None, None], (41, 1, 1, 3)).astype(np.float32)
    errors = {}
    for sampling in ("uniform", "adaptive"):
        result = attribute(model, x, method="integrated_gradients", steps=16, class_mask=0,
                           path_sampling=sampling)
        np.testing.assert_allclose(result.values, result.values[..., :1] * np.ones(3))
        error = np.abs(result.values.sum(axis=(1, 2, 3)) - (3 * v - 100)) / (3 * v - 100)
        np.testing.assert_allclose(result.completeness_gap, error, rtol=1e-3, atol=1e-6)
        errors[sampling] = error.mean()
    assert errors["adaptive"] < 0.8 * errors["uniform"], errors


def test_adaptive_integrated_gradients_in_groups_of_images_is_unchanged(wrn, monkeypatch):
    x = np.random.default_rng(5).uniform(0, 255, (3, 32, 32, 3)).astype(np.float32)
    kw = {"method": "integrated_gradients", "steps": 12, "class_mask": 4, "max_batch": 5}
    together = attribute(wrn, x, **kw)
    monkeypatch.setattr(path_sampling, "SEGMENT_SUMS_BUDGET", 1)  # one image at a time
    fractions = []
    apart = attribute(wrn, x, progress=fractions.append, **kw)
    np.testing.assert_allclose(apart.values, together.values, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(apart.completeness_gap, together.completeness_gap, atol=1e-6)
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and len(fractions) >= 6


@pytest.mark.parametrize("baseline", ["black", "blurred", "noise"])
def test_integrated_gradients_completeness(wrn, images, baseline):
    result = attribute(wrn, images, method="integrated_gradients", steps=64, baseline=baseline)
    change = result.scores.astype(np.float64) - result.baseline_scores
    total = result.values.reshape(len(images), -1).sum(axis=1, dtype=np.float64)
    gap = np.abs(total - change) / np.abs(change)
    np.testing.assert_allclose(result.completeness_gap, gap, rtol=1e-3)
    if baseline != "noise":  # a noise baseline scores close to the image: |change| is small
        assert gap.max() < 0.02, gap


# --------------------------------------------------------------------------------------------
# Grad-CAM.


@pytest.mark.parametrize("plus_plus", [False, True])
@pytest.mark.parametrize("shape", [(32, 32), (40, 48)])
def test_gradcam_is_non_negative_and_input_sized(wrn, plus_plus, shape):
    x = np.random.default_rng(8).uniform(0, 255, (2, *shape, 3)).astype(np.float32)
    maps = saliency(wrn, x, method="gradcam", plus_plus=plus_plus)
    assert maps.shape == (2, *shape)
    assert np.isfinite(maps).all() and maps.min() >= 0 and maps.max() > 0


def test_gradcam_equals_the_class_activation_map_of_a_linear_head(wrn, images):
    # final_relu -> global average pooling -> dense: the gradient on feature map k is
    # W[k, c] / (h w), so Grad-CAM is ReLU(sum_k W[k, c] A_k) / (h w) (Zhou et al.'s CAM).
    features = keras.Model(wrn.input, wrn.get_layer("final_relu").output)(images).numpy()
    kernel = wrn.get_layer("logits").get_weights()[0]
    cls = 4
    cam = np.maximum(np.einsum("nhwk,k->nhw", features, kernel[:, cls]), 0) / 64.0
    expected = tf.image.resize(cam[..., None], (32, 32), method="bilinear").numpy()[..., 0]
    ours = saliency(wrn, images, method="gradcam", target_layer="final_relu", class_mask=cls)
    _close(ours, expected, rtol=1e-4)
    assert engine.last_spatial_layer(wrn) == "final_relu"
    _close(saliency(wrn, images, method="gradcam", class_mask=cls), expected, rtol=1e-4)


def test_gradcam_at_a_non_square_size_by_hand_on_the_linear_head(wrn):
    # 48x80 pixels: final_relu is 12x20 (two stride-2 groups), so each feature map's gradient
    # is W[k, c] / 240 and Grad-CAM is ReLU(sum_k W[k, c] A_k) / 240, resized to 48x80.
    x = np.random.default_rng(15).uniform(0, 255, (2, 48, 80, 3)).astype(np.float32)
    features = keras.Model(wrn.input, wrn.get_layer("final_relu").output)(x).numpy()
    assert features.shape[1:3] == (12, 20)
    kernel = wrn.get_layer("logits").get_weights()[0]
    cls = 2
    cam = np.maximum(np.einsum("nhwk,k->nhw", features, kernel[:, cls]), 0) / 240.0
    expected = tf.image.resize(cam[..., None], (48, 80), method="bilinear").numpy()[..., 0]
    ours = saliency(wrn, x, method="gradcam", class_mask=cls)
    assert ours.shape == (2, 48, 80)
    _close(ours, expected, rtol=1e-4)


def test_gradcam_plus_plus_by_hand_on_a_linear_head(wrn, images):
    # The same head: the gradient g_k = W[k, c] / (h w) is constant over positions, so
    # alpha_k = g_k^2 / (2 g_k^2 + sum_ij A_ijk g_k^3) and the weight of map k is
    # sum_ij alpha_k relu(g_k) = h w alpha_k relu(g_k) (Chattopadhyay et al., eq. 19).
    features = keras.Model(wrn.input, wrn.get_layer("final_relu").output)(images).numpy()
    features = features.astype(np.float64)
    kernel = wrn.get_layer("logits").get_weights()[0].astype(np.float64)
    cls = 4
    g = kernel[:, cls] / 64.0
    sums = features.sum(axis=(1, 2))  # (N, K)
    alpha = g**2 / (2 * g**2 + sums * g**3)
    weights = 64.0 * alpha * np.maximum(g, 0.0)
    assert (weights > 0).any() and (weights == 0).any()  # some maps count, some do not
    cam = np.maximum(np.einsum("nhwk,nk->nhw", features, weights), 0)
    expected = tf.image.resize(cam[..., None], (32, 32), method="bilinear").numpy()[..., 0]
    ours = saliency(wrn, images, method="gradcam", plus_plus=True, target_layer="final_relu",
                    class_mask=cls)
    _close(ours, expected, rtol=1e-4)


# --------------------------------------------------------------------------------------------
# Guided backpropagation.


def test_guided_backprop_by_hand():
    rng = np.random.default_rng(9)
    w1, w2 = rng.normal(0, 0.1, (12, 6)), rng.normal(0, 1, (6, 10))
    inputs = keras.Input((2, 2, 3))
    first = keras.layers.Dense(6)
    second = keras.layers.Dense(10)
    model = keras.Model(inputs, second(keras.layers.ReLU()(first(keras.layers.Flatten()(inputs)))))
    first.set_weights([w1, np.zeros(6)])
    second.set_weights([w2, np.zeros(10)])
    x = rng.uniform(0, 255, (1, 2, 2, 3)).astype(np.float32)
    z = x.reshape(1, -1) @ w1
    guided = w1 @ ((z[0] > 0) * np.maximum(w2[:, 5], 0))
    ours = _raw(model, x, method="guided_backprop", class_mask=5)
    np.testing.assert_allclose(ours[0], guided.reshape(2, 2, 3), rtol=1e-4, atol=1e-7)
    plain = w1 @ ((z[0] > 0) * w2[:, 5])
    np.testing.assert_allclose(_raw(model, x, class_mask=5)[0], plain.reshape(2, 2, 3), rtol=1e-4)


def test_guided_backprop_leaves_the_model_alone(wrn, images):
    before = wrn(images, training=False).numpy()
    names = [layer.name for layer in wrn.layers]
    maps = saliency(wrn, images, method="guided_backprop")
    assert maps.shape == (2, 32, 32)
    assert np.isfinite(maps).all() and maps.min() >= 0 and maps.max() > 0
    np.testing.assert_array_equal(wrn(images, training=False).numpy(), before)
    assert [layer.name for layer in wrn.layers] == names
    assert not np.allclose(_raw(wrn, images, method="guided_backprop"), _raw(wrn, images))


# --------------------------------------------------------------------------------------------
# Occlusion.


def _occlusion_reference(kernel, x, cls, patch, stride, fill):
    """Drop of the pooled score, by brute force over patch positions."""
    height, width = x.shape[:2]

    def score(image):
        return (image @ kernel[:, cls]).mean()

    starts = list(range(0, height - patch + 1, stride))
    if starts[-1] != height - patch:
        starts.append(height - patch)
    total = np.zeros((height, width))
    count = np.zeros((height, width))
    for y in starts:
        for x0 in starts:
            occluded = x.copy()
            occluded[y : y + patch, x0 : x0 + patch] = fill
            total[y : y + patch, x0 : x0 + patch] += score(x) - score(occluded)
            count[y : y + patch, x0 : x0 + patch] += 1
    return total / count


@pytest.mark.parametrize(("patch", "stride"), [(4, 4), (4, None), (6, 4)])
def test_occlusion_on_a_pointwise_model(patch, stride):
    kernel = np.random.default_rng(10).normal(0, 1, (3, 10)).astype(np.float32)
    model = _pointwise_model(kernel)
    x = np.random.default_rng(11).uniform(0, 255, (1, 32, 32, 3)).astype(np.float32)
    ours = saliency(
        model,
        x,
        method="occlusion",
        class_mask=7,
        sign="signed",
        patch=patch,
        stride=stride,
        fill=0.0,
        max_batch=50,
    )
    expected = _occlusion_reference(kernel, x[0], 7, patch, stride or patch // 2, 0.0)
    _close(ours[0], expected, rtol=1e-4)


def test_occlusion_mean_fill_is_each_image_s_own_mean_colour():
    """fill="mean" (the default) covers a patch with the image's mean R, G and B: by hand on
    the pointwise linear model, per image of a batch whose colours differ."""
    kernel = np.random.default_rng(13).normal(0, 1, (3, 10)).astype(np.float32)
    model = _pointwise_model(kernel)
    rng = np.random.default_rng(14)
    x = rng.uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    x[0, ..., 0] *= 0.2  # a dark red channel in the first image, a dark blue in the second
    x[1, ..., 2] *= 0.2
    for fill in ({}, {"fill": "mean"}):
        ours = saliency(model, x, method="occlusion", class_mask=3, sign="signed", patch=4,
                        **fill)
        for i in range(2):
            image = x[i].astype(np.float64)
            expected = _occlusion_reference(kernel.astype(np.float64), image, 3, 4, 2,
                                            image.mean(axis=(0, 1)))
            # Each drop is a difference of two float32 scores of the whole image (here 140 to
            # 290, drops below 2): allow some 30 float32 roundings of the score.
            score = abs((image @ kernel[:, 3]).mean())
            np.testing.assert_allclose(ours[i], expected, rtol=1e-4, atol=4e-6 * score)


def test_occlusion_scales_the_patch_with_the_image(wrn):
    x = np.random.default_rng(12).uniform(0, 255, (1, 64, 64, 3)).astype(np.float32)
    fractions = []
    maps = saliency(wrn, x, method="occlusion", sign="signed", progress=fractions.append)
    assert maps.shape == (1, 64, 64) and np.isfinite(maps).all()
    # patch 4 at 32x32 is 8 pixels here: neighbouring pixels inside a 4x4 stride cell agree
    assert np.allclose(maps[0, :4, :4], maps[0, 0, 0])
    assert fractions[-1] == 1.0


# --------------------------------------------------------------------------------------------
# Nested models.


@pytest.fixture(scope="module")
def nested():
    keras.utils.set_random_seed(13)
    inner_in = keras.Input((None, None, 4))
    h = keras.layers.Conv2D(5, 3, padding="same", name="inner_conv")(inner_in)
    h = keras.layers.BatchNormalization(name="inner_bn")(h)
    h = keras.layers.ReLU(name="inner_relu")(h)
    block = keras.Model(inner_in, h, name="block")
    tail = keras.Sequential(
        [keras.Input((None, None, 5)), keras.layers.Conv2D(6, 1, activation="relu", name="mix")],
        name="tail",
    )
    inputs = keras.Input((None, None, 3))
    pre = keras.layers.Conv2D(4, 3, padding="same", name="pre")(inputs)
    pooled = keras.layers.GlobalAveragePooling2D(name="gap")(tail(block(pre)))
    model = keras.Model(inputs, keras.layers.Dense(10, name="head")(pooled))
    _randomise_batch_norm(block, np.random.default_rng(13))
    return model


def test_nested_model_inner_layers(nested, images):
    assert {"block/inner_relu", "tail/mix", "block", "tail", "head"} <= set(layer_names(nested))
    prefix = keras.Model(nested.input, nested.get_layer("pre").output)
    block = nested.get_layer("block")
    inner = keras.Model(block.input, block.get_layer("inner_relu").output)
    expected = _tape_gradient(lambda x: inner(prefix(x), training=False), images)
    _close(_raw(nested, images, layer="block/inner_relu"), expected)
    _close(_raw(nested, images, layer="inner_relu"), expected)  # a unique name is enough
    expected = _tape_gradient(lambda x: nested(x, training=False)[:, 2], images)
    _close(_raw(nested, images, class_mask=2), expected)
    cam = saliency(nested, images, method="gradcam", target_layer="block/inner_relu")
    assert cam.shape == (2, 32, 32) and cam.min() >= 0
    guided = saliency(nested, images, method="guided_backprop")
    assert np.isfinite(guided).all() and guided.max() > 0


# --------------------------------------------------------------------------------------------
# Compilation: one trace per method family.


def test_no_retracing_across_sizes_classes_and_signs(wrn):
    rng = np.random.default_rng(14)
    sizes = [(32, 32), (40, 48), (64, 64)]
    families = [
        {"method": "gradient"},  # the predicted class, found in the gradient's own pass
        {"method": "gradient", "class_mask": 0},  # given class weights
        {"method": "gradcam"},
        {"method": "guided_backprop"},
        {"method": "guided_backprop", "class_mask": 0},
    ]
    for kwargs in families:  # first call per family traces
        saliency(wrn, rng.uniform(0, 255, (1, 32, 32, 3)), **kwargs)
    traced = tracing_count(wrn)
    calls = [
        {"method": "gradient"},
        {"method": "gradient_x_input"},
        {"method": "smoothgrad", "samples": 3},
        {"method": "integrated_gradients", "steps": 3},
        {"method": "gradcam", "plus_plus": True},
        {"method": "guided_backprop"},
        {"method": "occlusion", "patch": 16},
    ]
    for i in range(20):
        size = sizes[i % 3]
        n = 1 + i % 3
        mask = [None, int(rng.integers(10)), [1, 2], rng.normal(size=10)][i % 4]
        saliency(
            wrn,
            rng.uniform(0, 255, (n, *size, 3)),
            class_mask=mask,
            sign=list(SIGNS)[i % 4],
            reduce_channels=list(CHANNEL_REDUCTIONS)[i % 4],
            **calls[i % len(calls)],
        )
    assert tracing_count(wrn) == traced
    saliency(wrn, rng.uniform(0, 255, (1, 32, 32, 3)), layer="log_probabilities")
    assert tracing_count(wrn) == traced + 1  # a new target: its one-pass gradient function


# --------------------------------------------------------------------------------------------
# Saturation.


def test_saturated_probabilities_warn(linear):
    _, weights = linear
    bias = np.zeros(10, np.float32)
    bias[4] = 1000.0
    model = _dense_model(weights * 1e-3, bias)
    x = np.full((1, 4, 4, 3), 50.0, np.float32)
    with pytest.warns(SaturationWarning, match="logits"):
        saliency(model, x, layer="probabilities")
    with warnings.catch_warnings():
        warnings.simplefilter("error", SaturationWarning)
        maps = saliency(model, x)  # logits: no warning, a useful gradient
    assert maps.max() > 0


@pytest.mark.parametrize("layer", ["logits", "probabilities", "log_probabilities"])
def test_output_scores_from_logits_match_the_graph(wrn, images, layer):
    target = engine.make_target(wrn, layer)
    weights = np.random.default_rng(3).uniform(-1, 1, (len(images), 10)).astype(np.float32)
    graph_scores, logits = engine.forward(wrn, target, images, weights)
    np.testing.assert_allclose(engine.output_scores(target, logits, weights), graph_scores,
                               rtol=1e-5, atol=1e-6)
    # Both against the model itself and a softmax written out here, in float64.
    direct = wrn(images, training=False).numpy().astype(np.float64)
    np.testing.assert_allclose(logits, direct, rtol=1e-5, atol=1e-5)
    shifted = direct - direct.max(axis=1, keepdims=True)
    log_probabilities = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    values = {"logits": direct, "probabilities": np.exp(log_probabilities),
              "log_probabilities": log_probabilities}[layer]
    expected = (values * weights).sum(axis=1)
    np.testing.assert_allclose(graph_scores, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(engine.output_scores(target, direct, weights), expected,
                               rtol=1e-9, atol=1e-9)
    with pytest.raises(ValueError, match="not an output target"):
        engine.output_scores(engine.make_target(wrn, "group2_block1"), logits, weights)


@pytest.mark.parametrize("method", ["gradient", "gradient_x_input", "guided_backprop", "gradcam"])
def test_single_pass_methods_skip_the_forward_pass_and_report_the_same_scores(
        wrn, images, method, monkeypatch):
    reference = attribute(wrn, images, method=method, class_mask=[1, 4])
    forwards = []
    original = engine.forward
    monkeypatch.setattr(engine, "forward", lambda *a, **k: forwards.append(1) or original(*a, **k))
    result = attribute(wrn, images, method=method, class_mask=[1, 4])
    assert forwards == []
    target = engine.make_target(wrn, "logits")
    weights = np.zeros((len(images), 10), np.float32)
    weights[:, [1, 4]] = 1.0
    scores, logits = original(wrn, target, images, weights)
    np.testing.assert_allclose(result.scores, scores, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(result.logits, logits, rtol=1e-5, atol=1e-5)
    direct = wrn(images, training=False).numpy()  # the model itself, not the engine
    np.testing.assert_allclose(result.logits, direct, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(result.scores, direct[:, 1] + direct[:, 4], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(result.values, reference.values)
    predicted = attribute(wrn, images, method=method)  # no class mask: each predicted class
    if method == "gradcam":
        assert forwards == [1]  # Grad-CAM finds the predicted class with a forward pass first
        return
    assert forwards == []  # the others find it inside their one gradient pass
    _, logits = original(wrn, target, images, np.zeros((len(images), 10), np.float32))
    top = logits.argmax(axis=1)
    np.testing.assert_array_equal(top, direct.argmax(axis=1))
    np.testing.assert_allclose(predicted.logits, direct, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(predicted.scores, direct.max(axis=1), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(predicted.weights, np.eye(10)[top])
    np.testing.assert_allclose(predicted.scores, logits[np.arange(len(images)), top], rtol=1e-5)
    np.testing.assert_allclose(predicted.logits, logits, rtol=1e-5, atol=1e-5)
    onehot = attribute(wrn, images, method=method, class_mask=np.eye(10)[top])
    np.testing.assert_allclose(predicted.values, onehot.values, rtol=1e-5, atol=1e-7)


@tf.custom_gradient
def _guided_relu(x):
    """ReLU whose gradient passes only where both the input and the incoming gradient are > 0."""

    def grad(upstream):
        return upstream * tf.cast(x > 0, upstream.dtype) * tf.cast(upstream > 0, upstream.dtype)

    return tf.nn.relu(x), grad


def _with_guided_relus(model):
    """A copy of ``model`` (same weights) whose ReLUs, as layers or as activations, are guided."""

    def swap(layer):
        if isinstance(layer, keras.layers.ReLU):
            return keras.layers.Activation(_guided_relu, name=layer.name)
        config = layer.get_config()
        if config.get("activation") == "relu":
            config["activation"] = _guided_relu
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(model, clone_function=swap)
    copy.set_weights(model.get_weights())
    return copy


def _guided_by_tape(model, x, cls):
    copy = _with_guided_relus(model)
    pixels = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(pixels)
        logit = copy(pixels, training=False)[:, cls]
    return tape.gradient(logit, pixels).numpy()


def test_guided_backprop_of_relu_activations_matches_a_tape_over_guided_relus():
    keras.utils.set_random_seed(11)
    inputs = keras.Input((6, 6, 3))
    h = keras.layers.Conv2D(5, 3, activation="relu")(inputs)
    h = keras.layers.Conv2D(4, 3, activation="relu")(h)
    model = keras.Model(inputs, keras.layers.Dense(10)(keras.layers.Flatten()(h)))
    x = np.random.default_rng(11).uniform(0, 255, (2, 6, 6, 3)).astype(np.float32)
    expected = _guided_by_tape(model, x, 3)
    ours = _raw(model, x, method="guided_backprop", class_mask=3)
    _close(ours, expected, rtol=1e-4)
    # The guide matters here: a plain gradient differs.
    assert not np.allclose(_raw(model, x, class_mask=3), expected, rtol=1e-3, atol=1e-6)


def test_guided_backprop_of_a_wrn_matches_a_tape_over_guided_relus(wrn, images):
    expected = _guided_by_tape(wrn, images, 7)
    ours = _raw(wrn, images, method="guided_backprop", class_mask=7)
    _close(ours, expected, rtol=1e-4)
    assert not np.allclose(_raw(wrn, images, class_mask=7), expected, rtol=1e-3, atol=1e-6)


# --------------------------------------------------------------------------------------------
# Forward passes without gradients.


def test_repeat_runs_by_hand():
    a, b = np.zeros((2, 2, 3)), np.ones((2, 2, 3))
    np.testing.assert_array_equal(engine.repeat_runs(np.stack([a, a, b, a, a])), [0, 0, 1, 2, 2])
    assert engine.repeat_runs(np.stack([a, b, a])) is None  # equal, but not consecutive
    assert engine.repeat_runs(a[None]) is None


def test_layers_forward_passes_a_repeated_image_once(wrn, images, monkeypatch):
    """``find_objects`` repeats its image once per class: the network sees it once, and every
    copy gets the outputs that image alone gets."""
    batch = images[[0, 0, 0, 1, 1, 0]]
    seen = []
    run = engine._run

    def counted(fn, x, *rest):
        seen.append(len(x))
        return run(fn, x, *rest)

    monkeypatch.setattr(engine, "_run", counted)
    (features,), logits = engine.layers_forward(wrn, ["final_relu"], batch)
    assert seen == [3]
    for k, image in enumerate(batch):
        (alone,), alone_logits = engine.layers_forward(wrn, ["final_relu"], image[None])
        _close(features[k], alone[0])
        _close(logits[k], alone_logits[0])
