"""The sidebar's controls and the page's settings: from the link, through the widgets, back
into the link. Streamlit and the settings registry only: drawn before TensorFlow is imported,
so that on a cold start the browser lays them out while the server imports."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import streamlit as st

from sensitivity.engine.choices import (
    LAYER_REDUCTIONS,
    METHODS,
    NATIVE_SIZE,
    OUTPUT_TARGETS,
    POSITION_TARGET,
    shown_options,
)
from sensitivity.imaging.rules import DEFAULT_RULE, card_rule
from sensitivity.model.cards import ModelCard, card_from_json
from sensitivity.model.io import ModelError, list_models, model_path, models_dir, read_model_card
from sensitivity.render.report import localisation_note
from sensitivity.web.serving import MODELS_HELD
from sensitivity.web.settings import (
    CHANNEL_REDUCTIONS,
    COLOUR_SCALES,
    COMPARE_MODES,
    SIGNS,
    VIEW_OPTIONS,
    ViewSettings,
    offered_size,
    option_controls,
    option_key,
    page_sizes,
    settings_from_query,
    view_fields,
)


def model_files() -> tuple[dict[str, str], dict[str, str]]:
    """(name -> path of every model on offer, name -> why a file is not offered): the
    operator's model (``$SENSITIVITY_MODEL_PATH``, else the shipped default) first, then every
    ``.keras`` file with a readable card in ``$SENSITIVITY_MODELS_DIR`` (else ``models/``).
    Reads the cards only (cached for 30 s); a model's file is checked when it loads."""
    return _model_files(str(models_dir()), str(model_path()))


@st.cache_data(ttl=30, show_spinner=False)
def _model_files(folder: str, default: str) -> tuple[dict[str, str], dict[str, str]]:
    offered, refused = {Path(default).stem: default}, {}
    for entry in list_models(folder):
        if entry.problem:
            refused[entry.name] = entry.problem
        else:
            offered.setdefault(entry.name, str(entry.path))
    return offered, refused


def chosen_model_path() -> str:
    """The file of the model picked in the sidebar (the operator's model until one is)."""
    offered, _ = model_files()
    return offered.get(st.session_state.get("w_model") or "", str(model_path()))


class ModelSizes(NamedTuple):
    """The analysis sizes the page offers a model, its native size and the side of its
    ``find_objects`` rule (its card's, else the default)."""

    sizes: tuple[int, ...]
    native: int
    rule_side: int


def size_choices(path: str | None = None) -> ModelSizes:
    """The :class:`ModelSizes` of the model at ``path`` (default: the picked one), from its
    card alone (TensorFlow-free; a card that cannot be read gives the CIFAR-10 sizes, and the
    page says why when the model fails to load)."""
    card = picked_card(path)
    if card is None:
        return ModelSizes(page_sizes(NATIVE_SIZE), NATIVE_SIZE, DEFAULT_RULE.side)
    side = card_rule(card).side
    return ModelSizes(page_sizes(card.native_size, card.fixed_size, side), card.native_size, side)


def picked_card(path: str | None = None) -> ModelCard | None:
    """The card of the model at ``path`` (default: the picked one), read alone
    (TensorFlow-free); None when it cannot be read (the page says why when the model fails to
    load)."""
    return _card(path or chosen_model_path())


@st.cache_data(ttl=30, show_spinner=False)
def _card(path: str) -> ModelCard | None:
    try:
        return card_from_json(read_model_card(path), path)
    except (ModelError, ValueError):
        return None


def follow_the_model_size(problems: list[str] | None = None) -> None:
    """Keep the size control on a size the picked model is offered: its native size when the
    size was the previous model's native one (a new model starts at its own), else the nearest
    offered (said in ``problems`` when given). Called before the size control is drawn."""
    s = st.session_state
    sizes, native, _ = size_choices()
    size, previous = s.get("w_size"), s.get("_native_size")
    if size is None or (previous is not None and size == previous != native):
        s["w_size"] = native
    elif size not in sizes:
        s["w_size"] = offered_size(size, sizes, native)
        if problems is not None:
            problems.append(f"size={size} from the link is not offered for this model "
                            f"({', '.join(map(str, sizes))}): using {s['w_size']}")
    s["_native_size"] = native


def link_query() -> dict[str, str]:
    """The link of the current settings (the size left out when it is the model's native)."""
    return current_settings().to_query(native_size=size_choices().native)


