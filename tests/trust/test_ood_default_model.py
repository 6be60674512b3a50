"""The shipped model's calibration and out-of-distribution flag on real data."""

from __future__ import annotations

import numpy as np
import pytest

import sensitivity
from sensitivity.engine.inference import logits
from sensitivity.imaging.images import load_image, preprocess
from sensitivity.model.data import load_split
from sensitivity.trust.calibration import calibration_report, temperature_of
from sensitivity.trust.outliers import outlier_set

# Objects of the shared photographs framed by a square of the box's longer side, centred on
# the box (boxes from the photographs' README); None: the whole photograph.
FRAMED = {
    "dog.jpg dog": ("dog.jpg", (130, 222, 310, 540)),
    "dog.jpg pickup": ("dog.jpg", (467, 73, 690, 170)),
    "person.jpg horse": ("person.jpg", (405, 138, 602, 345)),
    "eagle.jpg": ("eagle.jpg", None),
    "horses.jpg": ("horses.jpg", None),
}


@pytest.fixture(scope="module")
def test_images(cifar_dir):
    return load_split(cifar_dir, "test", limit=1000)


def test_few_cifar10_test_images_are_flagged_and_calibration_helps(default_model, test_images):
    images, labels = test_images
    _, flags = sensitivity.out_of_distribution(default_model, images.astype(np.float32))
    assert flags.mean() <= 0.07
    z = logits(default_model, images)
    raw = calibration_report(z, labels)
    calibrated = calibration_report(z, labels, temperature_of(default_model))
    assert calibrated["accuracy"] == raw["accuracy"]
    assert calibrated["ece"] < raw["ece"] / 2 and calibrated["nll"] < raw["nll"]


def test_text_and_flat_colours_are_flagged(default_model):
    pictures, kinds = outlier_set("test", 20)
    _, flags = sensitivity.out_of_distribution(default_model, pictures)
    for kind in ("text", "flat", "gradient"):
        assert flags[kinds == kind].mean() >= 0.9, kind


@pytest.mark.parametrize("name", FRAMED)
def test_framed_photographs_of_known_classes_are_not_flagged(default_model, photos_dir, name):
    file, box = FRAMED[name]
    image = load_image(photos_dir / file)
    if box is not None:
        x0, y0, x1, y1 = box
        side = max(x1 - x0, y1 - y0)
        left = int(np.clip((x0 + x1 - side) // 2, 0, image.shape[1] - side))
        top = int(np.clip((y0 + y1 - side) // 2, 0, image.shape[0] - side))
        image = image[top : top + side, left : left + side]
    _, flags = sensitivity.out_of_distribution(default_model, preprocess(image, 32))
    assert not flags[0]
