"""Hostile and odd uploads: a correct image or a clear ImageError, in bounded time and memory."""

from __future__ import annotations

import resource
import time

import numpy as np
import pytest

from sensitivity.images import ImageError, load_image
from tests.hostile import corpus

CASES = corpus()


@pytest.mark.parametrize("case", CASES, ids=[f"case{i}" for i in range(len(CASES))])
def test_each_file_decodes_correctly_or_is_refused_with_a_message(case):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    started = time.perf_counter()
    if case.shape is None:
        with pytest.raises(ImageError) as refused:
            load_image(case.data)
        message = str(refused.value)
        assert case.refusal in message and "Traceback" not in message and len(message) < 300
    else:
        image = load_image(case.data)
        assert image.shape == case.shape and image.dtype == np.uint8
    assert time.perf_counter() - started < 10.0
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 250  # the 400-megapixel bomb is refused before its pixels are decoded


def test_the_corpus_holds_what_it_says():
    decoded = {c.name: load_image(c.data) for c in CASES if c.shape is not None}
    # EXIF rotation applied, alpha composited on white, 16-bit scaled, first frame of animations.
    assert decoded["rotated.jpg"].shape == (20, 10, 3)
    plain = next(v for k, v in decoded.items() if k.startswith("<img")).astype(int)
    rgba = decoded["rgba.png"].astype(int)
    np.testing.assert_allclose(rgba, (plain * 128 + 255 * 127) / 255, atol=2)
    assert np.all(decoded["sixteen-bit.png"] > 100)  # 40000 / 65535 * 255 = 156, not 255
    assert np.all(decoded["sixteen-bit.png"] < 200)
    assert abs(int(decoded["animated.gif"][0, 0, 0]) - 30) < 8
    assert abs(int(decoded["animated.webp"][0, 0, 0]) - 30) < 8
    assert decoded["la.png"][0, 0, 0] > 60  # grey 60 at alpha 200 over white is lighter
