"""Synthetic scenes with known object boxes: CIFAR-10 images pasted onto a larger background.

A scene is a canvas (default 96x96) with one or two 32x32 images of different classes pasted
at random places that neither overlap nor touch (at least :data:`GAP` pixels apart), on one
of the :data:`BACKGROUNDS`. Everything is drawn from ``numpy.random.default_rng(seed)``, so a
seed always gives the same scene. The ground-truth boxes are exactly the pasted pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sensitivity.discovery import Box
from sensitivity.filters import gaussian_smooth

BACKGROUNDS = ("noise", "smooth", "stripes", "checker", "flat")
"""Background kinds: grey Gaussian noise, smooth colour blobs (blurred noise), sinusoidal
stripes at a random angle, a two-colour checkerboard, a single colour."""

GAP = 2
"""Smallest distance in pixels between two pasted objects (their boxes never touch)."""

_MAX_TRIES = 1000


@dataclass(frozen=True)
class Scene:
    """A canvas ``image`` ``(H, W, 3)`` uint8, one box per object (``x1``, ``y1`` exclusive)
    holding exactly the pasted pixels, the objects' class ``labels`` and the background kind."""

    image: np.ndarray
    boxes: tuple[Box, ...]
    labels: tuple[int, ...]
    background: str


def background(kind: str, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A ``(height, width, 3)`` uint8 background of ``kind`` (see :data:`BACKGROUNDS`)."""
    if kind == "noise":
        base = rng.uniform(60, 190, 3)
        pixels = base + rng.normal(0.0, 40.0, (height, width, 3))
    elif kind == "smooth":
        noise = rng.uniform(0, 255, (height, width, 3))
        pixels = gaussian_smooth(noise, max(height, width) / 16)
        low, high = pixels.min(), pixels.max()
        pixels = (pixels - low) / max(high - low, 1e-9) * 255.0
    elif kind == "stripes":
        angle = rng.uniform(0, np.pi)
        period = rng.uniform(6, 16)
        y, x = np.mgrid[0:height, 0:width]
        wave = 0.5 + 0.5 * np.sin(2 * np.pi * (x * np.cos(angle) + y * np.sin(angle)) / period)
        a, b = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        pixels = a + wave[..., None] * (b - a)
    elif kind == "checker":
        cell = int(rng.integers(4, 13))
        y, x = np.mgrid[0:height, 0:width]
        odd = ((y // cell + x // cell) % 2).astype(bool)
        a, b = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        pixels = np.where(odd[..., None], b, a)
    elif kind == "flat":
        pixels = np.broadcast_to(rng.uniform(0, 255, 3), (height, width, 3))
    else:
        raise ValueError(f"unknown background {kind!r}; choose one of {list(BACKGROUNDS)}")
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


def _size(size) -> tuple[int, int]:
    height, width = (size, size) if np.isscalar(size) else tuple(size)
    if int(height) != height or int(width) != width or min(height, width) < 1:
        raise ValueError(f"size must be a positive whole number or (height, width), got {size!r}")
    return int(height), int(width)


def _place(
    shapes: list[tuple[int, int]], height: int, width: int, rng: np.random.Generator
) -> list[Box]:
    """Random top-left corners for objects of these ``(h, w)`` so no two are within GAP."""
    for h, w in shapes:
        if h > height or w > width:
            raise ValueError(f"an object of {h}x{w} pixels does not fit a {height}x{width} canvas")
    for _ in range(_MAX_TRIES):
        boxes = []
        for h, w in shapes:
            y0 = int(rng.integers(0, height - h + 1))
            x0 = int(rng.integers(0, width - w + 1))
            boxes.append(Box(x0, y0, x0 + w, y0 + h))
        if all(_apart(a, b, GAP) for i, a in enumerate(boxes) for b in boxes[i + 1 :]):
            return boxes
    raise ValueError(
        f"could not place {len(shapes)} objects apart on a {height}x{width} canvas; "
        "use a larger canvas"
    )


def _apart(a: Box, b: Box, gap: int) -> bool:
    return a.x1 + gap <= b.x0 or b.x1 + gap <= a.x0 or a.y1 + gap <= b.y0 or b.y1 + gap <= a.y0


def make_scene(
    objects, labels, *, size=96, background_kind: str | None = None, seed: int = 0
) -> Scene:
    """Paste ``objects`` (a list of ``(h, w, 3)`` uint8 images) at random places on a canvas.

    ``labels``: one class index per object. ``size``: canvas side or ``(height, width)``.
    ``background_kind``: one of :data:`BACKGROUNDS`, or None for one drawn from the seed.
    """
    objects = [np.asarray(o) for o in objects]
    labels = tuple(int(c) for c in labels)
    if not objects or len(objects) != len(labels):
        raise ValueError("give one label per object, and at least one object")
    for obj in objects:
        if obj.ndim != 3 or obj.shape[2] != 3:
            raise ValueError(f"objects must be (h, w, 3) images, got shape {obj.shape}")
    height, width = _size(size)
    rng = np.random.default_rng(seed)
    kind = background_kind or BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]
    canvas = background(kind, height, width, rng).copy()
    boxes = _place([o.shape[:2] for o in objects], height, width, rng)
    for obj, box in zip(objects, boxes, strict=True):
        canvas[box.y0 : box.y1, box.x0 : box.x1] = np.clip(np.rint(obj), 0, 255).astype(np.uint8)
    return Scene(canvas, tuple(boxes), labels, kind)


def scene_from_pool(
    images: np.ndarray,
    labels: np.ndarray,
    *,
    num_objects: int = 1,
    size=96,
    background_kind: str | None = None,
    seed: int = 0,
) -> Scene:
    """A scene of ``num_objects`` (1 or 2) images drawn from ``images`` ``(N, h, w, 3)`` uint8
    with ``labels`` ``(N,)``; two objects always have different classes."""
    images = np.asarray(images)
    labels = np.asarray(labels).reshape(-1)
    if num_objects not in (1, 2):
        raise ValueError(f"a scene holds 1 or 2 objects, got {num_objects}")
    if images.ndim != 4 or len(images) != len(labels) or len(images) == 0:
        raise ValueError("need a non-empty (N, h, w, 3) image pool with one label per image")
    rng = np.random.default_rng([seed, 1])  # picks the objects; the scene uses ``seed`` itself
    first = int(rng.integers(len(images)))
    chosen = [first]
    if num_objects == 2:
        others = np.flatnonzero(labels != labels[first])
        if others.size == 0:
            raise ValueError("two-object scenes need images of at least two classes")
        chosen.append(int(others[rng.integers(others.size)]))
    return make_scene(
        [images[i] for i in chosen],
        [labels[i] for i in chosen],
        size=size,
        background_kind=background_kind,
        seed=seed,
    )
