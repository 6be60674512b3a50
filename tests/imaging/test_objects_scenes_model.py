"""find_objects with the shipped localising model (wrn-16-3-scenes) and its card's rule on the
shared photographs: the boxes the issue asks for (boxes from the photographs' README)."""

from __future__ import annotations

import pytest

import sensitivity
from sensitivity.imaging.discovery import Box, iou
from sensitivity.imaging.images import load_image
from sensitivity.imaging.objects import find_objects, rule_for
from sensitivity.metrics.localisation_benchmark import MethodSpec, parse_spec
from sensitivity.model.io import MODELS_DIR
from sensitivity.model.labels import CLASS_NAMES

OBJECTS = {  # photo, class, the README's box (x0, y0, x1, y1)
    "dog.jpg dog": ("dog.jpg", "dog", (130, 222, 310, 540)),
    "dog.jpg pickup": ("dog.jpg", "automobile", (467, 73, 690, 170)),
    "person.jpg horse": ("person.jpg", "horse", (405, 138, 602, 345)),
}


@pytest.fixture(scope="module")
def scenes_model():
    return sensitivity.load_model(MODELS_DIR / "wrn-16-3-scenes.keras")


def test_the_cards_rule_is_the_per_position_probability(scenes_model):
    rule = rule_for(scenes_model)
    assert rule.method == "cam" and rule.options["probability"] is True
    assert len(rule.options["scales"]) > 1 and rule.evidence_activation == "sigmoid"
    # its label is how benchmark-maps --methods writes the same map
    assert parse_spec(rule.label) == MethodSpec(rule.method, rule.options)


@pytest.mark.parametrize("name", list(OBJECTS))
def test_the_first_box_of_the_asked_class_overlaps_the_object(scenes_model, photos_dir, name):
    photo, label, truth = OBJECTS[name]
    image = load_image((photos_dir / photo).read_bytes())
    found = find_objects(scenes_model, image, classes=[CLASS_NAMES.index(label)])
    assert found and found[0].label == label
    assert found[0].method == "cam:probability=True,scales=0.67/0.8/1.0/1.25/1.5"  # rule.label
    assert iou(found[0].box, Box(*truth)) >= 0.5