def init_state() -> None:
    """Once per session: widget values from the query string (the shareable link).

    On every later run, values are restored from a copy kept outside the widgets: Streamlit
    forgets the value of a widget that one run did not draw (the class mask while an inner
    layer is chosen, say).
    """
    if st.session_state.get("_initialised"):
        for key, value in st.session_state["_values"].items():
            if key not in st.session_state:
                st.session_state[key] = value
        return
    settings, problems = settings_from_query(st.query_params.to_dict())
    values = {}
    for name in view_fields():
        value = getattr(settings, name)
        if name == "model":  # first: the class names below are the chosen model's
            if value and value not in model_files()[0]:
                problems.append(f"ignored model={value[:40]!r} from the link: no such model "
                                "on this server")
                value = ""
            value = value or model_path().stem
            st.session_state["w_model"] = value
        elif name == "classes":  # the model loads here only for a link that names classes
            value = [_class_names()[i] for i in value if i < len(_class_names())] if value else []
        elif name == "compare_items":
            value = list(value)
        elif name == "channel":
            value = -1 if value is None else value
        values[f"w_{name}"] = value
    values.update({option_key(name): settings.option(name) for name in shown_options()})
    st.session_state.update(values)
    follow_the_model_size(problems)
    values["w_size"] = st.session_state["w_size"]
    # Kept apart too: an upload during the first run (the uploader shows while the model
    # loads) interrupts it before the widgets are drawn, and Streamlit then drops their values.
    st.session_state["_values"] = dict(values)
    st.session_state["_link_problems"] = problems
    st.session_state["_initialised"] = True


def normalise_state(layers: list[tuple[str, str]]) -> None:
    """Keep the controls' values consistent with each other and the model: a layer the model
    lacks falls back to logits, the channel stays within the layer's, the compared items
    within the compare mode's choices. Called before any widget of a run is drawn."""
    s = st.session_state
    if s["w_model"] not in model_files()[0]:
        s["w_model"] = model_path().stem
    if s["w_layer"] not in layer_choices(layers):
        s["w_layer"] = "logits"
    if s["w_layer"] not in OUTPUT_TARGETS:
        s["w_channel"] = min(s["w_channel"], last_channel(layers, s["w_layer"]))
    choices = compare_choices(layers).get(s["w_compare"])
    if choices is not None:
        s["w_compare_items"] = [v for v in s["w_compare_items"] if v in choices]


def last_channel(layers: list[tuple[str, str]], layer: str) -> int:
    """The last channel index of an inner layer (0 when its channel count is unknown)."""
    channels = dict(layers).get(layer, "?").split("x")[-1]
    return int(channels) - 1 if channels.isdigit() else 0


def layer_choices(layers: list[tuple[str, str]]) -> list[str]:
    """The output targets (the position head's only where ``layers`` lists it: the model has
    that head), then every inner layer, as the layer control offers them."""
    listed = dict(layers)
    return ([t for t in OUTPUT_TARGETS if t != POSITION_TARGET or t in listed]
            + [n for n, _ in layers if n not in OUTPUT_TARGETS])


def _class_names() -> tuple[str, ...]:
    """The model's class names, from its card (imports TensorFlow and loads the model)."""
    from ui.compute import class_names

    return class_names()


def compare_choices(layers: list[tuple[str, str]]) -> dict[str, list[str]]:
    return {"layers": layer_choices(layers), "classes": list(_class_names()),
            "methods": list(METHODS), "models": list(model_files()[0])}


def current_settings() -> ViewSettings:
    s = st.session_state
    keys = [f"w_{name}" for name in view_fields()] + [option_key(n) for n in shown_options()]
    s["_values"] = {key: s[key] for key in keys}
    values = {name: s[f"w_{name}"] for name in view_fields()}
    values["classes"] = tuple(sorted(_class_names().index(c) for c in values["classes"]))
    values["compare_items"] = tuple(values["compare_items"])
    values["model"] = "" if values["model"] == model_path().stem else values["model"]
    values["channel"] = None if values["channel"] < 0 else int(values["channel"])
    options = {name: s[option_key(name)] for name in shown_options()}
    return ViewSettings(**values, options=options)


