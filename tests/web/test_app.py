"""The page, driven headlessly with Streamlit's AppTest on the committed model."""

from __future__ import annotations

import base64
import io
import json
import math

import hypothesis
import numpy as np
import pytest
from hypothesis import strategies
from PIL import Image
from streamlit.testing.v1 import AppTest

from sensitivity.engine.choices import DEFAULT_METHOD, METHODS, POSITION_TARGET, shown_options
from sensitivity.model.labels import CLASS_NAMES
from sensitivity.render.report import out_of_distribution_note, out_of_distribution_notice
from sensitivity.web.settings import option_controls
from tests.conftest import PHOTOS_DIR, ROOT
from tests.helpers import (
    copy_model,
    png_bytes,
    probability_bars_rows,
    text_picture,
    typical_cifar_image,
)
from tests.web.test_settings import KEYS as LINK_KEYS
from tests.web.test_settings import texts as link_texts

APP = str(ROOT / "app.py")  # absolute: AppTest resolves relative paths against this file


def charts(at: AppTest) -> dict[str, dict]:
    """Plotly figures on the page by their title (JSON specs)."""
    found = {}
    for element in at.get("plotly_chart"):
        spec = json.loads(element.proto.spec)
        title = spec.get("layout", {}).get("title", {}).get("text", "")
        found.setdefault(title, spec)
    return found


def array(value) -> np.ndarray:
    """A Plotly JSON array: a plain list, or a typed array ``{"dtype", "bdata", "shape"}``."""
    if isinstance(value, dict):
        flat = np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
        shape = value.get("shape")
        if isinstance(shape, str):
            shape = [int(v) for v in shape.split(",")]
        return flat.reshape(shape) if shape else flat
    return np.asarray(value)


def heat_values(at: AppTest) -> np.ndarray:
    return array(charts(at)["sensitivity"]["data"][0]["z"]).astype(float)


def predictions(at: AppTest) -> list[list[dict]]:
    """The probability tables on the page (one per analysed image), rows read from their HTML."""
    return [probability_bars_rows(element.proto.body) for element in at.get("html")
            if 'aria-label="class probabilities"' in element.proto.body]


def captions(at: AppTest) -> list[str]:
    """Captions of the pictures (``st.image``) on the page."""
    return [caption for element in at.get("image") for caption in element.captions]


@pytest.fixture()
def drawn_masks(monkeypatch) -> list[np.ndarray]:
    """The top-k masks the page turns into pictures, in order (the script runs in this process,
    and a picture's pixels are not reachable through AppTest)."""
    from sensitivity.render import pictures

    drawn: list[np.ndarray] = []
    original = pictures.mask

    def recording(top_k, **options):
        drawn.append(np.asarray(top_k).copy())
        return original(top_k, **options)

    monkeypatch.setattr(pictures, "mask", recording)
    return drawn


def mask_pixels(at: AppTest, drawn: list[np.ndarray]) -> np.ndarray:
    """The last top-k mask drawn, once its picture is captioned with its k."""
    k = int(drawn[-1].sum())
    assert f"top {k} pixels" in captions(at)
    return drawn[-1]


@pytest.fixture()
def app(drawn_masks, default_model_shared):  # recording from the first run on
    # The page's model (loaded once per process) is the session's default_model.
    at = AppTest.from_file(APP, default_timeout=300)
    at.run()
    assert not at.exception
    return at


@pytest.fixture()
def dog_app(app):
    app.file_uploader[0].upload("dog.jpg", (PHOTOS_DIR / "dog.jpg").read_bytes(), "image/jpeg")
    app.run()
    assert not app.exception
    return app


def widget(at: AppTest, kind: str, label: str):
    return next(w for w in getattr(at, kind) if w.label == label)


def test_empty_page_invites_an_upload(app):
    assert any("Upload an image" in info.value for info in app.info)
    assert not app.error
    assert "how to read the heatmaps" in charts(app)  # drawn before TensorFlow loads


def test_runs_do_not_clear_the_keras_session(monkeypatch):
    """Streamlit calls keras.backend.clear_session() after each run unless the page stops it."""
    import keras

    calls = []
    monkeypatch.setattr(keras.backend, "clear_session", lambda *a, **k: calls.append(1))
    at = AppTest.from_file(APP, default_timeout=300)
    at.run()
    at.run()
    assert not at.exception
    assert calls == []


def test_upload_shows_prediction_that_sums_to_100_percent(dog_app, drawn_masks):
    (table,) = predictions(dog_app)
    assert sorted(r["class"] for r in table) == sorted(CLASS_NAMES)
    assert sum(r["percent"] for r in table) == pytest.approx(100.0, abs=0.5)
    assert [r["percent"] for r in table] == sorted((r["percent"] for r in table), reverse=True)
    assert any("chance that there is at least one" in m.value for m in dog_app.markdown)
    heat = heat_values(dog_app)
    assert heat.shape == (32, 32) and np.isfinite(heat).all() and heat.max() > 0
    assert "how to read the heatmaps" not in charts(dog_app)
    assert mask_pixels(dog_app, drawn_masks).sum() == 100
    assert "after processing (32x32)" in captions(dog_app)


