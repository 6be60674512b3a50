"""Synthetic scenes with known object boxes: CIFAR-10 images pasted onto a larger background.

Two generators. :func:`make_scene` / :func:`scene_from_pool`: a canvas (default 96x96) with
one or two 32x32 images of different classes pasted with hard edges at random places that
neither overlap nor touch (at least :data:`GAP` pixels apart), on one of the synthetic
:data:`BACKGROUNDS`. :func:`photo_like_scene` / :func:`scene_set`: scenes that look more like
photographs: 1-3 objects rescaled to 24-64 pixels, pasted with feathered edges onto a
procedural fractal texture (:func:`fractal_texture`) or a crop of a real photograph that holds
no CIFAR-10 object (:func:`photo_regions`), then sensor noise and JPEG compression over the
whole canvas, so neither a seam nor a texture break marks the objects.

Everything is drawn from ``numpy.random.default_rng(seed)``, so a seed always gives the same
scene. The ground-truth boxes are the pasted rectangles (``x1``, ``y1`` exclusive).
"""

from __future__ import annotations

import functools
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from sensitivity.imaging.discovery import Box

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
    sources: tuple[int, ...] = ()
    """Index of each object in the pool it was drawn from (photo-like scenes; else empty)."""


def background(kind: str, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A ``(height, width, 3)`` uint8 background of ``kind`` (see :data:`BACKGROUNDS`)."""
    if kind == "noise":
        base = rng.uniform(60, 190, 3)
        pixels = base + rng.normal(0.0, 40.0, (height, width, 3))
    elif kind == "smooth":
        noise = rng.uniform(0, 255, (height, width, 3))
        sigma = max(height, width) / 16
        radius = max(1, int(np.ceil(3 * sigma)))  # mirrored border, kernel radius ceil(3 sigma)
        pixels = ndimage.gaussian_filter(
            noise, (sigma, sigma, 0), mode="reflect", radius=(radius, radius, 0)
        )
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
    shapes: list[tuple[int, int]],
    height: int,
    width: int,
    rng: np.random.Generator,
    gap: int = GAP,
    tries: int = _MAX_TRIES,
) -> list[Box]:
    """Random top-left corners for objects of these ``(h, w)`` so no two are within ``gap``."""
    for h, w in shapes:
        if h > height or w > width:
            raise ValueError(f"an object of {h}x{w} pixels does not fit a {height}x{width} canvas")
    for _ in range(tries):
        boxes = []
        for h, w in shapes:
            y0 = int(rng.integers(0, height - h + 1))
            x0 = int(rng.integers(0, width - w + 1))
            boxes.append(Box(x0, y0, x0 + w, y0 + h))
        if all(_apart(a, b, gap) for i, a in enumerate(boxes) for b in boxes[i + 1 :]):
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


# --- Photo-like scenes ---------------------------------------------------------------------

PHOTO_OBJECTS: dict[str, dict[str, tuple[tuple[int, ...], tuple[int, int, int, int]]]] = {
    # Rough boxes (x0, y0, x1, y1) read by eye, from ../shared/datasets/photos/README.md;
    # each object has the classes of its mask (the pickup counts as automobile or truck).
    "dog.jpg": {"dog": ((5,), (130, 222, 310, 540)), "pickup": ((1, 9), (467, 73, 690, 170))},
    "person.jpg": {"dog": ((5,), (62, 263, 205, 345)), "horse": ((7,), (405, 138, 602, 345))},
}
"""Photographs with two CIFAR-10 objects of different classes: object classes and boxes."""

PHOTO_MARGIN = 8
"""Pixels added on every side of a :data:`PHOTO_OBJECTS` box (the boxes are rough)."""

PHOTO_GAP = 8
"""Smallest distance in pixels between two objects of a photo-like scene."""

SPLIT_IDS = {"train": 0, "validation": 1, "test": 2}
"""Scene sets: the pool each split draws objects from, and its seed stream ("train": for
fitting, never for measuring)."""

_FEATHER = (2, 6)  # range of the feather width in pixels (at most an eighth of the side)
_SCALES = (0.4, 1.0)  # downscale of a photograph before a background is cut from it
_CROP_TRIES = 100


def _smoothstep(t: np.ndarray) -> np.ndarray:
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _spectral_noise(
    height: int, width: int, beta: float, rng: np.random.Generator, stretch: float = 1.0
) -> np.ndarray:
    """``(height, width)`` float64 noise with power spectrum ``1 / f**beta``, zero mean and
    unit std; ``stretch > 1`` elongates its structures vertically."""
    fy = np.fft.fftfreq(height)[:, None] * stretch
    fx = np.fft.rfftfreq(width)[None, :]
    f = np.hypot(fx, fy)
    f[0, 0] = np.inf  # no constant component
    field = np.fft.irfft2(
        np.fft.rfft2(rng.standard_normal((height, width))) * f ** (-beta / 2), s=(height, width)
    )
    return (field - field.mean()) / max(field.std(), 1e-12)


def _ramp(field: np.ndarray, stops: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``(H, W, 3)`` float64: a unit-std field mapped through a colour ramp ``stops`` ``(K, 3)``."""
    t = 0.5 + 0.5 * np.tanh(field * rng.uniform(0.6, 1.2))
    positions = np.linspace(0.0, 1.0, len(stops))
    return np.stack([np.interp(t, positions, stops[:, c]) for c in range(3)], axis=-1)


_MATERIALS = {
    # name: (colour ramp dark to light, spectral exponent range, vertical stretch range,
    #        grain amplitude range)
    "foliage": ([(20, 45, 15), (60, 110, 35), (150, 170, 70)], (1.0, 1.8), (1.0, 2.0), (0.1, 0.2)),
    "bark": ([(45, 30, 20), (100, 75, 50), (150, 120, 90)], (1.5, 2.2), (3.0, 8.0), (0.05, 0.15)),
    "ground": (
        [(90, 70, 50), (150, 125, 95), (205, 190, 160)],
        (1.8, 2.6),
        (0.7, 1.3),
        (0.03, 0.1),
    ),
}


def _material(height: int, width: int, rng: np.random.Generator, name: str) -> np.ndarray:
    """``(H, W, 3)`` float64 texture of a named material or ("palette") random colours."""
    if name == "palette":
        colours = rng.uniform(0, 255, (int(rng.integers(3, 6)), 3))
        grey = colours.mean(axis=1, keepdims=True)
        stops = grey + rng.uniform(0.2, 0.7) * (colours - grey)  # muted, as in most photos
        beta, stretch, grain = rng.uniform(1.6, 3.0), rng.uniform(0.5, 2.0), rng.uniform(0, 0.1)
    else:
        colours, betas, stretches, grains = _MATERIALS[name]
        stops = np.asarray(colours, float) * rng.uniform(0.7, 1.3) + rng.normal(0, 12, (1, 3))
        beta, stretch, grain = rng.uniform(*betas), rng.uniform(*stretches), rng.uniform(*grains)
    pixels = _ramp(_spectral_noise(height, width, beta, rng, stretch), stops, rng)
    detail = _spectral_noise(height, width, rng.uniform(0.3, 1.0), rng, stretch)
    return pixels * (1.0 + grain * detail)[..., None]


def _sky(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """``(H, W, 3)`` float64: a blue gradient with clouds, above the ground in half the cases."""
    top = np.array([40.0, 90.0, 170.0]) + rng.normal(0, 15, 3)
    horizon = np.array([175.0, 200.0, 230.0]) + rng.normal(0, 15, 3)
    y = np.linspace(0.0, 1.0, height)[:, None, None] ** rng.uniform(0.5, 1.5)
    pixels = np.broadcast_to(top + y * (horizon - top), (height, width, 3))
    clouds = _spectral_noise(height, width, rng.uniform(2.5, 3.5), rng, rng.uniform(0.3, 1.0))
    cover = _smoothstep((clouds - rng.uniform(-0.5, 1.0)) / rng.uniform(0.5, 1.5))
    shade = 1.0 - 0.15 * _smoothstep(_spectral_noise(height, width, 2.0, rng) + 0.5)
    white = rng.uniform(215, 250) * shade[..., None]
    pixels = pixels + cover[..., None] * (white - pixels)
    if rng.random() < 0.5:
        ground = _material(height, width, rng, ("foliage", "ground")[int(rng.integers(2))])
        hills = _spectral_noise(1, width, 2.5, rng)[0] * rng.uniform(0.02, 0.1) * height
        line = rng.uniform(0.5, 0.85) * height + hills
        below = _smoothstep(np.arange(height)[:, None] - line[None, :] + 0.5)
        pixels = pixels + below[..., None] * (ground - pixels)
    return pixels


_LOOKS = ("sky", "foliage", "bark", "ground", "palette")


def fractal_texture(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A ``(height, width, 3)`` uint8 procedural texture with 1/f^beta (fractal) statistics.

    One look drawn from ``rng``: sky (gradient, clouds, sometimes ground below a hilly
    horizon), foliage, bark (vertical streaks), ground, or random colours; then a smooth
    illumination gradient. Colours, exponent ``beta`` and contrast are drawn too.
    """
    look = _LOOKS[int(rng.integers(len(_LOOKS)))]
    pixels = _sky(height, width, rng) if look == "sky" else _material(height, width, rng, look)
    angle, strength = rng.uniform(0, 2 * np.pi), rng.uniform(-0.25, 0.25)
    y, x = np.mgrid[0:height, 0:width]
    light = 1.0 + strength * (
        (x - width / 2) * np.cos(angle) + (y - height / 2) * np.sin(angle)
    ) / max(height, width)
    return np.clip(np.rint(pixels * light[..., None]), 0, 255).astype(np.uint8)


def photo_regions(
    photos_dir: str | os.PathLike | None,
) -> list[tuple[np.ndarray, tuple[Box, ...]]]:
    """The photographs of :data:`PHOTO_OBJECTS` in ``photos_dir``: each an ``(H, W, 3)`` uint8
    image and its exclusion boxes (the object boxes grown by :data:`PHOTO_MARGIN`, clipped to
    the image). A missing folder or file is skipped (empty list: fractal backgrounds only)."""
    from sensitivity.imaging.images import load_image

    regions = []
    for name, objects in PHOTO_OBJECTS.items():
        path = Path(photos_dir) / name if photos_dir is not None else None
        if path is None or not path.is_file():
            continue
        image = load_image(path)
        height, width = image.shape[:2]
        boxes = tuple(
            Box(
                max(0, x0 - PHOTO_MARGIN),
                max(0, y0 - PHOTO_MARGIN),
                min(width, x1 + PHOTO_MARGIN),
                min(height, y1 + PHOTO_MARGIN),
            )
            for _, (x0, y0, x1, y1) in objects.values()
        )
        regions.append((image, boxes))
    return regions


def photo_crop(
    photos: list[tuple[np.ndarray, tuple[Box, ...]]],
    height: int,
    width: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, int, Box] | None:
    """A ``(height, width, 3)`` uint8 background cut from one of ``photos`` (as given by
    :func:`photo_regions`), with the photograph's index and the window cut, in its pixels.

    The window is the canvas size over a downscale drawn in 0.4-1.0, at a random place that
    intersects no exclusion box; it is resized to the canvas (Pillow, Lanczos). None when no
    window fits within a hundred tries.
    """
    for _ in range(_CROP_TRIES):
        index = int(rng.integers(len(photos)))
        photo, boxes = photos[index]
        scale = rng.uniform(*_SCALES)
        win_h, win_w = round(height / scale), round(width / scale)
        if win_h > photo.shape[0] or win_w > photo.shape[1]:
            continue
        y0 = int(rng.integers(0, photo.shape[0] - win_h + 1))
        x0 = int(rng.integers(0, photo.shape[1] - win_w + 1))
        window = Box(x0, y0, x0 + win_w, y0 + win_h)
        if not all(_apart(window, box, 0) for box in boxes):
            continue
        crop = Image.fromarray(photo[y0 : y0 + win_h, x0 : x0 + win_w])
        pixels = np.asarray(crop.resize((width, height), Image.Resampling.LANCZOS))
        return pixels, index, window
    return None


def feather_alpha(height: int, width: int, feather: int) -> np.ndarray:
    """``(height, width)`` float64 opacity of a pasted object: 1 from ``feather`` pixels inside
    its rim on, falling smoothly towards 0 at the rim (the outermost pixels keep a little)."""
    inside = np.pad(np.ones((height, width), bool), 1)
    distance = ndimage.distance_transform_edt(inside)[1:-1, 1:-1]  # 1 at the rim
    return _smoothstep(distance / (feather + 1))


def _range(value, name: str) -> tuple[float, float]:
    low, high = value
    if not 0 <= low <= high:
        raise ValueError(f"{name} must be a range (low, high) with 0 <= low <= high, got {value!r}")
    return low, high


def photo_like_scene(
    images: np.ndarray,
    labels: np.ndarray,
    *,
    seed: int | Sequence[int],
    photos: list[tuple[np.ndarray, tuple[Box, ...]]] | None = None,
    canvas: tuple[int, int] = (96, 192),
    object_size: tuple[int, int] = (24, 64),
    num_objects: int | None = None,
    noise: tuple[float, float] = (2, 10),
    jpeg_quality: tuple[int, int] | None = (60, 95),
    same_class: bool = False,
) -> Scene:
    """A scene that resembles a photograph, with objects from a pool of small images.

    ``images`` ``(N, h, w, 3)`` uint8 and ``labels`` ``(N,)``: the pool. The canvas height and
    width are each drawn in ``canvas`` (pixels); ``num_objects`` (None: drawn from 1-3) pool
    images of different classes are resized (Pillow, Lanczos, antialiased) to squares with
    sides drawn in ``object_size`` and placed at least :data:`PHOTO_GAP` pixels apart (sides
    shrink when they do not fit). The background is a :func:`fractal_texture` or, in about
    half the scenes when ``photos`` (from :func:`photo_regions`) are given, a
    :func:`photo_crop` ("fractal" when none fits). Objects are pasted with
    :func:`feather_alpha` edges: the blend lies inside the boxes, outside them the canvas is
    the background. Then Gaussian noise of a std drawn in ``noise`` (pixel values) and JPEG at
    a quality drawn in ``jpeg_quality`` (None: no JPEG). ``seed``: anything
    ``numpy.random.default_rng`` takes; the same seed gives the same scene. ``same_class``:
    the objects are different images of one class instead.
    """
    images = np.asarray(images)
    labels = np.asarray(labels).reshape(-1)
    if images.ndim != 4 or images.shape[3] != 3 or len(images) != len(labels) or not len(images):
        raise ValueError("need a non-empty (N, h, w, 3) image pool with one label per image")
    low_side, high_side = (int(v) for v in _range(object_size, "object_size"))
    low_canvas, high_canvas = (int(v) for v in _range(canvas, "canvas"))
    if low_side < 1 or high_side > low_canvas:
        raise ValueError(f"object sides {object_size} must fit the smallest canvas {low_canvas}")
    if num_objects is not None and num_objects not in (1, 2, 3):
        raise ValueError(f"a photo-like scene holds 1 to 3 objects, got {num_objects}")
    _range(noise, "noise")
    rng = np.random.default_rng(seed)
    height, width = (int(v) for v in rng.integers(low_canvas, high_canvas + 1, 2))
    count = int(rng.integers(1, 4)) if num_objects is None else num_objects
    chosen = _choose_objects(labels, count, rng, same_class)
    boxes = _place_squares(rng.integers(low_side, high_side + 1, count), low_side, height,
                           width, rng)
    kind, pixels = _photo_like_background(photos, height, width, rng)
    scene = _paste_feathered(pixels.astype(np.float64), images, chosen, boxes, rng)
    image = _degrade(scene, noise, jpeg_quality, rng)
    return Scene(image, tuple(boxes), tuple(int(labels[i]) for i in chosen), kind, tuple(chosen))


def _choose_objects(labels: np.ndarray, count: int, rng: np.random.Generator,
                    same_class: bool = False) -> list[int]:
    """Pool indices of ``count`` objects of different classes (or, ``same_class``, different
    images of one class), drawn from ``rng``."""
    classes = np.unique(labels)
    if same_class:
        members = np.flatnonzero(labels == rng.choice(classes))
        if count > members.size:
            raise ValueError(f"{count} objects of one class need {count} images of it")
        return [int(i) for i in rng.choice(members, count, replace=False)]
    if count > len(classes):
        raise ValueError(f"{count} objects of different classes need {count} classes in the pool")
    chosen = []
    for c in rng.choice(classes, count, replace=False):
        members = np.flatnonzero(labels == c)
        chosen.append(int(members[rng.integers(members.size)]))
    return chosen


def _place_squares(sides: np.ndarray, low_side: int, height: int, width: int,
                   rng: np.random.Generator) -> list[Box]:
    """Boxes of squares with these ``sides``, :data:`PHOTO_GAP` apart; the sides shrink by a
    tenth (not below ``low_side``) until they fit."""
    while True:
        try:
            return _place([(int(s), int(s)) for s in sides], height, width, rng, PHOTO_GAP, 200)
        except ValueError:
            if (sides == low_side).all():
                raise
            sides = np.maximum(low_side, (sides * 0.9).astype(int))


def _photo_like_background(photos, height: int, width: int,
                           rng: np.random.Generator) -> tuple[str, np.ndarray]:
    """``("photo", crop)`` in about half the scenes when ``photos`` are given and a crop fits,
    else ``("fractal", texture)``; ``(height, width, 3)`` uint8."""
    if photos and rng.random() < 0.5:
        crop = photo_crop(photos, height, width, rng)
        if crop is not None:
            return "photo", crop[0]
    return "fractal", fractal_texture(height, width, rng)


def _paste_feathered(scene: np.ndarray, images: np.ndarray, chosen: list[int],
                     boxes: list[Box], rng: np.random.Generator) -> np.ndarray:
    """``scene`` ``(H, W, 3)`` float64 with each chosen pool image resized into its box and
    blended in with :func:`feather_alpha` edges of a drawn width (modified in place)."""
    for index, box in zip(chosen, boxes, strict=True):
        side = box.width
        obj = Image.fromarray(np.ascontiguousarray(images[index], dtype=np.uint8))
        obj = np.asarray(obj.resize((side, side), Image.Resampling.LANCZOS), np.float64)
        feather = int(rng.integers(_FEATHER[0], max(_FEATHER[0], min(_FEATHER[1], side // 8)) + 1))
        alpha = feather_alpha(side, side, feather)[..., None]
        region = scene[box.y0 : box.y1, box.x0 : box.x1]
        scene[box.y0 : box.y1, box.x0 : box.x1] = alpha * obj + (1.0 - alpha) * region
    return scene


def _degrade(scene: np.ndarray, noise: tuple[float, float], jpeg_quality,
             rng: np.random.Generator) -> np.ndarray:
    """Sensor noise of a std drawn in ``noise``, then JPEG at a quality drawn in
    ``jpeg_quality`` (None: none): ``(H, W, 3)`` uint8."""
    sigma = rng.uniform(*noise)
    scene = scene + sigma * rng.standard_normal(scene.shape)
    image = np.clip(np.rint(scene), 0, 255).astype(np.uint8)
    if jpeg_quality is None:
        return image
    low_q, high_q = (int(v) for v in _range(jpeg_quality, "jpeg_quality"))
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "JPEG", quality=int(rng.integers(low_q, high_q + 1)))
    return np.asarray(Image.open(buffer).convert("RGB"), np.uint8).copy()


@functools.lru_cache(maxsize=2)
def _pool(split: str, data_dir: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from sensitivity.model import data
    from sensitivity.model.train import TrainConfig

    if split == "test":  # the whole split: load_split's decoded copy (cached on disk)
        images, labels = data.load_split(data_dir, "test")
        pool = (images, labels, np.arange(len(labels)))
    else:
        paths, labels = data.list_images(data.split_dir(data_dir, "train"))
        # The trainer's own call, on positions instead of pixels: the same held-out rows.
        training, held_out = data.train_val_split(
            np.arange(len(paths)), labels, TrainConfig.val_size, TrainConfig.seed
        )
        indices = (training if split == "train" else held_out)[0]
        pool = (data.read_images([paths[i] for i in indices]), labels[indices], indices)
    for array in pool:
        array.flags.writeable = False
    return pool


def scene_pool(
    split: str, data_dir: str | os.PathLike
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The objects a scene set of ``split`` draws from: images ``(N, 32, 32, 3)`` uint8, labels
    ``(N,)`` and each image's index ``(N,)`` in its folder's
    :func:`sensitivity.model.data.list_images` order (read-only arrays, kept for the next call).

    "validation": the part of the training split the trainer holds out
    (:func:`sensitivity.model.data.train_val_split` with the trainer's default ``val_size`` and
    ``seed``: 5,000 images), decoding only those files; "train": the rest of the training split
    (45,000 images: for fitting); "test": the CIFAR-10 test split.
    """
    if split not in SPLIT_IDS:
        raise ValueError(f"unknown split {split!r}; choose one of {list(SPLIT_IDS)}")
    return _pool(split, str(Path(data_dir).resolve()))


def scene_set(
    split: str,
    n: int,
    *,
    data_dir: str | os.PathLike,
    photos_dir: str | os.PathLike | None = None,
    seed: int = 0,
) -> list[Scene]:
    """``n`` photo-like scenes (:func:`photo_like_scene`, default ranges) with objects from
    :func:`scene_pool` of ``split``; scene ``i`` uses the seed ``(seed, SPLIT_IDS[split], i)``,
    so the two splits never share a seed. ``photos_dir``: photographs for backgrounds (None or
    missing: fractal textures only). ``Scene.sources`` index the pool."""
    images, labels, _ = scene_pool(split, data_dir)
    photos = photo_regions(photos_dir)
    return [
        photo_like_scene(images, labels, seed=(seed, SPLIT_IDS[split], i), photos=photos)
        for i in range(n)
    ]


def kind_scenes(
    split: str,
    kinds: dict[str, dict],
    n: int,
    *,
    data_dir: str | os.PathLike,
    photos_dir: str | os.PathLike | None = None,
    seed: int = 0,
    stream: int = 100,
) -> list[tuple[str, Scene]]:
    """``n`` :func:`photo_like_scene` scenes of each kind of ``kinds`` (name -> the scene's
    keyword arguments: ranges, ``num_objects``, ``same_class``), objects from
    :func:`scene_pool` of ``split``, as ``(kind, scene)`` pairs; scene ``i`` of the ``k``-th
    kind uses the seed ``(seed, SPLIT_IDS[split], stream + k, i)``, apart from
    :func:`scene_set`'s and from another script's ``stream``."""
    images, labels, _ = scene_pool(split, data_dir)
    photos = photo_regions(photos_dir)
    return [
        (kind, photo_like_scene(images, labels, photos=photos, **options,
                                seed=(seed, SPLIT_IDS[split], stream + k, i)))
        for k, (kind, options) in enumerate(kinds.items()) for i in range(n)
    ]
