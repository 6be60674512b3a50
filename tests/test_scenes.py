"""Scenes: deterministic under a seed, boxes exactly the pasted pixels, objects apart."""

from __future__ import annotations

import numpy as np
import pytest

from sensitivity.data import load_split
from sensitivity.scenes import BACKGROUNDS, GAP, background, make_scene, scene_from_pool
from tests.helpers import class_pattern


def _pool(count: int = 20) -> tuple[np.ndarray, np.ndarray]:
    labels = np.arange(count) % 10
    images = np.stack([class_pattern(int(c)) for c in labels])
    images[:, 0, 0] = np.arange(count)[:, None]  # every pool image unique
    return images, labels


@pytest.mark.parametrize("kind", BACKGROUNDS)
def test_boxes_are_exactly_the_pasted_pixels(kind):
    objects = [class_pattern(3), class_pattern(7)]
    scene = make_scene(objects, [3, 7], size=96, background_kind=kind, seed=5)
    assert scene.image.shape == (96, 96, 3) and scene.image.dtype == np.uint8
    assert scene.labels == (3, 7) and scene.background == kind
    inside = np.zeros((96, 96), bool)
    for obj, box in zip(objects, scene.boxes, strict=True):
        assert 0 <= box.x0 and box.x1 <= 96 and 0 <= box.y0 and box.y1 <= 96
        assert (box.width, box.height) == (32, 32)
        np.testing.assert_array_equal(scene.image[box.y0 : box.y1, box.x0 : box.x1], obj)
        inside[box.y0 : box.y1, box.x0 : box.x1] = True
    assert inside.sum() == 2 * 32 * 32  # no overlap
    a, b = scene.boxes
    assert a.x1 + GAP <= b.x0 or b.x1 + GAP <= a.x0 or a.y1 + GAP <= b.y0 or b.y1 + GAP <= a.y0


def test_backgrounds_differ_in_kind():
    rng = np.random.default_rng(0)
    flat = background("flat", 40, 50, rng)
    assert flat.shape == (40, 50, 3) and (flat == flat[0, 0]).all()
    noise = background("noise", 40, 50, rng)
    assert noise.std() > 20
    smooth = background("smooth", 40, 50, rng).astype(float)
    assert np.abs(np.diff(smooth, axis=1)).mean() < np.abs(np.diff(noise, axis=1)).mean() / 4
    checker = background("checker", 40, 50, rng)
    assert len(np.unique(checker.reshape(-1, 3), axis=0)) == 2
    with pytest.raises(ValueError, match="unknown background"):
        background("plasma", 8, 8, rng)


def test_same_seed_same_scene_other_seed_other_scene():
    images, labels = _pool()
    first = scene_from_pool(images, labels, num_objects=2, seed=11)
    again = scene_from_pool(images, labels, num_objects=2, seed=11)
    np.testing.assert_array_equal(first.image, again.image)
    assert first.boxes == again.boxes and first.labels == again.labels
    assert first.background == again.background
    others = [scene_from_pool(images, labels, num_objects=2, seed=s) for s in range(5)]
    assert len({(s.boxes, s.labels, s.background) for s in others}) == 5


def test_pool_scenes_paste_pool_images_of_different_classes():
    images, labels = _pool()
    for seed in range(10):
        scene = scene_from_pool(images, labels, num_objects=2, size=(80, 120), seed=seed)
        assert scene.image.shape == (80, 120, 3)
        assert scene.labels[0] != scene.labels[1]
        for box, label in zip(scene.boxes, scene.labels, strict=True):
            crop = scene.image[box.y0 : box.y1, box.x0 : box.x1]
            matches = [i for i in range(len(images)) if np.array_equal(images[i], crop)]
            assert len(matches) == 1 and labels[matches[0]] == label


def test_scenes_from_the_cifar_test_split(cifar_dir):
    images, labels = load_split(cifar_dir, "test", limit=20, cache=False)
    scene = scene_from_pool(images, labels, num_objects=1, seed=3)
    (box,) = scene.boxes
    crop = scene.image[box.y0 : box.y1, box.x0 : box.x1]
    index = next(i for i in range(len(images)) if np.array_equal(images[i], crop))
    assert scene.labels == (int(labels[index]),)


def test_impossible_scenes_raise():
    with pytest.raises(ValueError, match="does not fit"):
        make_scene([class_pattern(0)], [0], size=20)
    with pytest.raises(ValueError, match="apart"):
        make_scene([class_pattern(0), class_pattern(1)], [0, 1], size=40)
    with pytest.raises(ValueError, match="different|two classes"):
        scene_from_pool(np.stack([class_pattern(0)] * 3), np.zeros(3, int), num_objects=2)
    with pytest.raises(ValueError, match="1 or 2"):
        scene_from_pool(*_pool(), num_objects=3)
    with pytest.raises(ValueError, match="one label per object"):
        make_scene([class_pattern(0)], [0, 1])
