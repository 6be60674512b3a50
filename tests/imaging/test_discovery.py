"""Object discovery on synthetic maps with known blobs, IoU, and boxes mapped onto photos."""

from __future__ import annotations

import numpy as np
import pytest

from sensitivity.imaging.discovery import (
    Box,
    boxes_to_image,
    boxes_to_map,
    component_boxes,
    discover_objects,
    iou,
    label_components,
)


def _two_blobs(second_value: float = 1.0) -> np.ndarray:
    values = np.zeros((32, 32), np.float32)
    values[3:9, 4:12] = 1.0  # 6 x 8 = 48 pixels
    values[20:28, 18:30] = second_value  # 8 x 12 = 96 pixels
    return values


def test_blobs_are_found_exactly_without_smoothing():
    values = _two_blobs(0.25)  # masses 48 and 24: fractions 2/3 and 1/3
    boxes = discover_objects(values, smooth_sigma=0, keep_fraction=144 / 1024)
    assert boxes == [
        Box(4, 3, 12, 9, pytest.approx(2 / 3)),
        Box(18, 20, 30, 28, pytest.approx(1 / 3)),
    ]
    assert boxes[0].width == 8 and boxes[0].height == 6 and boxes[0].area == 48


def test_equal_blobs_are_found_exactly_after_smoothing():
    # Gaussian smoothing keeps the blobs' own pixels on top when just their area is kept.
    boxes = discover_objects(_two_blobs(), smooth_sigma=1.0, keep_fraction=144 / 1024)
    assert [tuple(b[:4]) for b in boxes] == [(18, 20, 30, 28), (4, 3, 12, 9)]
    assert boxes[0].score == pytest.approx(96 / 144)
    assert boxes[1].score == pytest.approx(48 / 144)


def test_sorted_by_mass_truncated_and_small_specks_dropped():
    values = _two_blobs()
    values[0, 31] = 120.0  # one very strong pixel: most of the mass, but a 1-pixel component
    boxes = discover_objects(values, smooth_sigma=0, keep_fraction=145 / 1024, min_area=2)
    assert [tuple(b[:4]) for b in boxes] == [(18, 20, 30, 28), (4, 3, 12, 9)]
    assert boxes[0].score == pytest.approx(96 / 264)
    kept = discover_objects(values, smooth_sigma=0, keep_fraction=145 / 1024, min_area=1)
    assert tuple(kept[0][:4]) == (31, 0, 32, 1) and kept[0].score == pytest.approx(120 / 264)
    one = discover_objects(values, smooth_sigma=0, keep_fraction=145 / 1024, max_objects=1)
    assert len(one) == 1 and tuple(one[0][:4]) == (18, 20, 30, 28)


def test_negative_values_are_ignored_and_empty_maps_give_no_boxes():
    values = _two_blobs()
    values[10:16, 10:16] = -5.0
    boxes = discover_objects(values, smooth_sigma=0, keep_fraction=144 / 1024)
    assert [tuple(b[:4]) for b in boxes] == [(18, 20, 30, 28), (4, 3, 12, 9)]
    assert discover_objects(np.zeros((8, 8))) == []
    assert discover_objects(-np.ones((8, 8))) == []


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="NaN"):
        discover_objects(np.full((4, 4), np.nan))
    with pytest.raises(ValueError, match="shape"):
        discover_objects(np.ones((4, 4, 3)))
    with pytest.raises(ValueError, match="keep_fraction"):
        discover_objects(np.ones((4, 4)), keep_fraction=0)
    with pytest.raises(ValueError, match="max_objects"):
        discover_objects(np.ones((4, 4)), max_objects=0)


def test_eight_connected_labelling():
    mask = np.array(
        [
            [1, 0, 0, 0, 1],
            [0, 1, 0, 0, 1],
            [0, 0, 0, 0, 0],
            [1, 1, 0, 1, 0],
            [0, 0, 1, 0, 0],
        ],
        dtype=bool,
    )
    labels, count = label_components(mask)
    # Diagonal neighbours join; numbering follows each component's first pixel in raster order.
    expected = np.array(
        [
            [1, 0, 0, 0, 2],
            [0, 1, 0, 0, 2],
            [0, 0, 0, 0, 0],
            [3, 3, 0, 3, 0],
            [0, 0, 3, 0, 0],
        ]
    )
    assert count == 3
    np.testing.assert_array_equal(labels, expected)
    assert component_boxes(labels, count) == [Box(0, 0, 2, 2), Box(4, 0, 5, 2), Box(0, 3, 4, 5)]
    assert label_components(np.zeros((3, 3), bool))[1] == 0
    assert label_components(np.ones((3, 3), bool))[1] == 1


