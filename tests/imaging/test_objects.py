"""find_objects and map_boxes: boxes of known blobs, and of a tiny model whose evidence is known."""

from __future__ import annotations

import dataclasses
import importlib

import numpy as np
import pytest

from sensitivity.imaging.discovery import iou
from sensitivity.imaging.objects import (
    FoundObject,
    ObjectRule,
    candidate_classes,
    class_evidence,
    find_objects,
    map_boxes,
    strong_boxes,
)
from tests.helpers import colour_model, two_squares

# Red logit 3 on the full-size image: 40x40 red pixels of 120x200, each giving scale * 255.
SCALE = 3.0 / (1600 / 24000 * 255)


def _two_blobs() -> np.ndarray:
    """A 10x12 map: blob B (value 0.5, 12 pixels, mass 6) first in raster order, blob A
    (value 2, 6 pixels, mass 12) lower down, and a negative pixel that must count as 0."""
    saliency_map = np.zeros((10, 12))
    saliency_map[1:4, 7:11] = 0.5  # B: rows 1-3, columns 7-10
    saliency_map[6:8, 1:4] = 2.0  # A: rows 6-7, columns 1-3
    saliency_map[9, 0] = -5.0
    return saliency_map


def test_map_boxes_scores_components_by_mass_share_strongest_first():
    boxes = map_boxes(_two_blobs(), 0.2)  # keeps values >= 0.4: both blobs
    assert [tuple(b[:4]) for b in boxes] == [(1, 6, 4, 8), (7, 1, 11, 4)]  # A before B
    assert [b.score for b in boxes] == pytest.approx([12 / 18, 6 / 18])
    # At 0.5 (values >= 1) only A is kept; its score is still its share of the whole map.
    (only,) = map_boxes(_two_blobs(), 0.5)
    assert tuple(only[:4]) == (1, 6, 4, 8) and only.score == pytest.approx(12 / 18)


def test_map_boxes_edge_cases():
    # Fraction 0 keeps every pixel (the negative one too, as it counts as 0): one box, all mass.
    (whole,) = map_boxes(_two_blobs(), 0.0)
    assert tuple(whole[:4]) == (0, 0, 12, 10) and whole.score == pytest.approx(1.0)
    # Diagonal neighbours are one (8-connected) component.
    diagonal = np.zeros((4, 4))
    diagonal[1, 1] = diagonal[2, 2] = 1.0
    assert [tuple(b[:4]) for b in map_boxes(diagonal, 0.5)] == [(1, 1, 3, 3)]
    assert map_boxes(np.zeros((5, 6)), 0.3) == []
    assert map_boxes(-np.ones((5, 6)), 0.0) == []
    with pytest.raises(ValueError, match="fraction"):
        map_boxes(_two_blobs(), 1.5)


@pytest.fixture(scope="module")
def model():
    return colour_model(SCALE)


@pytest.mark.parametrize("method", ["cam", "gradcam"])
def test_find_objects_boxes_the_squares_in_image_coordinates(model, method):
    image, red, blue = two_squares()
    # side 100 < 200: the image is analysed at 60x100 and the boxes scaled back by 2.
    rule = ObjectRule(method=method, side=100, fraction=0.5)
    found = find_objects(model, image, rule=rule)
    # Evidence by hand: the head on one position's features, softmax, largest over positions
    # (25.5 for the colour's classes at a pure position; grey positions give 0.1 everywhere).
    evidence = class_evidence(model, image.astype(np.float32))
    e = np.exp(25.5)
    np.testing.assert_allclose(evidence, [e / (2 * e + 8), e / (e + 9), e / (2 * e + 8)]
                               + [0.1] * 7, rtol=1e-6)
    # Per class (sigmoid): the colour's classes reach 1 / (1 + e^-25.5), the rest 1/2.
    np.testing.assert_allclose(class_evidence(model, image.astype(np.float32), "sigmoid"),
                               [1 / (1 + 1 / e)] * 3 + [0.5] * 7, rtol=1e-6)
    with pytest.raises(ValueError, match="activation must be one of"):
        class_evidence(model, image.astype(np.float32), "relu")
    # classes=None: classes 1, 0 and 2 are looked for; class 2's box is class 0's box (its
    # map is the same), so the cross-class NMS keeps only one of them.
    assert len(found) == 2
    assert all(isinstance(f, FoundObject) and f.method == method for f in found)
    first, second = found
    assert first.class_index == 1 and first.label == "class 1"  # the default card's name
    assert iou(first.box, blue) >= 0.5
    assert second.class_index in (0, 2) and iou(second.box, red) >= 0.5
    # One component per class map holding all its mass: score = the class's evidence, its
    # largest per-position probability. Per position the logits are the colour features
    # (0.1 * 255 = 25.5): blue positions give class 1 alone (probability ~1), red positions
    # classes 0 and 2 equally (~0.5 each); grey positions give 0.1 to every class.
    assert first.score == pytest.approx(1.0, abs=1e-6)
    assert second.score == pytest.approx(0.5, abs=1e-6)


