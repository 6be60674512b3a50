"""Pictures that show none of the CIFAR-10 classes, made offline, for out-of-distribution checks.

Each kind of :data:`KINDS` is drawn from ``numpy.random.default_rng(seed)`` at
:data:`DRAW_SIZE` pixels and area-resized to the analysis size (default 32, as the page
analyses a photograph), so a seed always gives the same picture:

- ``texture``: a procedural fractal texture (sky, foliage, bark, ground, random colours;
  :func:`sensitivity.metrics.scenes.fractal_texture`);
- ``noise``: pixel noise, uniform or Gaussian, grey or coloured, at a random grain size;
- ``flat``: one colour with faint sensor noise;
- ``gradient``: a linear blend of two random colours at a random angle;
- ``text``: a few random words rendered with Pillow's default font, dark on light or the reverse;
- ``person``: a crop of ``person.jpg`` (the shared photographs) around the person, away from
  the dog and the horse (needs ``photos_dir``; skipped without it);
- ``scrambled``: a CIFAR-10 image cut into 4x4-pixel tiles shuffled at random (needs the
  object pool: 32x32 images).

:func:`outlier_set` gives ``n`` pictures per kind for a split; the validation and test splits
draw from disjoint seed streams, and scrambled pictures come from the CIFAR-10 images the
caller gives (the split's own: the trainer's held-out part of the training split, or the test
split).
"""

from __future__ import annotations

import os
import string
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from sensitivity.imaging.images import load_image, resize

KINDS = ("texture", "noise", "flat", "gradient", "text", "person", "scrambled")
"""The kinds of out-of-distribution picture, in report order."""

DRAW_SIZE = 96
"""Side in pixels at which a picture is drawn before it is resized to the analysis size."""

PERSON_PHOTO = "person.jpg"
PERSON_REGION = (175, 90, 295, 380)
"""``(x0, y0, x1, y1)`` of the person in :data:`PERSON_PHOTO`, read by eye, with a margin."""
PERSON_AVOID = ((62, 263, 205, 345), (405, 138, 602, 345))
"""The dog's and the horse's boxes in :data:`PERSON_PHOTO` (from its README): crops keep out."""

TILE = 4
"""Side in pixels of the tiles a scrambled image is cut into."""

_SPLIT_IDS = {"validation": 11, "test": 12}  # seed streams, apart from the scene sets'
_WORDS = ("the", "model", "sees", "none", "of", "its", "classes", "here", "only", "text",
          "and", "letters", "sensitivity", "photo", "page", "map", "score", "ten")


def _noise(rng: np.random.Generator) -> np.ndarray:
    grain = int(rng.choice([1, 2, 4, 8]))
    side = -(-DRAW_SIZE // grain)
    channels = 1 if rng.random() < 0.5 else 3
    if rng.random() < 0.5:
        values = rng.uniform(0, 255, (side, side, channels))
    else:
        values = rng.normal(rng.uniform(60, 190), rng.uniform(20, 70), (side, side, channels))
    values = np.repeat(np.repeat(values, grain, axis=0), grain, axis=1)[:DRAW_SIZE, :DRAW_SIZE]
    return np.broadcast_to(values, (DRAW_SIZE, DRAW_SIZE, 3))


def _flat(rng: np.random.Generator) -> np.ndarray:
    colour = rng.uniform(0, 255, 3)
    return colour + rng.normal(0.0, rng.uniform(0.0, 4.0), (DRAW_SIZE, DRAW_SIZE, 3))


def _gradient(rng: np.random.Generator) -> np.ndarray:
    start, end = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    angle = rng.uniform(0, 2 * np.pi)
    y, x = np.mgrid[0:DRAW_SIZE, 0:DRAW_SIZE] / (DRAW_SIZE - 1) - 0.5
    t = x * np.cos(angle) + y * np.sin(angle)
    t = (t - t.min()) / max(float(np.ptp(t)), 1e-9)
    return start + t[..., None] * (end - start)


def _text(rng: np.random.Generator) -> np.ndarray:
    light, dark = rng.uniform(180, 255, 3), rng.uniform(0, 80, 3)
    paper, ink = (light, dark) if rng.random() < 0.7 else (dark, light)
    image = Image.new("RGB", (DRAW_SIZE, DRAW_SIZE), tuple(int(v) for v in paper))
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=int(rng.integers(12, 28)))
    y = int(rng.integers(-4, 12))
    while y < DRAW_SIZE:
        words = rng.choice(_WORDS, size=int(rng.integers(1, 4)))
        line = " ".join(str(w) for w in words)
        if rng.random() < 0.3:
            line = line.upper() + " " + "".join(rng.choice(list(string.digits), 3))
        draw.text((int(rng.integers(-8, 8)), y), line, fill=tuple(int(v) for v in ink), font=font)
        y += int(font.size * rng.uniform(1.1, 1.6))
    return np.asarray(image, np.float64)


