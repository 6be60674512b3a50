import io

import numpy as np
import pytest
from PIL import Image

from sensitivity import ImageError, load_image, preprocess
from sensitivity.imaging.images import center_square


def encode(image: Image.Image, fmt: str = "PNG", **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def test_sources_path_bytes_and_file_like(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    data = encode(Image.fromarray(pixels))
    path = tmp_path / "x.png"
    path.write_bytes(data)
    for source in (path, str(path), data, bytearray(data), io.BytesIO(data)):
        out = load_image(source)
        assert out.dtype == np.uint8 and out.shape == (20, 30, 3)
        np.testing.assert_array_equal(out, pixels)


def test_exif_orientation_is_applied():
    pixels = np.zeros((10, 20, 3), np.uint8)
    pixels[:, :5] = 255  # white stripe on the left of a landscape image
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    data = encode(Image.fromarray(pixels), "JPEG", exif=exif.tobytes(), quality=95)
    out = load_image(data)
    assert out.shape == (20, 10, 3)
    assert out[:5].mean() > 200 and out[-5:].mean() < 50  # the stripe is now on top


def test_alpha_is_composited_on_white_not_dropped():
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 200  # red channel under fully transparent alpha
    out = load_image(encode(Image.fromarray(rgba, "RGBA")))
    np.testing.assert_array_equal(out, np.full((4, 4, 3), 255, np.uint8))
    rgba[..., 3] = 255
    np.testing.assert_array_equal(load_image(encode(Image.fromarray(rgba, "RGBA")))[0, 0],
                                  [200, 0, 0])


def test_sixteen_bit_is_scaled_not_clipped():
    values = np.array([[0, 32768, 65535]], dtype=np.uint16)
    out = load_image(encode(Image.fromarray(values)))  # mode I;16
    np.testing.assert_array_equal(out[0, :, 0], [0, 128, 255])


def test_grayscale_palette_cmyk_and_animation():
    gray = Image.fromarray(np.full((5, 6), 77, np.uint8), "L")
    assert load_image(encode(gray)).shape == (5, 6, 3)
    assert load_image(encode(gray.convert("P"))).shape == (5, 6, 3)
    cmyk = Image.new("CMYK", (7, 3), (0, 255, 255, 0))
    out = load_image(encode(cmyk, "JPEG"))
    assert out.shape == (3, 7, 3) and out[..., 0].mean() > 200 and out[..., 1].mean() < 60
    frames = [Image.new("RGB", (8, 8), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    gif = io.BytesIO()
    frames[0].save(gif, "GIF", save_all=True, append_images=frames[1:])
    first = load_image(gif.getvalue())
    assert first.shape == (8, 8, 3) and first[..., 0].mean() > 200


@pytest.mark.parametrize(
    "payload, message",
    [
        (b"", "empty"),
        (b"hello, I am text", "not an image"),
        (b"<html><script>alert(1)</script></html>", "not an image"),
    ],
)
def test_not_images_raise_image_error(payload, message):
    with pytest.raises(ImageError, match=message):
        load_image(payload)


def test_truncated_png_and_missing_file(tmp_path):
    data = encode(Image.fromarray(np.zeros((64, 64, 3), np.uint8) + 9))
    with pytest.raises(ImageError):
        load_image(data[: len(data) // 2])
    with pytest.raises(ImageError, match="no such image file"):
        load_image(tmp_path / "nope.png")
    assert issubclass(ImageError, ValueError)


def test_decompression_bomb_is_refused_before_decoding():
    # A 20000x20000 one-bit PNG compresses to a few kilobytes.
    bomb = encode(Image.new("1", (20000, 20000)))
    assert len(bomb) < 200_000
    with pytest.raises(ImageError, match="megapixels"):
        load_image(bomb)


@pytest.mark.parametrize("shape", [(1, 1, 3), (1, 500, 3), (500, 1, 3), (31, 33, 3), (480, 640, 3),
                                   (50, 50), (40, 30, 1), (20, 20, 4)])
def test_preprocess_odd_shapes(shape):
    image = np.random.default_rng(1).integers(0, 256, shape).astype(np.uint8)
    out = preprocess(image)
    assert out.shape == (32, 32, 3) and out.dtype == np.float32
    assert out.min() >= 0 and out.max() <= 255
    assert preprocess(image, size=64).shape == (64, 64, 3)


def test_preprocess_takes_the_centred_square_and_keeps_constant_colours():
    image = np.zeros((100, 300, 3), np.uint8)
    image[:, 100:200] = (10, 200, 30)  # the centred square is one colour
    out = preprocess(image)
    np.testing.assert_allclose(out, np.broadcast_to([10, 200, 30], out.shape), atol=1e-3)
    assert center_square(np.zeros((7, 3))).shape == (3, 3)


def test_preprocess_antialiases():
    # A one-pixel checkerboard averages to mid-grey instead of aliasing to black or white.
    board = (np.indices((256, 256)).sum(axis=0) % 2 * 255).astype(np.uint8)
    out = preprocess(np.dstack([board] * 3))
    assert abs(out.mean() - 127.5) < 2 and out.std() < 5


def test_preprocess_rejects_bad_arrays():
    with pytest.raises(ImageError):
        preprocess(np.zeros((10, 10, 2)))
    with pytest.raises(ImageError, match="NaN"):
        preprocess(np.full((10, 10, 3), np.nan))
    with pytest.raises(ValueError):
        preprocess(np.zeros((10, 10, 3)), size=0)


def test_analysis_shape_keeps_the_aspect():
    from sensitivity.imaging.images import analysis_shape

    assert analysis_shape(120, 200, 100) == (60, 100)
    assert analysis_shape(200, 120, 100) == (100, 60)
    assert analysis_shape(100, 150, 40) == (27, 40)  # 100 * 40 / 150 = 26.7
    assert analysis_shape(32, 32, 128) == (128, 128)  # enlarged too
    assert analysis_shape(10, 400, 64) == (8, 64)  # 1.6 rows -> at least 8
    assert analysis_shape(33, 47, None) == (33, 47)


def test_resize_to_side_is_resize_at_the_analysis_shape():
    from sensitivity.imaging.images import resize, resize_to_side

    image = np.random.default_rng(0).integers(0, 256, (60, 90, 3), dtype=np.uint8)
    x = resize_to_side(image, 40)
    assert x.shape == (27, 40, 3) and x.dtype == np.float32  # 60 * 40 / 90 = 26.7 rows
    np.testing.assert_array_equal(x, resize(image.astype(np.float32), 27, 40))
    np.testing.assert_array_equal(resize_to_side(image, None), image.astype(np.float32))