def test_find_objects_classes_and_max_objects(model):
    image, red, blue = two_squares()
    rule = ObjectRule(method="cam", side=100, fraction=0.5)
    (only,) = find_objects(model, image, rule=rule, max_objects=1)
    assert only.class_index == 1 and iou(only.box, blue) >= 0.5
    (red_found,) = find_objects(model, image, classes=0, rule=rule)
    assert red_found.class_index == 0 and iou(red_found.box, red) >= 0.5
    names = [f"c{i}" for i in range(10)]
    found = find_objects(model, image, classes=[0, 1], rule=rule, class_names=names)
    assert [(f.class_index, f.label) for f in found] == [(1, "c1"), (0, "c0")]
    assert iou(found[0].box, blue) >= 0.5 and iou(found[1].box, red) >= 0.5
    # Asked for a class with no evidence: its map is all zero, no box.
    assert find_objects(model, image, classes=[5], rule=rule) == []
    # No class reaches min_probability: the most probable one is still looked for.
    strict = ObjectRule(method="cam", side=100, fraction=0.5, min_probability=0.9)
    assert [f.class_index for f in find_objects(model, image, rule=strict)] == [1]


def test_candidate_classes_by_hand():
    evidence = np.array([0.2, 0.7, 0.9, 0.6])
    assert candidate_classes(evidence, 3, 0.65) == [2, 1]
    assert candidate_classes(evidence, 1, 0.65) == [2]
    assert candidate_classes(evidence, 3, 0.95) == [2]  # the most probable one always
    # Read at two sides: a class's highest counts (class 3: 0.95 at the second side).
    by_side = np.stack([evidence, [0.1, 0.1, 0.3, 0.95]])
    assert candidate_classes(by_side, 3, 0.65) == [3, 2, 1]
    assert candidate_classes(by_side, 2, 0.92) == [3]


def test_find_objects_rejects_bad_arguments(model):
    image, _, _ = two_squares()
    rule = ObjectRule(method="cam", side=100, fraction=0.5)
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="max_objects"):
            find_objects(model, image, max_objects=bad, rule=rule)
    for bad in (10, -1, [0, 12]):
        with pytest.raises(ValueError, match="out of range"):
            find_objects(model, image, classes=bad, rule=rule)
    for bad in (1.5, [0, 1.0], "dog"):
        with pytest.raises(ValueError, match="class indices"):
            find_objects(model, image, classes=bad, rule=rule)
    with pytest.raises(ValueError, match="fraction"):
        find_objects(model, image, rule=ObjectRule(method="cam", side=100, fraction=2.0))


def test_found_box_is_scaled_outwards_onto_the_image(model, monkeypatch):
    # A 100x150 image at side 40 is analysed at round(100 * 40 / 150) = 27 x 40: scales
    # 100 / 27 (rows) and 150 / 40 = 3.75 (columns). A map whose only component is analysis
    # rows 10-12, columns 5-8 (box x 5..9, y 10..13) gives the image box
    # (floor(5 * 3.75), floor(10 * 100 / 27), ceil(9 * 3.75), ceil(13 * 100 / 27)).
    saliency_module = importlib.import_module("sensitivity.engine.saliency")
    seen = []

    def fake_saliency(model, images, **kwargs):
        seen.append((images.shape, kwargs["method"], kwargs["class_mask"].tolist()))
        maps = np.zeros(images.shape[:3], np.float32)
        maps[:, 10:13, 5:9] = 1.0
        return maps

    monkeypatch.setattr(saliency_module, "saliency", fake_saliency)
    image = np.full((100, 150, 3), 128, np.uint8)
    rule = ObjectRule(method="layercam", side=40, fraction=0.3)
    (found,) = find_objects(model, image, classes=[7], rule=rule)
    assert seen == [((1, 27, 40, 3), "layercam", [[0.0] * 7 + [1.0] + [0.0] * 2])]
    assert tuple(found.box[:4]) == (18, 37, 34, 49)
    assert found.class_index == 7 and found.method == "layercam"
    # Grey image: every logit is 0, so the probability is 1/10; the box holds all the mass.
    assert found.score == pytest.approx(0.1, abs=1e-6)