def test_labelling_a_serpentine_is_one_component():
    # Rows 0, 2, 4, ... joined alternately at the right and the left end: one long path whose
    # order differs from raster order, so labels must propagate through many merges.
    mask = np.zeros((21, 21), bool)
    mask[::2] = True
    for row in range(1, 21, 2):
        mask[row, 20 if row % 4 == 1 else 0] = True
    labels, count = label_components(mask)
    assert count == 1 and (labels[mask] == 1).all() and (labels[~mask] == 0).all()
    mask[1, 20] = False  # cut the path after the first row: two components
    assert label_components(mask)[1] == 2


def test_iou_by_hand():
    assert iou((0, 0, 2, 2), (0, 0, 2, 2)) == 1.0
    assert iou((0, 0, 2, 2), (2, 0, 4, 2)) == 0.0  # touching edges share no pixel
    assert iou((0, 0, 2, 2), (1, 0, 3, 2)) == pytest.approx(2 / 6)
    assert iou(Box(0, 0, 4, 4, 0.3), (1, 1, 3, 3)) == pytest.approx(4 / 16)
    assert iou((0, 0, 0, 5), (0, 0, 0, 5)) == 0.0


def test_boxes_map_back_to_the_photo():
    # dog.jpg is 768 x 576: its centred square is x 96..672, every map pixel of a 32x32
    # input covers 18 x 18 photo pixels.
    shape = (576, 768, 3)
    assert boxes_to_image([Box(0, 0, 32, 32, 0.5)], (32, 32), shape) == [Box(96, 0, 672, 576, 0.5)]
    assert boxes_to_image([(2, 3, 5, 7)], (32, 32), shape) == [Box(132, 54, 186, 126, 1.0)]
    # person.jpg is 640 x 424 (portrait crop of a landscape photo: square x 108..532).
    (box,) = boxes_to_image([(1, 2, 3, 4)], (32, 32), (424, 640))
    assert box == Box(108 + 13, 26, 108 + 40, 53, 1.0)  # 13.25 -> 13, 26.5 -> 26, 39.75 -> 40


def test_photo_boxes_map_into_the_analysed_square():
    # A 576 x 768 photo: centred square x 96..672, y 0..576; a 32x32 map pixel is 18 x 18.
    shape = (576, 768, 3)
    # By hand: x (132 - 96) / 18 = 2, (186 - 96) / 18 = 5; y 54 / 18 = 3, 126 / 18 = 7.
    assert boxes_to_map([Box(132, 54, 186, 126, 0.4)], shape, (32, 32)) == [
        Box(2, 3, 5, 7, 0.4)]
    # Rounded outwards: x 100 -> 4 / 18 = 0.22 -> 0, 200 -> 104 / 18 = 5.8 -> 6;
    # y 10 / 18 -> 0, 37 / 18 = 2.06 -> 3.
    assert boxes_to_map([(100, 10, 200, 37)], shape, (32, 32)) == [Box(0, 0, 6, 3, 1.0)]
    # Clipped to the square: x 0..150 keeps 96..150 -> 0..3; 650..768 keeps 650..672 ->
    # 554 / 18 = 30.8 -> 30 .. 32. A box left of the square is dropped, order is kept.
    assert boxes_to_map([(0, 0, 150, 576, 0.9), (0, 0, 90, 50, 0.8), (650, 560, 768, 576, 0.1)],
                        shape, (32, 32)) == [Box(0, 0, 3, 32, 0.9), Box(30, 31, 32, 32, 0.1)]
    # Portrait photo 640 x 424 (H x W): square y 108..532; onto a 64 x 64 input, 6.625 px each.
    (box,) = boxes_to_map([(0, 100, 424, 120)], (640, 424), (64, 64))
    assert box == Box(0, 0, 64, 2, 1.0)  # y 120 - 108 = 12 -> 1.81 -> 2


def test_map_boxes_survive_the_round_trip_through_the_photo():
    rng = np.random.default_rng(0)
    for shape, side in [((576, 768), 32), ((424, 640), 96), ((640, 424), 64), ((50, 50), 128)]:
        # Rounding outwards both ways can only grow a box: by under one photo pixel (in map
        # pixels, side / square) and one map pixel per edge; not at all when every map pixel
        # is a whole number of photo pixels.
        square = min(shape)
        slack = 0 if square % side == 0 else 1 + side / square
        for _ in range(20):
            x0, y0 = rng.integers(0, side - 1, 2)
            x1, y1 = rng.integers(x0 + 1, side + 1), rng.integers(y0 + 1, side + 1)
            box = Box(int(x0), int(y0), int(x1), int(y1), 0.5)
            (back,) = boxes_to_map(boxes_to_image([box], (side, side), shape), shape,
                                   (side, side))
            assert back.score == 0.5
            assert 0 <= box.x0 - back.x0 <= slack and 0 <= back.x1 - box.x1 <= slack
            assert 0 <= box.y0 - back.y0 <= slack and 0 <= back.y1 - box.y1 <= slack