def test_each_control_changes_what_is_shown(dog_app, drawn_masks):
    at = dog_app
    widget(at, "selectbox", "Method").set_value("gradient").run()
    before = heat_values(at)

    widget(at, "radio", "Sign").set_value("signed").run()
    signed = heat_values(at)
    assert (signed < 0).any() and not np.allclose(signed, before)

    widget(at, "radio", "Sign").set_value("abs").run()
    np.testing.assert_allclose(heat_values(at), before, rtol=1e-5)

    predicted = next(c.value for c in at.caption if "(predicted: " in c.value)
    other = "airplane" if "(predicted: airplane)" not in predicted else "frog"
    widget(at, "multiselect", "Class mask").set_value([other]).run()
    masked = heat_values(at)
    assert not np.allclose(masked, before)

    widget(at, "slider", "Top-k pixels").set_value(10).run()
    assert mask_pixels(at, drawn_masks).sum() == 10
    np.testing.assert_allclose(heat_values(at), masked, rtol=1e-5)  # display-only change

    widget(at, "selectbox", "Layer").set_value("group2_block1").run()
    inner = heat_values(at)
    assert not at.exception and not np.allclose(inner, masked)

    widget(at, "selectbox", "Layer").set_value("logits").run()
    np.testing.assert_allclose(heat_values(at), masked, rtol=1e-5)  # the class mask came back

    widget(at, "selectbox", "Method").set_value("gradcam").run()
    cam = heat_values(at)
    assert not at.exception and (cam >= 0).all() and not np.allclose(cam, masked)
    linked = at.query_params.get("method")  # the default method is left out of the link
    assert (linked[-1] if isinstance(linked, list) else linked) == (
        None if DEFAULT_METHOD == "gradcam" else "gradcam")

    widget(at, "selectbox", "Method").set_value("integrated_gradients").run()
    integrated = heat_values(at)
    assert not at.exception and not np.allclose(integrated, cam)
    assert any(c.value.startswith("Completeness: the attributions add up to")
               for c in at.caption)

    widget(at, "slider", "Steps").set_value(4).run()  # a method option, from the registry
    assert not at.exception and not np.allclose(heat_values(at), integrated)
    assert at.query_params["steps"] in ("4", ["4"])


def test_bad_upload_gets_an_error_box_and_the_good_one_is_still_analysed(app):
    good = png_bytes(np.full((40, 40, 3), 120, np.uint8))
    app.file_uploader[0].set_value([("broken.png", b"not really a png", "image/png"),
                                    ("grey.png", good, "image/png")]).run()
    assert not app.exception
    assert any("broken.png" in e.value for e in app.error)
    assert len(predictions(app)) == 1


NOTICE = out_of_distribution_notice(len(CLASS_NAMES))
SOFTENED = "If this picture shows any of the ten classes"


def sections(at: AppTest) -> dict[str, list]:
    """The page's elements in order, grouped under the image headings (subheaders) above them."""
    grouped: dict[str, list] = {}
    current = None
    for node in at.main:
        if node.type == "subheader":
            current = grouped.setdefault(node.value, [])
        elif current is not None and node.type in ("warning", "markdown", "plotly_chart"):
            current.append(node)
    return grouped


def test_a_picture_of_text_gets_the_notice_above_its_maps_and_a_cifar_image_does_not(
        app, default_model, cifar_dir):
    from sensitivity.trust.ood import detector_of

    text, text_score = text_picture(default_model)
    photo, photo_score = typical_cifar_image(default_model, cifar_dir)
    threshold = detector_of(default_model).threshold
    assert photo_score <= threshold < text_score
    app.file_uploader[0].set_value([("cifar.jpg", photo.read_bytes(), "image/jpeg"),
                                    ("text.png", text, "image/png")]).run()
    assert not app.exception and not app.error
    shown = sections(app)
    assert [n.value for n in app.warning].count(NOTICE) == 1
    # Above the text's maps (and its sentence), nowhere in the CIFAR-10 image's section.
    assert shown["text.png"][0].type == "warning" and shown["text.png"][0].value == NOTICE
    assert "plotly_chart" in [n.type for n in shown["text.png"]]  # the maps, below it
    assert "warning" not in [n.type for n in shown["cifar.jpg"]]
    # The sentence: softened for the text only; the score, against the threshold, on hover.
    for name, score, opening in (("text.png", text_score, SOFTENED),
                                 ("cifar.jpg", photo_score, "There's about ")):
        sentence = next(n for n in shown[name] if n.type == "markdown"
                        and n.value.startswith("**") and "%" in n.value)
        assert sentence.value.startswith(f"**{opening}"), sentence.value
        assert sentence.proto.help == out_of_distribution_note(score, threshold)


def test_a_model_without_a_detector_shows_no_notice_and_no_score(tmp_path, monkeypatch,
                                                                 default_model):

    from sensitivity.model.io import model_path, read_model_card

    text, _ = text_picture(default_model)  # flagged by the committed model's detector
    model = copy_model(model_path(), tmp_path / "model.keras")
    card = read_model_card(model)
    assert card.pop("out_of_distribution", None) is not None
    model.with_suffix(".json").write_text(json.dumps(card))
    monkeypatch.setenv("SENSITIVITY_MODEL_PATH", str(model))
    at = AppTest.from_file(APP, default_timeout=300)
    at.run()
    at.file_uploader[0].upload("text.png", text, "image/png")
    at.run()
    assert not at.exception and not at.error
    assert NOTICE not in [n.value for n in at.warning]
    sentence = next(m for m in at.markdown if m.value.startswith("**"))
    assert sentence.value.startswith("**There's about ") and not sentence.proto.help


def test_settings_come_from_the_link():
    at = AppTest.from_file(APP, default_timeout=300)
    at.query_params["sign"] = "signed"
    at.query_params["k"] = "7"
    at.query_params["method"] = "no-such-method"
    at.run()
    assert not at.exception
    assert widget(at, "radio", "Sign").value == "signed"
    assert widget(at, "slider", "Top-k pixels").value == 7
    assert any("ignored method" in w.value for w in at.warning)


