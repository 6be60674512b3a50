"""How :func:`sensitivity.imaging.objects.find_objects` makes boxes: :class:`ObjectRule`, the
default rule and a model card's. Dataclasses alone (no NumPy, SciPy or TensorFlow), so that the
page's controls can read a card's rule before the libraries are imported."""

from __future__ import annotations

from dataclasses import dataclass, field

EVIDENCE_ACTIVATIONS = ("softmax", "sigmoid")
"""How a position's class logits become probabilities for a class's evidence: a softmax over
the classes, or each class's own sigmoid (for a model trained per position with a binary loss,
such as wrn-16-3-scenes, even though its whole-image head is a softmax)."""


@dataclass(frozen=True)
class ObjectRule:
    """How :func:`sensitivity.imaging.objects.find_objects` makes boxes: the map's method and
    options, the analysis side (longer side, pixels), the threshold as a fraction of the map's
    maximum, and the least probability of a class that is looked for when no classes are given,
    read at ``evidence_side`` pixels (None: at ``side``), and with ``sides`` at each analysis
    side too (:attr:`evidence_sides`, a class's highest counting), through
    ``evidence_activation`` per position (:data:`EVIDENCE_ACTIVATIONS`; None: the head's,
    sigmoid for a sigmoid head and else softmax). With ``sides``, each class is boxed at
    whichever of ``side`` and ``sides`` its evidence, read at each, is highest (an object far
    larger or smaller than the model's training images is seen best at another side); ``()``:
    at ``side`` alone. A class's boxes scoring under ``box_floor`` times its strongest box's
    score are dropped (fragments beside the object; 0: none)."""

    method: str = "gradcam"
    options: dict = field(default_factory=dict)
    side: int = 96
    fraction: float = 0.15
    min_probability: float = 0.5
    evidence_side: int | None = None
    evidence_activation: str | None = None
    sides: tuple[int, ...] = ()
    box_floor: float = 0.0

    @property
    def label(self) -> str:
        """The map's method with its options (:func:`method_label`)."""
        return method_label(self.method, self.options)

    @property
    def analysis_sides(self) -> tuple[int, ...]:
        """``side`` and ``sides``, each once, ``side`` first."""
        return tuple(dict.fromkeys((self.side, *self.sides)))

    @property
    def evidence_sides(self) -> tuple[int, ...]:
        """The sides at which the classes to look for are read: ``evidence_side`` (None:
        ``side``) and, with ``sides``, each of :attr:`analysis_sides`; each once."""
        first = self.evidence_side or self.side
        return tuple(dict.fromkeys((first, *(self.analysis_sides if self.sides else ()))))


def method_label(method: str, options: dict) -> str:
    """``method``, or ``method:key=value,...`` with the options sorted and a tuple's values
    joined by ``/`` (``cam:probability=True,scales=0.8/1.0``): the form in which
    ``benchmark-maps --methods`` reads a method."""

    def text(value) -> str:
        return "/".join(text(v) for v in value) if isinstance(value, tuple) else str(value)

    if not options:
        return method
    return method + ":" + ",".join(f"{key}={text(value)}" for key, value in sorted(options.items()))


DEFAULT_RULE = ObjectRule()
"""The rule chosen on 120 validation scenes (``python benchmarks/tune_localisation.py``, see
``benchmarks/README.md``): Grad-CAM tied the best pointing and had the best mass, class
discrimination and CorLoc; sides 96, 112 and 128 were within a standard error on pointing and
96 was best on CorLoc and MaxBoxAcc; 0.15 maximised CorLoc of the strongest box."""


def card_rule(card) -> ObjectRule:
    """The rule of a :class:`sensitivity.model.cards.ModelCard` (its ``object_rule``), else
    :data:`DEFAULT_RULE`; TensorFlow-free, for the page's controls."""
    pairs = dict(card.object_rule)
    if not pairs:
        return DEFAULT_RULE
    return ObjectRule(**{**pairs, "options": dict(pairs.get("options", ()))})
