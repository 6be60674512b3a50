"""Accuracy, per-class accuracy and the confusion matrix on a hand-made case."""

from __future__ import annotations

import sensitivity  # noqa: F401  (sets the TensorFlow environment before TF is imported)

# isort: split
import keras
import numpy as np
import pytest

from sensitivity.model.cards import ModelCard, attach_card
from sensitivity.model.evaluate import accuracy_report, confusion_matrix, format_report
from sensitivity.model.labels import CLASS_NAMES

LABELS = np.array([0, 0, 0, 1, 1, 2, 3, 3, 3, 3])
PREDICTED = np.array([0, 0, 1, 1, 2, 2, 3, 3, 3, 0])
"""Class 0: 2 of 3 right (one called 1); class 1: 1 of 2 (one called 2); class 2: 1 of 1;
class 3: 3 of 4 (one called 0); classes 4-9: no images."""


def _expected_matrix() -> np.ndarray:
    matrix = np.zeros((10, 10), int)
    for true, guess, count in [(0, 0, 2), (0, 1, 1), (1, 1, 1), (1, 2, 1), (2, 2, 1),
                               (3, 3, 3), (3, 0, 1)]:
        matrix[true, guess] = count  # row: the true class, column: the prediction
    return matrix


def _model_predicting_the_grey_level_over_ten():
    """4x4 images of one grey level v: logit k = k v - 5 k^2, largest at k = round(v / 10)."""
    inputs = keras.Input((4, 4, 3))
    dense = keras.layers.Dense(10)
    model = keras.Model(inputs, dense(keras.layers.GlobalAveragePooling2D()(inputs)))
    kernel = np.zeros((3, 10), np.float32)
    kernel[0] = np.arange(10)
    dense.set_weights([kernel, -5.0 * np.arange(10, dtype=np.float32) ** 2])
    return model


def test_confusion_matrix_rows_are_true_classes():
    matrix = confusion_matrix(LABELS, PREDICTED, 10)
    assert matrix.shape == (10, 10) and matrix.dtype == np.int64
    np.testing.assert_array_equal(matrix, _expected_matrix())
    assert matrix[0, 1] == 1 and matrix[1, 0] == 0  # a true 0 called 1, never a true 1 called 0
    np.testing.assert_array_equal(confusion_matrix(LABELS, PREDICTED, 4),
                                  _expected_matrix()[:4, :4])


def test_accuracy_report_by_hand():
    images = np.broadcast_to((10.0 * PREDICTED + 1.0)[:, None, None, None],
                             (len(PREDICTED), 4, 4, 3)).astype(np.float32)
    model = _model_predicting_the_grey_level_over_ten()
    default = accuracy_report(model, images, LABELS)  # no card: "class 0".. "class 9"
    assert list(default["per_class"]) == [f"class {i}" for i in range(10)]
    other = _model_predicting_the_grey_level_over_ten()
    attach_card(other, ModelCard(("a", "b"), native_size=4))
    with pytest.raises(ValueError, match="labelled up to class 3 but the model's card names 2"):
        accuracy_report(other, images, LABELS)
    attach_card(model, ModelCard(CLASS_NAMES, native_size=4))
    report = accuracy_report(model, images, LABELS)
    assert report["n"] == 10
    assert report["accuracy"] == 0.7
    expected = dict.fromkeys(CLASS_NAMES, 0.0)
    expected.update({CLASS_NAMES[0]: 2 / 3, CLASS_NAMES[1]: 1 / 2, CLASS_NAMES[2]: 1.0,
                     CLASS_NAMES[3]: 3 / 4})
    assert report["per_class"].keys() == expected.keys()
    for name, value in expected.items():
        assert abs(report["per_class"][name] - value) < 1e-12, name
    assert report["confusion_matrix"] == _expected_matrix().tolist()
    text = format_report(report).splitlines()
    assert "top-1 accuracy: 70.00% on 10 images" in text
    assert f"  {CLASS_NAMES[0]:<11} 66.67%" in text
    row = next(line for line in text if line.startswith(f"{CLASS_NAMES[3]:<11}"))
    assert row.split()[1:] == ["1", "0", "0", "3", "0", "0", "0", "0", "0", "0"]
