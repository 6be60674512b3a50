"""The dashboard's view settings and their round trip through the URL's query string.

A hosted demo's link reopens the same view: :meth:`ViewSettings.to_query` gives the settings
that differ from the defaults as strings, :func:`settings_from_query` reads them back. Every
value is checked against its declaration (:data:`VIEW_OPTIONS`, and for the methods' options
the registry :data:`sensitivity.engine.choices.METHODS`): a number out of range is clamped, anything
else malformed or unknown is ignored, each with a message, so a hand-edited link can never
break the page. :func:`option_controls` says which controls the page draws for a method's
options, :func:`method_options` what the page passes to the method.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from sensitivity.engine.choices import CHANNEL_REDUCTIONS as _ENGINE_CHANNEL_REDUCTIONS
from sensitivity.engine.choices import (
    COMMON_OPTIONS,
    DEFAULT_METHOD,
    MAX_SIDE,
    METHODS,
    MIN_SIDE,
    OUTPUT_TARGETS,
    Option,
    shown_options,
)
from sensitivity.engine.choices import SIGNS as _ENGINE_SIGNS

SIGNS = tuple(_ENGINE_SIGNS)
CHANNEL_REDUCTIONS = tuple(c for c in _ENGINE_CHANNEL_REDUCTIONS if c != "none")  # one map
COLOUR_SCALES = ("viridis", "cividis", "greys")
COMPARE_MODES = ("none", "layers", "classes", "methods", "models", "images", "randomised")
SIZES = (32, 64, 96, 128, 160, 224)
"""The analysis sizes the page offers a fully convolutional model, besides its native size."""

VIEW_OPTIONS: dict[str, Option] = {
    "layer": Option("logits", "the output or an inner layer, by name", kind="layer"),
    "layer_reduction": COMMON_OPTIONS["layer_reduction"],
    "channel": COMMON_OPTIONS["channel"],
    "sign": Option("abs", "sign mode", kind="choice", choices=SIGNS),
    "reduce_channels": Option("max", "how RGB becomes one value", kind="choice",
                              choices=CHANNEL_REDUCTIONS),
    "size": Option(None, "side of the network's input (none: the model's native size)",
                   kind="int", minimum=MIN_SIDE, maximum=MAX_SIDE, optional=True),
    "k": Option(100, "pixels in the top-k mask", kind="int", minimum=1, maximum=1024),
    "opacity": Option(0.5, "overlay opacity", kind="float", minimum=0.0, maximum=1.0,
                      step=0.05),
    "colour_scale": Option("viridis", "colour scale", kind="choice", choices=COLOUR_SCALES),
    "shared_scale": Option(True, "one colour scale across panels", kind="bool"),
    "boxes": Option(False, "boxes around discovered objects", kind="bool"),
    "faithfulness": Option(False, "the faithfulness panel", kind="bool"),
    "compare": Option("none", "what to compare side by side", kind="choice",
                      choices=COMPARE_MODES),
}
"""The page's own settings that a link carries, declared like the methods' options (the
method, classes and compared items are checked apart)."""


@dataclass(frozen=True)
class ViewSettings:
    """Everything that decides what the page computes and shows."""

    # What is differentiated (changing these recomputes the map).
    model: str = ""  # a model's name (its file stem); empty: the operator's default model
    method: str = DEFAULT_METHOD
    layer: str = VIEW_OPTIONS["layer"].default
    layer_reduction: str = VIEW_OPTIONS["layer_reduction"].default
    channel: int | None = VIEW_OPTIONS["channel"].default
    classes: tuple[int, ...] = ()  # empty: the predicted class
    sign: str = VIEW_OPTIONS["sign"].default
    reduce_channels: str = VIEW_OPTIONS["reduce_channels"].default
    size: int | None = VIEW_OPTIONS["size"].default
    """Side of the network's input, pixels; None: the model's native size (its card's), the
    page's default, since a classifier is far less sure of a photo's class away from it (the
    CIFAR-10 WRN on eagle.jpg: bird 0.76 at 32 px, 0.29 at 96). The page offers
    :func:`page_sizes`; the boxes come from :func:`sensitivity.imaging.objects.find_objects` on the
    whole photo at its own validated size instead."""
    options: dict[str, object] = field(default_factory=dict)
    """Values of the methods' shown options (:func:`sensitivity.engine.choices.shown_options`) that
    differ from their page defaults, by name; see :meth:`option`."""
    # How it is shown (changing these never recomputes).
    k: int = VIEW_OPTIONS["k"].default
    opacity: float = VIEW_OPTIONS["opacity"].default
    colour_scale: str = VIEW_OPTIONS["colour_scale"].default
    shared_scale: bool = VIEW_OPTIONS["shared_scale"].default
    boxes: bool = VIEW_OPTIONS["boxes"].default
    faithfulness: bool = VIEW_OPTIONS["faithfulness"].default
    compare: str = VIEW_OPTIONS["compare"].default
    compare_items: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        shown = shown_options()
        unknown = sorted(set(self.options) - set(shown))
        if unknown:
            raise ValueError(f"no method shows the options {unknown}")
        changed = {name: value for name, value in sorted(self.options.items())
                   if value != shown[name].initial}
        object.__setattr__(self, "options", changed)

    def option(self, name: str) -> object:
        """The value of the shown method option ``name`` (its page default unless set)."""
        return self.options.get(name, shown_options()[name].initial)

    def to_query(self, native_size: int | None = None) -> dict[str, str]:
        """Settings that differ from the defaults, as query-string values; the size is left
        out when it is the model's ``native_size``."""
        defaults = ViewSettings(size=native_size)
        query = {}
        for name in view_fields():
            value = getattr(self, name)
            if value == getattr(defaults, name):
                continue
            if isinstance(value, tuple):
                query[name] = ",".join(str(v) for v in value)
            elif name in VIEW_OPTIONS:
                query[name] = VIEW_OPTIONS[name].format(value)
            else:
                query[name] = str(value)
        shown = shown_options()
        query.update({name: shown[name].format(value) for name, value in self.options.items()})
        return query


def page_sizes(native_size: int, fixed: bool = False,
               rule_side: int | None = None) -> tuple[int, ...]:
    """The analysis sizes the page offers a model of ``native_size``: that side alone for a
    model that takes no other (``fixed``), else :data:`SIZES`, the native size and
    ``rule_side`` (the side of its ``find_objects`` rule), ascending."""
    if fixed:
        return (native_size,)
    return tuple(sorted({*SIZES, native_size} | ({rule_side} if rule_side else set())))


def offered_size(size: int | None, sizes: tuple[int, ...], native_size: int) -> int:
    """The offered size the page uses for ``size`` (None: ``native_size``): the nearest of
    ``sizes``, the smaller on a tie."""
    if size is None:
        return native_size
    return min(sizes, key=lambda offered: (abs(offered - size), offered))


def view_fields() -> tuple[str, ...]:
    """The names of the settings besides the methods' options (``ViewSettings.options``)."""
    return tuple(f.name for f in dataclasses.fields(ViewSettings) if f.name != "options")


def _read_special(name: str, text: str):
    """The settings that are not plain options: the model, the method, classes and compared
    items. A model name is only checked for its form here; the page checks that it exists."""
    if name == "model":
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,79}", text):
            raise ValueError("expected a model's name (letters, digits, '_', '.', '-')")
        return text
    if name == "method":
        if text not in METHODS:
            raise ValueError(f"expected one of {', '.join(METHODS)}")
        return text
    if name == "classes":
        items = [v.strip() for v in text.split(",") if v.strip()]
        if not all(v.isdigit() for v in items):
            raise ValueError("expected class indices (whole numbers from 0; the model's card "
                             "says how many classes it has)")
        return tuple(sorted({int(v) for v in items}))
    return tuple(v for v in text.split(",") if v)[:8]  # compare_items


