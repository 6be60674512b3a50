"""The localisation benchmark: specs, per-object measures and thresholds chosen on validation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sensitivity.imaging.discovery import Box
from sensitivity.metrics.localisation_benchmark import (
    FRACTIONS,
    MEASURES,
    MethodSpec,
    box_scores,
    format_summary,
    mean_and_error,
    measure,
    object_maps,
    object_rows,
    parse_spec,
    resize_maps,
    summarise,
)
from sensitivity.metrics.scenes import Scene
from tests.helpers import colour_model, two_squares

T = len(FRACTIONS)


def test_parse_spec_reads_options_as_the_registry_declares_them():
    assert parse_spec("gradcam") == MethodSpec("gradcam", {})
    assert parse_spec(" center ") == MethodSpec("center", {})
    spec = parse_spec("integrated_gradients:scales=0.75/1/1.5, steps=16,baseline=blurred,"
                      "blur_sigma=2,seed=none,sign=positive")
    assert spec.name == "integrated_gradients"
    assert spec.options == {"scales": (0.75, 1.0, 1.5), "steps": 16, "baseline": "blurred",
                            "blur_sigma": 2.0, "seed": None, "sign": "positive"}
    assert isinstance(spec.options["steps"], int)
    assert isinstance(spec.options["blur_sigma"], float)  # a float option, though written 2
    assert parse_spec("gradcam:plus_plus=true").options == {"plus_plus": True}
    assert parse_spec("smoothgrad:samples=999").options == {"samples": 128}  # clamped to range
    # The label sorts the options, so two spellings of one spec share a label.
    assert parse_spec("rise:masks=300,fill=blur").label == "rise:fill=blur,masks=300"
    assert parse_spec("rise:fill=blur,masks=300").label == "rise:fill=blur,masks=300"
    assert parse_spec("cam:scales=0.75/1/1.5").label == "cam:scales=0.75/1.0/1.5"
    assert parse_spec("gradcam").label == "gradcam"
    # A layer's value is text, "/" included (a nested layer's path).
    assert parse_spec("gradcam:target_layer=wrn/group2").options == {"target_layer": "wrn/group2"}
    # The target explained is text too, and part of the label.
    spec = parse_spec("layercam:layer=position_probabilities")
    assert spec.options == {"layer": "position_probabilities"}
    assert spec.label == "layercam:layer=position_probabilities"
    for bad, message in (("nope", "unknown method"), ("gradients:steps=3", "unknown method"),
                         ("gradcam:steps", "key=value"), ("gradcam:=3", "key=value"),
                         ("gradcam:steps=3", "no option 'steps'"),
                         ("smoothgrad:samples=many", "whole number"),
                         ("cam:sign=up", "sign must be"), ("edge:k=1", "takes no options"),
                         ("gradcam:progress=1", "no option 'progress'")):
        with pytest.raises(ValueError, match=message):
            parse_spec(bad)


def test_resize_maps_is_bilinear_on_pixel_centres():
    # Output column j's centre lies at input (j + 0.5) * 2 / 4 - 0.5 = -0.25, 0.25, 0.75, 1.25:
    # clamped at the borders, linear between: 0, 0.25, 0.75, 1.
    maps = np.array([[[0.0, 1.0], [0.0, 1.0]]], np.float32)
    resized = resize_maps(maps, 4, 4)
    assert resized.dtype == np.float32 and resized.shape == (1, 4, 4)
    np.testing.assert_allclose(resized, np.tile([0.0, 0.25, 0.75, 1.0], (1, 4, 1)), atol=1e-6)
    np.testing.assert_allclose(resize_maps(np.full((2, 3, 5), 7.0), 9, 4), np.full((2, 9, 4), 7.0),
                               atol=1e-5)
    same = np.arange(12, dtype=np.float32).reshape(1, 3, 4)
    np.testing.assert_array_equal(resize_maps(same, 3, 4), same)


def _scene() -> Scene:
    """A 20x30 canvas with object A (class 3, box x 2..8, y 3..9: 36 px) and object B (class 5,
    box x 18..26, y 10..16: 48 px)."""
    return Scene(np.zeros((20, 30, 3), np.uint8), (Box(2, 3, 8, 9), Box(18, 10, 26, 16)), (3, 5),
                 "fractal")


def _maps() -> np.ndarray:
    """Map of A: a peak of 4 at (y 5, x 5) in A and 1 on all of B (mass 4 of 52 in A, 48 in B).
    Map of B: exactly B's box (ones)."""
    maps = np.zeros((2, 20, 30), np.float32)
    maps[0, 5, 5] = 4.0
    maps[0, 10:16, 18:26] = 1.0
    maps[1, 10:16, 18:26] = 1.0
    return maps


