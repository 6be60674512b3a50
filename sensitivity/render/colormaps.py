"""Colour maps as NumPy lookup tables, for PNG export without a plotting library.

The sequential map is viridis and the diverging one a blue-white-orange scale; both are
readable with the common forms of colour blindness. Anchors are sampled from the published
scales and interpolated linearly in RGB.
"""

from __future__ import annotations

import numpy as np

_ANCHORS: dict[str, list[tuple[int, int, int]]] = {
    "viridis": [
        (68, 1, 84),
        (72, 40, 120),
        (62, 74, 137),
        (49, 104, 142),
        (38, 130, 142),
        (31, 158, 137),
        (53, 183, 121),
        (109, 205, 89),
        (180, 222, 44),
        (253, 231, 37),
    ],
    "cividis": [
        (0, 34, 78),
        (18, 53, 112),
        (59, 73, 108),
        (87, 92, 109),
        (112, 113, 115),
        (138, 134, 120),
        (165, 156, 116),
        (195, 180, 105),
        (225, 205, 85),
        (254, 232, 56),
    ],
    "greys": [(255, 255, 255), (0, 0, 0)],
    # Blue - white - orange (ColorBrewer PuOr-like, reversed so negative is blue).
    "diverging": [
        (33, 102, 172),
        (103, 169, 207),
        (209, 229, 240),
        (247, 247, 247),
        (253, 219, 199),
        (239, 138, 98),
        (178, 24, 43),
    ],
}

def plotly_scale(name: str) -> list[list]:
    """The map as a Plotly colour scale: ``[[position 0..1, "rgb(r,g,b)"], ...]``."""
    anchors = _ANCHORS[name]
    positions = np.linspace(0.0, 1.0, len(anchors))
    return [
        [float(p), f"rgb({r},{g},{b})"] for p, (r, g, b) in zip(positions, anchors, strict=True)
    ]


def apply_colormap(values: np.ndarray, name: str = "viridis") -> np.ndarray:
    """Map ``(H, W)`` values in 0..1 (clipped; NaN treated as 0) to ``(H, W, 3)`` uint8 RGB."""
    if name not in _ANCHORS:
        raise ValueError(f"unknown colour map {name!r}; choose from {sorted(_ANCHORS)}")
    anchors = np.asarray(_ANCHORS[name], dtype=np.float64)
    v = np.clip(np.nan_to_num(np.asarray(values, dtype=np.float64)), 0.0, 1.0)
    position = v * (len(anchors) - 1)
    low = np.floor(position).astype(int)
    high = np.minimum(low + 1, len(anchors) - 1)
    t = (position - low)[..., None]
    rgb = anchors[low] * (1.0 - t) + anchors[high] * t
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def scale_for_display(
    saliency_map: np.ndarray, signed: bool, vmax: float | None = None
) -> np.ndarray:
    """Values to 0..1 for a colour map: ``[0, vmax]`` for maps >= 0, ``[-vmax, vmax]`` if signed.

    ``vmax`` defaults to the map's largest magnitude (1 for an all-zero map).
    """
    m = np.asarray(saliency_map, dtype=np.float64)
    top = float(np.max(np.abs(m))) if vmax is None else float(vmax)
    top = top if top > 0 else 1.0
    return (m / top + 1.0) / 2.0 if signed else m / top
