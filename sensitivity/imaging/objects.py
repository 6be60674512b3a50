"""Object discovery as one call: :func:`find_objects` boxes the objects a classifier sees.

The rule is the model card's (``localisation``, :func:`rule_for`), else :data:`DEFAULT_RULE`,
each chosen on the validation scenes of the localisation benchmark (``python -m sensitivity
benchmark-maps``, see ``benchmarks/README.md``): the whole image is resized so that its longer
side is ``rule.side`` pixels (or, with ``rule.sides``, for each class whichever of those sides
its evidence is highest at), a class-masked map of ``rule.method`` is computed for each class,
its positive part is thresholded at ``rule.fraction`` of its maximum, and each 8-connected
component of the kept pixels gives a box, scored by the share of the map's positive mass on it
times the class's evidence (:func:`class_evidence`, read at ``rule.evidence_side``).
Overlapping boxes (IoU > :data:`NMS_IOU`) keep only the higher score.

A class's evidence (:func:`class_evidence`): for a model with a "feature map -> global
average pooling -> Dense" head (the shipped WRN), each position of the feature map is
classified on its own (the head applied to that position's features, a softmax per
position, or a sigmoid per class where ``rule.evidence_activation`` says so, as for a model
trained per position), and a class's evidence is its largest per-position probability. When no
classes are given, those whose evidence reaches ``rule.min_probability`` are looked for
(:func:`candidate_classes`), a class's evidence being its highest over the sides
``rule.evidence_sides`` (the longer side at ``rule.evidence_side`` pixels, by default
``rule.side``, and with ``rule.sides`` at each analysis side too: an object far larger or
smaller than the training images is recognised at another side). On the validation scenes the
per-position evidence found the objects' classes with F1 0.55 against 0.36 for the whole
image's softmax, which a picture of several small objects spreads thin; on test scenes of
objects of many sizes, the highest over the sides found them with F1 0.49 against 0.34 at one
side for the WRN-16-3 and 0.70 against 0.53 for wrn-16-3-scenes
(``benchmarks/tune-classes.md``). Other models fall back to the whole image's softmax.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from sensitivity.imaging.discovery import Box, as_map, iou, mass_boxes
from sensitivity.imaging.rules import DEFAULT_RULE, EVIDENCE_ACTIVATIONS, ObjectRule, card_rule

__all__ = ["DEFAULT_RULE", "FoundObject", "ObjectRule", "best_side", "card_rule", "find_objects",
           "rule_for", "strong_boxes"]

NMS_IOU = 0.5
"""Boxes overlapping a higher-scoring box by more than this IoU are dropped."""


def rule_for(model) -> ObjectRule:
    """The rule of ``model``'s card (:func:`card_rule`)."""
    from sensitivity.model.cards import model_card

    return card_rule(model_card(model))


class FoundObject(NamedTuple):
    """A box in the image's own pixel coordinates (``x1``, ``y1`` exclusive), its class,
    the class's name, a score (0..1), the method whose map made it (with its options:
    :attr:`ObjectRule.label`) and the side (pixels) the image was analysed at."""

    box: Box
    class_index: int
    label: str
    score: float
    method: str
    side: int


def map_boxes(saliency_map: np.ndarray, fraction: float) -> list[Box]:
    """Boxes of the 8-connected components of ``map >= fraction * max(map)`` (positive part),
    each scored by its share of the map's positive mass, strongest first; ``[]`` if the map
    has no positive value. ``saliency_map``: ``(H, W)``; ``fraction`` in 0..1."""
    values = np.maximum(as_map(saliency_map), 0.0)
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in 0..1, got {fraction!r}")
    return mass_boxes(values, values >= fraction * values.max())


def _to_image(box: Box, scale_y: float, scale_x: float, height: int, width: int) -> Box:
    """A box on the analysed image scaled onto the original, rounded outwards."""
    return Box(
        max(0, int(np.floor(box.x0 * scale_x))),
        max(0, int(np.floor(box.y0 * scale_y))),
        min(width, int(np.ceil(box.x1 * scale_x))),
        min(height, int(np.ceil(box.y1 * scale_y))),
        box.score,
    )


def class_evidence(model, image: np.ndarray, activation: str | None = None) -> np.ndarray:
    """``(K,)`` float64: how sure the model is that each class is somewhere in ``image``
    ``(H, W, 3)`` (0..255): for a CAM head the largest per-position probability (``activation``
    of :data:`EVIDENCE_ACTIVATIONS`; None: sigmoid for a sigmoid head, else softmax; see the
    module docstring; a model's position head, when it has one, gives it whatever
    ``activation``: :func:`sensitivity.methods.localising.position_probabilities`), else the
    image's probabilities (:func:`sensitivity.engine.inference.predict`)."""
    from sensitivity.engine import gradients as engine
    from sensitivity.engine.inference import predict
    from sensitivity.methods.localising import cam_head, position_probabilities

    if activation not in (None, *EVIDENCE_ACTIVATIONS):
        raise ValueError(f"activation must be one of {EVIDENCE_ACTIVATIONS} or None, "
                         f"got {activation!r}")
    try:
        layer, kernel, bias = cam_head(model)
    except ValueError:
        return predict(model, image[None])[0].astype(np.float64)
    features, _ = engine.feature_forward(model, layer, image[None].astype(np.float32))
    if activation is None:
        activation = "sigmoid" if engine.head_of(model) == "sigmoid" else "softmax"
    per_position = position_probabilities(model, features, kernel, bias, activation)[0]
    return per_position.reshape(-1, kernel.shape[1]).max(axis=0)


