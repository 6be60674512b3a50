"""Hostile and odd uploads: a correct image or a clear ImageError, in bounded time and memory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sensitivity.imaging.images import ImageError, load_image
from tests.hostile import corpus

CASES = corpus()
ROOT = Path(__file__).resolve().parents[2]

ADDRESS_SPACE_LIMIT = 2**30
"""Address space of the process that reads the bomb: Python, NumPy and Pillow take about 150
MB; the bomb's pixels would take 400 MB as grey and 1.2 GB more as RGB."""

_READ_UNDER_LIMIT = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))
from sensitivity.imaging.images import ImageError, load_image
try:
    load_image(open(sys.argv[1], "rb").read())
except ImageError as exc:
    print("refused:", exc)
else:
    print("decoded")
"""


@pytest.mark.parametrize("case", CASES, ids=[f"case{i}" for i in range(len(CASES))])
def test_each_file_decodes_correctly_or_is_refused_with_a_message(case):
    if case.shape is None:
        with pytest.raises(ImageError) as refused:
            load_image(case.data)
        message = str(refused.value)
        assert case.refusal in message and "Traceback" not in message and len(message) < 300
    else:
        image = load_image(case.data)
        assert image.shape == case.shape and image.dtype == np.uint8


def test_the_bomb_is_refused_by_a_process_with_little_memory(tmp_path):
    """The 400-megapixel PNG is refused before its pixels are decoded: a process limited to
    1 GiB of address space reads it, refuses it with the message and exits normally."""
    bomb = next(case for case in CASES if case.name == "bomb.png")
    path = tmp_path / "bomb.png"
    path.write_bytes(bomb.data)
    env = dict(os.environ, PYTHONPATH=str(ROOT), OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    done = subprocess.run(
        [sys.executable, "-c", _READ_UNDER_LIMIT.format(limit=ADDRESS_SPACE_LIMIT), str(path)],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("refused:") and bomb.refusal in done.stdout, done.stdout


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
