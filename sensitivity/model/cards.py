"""What the library knows of a model: its class names, native input size and output head.

A model file's card (``NAME.json``, :mod:`sensitivity.model.io`) names the classes
(``classes``), the side of the images it was trained on (``input_size``, pixels), whether it
takes images of that side only (``input_fixed``, default false: fully convolutional), the range of
the pixel values it takes (``input_range``: always ``[0, 255]``, any normalisation is inside the
model), optionally its head (``head``, :data:`HEADS`) and the rule by which
:func:`sensitivity.imaging.objects.find_objects` boxes objects with it (``localisation``:
``method``, ``side``, ``fraction``, ``min_probability``, optional ``evidence_side``,
``evidence_activation``, ``sides``, ``box_floor`` and ``options``, chosen on validation scenes
for that model) and how well each method's maps localise with it (``measured_localisation``:
``side``, ``scenes`` and ``methods``, :class:`MeasuredLocalisation`), besides its data,
accuracy and sha256.
:func:`sensitivity.model.io.load_model` reads it into a :class:`ModelCard` and attaches that
to the model it loads; :func:`model_card` is what the library asks. A model built in memory
has a default card: ``"class 0"``, ``"class 1"``, ... for its outputs, the side of its input
when that is fixed (else :data:`sensitivity.engine.choices.NATIVE_SIZE`), and the head its
graph ends in.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, fields
from pathlib import Path

from sensitivity.imaging.rules import EVIDENCE_ACTIVATIONS, ObjectRule

INPUT_RANGE = (0.0, 255.0)
"""The pixel values every model takes (the library feeds them; normalisation is the model's)."""

_CARDS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class MeasuredLocalisation:
    """A card's ``measured_localisation``: the pointing game accuracy and CorLoc (both 0..1,
    class-masked) of methods' maps on the test scenes of ``python -m sensitivity
    benchmark-maps``, the images analysed at ``side`` pixels. ``methods``: ``(label, pointing,
    CorLoc)`` triples, a label being a method, or a method and its options in the form of
    :func:`sensitivity.imaging.rules.method_label` (``cam:probability=True``). ``scenes``: how
    they were measured, in words (how many scenes, the methods' settings)."""

    side: int
    scenes: str
    methods: tuple[tuple[str, float, float], ...]

    def figures(self, label: str) -> tuple[float, float] | None:
        """``(pointing, CorLoc)`` of the method ``label``, None if not measured."""
        return next(((p, c) for name, p, c in self.methods if name == label), None)


@dataclass(frozen=True)
class ModelCard:
    """The facts about a model the library uses, and those it reports."""

    class_names: tuple[str, ...]
    native_size: int
    """Side of the images the model was trained on, pixels."""
    head: str = "logits"
    """What the last layer outputs (:data:`HEADS`)."""
    name: str = ""
    data: str = ""
    """Where its training images came from (free text)."""
    accuracy: float | None = None
    """Its test accuracy (0..1), when the card gives it."""
    sha256: str | None = None
    fixed_size: bool = False
    """Whether the model takes only ``native_size`` x ``native_size`` images."""
    object_rule: tuple[tuple[str, object], ...] = ()
    """The card's ``localisation`` rule as ``(key, value)`` pairs (options as pairs too);
    empty: :data:`sensitivity.imaging.objects.DEFAULT_RULE`."""
    measured: MeasuredLocalisation | None = None
    """How well the methods' maps localise with this model, when the card says."""

    @property
    def num_classes(self) -> int:
        """The number of outputs (classes)."""
        return len(self.class_names)

    @property
    def multi_label(self) -> bool:
        """True for a sigmoid head: each class has its own probability, they need not sum to 1."""
        return self.head == "sigmoid"


HEADS = ("logits", "softmax", "sigmoid")
"""What a model's last layer outputs: logits, or the softmax or sigmoid of its logits."""


def card_from_json(raw: dict, model_file: str | Path, model=None) -> ModelCard:
    """A :class:`ModelCard` from a card's JSON; ``ValueError`` naming ``model_file`` when a field
    is missing or wrong. With the loaded ``model``, also checked against it (as many classes as
    outputs, the input size of a model with a fixed input; the head, filled in from its graph
    when the card does not say). Reading a card alone never imports TensorFlow."""
    where = f"model card of {model_file}"
    classes = raw.get("classes")
    if (not isinstance(classes, list) or not classes
            or not all(isinstance(c, str) and c.strip() for c in classes)):
        raise ValueError(f"{where}: 'classes' must be a list of class names (one per output)")
    if len(set(classes)) != len(classes):
        raise ValueError(f"{where}: 'classes' repeats a name")
    size = raw.get("input_size")
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"{where}: 'input_size' must be the native side in pixels, got {size!r}")
    fixed = raw.get("input_fixed", False)
    if not isinstance(fixed, bool):
        raise ValueError(f"{where}: 'input_fixed' must be true or false, got {fixed!r}")
    value_range = raw.get("input_range", list(INPUT_RANGE))
    if not isinstance(value_range, list) or [float(v) for v in value_range] != list(INPUT_RANGE):
        raise ValueError(f"{where}: 'input_range' must be [0, 255] (pixel values; any "
                         f"normalisation belongs inside the model), got {value_range!r}")
    head = raw.get("head")
    if head is not None and head not in HEADS:
        raise ValueError(f"{where}: 'head' must be one of {', '.join(HEADS)}, got {head!r}")
    if model is not None:
        from sensitivity.engine import gradients as engine

        outputs = engine.weight_size(model, engine.Target("logits"))
        if outputs != len(classes):
            raise ValueError(f"{where}: it names {len(classes)} classes but the model has "
                             f"{outputs} outputs")
        sides = {int(side) for side in engine.input_signature(model).shape[1:3] if side}
        if sides and sides != {size}:
            raise ValueError(f"{where}: 'input_size' is {size} but the model takes only "
                             f"{'x'.join(map(str, engine.input_signature(model).shape[1:3]))} "
                             "images")
        if head not in (None, engine.head_of(model)):
            raise ValueError(f"{where}: it says the head is {head!r} but the model's last layer "
                             f"outputs {engine.head_of(model)!r}")
        head = engine.head_of(model)
        if sides and not fixed:
            raise ValueError(f"{where}: the model takes only {size}x{size} images, so the card "
                             "must say 'input_fixed': true")
    data = raw.get("data", "")
    accuracy = raw.get("test_accuracy", raw.get("accuracy"))
    object_rule = _object_rule(raw.get("localisation"), where)
    measured = _measured(raw.get("measured_localisation"), where)
    return ModelCard(
        class_names=tuple(classes),
        native_size=size,
        fixed_size=fixed,
        head=head or "logits",
        name=str(raw.get("name") or Path(model_file).stem),
        data=str(data.get("source", "") if isinstance(data, dict) else data),
        accuracy=None if accuracy is None else float(accuracy),
        sha256=raw.get("sha256"),
        object_rule=object_rule,
        measured=measured,
    )


