import json
import shutil

import numpy as np
import pytest

import sensitivity
from sensitivity.model.data import load_split
from sensitivity.model.io import DEFAULT_MODEL_PATH, ModelError, card_path, sha256_of
from sensitivity.model.wrn import build_wrn
from tests.helpers import CIFAR_CARD


def test_committed_model_card_is_complete_and_its_checksum_holds():
    card = json.loads(card_path(DEFAULT_MODEL_PATH).read_text())
    assert card["sha256"] == sha256_of(DEFAULT_MODEL_PATH)
    for key in ("architecture", "parameters", "data", "recipe", "epochs",
                "train_wall_time_minutes", "machine", "test_accuracy"):
        assert card[key] not in (None, "", {}), key
    assert card["classes"] == list(sensitivity.CLASS_NAMES)


def test_committed_model_loads_with_plain_keras_in_safe_mode():
    import keras

    model = keras.saving.load_model(DEFAULT_MODEL_PATH)  # safe mode, no custom objects
    assert model.input.shape == (None, None, None, 3)
    assert model.get_layer("logits").output.shape[-1] == 10
    assert model.get_layer("group2_block1") is not None


def test_committed_model_accuracy_on_1000_test_images(default_model, cifar_dir):
    images, labels = load_split(cifar_dir, "test", limit=1000, cache=False)
    probabilities = sensitivity.predict(default_model, images)
    assert probabilities.shape == (1000, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    accuracy = float(np.mean(probabilities.argmax(axis=1) == labels))
    # The card's figure is measured on all 10,000 test images; these 1,000 agree with it.
    card = json.loads(card_path(DEFAULT_MODEL_PATH).read_text())
    assert abs(accuracy - card["test_accuracy"]) < 0.03, (accuracy, card["test_accuracy"])
    # Issue 2 asks for 88% here (and 91% on the whole split, not reached yet: see the card).
    assert accuracy >= 0.88, accuracy


def _tiny_model_file(tmp_path):
    from sensitivity.model.io import write_model_card

    path = tmp_path / "tiny.keras"
    build_wrn(10, 1).save(path)
    write_model_card(path, {"name": "tiny", **CIFAR_CARD})
    return path


def test_load_model_checks_the_checksum(tmp_path):
    path = _tiny_model_file(tmp_path)
    assert sensitivity.load_model(path).name == "wrn_10_1"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="does not match its card"):
        sensitivity.load_model(path)


def test_load_model_missing_file_or_card(tmp_path):
    with pytest.raises(ModelError, match="model file not found"):
        sensitivity.load_model(tmp_path / "nothing.keras")
    path = _tiny_model_file(tmp_path)
    shutil.copy(path, tmp_path / "orphan.keras")
    with pytest.raises(ModelError, match="model card not found"):
        sensitivity.load_model(tmp_path / "orphan.keras")


def test_load_model_unreadable_file_with_matching_card(tmp_path):
    from sensitivity.model.io import write_model_card

    path = tmp_path / "junk.keras"
    path.write_bytes(b"this is not a keras archive")
    write_model_card(path, {"name": "junk"})
    with pytest.raises(ModelError, match="cannot be loaded"):
        sensitivity.load_model(path)


def test_predict_shapes(default_model):
    image = np.full((32, 32, 3), 128, np.float32)
    single = sensitivity.predict(default_model, image)
    batch = sensitivity.predict(default_model, np.stack([image, image + 10]))
    assert single.shape == (1, 10) and batch.shape == (2, 10)
    np.testing.assert_allclose(single[0], batch[0], atol=1e-5)
    with pytest.raises(ValueError):
        sensitivity.predict(default_model, np.zeros((32, 32)))


