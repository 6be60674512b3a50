import base64
import io
import json

import numpy as np
from PIL import Image

from sensitivity import figures
from sensitivity.colormaps import apply_colormap, plotly_scale, scale_for_display
from sensitivity.export import heatmap_png, map_npy, mask_png, probabilities_csv
from sensitivity.report import completeness_note, probability_table, verdict


def test_heatmap_hover_has_value_and_rank():
    values = np.array([[0.1, 0.5], [0.9, 0.0]])
    figure = figures.saliency_heatmap(values)
    heat = figure.data[0]
    np.testing.assert_array_equal(heat.customdata, [[3, 2], [1, 4]])
    assert "rank" in heat.hovertemplate and heat.zmin == 0 and heat.zmax == 0.9
    assert figure.layout.yaxis.range == (1.5, -0.5)  # image rows grow downwards


def test_signed_maps_use_a_diverging_scale_centred_at_zero():
    figure = figures.saliency_heatmap(np.array([[-2.0, 1.0]]), signed=True)
    heat = figure.data[0]
    assert heat.zmid == 0 and (heat.zmin, heat.zmax) == (-2.0, 2.0)
    assert heat.colorscale[len(heat.colorscale) // 2][1] == "rgb(247,247,247)"


def test_shared_colour_range_and_overlay_opacity():
    maps = [np.ones((2, 2)), 3 * np.ones((2, 2))]
    assert figures.colour_range(maps, signed=False) == (0.0, 3.0)
    figure = figures.overlay(np.zeros((2, 2, 3)), maps[0], opacity=0.3, zrange=(0.0, 3.0))
    assert figure.data[0].type == "image" and figure.data[1].opacity == 0.3
    assert figure.data[1].zmax == 3.0


def test_mask_is_black_on_white_and_boxes_are_drawn():
    mask = np.array([[True, False], [False, False]])
    figure = figures.mask_figure(mask, boxes=[(0, 0, 1, 1, 0.9)])
    z = np.asarray(figure.data[0].z)
    assert z[0, 0].tolist() == [0, 0, 0] and z[1, 1].tolist() == [255, 255, 255]
    assert len(figure.layout.shapes) == 1


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
    rows = probabilities_csv(p).decode().splitlines()
    assert rows[0] == "class,index,probability" and rows[3].startswith("bird,2,0.1")
    assert len(rows) == 11


def test_probability_table_and_the_original_sentence():
    p = np.zeros(10)
    p[2], p[0] = 0.998, 0.002
    table = probability_table(p)
    assert table[0] == {"class": "bird", "probability (%)": 99.8}
    assert abs(sum(r["probability (%)"] for r in table) - 100) < 1e-9
    assert verdict(p) == ("There's about 99.8% chance that there is at least one bird "
                          "in the image")
    json.dumps(table)


def test_completeness_note_gives_the_relative_gap_or_says_it_means_little():
    note = completeness_note(score=7.0, baseline_score=2.0, total=4.9)
    assert "add up to 4.9" in note and "changes by 5" in note and "gap 2.0%" in note
    small = completeness_note(score=2.3, baseline_score=2.0, total=0.5)
    assert "%" not in small and "means little" in small and "gap 0.2" in small


def test_small_images_are_sent_pixel_for_pixel():
    image = np.arange(32 * 32 * 3, dtype=np.uint8).reshape(32, 32, 3)
    trace = figures.image_figure(image, size_px=260).data[0]
    np.testing.assert_array_equal(trace.z, image)
    assert trace.source is None


def test_photographs_are_sent_as_a_reduced_jpeg_on_their_own_pixel_axes():
    # 4x4 blocks of one colour each, colours changing smoothly (red along x, green along y):
    # the reduction by 4 keeps them, the JPEG nearly so
    rows, cols = np.mgrid[0:150, 0:200]
    blocks = np.stack([cols * 255 // 199, rows * 255 // 149, np.full_like(rows, 90)],
                      axis=-1).astype(np.uint8)
    photo = np.repeat(np.repeat(blocks, 4, axis=0), 4, axis=1)  # 600x800
    figure = figures.image_figure(photo, size_px=100)  # step: ceil(800 / 200) = 4
    trace = figure.data[0]
    assert trace.z is None and trace.source.startswith("data:image/jpeg;base64,")
    sent = np.asarray(Image.open(io.BytesIO(base64.b64decode(trace.source.split(",", 1)[1]))))
    assert sent.shape == (150, 200, 3)
    assert np.abs(sent.astype(int) - blocks).max() < 12
    # sent pixel i covers photo pixels 4i..4i+3: its centre is at 4i + 1.5
    assert (trace.x0, trace.dx, trace.y0, trace.dy) == (1.5, 4, 1.5, 4)
    assert figure.layout.xaxis.range == (-0.5, 799.5)
    assert figure.layout.yaxis.range == (599.5, -0.5)
    assert len(figure.to_json()) < photo.nbytes / 10