_RULE_KEYS = {f.name for f in fields(ObjectRule)} | {"chosen_on"}


def _object_rule(raw, where: str) -> tuple[tuple[str, object], ...]:
    """The card's ``localisation`` rule as sorted ``(key, value)`` pairs; ValueError if bad."""
    if raw is None:
        return ()
    from sensitivity.engine.choices import MAX_SIDE, METHODS, MIN_SIDE

    if not isinstance(raw, dict) or set(raw) - _RULE_KEYS:
        raise ValueError(f"{where}: 'localisation' must be an object with keys among "
                         f"{', '.join(sorted(_RULE_KEYS))}")
    rule = {key: value for key, value in raw.items() if key != "chosen_on"}
    if rule.get("method") not in METHODS:
        raise ValueError(f"{where}: 'localisation' needs a 'method' among {', '.join(METHODS)}")
    for key in ("side", "evidence_side"):  # a key the card leaves out takes ObjectRule's default
        if key in rule and not _is_side(rule[key]):
            raise ValueError(f"{where}: the localisation {key!r} must be "
                             f"{MIN_SIDE}..{MAX_SIDE} pixels, got {rule[key]!r}")
    for key in ("fraction", "min_probability", "box_floor"):
        if key in rule and not _is_fraction(rule[key]):
            raise ValueError(f"{where}: the localisation {key!r} must be in 0..1, "
                             f"got {rule[key]!r}")
    sides = rule.get("sides", [])
    if not isinstance(sides, list) or not all(_is_side(side) for side in sides):
        raise ValueError(f"{where}: the localisation 'sides' must be a list of sides, each "
                         f"{MIN_SIDE}..{MAX_SIDE} pixels, got {sides!r}")
    if "sides" in rule:
        rule["sides"] = tuple(sides)
    if rule.get("evidence_activation") not in (None, *EVIDENCE_ACTIVATIONS):
        raise ValueError(f"{where}: the localisation 'evidence_activation' must be one of "
                         f"{', '.join(EVIDENCE_ACTIVATIONS)}")
    options = rule.get("options", {})
    if not isinstance(options, dict):
        raise ValueError(f"{where}: the localisation 'options' must be an object")
    rule["options"] = tuple(sorted((key, tuple(value) if isinstance(value, list) else value)
                                   for key, value in options.items()))
    return tuple(sorted(rule.items()))


