"""Model cards and other classifiers than the shipped one: a 3-class model at native size 48, a
nested Sequential backbone, a sigmoid multi-label head, a softmax output, a 1000-class
ResNet50. Expected values come from independent GradientTapes and hand-made weights."""

from __future__ import annotations

import json
import re

import sensitivity  # noqa: F401  (sets the TensorFlow environment before TF is imported)

# isort: split
import keras
import numpy as np
import pytest
import tensorflow as tf

from sensitivity.__main__ import main
from sensitivity.engine import gradients as engine
from sensitivity.engine.inference import logits as model_logits
from sensitivity.engine.inference import predict
from sensitivity.engine.saliency import saliency
from sensitivity.imaging.rules import card_rule
from sensitivity.metrics.localisation_benchmark import parse_spec
from sensitivity.model.cards import ModelCard, attach_card, card_from_json, model_card
from sensitivity.model.io import MODELS_DIR, ModelError, load_model, read_model_card
from tests.helpers import nested_backbone

METHODS_TRIED = ("gradient", "gradcam", "integrated_gradients", "occlusion")
SMALL = {"integrated_gradients": {"steps": 4}}


def _images(n: int, size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, (n, size, size, 3)).astype(np.float32)


def _backbone(inputs, channels: int = 6):
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(channels, 3, padding="same", activation="relu", name="conv")(x)
    return keras.layers.GlobalAveragePooling2D(name="pool")(x)


def _head_model(activation: str | None, classes: int = 3, size: int | None = None):
    """Conv + pooling, then a Dense ``head`` with ``activation``; returns the model and a model
    of the pre-activation built independently (the pooled features times the head's kernel)."""
    keras.utils.set_random_seed(1)
    inputs = keras.Input((size, size, 3))
    pooled = _backbone(inputs)
    head = keras.layers.Dense(classes, activation=activation, name="head")
    model = keras.Model(inputs, head(pooled))
    features = keras.Model(inputs, pooled)
    return model, lambda x: tf.matmul(features(x), head.kernel) + head.bias


def _tape(pre_activation, images: np.ndarray, weights: np.ndarray, activation=None):
    """Independent score and gradient: ``sum_c w_c f(z_c)`` of the pre-activation ``z``."""
    x = tf.constant(images)
    with tf.GradientTape() as tape:
        tape.watch(x)
        z = pre_activation(x)
        values = z if activation is None else activation(z)
        score = tf.reduce_sum(values * weights, axis=-1)
    return score.numpy(), tape.gradient(score, x).numpy()


def _write(model, path, classes, size, **fields):
    model.save(path)
    (path.with_suffix(".txt")).write_text("\n".join(classes) + "\n")
    args = ["card", str(path), "--classes", str(path.with_suffix(".txt")), "--input-size",
            str(size), *[f"--{k}={v}" for k, v in fields.items()]]
    assert main(args) == 0
    return path


# --------------------------------------------------------------------------------------------
# Cards.


def test_the_card_command_writes_a_card_that_load_model_attaches(tmp_path, capsys):
    model, _ = _head_model(None, classes=3, size=48)
    path = _write(model, tmp_path / "three.keras", ["tabby", "tiger", "lynx"], 48,
                  name="cats", accuracy=0.75)
    assert "3 classes, input 48px, head logits" in capsys.readouterr().out
    card = read_model_card(path)
    assert card["classes"] == ["tabby", "tiger", "lynx"] and card["input_size"] == 48
    assert card["input_range"] == [0, 255] and card["head"] == "logits"
    assert card["input_fixed"] is True  # the model's input is 48x48 only
    assert card["sha256"] == __import__("hashlib").sha256(path.read_bytes()).hexdigest()
    loaded = load_model(path)
    assert model_card(loaded) == ModelCard(("tabby", "tiger", "lynx"), 48, "logits", "cats",
                                           "", 0.75, card["sha256"], fixed_size=True)
    images = _images(2, 48)
    probabilities = predict(loaded, images)
    z = np.asarray(model(images), np.float64)
    expected = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(probabilities, expected, rtol=1e-5)


