import io

import numpy as np
import pytest
from PIL import Image

from sensitivity.model.labels import CLASS_NAMES
from sensitivity.render import figures
from sensitivity.render.colormaps import apply_colormap, plotly_scale, scale_for_display
from sensitivity.render.export import heatmap_png, map_npy, mask_png, probabilities_csv
from sensitivity.render.report import (
    OTHER_BAR,
    PREDICTED_BAR,
    completeness_note,
    out_of_distribution_note,
    out_of_distribution_notice,
    probability_bars_html,
    verdict,
)
from tests.helpers import probability_bars_rows


def test_heatmap_hover_has_value_and_rank():
    values = np.array([[0.1, 0.5], [0.9, 0.0]])
    figure = figures.saliency_heatmap(values)
    heat = figure.data[0]
    np.testing.assert_array_equal(heat.customdata, [[3, 2], [1, 4]])
    assert "rank" in heat.hovertemplate and heat.zmin == 0 and heat.zmax == 0.9
    assert figure.layout.yaxis.range == (1.5, -0.5)  # image rows grow downwards


def test_heatmap_boxes_outline_pixel_edges_and_the_axes_keep_pixels_square():
    figure = figures.saliency_heatmap(np.zeros((4, 6)), boxes=[(1, 2, 3, 4, 0.9)], title="t")
    (shape,) = figure.layout.shapes
    assert (shape.x0, shape.y0, shape.x1, shape.y1) == (0.5, 1.5, 2.5, 3.5)
    assert figure.layout.xaxis.range == (-0.5, 5.5) and figure.layout.yaxis.scaleanchor == "x"
    assert figure.layout.title.text == "t" and figure.data[0].zmid is None
    assert not figures.saliency_heatmap(np.zeros((2, 2))).layout.shapes


