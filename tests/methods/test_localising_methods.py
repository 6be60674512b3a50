"""CAM, LayerCAM, Score-CAM, RISE and multi-scale fusion, checked against hand computations on
tiny Keras models whose maps follow from their weights, and on the shipped model for shapes and
tracing."""

from __future__ import annotations

import sensitivity  # noqa: F401  (sets the TensorFlow environment before TF is imported)

# isort: split
import keras
import numpy as np
import pytest
import scipy.ndimage
import tensorflow as tf

from sensitivity.engine.saliency import attribute, rise_masks, saliency, tracing_count

C, K = 4, 10  # feature channels, classes


def _head_model(stride: int = 1, relu: bool = True, seed: int = 0):
    """Conv 3x3 (same padding, ``stride``) [-> ReLU "features"] -> GAP -> Dense "logits" (with a
    bias, which CAM ignores). Returns the model, its dense kernel (C, K) and bias (K,)."""
    rng = np.random.default_rng(seed)
    inputs = keras.Input((None, None, 3))
    conv = keras.layers.Conv2D(C, 3, strides=stride, padding="same", use_bias=False,
                               name="features_conv")
    h = conv(inputs)
    if relu:
        h = keras.layers.ReLU(name="features")(h)
    dense = keras.layers.Dense(K, name="logits")
    model = keras.Model(inputs, dense(keras.layers.GlobalAveragePooling2D(name="pool")(h)))
    kernel = rng.normal(0, 1, (C, K)).astype(np.float32)
    bias = rng.normal(0, 1, K).astype(np.float32)
    conv.set_weights([rng.normal(0, 0.01, (3, 3, 3, C)).astype(np.float32)])
    dense.set_weights([kernel, bias])
    return model, kernel.astype(np.float64), bias.astype(np.float64)


def _features(model, layer: str, x: np.ndarray) -> np.ndarray:
    return keras.Model(model.input, model.get_layer(layer).output)(x).numpy().astype(np.float64)


def _bilinear(maps: np.ndarray, height: int, width: int, antialias: bool = False) -> np.ndarray:
    return tf.image.resize(maps[..., None], (height, width), method="bilinear",
                           antialias=antialias).numpy()[..., 0]


def _signed(model, x, **kwargs) -> np.ndarray:
    return saliency(model, x, sign="signed", **kwargs)


def _close(actual, expected, rtol: float = 1e-4) -> None:
    scale = float(np.abs(expected).max())
    assert scale > 0
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale)


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(1).uniform(0, 255, (2, 12, 10, 3)).astype(np.float32)


# --------------------------------------------------------------------------------------------
# CAM.


@pytest.mark.parametrize("stride", [1, 2])
def test_cam_is_the_dense_weights_applied_to_the_feature_map(images, stride):
    model, kernel, bias = _head_model(stride)
    features = _features(model, "features", images)
    h, w = features.shape[1:3]
    for mask in (3, [1, 4], np.linspace(-1, 1, K)):
        weights = np.zeros(K)
        if isinstance(mask, np.ndarray):
            weights = mask
        else:
            weights[mask] = 1.0
        low = np.einsum("nhwk,kc,c->nhw", features, kernel, weights)  # sum_c w_c W^T f
        expected = _bilinear(low, 12, 10) if stride > 1 else low
        result = attribute(model, images, method="cam", class_mask=mask)
        _close(result.values, expected)
        logits = model(images, training=False).numpy()
        _close(result.scores, logits @ weights)
        if stride == 1:  # no upsampling: the map's mean is the score less the bias term
            _close(result.values.mean(axis=(1, 2)), logits @ weights - bias @ weights)
    assert (h, w) == ((12, 10) if stride == 1 else (6, 5))


@pytest.mark.parametrize("stride", [1, 2])
def test_cam_probability_is_the_sigmoid_of_each_positions_logits(images, stride):
    model, kernel, bias = _head_model(stride)
    features = _features(model, "features", images)
    per_position = 1.0 / (1.0 + np.exp(-(np.einsum("nhwk,kc->nhwc", features, kernel) + bias)))
    for weights in (np.eye(K)[3], np.eye(K)[[1, 4]].sum(axis=0)):
        low = np.einsum("nhwc,c->nhw", per_position, weights)
        expected = _bilinear(low, 12, 10) if stride > 1 else low
        result = attribute(model, images, method="cam", class_mask=weights.astype(np.float32),
                           probability=True)
        _close(result.values, expected)
        assert result.values.min() >= 0.0 and result.values.max() <= weights.sum()
    # the bias counts: a class with a large bias is likely everywhere
    model.get_layer("logits").set_weights([kernel.astype(np.float32),
                                           np.where(np.arange(K) == 3, 20.0, -20.0)])
    likely = saliency(model, images, method="cam", class_mask=3, probability=True)
    unlikely = saliency(model, images, method="cam", class_mask=2, probability=True)
    assert likely.min() > 0.99 and unlikely.max() < 0.01


