"""Small synthetic data for tests."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
from PIL import Image

from sensitivity.labels import CLASS_NAMES


def class_pattern(label: int, size: int = 32) -> np.ndarray:
    """A distinct, easily learnt ``(size, size, 3)`` uint8 image for each class."""
    rng = np.random.default_rng(label)
    colour = rng.integers(0, 256, 3)
    image = np.zeros((size, size, 3), np.uint8) + colour.astype(np.uint8)
    stripe = (label * size) // len(CLASS_NAMES)
    image[:, stripe : stripe + size // 8] = 255 - colour
    return image


def write_class_folders(root: Path, per_class: int = 4, splits=("train", "test")) -> Path:
    """Class folders of PNG images under ``root/<split>/<class>/``; returns ``root``."""
    rng = np.random.default_rng(0)
    for split in splits:
        for label, name in enumerate(CLASS_NAMES):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                noise = rng.integers(-20, 21, (32, 32, 3))
                pixels = np.clip(class_pattern(label).astype(int) + noise, 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i:04d}.png")
    return root


class _BarsParser(HTMLParser):
    def __init__(self):
        super().__init__()
        self.rows: list[dict] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        style = dict(attrs).get("style") or ""
        if tag == "tr":
            self.rows.append({"bold": "font-weight" in style, "cells": [], "bar": None})
        elif tag == "td":
            self._cell = []
        elif tag == "div" and self.rows:
            width = re.search(r"(?:^|;)width:([0-9.]+)%", style)
            colour = re.search(r"background:(#[0-9A-Fa-f]{6})", style)
            self.rows[-1]["bar"] = (float(width.group(1)), colour.group(1))

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            self.rows[-1]["cells"].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def probability_bars_rows(html: str) -> list[dict]:
    """Rows of :func:`sensitivity.report.probability_bars_html` as read back from its HTML:
    ``{"class", "percent" (the text shown), "bar" (width in %), "colour", "bold"}``."""
    parser = _BarsParser()
    parser.feed(html)
    rows = []
    for row in parser.rows:
        name, _, shown = row["cells"]
        assert shown.endswith("%"), shown
        width, colour = row["bar"]
        rows.append({"class": name, "percent": float(shown[:-1]), "bar": width,
                     "colour": colour, "bold": row["bold"]})
    return rows
