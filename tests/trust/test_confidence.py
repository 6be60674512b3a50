"""Fitting confidence on validation data only, storing it with the model, loading it back."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
from PIL import Image

import sensitivity
from sensitivity.model.io import ModelError, write_model_card
from sensitivity.trust import calibration, confidence, ood
from tests.helpers import CIFAR_CARD, write_class_folders


def _net():
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    block = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="block")(x)
    pooled = keras.layers.GlobalAveragePooling2D(name="pool")(block)
    model = keras.Model(inputs, keras.layers.Dense(10, name="logits")(pooled))
    model.set_weights([w * 4 for w in model.get_weights()])  # confident enough to calibrate
    return model


def _fit(model, root):
    return confidence.fit_confidence(model, root, None, layers=("pool", "block"),
                                     val_size=60, outliers_per_kind=4)


def _rewrite(folder, change):
    for path in sorted(folder.rglob("*.png")):
        pixels = np.asarray(Image.open(path)).astype(int)
        Image.fromarray(np.clip(change(pixels), 0, 255).astype(np.uint8)).save(path)


def test_the_fit_reads_the_validation_part_and_never_the_test_split(tmp_path, monkeypatch):
    monkeypatch.setenv("SENSITIVITY_CACHE", str(tmp_path / "cache"))
    root = write_class_folders(tmp_path / "data", per_class=12)
    model = _net()
    first = _fit(model, root)
    assert first.validation["images"] == 60
    assert first.validation["train_images_for_gaussians"] == 60  # 120 training images - 60
    _rewrite(root / "test", lambda p: 255 - p)  # a different test split
    again = _fit(model, root)
    assert again.temperature == first.temperature
    assert again.detector.threshold == first.detector.threshold
    assert again.detector.components == first.detector.components
    # The check can fail: changing the training split (its validation part) changes the fit.
    _rewrite(root / "train", lambda p: p // 2 + 60)
    changed = _fit(model, root)
    assert changed.temperature != first.temperature


def test_written_confidence_is_checked_and_attached_by_load_model(tmp_path, monkeypatch):
    monkeypatch.setenv("SENSITIVITY_CACHE", str(tmp_path / "cache"))
    root = write_class_folders(tmp_path / "data", per_class=12)
    model = _net()
    path = tmp_path / "net.keras"
    model.save(path)
    write_model_card(path, {"name": "net", **CIFAR_CARD})
    fitted = _fit(model, root)
    card = confidence.write_confidence(path, fitted)
    assert card["calibration"]["temperature"] == fitted.temperature
    assert card["out_of_distribution"]["statistics"] == "net.ood.npz"
    assert json.loads(path.with_suffix(".json").read_text()) == card

    loaded = sensitivity.load_model(path)
    assert calibration.temperature_of(loaded) == fitted.temperature
    detector = ood.detector_of(loaded)
    assert detector.components == fitted.detector.components
    images = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(sensitivity.out_of_distribution(loaded, images)[0],
                               sensitivity.out_of_distribution(model, images, fitted.detector)[0],
                               rtol=1e-5, atol=1e-5)

    stats = confidence.statistics_path(path)
    stats.write_bytes(stats.read_bytes()[:-1] + b"x")  # altered
    with pytest.raises(ModelError, match="does not match its card"):
        sensitivity.load_model(path)
    stats.unlink()
    with pytest.raises(ModelError, match="not found"):
        sensitivity.load_model(path)


def test_the_calibrate_command_holds_out_the_part_the_card_names(tmp_path, monkeypatch, capsys):
    from sensitivity.__main__ import main

    monkeypatch.setenv("SENSITIVITY_CACHE", str(tmp_path / "cache"))
    root = write_class_folders(tmp_path / "data", per_class=12)
    path = tmp_path / "net.keras"
    model = _net()
    model.save(path)
    write_model_card(path, {"name": "net", "recipe": {"val_size": 60, "seed": 0},
                            **CIFAR_CARD})
    code = main(["calibrate", "--data-dir", str(root), "--model", str(path), "--layers", "pool",
                 "block", "--photos-dir", str(tmp_path / "none"), "--outliers", "4",
                 "--report-test"])
    assert code == 0
    out = capsys.readouterr().out
    assert "chosen:" in out and "AUROC" in out
    card = json.loads(path.with_suffix(".json").read_text())
    assert card["calibration"]["validation"]["images"] == 60
    assert card["calibration"]["test"]["raw"]["n"] == 120  # the whole test split, afterwards
    # The same fit as the library's on that held-out part.
    assert card["calibration"]["temperature"] == _fit(model, root).temperature