def settings_from_query(query: Mapping[str, str | list[str]]) -> tuple[ViewSettings, list[str]]:
    """Settings from query-string values; returns them and a message per value that was
    clamped into its range or ignored (malformed, or no such setting)."""
    values: dict = {}
    options: dict = {}
    problems: list[str] = []
    fields = view_fields()
    shown = shown_options()
    for name, raw in query.items():
        if isinstance(raw, list) and not raw:
            continue
        text = raw[-1] if isinstance(raw, list) else str(raw)
        quoted = f"{name[:40]}={text[:40]!r}"
        spec = VIEW_OPTIONS.get(name) if name in fields else shown.get(name)
        if name not in fields and spec is None:
            problems.append(f"ignored {quoted} from the link: no such setting")
            continue
        target = values if name in fields else options
        try:
            if spec is None:
                target[name] = _read_special(name, text)
                continue
            value = spec.read(text)
            target[name] = spec.check(value)
        except ValueError as exc:
            problems.append(f"ignored {quoted} from the link: {exc}")
            continue
        if target[name] != value:
            problems.append(f"{quoted} from the link is outside {spec.minimum} to "
                            f"{spec.maximum}: using {target[name]}")
    return ViewSettings(**values, options=options), problems


@dataclass(frozen=True)
class Control:
    """A page control of one method option: the Streamlit function that draws it (``widget``:
    ``"slider"``, ``"selectbox"`` or ``"checkbox"``), its session-state ``key``, ``label``,
    ``help`` text and the widget's other keyword ``arguments``."""

    name: str
    widget: str
    key: str
    label: str
    help: str
    arguments: dict


def option_key(name: str) -> str:
    """The session-state key of the control of the shown method option ``name``."""
    return f"w_option_{name}"


def option_controls(method: str, values: Mapping[str, object] | None = None) -> list[Control]:
    """The controls of ``method``'s shown options, in their declared order; with the options'
    current ``values`` (by name), not those of an option whose ``shown_with`` switch is off
    (CAM's exponent while its per-position probability is off)."""
    controls = []
    for name, option in METHODS[method].options.items():
        if not option.shown or (option.shown_with and values is not None
                                and not values.get(option.shown_with)):
            continue
        if option.kind in ("int", "float"):
            widget = "slider"
            arguments = {"min_value": option.minimum, "max_value": option.maximum}
            if option.step is not None:
                arguments["step"] = option.step
        elif option.kind == "choice":
            widget, arguments = "selectbox", {"options": option.choices}
        else:
            widget, arguments = "checkbox", {}
        controls.append(Control(name, widget, option_key(name), option.caption,
                                option.description, arguments))
    return controls


def method_options(settings: ViewSettings, method: str | None = None) -> dict[str, object]:
    """The options the page passes to ``method`` (default: the chosen one): its shown options'
    values and, for an inner layer, the layer reduction and channel."""
    method = method or settings.method
    options: dict[str, object] = {}
    if settings.layer not in OUTPUT_TARGETS:
        options["layer_reduction"] = settings.layer_reduction
        options["channel"] = settings.channel
    for name, option in METHODS[method].options.items():
        if option.shown:
            options[name] = settings.option(name)
    return options