def test_signed_maps_use_a_diverging_scale_centred_at_zero():
    figure = figures.saliency_heatmap(np.array([[-2.0, 1.0]]), signed=True)
    heat = figure.data[0]
    assert heat.zmid == 0 and (heat.zmin, heat.zmax) == (-2.0, 2.0)
    assert heat.colorscale[len(heat.colorscale) // 2][1] == "rgb(247,247,247)"


def test_shared_colour_range():
    maps = [np.ones((2, 2)), 3 * np.ones((2, 2))]
    assert figures.colour_range(maps, signed=False) == (0.0, 3.0)
    assert figures.colour_range(maps, signed=True) == (-3.0, 3.0)


def test_colormaps():
    rgb = apply_colormap(np.array([[0.0, 1.0, np.nan]]))
    assert rgb[0, 0].tolist() == [68, 1, 84] and rgb[0, 1].tolist() == [253, 231, 37]
    assert rgb[0, 2].tolist() == [68, 1, 84]
    np.testing.assert_allclose(scale_for_display(np.array([-1.0, 0.0, 2.0]), True), [0.25, 0.5, 1])
    assert plotly_scale("greys")[0] == [0.0, "rgb(255,255,255)"]


def test_exports_round_trip():
    m = np.random.default_rng(0).random((4, 5)).astype(np.float32)
    np.testing.assert_array_equal(np.load(io.BytesIO(map_npy(m)), allow_pickle=False), m)
    png = Image.open(io.BytesIO(heatmap_png(m, scale=3)))
    assert png.size == (15, 12) and png.mode == "RGB"
    mask = Image.open(io.BytesIO(mask_png(m > 0.5, scale=1)))
    assert np.array_equal(np.asarray(mask) == 0, m > 0.5)
    p = np.full(10, 0.1)
    rows = probabilities_csv(p, CLASS_NAMES).decode().splitlines()
    assert rows[0] == "class,index,probability" and rows[3].startswith("bird,2,0.1")
    assert len(rows) == 11
    three = probabilities_csv(np.array([0.25, 0.5, 0.25]), ["a,b", "c", "d"]).decode()
    assert three.splitlines()[1:] == ['"a,b",0,0.250000', "c,1,0.500000", "d,2,0.250000"]
    with pytest.raises(ValueError):
        probabilities_csv(p, ["only", "three", "names"])


def test_the_original_sentence():
    p = np.zeros(10)
    p[2], p[0] = 0.998, 0.002
    assert verdict(p, CLASS_NAMES) == ("There's about 99.8% chance that there is at least one bird "
                          "in the image")


def test_a_flagged_picture_gets_a_conditional_sentence_the_notice_and_its_score():
    p = np.full(10, 0.02)
    p[1] = 0.82
    assert verdict(p, CLASS_NAMES, out_of_distribution=True) == (
        "If this picture shows any of the ten classes, the model leans towards automobile "
        "(82.0%)")
    assert verdict(p, CLASS_NAMES, out_of_distribution=False).startswith(
        "There's about 82.0% chance")
    assert out_of_distribution_notice(10) == (
        "This picture may show none of the ten classes the model knows; its probabilities and "
        "maps say little here")
    assert "none of the 100 classes" in out_of_distribution_notice(100)
    assert out_of_distribution_note(3.14159, -0.5) == (
        "Out-of-distribution score 3.14 (threshold -0.50; higher = less like the training "
        "images)")


def test_probability_bars_are_a_sorted_table_of_all_ten_classes():
    p = np.array([0.02, 0.01, 0.6, 0.2, 0.05, 0.04, 0.03, 0.02, 0.02, 0.01])
    html = probability_bars_html(p, CLASS_NAMES)
    rows = probability_bars_rows(html)
    assert [r["class"] for r in rows] == [CLASS_NAMES[i] for i in np.argsort(-p, kind="stable")]
    assert [r["percent"] for r in rows] == [round(100 * v, 1) for v in np.sort(p)[::-1]]
    # each bar is as long as its probability, on a 0..100% scale
    assert [r["bar"] for r in rows] == pytest.approx(list(100 * np.sort(p)[::-1]), abs=0.01)
    assert sum(r["percent"] for r in rows) == pytest.approx(100, abs=0.5)
    # the predicted class stands out: bold row, darker bar; the others alike
    assert rows[0]["bold"] and rows[0]["colour"] == PREDICTED_BAR
    assert not any(r["bold"] for r in rows[1:])
    assert {r["colour"] for r in rows[1:]} == {OTHER_BAR}
    assert "<script" not in html and "javascript:" not in html


def test_many_classes_show_the_top_ten_and_one_row_for_all_others():
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(1000))
    names = [f"c{i}" for i in range(1000)]
    rows = probability_bars_rows(probability_bars_html(p, names))
    top = np.argsort(-p)[:10]
    assert [r["class"] for r in rows] == [names[i] for i in top] + ["all 990 others"]
    assert rows[-1]["percent"] == round(100 * (1 - p[top].sum()), 1)
    assert sum(r["percent"] for r in rows) == pytest.approx(100, abs=0.6)
    ten = probability_bars_rows(probability_bars_html(p[:10] / p[:10].sum(), names[:10]))
    assert len(ten) == 10 and not any("others" in r["class"] for r in ten)


def test_probability_bars_keep_tiny_and_certain_probabilities_in_range():
    p = np.zeros(10)
    p[9] = 1.0
    rows = probability_bars_rows(probability_bars_html(p, CLASS_NAMES))
    assert rows[0]["class"] == "truck" and rows[0]["bar"] == 100 and rows[0]["percent"] == 100
    assert all(r["bar"] == 0 and r["percent"] == 0 for r in rows[1:])


def test_the_sentence_and_bars_name_the_models_own_classes():
    names = ["tabby <cat>", "tiger", "lynx"]
    p = np.array([0.1, 0.7, 0.2])
    assert verdict(p, names) == "There's about 70.0% chance that there is at least one tiger " \
                                "in the image"
    assert "any of the three classes" in verdict(p, names, out_of_distribution=True)
    html = probability_bars_html(p, names)
    assert [r["class"] for r in probability_bars_rows(html)] == ["tiger", "lynx", "tabby <cat>"]
    assert "<cat>" not in html
    with pytest.raises(ValueError, match="3 probabilities but 2 class names"):
        verdict(p, names[:2])


def test_completeness_note_gives_the_relative_gap_or_says_it_means_little():
    note = completeness_note(score=7.0, baseline_score=2.0, total=4.9)
    assert "add up to 4.9" in note and "changes by 5" in note and "gap 2.0%" in note
    small = completeness_note(score=2.3, baseline_score=2.0, total=0.5)
    assert "%" not in small and "means little" in small and "gap 0.2" in small