def test_object_rows_measures_by_hand():
    row_a, row_b = object_rows("mine", 7, _scene(), _maps())
    assert {k: row_a[k] for k in ("method", "scene", "object", "label", "objects", "background",
                                  "canvas")} == {
        "method": "mine", "scene": 7, "object": 0, "label": 3, "objects": 2,
        "background": "fractal", "canvas": "20x30"}
    assert row_a["object_area_fraction"] == pytest.approx(36 / 600)
    assert row_b["object_area_fraction"] == pytest.approx(48 / 600)
    assert (row_b["object"], row_b["label"]) == (1, 5)
    # A's map peaks in A but holds more mass in B: pointing yes, discrimination no.
    assert row_a["pointing"] == 1.0 and row_a["mass"] == pytest.approx(4 / 52)
    assert row_a["discrimination"] == 0.0
    assert row_b["pointing"] == 1.0 and row_b["mass"] == pytest.approx(1.0)
    assert row_b["discrimination"] == 1.0
    # B's exact-box map: at threshold 0 every pixel is kept (the whole canvas, IoU 48 / 600),
    # above 0 exactly B's box (IoU 1); the same for the strongest and the largest box.
    expected_b = np.array([48 / 600] + [1.0] * (T - 1))
    np.testing.assert_allclose(row_b["largest_ious"], expected_b)
    np.testing.assert_allclose(row_b["strongest_ious"], expected_b)
    # A's map: normalised, the peak is 1 and B's block 0.25. Thresholds above 0 up to 0.25
    # keep both; the largest component is B's block (48 px, IoU 0 with A), the strongest too
    # (mass 48 against 4). Above 0.25 only the peak pixel is left: IoU 1 / 36.
    expected_a = np.array([36 / 600 if f == 0 else 0.0 if f <= 0.25 else 1 / 36
                           for f in FRACTIONS])
    np.testing.assert_allclose(row_a["largest_ious"], expected_a)
    np.testing.assert_allclose(row_a["strongest_ious"], expected_a)
    assert row_a["largest_ious"].shape == (T,) == row_a["strongest_ious"].shape


def test_object_rows_pointing_misses_and_one_object_scenes():
    scene = _scene()
    maps = _maps()[::-1].copy()  # each object gets the other's map
    row_a, row_b = object_rows("swapped", 0, scene, maps)
    # A gets B's exact-box map: its first maximum (raster order) is B's corner (y 10, x 18).
    assert row_a["pointing"] == 0.0 and row_a["mass"] == 0.0 and row_a["discrimination"] == 0.0
    assert row_b["pointing"] == 0.0 and row_b["mass"] == pytest.approx(48 / 52)
    assert row_b["discrimination"] == 1.0
    np.testing.assert_allclose(row_a["strongest_ious"][1:], 0.0)
    alone = Scene(scene.image, scene.boxes[:1], scene.labels[:1], "photo")
    (row,) = object_rows("mine", 0, alone, _maps()[:1])
    assert math.isnan(row["discrimination"]) and row["objects"] == 1
    assert row["pointing"] == 1.0 and row["mass"] == pytest.approx(4 / 52)


def test_object_maps_of_controls_and_of_a_model():
    image, red, blue = two_squares()
    center = object_maps(None, image, [0, 1, 2], MethodSpec("center"), side=100)
    assert center.shape == (3, 120, 200)
    np.testing.assert_array_equal(center[0], center[2])
    y, x = np.unravel_index(np.argmax(center[0]), center[0].shape)
    assert (y, x) in {(59, 99), (59, 100), (60, 99), (60, 100)}  # the centre, (119 / 2, 199 / 2)
    noise = object_maps(None, image, [0, 1], MethodSpec("random"), side=100, seed=3)
    assert noise.shape == (2, 120, 200) and not np.array_equal(noise[0], noise[1])
    np.testing.assert_array_equal(
        noise, object_maps(None, image, [0, 1], MethodSpec("random"), side=None, seed=3))
    assert not np.array_equal(
        noise[0], object_maps(None, image, [0], MethodSpec("random"), side=100, seed=4)[0])
    # Sobel edges: zero inside the flat grey, red and blue areas, positive on the squares' rims.
    edges = object_maps(None, image, [0], MethodSpec("edge"), side=None)[0]
    assert edges[5, 5] == 0.0 and edges[40, 50] == 0.0 and edges[40, 30] > 0
    # A model whose class 0 sees red and class 1 blue: each object's map is class-masked.
    model = colour_model(0.1)
    maps = object_maps(model, image, [0, 1], MethodSpec("cam"), side=100)
    assert maps.shape == (2, 120, 200) and maps.dtype == np.float32
    for saliency_map, (x0, y0, x1, y1) in zip(maps, (red, blue), strict=True):
        y, x = np.unravel_index(np.argmax(saliency_map), saliency_map.shape)
        assert x0 <= x < x1 and y0 <= y < y1
        inside = saliency_map[y0:y1, x0:x1].sum()
        assert inside / np.maximum(saliency_map, 0).sum() > 0.9