def test_a_missing_or_wrong_card_is_refused_naming_the_file(tmp_path):
    model, _ = _head_model(None, classes=3, size=48)
    path = _write(model, tmp_path / "three.keras", ["a", "b", "c"], 48)
    card = read_model_card(path)

    def refused(**changes) -> str:
        broken = {k: v for k, v in {**card, **changes}.items() if v is not None}
        path.with_suffix(".json").write_text(json.dumps(broken))
        with pytest.raises(ModelError) as info:
            load_model(path)
        assert str(path) in str(info.value)
        return str(info.value)

    assert "names 2 classes but the model has 3 outputs" in refused(classes=["a", "b"])
    assert "'classes' must be a list" in refused(classes=None)
    assert "'input_size' is 32 but the model takes only 48x48" in refused(input_size=32)
    assert "'input_size' must be" in refused(input_size=None)
    assert "normalisation belongs inside the model" in refused(input_range=[0, 1])
    assert "says the head is 'softmax'" in refused(head="softmax")
    assert "repeats a name" in refused(classes=["a", "a", "c"])
    assert "'input_fixed' must be true or false" in refused(input_fixed="yes")
    assert "must say 'input_fixed': true" in refused(input_fixed=False)
    rule = {"method": "gradcam", "side": 128, "fraction": 0.02, "min_probability": 0.5}
    assert "'method' among" in refused(localisation={**rule, "method": "magic"})
    assert "'side' must be 8..1024" in refused(localisation={**rule, "side": 4})
    assert "'side' must be 8..1024" in refused(localisation={**rule, "side": True})
    assert "'evidence_side' must be 8..1024" in refused(
        localisation={**rule, "evidence_side": 2000})
    assert "'fraction' must be in 0..1" in refused(localisation={**rule, "fraction": 1.5})
    assert "'min_probability' must be in 0..1" in refused(
        localisation={**rule, "min_probability": "high"})
    assert "'evidence_activation' must be one of softmax, sigmoid" in refused(
        localisation={**rule, "evidence_activation": "tanh"})
    assert "keys among" in refused(localisation={**rule, "colour": "red"})
    assert "keys among" in refused(localisation=["gradcam"])
    assert "'options' must be an object" in refused(localisation={**rule, "options": [1]})
    assert "'box_floor' must be in 0..1" in refused(localisation={**rule, "box_floor": 2})
    for bad in (96, [4], [96, True], "96"):
        assert "'sides' must be a list of sides, each 8..1024" in refused(
            localisation={**rule, "sides": bad})
    measured = {"side": 96, "scenes": "300 test scenes", "methods": {
        "gradcam": {"pointing": 0.8, "corloc": 0.5}}}

    def figures(**changes) -> dict:
        return {**measured, "methods": {"gradcam": {"pointing": 0.8, "corloc": 0.5, **changes}}}

    assert "keys methods, scenes and side" in refused(
        measured_localisation={**measured, "colour": "red"})
    assert "keys methods, scenes and side" in refused(measured_localisation=[0.8])
    assert "'side' must be 8..1024" in refused(measured_localisation={**measured, "side": 2})
    assert "'scenes' must say how" in refused(measured_localisation={**measured, "scenes": " "})
    assert "'methods' must map" in refused(measured_localisation={**measured, "methods": {}})
    assert "'magic' is not a method" in refused(
        measured_localisation={**measured, "methods": {"magic": {"pointing": 1, "corloc": 1}}})
    assert "needs 'pointing' and 'corloc' in 0..1" in refused(
        measured_localisation=figures(corloc=1.5))
    assert "needs 'pointing' and 'corloc' in 0..1" in refused(
        measured_localisation=figures(corloc=True))
    assert "needs 'pointing' and 'corloc' in 0..1" in refused(
        measured_localisation=figures(mass=0.3))
    path.with_suffix(".json").unlink()
    missing = f"model card not found: {path.with_suffix('.json')}"
    with pytest.raises(ModelError, match=re.escape(missing)):
        load_model(path)
    three = tmp_path / "labels.txt"
    three.write_text("a\nb\n")
    assert main(["card", str(path), "--classes", str(three), "--input-size", "48"]) == 2


