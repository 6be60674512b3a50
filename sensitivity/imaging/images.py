"""Reading images and preparing them for the network.

:func:`load_image` turns a path, raw bytes or a file-like object into an ``(H, W, 3)`` uint8 RGB
array; :func:`preprocess` makes the network's input as the original experiment did: the
centred square, resized with antialiasing, float32 pixel values in 0..255.
"""

from __future__ import annotations

import io
import os
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from sensitivity.engine.choices import MIN_SIDE

MAX_PIXELS = 40_000_000
"""Largest image (width x height) that is decoded; larger ones raise :class:`ImageError`."""

MAX_BYTES = 20 * 1024 * 1024
"""Largest encoded file that is read (the dashboard's upload limit, ``server.maxUploadSize``)."""

# Pillow's own guard against decompression bombs, set deliberately: it raises above twice this.
Image.MAX_IMAGE_PIXELS = MAX_PIXELS

BACKGROUND = (255, 255, 255)
"""Colour that transparent pixels are composited onto (white, as a browser shows them)."""


class ImageError(ValueError):
    """The input is not an image this program can read; the message says why."""


Source = str | os.PathLike | bytes | bytearray | memoryview | BinaryIO


def _read_bytes(source: Source) -> bytes:
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    elif isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if not os.path.isfile(path):
            raise ImageError(f"no such image file: {path}")
        if os.path.getsize(path) > MAX_BYTES:
            raise ImageError(f"{path} is larger than {MAX_BYTES // 2**20} MB")
        with open(path, "rb") as fh:
            data = fh.read()
    elif hasattr(source, "read"):
        data = source.read(MAX_BYTES + 1)
        if not isinstance(data, (bytes, bytearray)):
            raise ImageError("the file-like object must be opened in binary mode")
        data = bytes(data)
    else:
        raise ImageError(f"cannot read an image from a {type(source).__name__}")
    if not data:
        raise ImageError("the file is empty")
    if len(data) > MAX_BYTES:
        raise ImageError(f"the file is larger than {MAX_BYTES // 2**20} MB")
    return data


