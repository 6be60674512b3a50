"""Static pictures for the page: the photo, the network's input, the overlay and the top-k mask.

Plain ``(h, w, 3)`` uint8 RGB arrays a page shows as images (no plotting library): a browser
draws an image in a blink, where each interactive chart costs it a layout and a script run.
The page keeps one interactive chart per map, the heatmap, whose hover gives values and ranks.

Small arrays (the network's input and maps, 32x32 by default) are enlarged by a whole factor
with nearest-neighbour sampling, so that each pixel stays a sharp square; a photograph is
reduced by a whole factor with a box filter. Boxes ``(x0, y0, x1, y1[, score])`` (pixel edges
of the array drawn, x1 and y1 exclusive) are outlined in orange, as on the heatmap.
:func:`data_url` encodes a picture for the page, which sends it inside its own message.
"""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from sensitivity.render.colormaps import apply_colormap, scale_for_display

BOX_COLOUR = (230, 159, 0)  # Okabe-Ito orange, as the heatmap's boxes (#E69F00)
SIDE = 384  # enlarged pictures are at least this many pixels a side


def _outline(picture: Image.Image, boxes, scale: float) -> Image.Image:
    if not boxes:
        return picture
    draw = ImageDraw.Draw(picture)
    width = max(2, round(min(picture.size) / 150))
    for box in boxes:
        x0, y0, x1, y1 = (float(v) * scale for v in tuple(box)[:4])
        draw.rectangle([round(x0), round(y0), max(round(x0), round(x1) - 1),
                        max(round(y0), round(y1) - 1)], outline=BOX_COLOUR, width=width)
    return picture


def enlarged(rgb: np.ndarray, boxes=(), side: int = SIDE) -> np.ndarray:
    """An ``(H, W, 3)`` array (0..255) enlarged by the smallest whole factor that makes its
    longer side at least ``side``, each pixel a square; ``boxes`` in its pixels."""
    rgb = np.clip(np.rint(np.asarray(rgb, dtype=np.float64)), 0, 255).astype(np.uint8)
    height, width = rgb.shape[:2]
    factor = max(1, -(-side // max(height, width)))  # ceiling division
    picture = Image.fromarray(rgb).resize((width * factor, height * factor),
                                          Image.Resampling.NEAREST)
    return np.asarray(_outline(picture, boxes, factor))


def photo(image: np.ndarray, boxes=(), max_side: int = SIDE) -> np.ndarray:
    """An ``(H, W, 3)`` photograph (0..255) reduced by the smallest whole factor that brings
    its longer side to at most ``max_side`` (box filter), ``boxes`` in the photo's pixels."""
    rgb = np.clip(np.asarray(image), 0, 255).astype(np.uint8)
    step = max(1, -(-max(rgb.shape[:2]) // max_side))
    picture = Image.fromarray(rgb)
    if step > 1:
        picture = picture.reduce(step)
    return np.asarray(_outline(picture, boxes, 1.0 / step))


def overlay(
    image: np.ndarray,
    saliency_map: np.ndarray,
    *,
    opacity: float = 0.5,
    signed: bool = False,
    colour_scale: str = "viridis",
    vmax: float | None = None,
    boxes=(),
    side: int = SIDE,
) -> np.ndarray:
    """The ``(H, W, 3)`` image (0..255) under the ``(H, W)`` map, coloured as the heatmap and
    the PNG export (range ``[0, vmax]``, or ``[-vmax, vmax]`` when ``signed``; ``vmax`` defaults
    to the map's largest magnitude) and blended with ``opacity`` (0: the image alone, 1: the
    map alone), enlarged."""
    values = scale_for_display(saliency_map, signed, vmax)
    colours = apply_colormap(values, "diverging" if signed else colour_scale).astype(np.float64)
    alpha = float(np.clip(opacity, 0.0, 1.0))
    base = np.clip(np.asarray(image, dtype=np.float64), 0, 255)
    return enlarged((1.0 - alpha) * base + alpha * colours, boxes, side)


def mask(top_k: np.ndarray, boxes=(), side: int = SIDE) -> np.ndarray:
    """An ``(H, W)`` boolean mask black on white (as the original experiment showed it),
    enlarged."""
    gray = np.where(np.asarray(top_k, dtype=bool), 0, 255).astype(np.uint8)
    return enlarged(np.repeat(gray[..., None], 3, axis=2), boxes, side)


def data_url(picture: np.ndarray, fmt: str = "PNG") -> str:
    """A ``data:`` URL of an ``(h, w, 3)`` uint8 picture, as PNG (fast compression: a third of
    the time of the default level, for a few kB more) or JPEG (quality 90, for photographs).

    Given such a URL, ``st.image`` puts it in the page's message as it is: the browser decodes it
    at once instead of fetching each picture from the server in a request of its own.
    """
    buffer = io.BytesIO()
    options = {"compress_level": 1} if fmt == "PNG" else {"quality": 90}
    Image.fromarray(np.asarray(picture, np.uint8)).save(buffer, format=fmt, **options)
    return f"data:image/{fmt.lower()};base64,{base64.b64encode(buffer.getvalue()).decode()}"


def reliability_diagram(panels: list[tuple[str, dict]], side: int = 320) -> np.ndarray:
    """Reliability diagrams side by side: for each ``(title, table)`` (a
    :func:`sensitivity.trust.calibration.reliability` table) a square panel of ``side`` pixels with
    the accuracy of each confidence bin as a bar (blue), the bin's mean confidence as an
    orange tick, the diagonal of perfect calibration and the axes 0..1. ``(H, W, 3)`` uint8."""
    margin, top = 44, 28
    width = len(panels) * (side + margin) + margin // 2
    picture = Image.new("RGB", (width, side + top + margin), "white")
    draw = ImageDraw.Draw(picture)
    font = ImageFont.load_default(size=13)
    for p, (title, table) in enumerate(panels):
        x0, y1 = margin + p * (side + margin), top + side

        def at(u: float, v: float, x0=x0, y1=y1) -> tuple[float, float]:
            return x0 + u * side, y1 - v * side

        edges = table["edges"]
        for lo, hi, acc, conf, n in zip(edges[:-1], edges[1:], table["accuracy"],
                                        table["confidence"], table["count"], strict=True):
            if n == 0:
                continue
            draw.rectangle([at(lo, acc), at(hi, 0)], fill=(86, 180, 233), outline=(0, 114, 178))
            draw.line([at(lo, conf), at(hi, conf)], fill=BOX_COLOUR, width=3)
        draw.line([at(0, 0), at(1, 1)], fill=(120, 120, 120), width=1)
        draw.rectangle([at(0, 1), at(1, 0)], outline="black")
        for tick in (0.0, 0.5, 1.0):
            draw.text((at(tick, 0)[0] - 8, y1 + 4), f"{tick:g}", fill="black", font=font)
            draw.text((x0 - 26, at(0, tick)[1] - 7), f"{tick:g}", fill="black", font=font)
        draw.text((x0, 6), title, fill="black", font=font)
        draw.text((x0 + side / 2 - 130, y1 + 20), "top p bins: bars accuracy, orange mean top p",
                  fill="black", font=font)
    return np.asarray(picture)
