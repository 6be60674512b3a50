"""Does a map find the object? Measures of saliency methods on photo-like scenes.

Each scene (:func:`sensitivity.metrics.scenes.scene_set`) holds 1-3 objects of different
classes with known boxes. A method's map is computed once per object, with the class mask set
to that object's class, on the scene resized so that its longer side is ``side`` pixels (the
network is fully convolutional), and resized back onto the canvas. Per object (one row each):

- ``pointing``: the map's maximum lies in the object's box;
- ``mass``: share of the map's non-negative mass inside the box;
- ``discrimination`` (scenes of two or more objects): the box holds more of the map's mass
  than any other object's box (NaN for one-object scenes);
- ``strongest_ious``: IoU of the strongest box of :func:`sensitivity.imaging.objects.map_boxes`
  (the rule of :func:`sensitivity.imaging.objects.find_objects`) at each threshold of
  :data:`FRACTIONS`;
  ``corloc`` is the share of objects where it reaches 0.5 at the threshold chosen on the
  validation rows;
- ``largest_ious``: IoU of :func:`sensitivity.metrics.localisation.threshold_box` (the largest
  component) at each threshold, from which MaxBoxAcc is computed (Choe et al., CVPR 2020):
  for each IoU level the threshold is chosen on the validation rows and the box accuracy is
  measured at it on the test rows; MaxBoxAcc is the mean over the levels 0.3, 0.5 and 0.7.

Controls that ignore the model (:data:`CONTROLS`) are measured the same way; ``center`` is the
centre-point baseline of the pointing game.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from sensitivity.imaging.rules import method_label

CONTROLS = ("random", "center", "edge")
"""Maps that ignore the model: uniform noise, a centred Gaussian bump, Sobel edges."""

FRACTIONS = (0.0, 0.005, 0.01, 0.02, 0.03, 0.04) + tuple(i / 20 for i in range(1, 20))
"""Thresholds (fractions of the map's maximum or range) at which boxes are made: every 0.05,
and finer below 0.05 (Choe et al. step by 0.01 throughout; 0.05 costs a fifth and moves the
box accuracies by little, except for maps that are near zero off the object, such as those of
a model trained to localise, whose best threshold lies just above zero)."""

SIZE_BINS = (0.0, 0.04, 0.08, 0.16, 1.0)
"""Edges of the breakdown by object size: the object's box area over the canvas area."""

MEASURES = ("pointing", "mass", "discrimination", "corloc", "maxboxacc")
"""The summary's measures, all higher-is-better, 0..1."""


@dataclass(frozen=True)
class MethodSpec:
    """A method (or control) with options, written ``name`` or ``name:key=value,key=value``.

    Values are read as the registry declares each option (``sign``, ``scales`` and ``layer``
    too): ``gradcam:target_layer=group2``, ``cam:scales=0.75/1/1.5,sign=positive``,
    ``layercam:layer=position_probabilities``.
    """

    name: str
    options: dict = field(default_factory=dict)

    @property
    def label(self) -> str:
        """The spec as written, options in sorted order
        (:func:`sensitivity.imaging.rules.method_label`)."""
        return method_label(self.name, self.options)


def _parse_value(name: str, key: str, text: str):
    """The value of option ``key`` of method ``name`` written as ``text``: read as the
    registry declares it (:meth:`sensitivity.engine.choices.Option.read`, range-checked); ``sign``
    is a sign mode, ``scales`` a ``/``-separated list of factors and ``layer`` the target (an
    output target or a layer's name, checked by the method)."""
    from sensitivity.engine.choices import COMMON_OPTIONS, METHODS, SIGNS

    if key == "layer":
        return text
    if key == "sign":
        if text not in SIGNS:
            raise ValueError(f"sign must be one of {list(SIGNS)}, got {text!r}")
        return text
    if key == "scales":
        return tuple(float(part) for part in text.split("/"))
    option = {**COMMON_OPTIONS, **METHODS[name].options}.get(key)
    if option is None or option.kind is None:
        raise ValueError(f"method {name!r} has no option {key!r} that can be written as text")
    return option.check(option.read(text))


def parse_spec(text: str) -> MethodSpec:
    """A :class:`MethodSpec` from ``"name"`` or ``"name:key=value,..."``; ValueError if bad."""
    from sensitivity.engine.choices import METHODS

    name, _, rest = str(text).strip().partition(":")
    if name not in METHODS and name not in CONTROLS:
        raise ValueError(
            f"unknown method {name!r}; choose from {', '.join(METHODS)} or the controls "
            f"{', '.join(CONTROLS)}"
        )
    options = {}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"method option {item!r} is not key=value (in {text!r})")
        if name in CONTROLS:
            raise ValueError(f"the control {name!r} takes no options (in {text!r})")
        options[key.strip()] = _parse_value(name, key.strip(), value.strip())
    return MethodSpec(name, options)


