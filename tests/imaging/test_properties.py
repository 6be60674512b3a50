"""Property-based tests: whatever the input, a valid result or a clear ImageError."""

from __future__ import annotations

import io

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from sensitivity import ImageError, load_image, preprocess
from sensitivity.engine.saliency import CHANNEL_REDUCTIONS, SIGNS, to_map
from sensitivity.imaging.discovery import discover_objects
from sensitivity.imaging.postprocess import normalize_map, top_k_mask

MODES = ["1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "I", "I;16", "F"]
FORMATS = ["PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF"]


@st.composite
def encoded_images(draw):
    width = draw(st.integers(1, 64))
    height = draw(st.integers(1, 64))
    mode = draw(st.sampled_from(MODES))
    fmt = draw(st.sampled_from(FORMATS))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    image = Image.frombytes("L", (width, height), rng.integers(0, 256, width * height,
                                                                dtype=np.uint8).tobytes())
    image = image.convert(mode) if mode not in ("I;16",) else image.convert("I").convert("I;16")
    buffer = io.BytesIO()
    try:
        image.save(buffer, format=fmt)
    except (OSError, ValueError, KeyError):
        image = image.convert("RGB")  # a mode the format cannot store
        buffer = io.BytesIO()
        image.save(buffer, format=fmt)
    data = buffer.getvalue()
    cut = draw(st.sampled_from([None, None, None, len(data) // 2, 8]))
    whole = cut is None
    return data if whole else data[:cut], whole, (height, width), fmt, _expected_rgb(image)


LOSSLESS = ("PNG", "BMP", "TIFF")
"""Formats that store every test image exactly (JPEG and WebP are lossy, GIF quantises)."""


def _expected_rgb(image: Image.Image) -> np.ndarray:
    """What a correct reader returns for this grey in-memory image, by the documented rules:
    16-bit scaled from 0..65535, float from 0..1 when no value exceeds 1, else values as grey."""
    if image.mode == "I;16":
        grey = np.rint(np.asarray(image, np.float64) * (255 / 65535))
    elif image.mode == "F" and np.asarray(image).max() <= 1.0:
        grey = np.asarray(image, np.float64) * 255
    else:
        grey = np.asarray(image.convert("L"), np.float64)
    return np.repeat(grey.astype(np.uint8)[..., None], 3, axis=2)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(encoded_images())
def test_any_encoded_image_decodes_or_raises_image_error(case):
    """A whole file decodes to exactly (height, width), pixel for pixel in a lossless format;
    a cut one decodes the same way or is refused with a message."""
    data, whole, (height, width), fmt, expected = case
    try:
        image = load_image(data)
    except ImageError as exc:
        assert str(exc)
        assert not whole, f"a whole {fmt} file was refused: {exc}"
        return
    assert isinstance(image, np.ndarray) and image.dtype == np.uint8
    assert image.shape == (height, width, 3)
    if whole and fmt in LOSSLESS:
        np.testing.assert_array_equal(image, expected)
    x = preprocess(image, 32)
    assert x.shape == (32, 32, 3) and np.isfinite(x).all()
    assert x.min() >= 0 and x.max() <= 255


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=256))
def test_random_bytes_never_escape_as_another_error(data):
    try:
        image = load_image(data)
    except ImageError as exc:
        assert str(exc)
        return
    assert isinstance(image, np.ndarray) and image.dtype == np.uint8
    assert image.ndim == 3 and image.shape[2] == 3 and min(image.shape[:2]) >= 1


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 200), st.integers(1, 200), st.sampled_from([8, 32, 65]),
       st.sampled_from([np.uint8, np.uint16, np.float32, np.float64, np.int64]))
def test_preprocess_any_size_and_dtype(height, width, size, dtype):
    rng = np.random.default_rng(height * 1000 + width)
    array = (rng.random((height, width, 3)) * 255).astype(dtype)
    x = preprocess(array, size)
    assert x.shape == (size, size, 3) and x.dtype == np.float32
    assert np.isfinite(x).all() and x.min() >= 0 and x.max() <= 255


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 48), st.integers(1, 48), st.integers(0, 2**16),
       st.floats(0.01, 1.0), st.floats(0.0, 3.0))
def test_discovered_boxes_lie_inside_the_map(height, width, seed, keep, sigma):
    rng = np.random.default_rng(seed)
    saliency_map = rng.random((height, width)) * (rng.random((height, width)) > 0.7)
    boxes = discover_objects(saliency_map, keep_fraction=keep, smooth_sigma=sigma, min_area=1)
    for box in boxes:
        assert 0 <= box.x0 < box.x1 <= width and 0 <= box.y0 < box.y1 <= height
        assert 0 <= box.score <= 1 + 1e-9
    scores = [b.score for b in boxes]
    assert scores == sorted(scores, reverse=True)


@settings(max_examples=150, deadline=None)
@given(arrays(np.float32, st.tuples(st.integers(1, 3), st.integers(1, 9), st.integers(1, 9),
                                    st.just(3)),
              elements=st.floats(allow_nan=False, allow_infinity=False, width=32)),
       st.sampled_from(list(SIGNS)), st.sampled_from(list(CHANNEL_REDUCTIONS)))
def test_maps_from_any_finite_gradient_are_finite(values, sign, reduce_channels):
    """Even float32 extremes (the l2 of three values near 3e38 overflows naively) are finite."""
    maps = to_map(values, sign, reduce_channels)
    assert np.isfinite(maps).all()
    assert maps.shape[:3] == values.shape[:3]
    if sign in ("abs", "positive", "negative"):
        assert (maps >= 0).all()
    k = max(1, maps[0].size // 4)
    if reduce_channels != "none":
        assert top_k_mask(maps[0], k).sum() == k
        assert np.isfinite(normalize_map(maps[0])).all()