def person_window(rng: np.random.Generator) -> tuple[int, int, int, int]:
    """A square ``(x0, y0, x1, y1)`` (exclusive ends) inside :data:`PERSON_REGION` of
    :data:`PERSON_PHOTO`, 70 pixels or more a side, that meets none of :data:`PERSON_AVOID`."""
    x0, y0, x1, y1 = PERSON_REGION
    for _ in range(1000):
        side = int(rng.integers(70, x1 - x0 + 1))
        left = int(rng.integers(x0, x1 - side + 1))
        top = int(rng.integers(y0, y1 - side + 1))
        if all(
            left >= bx1 or left + side <= bx0 or top >= by1 or top + side <= by0
            for bx0, by0, bx1, by1 in PERSON_AVOID
        ):
            return left, top, left + side, top + side
    raise RuntimeError("no crop around the person avoids the other objects")


def scramble(image: np.ndarray, rng: np.random.Generator, tile: int = TILE) -> np.ndarray:
    """``(H, W, C)`` image with its ``tile x tile`` tiles shuffled at random (H, W multiples
    of ``tile``); the same pixels, in another order."""
    height, width, channels = image.shape
    if height % tile or width % tile:
        raise ValueError(f"the image's sides must be multiples of {tile}, got {image.shape}")
    rows, cols = height // tile, width // tile
    tiles = image.reshape(rows, tile, cols, tile, channels).swapaxes(1, 2)
    tiles = tiles.reshape(rows * cols, tile, tile, channels)[rng.permutation(rows * cols)]
    return tiles.reshape(rows, cols, tile, tile, channels).swapaxes(1, 2).reshape(image.shape)


def outlier_image(
    kind: str,
    seed,
    *,
    size: int = 32,
    photo: np.ndarray | None = None,
    pool: np.ndarray | None = None,
) -> np.ndarray:
    """One picture of ``kind`` (:data:`KINDS`) as ``(size, size, 3)`` float32 pixel values
    0..255. ``photo``: :data:`PERSON_PHOTO` as ``(H, W, 3)`` (kind ``person``); ``pool``:
    ``(N, 32, 32, 3)`` CIFAR-10 images (kind ``scrambled``)."""
    rng = np.random.default_rng(seed)
    if kind == "scrambled":
        if pool is None:
            raise ValueError("scrambled pictures need a pool of CIFAR-10 images")
        source = pool[int(rng.integers(len(pool)))]
        return resize(scramble(np.asarray(source, np.float32), rng), size, size)
    if kind == "texture":
        from sensitivity.metrics.scenes import fractal_texture

        pixels = fractal_texture(DRAW_SIZE, DRAW_SIZE, rng).astype(np.float64)
    elif kind == "noise":
        pixels = _noise(rng)
    elif kind == "flat":
        pixels = _flat(rng)
    elif kind == "gradient":
        pixels = _gradient(rng)
    elif kind == "text":
        pixels = _text(rng)
    elif kind == "person":
        if photo is None:
            raise ValueError(f"person pictures need {PERSON_PHOTO} from the shared photographs")
        left, top, right, bottom = person_window(rng)
        pixels = photo[top:bottom, left:right].astype(np.float64)
    else:
        raise ValueError(f"unknown kind {kind!r}; choose one of {list(KINDS)}")
    pixels = np.clip(pixels, 0.0, 255.0).astype(np.float32)
    return resize(pixels, size, size)


def outlier_set(
    split: str,
    n: int,
    *,
    pool: np.ndarray | None = None,
    photos_dir: str | os.PathLike | None = None,
    size: int = 32,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` pictures of every kind for ``split`` ("validation" or "test", disjoint seed
    streams): images ``(M, size, size, 3)`` float32 in 0..255 and their kinds ``(M,)``
    (strings of :data:`KINDS`). ``pool``: the split's own CIFAR-10 images ``(N, 32, 32, 3)``
    to scramble; ``photos_dir``: the shared photographs. Kinds whose source is missing are
    left out: ``person`` without ``photos_dir``'s :data:`PERSON_PHOTO`, ``scrambled`` without
    ``pool``."""
    if split not in _SPLIT_IDS:
        raise ValueError(f"unknown split {split!r}; choose one of {list(_SPLIT_IDS)}")
    photo_path = Path(photos_dir) / PERSON_PHOTO if photos_dir is not None else None
    photo = load_image(photo_path) if photo_path is not None and photo_path.is_file() else None
    images, kinds = [], []
    for k, kind in enumerate(KINDS):
        if (kind == "person" and photo is None) or (kind == "scrambled" and pool is None):
            continue
        for i in range(n):
            images.append(
                outlier_image(
                    kind, (seed, _SPLIT_IDS[split], k, i), size=size, photo=photo, pool=pool
                )
            )
            kinds.append(kind)
    if not images:
        return np.zeros((0, size, size, 3), np.float32), np.array([], dtype=str)
    return np.stack(images), np.array(kinds)