@pytest.mark.parametrize("damage", ["altered", "truncated", "missing"])
def test_a_damaged_model_file_stops_the_page_with_its_name_and_checksum(damage, tmp_path,
                                                                         monkeypatch):
    import shutil

    from sensitivity.model.io import DEFAULT_MODEL_PATH, read_model_card

    model = tmp_path / "model.keras"
    shutil.copy(DEFAULT_MODEL_PATH, model)
    shutil.copy(DEFAULT_MODEL_PATH.with_suffix(".json"), model.with_suffix(".json"))
    data = bytearray(model.read_bytes())
    if damage == "altered":
        data[len(data) // 2] ^= 0xFF
        model.write_bytes(bytes(data))
    elif damage == "truncated":
        model.write_bytes(bytes(data[: len(data) // 3]))
    else:
        model.unlink()
    monkeypatch.setenv("SENSITIVITY_MODEL_PATH", str(model))
    at = AppTest.from_file(APP, default_timeout=300)
    at.run()
    assert not at.exception
    expected = read_model_card(model)["sha256"]
    message = " ".join(e.value for e in at.error)
    assert str(model) in message and expected in message
    assert not at.file_uploader  # the page stopped before offering anything


def test_hostile_corpus_in_one_upload_errors_per_file_and_the_rest_is_analysed(app):
    from tests.hostile import corpus

    cases = corpus()
    app.file_uploader[0].set_value([(c.name, c.data, "application/octet-stream")
                                    for c in cases]).run()
    assert not app.exception
    errors = [e.value for e in app.error]
    for case in cases:
        refused = [e for e in errors if e.startswith(case.name)]
        assert bool(refused) == (case.shape is None), case.name
    assert len(predictions(app)) == sum(c.shape is not None for c in cases)
    # The name holding HTML and script is shown as text, never as markup.
    assert any("<script>" in h.value for h in app.subheader)


def test_downloads_are_made_on_click_and_hold_what_the_page_shows(deferred_downloads, app):
    """The four download buttons register callables (nothing is made before a click, and a
    click does not rerun the page); made, the files hold the map, probabilities and settings."""
    app.file_uploader[0].upload("dog.jpg", (PHOTOS_DIR / "dog.jpg").read_bytes(), "image/jpeg")
    app.run()
    assert not app.exception
    buttons = app.get("download_button")
    assert [b.proto.label for b in buttons] == [
        "Heatmap (PNG)", "Map (.npy)", "Probabilities (CSV)", "Settings (JSON)"]
    assert all(b.proto.ignore_rerun and b.proto.deferred_file_id for b in buttons)
    files = {name: (make(), mime) for name, (make, mime) in deferred_downloads.items()}
    assert sorted(files) == ["heatmap.png", "map.npy", "probabilities.csv", "settings.json"]

    saliency_map = np.load(io.BytesIO(files["map.npy"][0]))
    np.testing.assert_allclose(saliency_map, heat_values(app), rtol=1e-6)
    png = Image.open(io.BytesIO(files["heatmap.png"][0]))
    assert png.format == "PNG" and files["heatmap.png"][1] == "image/png"
    rows = files["probabilities.csv"][0].decode().splitlines()[1:]
    assert len(rows) == 10
    assert sum(float(r.split(",")[2]) for r in rows) == pytest.approx(1.0, abs=1e-4)
    settings = json.loads(files["settings.json"][0])
    assert settings["method"] == DEFAULT_METHOD and settings["k"] == 100


def test_no_user_string_reaches_unsafe_html():
    """No raw markdown HTML at all; the page's one ``st.html`` draws the probability table,
    built from numbers and the class names only (checked in test_figures)."""
    sources = [ROOT / "app.py", *sorted((ROOT / "ui").glob("*.py")),
               *sorted((ROOT / "sensitivity").rglob("*.py"))]
    assert not [p.name for p in sources if "unsafe_allow_html" in p.read_text()]
    calls = [line.strip() for p in sources for line in p.read_text().splitlines()
             if ".html(" in line]
    assert calls == ["st.html(probability_bars_html(probabilities, names))"]


def test_boxes_faithfulness_and_predict_again_panels(dog_app):
    widget(dog_app, "checkbox", "Draw the discovered objects' boxes").check()
    widget(dog_app, "checkbox", "Faithfulness panel").check()
    dog_app.run()
    assert not dog_app.exception
    shown = charts(dog_app)
    # Boxes: found on the photograph, outlined on the heatmap too.
    assert any(c.startswith("boxes by ") for c in captions(dog_app))
    assert shown["sensitivity"]["layout"].get("shapes")
    # Deletion and insertion curves of the predicted class, probabilities in percent.
    title = next(t for t in shown if t.startswith("faithfulness for "))
    target = title.removeprefix("faithfulness for ")
    assert target in CLASS_NAMES
    curves = shown[title]["data"]
    assert len(curves) == 2
    for curve in curves:
        values = array(curve["y"])
        assert values.size > 2 and np.all((values >= 0) & (values <= 100))  # percent
    # Remove the top-k pixels and predict again: the new probability beside the old.
    next(b for b in dog_app.button if b.label == "Predict again").click().run()
    assert not dog_app.exception
    metric = next(m for m in dog_app.metric if m.label == f"{target} probability")
    assert 0 <= float(metric.value.rstrip("%")) <= 100
    assert any("random" in c.value and "Before:" in c.value for c in dog_app.caption)


@pytest.fixture()
def drawn_photos(monkeypatch) -> list[tuple[np.ndarray, list]]:
    """(image, boxes) of each photo the page turns into a picture, in order."""
    from sensitivity.render import pictures

    drawn: list[tuple[np.ndarray, list]] = []
    original = pictures.photo

    def recording(image, boxes=(), **options):
        drawn.append((np.asarray(image).copy(), list(boxes)))
        return original(image, boxes=boxes, **options)

    monkeypatch.setattr(pictures, "photo", recording)
    return drawn


def test_the_position_heads_target_is_offered_where_the_model_has_one(dog_app):
    """A model with a position head (the default one) offers its target in the layer control:
    a method then explains where the head finds the class, a map unlike the logits'. A model
    without a head does not offer it, and a page on it falls back to the logits."""
    at = dog_app
    widget(at, "selectbox", "Method").set_value("gradient").run()
    logits = heat_values(at)
    layer = widget(at, "selectbox", "Layer")
    assert any(option.startswith(POSITION_TARGET) for option in layer.options)
    layer.set_value(POSITION_TARGET).run()
    assert not at.exception
    located = heat_values(at)
    assert located.shape == logits.shape and located.max() > 0
    assert not np.allclose(located, logits)
    assert any(c.value.startswith(f"gradient of {POSITION_TARGET} (predicted: ")
               for c in at.caption)
    # The method's caption quotes the card's figures of the target explained.
    from sensitivity.model.cards import card_from_json
    from sensitivity.render.report import localisation_note

    card = card_from_json(json.loads((ROOT / "models" / "wrn-16-3.json").read_text()), "wrn-16-3")
    note = localisation_note(card, "gradient", {}, POSITION_TARGET)
    assert note and note != localisation_note(card, "gradient", {})
    assert f"{METHODS['gradient'].description}; {note}" in [c.value for c in at.caption]
    widget(at, "multiselect", "Class mask").set_value(["truck"]).run()
    assert not at.exception and not np.allclose(heat_values(at), located)
    widget(at, "selectbox", "Model").set_value("wrn-16-3-scenes").run()
    assert not at.exception
    layer = widget(at, "selectbox", "Layer")
    assert not any(option.startswith(POSITION_TARGET) for option in layer.options)
    assert layer.value == "logits"


def test_a_fresh_page_starts_at_the_default_method(app):
    assert widget(app, "selectbox", "Method").value == DEFAULT_METHOD
    assert "method" not in app.query_params  # the default is never written into the link


def test_the_method_caption_quotes_the_picked_models_measured_localisation():
    """The caption under the method quotes the figures of the model picked (its card's
    ``measured_localisation``), those of CAM's per-position probability when it is on (with
    its exponent, pixel detail and mirror image), and none for a method the card did not
    measure."""
    from sensitivity.model.cards import card_from_json
    from sensitivity.render.report import localisation_note

    cards = {name: card_from_json(json.loads((ROOT / "models" / f"{name}.json").read_text()),
                                  name) for name in ("wrn-16-3", "wrn-16-3-scenes")}
    at = AppTest.from_file(APP, default_timeout=300)
    at.query_params["method"] = "cam"
    at.run()
    assert not at.exception

    def note(model: str, probability: bool = False, exponent: int = 1,
             detail: bool = False, mirror: bool = False) -> str:
        options = {"probability": probability, "exponent": exponent, "detail": detail,
                   "mirror": mirror}
        text = localisation_note(cards[model], "cam", options)
        assert text.startswith(f"with {model} on photo-like test scenes at ")  # measured
        return f"{METHODS['cam'].description}; {text}"

    # The switches start on, the probability cubed, with the pixel detail and the mirror image.
    assert note("wrn-16-3", True, 3, True, True) in [c.value for c in at.caption]
    widget(at, "checkbox", "average with the mirror image").uncheck().run()
    assert note("wrn-16-3", True, 3, True) in [c.value for c in at.caption]
    assert note("wrn-16-3", True, 3, True) != note("wrn-16-3", True, 3, True, True)
    widget(at, "checkbox", "pixel detail").uncheck().run()
    assert note("wrn-16-3", True, 3) in [c.value for c in at.caption]
    assert note("wrn-16-3", True, 3) != note("wrn-16-3", True, 3, True)
    widget(at, "selectbox", "Model").set_value("wrn-16-3-scenes").run()
    # That model's card has no figures of the cubed probability: the caption quotes none.
    assert METHODS["cam"].description in [c.value for c in at.caption]
    widget(at, "slider", "probability exponent").set_value(1).run()
    assert note("wrn-16-3-scenes", True) in [c.value for c in at.caption]
    assert note("wrn-16-3-scenes", True) != note("wrn-16-3", True)
    widget(at, "checkbox", "per-position probability").uncheck().run()
    assert note("wrn-16-3-scenes") in [c.value for c in at.caption]
    assert note("wrn-16-3-scenes") != note("wrn-16-3-scenes", True)
    # The exponent acts on the probability only: no slider while it is off; back with it, at
    # the value it had.
    assert "probability exponent" not in [s.label for s in at.slider]
    widget(at, "checkbox", "per-position probability").check().run()
    assert widget(at, "slider", "probability exponent").value == 1
    assert note("wrn-16-3-scenes", True) in [c.value for c in at.caption]
    widget(at, "checkbox", "per-position probability").uncheck().run()
    widget(at, "selectbox", "Method").set_value("occlusion").run()
    assert METHODS["occlusion"].description in [c.value for c in at.caption]
    assert not any("pointing" in c.value for c in at.caption)  # not measured: no figures


def test_the_gradient_caveat_shows_above_the_native_size_only(dog_app):
    at = dog_app
    caveat = METHODS["gradient"].caveat

    def warned() -> bool:
        return any(caveat in w.value for w in at.warning)

    widget(at, "selectbox", "Method").set_value("gradient").run()
    assert not at.exception and not warned()  # 32 px: the native size
    widget(at, "select_slider", "Analysis size").set_value(64).run()
    assert not at.exception and warned()
    assert any(w.value.startswith("gradient at 64 px: ") for w in at.warning)
    widget(at, "selectbox", "Method").set_value("gradcam").run()
    assert not at.exception and not warned()
    widget(at, "select_slider", "Analysis size").set_value(224).run()
    assert not at.exception and not warned()


def test_a_models_card_rule_makes_its_boxes_on_the_page(dog_app, drawn_photos):
    """Picking the model trained to localise: its boxes are find_objects with its card's rule
    (CAM's probability at several scales, at one of its sides), and the caption says so."""
    import sensitivity
    from sensitivity import load_image
    from sensitivity.imaging.objects import DEFAULT_RULE, find_objects, rule_for
    from sensitivity.model.io import MODELS_DIR

    at = dog_app
    widget(at, "selectbox", "Model").set_value("wrn-16-3-scenes")
    widget(at, "multiselect", "Class mask").set_value(["dog"])
    widget(at, "checkbox", "Draw the discovered objects' boxes").check()
    at.run()
    assert not at.exception
    model = sensitivity.load_model(MODELS_DIR / "wrn-16-3-scenes.keras")
    rule = rule_for(model)
    assert rule.side != DEFAULT_RULE.side and len(rule.options["scales"]) > 1  # the card's
    photo = load_image((PHOTOS_DIR / "dog.jpg").read_bytes())
    found = find_objects(model, photo, classes=[CLASS_NAMES.index("dog")])
    assert found and {f.method for f in found} == {rule.label}
    (side,) = {f.side for f in found}  # one class: one side, one of the card's
    assert side in rule.analysis_sides
    image, boxes = next((i, b) for i, b in reversed(drawn_photos) if i.shape == photo.shape)
    assert boxes == [f.box for f in found]
    listed = ", ".join(f"{f.label} {f.score:.2f}" for f in found)
    assert f"boxes by {rule.label} at {side} px: {listed}" in captions(at)


def test_a_map_that_is_the_same_everywhere_is_called_so(dog_app):
    """The localising model's Grad-CAM of the dog in dog.jpg's 32 px square is zero everywhere:
    the page says that no pixel stands out and names the side at which find_objects makes its
    boxes (its card's rule), which the size control offers; the WRN-16-3's map of the same class
    gets no note."""
    from sensitivity.render.report import flat_map_note

    card = json.loads((ROOT / "models" / "wrn-16-3-scenes.json").read_text())
    side = card["localisation"]["side"]
    at = dog_app
    note = flat_map_note(np.zeros((32, 32)), rule_side=side)
    widget(at, "multiselect", "Class mask").set_value(["dog"])
    widget(at, "selectbox", "Method").set_value("gradcam")
    at.run()
    assert not at.exception and note not in [w.value for w in at.warning]
    widget(at, "selectbox", "Model").set_value("wrn-16-3-scenes")
    at.run()
    assert not at.exception and note in [w.value for w in at.warning]
    assert f"boxes at {side} px" in note
    assert str(side) in widget(at, "select_slider", "Analysis size").options


def test_boxes_are_find_objects_on_the_photo_and_their_parts_in_the_square(dog_app,
                                                                            drawn_photos):
    from sensitivity import load_image
    from sensitivity.imaging.objects import find_objects
    from sensitivity.web.serving import ready_model

    at = dog_app
    widget(at, "multiselect", "Class mask").set_value(["dog", "truck"])
    widget(at, "checkbox", "Draw the discovered objects' boxes").check()
    at.run()
    assert not at.exception
    photo = load_image((PHOTOS_DIR / "dog.jpg").read_bytes())
    found = find_objects(ready_model(), photo, classes=[CLASS_NAMES.index("dog"),
                                                        CLASS_NAMES.index("truck")])
    assert found
    image, boxes = next((i, b) for i, b in reversed(drawn_photos) if i.shape == photo.shape)
    np.testing.assert_array_equal(image, photo)
    assert boxes == [f.box for f in found]
    listed = ", ".join(f"{f.label} {f.score:.2f}" for f in found)
    assert f"boxes by {found[0].method} at {found[0].side} px: {listed}" in captions(at)
    # On the 32x32 map: the parts inside the centred square x 96..672 of the 768x576 photo,
    # 18 photo pixels a map pixel, rounded outwards.
    expected = []
    for box in (f.box for f in found):
        x0, x1 = max(box.x0, 96) - 96, min(box.x1, 672) - 96
        if x1 > x0:
            expected.append((x0 // 18, box.y0 // 18, math.ceil(x1 / 18), math.ceil(box.y1 / 18)))
    shapes = charts(at)["sensitivity"]["layout"].get("shapes", [])
    assert [tuple(round(s[k] + 0.5) for k in ("x0", "y0", "x1", "y1")) for s in shapes] == expected
    # The photo without boxes shows the square the network sees again.
    widget(at, "checkbox", "Draw the discovered objects' boxes").uncheck()
    at.run()
    assert drawn_photos[-1][1] == [(96, 0, 672, 576)]
    assert not charts(at)["sensitivity"]["layout"].get("shapes")


def test_gallery_samples_are_analysed_like_uploads(app):
    assert not [w for w in app.multiselect if w.label == "Sample CIFAR-10 test images"]
    widget(app, "toggle", "Use the sample gallery and the scene builder").set_value(True).run()
    pick = widget(app, "multiselect", "Sample CIFAR-10 test images")
    pick.set_value([0, 2]).run()
    assert not app.exception
    headings = [h.value for h in app.subheader if h.value.startswith("sample: ")]
    assert len(headings) == 2 and len(predictions(app)) == 2
    assert captions(app).count("after processing (32x32)") == 2


def test_scene_builder_puts_two_samples_on_one_canvas(app):
    widget(app, "toggle", "Use the sample gallery and the scene builder").set_value(True).run()
    first = widget(app, "selectbox", "First object")
    options = first.options
    assert len(options) > 3  # "-" and the samples
    first.set_value(0)
    second = widget(app, "selectbox", "Second object")
    # A sample of another class than the first (the gallery holds two of each class).
    second.set_value(2)
    app.run()
    assert not app.exception
    scene = [h.value for h in app.subheader if h.value.startswith("scene: ")]
    assert len(scene) == 1 and " + " in scene[0]
    assert len(predictions(app)) == 1 and "after processing (32x32)" in captions(app)


def test_the_reported_link_opens_with_its_value_clamped():
    """?method=integrated_gradients&steps=512 once stopped the page (the slider ends at 256)."""
    at = AppTest.from_file(APP, default_timeout=300)
    at.query_params["method"] = "integrated_gradients"
    at.query_params["steps"] = "512"
    at.run()
    assert not at.exception
    assert widget(at, "slider", "Steps").value == 256
    assert any(w.value.startswith("steps='512' from the link is outside 2 to 256")
               for w in at.warning)
    assert at.query_params["steps"] in ("256", ["256"])


def test_a_linked_size_the_model_is_not_offered_opens_at_the_nearest():
    at = AppTest.from_file(APP, default_timeout=300)
    at.query_params["size"] = "50"
    at.run()
    assert not at.exception
    assert widget(at, "select_slider", "Analysis size").value == 64
    assert any(w.value.startswith("size=50 from the link is not offered for this model (32, "
                                  "64, 96, 128, 144, 160, 224): using 64") for w in at.warning)
    assert at.query_params["size"] in ("64", ["64"])
    widget(at, "select_slider", "Analysis size").set_value(32).run()  # the native size
    assert "size" not in at.query_params


def test_a_new_method_option_gets_its_control_and_its_link(monkeypatch):
    """Adding a method option is one declaration in the registry: the page draws it."""
    from sensitivity.engine import choices
    from sensitivity.engine.choices import MethodInfo, Option

    wobble = Option(3, "how much to wobble", kind="int", minimum=1, maximum=9, shown=True,
                    label="Wobble", page_default=5)
    monkeypatch.setitem(choices.METHODS, "fake", MethodInfo("a fake method", {"wobble": wobble}))
    at = AppTest.from_file(APP, default_timeout=300)
    at.query_params["method"] = "fake"
    at.query_params["wobble"] = "7"
    at.run()
    assert not at.exception
    assert widget(at, "selectbox", "Method").value == "fake"
    assert widget(at, "slider", "Wobble").value == 7
    widget(at, "slider", "Wobble").set_value(2).run()
    assert not at.exception and at.query_params["wobble"] in ("2", ["2"])


@hypothesis.settings(max_examples=25, deadline=None,
                     suppress_health_check=[hypothesis.HealthCheck.too_slow])
@hypothesis.given(method=strategies.sampled_from([*METHODS, "no-such-method"]),
                  query=strategies.dictionaries(
                      strategies.one_of(strategies.sampled_from(LINK_KEYS),
                                        strategies.text(max_size=6)),
                      link_texts(), max_size=8))
def test_no_link_breaks_the_page(method, query):
    """Any query string (unknown keys, numbers out of range, wrong types) opens the page, with
    every method option's control inside its declaration."""
    at = AppTest.from_file(APP, default_timeout=300)
    for key, value in {**query, "method": method}.items():
        at.query_params[key] = value
    at.run()
    assert not at.exception
    shown = widget(at, "selectbox", "Method").value
    assert shown == (method if method in METHODS else DEFAULT_METHOD)
    switches = {c.name: widget(at, c.widget, c.label).value for c in option_controls(shown)
                if c.widget == "checkbox"}
    for control in option_controls(shown, switches):  # those the switches' values show
        value = widget(at, control.widget, control.label).value
        assert shown_options()[control.name].check(value) == value


# --- What the person sees equals what the library computes ------------------------------------

SMALL_OPTIONS = {"smoothgrad": {"samples": 4}, "integrated_gradients": {"steps": 4},
                 "rise": {"masks": 10}}
"""The sampling methods' options, kept small through the link."""


def page_options(method: str) -> dict:
    """The options the page starts ``method`` with: its shown options at their page defaults
    (CAM's per-position probability on; the others the library's defaults)."""
    from sensitivity.web.settings import ViewSettings, method_options

    return method_options(ViewSettings(method=method))

AGREEMENT_CASES = [
    *[pytest.param(method, {}, id=method) for method in METHODS],
    pytest.param("gradcam", {"class_mask": [3, 5]}, id="gradcam-class-mask"),
    pytest.param("gradient", {"layer": "group2_block1"}, id="gradient-inner-layer"),
    pytest.param("integrated_gradients", {"sign": "signed"}, id="integrated_gradients-signed"),
]


@pytest.mark.parametrize(("method", "settings"), AGREEMENT_CASES)
def test_the_page_shows_the_library_map_and_probabilities(method, settings, deferred_downloads,
                                                           default_model, drawn_masks):
    """The heatmap's values, the .npy and CSV downloads and the top-k mask of an uploaded
    photo equal ``sensitivity.saliency`` and ``predict`` called on their own."""
    import sensitivity

    options = SMALL_OPTIONS.get(method, {})
    at = AppTest.from_file(APP, default_timeout=300)
    query = {"method": method, **{name: str(value) for name, value in options.items()}}
    if "class_mask" in settings:
        query["classes"] = ",".join(str(c) for c in settings["class_mask"])
    for name in ("layer", "sign"):
        if name in settings:
            query[name] = settings[name]
    for name, value in query.items():
        at.query_params[name] = value
    at.run()
    path = PHOTOS_DIR / "dog.jpg"
    at.file_uploader[0].upload("dog.jpg", path.read_bytes(), "image/jpeg")
    at.run()
    assert not at.exception and not at.error
    assert not [w.value for w in at.warning if "from the link" in w.value]

    x = sensitivity.preprocess(sensitivity.load_image(path), 32)
    expected = sensitivity.saliency(default_model, x, method=method, **settings,
                                    **{**page_options(method), **options})[0]
    probabilities = sensitivity.predict(default_model, x[None])[0]

    tolerance = dict(rtol=1e-4, atol=1e-5 * float(np.abs(expected).max()))
    np.testing.assert_allclose(heat_values(at), expected, **tolerance)
    made_map = np.load(io.BytesIO(deferred_downloads["map.npy"][0]()))
    np.testing.assert_allclose(made_map, expected, **tolerance)
    rows = deferred_downloads["probabilities.csv"][0]().decode().splitlines()
    assert rows[0] == "class,index,probability"
    assert [r.split(",")[0] for r in rows[1:]] == list(CLASS_NAMES)
    np.testing.assert_allclose([float(r.split(",")[2]) for r in rows[1:]], probabilities,
                               atol=2e-6)
    shown_mask = mask_pixels(at, drawn_masks)
    np.testing.assert_array_equal(shown_mask,
                                  sensitivity.top_k_mask(np.abs(expected), 100))
    # A display-only change reruns the page on the cached map (a slow method's cache hit once
    # stopped the page).
    widget(at, "slider", "Top-k pixels").set_value(10).run()
    assert not at.exception
    np.testing.assert_allclose(heat_values(at), expected, **tolerance)
    np.testing.assert_array_equal(mask_pixels(at, drawn_masks),
                                  sensitivity.top_k_mask(np.abs(expected), 10))


def test_the_gallery_offers_the_samples_dir_under_its_labels(tmp_path, monkeypatch):
    from tests.helpers import write_class_folders

    root = write_class_folders(tmp_path / "mine", per_class=3, splits=("test",))
    monkeypatch.setenv("SENSITIVITY_SAMPLES_DIR", str(root))
    at = AppTest.from_file(APP, default_timeout=300)
    at.run()
    widget(at, "toggle", "Use the sample gallery and the scene builder").set_value(True).run()
    pick = widget(at, "multiselect", "Sample CIFAR-10 test images")
    shown = list(pick.options)
    assert [o.split(" (")[0] for o in shown] == [c for c in CLASS_NAMES for _ in range(2)]
    for option in shown:  # "frog (0002.png)": a file of that class's folder
        name, file = option.removesuffix(")").split(" (")
        assert (root / "test" / name / file).is_file()
    frog = shown.index(next(o for o in shown if o.startswith("frog ")))
    pick.set_value([frog]).run()
    assert not at.exception
    assert [h.value for h in at.subheader if h.value.startswith("sample: ")] == ["sample: frog"]


@pytest.fixture()
def drawn_overlays(monkeypatch) -> list[np.ndarray]:
    """The overlay pictures the page draws, in order."""
    from sensitivity.render import pictures

    drawn: list[np.ndarray] = []
    original = pictures.overlay

    def recording(image, saliency_map, **options):
        drawn.append(np.asarray(original(image, saliency_map, **options)).copy())
        return drawn[-1]

    monkeypatch.setattr(pictures, "overlay", recording)
    return drawn


def test_compare_side_by_side_and_the_display_controls(dog_app, drawn_masks, drawn_overlays,
                                                        default_model):
    """Comparing by methods, classes and layers; overlay opacity, the shared colour scale and
    an inner layer's channel, each changing what it says (against the library's maps of the
    same photo) and nothing else."""
    import sensitivity
    from sensitivity.render import pictures

    at = dog_app
    x = sensitivity.preprocess(sensitivity.load_image(PHOTOS_DIR / "dog.jpg"), 32)

    def library(**settings) -> np.ndarray:
        return sensitivity.saliency(default_model, x, method="gradient", **settings)[0]

    def assert_shows(values, expected):
        np.testing.assert_allclose(values, expected, rtol=1e-4,
                                   atol=1e-5 * float(np.abs(expected).max()))

    widget(at, "selectbox", "Side by side").set_value("methods").run()
    widget(at, "multiselect", "Methods to compare").set_value(["gradient", "gradcam"]).run()
    assert not at.exception
    titles = charts(at)
    assert "gradient" in titles and "gradcam" in titles

    widget(at, "selectbox", "Method").set_value("gradient").run()
    heat, mask, half = heat_values(at), mask_pixels(at, drawn_masks), drawn_overlays[-1]
    # Opacity: only the overlay changes; 0 is the network's input alone, 1 the map alone and
    # the default 0.5 their mean (up to rounding to whole pixel values).
    overlays = {}
    for opacity in (0.0, 1.0):
        widget(at, "slider", "Overlay opacity").set_value(opacity).run()
        assert not at.exception
        assert f"overlay (opacity {opacity:.2f})" in captions(at)
        overlays[opacity] = drawn_overlays[-1].astype(float)
        np.testing.assert_array_equal(heat_values(at), heat)
        np.testing.assert_array_equal(mask_pixels(at, drawn_masks), mask)
    np.testing.assert_array_equal(overlays[0.0], pictures.enlarged(x))
    assert not np.array_equal(overlays[1.0], overlays[0.0])
    assert np.abs(half - (overlays[0.0] + overlays[1.0]) / 2).max() <= 1.0

    # Compare by classes: one panel per class, each the library's map for that class alone.
    widget(at, "selectbox", "Side by side").set_value("classes").run()
    widget(at, "multiselect", "Classes to compare").set_value(["cat", "dog", "truck"]).run()
    assert not at.exception
    shown = charts(at)
    assert [t for t in shown if t in CLASS_NAMES] == ["cat", "dog", "truck"]
    for name in ("cat", "dog", "truck"):
        assert_shows(array(shown[name]["data"][0]["z"]), library(class_mask=[
            CLASS_NAMES.index(name)]))
    # The shared colour scale (the default): one range, from 0 to the largest value shown.
    ranges = {(shown[n]["data"][0]["zmin"], shown[n]["data"][0]["zmax"])
              for n in ("cat", "dog", "truck")}
    top = max(float(array(shown[n]["data"][0]["z"]).max()) for n in ("cat", "dog", "truck"))
    assert len(ranges) == 1 and ranges.pop() == pytest.approx((0.0, top))
    widget(at, "checkbox", "Shared colour scale across panels").uncheck().run()
    shown = charts(at)
    for name in ("cat", "dog", "truck"):  # each panel's own range
        z = array(shown[name]["data"][0]["z"])
        assert (shown[name]["data"][0]["zmin"], shown[name]["data"][0]["zmax"]) == \
            pytest.approx((0.0, float(z.max())))
    assert len({shown[n]["data"][0]["zmax"] for n in ("cat", "dog", "truck")}) == 3

    # Compare by layers: one panel per layer, each the library's map of that layer.
    widget(at, "selectbox", "Side by side").set_value("layers").run()
    widget(at, "multiselect", "Layers to compare").set_value(["group1", "group3"]).run()
    assert not at.exception
    shown = charts(at)
    assert not set(CLASS_NAMES) & set(shown)
    for layer in ("group1", "group3"):
        assert_shows(array(shown[layer]["data"][0]["z"]), library(layer=layer))

    # An inner layer's channel: the library's map of that channel alone.
    widget(at, "selectbox", "Side by side").set_value("none").run()
    widget(at, "selectbox", "Layer").set_value("group2_block1").run()
    every = heat_values(at)
    assert_shows(every, library(layer="group2_block1"))
    widget(at, "number_input", "Channel (-1: all)").set_value(5).run()
    assert not at.exception
    assert_shows(heat_values(at), library(layer="group2_block1", channel=5))
    assert not np.allclose(heat_values(at), every)


def test_compare_with_randomised_weights_shows_both_maps_and_their_correlation(dog_app,
                                                                              default_model):
    """The trained model's map beside the map of the model with its top layers randomised
    (the trained model's class), each equal to the library's, and their rank correlation."""
    import sensitivity
    from sensitivity.metrics.sanity import randomised_copy, spearman

    at = dog_app
    widget(at, "selectbox", "Method").set_value("gradient").run()
    widget(at, "selectbox", "Side by side").set_value("randomised").run()
    assert not at.exception and not at.error
    x = sensitivity.preprocess(sensitivity.load_image(PHOTOS_DIR / "dog.jpg"), 32)
    cls = int(sensitivity.predict(default_model, x[None])[0].argmax())
    expected = [sensitivity.saliency(m, x, method="gradient", class_mask=cls)[0]
                for m in (default_model, randomised_copy(default_model))]
    shown = charts(at)
    for title, want in zip(("trained weights", "top layers randomised"), expected, strict=True):
        np.testing.assert_allclose(array(shown[title]["data"][0]["z"]), want, rtol=1e-4,
                                   atol=1e-5 * float(np.abs(want).max()))
    note = next(c.value for c in at.caption if c.value.startswith("Rank correlation"))
    assert f"{spearman(*expected):.2f};" in note


# --- Several models -------------------------------------------------------------------------


def test_the_model_picker_explains_the_picked_model(dog_app, drawn_masks):
    """Both shipped models are offered; picking the WRN-16-2 shows its probabilities and its
    map (as the library computes them with that model) and puts it in the link."""
    import sensitivity
    from sensitivity.model.io import MODELS_DIR

    at = dog_app
    picker = widget(at, "selectbox", "Model")
    others = sorted(p.stem for p in MODELS_DIR.glob("*.keras") if p.stem != "wrn-16-3")
    assert "wrn-16-2" in others and list(picker.options) == ["wrn-16-3", *others]
    picker.set_value("wrn-16-2").run()
    assert not at.exception and not at.error
    other = sensitivity.load_model(MODELS_DIR / "wrn-16-2.keras")
    x = sensitivity.preprocess(sensitivity.load_image(PHOTOS_DIR / "dog.jpg"), 32)
    expected = sensitivity.saliency(other, x, method=DEFAULT_METHOD,
                                    **page_options(DEFAULT_METHOD))[0]
    np.testing.assert_allclose(heat_values(at), expected, rtol=1e-4,
                               atol=1e-5 * float(np.abs(expected).max()))
    rows = probability_bars_rows([h.proto.body for h in at.get("html")][0])
    probabilities = sensitivity.predict(other, x[None])[0]
    assert rows[0]["class"] == CLASS_NAMES[int(probabilities.argmax())]
    assert at.query_params["model"] in ("wrn-16-2", ["wrn-16-2"])


def test_compare_models_shows_each_models_prediction_and_map(dog_app):
    import sensitivity
    from sensitivity.model.io import MODELS_DIR

    at = dog_app
    widget(at, "selectbox", "Method").set_value("gradient").run()
    widget(at, "selectbox", "Side by side").set_value("models").run()
    widget(at, "multiselect", "Models to compare").set_value(["wrn-16-3", "wrn-16-2"]).run()
    assert not at.exception and not at.error
    x = sensitivity.preprocess(sensitivity.load_image(PHOTOS_DIR / "dog.jpg"), 32)
    shown = charts(at)
    for name in ("wrn-16-3", "wrn-16-2"):
        model = sensitivity.load_model(MODELS_DIR / f"{name}.keras")
        probabilities = sensitivity.predict(model, x[None])[0]
        top = int(probabilities.argmax())
        title = f"{name}: {CLASS_NAMES[top]} {100 * probabilities[top]:.1f}%"
        expected = sensitivity.saliency(model, x, method="gradient", class_mask=top)[0]
        np.testing.assert_allclose(array(shown[title]["data"][0]["z"]), expected, rtol=1e-4,
                                   atol=1e-5 * float(np.abs(expected).max()))
    assert len(at.get("html")) == 3  # the image's table and one per compared model


def test_a_model_without_a_card_is_not_offered_and_the_others_work(tmp_path, monkeypatch):
    import shutil

    from sensitivity.model.io import MODELS_DIR

    copy_model(MODELS_DIR / "wrn-16-2.keras", tmp_path / "wrn-16-2.keras")
    shutil.copy(MODELS_DIR / "wrn-16-2.keras", tmp_path / "orphan.keras")  # no card
    monkeypatch.setenv("SENSITIVITY_MODELS_DIR", str(tmp_path))
    at = AppTest.from_file(APP, default_timeout=300)
    at.query_params["model"] = "orphan"
    at.run()
    assert not at.exception
    assert list(widget(at, "selectbox", "Model").options) == ["wrn-16-3", "wrn-16-2"]
    assert any(c.value.startswith("Not offered: orphan:") and "orphan" in c.value
               for c in at.caption)
    assert any("model='orphan'" in w.value and "no such model" in w.value for w in at.warning)
    widget(at, "selectbox", "Model").set_value("wrn-16-2").run()
    at.file_uploader[0].upload("dog.jpg", (PHOTOS_DIR / "dog.jpg").read_bytes(), "image/jpeg")
    at.run()
    assert not at.exception and not at.error and "sensitivity" in charts(at)


def test_an_operators_three_class_sigmoid_model_on_the_page(tmp_path, monkeypatch):
    """An operator's own model (3 classes, a sigmoid multi-label head, native size 48, its
    card written by the card command's function) picked on the page: its class names in the
    table and the class mask, its probabilities and its map as the library computes them."""
    import keras

    import sensitivity
    from sensitivity.model.io import write_operator_card

    inputs = keras.Input((None, None, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="features")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="sigmoid", name="labels")(x))
    model.set_weights([w * 3 for w in model.get_weights()])
    model.save(tmp_path / "tags.keras")
    write_operator_card(tmp_path / "tags.keras", ["sky", "grass", "road"], 48)
    monkeypatch.setenv("SENSITIVITY_MODELS_DIR", str(tmp_path))
    at = AppTest.from_file(APP, default_timeout=300)
    at.query_params["model"] = "tags"
    at.query_params["method"] = "gradient"
    at.run()
    at.file_uploader[0].upload("dog.jpg", (PHOTOS_DIR / "dog.jpg").read_bytes(), "image/jpeg")
    at.run()
    assert not at.exception and not at.error
    assert list(widget(at, "multiselect", "Class mask").options) == ["sky", "grass", "road"]
    assert widget(at, "select_slider", "Analysis size").value == 48  # its card's native size
    assert "after processing (48x48)" in captions(at)
    loaded = sensitivity.load_model(tmp_path / "tags.keras")
    image = sensitivity.preprocess(sensitivity.load_image(PHOTOS_DIR / "dog.jpg"), 48)
    probabilities = sensitivity.predict(loaded, image[None])[0]
    # A sigmoid head: the model's own outputs, per class (no softmax over them).
    np.testing.assert_allclose(probabilities, np.asarray(model(image[None]))[0], rtol=1e-5)
    rows = predictions(at)[0]
    assert [r["class"] for r in rows] == [["sky", "grass", "road"][i]
                                          for i in np.argsort(-probabilities, kind="stable")]
    expected = sensitivity.saliency(loaded, image, method="gradient")[0]
    np.testing.assert_allclose(heat_values(at), expected, rtol=1e-4,
                               atol=1e-5 * float(np.abs(expected).max()))