def test_cam_probability_without_a_bias_and_bad_values(images):
    inputs = keras.Input((12, 10, 3))
    features = keras.layers.Conv2D(C, 3, padding="same", name="features")(inputs)
    dense = keras.layers.Dense(K, use_bias=False)
    model = keras.Model(inputs, dense(keras.layers.GlobalAveragePooling2D()(features)))
    low = np.einsum("nhwk,kc->nhwc", _features(model, "features", images),
                    np.asarray(dense.kernel, np.float64))[..., 5]
    _close(saliency(model, images, method="cam", class_mask=5, probability=True),
           1.0 / (1.0 + np.exp(-low)))
    with pytest.raises(ValueError, match="probability must be True or False"):
        saliency(model, images, method="cam", class_mask=5, probability="yes")


def test_cam_of_the_predicted_class_needs_one_pass(images, monkeypatch):
    from sensitivity.engine import gradients as engine

    model, kernel, _ = _head_model()
    calls = []
    original = engine.forward
    monkeypatch.setattr(engine, "forward", lambda *a, **k: calls.append(1) or original(*a, **k))
    result = attribute(model, images, method="cam")
    assert calls == []  # the features pass gives the logits, hence the predicted class
    predicted = model(images, training=False).numpy().argmax(axis=1)
    np.testing.assert_array_equal(result.weights, np.eye(K)[predicted])
    features = _features(model, "features", images)
    _close(result.values, np.einsum("nhwk,kn->nhw", features, kernel[:, predicted]))


def test_cam_equals_gradcam_before_relu_times_positions(images):
    model, _, _ = _head_model()  # stride 1: the feature map has the image's size
    cam = _signed(model, images, method="cam", class_mask=6)
    gradcam = _signed(model, images, method="gradcam", class_mask=6)
    assert (cam < 0).any() and (cam > 0).any()
    _close(gradcam * (12 * 10), np.maximum(cam, 0.0))


@pytest.mark.parametrize("head", ["flatten", "max_pool"])
def test_cam_without_a_pooled_dense_head_suggests_gradcam(images, head):
    inputs = keras.Input((12, 10, 3))
    h = keras.layers.Conv2D(C, 3, padding="same")(inputs)
    if head == "flatten":
        out = keras.layers.Dense(K)(keras.layers.Flatten()(h))
    else:
        out = keras.layers.Dense(K)(keras.layers.GlobalMaxPooling2D()(h))
    with pytest.raises(ValueError, match="gradcam"):
        saliency(keras.Model(inputs, out), images, method="cam")