def sidebar(place) -> tuple:
    """The controls that do not depend on the model, in the sidebar's ``place``; returns the
    two slots that :func:`layer_controls` and :func:`compare_controls` fill once the model is
    loaded."""
    with place.container():
        st.header("What to differentiate")
        offered, refused = model_files()
        st.selectbox("Model", list(offered), key="w_model",
                     help=f"The classifier to explain. The server keeps at most {MODELS_HELD} "
                          "models loaded: another loads (and is checked against its card) when "
                          "picked, in a few seconds.")
        for name, problem in refused.items():
            st.caption(f"Not offered: {name}: {problem}")
        st.selectbox("Method", list(METHODS), key="w_method",
                     help="How the attribution is computed; see the README for each method.")
        method = st.session_state["w_method"]
        card = picked_card()
        options = {name: st.session_state[option_key(name)] for name in shown_options()}
        layer = st.session_state["w_layer"]
        note = localisation_note(card, method, options, layer) if card else ""
        st.caption(METHODS[method].description + (f"; {note}" if note else ""))
        if method == "guided_backprop":
            st.warning("Guided backpropagation fails the model-randomisation sanity check "
                       "(Adebayo et al. 2018): its maps barely change when the weights are "
                       "randomised. Shown for comparison only.")
        # declared in sensitivity.engine.choices.METHODS
        for control in option_controls(method, options):
            getattr(st, control.widget)(control.label, key=control.key, help=control.help,
                                        **control.arguments)

        layer_slot = st.container()
        st.radio("Sign", SIGNS, key="w_sign", horizontal=True,
                 help="abs |g|, positive max(g,0), negative max(-g,0), signed g.")
        st.radio("Colour channels", CHANNEL_REDUCTIONS, key="w_reduce_channels",
                 horizontal=True, help="How R, G and B become one value per pixel.")
        follow_the_model_size()
        sizes, native, rule_side = size_choices()
        st.select_slider("Analysis size", sizes, key="w_size",
                         help=f"{native} is this model's native size (its card's)"
                              + (", the only one it takes." if len(sizes) == 1 else
                                 "; a fully convolutional model takes larger inputs too, "
                                 f"which show finer maps; its boxes are made at {rule_side} px, or "
                                 "at another side its card lists where a class is seen better "
                                 "there (the photo's caption names the side)."))

        st.header("How to show it")
        k, opacity = VIEW_OPTIONS["k"], VIEW_OPTIONS["opacity"]
        st.slider("Top-k pixels", k.minimum, k.maximum, key="w_k")
        st.slider("Overlay opacity", opacity.minimum, opacity.maximum, step=opacity.step,
                  key="w_opacity")
        st.selectbox("Colour scale", COLOUR_SCALES, key="w_colour_scale",
                     help="viridis and cividis stay readable with colour blindness; signed "
                          "maps use a blue-white-red scale centred at zero.")
        st.checkbox("Shared colour scale across panels", key="w_shared_scale")
        st.checkbox("Draw the discovered objects' boxes", key="w_boxes",
                    help="Boxes around the objects of the class mask (else of the probable "
                         "classes) in your whole photo, found by sensitivity.find_objects "
                         "whatever the method above (the photo's caption names its method); "
                         "the maps show the parts inside the square the network sees.")
        st.checkbox("Faithfulness panel", key="w_faithfulness",
                    help="Deletion and insertion curves, and predicting again without the "
                         "top-k pixels.")

        st.header("Compare")
        st.selectbox("Side by side", COMPARE_MODES, key="w_compare")
        compare_slot = st.container()
    return layer_slot, compare_slot


def layer_controls(slot, layers: list[tuple[str, str]]) -> None:
    """The layer and what depends on it (reduction and channel, or the class mask), in the
    sidebar's ``slot``: drawn once the model's layers are known."""
    shapes = dict(layers)
    with slot:
        st.selectbox("Layer", layer_choices(layers), key="w_layer",
                     format_func=lambda n: f"{n}  ({shapes[n]})" if n in shapes else n,
                     help="The output (logits by default) or any inner layer, by name. "
                          "position_probabilities (a model with a position head): each "
                          "class's probability where the head sees it surest, so that any "
                          "method shows where the model finds the class.")
        if st.session_state["w_layer"] not in OUTPUT_TARGETS:
            st.selectbox("Layer reduction", LAYER_REDUCTIONS, key="w_layer_reduction",
                         help="How the layer's output becomes one number: 'sum' as in the "
                              "original experiment, 'mean', or 'l2'.")
            st.number_input("Channel (-1: all)", -1,
                            last_channel(layers, st.session_state["w_layer"]), key="w_channel")
        else:
            st.multiselect("Class mask", _class_names(), key="w_classes",
                           placeholder="the predicted class",
                           help="Only these classes count: the score is the sum of their "
                                "outputs. Empty: each image's predicted class.")


def compare_controls(slot, layers: list[tuple[str, str]]) -> None:
    """What the chosen comparison compares, in the sidebar's ``slot``."""
    mode = st.session_state["w_compare"]
    choices = compare_choices(layers)
    if mode in choices:
        slot.multiselect(f"{mode.capitalize()} to compare", choices[mode],
                         key="w_compare_items", max_selections=6)