def _is_side(value) -> bool:
    """Whether ``value`` is a whole number of pixels an analysis side may be."""
    from sensitivity.engine.choices import MAX_SIDE, MIN_SIDE

    return isinstance(value, int) and not isinstance(value, bool) and MIN_SIDE <= value <= MAX_SIDE


def _is_fraction(value) -> bool:
    """Whether ``value`` is a number in 0..1."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1


def _measured(raw, where: str) -> MeasuredLocalisation | None:
    """The card's ``measured_localisation``; ValueError if bad."""
    if raw is None:
        return None
    from sensitivity.engine.choices import MAX_SIDE, METHODS, MIN_SIDE

    what = f"{where}: 'measured_localisation'"
    if not isinstance(raw, dict) or set(raw) != {"side", "scenes", "methods"}:
        raise ValueError(f"{what} must be an object with keys methods, scenes and side")
    side, scenes, methods = raw["side"], raw["scenes"], raw["methods"]
    if not _is_side(side):
        raise ValueError(f"{what}: 'side' must be {MIN_SIDE}..{MAX_SIDE} pixels, got {side!r}")
    if not isinstance(scenes, str) or not scenes.strip():
        raise ValueError(f"{what}: 'scenes' must say how the figures were measured")
    if not isinstance(methods, dict) or not methods:
        raise ValueError(f"{what}: 'methods' must map method labels to their figures")
    rows = []
    for label, figures in methods.items():
        if label.split(":")[0] not in METHODS:
            raise ValueError(f"{what}: {label!r} is not a method among {', '.join(METHODS)}")
        if (not isinstance(figures, dict) or set(figures) != {"pointing", "corloc"}
                or not all(_is_fraction(v) for v in figures.values())):
            raise ValueError(f"{what}: {label!r} needs 'pointing' and 'corloc' in 0..1, "
                             f"got {figures!r}")
        rows.append((label, float(figures["pointing"]), float(figures["corloc"])))
    return MeasuredLocalisation(side, scenes.strip(), tuple(rows))


def attach_card(model, card: ModelCard) -> None:
    """Make ``card`` the one :func:`model_card` gives for ``model``."""
    _CARDS[model] = card


def model_card(model) -> ModelCard:
    """The card attached to ``model``, else the default one derived from the model (see the
    module's docstring)."""
    card = _CARDS.get(model)
    if card is None:
        card = default_card(model)
        _CARDS[model] = card
    return card


def default_card(model) -> ModelCard:
    """The card of a model that came without one: ``"class 0"``.. for its outputs, its fixed
    input side (or :data:`sensitivity.engine.choices.NATIVE_SIZE`), its graph's head."""
    from sensitivity.engine import gradients as engine
    from sensitivity.engine.choices import NATIVE_SIZE

    outputs = engine.weight_size(model, engine.Target("logits"))
    height, width = engine.input_signature(model).shape[1:3]
    fixed = height is not None and height == width
    return ModelCard(
        class_names=tuple(f"class {i}" for i in range(outputs)),
        native_size=int(height) if fixed else NATIVE_SIZE,
        fixed_size=fixed,
        head=engine.head_of(model),
        name=getattr(model, "name", ""),
    )