@pytest.mark.parametrize("activation", ["softmax", "sigmoid"])
def test_cam_of_a_softmax_or_sigmoid_head_is_that_of_its_logits(images, activation):
    inputs = keras.Input((12, 10, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(C, 3, padding="same",
                                                                       name="features")(inputs))
    dense = keras.layers.Dense(K, activation=activation)
    linear = keras.layers.Dense(K)
    model = keras.Model(inputs, dense(pooled))
    plain = keras.Model(inputs, linear(pooled))  # the same features, a linear copy of the head
    linear.set_weights(dense.get_weights())
    _close(_signed(model, images, method="cam", class_mask=2),
           _signed(plain, images, method="cam", class_mask=2))


def test_cam_explains_logits_only(images):
    model, _, _ = _head_model()
    with pytest.raises(ValueError, match="logits"):
        saliency(model, images, method="cam", layer="probabilities")


# --------------------------------------------------------------------------------------------
# LayerCAM.


def test_layercam_on_a_pooled_linear_head(images):
    model, kernel, _ = _head_model()
    features = _features(model, "features", images)
    positions = 12 * 10
    weights = np.zeros(K)
    weights[[2, 5]] = 1.0
    gradient = kernel @ weights / positions  # dS/dA_k(i, j), the same at every position
    expected = np.maximum(np.einsum("nhwk,k->nhw", features, np.maximum(gradient, 0.0)), 0.0)
    _close(_signed(model, images, method="layercam", class_mask=[2, 5]), expected)
    # Before the ReLU, the gradient is zero where the ReLU is off.
    z = _features(model, "features_conv", images)
    inner = np.maximum((z > 0) * gradient, 0.0)
    expected = np.maximum(np.einsum("nhwk,nhwk->nhw", z, inner), 0.0)
    ours = _signed(model, images, method="layercam", class_mask=[2, 5],
                   target_layer="features_conv")
    _close(ours, expected)


# --------------------------------------------------------------------------------------------
# Score-CAM.


def _linear_patch_model(seed: int = 3):
    """Conv 2x2 stride 2 (linear) "features" -> GAP -> Dense: every score is linear in the
    pixels and computable in NumPy. Returns the model and a NumPy ``(features, logits)``."""
    rng = np.random.default_rng(seed)
    inputs = keras.Input((None, None, 3))
    conv = keras.layers.Conv2D(C, 2, strides=2, use_bias=False, name="features")
    dense = keras.layers.Dense(K, name="logits")
    model = keras.Model(inputs, dense(keras.layers.GlobalAveragePooling2D()(conv(inputs))))
    conv_kernel = rng.normal(0, 0.01, (2, 2, 3, C))
    conv_kernel[..., 0] += 0.01  # channels of distinct mean activation on positive pixels
    kernel, bias = rng.normal(0, 1, (C, K)), rng.normal(0, 1, K)
    conv.set_weights([conv_kernel.astype(np.float32)])
    dense.set_weights([kernel.astype(np.float32), bias.astype(np.float32)])

    def numpy_model(x):
        n, height, width, _ = x.shape
        patches = x.astype(np.float64).reshape(n, height // 2, 2, width // 2, 2, 3)
        features = np.einsum("nhawbc,abck->nhwk", patches, conv_kernel)
        return features, features.mean(axis=(1, 2)) @ kernel + bias

    return model, numpy_model


def _fill(x: np.ndarray, fill: str) -> np.ndarray:
    if fill == "black":
        return np.zeros_like(x)
    if fill == "mean":
        return np.broadcast_to(x.mean(axis=(1, 2), keepdims=True), x.shape)
    sigma = 4.0 * min(x.shape[1:3]) / 32
    return scipy.ndimage.gaussian_filter(x.astype(np.float64), (0, sigma, sigma, 0),
                                         mode="reflect")


@pytest.mark.parametrize(("fill", "max_channels"), [("black", None), ("mean", 2), ("blur", None)])
def test_scorecam_by_hand_on_a_linear_model(images, fill, max_channels):
    model, numpy_model = _linear_patch_model()
    x = images.astype(np.float64)
    weights = np.zeros(K)
    weights[[0, 7]] = 1.0
    features, _ = numpy_model(x)
    base = _fill(x, fill)
    base_scores = numpy_model(base)[1] @ weights
    expected = []
    for i in range(len(x)):
        order = np.argsort(-features[i].mean(axis=(0, 1)))[: max_channels or C]
        cam = np.zeros(features.shape[1:3])
        for k in order:
            up = _bilinear(features[i : i + 1, :, :, k], 12, 10)[0]
            mask = ((up - up.min()) / (up.max() - up.min()))[..., None]
            masked = x[i] * mask + base[i] * (1 - mask)
            score = numpy_model(masked[None])[1][0] @ weights
            cam += (score - base_scores[i]) * features[i, :, :, k]
        expected.append(_bilinear(np.maximum(cam, 0.0)[None], 12, 10)[0])
    ours = _signed(model, images, method="scorecam", class_mask=[0, 7], fill=fill,
                   max_channels=max_channels, max_batch=3)
    _close(ours, np.maximum(np.array(expected), 0.0), rtol=1e-3)


def test_scorecam_validates_its_options(images):
    model, _ = _linear_patch_model()
    with pytest.raises(ValueError, match="fill"):
        saliency(model, images, method="scorecam", fill="white")
    with pytest.raises(ValueError, match="max_channels"):
        saliency(model, images, method="scorecam", max_channels=0)


# --------------------------------------------------------------------------------------------
# RISE.


def test_rise_masks_are_reproducible_smooth_grids():
    masks = rise_masks(400, 20, 14, grid=4, keep=0.3, seed=5)
    assert masks.shape == (400, 20, 14) and masks.dtype == np.float32
    assert masks.min() >= 0.0 and masks.max() <= 1.0
    np.testing.assert_array_equal(masks, rise_masks(400, 20, 14, grid=4, keep=0.3, seed=5))
    assert not np.array_equal(masks, rise_masks(400, 20, 14, grid=4, keep=0.3, seed=6))
    assert abs(masks.mean() - 0.3) < 0.03
    # Cells ceil(20 / 4) = 5 and ceil(14 / 4) = 4 pixels, the 4x4 grid upsampled to 5 cells:
    # 6.25 and 5 pixels per grid value, so neighbours differ by at most 1 / 6.25 and 1 / 5.
    assert np.abs(np.diff(masks, axis=1)).max() <= 1 / 6.25 + 1e-6
    assert np.abs(np.diff(masks, axis=2)).max() <= 1 / 5 + 1e-6
    assert ((masks == 0) | (masks == 1)).mean() > 0.2  # whole cells kept or dropped


def _pointwise_model(seed: int = 4):
    """1x1 convolution (3 -> K) and global average pooling: a linear score per class."""
    kernel = np.random.default_rng(seed).normal(0, 0.01, (3, K))
    inputs = keras.Input((None, None, 3))
    conv = keras.layers.Conv2D(K, 1, use_bias=False)
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(conv(inputs)))
    conv.set_weights([kernel.reshape(1, 1, 3, K).astype(np.float32)])
    return model, kernel


@pytest.mark.parametrize("fill", ["black", "mean", "blur"])
def test_rise_by_hand_on_a_linear_model(images, fill):
    model, kernel = _pointwise_model()
    count, grid, keep, seed = 30, 3, 0.4, 7
    masks = rise_masks(count, 12, 10, grid=grid, keep=keep, seed=seed).astype(np.float64)
    x = images.astype(np.float64)
    base = _fill(x, fill)
    weights = np.zeros(K)
    weights[[3, 8]] = [1.0, -0.5]
    expected = []
    for i in range(len(x)):
        masked = x[i] * masks[..., None] + base[i] * (1 - masks[..., None])
        scores = (masked @ kernel @ weights).mean(axis=(1, 2))  # (count,)
        expected.append(np.tensordot(scores - scores.mean(), masks, axes=1) / (count * keep))
    fractions = []
    ours = _signed(model, images, method="rise", class_mask=weights, masks=count, grid=grid,
                   keep=keep, seed=seed, fill=fill, max_batch=7, progress=fractions.append)
    _close(ours, np.array(expected), rtol=1e-3)
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and len(fractions) >= 5


@pytest.mark.parametrize(("option", "value"), [("masks", 0), ("grid", 0), ("keep", 0.0),
                                                ("keep", 1.5), ("fill", "white")])
def test_rise_validates_its_options(images, option, value):
    model, _ = _pointwise_model()
    with pytest.raises(ValueError, match=option):
        saliency(model, images, method="rise", **({"masks": 4} | {option: value}))


# --------------------------------------------------------------------------------------------
# Class masks.


@pytest.mark.parametrize(("method", "options"), [("cam", {}), ("rise", {"masks": 20})])
def test_a_list_of_classes_gives_the_sum_of_their_maps(images, method, options):
    model, _, _ = _head_model()
    one, four = (_signed(model, images, method=method, class_mask=c, **options) for c in (1, 4))
    _close(_signed(model, images, method=method, class_mask=[1, 4], **options), one + four)
    weights = np.zeros(K)
    weights[[1, 4]] = [0.5, -2.0]
    _close(_signed(model, images, method=method, class_mask=weights, **options),
           0.5 * one - 2.0 * four)


# --------------------------------------------------------------------------------------------
# Multi-scale fusion.


@pytest.mark.parametrize(("method", "options"), [
    ("gradient", {"reduce_channels": "none"}), ("cam", {}), ("rise", {"masks": 10}),
])
def test_scale_one_leaves_maps_unchanged(images, method, options):
    model, _, _ = _head_model()
    plain = _signed(model, images, method=method, **options)
    np.testing.assert_array_equal(_signed(model, images, method=method, scales=(1.0,), **options),
                                  plain)


def test_two_scales_average_the_normalised_maps(images):
    model, kernel, _ = _head_model()
    x2 = tf.image.resize(images, (24, 20), method="bilinear", antialias=True).numpy()
    maps = []
    for x in (images, x2):
        cam = np.einsum("nhwk,k->nhw", _features(model, "features", x), kernel[:, 3])
        cam = _bilinear(cam, 12, 10, antialias=True)
        maps.append(cam / np.abs(cam).max(axis=(1, 2), keepdims=True))
    for scales in ((1, 2), (2.0, 1.0)):
        result = attribute(model, images, method="cam", class_mask=3, scales=scales)
        _close(result.values, (maps[0] + maps[1]) / 2)
        logits = model(images, training=False).numpy()
        _close(result.scores, logits[:, 3])  # the scores at scale 1
        _close(result.logits, logits)


def test_two_scales_average_probabilities_as_they_are(images):
    model, kernel, bias = _head_model()
    x2 = tf.image.resize(images, (24, 20), method="bilinear", antialias=True).numpy()
    maps = []
    for x in (images, x2):
        logits = np.einsum("nhwk,k->nhw", _features(model, "features", x), kernel[:, 3]) + bias[3]
        maps.append(_bilinear(1.0 / (1.0 + np.exp(-logits)), 12, 10, antialias=True))
    assert not np.allclose(maps[1].max(axis=(1, 2)), 1.0)  # a peak normalisation would show
    result = attribute(model, images, method="cam", class_mask=3, probability=True,
                       scales=(1, 2))
    _close(result.values, (maps[0] + maps[1]) / 2)


def test_fusion_explains_the_reference_scales_class_at_every_scale(images):
    model, _, _ = _head_model()
    result = attribute(model, images, method="cam", scales=(0.5, 1.5))
    small = tf.image.resize(images, (8, 8), method="bilinear", antialias=True).numpy()
    predicted = model(small, training=False).numpy().argmax(axis=1)  # the first scale's
    np.testing.assert_array_equal(result.weights, np.eye(K)[predicted])
    by_class = attribute(model, images, method="cam", class_mask=np.eye(K)[predicted],
                         scales=(0.5, 1.5))
    np.testing.assert_allclose(result.values, by_class.values, rtol=1e-6, atol=1e-7)
    assert np.abs(result.values).max() <= 1.0 + 1e-6


@pytest.mark.parametrize("scales", [(), (0.0,), (1.0, -2.0), "1", 1.0, (True,)])
def test_bad_scales_raise(images, scales):
    model, _, _ = _head_model()
    with pytest.raises(ValueError, match="scales"):
        saliency(model, images, method="cam", scales=scales)


def test_mirror_averages_the_map_with_the_mirror_images_flipped_back(images):
    model, kernel, _ = _head_model()
    predicted = model(images, training=False).numpy().argmax(axis=1)

    def hand_cam(x):  # CAM of each image's predicted class, by hand (stride 1: full size)
        features = _features(model, "features", x)
        return np.einsum("nhwk,nk->nhw", features, kernel[:, predicted].T)

    expected = (hand_cam(images) + hand_cam(images[:, :, ::-1])[:, :, ::-1]) / 2
    result = attribute(model, images, method="cam", mirror=True)
    _close(result.values, expected)
    np.testing.assert_array_equal(result.weights, np.eye(K)[predicted])  # the image's class
    _close(result.scores, model(images, training=False).numpy()[np.arange(len(images)),
                                                                 predicted])
    assert not np.allclose(expected, hand_cam(images), atol=1e-4)  # the mirror changes the map
    # With scales, each scale's map is mirrored before the fusion normalises it.
    fused = attribute(model, images, method="cam", mirror=True, scales=(1.0,)).values
    _close(fused, expected)
    for bad in ("yes", 1, None):
        with pytest.raises(ValueError, match="mirror must be True or False"):
            saliency(model, images, method="cam", mirror=bad)


# --------------------------------------------------------------------------------------------
# The shipped model: any size, batched, no retracing per image or size.


NEW_METHODS = [
    ("cam", {}),
    ("layercam", {}),
    ("scorecam", {"max_channels": 6}),
    ("rise", {"masks": 12}),
    ("cam", {"scales": (1.0, 0.5)}),
]


def test_new_methods_on_the_shipped_model(default_model):
    rng = np.random.default_rng(9)
    for method, options in NEW_METHODS:  # the first call of each traces what it needs
        saliency(default_model, rng.uniform(0, 255, (1, 32, 32, 3)), method=method, **options)
    traced = tracing_count(default_model)
    for method, options in NEW_METHODS:
        for n, (height, width) in ((3, (32, 32)), (2, (64, 48))):
            x = rng.uniform(0, 255, (n, height, width, 3)).astype(np.float32)
            maps = saliency(default_model, x, method=method, sign="signed", **options)
            assert maps.shape == (n, height, width) and maps.dtype == np.float32
            assert np.isfinite(maps).all() and np.abs(maps).max() > 0, method
            if method != "rise" and "scales" not in options:
                masked = saliency(default_model, x, method=method, class_mask=[2, 3], **options)
                assert np.isfinite(masked).all()
    assert tracing_count(default_model) == traced


def test_cam_on_the_shipped_model_reads_final_relu(default_model):
    x = np.random.default_rng(10).uniform(0, 255, (2, 40, 32, 3)).astype(np.float32)
    features = _features(default_model, "final_relu", x)
    kernel = default_model.get_layer("logits").get_weights()[0].astype(np.float64)
    expected = _bilinear(np.einsum("nhwk,k->nhw", features, kernel[:, 5]), 40, 32)
    _close(_signed(default_model, x, method="cam", class_mask=5), expected)
