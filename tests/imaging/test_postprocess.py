"""Tests of the saliency-map masks and normalisation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from sensitivity.imaging.postprocess import normalize_map, percentile_mask, top_k_mask

small_maps = arrays(
    np.float64,
    st.tuples(st.integers(1, 6), st.integers(1, 6)),
    elements=st.sampled_from([-1.0, 0.0, 0.5, 2.0, 3.0]),  # few values: many ties
)


@settings(max_examples=200, deadline=None)
@given(small_maps, st.integers(-3, 40))
def test_top_k_has_exactly_k_of_the_largest_pixels(saliency_map, k):
    mask = top_k_mask(saliency_map, k)
    expected = min(max(k, 0), saliency_map.size)
    assert mask.shape == saliency_map.shape and mask.dtype == bool
    assert mask.sum() == expected
    if 0 < expected < saliency_map.size:
        assert saliency_map[mask].min() >= saliency_map[~mask].max()
    np.testing.assert_array_equal(top_k_mask(saliency_map, k), mask)  # deterministic


def test_top_k_breaks_ties_by_row_major_index():
    saliency_map = np.array([[1.0, 5.0, 1.0], [5.0, 1.0, 5.0]])
    np.testing.assert_array_equal(
        top_k_mask(saliency_map, 2), [[False, True, False], [True, False, False]]
    )
    np.testing.assert_array_equal(
        top_k_mask(saliency_map, 4), [[True, True, False], [True, False, True]]
    )
    assert top_k_mask(np.zeros((3, 3)), 4).reshape(-1).tolist() == [True] * 4 + [False] * 5


def test_percentile_mask():
    saliency_map = np.arange(100, dtype=float).reshape(10, 10)
    mask = percentile_mask(saliency_map, 90)
    assert mask.sum() == 10 and mask[9].all()
    assert percentile_mask(saliency_map, 0).all()
    with pytest.raises(ValueError, match="percentile"):
        percentile_mask(saliency_map, 101)


def test_normalize_map_is_robust():
    saliency_map = np.arange(400, dtype=float).reshape(20, 20)
    saliency_map[0, 0] = 1e6  # an outlier does not squash the rest
    normal = normalize_map(saliency_map)
    assert normal.dtype == np.float32 and normal.min() >= 0 and normal.max() == 1.0
    assert 0.49 < normal[10, 0] < 0.52  # 200 / (99th percentile, about 396)
    np.testing.assert_array_equal(normalize_map(np.full((4, 4), 3.0)), np.ones((4, 4)))
    np.testing.assert_array_equal(normalize_map(np.zeros((4, 4))), np.zeros((4, 4)))
    sparse = np.zeros((10, 10))
    sparse[2, 3] = -4.0  # percentile 0, but not all zero: scaled by the maximum magnitude
    assert normalize_map(sparse)[2, 3] == 1.0
    assert normalize_map(np.ones((4, 4, 3))).shape == (4, 4, 3)


@pytest.mark.parametrize("function", [top_k_mask, percentile_mask, normalize_map])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_maps_are_rejected(function, bad):
    saliency_map = np.ones((4, 4))
    saliency_map[1, 2] = bad
    with pytest.raises(ValueError, match="NaN or infinite"):
        function(saliency_map, 50)


def test_masks_need_a_two_dimensional_map():
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        top_k_mask(np.ones((2, 2, 3)), 1)


def test_strongest_pixels_take_magnitudes_of_signed_maps_only():
    from sensitivity.imaging.postprocess import strongest_pixels

    values = np.array([[5.0, -9.0], [1.0, 0.0]])
    # Signed: -9 is the strongest evidence (against the class), then 5.
    np.testing.assert_array_equal(strongest_pixels(values, 2, "signed"),
                                  [[True, True], [False, False]])
    # Any other sign mode ranks the values themselves: 5 and 1.
    for sign in ("abs", "positive", "negative"):
        np.testing.assert_array_equal(strongest_pixels(values, 2, sign),
                                      [[True, False], [True, False]])


def test_a_map_is_flat_only_when_every_value_is_the_same():
    from sensitivity.imaging.postprocess import is_flat
    from sensitivity.render.report import flat_map_note

    assert is_flat(np.zeros((4, 5))) and is_flat(np.full((3, 3), -2.5))
    one_off = np.zeros((4, 5))
    one_off[3, 4] = 1e-9
    assert not is_flat(one_off)
    assert flat_map_note(one_off) == ""
    assert flat_map_note(np.zeros((4, 5))).startswith("The map is 0 everywhere")
    assert "144 px" not in flat_map_note(np.zeros((4, 5)))
    # The side the model's boxes were chosen at is named when the map is of another size.
    assert "boxes at 144 px" in flat_map_note(np.zeros((32, 32)), rule_side=144)
    assert flat_map_note(np.zeros((144, 144)), rule_side=144) == flat_map_note(np.zeros((4, 5)))
    assert flat_map_note(one_off, rule_side=144) == ""
    with pytest.raises(ValueError, match="NaN or infinite"):
        is_flat(np.full((2, 2), np.nan))