def test_measure_runs_every_spec_on_every_object():
    scenes = [_scene(), Scene(np.zeros((20, 30, 3), np.uint8), (Box(10, 5, 20, 15),), (1,), "x")]
    labels = []
    rows = measure(None, scenes, [MethodSpec("center"), parse_spec("random")], side=64,
                   progress=labels.append)
    assert labels == ["center", "random"]
    assert [(r["method"], r["scene"], r["object"]) for r in rows] == [
        ("center", 0, 0), ("center", 0, 1), ("center", 1, 0),
        ("random", 0, 0), ("random", 0, 1), ("random", 1, 0)]
    # The centre bump's maximum (row 9 or 10, column 14 or 15) is in neither box of scene 0
    # and in the box of scene 1.
    assert [r["pointing"] for r in rows[:3]] == [0.0, 0.0, 1.0]


def _ious(**values) -> np.ndarray:
    """A ``(T,)`` IoU array over :data:`FRACTIONS`, 0 except ``i<k>=value`` at the threshold
    ``k / 20`` (``i3``: 0.15)."""
    array = np.zeros(T)
    for key, value in values.items():
        array[FRACTIONS.index(int(key[1:]) / 20)] = value
    return array


def _row(method, largest, strongest, area=0.05, **measures) -> dict:
    return {"method": method, "largest_ious": largest, "strongest_ious": strongest,
            "object_area_fraction": area, "pointing": 1.0, "mass": 0.5,
            "discrimination": 1.0, **measures}


def _validation_and_test():
    """Validation rows choose threshold 3 (0.15) at every IoU level for MaxBoxAcc, 10 (0.50)
    for CorLoc; on the test rows themselves the best would be 3/7/7 and 2 (0.10)."""
    validation = [_row("m", _ious(i3=0.8, i7=0.4), _ious(i10=0.6)) for _ in range(2)]
    validation += [_row("other", _ious(i19=0.9), _ious(i19=0.9))]
    test = [
        _row("m", _ious(i3=0.35, i7=0.8), _ious(i10=0.9), area=0.02, discrimination=1.0),
        _row("m", _ious(i3=0.6), _ious(i2=0.9), area=0.05, discrimination=0.0),
        _row("m", _ious(i7=0.8), _ious(i2=0.9), area=0.1, discrimination=math.nan,
             pointing=0.0, mass=0.2),
        _row("other", _ious(i19=0.9), _ious(i19=0.9)),
    ]
    return validation, test


def test_box_scores_choose_thresholds_on_the_validation_rows():
    validation, test = _validation_and_test()
    m_validation = [r for r in validation if r["method"] == "m"]
    m_test = [r for r in test if r["method"] == "m"]
    scores = box_scores(m_validation, m_test)
    boxacc, corloc = scores["maxboxacc"], scores["corloc"]
    np.testing.assert_allclose(boxacc.fractions, [0.15, 0.15, 0.15])
    # At 0.15 the test IoUs are 0.35, 0.6, 0: levels 0.3 / 0.5 / 0.7 hit 2, 1, 0 of 3.
    np.testing.assert_allclose(boxacc.accuracies, [2 / 3, 1 / 3, 0.0])
    assert boxacc.mean == pytest.approx(1 / 3) and boxacc.count == 3
    # Each object's share of levels hit: 1/3, 2/3, 0 -> standard error std / sqrt(3).
    assert boxacc.mean_standard_error == pytest.approx(np.std([1 / 3, 2 / 3, 0]) / math.sqrt(3))
    np.testing.assert_allclose(corloc.fractions, [0.5])
    assert corloc.mean == pytest.approx(1 / 3)
    # Choosing on the test rows (the swap) gives other thresholds and higher scores.
    same = box_scores(m_test, m_test)
    np.testing.assert_allclose(same["maxboxacc"].fractions, [0.15, 0.35, 0.35])
    assert same["maxboxacc"].mean == pytest.approx(2 / 3)
    assert same["corloc"].mean == pytest.approx(2 / 3)
    np.testing.assert_allclose(same["corloc"].fractions, [0.1])
    # The first argument chooses, the second is scored: the test rows' thresholds 0.15, 0.35,
    # 0.35 on the validation rows (IoUs 0.8, 0.4, 0.4) hit only the level 0.3.
    swapped = box_scores(m_test, m_validation)["maxboxacc"]
    np.testing.assert_allclose(swapped.fractions, [0.15, 0.35, 0.35])
    np.testing.assert_allclose(swapped.accuracies, [1.0, 0.0, 0.0])