def resize_maps(maps: np.ndarray, height: int, width: int) -> np.ndarray:
    """``(N, h, w)`` maps resized bilinearly to ``(N, height, width)`` float32."""
    from scipy.ndimage import zoom

    maps = np.asarray(maps, np.float32)
    if maps.shape[1:] == (height, width):
        return maps
    factors = (1.0, height / maps.shape[1], width / maps.shape[2])
    out = zoom(maps, factors, order=1, mode="nearest", grid_mode=True)
    return out[:, :height, :width].astype(np.float32)


def object_maps(model, image: np.ndarray, classes: Sequence[int], spec: MethodSpec,
                side: int | None, seed: int = 0) -> np.ndarray:
    """``(K, H, W)`` float32 maps of ``image`` ``(H, W, 3)`` (0..255), one per class of
    ``classes``, at the canvas's size; the map of each object is class-masked to its class.

    Methods run on the image resized so its longer side is ``side``; controls on the canvas.
    """
    from sensitivity.metrics.controls import center_map, edge_map, random_map

    height, width = image.shape[:2]
    count = len(classes)
    if spec.name == "random":
        return np.stack([random_map((height, width), seed=seed * 7 + k) for k in range(count)])
    if spec.name == "center":
        return np.repeat(center_map((height, width))[None], count, axis=0)
    if spec.name == "edge":
        return np.repeat(edge_map(image)[None], count, axis=0)
    num_classes = int(model.outputs[0].shape[-1])
    return weighted_maps(model, image, np.eye(num_classes, dtype=np.float32)[list(classes)],
                         spec, side)


def weighted_maps(model, image: np.ndarray, weights: np.ndarray, spec: MethodSpec,
                  side: int | None) -> np.ndarray:
    """``(K, H, W)`` float32 maps of ``image`` ``(H, W, 3)`` (0..255) by method ``spec``, one
    per row of class ``weights`` ``(K, classes)``, made on the image resized so its longer side
    is ``side`` and resized back to ``(H, W)``."""
    from sensitivity.engine.saliency import saliency
    from sensitivity.imaging.images import resize_to_side

    height, width = image.shape[:2]
    x = resize_to_side(image, side)
    maps = saliency(model, np.repeat(x[None], len(weights), axis=0), method=spec.name,
                    class_mask=np.asarray(weights, np.float32), **spec.options)
    return resize_maps(maps, height, width)


def object_rows(spec_label: str, scene_index: int, scene, maps: np.ndarray) -> list[dict]:
    """One row per object of ``scene`` with the measures of its map ``maps[k]``; the IoU
    arrays ``largest_ious`` and ``strongest_ious`` are ``(T,)`` over :data:`FRACTIONS`."""
    from sensitivity.imaging.discovery import iou
    from sensitivity.imaging.objects import map_boxes
    from sensitivity.metrics.localisation import mass_in_box, pointing_game, threshold_ious

    rows = []
    height, width = scene.image.shape[:2]
    for k, (box, label) in enumerate(zip(scene.boxes, scene.labels, strict=True)):
        saliency_map = maps[k]
        masses = [mass_in_box(saliency_map, b) for b in scene.boxes]
        others = masses[:k] + masses[k + 1 :]
        strongest = [map_boxes(saliency_map, f)[:1] for f in FRACTIONS]
        rows.append({
            "method": spec_label,
            "scene": scene_index,
            "object": k,
            "label": int(label),
            "objects": len(scene.boxes),
            "background": scene.background,
            "canvas": f"{height}x{width}",
            "object_area_fraction": box.area / (height * width),
            "pointing": float(pointing_game(saliency_map, box)),
            "mass": masses[k],
            "discrimination": float(masses[k] > max(others)) if others else math.nan,
            "largest_ious": threshold_ious([saliency_map], [box], FRACTIONS)[0],
            "strongest_ious": np.array([iou(b[0], box) if b else 0.0 for b in strongest]),
        })
    return rows


