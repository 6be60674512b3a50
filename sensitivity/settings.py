"""The dashboard's view settings and their round trip through the URL's query string.

A hosted demo's link reopens the same view: :meth:`ViewSettings.to_query` gives the settings
that differ from the defaults as strings, :func:`settings_from_query` reads them back, ignoring
(and reporting) anything malformed, so a hand-edited link can never break the page.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field

from sensitivity.choices import BASELINES, LAYER_REDUCTIONS, SMOOTHGRAD_VARIANTS
from sensitivity.choices import CHANNEL_REDUCTIONS as _ENGINE_CHANNEL_REDUCTIONS
from sensitivity.choices import METHODS as _ENGINE_METHODS
from sensitivity.choices import SIGNS as _ENGINE_SIGNS
from sensitivity.labels import NUM_CLASSES

METHODS = tuple(_ENGINE_METHODS)
SIGNS = tuple(_ENGINE_SIGNS)
CHANNEL_REDUCTIONS = tuple(c for c in _ENGINE_CHANNEL_REDUCTIONS if c != "none")  # one map
COLOUR_SCALES = ("viridis", "cividis", "greys")
COMPARE_MODES = ("none", "layers", "classes", "methods", "images")
SIZES = (32, 64, 96, 128, 160, 224)


@dataclass(frozen=True)
class ViewSettings:
    """Everything that decides what the page computes and shows."""

    # What is differentiated (changing these recomputes the map).
    method: str = "gradient"
    layer: str = "logits"
    layer_reduction: str = "sum"
    channel: int | None = None
    classes: tuple[int, ...] = ()  # empty: the predicted class
    sign: str = "abs"
    reduce_channels: str = "max"
    size: int = 32
    samples: int = 32
    noise: float = 0.15
    smoothgrad_variant: str = "mean"
    steps: int = 32
    baseline: str = "black"
    patch: int = 4
    # How it is shown (changing these never recomputes).
    k: int = 100
    opacity: float = 0.5
    colour_scale: str = "viridis"
    shared_scale: bool = True
    boxes: bool = False
    faithfulness: bool = False
    compare: str = "none"
    compare_items: tuple[str, ...] = field(default_factory=tuple)

    def to_query(self) -> dict[str, str]:
        """Settings that differ from the defaults, as query-string values."""
        defaults = ViewSettings()
        query = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value == getattr(defaults, f.name):
                continue
            if isinstance(value, tuple):
                query[f.name] = ",".join(str(v) for v in value)
            elif isinstance(value, bool):
                query[f.name] = "1" if value else "0"
            else:
                query[f.name] = str(value)
        return query


_CHOICES = {
    "method": METHODS,
    "layer_reduction": LAYER_REDUCTIONS,
    "sign": SIGNS,
    "reduce_channels": CHANNEL_REDUCTIONS,
    "smoothgrad_variant": SMOOTHGRAD_VARIANTS,
    "baseline": BASELINES,
    "colour_scale": COLOUR_SCALES,
    "compare": COMPARE_MODES,
}
_INT_RANGES = {
    "size": (8, 512),
    "samples": (1, 256),
    "steps": (2, 512),
    "patch": (1, 64),
    "k": (1, 512 * 512),
}
_FLOAT_RANGES = {"noise": (0.0, 1.0), "opacity": (0.0, 1.0)}


def _parse(name: str, text: str):
    if name in _CHOICES:
        if text not in _CHOICES[name]:
            raise ValueError(f"one of {', '.join(_CHOICES[name])}")
        return text
    if name in _INT_RANGES:
        low, high = _INT_RANGES[name]
        value = int(text)
        if not low <= value <= high:
            raise ValueError(f"a whole number from {low} to {high}")
        return value
    if name in _FLOAT_RANGES:
        low, high = _FLOAT_RANGES[name]
        value = float(text)
        if not low <= value <= high:
            raise ValueError(f"a number from {low} to {high}")
        return value
    if name == "channel":
        value = int(text)
        if value < 0:
            raise ValueError("a channel index of 0 or more")
        return value
    if name == "classes":
        values = tuple(sorted({int(v) for v in text.split(",") if v.strip()}))
        if any(not 0 <= v < NUM_CLASSES for v in values):
            raise ValueError(f"class indices from 0 to {NUM_CLASSES - 1}")
        return values
    if name in ("shared_scale", "boxes", "faithfulness"):
        if text not in ("0", "1"):
            raise ValueError("0 or 1")
        return text == "1"
    if name == "layer":
        if not text or len(text) > 200:
            raise ValueError("a layer name")
        return text
    if name == "compare_items":
        return tuple(v for v in text.split(",") if v)[:8]
    raise KeyError(name)


def settings_from_query(query: Mapping[str, str]) -> tuple[ViewSettings, list[str]]:
    """Settings from query-string values; returns them and a message per ignored value."""
    values: dict = {}
    problems: list[str] = []
    names = {f.name for f in dataclasses.fields(ViewSettings)}
    for name, raw in query.items():
        if name not in names:
            continue
        text = raw[-1] if isinstance(raw, list) else str(raw)
        try:
            values[name] = _parse(name, text)
        except (ValueError, KeyError) as exc:
            problems.append(f"ignored {name}={text[:40]!r} from the link: expected {exc}")
    return ViewSettings(**values), problems
