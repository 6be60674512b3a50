"""A corpus of hostile and odd uploads, generated in memory (nothing is downloaded or stored).

:func:`corpus` returns :class:`Case` objects: a file name, its bytes, and what a correct reader
does with it: decode it to an image of a known shape, or refuse it with a message.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass

import numpy as np
from PIL import Image

from sensitivity.imaging.images import MAX_BYTES


@dataclass(frozen=True)
class Case:
    name: str
    data: bytes
    shape: tuple[int, int, int] | None  # the decoded shape, or None: must be refused
    refusal: str = ""  # a word the refusal message must contain


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def gradient_rgb(height: int, width: int) -> np.ndarray:
    rows = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    cols = np.linspace(0, 255, width, dtype=np.float32)[None, :]
    return np.stack([rows + 0 * cols, 0 * rows + cols, np.full((height, width), 90.0)],
                    axis=-1).astype(np.uint8)


def png_bomb(side: int) -> bytes:
    """A valid PNG of ``side`` x ``side`` black grey pixels that compresses to a few kilobytes."""
    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)  # 8-bit greyscale
    compressor = zlib.compressobj(9)
    row = b"\x00" * (side + 1)  # filter byte + pixels
    body = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body)
            + chunk(b"IEND", b""))


def exif_rotated_jpeg() -> bytes:
    """A 20 wide, 10 high JPEG whose EXIF says 'rotate 90 degrees': it shows 10 wide, 20 high."""
    image = Image.fromarray(gradient_rgb(10, 20))
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 CW to display
    return encode(image, "JPEG", exif=exif.tobytes())


def animation(fmt: str) -> bytes:
    frames = [Image.fromarray(np.full((16, 24, 3), value, np.uint8)) for value in (30, 200)]
    return encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)


def corpus() -> list[Case]:
    """Every hostile or odd case named in the reliability issue, and a few more."""
    rgb = Image.fromarray(gradient_rgb(24, 32))
    jpeg = encode(rgb, "JPEG", quality=90)
    png = encode(rgb, "PNG")
    palette = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    palette.info["transparency"] = 0
    rgba = Image.fromarray(np.dstack([gradient_rgb(24, 32), np.full((24, 32), 128, np.uint8)]))
    la = Image.fromarray(np.dstack([np.full((24, 32), 60, np.uint8),
                                    np.full((24, 32), 200, np.uint8)]), mode="LA")
    sixteen = Image.fromarray(np.full((12, 14), 40000, np.uint16))
    cmyk = Image.new("CMYK", (18, 10), (0, 255, 255, 0))
    return [
        Case("empty.png", b"", None, "empty"),
        Case("notes.txt.png", b"just some text, not a picture\n" * 20, None, "not an image"),
        Case("page.html.jpg", b"<!doctype html><html><script>alert(1)</script></html>", None,
             "not an image"),
        Case("truncated.jpg", jpeg[: len(jpeg) // 2], None, "truncated"),
        Case("truncated.png", png[: len(png) // 2], None, "truncated"),
        Case("bomb.png", png_bomb(20_000), None, "megapixels"),
        Case("too-big.png", png + b"\x00" * (MAX_BYTES + 1), None, "larger than"),
        Case("one-pixel.png", encode(Image.new("RGB", (1, 1), (10, 20, 30)), "PNG"), (1, 1, 3)),
        Case("row.png", encode(Image.fromarray(gradient_rgb(1, 10_000)), "PNG"), (1, 10_000, 3)),
        Case("column.png", encode(Image.fromarray(gradient_rgb(10_000, 1)), "PNG"),
             (10_000, 1, 3)),
        Case("sixteen-bit.png", encode(sixteen, "PNG"), (12, 14, 3)),
        Case("cmyk.jpg", encode(cmyk, "JPEG"), (10, 18, 3)),
        Case("palette-transparent.png", encode(palette, "PNG"), (24, 32, 3)),
        Case("rgba.png", encode(rgba, "PNG"), (24, 32, 3)),
        Case("la.png", encode(la, "PNG"), (24, 32, 3)),
        Case("grey.png", encode(rgb.convert("L"), "PNG"), (24, 32, 3)),
        Case("animated.gif", animation("GIF"), (16, 24, 3)),
        Case("animated.webp", animation("WEBP"), (16, 24, 3)),
        Case("rotated.jpg", exif_rotated_jpeg(), (20, 10, 3)),
        Case('<img src=x onerror="alert(1)"><script>alert(2)</script>.png', png, (24, 32, 3)),
    ]