def measure(model, scenes: Sequence, specs: Sequence[MethodSpec], *, side: int | None,
            progress: Callable[[str], None] | None = None) -> list[dict]:
    """Rows of :func:`object_rows` for every spec and every object of every scene."""
    rows = []
    for spec in specs:
        if progress is not None:
            progress(spec.label)
        for i, scene in enumerate(scenes):
            maps = object_maps(model, scene.image, scene.labels, spec, side, seed=i)
            rows.extend(object_rows(spec.label, i, scene, maps))
    return rows


def box_scores(validation_rows: Sequence[dict], rows: Sequence[dict]) -> dict:
    """``{"maxboxacc": BoxAccuracy, "corloc": BoxAccuracy}`` of ``rows`` with each threshold
    chosen on ``validation_rows`` (:func:`sensitivity.metrics.localisation.box_accuracy_from_ious`):
    MaxBoxAcc from the largest component at IoU 0.3, 0.5, 0.7; CorLoc from the strongest box
    (the rule of :func:`sensitivity.imaging.objects.find_objects`) at IoU 0.5."""
    from sensitivity.metrics.localisation import box_accuracy_from_ious

    def ious(part, rule):
        return np.stack([r[f"{rule}_ious"] for r in part])

    return {
        "maxboxacc": box_accuracy_from_ious(
            ious(validation_rows, "largest"), ious(rows, "largest"), fractions=FRACTIONS),
        "corloc": box_accuracy_from_ious(
            ious(validation_rows, "strongest"), ious(rows, "strongest"), fractions=FRACTIONS,
            iou_thresholds=(0.5,)),
    }


def mean_and_error(values) -> tuple[float, float, int]:
    """Mean, standard error and count of the finite ``values`` (NaN, NaN, 0 if none)."""
    array = np.asarray(values, np.float64)
    array = array[np.isfinite(array)]
    if array.size == 0:
        return math.nan, math.nan, 0
    error = float(array.std(ddof=1) / math.sqrt(array.size)) if array.size > 1 else 0.0
    return float(array.mean()), error, int(array.size)


def summarise(test_rows: Sequence[dict], validation_rows: Sequence[dict] | None = None,
              bins: Sequence[float] | None = None) -> list[dict]:
    """Per method: mean, standard error and count of every measure of :data:`MEASURES`, and
    the thresholds of MaxBoxAcc and CorLoc, chosen on ``validation_rows`` of the same method
    (on ``test_rows`` themselves when None: the optimistic MaxBoxAcc of the paper; the
    entry's ``thresholds_from`` says which). With ``bins`` (edges of the object's area
    fraction), one entry per method and bin, with its ``size`` range."""
    out = []
    for method in dict.fromkeys(row["method"] for row in test_rows):
        rows = [r for r in test_rows if r["method"] == method]
        tuning = [r for r in validation_rows if r["method"] == method] if validation_rows else []
        edges = [(0.0, math.inf)] if bins is None else list(zip(bins[:-1], bins[1:], strict=True))
        for low, high in edges:
            part = [r for r in rows if low <= r["object_area_fraction"] < high]
            if not part:
                continue
            boxes = box_scores(tuning or rows, part)
            entry = {"method": method}
            if bins is not None:
                entry["size"] = f"{low:.2f}-{high:.2f}"
            for name in MEASURES:
                if name in boxes:
                    score = boxes[name]
                    entry[name], entry[f"{name}_se"] = score.mean, score.mean_standard_error
                    entry[f"{name}_n"] = score.count
                else:
                    values = [r[name] for r in part]
                    entry[name], entry[f"{name}_se"], entry[f"{name}_n"] = mean_and_error(values)
            entry["maxboxacc_thresholds"] = "/".join(
                f"{f:.2f}" for f in boxes["maxboxacc"].fractions)
            entry["corloc_threshold"] = float(boxes["corloc"].fractions[0])
            entry["thresholds_from"] = "validation" if tuning else "same rows"
            out.append(entry)
    return out


def format_summary(summary: Sequence[dict]) -> str:
    """The summary as a Markdown table: mean (standard error) per measure."""
    sized = bool(summary) and "size" in summary[0]
    head = ["method"] + (["object area"] if sized else []) + list(MEASURES) + [
        "n", "thresholds (CorLoc; MaxBoxAcc)"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for entry in summary:
        cells = [entry["method"]] + ([entry["size"]] if sized else [])
        for name in MEASURES:
            mean, error = entry[name], entry[f"{name}_se"]
            cells.append("-" if math.isnan(mean) else f"{mean:.3f} ({error:.3f})")
        cells.append(str(entry["pointing_n"]))
        cells.append(f"{entry['corloc_threshold']:.2f}; {entry['maxboxacc_thresholds']}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