def test_a_model_without_a_card_gets_numbered_classes_and_its_input_side():
    fixed, _ = _head_model(None, classes=4, size=40)
    assert model_card(fixed) == ModelCard(tuple(f"class {i}" for i in range(4)), 40, "logits",
                                          fixed.name, fixed_size=True)
    free, _ = _head_model("softmax", classes=2)
    assert model_card(free).native_size == 32 and model_card(free).head == "softmax"
    assert not model_card(free).fixed_size
    attach_card(free, ModelCard(("no", "yes"), 64))
    assert model_card(free).class_names == ("no", "yes")


def test_card_from_json_reads_the_shipped_cards_fields():
    card = card_from_json(read_model_card(sensitivity.DEFAULT_MODEL_PATH), "wrn-16-3.keras")
    assert card.class_names[2] == "bird" and card.native_size == 32 and card.num_classes == 10
    assert not card.fixed_size  # fully convolutional: any analysis size
    assert card.accuracy == pytest.approx(0.9166) and not card.multi_label
    rule = card_rule(card)  # its position head's probability, fused over five scales
    assert rule.method == "cam" and rule.options["probability"] and len(rule.options["scales"]) == 5
    assert not rule.sides and rule.analysis_sides == (rule.side,) == (144,)
    assert card.measured.side == 144 and "300 photo-like test scenes" in card.measured.scenes
    assert card.measured.figures("cam:probability=True") == pytest.approx((0.915, 0.793))
    assert card.measured.figures("rise") is None  # not measured on test scenes
    scenes = card_from_json(read_model_card(MODELS_DIR / "wrn-16-3-scenes.keras"), "scenes")
    assert scenes.measured.side == card_rule(scenes).side == 144
    assert scenes.measured.figures("cam:probability=True") == pytest.approx((0.902, 0.793))
    # Every method the shipped cards measured is one the library has, with its options.
    for label, _, _ in card.measured.methods + scenes.measured.methods:
        assert parse_spec(label).label == label


def test_a_cards_localisation_rule_is_what_find_objects_uses(tmp_path):
    from sensitivity.imaging.objects import DEFAULT_RULE, ObjectRule, find_objects, rule_for

    model, _ = _head_model(None, classes=3, size=None)
    path = _write(model, tmp_path / "free.keras", ["a", "b", "c"], 32)
    card = read_model_card(path)
    rule = {"method": "cam", "side": 40, "fraction": 0.3, "min_probability": 0.2,
            "evidence_side": 24, "evidence_activation": "sigmoid", "options": {"sign": "positive"},
            "sides": [24, 56], "box_floor": 0.25, "chosen_on": "nothing: a test"}
    path.with_suffix(".json").write_text(json.dumps({**card, "localisation": rule}))
    loaded = load_model(path)
    expected = ObjectRule(method="cam", options={"sign": "positive"}, side=40, fraction=0.3,
                          min_probability=0.2, evidence_side=24, evidence_activation="sigmoid",
                          sides=(24, 56), box_floor=0.25)
    assert rule_for(loaded) == expected
    assert rule_for(load_model(_write(model, tmp_path / "plain.keras", ["a", "b", "c"], 32))) \
        == DEFAULT_RULE
    image = _images(1, 64)[0]
    found = find_objects(loaded, image, classes=[0, 1, 2])
    assert found and {f.method for f in found} == {"cam:sign=positive"}
    assert {f.side for f in found} <= {24, 40, 56}
    assert found == find_objects(loaded, image, classes=[0, 1, 2], rule=expected)
    other = find_objects(loaded, image, classes=[0, 1, 2], rule=DEFAULT_RULE)
    assert {(f.method, f.side) for f in other} == {(DEFAULT_RULE.method, DEFAULT_RULE.side)}


# --------------------------------------------------------------------------------------------
# Output heads: the explained score is the logit before a final softmax or sigmoid.


