import base64
import io

import numpy as np
from PIL import Image

from sensitivity.render import pictures
from sensitivity.render.colormaps import apply_colormap

ORANGE = list(pictures.BOX_COLOUR)


def test_small_arrays_are_enlarged_by_a_whole_factor_each_pixel_a_square():
    rgb = np.arange(4 * 3 * 3, dtype=np.uint8).reshape(4, 3, 3)
    picture = pictures.enlarged(rgb, side=10)  # factor ceil(10 / 4) = 3
    assert picture.shape == (12, 9, 3) and picture.dtype == np.uint8
    np.testing.assert_array_equal(picture[::3, ::3], rgb)
    np.testing.assert_array_equal(picture[2::3, 2::3], rgb)
    assert pictures.enlarged(np.zeros((32, 32, 3))).shape == (384, 384, 3)  # 12x


def test_mask_is_black_on_white_with_exactly_its_pixels():
    top_k = np.zeros((32, 32), bool)
    top_k[3, 5] = top_k[20, 1] = True
    picture = pictures.mask(top_k)  # 12x
    assert set(np.unique(picture)) == {0, 255}
    black = (picture == 0).all(axis=2)
    assert black.sum() == 2 * 12 * 12
    assert black[3 * 12 : 4 * 12, 5 * 12 : 6 * 12].all() and black[20 * 12, 12]


def test_boxes_are_outlined_in_orange_on_the_enlarged_pixels():
    picture = pictures.mask(np.zeros((32, 32), bool), boxes=[(2, 4, 10, 8, 0.9)])
    orange = (picture == ORANGE).all(axis=2)
    rows, cols = np.nonzero(orange)
    # box pixels 2..9 (x) and 4..7 (y) become 24..119 and 48..95 at 12x
    assert (cols.min(), cols.max(), rows.min(), rows.max()) == (24, 119, 48, 95)
    assert not orange[60, 60]  # outline only


def test_overlay_blends_the_heatmap_colours_over_the_image_with_the_opacity():
    image = np.full((2, 2, 3), 200.0)
    saliency_map = np.array([[0.0, 1.0], [2.0, 4.0]])
    colours = apply_colormap(saliency_map / 4.0).astype(float)
    for opacity in (0.0, 0.3, 1.0):
        picture = pictures.overlay(image, saliency_map, opacity=opacity, side=2)
        expected = np.rint((1 - opacity) * image + opacity * colours)
        np.testing.assert_array_equal(picture, expected)
    # a shared range: the same value gets the same colour whatever the map's own maximum
    shared = pictures.overlay(image, saliency_map, opacity=1.0, vmax=8.0, side=2)
    np.testing.assert_array_equal(shared[1, 1], apply_colormap(np.array([[0.5]]))[0, 0])


def test_signed_overlay_is_centred_at_zero_on_the_diverging_scale():
    saliency_map = np.array([[-2.0, 0.0], [1.0, 2.0]])
    picture = pictures.overlay(np.zeros((2, 2, 3)), saliency_map, opacity=1.0, signed=True,
                               side=2)
    assert picture[0, 1].tolist() == [247, 247, 247]  # zero: the scale's white middle
    assert picture[0, 0].tolist() == [33, 102, 172] and picture[1, 1].tolist() == [178, 24, 43]


def test_photographs_are_box_reduced_by_a_whole_factor_with_their_boxes():
    rows, cols = np.mgrid[0:150, 0:200]
    blocks = np.stack([cols * 255 // 199, rows * 255 // 149, np.full_like(rows, 90)],
                      axis=-1).astype(np.uint8)
    photo = np.repeat(np.repeat(blocks, 4, axis=0), 4, axis=1)  # 600x800, 4x4 blocks
    picture = pictures.photo(photo, max_side=200)  # step ceil(800 / 200) = 4
    np.testing.assert_array_equal(picture, blocks)
    outlined = pictures.photo(photo, boxes=[(100, 0, 700, 600)], max_side=200)
    orange = (outlined == ORANGE).all(axis=2)
    _, cols = np.nonzero(orange)
    assert (cols.min(), cols.max()) == (25, 174)  # photo x 100..699 -> reduced 25..174
    small = np.zeros((20, 30, 3), np.uint8)
    assert pictures.photo(small).shape == (20, 30, 3)  # never enlarged


def test_data_url_decodes_back_to_the_picture():
    rng = np.random.default_rng(0)
    picture = rng.integers(0, 256, (12, 20, 3), dtype=np.uint8)
    url = pictures.data_url(picture)
    assert url.startswith("data:image/png;base64,")
    decoded = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    np.testing.assert_array_equal(np.asarray(decoded), picture)  # PNG: lossless

    smooth = np.repeat(np.linspace(0, 255, 64, dtype=np.uint8)[None, :, None], 48, 0)
    smooth = np.repeat(smooth, 3, axis=2)
    jpeg = pictures.data_url(smooth, "JPEG")
    assert jpeg.startswith("data:image/jpeg;base64,")
    decoded = np.asarray(Image.open(io.BytesIO(base64.b64decode(jpeg.split(",", 1)[1]))))
    assert decoded.shape == smooth.shape
    assert np.abs(decoded.astype(int) - smooth).mean() < 3


def test_reliability_diagram_draws_each_bins_accuracy_as_a_bar():
    from sensitivity.render.pictures import reliability_diagram
    from sensitivity.trust.calibration import reliability

    # Two bins used: (0.5, 0.6] with accuracy 0 and (0.9, 1.0] with accuracy 1.
    p = np.array([[0.55, 0.45], [0.55, 0.45], [0.95, 0.05]])
    table = reliability(p, np.array([1, 1, 0]), bins=10)
    side = 200
    picture = reliability_diagram([("t", table)], side=side)
    x0, top = 44, 28  # the panel's left edge and top, as drawn

    def colour(u, v):  # the pixel at confidence u, accuracy v
        return tuple(picture[int(top + (1 - v) * side), int(x0 + u * side)])

    blue = (86, 180, 233)
    assert colour(0.95, 0.5) == blue and colour(0.95, 0.05) == blue  # a full bar
    assert colour(0.55, 0.5) == (255, 255, 255)  # accuracy 0: no bar
    assert colour(0.75, 0.3) == (255, 255, 255)  # an empty bin