def test_class_evidence_is_read_at_the_rules_evidence_side(model, monkeypatch):
    objects = importlib.import_module("sensitivity.imaging.objects")
    image, _, blue = two_squares()
    seen = []

    def recording_evidence(model, x, activation):
        seen.append((x.shape[:2], activation))
        return class_evidence(model, x, activation)

    monkeypatch.setattr(objects, "class_evidence", recording_evidence)
    rule = ObjectRule(method="cam", side=100, fraction=0.5, evidence_side=50)
    (found,) = find_objects(model, image, rule=rule, max_objects=1)
    # The classes are read at 50 px, the boxes made at 100 px, both from the whole image.
    (shape, activation), = seen
    assert max(shape) == 50 and activation is None  # the head's: softmax
    assert found.side == 100 and found.class_index == 1 and iou(found.box, blue) >= 0.5
    seen.clear()
    find_objects(model, image, rule=ObjectRule(method="cam", side=100, fraction=0.5,
                                               evidence_activation="sigmoid"))
    (shape, activation), = seen
    assert max(shape) == 100 and activation == "sigmoid"


def test_each_class_is_boxed_at_the_side_where_its_evidence_is_highest(model, monkeypatch):
    """With ``sides``, a class's map is made at whichever side its evidence (read there) is
    highest; its box is scaled back from that side, its score still uses the evidence at the
    rule's ``evidence_side``, and each side is read once."""
    objects = importlib.import_module("sensitivity.imaging.objects")
    image, red, blue = two_squares()
    seen = []

    def side_dependent_evidence(model, x, activation):
        side = max(x.shape[:2])
        seen.append(side)
        evidence = np.full(10, 0.1)
        # Red (class 0) is surest at 50 px, blue (class 1) at 100, class 2 equally at both.
        evidence[:3] = {50: [0.9, 0.3, 0.5], 100: [0.2, 0.8, 0.5], 150: [0.25, 0.4, 0.1]}[side]
        return evidence

    monkeypatch.setattr(objects, "class_evidence", side_dependent_evidence)
    rule = ObjectRule(method="cam", side=100, fraction=0.5, sides=(50, 100),
                      evidence_side=150)
    assert rule.analysis_sides == (100, 50)
    red_found, blue_found = sorted(find_objects(model, image, classes=[0, 1], rule=rule),
                                   key=lambda f: f.class_index)
    assert sorted(seen) == [50, 100, 150]  # each side read once
    assert (red_found.side, blue_found.side) == (50, 100)
    assert iou(red_found.box, red) >= 0.5 and iou(blue_found.box, blue) >= 0.5
    # Score: the box's share of its map's mass (all of it at 100 px, 0.95 at 50 px, where
    # the upsampled map blurs) times the class's evidence read at evidence_side.
    assert blue_found.score == pytest.approx(0.4)
    assert red_found.score == pytest.approx(0.25, rel=0.1)
    (tie,) = find_objects(model, image, classes=[2], rule=rule)
    assert tie.side == 100 and iou(tie.box, red) >= 0.5  # a tie goes to `side`
    # No class mask: a class is looked for when its highest evidence over the sides read
    # (150, 100 and 50) reaches min_probability: classes 0 (0.9 at 50) and 1 (0.8 at 100), not
    # class 2 (0.5); at evidence_side alone (150) none would, and only class 1 (0.4) be taken.
    assert rule.evidence_sides == (150, 100, 50)
    strict = dataclasses.replace(rule, min_probability=0.75)
    assert {f.class_index for f in find_objects(model, image, rule=strict)} == {0, 1}
    alone = dataclasses.replace(strict, sides=())
    assert alone.evidence_sides == (150,)
    assert [f.class_index for f in find_objects(model, image, rule=alone)] == [1]


def test_a_floor_drops_a_classs_fragments(model, monkeypatch):
    """A class's map with a main blob (mass 10) and a fragment (mass 1): the fragment's box
    scores 1/10 of the main one's, so a floor of 0.2 drops it and 0.05 keeps it."""
    saliency_module = importlib.import_module("sensitivity.engine.saliency")

    def fake_saliency(model, images, **kwargs):
        maps = np.zeros(images.shape[:3], np.float32)
        maps[:, 2:4, 2:7] = 1.0  # 10 pixels
        maps[:, 20, 30] = 1.0  # 1 pixel
        return maps

    monkeypatch.setattr(saliency_module, "saliency", fake_saliency)
    image = np.full((40, 40, 3), 128, np.uint8)
    found = {floor: find_objects(model, image, classes=[3], rule=ObjectRule(
        method="cam", side=40, fraction=0.5, box_floor=floor)) for floor in (0.0, 0.05, 0.2)}
    assert [f.score for f in found[0.0]] == pytest.approx([0.1 * 10 / 11, 0.1 * 1 / 11])
    assert found[0.05] == found[0.0]
    assert found[0.2] == found[0.0][:1]
    boxes = [f.box for f in found[0.0]]
    assert strong_boxes(boxes, 0.11) == boxes[:1] and strong_boxes(boxes, 0.1) == boxes
    assert strong_boxes(boxes, 0.0) == boxes