@pytest.mark.parametrize("activation", [None, "softmax", "sigmoid"])
def test_the_logits_are_the_values_before_the_heads_activation(activation):
    model, pre_activation = _head_model(activation, classes=3)
    head = {None: "logits", "softmax": "softmax", "sigmoid": "sigmoid"}[activation]
    assert engine.head_of(model) == head and model_card(model).head == head
    images = _images(3, 20)
    weights = np.array([[1, 0, 0], [0, 1, 1], [0.5, 0, -1]], np.float32)
    score, gradient, logits = engine.gradients(model, engine.make_target(model), images, weights)
    expected_score, expected_gradient = _tape(pre_activation, images, weights)
    np.testing.assert_allclose(score, expected_score, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(gradient, expected_gradient, rtol=1e-4,
                               atol=1e-6 * np.abs(expected_gradient).max())
    np.testing.assert_allclose(logits, pre_activation(images).numpy(), rtol=1e-5, atol=1e-6)
    # the page's probabilities: softmax of the logits, or their sigmoid for a sigmoid head
    probabilities = predict(model, images)
    z = pre_activation(images).numpy().astype(np.float64)
    if activation == "sigmoid":
        np.testing.assert_allclose(probabilities, 1 / (1 + np.exp(-z)), rtol=1e-5)
    else:
        np.testing.assert_allclose(probabilities, np.exp(z) / np.exp(z).sum(1, keepdims=True),
                                   rtol=1e-5)
    if activation is not None:  # ... which is what the model itself outputs
        np.testing.assert_allclose(probabilities, model(images).numpy(), rtol=1e-4, atol=1e-7)


def test_a_sigmoid_heads_probability_target_is_the_sigmoid_of_its_logit():
    model, pre_activation = _head_model("sigmoid", classes=3)
    images = _images(2, 16, seed=3)
    weights = np.array([[0, 1, 0], [1, 0, 1]], np.float32)
    target = engine.make_target(model, "probabilities")
    score, gradient, _ = engine.gradients(model, target, images, weights)
    expected_score, expected_gradient = _tape(pre_activation, images, weights, tf.sigmoid)
    np.testing.assert_allclose(score, expected_score, rtol=1e-5)
    np.testing.assert_allclose(gradient, expected_gradient, rtol=1e-4,
                               atol=1e-6 * np.abs(expected_gradient).max())
    log_target = engine.make_target(model, "log_probabilities")
    logits = model_logits(model, images)
    np.testing.assert_allclose(engine.output_scores(log_target, logits, weights),
                               _tape(pre_activation, images, weights, tf.math.log_sigmoid)[0],
                               rtol=1e-5)


def test_a_final_softmax_layer_is_skipped_too():
    keras.utils.set_random_seed(2)
    inputs = keras.Input((None, None, 3))
    dense = keras.layers.Dense(4, name="scores")
    model = keras.Model(inputs, keras.layers.Softmax(name="softmax")(dense(_backbone(inputs))))
    assert engine.head_of(model) == "softmax"
    images = _images(2, 12)
    target = engine.make_target(model)
    _, _, logits = engine.gradients(model, target, images, np.eye(4, dtype=np.float32)[:2])
    inner = keras.Model(inputs, model.get_layer("scores").output)
    np.testing.assert_allclose(logits, inner(images).numpy(), rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------------------------
# Whole models: maps, class masks, the command line.


def _check_maps(model, images: np.ndarray, classes: int) -> None:
    """Every tried method gives a finite map of the images' size, for the predicted class and
    for a class mask; a mask of one class equals that class's one-hot weights."""
    for method in METHODS_TRIED:
        options = SMALL.get(method, {})
        maps = saliency(model, images, method=method, **options)
        assert maps.shape == images.shape[:3] and np.isfinite(maps).all(), method
        last = saliency(model, images, method=method, class_mask=classes - 1, **options)
        weights = np.zeros(classes, np.float32)
        weights[classes - 1] = 1
        np.testing.assert_allclose(
            saliency(model, images, method=method, class_mask=weights, **options), last,
            rtol=1e-5, atol=1e-6 * float(np.abs(last).max()), err_msg=method)
    with pytest.raises(ValueError, match=f"classes are 0..{classes - 1}"):
        saliency(model, images, class_mask=classes)


def test_three_classes_at_native_size_48_through_the_library_and_explain(tmp_path, capsys):
    model, pre_activation = _head_model(None, classes=3, size=48)
    path = _write(model, tmp_path / "three.keras", ["tabby", "tiger", "lynx"], 48)
    loaded = load_model(path)
    images = _images(2, 48)
    _check_maps(loaded, images, 3)
    gradient = saliency(loaded, images, method="gradient", class_mask=[0, 2], sign="signed",
                        reduce_channels="sum")
    _, expected = _tape(pre_activation, images, np.array([[1, 0, 1]] * 2, np.float32))
    np.testing.assert_allclose(gradient, expected.sum(-1), rtol=1e-4,
                               atol=1e-6 * np.abs(expected).max())

    from PIL import Image

    Image.fromarray(images[0].astype(np.uint8)).save(tmp_path / "a.png")
    out = tmp_path / "out"
    code = main(["explain", str(tmp_path / "a.png"), "--model", str(path), "--out", str(out),
                 "--class", "lynx"])
    assert code == 0, capsys.readouterr().err
    record = json.loads((out / "a.json").read_text())
    assert list(record["probabilities"]) == ["tabby", "tiger", "lynx"]
    assert record["explained_classes"] == ["lynx"] and record["settings"]["size"] == 48
    assert np.load(out / "a_map.npy").shape == (48, 48)
    assert main(["explain", str(tmp_path / "a.png"), "--model", str(path), "--out", str(out),
                 "--class", "cat"]) == 2
    assert "unknown class 'cat'" in capsys.readouterr().err


def test_a_nested_sequential_backbone():
    keras.utils.set_random_seed(3)
    model = nested_backbone(3, (5, 4))
    assert "backbone/conv2" in engine.layer_names(model) and engine.head_of(model) == "softmax"
    images = _images(2, 24)
    _check_maps(model, images, 3)
    head = model.get_layer("head")
    features = keras.Model(model.inputs, head.input)
    weights = np.array([[0, 1, 0], [1, 0, 0]], np.float32)
    score, gradient, _ = engine.gradients(model, engine.make_target(model), images, weights)
    expected_score, expected_gradient = _tape(
        lambda x: tf.matmul(features(x), head.kernel) + head.bias, images, weights)
    np.testing.assert_allclose(score, expected_score, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(gradient, expected_gradient, rtol=1e-4,
                               atol=1e-6 * np.abs(expected_gradient).max())


@pytest.fixture(scope="module")
def resnet50(tmp_path_factory):
    """keras.applications.ResNet50, random weights, 1000 classes, saved with its card. Built
    once for the module; its input is fixed at 64x64 (not 224) to keep the CPU time small."""
    keras.utils.set_random_seed(0)
    model = keras.applications.ResNet50(weights=None, input_shape=(64, 64, 3), classes=1000)
    path = tmp_path_factory.mktemp("resnet") / "resnet50.keras"
    classes = [f"n{i:08d}" for i in range(1000)]
    return _write(model, path, classes, 64, data="none: random weights")


def test_a_1000_class_resnet50(resnet50):
    model = load_model(resnet50)
    card = model_card(model)
    assert card.num_classes == 1000 and card.native_size == 64 and card.head == "softmax"
    images = _images(1, 64)
    probabilities = predict(model, images)
    assert probabilities.shape == (1, 1000)
    np.testing.assert_allclose(probabilities, model(images).numpy(), rtol=1e-3, atol=1e-7)
    head = model.get_layer("predictions")
    features = keras.Model(model.inputs, head.input)
    weights = np.zeros((1, 1000), np.float32)
    weights[0, [3, 999]] = 1
    _, expected = _tape(lambda x: tf.matmul(features(x), head.kernel) + head.bias, images,
                        weights)
    gradient = saliency(model, images, method="gradient", class_mask=[999, 3])
    np.testing.assert_allclose(gradient, np.abs(expected).max(-1), rtol=1e-3,
                               atol=1e-5 * np.abs(expected).max())
    for method in ("gradcam", "cam"):  # CAM reads the Dense softmax head's logits
        maps = saliency(model, images, method=method, class_mask=[999, 3])
        assert maps.shape == (1, 64, 64) and np.isfinite(maps).all(), method
    with pytest.raises(ValueError, match="classes are 0..999"):
        saliency(model, images, class_mask=1000)
