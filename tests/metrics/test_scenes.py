"""Scenes: deterministic under a seed, boxes exactly the pasted pixels, objects apart; photo-like
scenes: sizes in range, objects the resized pool images, feathering only inside the boxes,
noise of the drawn std, photo crops clear of the photographs' objects, the trainer's
validation pool."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from sensitivity.imaging.discovery import Box
from sensitivity.metrics.scenes import (
    BACKGROUNDS,
    GAP,
    PHOTO_GAP,
    PHOTO_OBJECTS,
    background,
    fractal_texture,
    make_scene,
    photo_crop,
    photo_like_scene,
    photo_regions,
    scene_from_pool,
    scene_pool,
    scene_set,
)
from sensitivity.model.data import list_images, load_split, train_val_split
from tests.conftest import ROOT
from tests.helpers import class_pattern, write_class_folders


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


# --- Photo-like scenes ---------------------------------------------------------------------


def _textured_pool(count: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """Smooth random 32x32 images (structure a resize must keep), classes 0..9 in turn."""
    rng = np.random.default_rng(123)
    noise = rng.uniform(0, 255, (count, 32, 32, 3))
    smooth = ndimage.gaussian_filter(noise, (0, 1.5, 1.5, 0))
    low = smooth.min(axis=(1, 2, 3), keepdims=True)
    high = smooth.max(axis=(1, 2, 3), keepdims=True)
    images = np.rint(20 + (smooth - low) / (high - low) * 215).astype(np.uint8)
    return images, np.arange(count) % 10


def _pillow_resize(image: np.ndarray, side: int) -> np.ndarray:
    return np.asarray(Image.fromarray(image).resize((side, side), Image.LANCZOS), np.float64)


def _interior(box, margin: int) -> tuple[slice, slice]:
    return slice(box.y0 + margin, box.y1 - margin), slice(box.x0 + margin, box.x1 - margin)


def test_photo_like_scene_is_deterministic_by_seed():
    images, labels = _textured_pool()
    first = photo_like_scene(images, labels, seed=7)
    again = photo_like_scene(images, labels, seed=7)
    np.testing.assert_array_equal(first.image, again.image)
    assert (first.boxes, first.labels, first.sources) == (again.boxes, again.labels, again.sources)
    others = [photo_like_scene(images, labels, seed=s) for s in range(8)]
    assert len({s.image.tobytes() for s in others}) == 8
    a = photo_like_scene(images, labels, seed=(0, 1, 3))
    b = photo_like_scene(images, labels, seed=(0, 2, 3))
    assert a.image.shape != b.image.shape or not np.array_equal(a.image, b.image)


def test_photo_like_sizes_boxes_and_labels_stay_in_their_ranges():
    images, labels = _textured_pool()
    counts = set()
    for seed in range(40):
        scene = photo_like_scene(images, labels, seed=seed, canvas=(70, 110), object_size=(20, 40))
        height, width, channels = scene.image.shape
        assert 70 <= height <= 110 and 70 <= width <= 110 and channels == 3
        assert scene.image.dtype == np.uint8 and scene.background == "fractal"
        assert 1 <= len(scene.boxes) <= 3 and len(set(scene.labels)) == len(scene.labels)
        assert scene.labels == tuple(int(labels[i]) for i in scene.sources)
        counts.add(len(scene.boxes))
        for box in scene.boxes:
            assert 0 <= box.x0 and box.x1 <= width and 0 <= box.y0 and box.y1 <= height
            assert box.width == box.height and 20 <= box.width <= 40
        for i, a in enumerate(scene.boxes):
            for b in scene.boxes[i + 1 :]:
                assert (
                    a.x1 + PHOTO_GAP <= b.x0
                    or b.x1 + PHOTO_GAP <= a.x0
                    or a.y1 + PHOTO_GAP <= b.y0
                    or b.y1 + PHOTO_GAP <= a.y0
                )
    assert counts == {1, 2, 3}
    three = photo_like_scene(images, labels, seed=1, num_objects=3, canvas=(96, 96))
    assert len(three.boxes) == 3  # three sides of up to 64 shrink until they fit 96x96


def test_objects_are_the_resized_pool_images():
    images, labels = _textured_pool()
    for seed in range(6):
        clean = photo_like_scene(images, labels, seed=seed, noise=(0, 0), jpeg_quality=None)
        for box, index in zip(clean.boxes, clean.sources, strict=True):
            expected = _pillow_resize(images[index], box.width)
            inner = _interior(box, 6)  # the feather is at most 6 pixels wide
            np.testing.assert_array_equal(clean.image[inner], expected[6:-6, 6:-6])
        noisy = photo_like_scene(images, labels, seed=seed)  # noise std <= 10, JPEG >= 60
        for box, index in zip(noisy.boxes, noisy.sources, strict=True):
            got = noisy.image[_interior(box, 6)].astype(np.float64)
            rms = np.sqrt(
                np.mean((got - _pillow_resize(images[index], box.width)[6:-6, 6:-6]) ** 2)
            )
            wrong = (index + 1) % len(images)
            rms_wrong = np.sqrt(
                np.mean((got - _pillow_resize(images[wrong], box.width)[6:-6, 6:-6]) ** 2)
            )
            # Noise of std <= 10 and JPEG at quality >= 60 on this busy texture: rms up to ~17
            # over 40 seeds; another pool image is at least 30 away.
            assert rms < 18 and rms_wrong > rms + 10


def test_feathering_lies_inside_the_boxes_and_outside_is_the_background():
    labels = np.arange(10)
    white = np.full((10, 32, 32, 3), 255, np.uint8)
    black = np.zeros((10, 32, 32, 3), np.uint8)
    for seed in range(5):
        on_white = photo_like_scene(white, labels, seed=seed, noise=(0, 0), jpeg_quality=None)
        on_black = photo_like_scene(black, labels, seed=seed, noise=(0, 0), jpeg_quality=None)
        assert on_white.boxes == on_black.boxes
        # Same background under both; the difference is the objects' opacity times 255.
        alpha = (on_white.image.astype(float) - on_black.image.astype(float)) / 255
        inside = np.zeros(alpha.shape[:2], bool)
        for box in on_white.boxes:
            inside[box.y0 : box.y1, box.x0 : box.x1] = True
            a = alpha[box.y0 : box.y1, box.x0 : box.x1].mean(axis=2)
            assert np.allclose(a[6:-6, 6:-6], 1.0)  # opaque away from the rim
            rim = np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])
            assert (rim > 0).all() and (rim < 0.5).all()  # blended at the rim
            middle = a[box.height // 2, : box.width // 2]
            assert (np.diff(middle) >= -1 / 255).all()  # opacity rises towards the centre
        assert (alpha[~inside] == 0).all()


def test_sensor_noise_has_the_drawn_std():
    images, labels = _textured_pool()
    for sigma in (3.0, 8.0):
        clean = photo_like_scene(images, labels, seed=4, noise=(0, 0), jpeg_quality=None)
        noisy = photo_like_scene(images, labels, seed=4, noise=(sigma, sigma), jpeg_quality=None)
        diff = noisy.image.astype(float) - clean.image.astype(float)
        unclipped = (clean.image > 3 * sigma) & (clean.image < 255 - 3 * sigma)
        # Each image is rounded once: the difference adds about 1/6 to the variance.
        assert abs(diff[unclipped].std() - np.sqrt(sigma**2 + 1 / 6)) < 0.05 * sigma
        assert abs(diff[unclipped].mean()) < 0.1


def test_fractal_textures_are_varied_and_have_a_falling_spectrum():
    textures = [fractal_texture(96, 128, np.random.default_rng(s)) for s in range(10)]
    np.testing.assert_array_equal(textures[0], fractal_texture(96, 128, np.random.default_rng(0)))
    assert all(t.shape == (96, 128, 3) and t.dtype == np.uint8 for t in textures)
    assert len({t.tobytes() for t in textures}) == 10
    assert np.ptp([t.mean(axis=(0, 1)) for t in textures], axis=0).min() > 20  # varied colours
    for texture in textures:
        grey = texture.astype(float).mean(axis=2)
        power = np.abs(np.fft.fft2(grey - grey.mean())) ** 2
        f = np.hypot(*np.meshgrid(np.fft.fftfreq(96), np.fft.fftfreq(128), indexing="ij"))
        low = power[(f > 0) & (f < 0.05)].mean()
        high = power[f > 0.25].mean()
        assert low > 10 * high  # white noise would give about 1


def _overlaps(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def test_photo_crops_avoid_the_objects_and_are_resized_windows(photos_dir):
    regions = photo_regions(photos_dir)
    assert len(regions) == len(PHOTO_OBJECTS)
    photos = [np.asarray(Image.open(photos_dir / name).convert("RGB")) for name in PHOTO_OBJECTS]
    rng = np.random.default_rng(0)
    found = 0
    for _ in range(60):
        height, width = (int(v) for v in rng.integers(40, 193, 2))
        crop = photo_crop(regions, height, width, rng)
        if crop is None:
            continue
        found += 1
        pixels, index, window = crop
        assert pixels.shape == (height, width, 3)
        for _, box in PHOTO_OBJECTS[list(PHOTO_OBJECTS)[index]].values():
            grown = (box[0] - 8, box[1] - 8, box[2] + 8, box[3] + 8)
            assert not _overlaps(window[:4], grown)
        for box in regions[index][1]:
            assert not _overlaps(window[:4], box[:4])
        assert 0.4 - 0.02 <= height / window.height <= 1.0 + 0.02
        assert 0.4 - 0.02 <= width / window.width <= 1.0 + 0.02
        cut = photos[index][window.y0 : window.y1, window.x0 : window.x1]
        expected = np.asarray(Image.fromarray(cut).resize((width, height), Image.LANCZOS))
        np.testing.assert_array_equal(pixels, expected)
    assert found > 30
    assert photo_crop(regions, 1000, 1000, rng) is None  # larger than both photographs


def test_photo_backgrounds_about_half_and_fractal_fallback(photos_dir):
    images, labels = _textured_pool()
    regions = photo_regions(photos_dir)
    kinds = [photo_like_scene(images, labels, seed=s, photos=regions).background for s in range(60)]
    assert set(kinds) == {"photo", "fractal"} and 15 <= kinds.count("photo") <= 45
    covered = [(image, (Box(0, 0, image.shape[1], image.shape[0]),)) for image, _ in regions]
    kinds = {photo_like_scene(images, labels, seed=s, photos=covered).background for s in range(20)}
    assert kinds == {"fractal"}


def test_missing_photos_folder_means_fractal_only(tmp_path):
    assert photo_regions(tmp_path / "no-photos") == []
    data_dir = write_class_folders(tmp_path / "data", per_class=4)
    scenes = scene_set("validation", 6, data_dir=data_dir, photos_dir=tmp_path / "no-photos")
    assert len(scenes) == 6 and {s.background for s in scenes} == {"fractal"}


def test_photo_like_scene_of_one_class_holds_different_images_of_it():
    images, labels = _textured_pool()
    for seed in range(10):
        scene = photo_like_scene(images, labels, seed=seed, num_objects=2, same_class=True)
        assert len(set(scene.labels)) == 1 and len(set(scene.sources)) == 2


def test_photo_like_scene_rejects_impossible_requests():
    images, labels = _textured_pool()
    with pytest.raises(ValueError, match="3 classes"):
        photo_like_scene(images[:2], np.array([0, 0]), seed=0, num_objects=3)
    with pytest.raises(ValueError, match="3 objects of one class need 3 images"):
        photo_like_scene(images[:2], np.array([0, 0]), seed=0, num_objects=3, same_class=True)
    with pytest.raises(ValueError, match="fit"):
        photo_like_scene(images, labels, seed=0, canvas=(50, 60), object_size=(40, 64))
    with pytest.raises(ValueError, match="1 to 3"):
        photo_like_scene(images, labels, seed=0, num_objects=4)
    with pytest.raises(ValueError, match="unknown split"):
        scene_set("holdout", 1, data_dir=".")


def test_validation_pool_is_the_trainers_held_out_set(cifar_dir):
    recipe = json.loads((ROOT / "models" / "wrn-16-3.json").read_text())["recipe"]
    paths, labels = list_images(cifar_dir / "train")
    # The trainer's call train_val_split(x, y, val_size, seed), with row numbers for x.
    _, (expected, expected_labels) = train_val_split(
        np.arange(len(paths)), labels, recipe["val_size"], recipe["seed"]
    )
    images, pool_labels, indices = scene_pool("validation", cifar_dir)
    np.testing.assert_array_equal(indices, expected)
    np.testing.assert_array_equal(pool_labels, expected_labels)
    assert len(images) == 5000 and (np.bincount(pool_labels) == 500).all()
    for k in np.random.default_rng(0).choice(len(indices), 10, replace=False):
        decoded = np.asarray(Image.open(paths[indices[k]]).convert("RGB"))
        np.testing.assert_array_equal(images[k], decoded)
    test_images, test_labels = load_split(cifar_dir, "test")
    test_pool, test_pool_labels, _ = scene_pool("test", cifar_dir)
    np.testing.assert_array_equal(test_pool, test_images)
    np.testing.assert_array_equal(test_pool_labels, test_labels)
    assert not {im.tobytes() for im in images} & {im.tobytes() for im in test_images}
    # The pool position heads are fitted on: the rest of the training split, none of these.
    _, train_labels, train_indices = scene_pool("train", cifar_dir)
    assert len(train_indices) == len(paths) - 5000
    assert not set(train_indices.tolist()) & set(indices.tolist())
    np.testing.assert_array_equal(train_labels, labels[train_indices])
    validation = scene_set("validation", 4, data_dir=cifar_dir, photos_dir=None, seed=0)
    test = scene_set("test", 4, data_dir=cifar_dir, photos_dir=None, seed=0)
    for v, t in zip(validation, test, strict=True):
        assert v.image.shape != t.image.shape or not np.array_equal(v.image, t.image)
        assert v.labels == tuple(int(pool_labels[i]) for i in v.sources)
        assert t.labels == tuple(int(test_labels[i]) for i in t.sources)
