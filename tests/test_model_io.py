import json
import shutil

import numpy as np
import pytest

import sensitivity
from sensitivity.data import load_split
from sensitivity.model_io import DEFAULT_MODEL_PATH, ModelError, card_path, sha256_of
from sensitivity.wrn import build_wrn


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
    from sensitivity.model_io import write_model_card

    path = tmp_path / "tiny.keras"
    build_wrn(10, 1).save(path)
    write_model_card(path, {"name": "tiny"})
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
    from sensitivity.model_io import write_model_card

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