def candidate_classes(evidence: np.ndarray, count: int, min_probability: float) -> list[int]:
    """At most ``count`` classes whose :func:`class_evidence` (``(K,)``, or ``(S, K)`` read at
    ``S`` sides: a class's highest counts) is at least ``min_probability``, most probable first;
    the most probable class always."""
    evidence = np.max(np.atleast_2d(evidence), axis=0)
    order = np.argsort(-evidence, kind="stable")[:count]
    return [int(c) for c in order if evidence[c] >= min_probability] or [int(order[0])]


def strong_boxes(boxes: list[Box], floor: float) -> list[Box]:
    """``boxes`` (one class's, strongest first; possibly none) without those scoring under
    ``floor`` times the first one's score."""
    return [box for box in boxes if box.score >= floor * boxes[0].score]


def best_side(evidence_by_side: dict[int, np.ndarray], class_index: int) -> int:
    """The side (a key of ``evidence_by_side``, side -> ``(K,)`` :func:`class_evidence` read
    there) at which class ``class_index``'s evidence is highest; the first such on a tie."""
    return max(evidence_by_side, key=lambda side: evidence_by_side[side][class_index])


def find_objects(
    model,
    image: np.ndarray,
    *,
    classes=None,
    max_objects: int = 3,
    rule: ObjectRule | None = None,
    class_names=None,
) -> list[FoundObject]:
    """Boxes around the objects of ``classes`` in ``image``, strongest first.

    ``image``: ``(H, W, 3)`` pixel values 0..255 (or ``(H, W)`` grey), any size.
    ``classes``: a class index, a list of them, or None for the classes the model finds
    (:func:`candidate_classes`: at most ``max_objects``, each at least
    ``rule.min_probability``; the most probable one always). Boxes are in the image's own
    pixel coordinates. ``rule`` defaults to the model's (:func:`rule_for`), ``class_names`` to
    its card's (:func:`sensitivity.model.cards.model_card`).
    """
    from sensitivity.engine.saliency import saliency
    from sensitivity.imaging.images import as_rgb_array, resize_to_side
    from sensitivity.model.cards import model_card

    if isinstance(max_objects, bool) or not isinstance(max_objects, (int, np.integer)) or (
        max_objects < 1
    ):
        raise ValueError(f"max_objects must be a positive whole number, got {max_objects!r}")
    rule = rule_for(model) if rule is None else rule
    rgb = as_rgb_array(np.asarray(image))
    height, width = rgb.shape[:2]
    analysed = {side: resize_to_side(rgb, side) for side in rule.analysis_sides}
    evidence_at = {}  # side -> (K,) class evidence read there

    def evidence(side: int) -> np.ndarray:
        if side not in evidence_at:
            x = analysed[side] if side in analysed else resize_to_side(rgb, side)
            evidence_at[side] = class_evidence(model, x, rule.evidence_activation)
        return evidence_at[side]

    sure = evidence(rule.evidence_side or rule.side)
    if classes is None:
        read = np.stack([evidence(side) for side in rule.evidence_sides])
        chosen = candidate_classes(read, max_objects, rule.min_probability)
    else:
        chosen = _asked_classes(classes, len(sure))
    names = list(class_names or model_card(model).class_names)
    if len(analysed) > 1:
        by_side = {side: evidence(side) for side in analysed}
        side_of = {c: best_side(by_side, c) for c in chosen}
    else:
        side_of = dict.fromkeys(chosen, rule.side)
    candidates = []
    for side, x in analysed.items():
        here = [c for c in chosen if side_of[c] == side]
        if not here:
            continue
        maps = saliency(model, np.repeat(x[None], len(here), axis=0), method=rule.method,
                        class_mask=np.eye(len(sure), dtype=np.float32)[here], **rule.options)
        h, w = x.shape[:2]
        candidates += [
            FoundObject(
                _to_image(box, height / h, width / w, height, width),
                c,
                names[c] if c < len(names) else str(c),
                float(box.score * sure[c]),
                rule.label,
                side,
            )
            for c, class_map in zip(here, maps, strict=True)
            for box in strong_boxes(map_boxes(class_map, rule.fraction)[:max_objects],
                                    rule.box_floor)
        ]
    return _suppressed(candidates)[:max_objects]


def _asked_classes(classes, num_classes: int) -> list[int]:
    """``classes`` (an index or a list of them) as a list; ValueError if not indices of
    ``0..num_classes - 1``."""
    requested = np.atleast_1d(np.asarray(classes))
    if not np.issubdtype(requested.dtype, np.integer):
        raise ValueError(f"classes must be class indices, got {classes!r}")
    chosen = [int(c) for c in requested]
    bad = [c for c in chosen if not 0 <= c < num_classes]
    if bad:
        raise ValueError(f"class {bad[0]} is out of range: classes are 0..{num_classes - 1}")
    return chosen


def _suppressed(candidates: list[FoundObject]) -> list[FoundObject]:
    """The candidates strongest first, each dropped that overlaps a stronger kept one by more
    than :data:`NMS_IOU` (non-maximum suppression across classes)."""
    kept: list[FoundObject] = []
    for found in sorted(candidates, key=lambda found: -found.score):
        if all(iou(found.box, other.box) <= NMS_IOU for other in kept):
            kept.append(found)
    return kept
