"""Files a person takes away: heatmap PNG, map ``.npy``, probabilities CSV, settings JSON."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence

import numpy as np
from PIL import Image

from sensitivity.render.colormaps import apply_colormap, scale_for_display


def heatmap_png(
    saliency_map: np.ndarray,
    *,
    signed: bool = False,
    colour_scale: str = "viridis",
    vmax: float | None = None,
    scale: int = 8,
) -> bytes:
    """The ``(H, W)`` map as a PNG, each pixel drawn as a ``scale x scale`` square."""
    values = scale_for_display(saliency_map, signed, vmax)
    rgb = apply_colormap(values, "diverging" if signed else colour_scale)
    image = Image.fromarray(rgb)
    if scale > 1:
        image = image.resize((rgb.shape[1] * scale, rgb.shape[0] * scale), Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def mask_png(mask: np.ndarray, scale: int = 8) -> bytes:
    """A boolean ``(H, W)`` mask as a black-on-white PNG."""
    gray = np.where(np.asarray(mask, dtype=bool), 0, 255).astype(np.uint8)
    image = Image.fromarray(gray, "L")
    if scale > 1:
        image = image.resize(
            (gray.shape[1] * scale, gray.shape[0] * scale), Image.Resampling.NEAREST
        )
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def map_npy(saliency_map: np.ndarray) -> bytes:
    """The map as ``.npy`` bytes (float32; loads with ``np.load(..., allow_pickle=False)``)."""
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(saliency_map, dtype=np.float32), allow_pickle=False)
    return buffer.getvalue()


def probabilities_csv(probabilities: np.ndarray, class_names: Sequence[str]) -> bytes:
    """``class,index,probability`` rows for ``(K,)`` probabilities of the classes
    ``class_names`` (the model's card's), in label order."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["class", "index", "probability"])
    for i, (name, p) in enumerate(zip(class_names, np.reshape(probabilities, -1), strict=True)):
        writer.writerow([name, i, f"{float(p):.6f}"])
    return buffer.getvalue().encode()


def settings_json(settings: dict) -> bytes:
    """Settings as indented JSON."""
    return (json.dumps(settings, indent=2, sort_keys=True, default=list) + "\n").encode()