def _to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode to 8-bit RGB: 16-bit and float scaled, alpha composited on white."""
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") or values.max(initial=0) > 255 else 255.0
        if mode == "F" and values.max(initial=0) <= 1.0:
            top = 1.0
        gray = np.clip(np.rint(values * (255.0 / top)), 0, 255).astype(np.uint8)
        return Image.fromarray(gray, "L").convert("RGB")
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif mode in ("LA", "La", "PA", "RGBa"):
        image = image.convert("RGBA")
    if image.mode == "RGBA":
        background = Image.new("RGBA", image.size, BACKGROUND + (255,))
        return Image.alpha_composite(background, image).convert("RGB")
    if image.mode == "RGB" and image.info.get("transparency") is not None:
        return _to_rgb(image.convert("RGBA"))
    if image.mode != "RGB":
        return image.convert("RGB")
    return image


def load_image(source: Source) -> np.ndarray:
    """Decode an image to an ``(H, W, 3)`` uint8 RGB array.

    ``source`` is a path, the file's bytes, or a binary file-like object. EXIF orientation is
    applied, alpha is composited onto white, 16-bit images are scaled (not clipped), and of an
    animation the first frame is taken. Anything that is not a decodable image, or is larger
    than :data:`MAX_PIXELS` pixels or :data:`MAX_BYTES` bytes, raises :class:`ImageError`.
    """
    data = _read_bytes(source)
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            if width < 1 or height < 1:
                raise ImageError("the image has no pixels")
            if width * height > MAX_PIXELS:
                raise ImageError(
                    f"the image is {width}x{height} pixels; the limit is "
                    f"{MAX_PIXELS / 1e6:.0f} megapixels"
                )
            image.seek(0)
            image.load()
            image = ImageOps.exif_transpose(image) or image
            rgb = _to_rgb(image)
            array = np.asarray(rgb, dtype=np.uint8).copy()
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(
            "this file is not an image in a format that can be read (JPEG, PNG, WebP, BMP, GIF...)"
        ) from None
    except Image.DecompressionBombError:
        raise ImageError(f"the image has more than {MAX_PIXELS / 1e6:.0f} megapixels") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(
            f"the image is damaged or truncated and cannot be decoded ({exc})"
        ) from None
    if array.ndim != 3 or array.shape[2] != 3:
        raise ImageError(f"decoded to an unexpected shape {array.shape}")
    return array


def as_rgb_array(image: np.ndarray) -> np.ndarray:
    """An ``(H, W)``, ``(H, W, 1)``, ``(H, W, 3)`` or ``(H, W, 4)`` array as float32 ``(H, W, 3)``.

    Values are taken as 0..255; a fourth channel is treated as alpha and composited on white.
    """
    array = np.asarray(image)
    if array.dtype == bool or not np.issubdtype(array.dtype, np.number):
        raise ImageError(f"an image array must be numeric, got dtype {array.dtype}")
    array = array.astype(np.float32)
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise ImageError(f"expected an (H, W, 3) image, got shape {np.shape(image)}")
    if array.shape[0] < 1 or array.shape[1] < 1:
        raise ImageError("the image has no pixels")
    if not np.isfinite(array).all():
        raise ImageError("the image holds NaN or infinite values")
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    elif array.shape[2] == 4:
        alpha = np.clip(array[..., 3:], 0, 255) / 255.0
        array = array[..., :3] * alpha + np.asarray(BACKGROUND, np.float32) * (1.0 - alpha)
    return array


def center_square(image: np.ndarray) -> np.ndarray:
    """The largest centred square of an ``(H, W, ...)`` array."""
    height, width = image.shape[:2]
    side = min(height, width)
    top = (height - side) // 2
    left = (width - side) // 2
    return image[top : top + side, left : left + side]


def center_square_box(height: int, width: int) -> tuple[int, int, int, int]:
    """``(x0, y0, x1, y1)`` of the centred square of an image of this size, in its pixels."""
    side = min(height, width)
    x0 = (width - side) // 2
    y0 = (height - side) // 2
    return x0, y0, x0 + side, y0 + side


def resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize an ``(H, W, 3)`` float array to ``(height, width, 3)`` float32 with antialiasing.

    Lanczos resampling whose kernel widens when shrinking (Pillow's float mode, per channel),
    so no aliasing and no rounding to 8 bits; results clipped to 0..255.
    """
    if image.shape[:2] == (height, width):
        return image.astype(np.float32, copy=True)
    channels = [
        np.asarray(
            Image.fromarray(np.ascontiguousarray(image[..., c], dtype=np.float32), "F").resize(
                (width, height), Image.Resampling.LANCZOS
            )
        )
        for c in range(image.shape[2])
    ]
    return np.clip(np.stack(channels, axis=-1), 0.0, 255.0).astype(np.float32)


def analysis_shape(height: int, width: int, side: int | None) -> tuple[int, int]:
    """``(h, w)`` of an image resized so that its longer side is ``side`` (aspect kept, at
    least :data:`MIN_SIDE` pixels a side); ``side=None`` keeps the size."""
    if side is None:
        return int(height), int(width)
    scale = side / max(height, width)
    return max(MIN_SIDE, round(height * scale)), max(MIN_SIDE, round(width * scale))


def resize_to_side(image: np.ndarray, side: int | None) -> np.ndarray:
    """``image`` ``(H, W, 3)`` (0..255) resized (:func:`resize`) to :func:`analysis_shape`:
    its longer side ``side`` pixels (None: as it is); ``(h, w, 3)`` float32."""
    return resize(np.asarray(image, np.float32), *analysis_shape(*image.shape[:2], side))


def preprocess(image: np.ndarray, size: int = 32) -> np.ndarray:
    """The network's input: centred square, antialiased resize to ``size x size``.

    ``image``: ``(H, W, 3)`` (or grayscale / RGBA) pixel values in 0..255, any numeric dtype.
    Returns ``(size, size, 3)`` float32 in 0..255.
    """
    if not isinstance(size, (int, np.integer)) or size < MIN_SIDE:
        raise ValueError(f"size must be an integer of at least {MIN_SIDE}, got {size!r}")
    return resize(center_square(as_rgb_array(image)), int(size), int(size))
