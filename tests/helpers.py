"""Small synthetic data for tests."""

from __future__ import annotations

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
