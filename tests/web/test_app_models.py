"""The page with an operator's own models (AppTest): a 1,000-class ResNet50, a 3-class model
of native size 48 and a model with a nested ``Sequential`` backbone, each from a folder named
by ``SENSITIVITY_MODELS_DIR`` with a card written by the card command's function. For each:
upload, the prediction table, every method's map, a class mask, a side-by-side comparison and
the downloads, each equal to what the library computes with that model on its own."""

from __future__ import annotations

import io

import keras
import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

import sensitivity
from sensitivity.engine.choices import METHODS
from sensitivity.model.io import write_operator_card
from sensitivity.web.serving import ready_model
from tests.conftest import PHOTOS_DIR
from tests.helpers import nested_backbone
from tests.web.test_app import (
    APP,
    SMALL_OPTIONS,
    array,
    charts,
    heat_values,
    page_options,
    predictions,
    widget,
)

PHOTO = PHOTOS_DIR / "dog.jpg"


def resnet50_1000() -> keras.Model:
    """``keras.applications.ResNet50`` with random weights (nothing downloaded) and a
    1,000-class softmax head, fully convolutional (analysed here at 32 px to keep CPU time
    small; its card says it was trained at 224)."""
    backbone = keras.applications.ResNet50(weights=None, include_top=False, pooling="avg",
                                           input_shape=(None, None, 3))
    outputs = keras.layers.Dense(1000, activation="softmax", name="predictions")(
        backbone.output)
    return keras.Model(backbone.input, outputs, name="resnet50")


def three_classes_48() -> keras.Model:
    """Three classes, its input fixed at 48x48: the page offers 48 px only."""
    inputs = keras.Input((48, 48, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="features")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, keras.layers.Dense(3, name="logits")(x))


MODELS = {
    # name: (builder, class names, the card's native size, the size analysed, classes masked)
    "resnet50": (resnet50_1000, [f"n{i:08d}" for i in range(1000)], 224, 32, (3, 999)),
    "three48": (three_classes_48, ["tabby", "tiger", "lynx"], 48, 48, (0, 2)),
    "nested": (lambda: nested_backbone(4, (6, 5)), ["north", "south", "east", "west"], 40, 40,
               (1, 3)),
}


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    """A folder with the three models and their cards."""
    folder = tmp_path_factory.mktemp("operator-models")
    for seed, (name, (build, classes, native, _, _)) in enumerate(MODELS.items()):
        keras.utils.set_random_seed(seed)
        model = build()
        model.set_weights([w * 3 if w.ndim == 4 and w.shape[-1] < 64 else w
                           for w in model.get_weights()])  # livelier small models
        model.save(folder / f"{name}.keras")
        write_operator_card(folder / f"{name}.keras", classes, native)
    return folder


def _close(shown, expected) -> None:
    np.testing.assert_allclose(shown, expected, rtol=1e-4,
                               atol=1e-5 * float(np.abs(expected).max()) + 1e-12)


@pytest.mark.parametrize("name", list(MODELS))
def test_an_operators_model_through_the_page(name, models_dir, monkeypatch, deferred_downloads):
    _, classes, native, size, masked = MODELS[name]
    monkeypatch.setenv("SENSITIVITY_MODELS_DIR", str(models_dir))
    # The page's own copy (loaded, checked and traced once per process), so the traces are
    # shared; the expected maps are the library's calls on it.
    model = ready_model(models_dir / f"{name}.keras")
    x = sensitivity.preprocess(sensitivity.load_image(PHOTO), size)
    probabilities = sensitivity.predict(model, x[None])[0]

    at = AppTest.from_file(APP, default_timeout=300)
    at.query_params["model"] = name
    if size != native:
        at.query_params["size"] = str(size)
    for options in SMALL_OPTIONS.values():
        for option, value in options.items():
            at.query_params[option] = str(value)
    at.run()
    at.file_uploader[0].upload(PHOTO.name, PHOTO.read_bytes(), "image/jpeg")
    at.run()
    assert not at.exception and not at.error
    sizes = list(widget(at, "select_slider", "Analysis size").options)
    assert widget(at, "select_slider", "Analysis size").value == size
    assert (sizes == ["48"]) if name == "three48" else (str(native) in sizes and "32" in sizes)

    # The prediction table: the model's classes, most probable first (ten and the rest).
    order = np.argsort(-probabilities, kind="stable")
    rows = predictions(at)[0]
    shown = [classes[i] for i in order[:10]]
    if len(classes) > 10:
        shown.append(f"all {len(classes) - 10} others")
    assert [r["class"] for r in rows] == shown
    np.testing.assert_allclose([r["percent"] for r in rows[:10]],
                               100 * probabilities[order[:10]], atol=0.06)

    # Every method's map, as the library computes it with this model.
    for method in METHODS:
        widget(at, "selectbox", "Method").set_value(method).run()
        assert not at.exception and not at.error, method
        options = {**page_options(method), **SMALL_OPTIONS.get(method, {})}
        expected = sensitivity.saliency(model, x, method=method, **options)[0]
        _close(heat_values(at), expected)

    # A class mask, with the downloads of what is shown.
    widget(at, "selectbox", "Method").set_value("gradient").run()
    widget(at, "multiselect", "Class mask").set_value([classes[i] for i in masked]).run()
    assert not at.exception and not at.error
    expected = sensitivity.saliency(model, x, method="gradient", class_mask=list(masked))[0]
    _close(heat_values(at), expected)
    _close(np.load(io.BytesIO(deferred_downloads["map.npy"][0]())), expected)
    csv = deferred_downloads["probabilities.csv"][0]().decode().splitlines()
    assert [r.split(",")[0] for r in csv[1:]] == classes
    np.testing.assert_allclose([float(r.split(",")[2]) for r in csv[1:]], probabilities,
                               atol=2e-6)

    # Side by side: two methods for the masked classes.
    widget(at, "selectbox", "Side by side").set_value("methods").run()
    widget(at, "multiselect", "Methods to compare").set_value(["gradient", "gradcam"]).run()
    assert not at.exception and not at.error
    panels = charts(at)
    for method in ("gradient", "gradcam"):
        _close(array(panels[method]["data"][0]["z"]),
               sensitivity.saliency(model, x, method=method, class_mask=list(masked))[0])