def _small_model_file(folder, name: str, classes: int = 3):
    """A one-layer classifier of ``classes`` outputs saved as ``folder/name.keras`` with a card."""
    import keras

    from sensitivity.model.io import write_model_card

    inputs = keras.Input((None, None, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(inputs)
    path = folder / f"{name}.keras"
    keras.Model(inputs, keras.layers.Dense(classes)(pooled)).save(path)
    write_model_card(path, {"classes": [f"{name} {i}" for i in range(classes)],
                            "input_size": 16})
    return path


def test_list_models_reads_every_card_and_names_the_files_it_cannot(tmp_path, monkeypatch):
    from sensitivity.model.io import list_models

    for name in ("b", "a"):
        _small_model_file(tmp_path, name)
    (tmp_path / "orphan.keras").write_bytes(b"no card")
    broken = _small_model_file(tmp_path, "broken")
    broken.with_suffix(".json").write_text('{"classes": "not a list"}')
    (tmp_path / "notes.json").write_text("{}")
    entries = list_models(tmp_path)
    assert [e.name for e in entries] == ["a", "b", "broken", "orphan"]
    assert entries[0].card.class_names == ("a 0", "a 1", "a 2") and not entries[0].problem
    assert entries[0].card.native_size == 16 and entries[0].path == tmp_path / "a.keras"
    assert entries[2].card is None and str(broken) in entries[2].problem
    assert entries[3].card is None and "model card not found" in entries[3].problem
    monkeypatch.setenv("SENSITIVITY_MODELS_DIR", str(tmp_path))
    assert [e.name for e in list_models()] == ["a", "b", "broken", "orphan"]
    monkeypatch.delenv("SENSITIVITY_MODELS_DIR")
    shipped = {e.name: e for e in list_models()}
    assert {"wrn-16-2", "wrn-16-3"} <= set(shipped)
    assert all(shipped[n].card.class_names[2] == "bird" for n in ("wrn-16-2", "wrn-16-3"))


def test_the_model_cache_holds_at_most_capacity_models_least_recently_used_dropped(tmp_path):
    from sensitivity.model.cards import model_card
    from sensitivity.model.io import ModelCache

    for name, classes in (("a", 2), ("b", 3), ("c", 4)):
        _small_model_file(tmp_path, name, classes)
    (tmp_path / "orphan.keras").write_bytes(b"no card")
    cache = ModelCache(tmp_path, capacity=2)
    a = cache.get("a")
    assert model_card(a).num_classes == 2 and model_card(a).class_names[1] == "a 1"
    b = cache.get("b")
    assert cache.get("a") is a and cache.held() == ["b", "a"]  # a used last
    cache.get("c")
    assert cache.held() == ["a", "c"]  # b, the least recently used, dropped
    assert cache.get("b") is not b and cache.held() == ["c", "b"]
    with pytest.raises(ModelError, match="no model 'd'"):
        cache.get("d")
    with pytest.raises(ModelError, match=str(tmp_path / "orphan.json")):
        cache.get("orphan")
    with pytest.raises(ModelError, match="no model"):
        cache.get("../a")
    (tmp_path / "c.keras").write_bytes(b"altered")
    cache.get("b")
    cache.get("a")  # c, held until now, was dropped: it is loaded again and checked
    with pytest.raises(ModelError, match="does not match its card"):
        cache.get("c")
    assert cache.held() == ["b", "a"]
    with pytest.raises(ValueError):
        ModelCache(tmp_path, capacity=0)


def test_the_restored_wrn_16_2_loads_with_its_card_calibration_and_detector():
    from sensitivity.model.cards import model_card
    from sensitivity.model.io import MODELS_DIR
    from sensitivity.trust.calibration import temperature_of
    from sensitivity.trust.ood import detector_of

    model = sensitivity.load_model(MODELS_DIR / "wrn-16-2.keras")
    card = model_card(model)
    assert card.name == "wrn-16-2" and card.native_size == 32 and card.head == "logits"
    assert card.sha256 == "40cb5b1051751d7c9a43d0de3b9da3560dd87b97801d25004516ef23a0da2075"
    assert card.class_names == tuple(sensitivity.CLASS_NAMES) and card.accuracy == 0.9058
    assert 0.3 < temperature_of(model) < 1 and detector_of(model) is not None


def test_a_position_head_named_by_the_card_is_checked_and_attached(tmp_path):
    from sensitivity.model.io import load_model_alone, read_model_card
    from sensitivity.model.position_head import (
        NEIGHBOURHOODS,
        PositionHead,
        input_parts,
        position_head_of,
        write_position_head,
    )

    path = _tiny_model_file(tmp_path)  # WRN-10-1: 64 channels in its last feature map

    def head(channels: int) -> PositionHead:
        rng = np.random.default_rng(0)
        inputs = input_parts(NEIGHBOURHOODS) * channels
        return PositionHead(*(rng.normal(0, 1, s).astype(np.float32) for s in
                              ((inputs, 4), (4,), (4, 11), (11,))), fitted_on="by hand")

    write_position_head(path, head(64))
    card = read_model_card(path)
    assert card["position_head"]["file"] == "tiny.positions.npz"
    model = sensitivity.load_model(path)
    assert position_head_of(model).fitted_on == "by hand"
    assert position_head_of(load_model_alone(path)) is None  # for refitting: no head
    # A head for another feature map is refused, naming both channel counts.
    write_position_head(path, head(16))
    with pytest.raises(ModelError, match="reads 16 channels into 10 classes, the model's "
                                         "feature map has 64 channels"):
        sensitivity.load_model(path)
    # An altered or missing head file is refused before the model loads.
    head_file = tmp_path / "tiny.positions.npz"
    head_file.write_bytes(head_file.read_bytes()[:-7] + b"altered")
    with pytest.raises(ModelError, match="position head .* does not match its card"):
        sensitivity.load_model(path)
    head_file.unlink()
    with pytest.raises(ModelError, match="position head not found"):
        sensitivity.load_model(path)
    card["position_head"]["file"] = "../elsewhere.npz"
    (tmp_path / "tiny.json").write_text(json.dumps(card))
    with pytest.raises(ModelError, match="must be a file name beside the model"):
        sensitivity.load_model(path)