def test_summarise_per_method_with_validation_thresholds():
    validation, test = _validation_and_test()
    summary = summarise(test, validation)
    assert [e["method"] for e in summary] == ["m", "other"]
    m, other = summary
    assert m["thresholds_from"] == "validation"
    assert m["maxboxacc_thresholds"] == "0.15/0.15/0.15" and m["corloc_threshold"] == 0.5
    assert m["maxboxacc"] == pytest.approx(1 / 3) and m["maxboxacc_n"] == 3
    assert m["corloc"] == pytest.approx(1 / 3)
    assert m["corloc_se"] == pytest.approx(np.std([1, 0, 0]) / math.sqrt(3))
    # Pointing 1, 1, 0; discrimination 1, 0 and a NaN that is left out.
    assert m["pointing"] == pytest.approx(2 / 3) and m["pointing_n"] == 3
    assert m["pointing_se"] == pytest.approx(np.std([1, 1, 0], ddof=1) / math.sqrt(3))
    assert (m["discrimination"], m["discrimination_se"], m["discrimination_n"]) == (
        pytest.approx(0.5), pytest.approx(0.5), 2)
    assert m["mass"] == pytest.approx(1.2 / 3)
    # "other" chose its own thresholds (0.95) on its own validation row.
    assert other["maxboxacc_thresholds"] == "0.95/0.95/0.95" and other["maxboxacc"] == 1.0
    # Without validation rows the thresholds come from the test rows themselves.
    optimistic = summarise(test)[0]
    assert optimistic["thresholds_from"] == "same rows"
    assert optimistic["maxboxacc_thresholds"] == "0.15/0.35/0.35"
    assert optimistic["maxboxacc"] == pytest.approx(2 / 3)
    assert optimistic["corloc"] == pytest.approx(2 / 3)
    assert set(MEASURES) <= set(m)


def test_summarise_by_size_bins():
    validation, test = _validation_and_test()
    m_test = [r for r in test if r["method"] == "m"]
    summary = summarise(m_test, validation, bins=(0.0, 0.01, 0.04, 0.08, 1.0))
    # The bin 0.00-0.01 holds no object and is left out.
    assert [e["size"] for e in summary] == ["0.01-0.04", "0.04-0.08", "0.08-1.00"]
    # Objects with IoUs 0.35, 0.6, 0 at the validation threshold 0.15: levels hit 1, 2, 0.
    assert [e["maxboxacc"] for e in summary] == pytest.approx([1 / 3, 2 / 3, 0.0])
    assert [e["corloc"] for e in summary] == pytest.approx([1.0, 0.0, 0.0])
    assert all(e["maxboxacc_thresholds"] == "0.15/0.15/0.15" for e in summary)
    assert math.isnan(summary[2]["discrimination"]) and summary[2]["discrimination_n"] == 0


def test_format_summary_table():
    validation, test = _validation_and_test()
    lines = format_summary(summarise(test, validation)).splitlines()
    assert lines[0] == ("| method | " + " | ".join(MEASURES)
                        + " | n | thresholds (CorLoc; MaxBoxAcc) |")
    assert lines[2].startswith("| m | 0.667 (0.333) |")  # pointing, se = 0.577 / sqrt(3)
    # the thresholds chosen on the validation rows (see test_box_scores_choose_thresholds_...)
    assert lines[2].endswith(" | 3 | 0.50; 0.15/0.15/0.15 |") and lines[3].startswith("| other |")
    sized = format_summary(summarise(test, validation, bins=(0.0, 0.08, 1.0))).splitlines()
    assert sized[0].startswith("| method | object area | pointing |")
    assert sized[3].startswith("| m | 0.08-1.00 | 0.000 (0.000) |") and " - |" in sized[3]


def test_mean_and_error():
    mean, error, count = mean_and_error([1.0, 2.0, 3.0, math.nan])
    assert (mean, count) == (2.0, 3) and error == pytest.approx(1 / math.sqrt(3))
    assert mean_and_error([5.0]) == (5.0, 0.0, 1)
    for empty in ([], [math.nan, math.inf]):
        mean, error, count = mean_and_error(empty)
        assert math.isnan(mean) and math.isnan(error) and count == 0
