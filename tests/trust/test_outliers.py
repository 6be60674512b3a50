"""The offline out-of-distribution pictures: kinds, determinism, splits, the scramble and the
person crops."""

from __future__ import annotations

import numpy as np
import pytest

from sensitivity.trust import outliers


def test_each_kind_is_drawn_from_its_seed_at_the_asked_size(photos_dir):
    pool = np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3)).astype(np.uint8)
    images, kinds = outliers.outlier_set("validation", 3, pool=pool, photos_dir=photos_dir,
                                         size=40)
    assert images.shape == (3 * len(outliers.KINDS), 40, 40, 3) and images.dtype == np.float32
    assert list(dict.fromkeys(kinds)) == list(outliers.KINDS)
    assert images.min() >= 0 and images.max() <= 255
    again, _ = outliers.outlier_set("validation", 3, pool=pool, photos_dir=photos_dir, size=40)
    np.testing.assert_array_equal(images, again)
    test, _ = outliers.outlier_set("test", 3, pool=pool, photos_dir=photos_dir, size=40)
    for kind in ("texture", "noise", "text", "person"):
        assert not np.array_equal(images[kinds == kind], test[kinds == kind]), kind


def test_kinds_without_their_source_are_left_out():
    _, kinds = outliers.outlier_set("test", 2)
    assert set(kinds) == set(outliers.KINDS) - {"person", "scrambled"}
    with pytest.raises(ValueError, match="unknown split"):
        outliers.outlier_set("train", 2)


def test_flat_and_gradient_pictures_are_what_they_say():
    flat = outliers.outlier_image("flat", 1)
    assert flat.reshape(-1, 3).std(axis=0).max() < 5  # one colour, faint noise
    ramp = outliers.outlier_image("gradient", 2).astype(np.float64)
    # A linear blend: every pixel lies on the segment between two colours (rank-1 spread).
    centred = ramp.reshape(-1, 3) - ramp.reshape(-1, 3).mean(axis=0)
    singular = np.linalg.svd(centred, compute_uv=False)
    assert singular[1] < 0.05 * singular[0]


def test_scramble_moves_whole_tiles_and_keeps_them():
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (32, 32, 3)).astype(np.float32)
    mixed = outliers.scramble(image, np.random.default_rng(4))

    def tiles(a):
        corners = [(y, x) for y in range(0, 32, 4) for x in range(0, 32, 4)]
        return sorted(a[y : y + 4, x : x + 4].tobytes() for y, x in corners)

    assert tiles(mixed) == tiles(image) and not np.array_equal(mixed, image)
    with pytest.raises(ValueError, match="multiples"):
        outliers.scramble(image[:30], rng)


def test_person_windows_stay_around_the_person_and_off_the_animals():
    rng = np.random.default_rng(5)
    rx0, ry0, rx1, ry1 = outliers.PERSON_REGION
    for _ in range(200):
        x0, y0, x1, y1 = outliers.person_window(rng)
        assert rx0 <= x0 < x1 <= rx1 and ry0 <= y0 < y1 <= ry1 and x1 - x0 == y1 - y0 >= 70
        for bx0, by0, bx1, by1 in outliers.PERSON_AVOID:
            assert x0 >= bx1 or x1 <= bx0 or y0 >= by1 or y1 <= by0
