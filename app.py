"""The sensitivity dashboard: which pixels does a CIFAR-10 wide ResNet look at?

Run with ``streamlit run app.py``. This page only lays out widgets, calls the ``sensitivity``
library and draws its figures; every computation is a plain library function.
"""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
import streamlit as st

from sensitivity import figures  # NumPy and Plotly only: no TensorFlow yet

# The header and the sidebar's controls go out before TensorFlow is imported (several seconds
# on a cold start); the uploader and a first Plotly figure follow before the model loads (main,
# below), so that a person can pick a file, and the browser load the controls' and Plotly's
# code, meanwhile. Hence the imports below the drawing (E402 is off for this file).
st.set_page_config(page_title="sensitivity", page_icon=":mag:", layout="wide")
st.title("sensitivity")
st.caption("Which input pixels is a CIFAR-10 wide ResNet most sensitive to, and why? "
           "Upload a photo; the heatmaps show |d output / d pixel|.")
NOTICES = st.container()  # the model's error, problems with the link's settings
WORKSPACE = st.empty()  # the uploader and the analyses (the fragment `workspace` draws them)
SIDEBAR = st.sidebar.empty()

from sensitivity.cards import model_card
from sensitivity.choices import (
    LAYER_REDUCTIONS,
    METHODS,
    OUTPUT_TARGETS,
    localisation_note,
    shown_options,
)
from sensitivity.labels import CLASS_NAMES
from sensitivity.serving import analysis_shown, import_keras, ready_model
from sensitivity.settings import (
    CHANNEL_REDUCTIONS,
    COLOUR_SCALES,
    COMPARE_MODES,
    SIGNS,
    SIZES,
    VIEW_OPTIONS,
    ViewSettings,
    method_options,
    option_controls,
    option_key,
    settings_from_query,
    view_fields,
)

# --- Settings and controls: from the link, through the widgets, back into the link ---------
# Drawn before TensorFlow is imported, so that on a cold start the browser loads and lays them
# out while the server imports; the layer's controls follow once the model is loaded.


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
        if name == "classes":  # the model loads only for a link that names classes
            value = [class_names()[i] for i in value if i < len(class_names())] if value else []
        elif name == "compare_items":
            value = list(value)
        elif name == "channel":
            value = -1 if value is None else value
        values[f"w_{name}"] = value
    values.update({option_key(name): settings.option(name) for name in shown_options()})
    st.session_state.update(values)
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
    """The output targets, then every inner layer, as the layer control offers them."""
    return list(OUTPUT_TARGETS) + [n for n, _ in layers if n not in OUTPUT_TARGETS]


def compare_choices(layers: list[tuple[str, str]]) -> dict[str, list[str]]:
    return {"layers": layer_choices(layers), "classes": list(class_names()),
            "methods": list(METHODS)}


def current_settings() -> ViewSettings:
    s = st.session_state
    keys = [f"w_{name}" for name in view_fields()] + [option_key(n) for n in shown_options()]
    s["_values"] = {key: s[key] for key in keys}
    values = {name: s[f"w_{name}"] for name in view_fields()}
    values["classes"] = tuple(sorted(class_names().index(c) for c in values["classes"]))
    values["compare_items"] = tuple(values["compare_items"])
    values["channel"] = None if values["channel"] < 0 else int(values["channel"])
    options = {name: s[option_key(name)] for name in shown_options()}
    return ViewSettings(**values, options=options)


def sidebar() -> tuple:
    """The controls that do not depend on the model, in the sidebar; returns the two slots
    that :func:`layer_controls` and :func:`compare_controls` fill once the model is loaded."""
    with SIDEBAR.container():
        st.header("What to differentiate")
        st.selectbox("Method", list(METHODS), key="w_method",
                     help="How the attribution is computed; see the README for each method.")
        method = st.session_state["w_method"]
        note = localisation_note(method)
        st.caption(METHODS[method].description + (f"; {note}" if note else ""))
        if method == "guided_backprop":
            st.warning("Guided backpropagation fails the model-randomisation sanity check "
                       "(Adebayo et al. 2018): its maps barely change when the weights are "
                       "randomised. Shown for comparison only.")
        for control in option_controls(method):  # declared in sensitivity.choices.METHODS
            getattr(st, control.widget)(control.label, key=control.key, help=control.help,
                                        **control.arguments)

        layer_slot = st.container()
        st.radio("Sign", SIGNS, key="w_sign", horizontal=True,
                 help="abs |g|, positive max(g,0), negative max(-g,0), signed g.")
        st.radio("Colour channels", CHANNEL_REDUCTIONS, key="w_reduce_channels",
                 horizontal=True, help="How R, G and B become one value per pixel.")
        st.select_slider("Analysis size", SIZES, key="w_size",
                          help="32 is the network's native size; it is fully convolutional, "
                               "so larger inputs show finer maps.")

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
                     help="The output (logits by default) or any inner layer, by name.")
        if st.session_state["w_layer"] not in OUTPUT_TARGETS:
            st.selectbox("Layer reduction", LAYER_REDUCTIONS, key="w_layer_reduction",
                         help="How the layer's output becomes one number: 'sum' as in the "
                              "original experiment, 'mean', or 'l2'.")
            st.number_input("Channel (-1: all)", -1,
                            last_channel(layers, st.session_state["w_layer"]), key="w_channel")
        else:
            st.multiselect("Class mask", class_names(), key="w_classes",
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


init_state()
LAYER_SLOT, COMPARE_SLOT = sidebar()

import_keras()  # TensorFlow and Keras, without the packages a server never uses

import sensitivity
from sensitivity import export, gallery, metrics, pictures
from sensitivity.budget import Work, check_budget, estimate_work, max_work, summary
from sensitivity.discovery import Box, boxes_to_map
from sensitivity.images import center_square_box
from sensitivity.model_io import model_path
from sensitivity.objects import DEFAULT_RULE, FoundObject, find_objects
from sensitivity.ood import Assessment, assess
from sensitivity.postprocess import strongest_pixels
from sensitivity.report import (
    completeness_note,
    out_of_distribution_note,
    out_of_distribution_notice,
    probability_bars_html,
    verdict,
)
from sensitivity.saliency import Attribution, attribute, layer_names, to_map
from sensitivity.scenes import make_scene


def keep_keras_state() -> None:
    """Stop Streamlit calling ``keras.backend.clear_session()`` after every script run.

    Streamlit does it to reset stateful modules; here it only costs: a full ``gc.collect()``
    and TensorFlow's kernel cache dropped after each interaction (about 0.5 s on 2 cores, and the
    next gradient rebuilds its kernels). The model is built once per server (cache_resource) and
    no run creates Keras objects, so there is nothing to reset.
    """
    from streamlit.runtime.scriptrunner import script_runner

    if hasattr(script_runner, "_clean_problem_modules"):
        script_runner._clean_problem_modules = lambda: None


keep_keras_state()


# --- Cached resources and computations --------------------------------------------------------


@st.cache_resource(show_spinner="Loading the model...")
def load_traced_model(path: str):
    """The model at ``path``, loaded once per server and warmed (traced) before any user's call:
    ``python -m sensitivity serve`` has it loading while the server starts."""
    return ready_model(path)


def get_model():
    """The operator's model (``$SENSITIVITY_MODEL_PATH``) or the committed default."""
    return load_traced_model(str(model_path()))


def class_names() -> tuple[str, ...]:
    """The class names of the operator's model, from its card (loads the model)."""
    return model_card(get_model()).class_names


def model_layers() -> list[tuple[str, str]]:
    """(name, shape text) of every layer of the operator's model a person can differentiate
    (raises ModelError when the model cannot load)."""
    return layers_of(str(model_path()))


@st.cache_resource
def layers_of(path: str) -> list[tuple[str, str]]:
    from sensitivity.gradients import layer_shape

    model = load_traced_model(path)
    shown = []
    for name in layer_names(model):
        if name in ("pixels",):
            continue
        shape = layer_shape(model, name)
        shown.append((name, "x".join("?" if s is None else str(s) for s in shape[1:])))
    return shown


@st.cache_data(max_entries=256, ttl=3600, show_spinner=False)
def decode(data: bytes) -> np.ndarray:
    """Uploaded bytes to an (H, W, 3) uint8 image (raises ImageError)."""
    return sensitivity.load_image(data)


@st.cache_data(max_entries=256, ttl=3600, show_spinner=False)
def network_view(image: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(network input (size, size, 3) float32, probabilities (10,)) of an image."""
    x = sensitivity.preprocess(image, size)
    return x, sensitivity.predict(get_model(), x)[0]


@st.cache_data(max_entries=256, ttl=3600, show_spinner=False)
def novelty(x: np.ndarray, path: str) -> Assessment | None:
    """The out-of-distribution score and flag of a network input by the detector of the model
    at ``path`` (None: it has none)."""
    return assess(load_traced_model(path), x)


@st.cache_data(max_entries=512, ttl=3600, show_spinner=False)
def explain(x: np.ndarray, method: str, layer: str, classes: tuple[int, ...],
            options: tuple) -> Attribution:
    """Attribution of one network input; keyed on everything that changes the gradient.

    A slow method draws its progress bar here, inside the cached function: Streamlit records
    the bar's messages and replays them on a cache hit (a bar made outside, updated inside,
    cannot be replayed and stopped the page on every cache hit of a slow method)."""
    bar = st.progress(0.0, text=f"Computing {method}...") if METHODS[method].slow else None
    try:
        return attribute(get_model(), x, method=method, layer=layer,
                         class_mask=list(classes) if classes else None,
                         progress=(lambda f: bar.progress(min(1.0, f))) if bar else None,
                         **dict(options))
    finally:
        if bar is not None:
            bar.empty()


@st.cache_data(max_entries=256, ttl=3600, show_spinner="Finding objects...")
def objects_in(_image: np.ndarray, digest: str, classes: tuple[int, ...]) -> list[FoundObject]:
    """:func:`sensitivity.find_objects` on a photo (keyed on its ``digest``) for the class mask
    (empty: the probable classes)."""
    return find_objects(get_model(), _image, classes=list(classes) if classes else None)


@st.cache_data(max_entries=128, ttl=3600, show_spinner="Measuring faithfulness...")
def faithfulness(x: np.ndarray, saliency_map: np.ndarray, class_index: int) -> list:
    """Deletion and insertion curves of one map (blurred-image fill)."""
    model = get_model()
    return [metrics.deletion_curve(model, x, saliency_map, class_index),
            metrics.insertion_curve(model, x, saliency_map, class_index)]


@st.cache_data(max_entries=128, ttl=3600, show_spinner="Predicting again...")
def counterfactual(x: np.ndarray, saliency_map: np.ndarray, class_index: int, k: int,
                   mode: str) -> metrics.Counterfactual:
    return metrics.counterfactual(get_model(), x, saliency_map, class_index, k, mode=mode)


@st.cache_data(max_entries=16, show_spinner="Reading the sample images...")
def samples(source: str) -> list[gallery.Sample]:
    return gallery.load_samples(source, per_class=2)


# --- Page sections -----------------------------------------------------------------------------


def collect_images(uploads: list) -> list[tuple[str, np.ndarray | bytes]]:
    """(name, raw bytes or uint8 array) of every image brought to the page."""
    items: list[tuple[str, np.ndarray | bytes]] = []
    items += [(u.name, u.getvalue()) for u in uploads or []]
    with st.expander("Camera and sample gallery"):
        # Each behind a toggle: their widgets cost every run (and the browser every redraw)
        # for the many people who only upload.
        if st.toggle("Use the camera"):
            shot = st.camera_input("Take a photo")
            if shot is not None:
                items.append(("camera photo", shot.getvalue()))
        if not st.toggle("Use the sample gallery and the scene builder"):
            return items
        source = gallery.local_source()
        if source is None:
            st.caption("No local copy of CIFAR-10 found (set SENSITIVITY_SAMPLES_DIR).")
            if st.button("Fetch CIFAR-10 with keras.datasets (downloads 170 MB)"):
                with st.spinner("Downloading CIFAR-10..."):
                    gallery.fetch_keras_cifar10()
                st.rerun()
        else:
            pool = samples(source)
            picked = st.multiselect(
                "Sample CIFAR-10 test images", range(len(pool)),
                format_func=lambda i: f"{CLASS_NAMES[pool[i].label]} ({pool[i].name})")
            items += [(f"sample: {CLASS_NAMES[pool[i].label]}", pool[i].image) for i in picked]
            scene_builder(pool, items)
    return items


def scene_builder(pool: list[gallery.Sample], items: list) -> None:
    """Two sample images pasted on one 96x96 canvas, added to the images on the page."""
    st.markdown("**Scene builder**: two objects on one 96x96 canvas, to watch a class mask "
                "separate them (set the analysis size to 96 to keep every pixel).")
    left, right, seed_col = st.columns([2, 2, 1])
    label = lambda i: f"{CLASS_NAMES[pool[i].label]} ({pool[i].name})"  # noqa: E731
    first = left.selectbox("First object", [None, *range(len(pool))], key="scene_a",
                           format_func=lambda i: "-" if i is None else label(i))
    second = right.selectbox("Second object", [None, *range(len(pool))], key="scene_b",
                             format_func=lambda i: "-" if i is None else label(i))
    seed = seed_col.number_input("Layout", 0, 999, 0, key="scene_seed")
    if first is not None and second is not None:
        scene = make_scene([pool[first].image, pool[second].image],
                           [pool[first].label, pool[second].label], size=96, seed=int(seed))
        names = " + ".join(CLASS_NAMES[c] for c in scene.labels)
        items.append((f"scene: {names}", scene.image))


def show_prediction(probabilities: np.ndarray, assessment: Assessment | None) -> None:
    """The sentence (softened for a picture the detector flags; its score on hover) and the
    probability table."""
    flagged = assessment is not None and assessment.flagged
    st.markdown(f"**{verdict(probabilities, class_names(), flagged)}**",
                help=None if assessment is None else
                out_of_distribution_note(assessment.score, assessment.threshold))
    # All ten classes, sorted, with their bars and percentages, in one plain HTML table built
    # only from the probabilities and the class names. A Plotly bar chart plus a separate table
    # cost the browser about half a second per upload (benchmarks/README.md).
    st.html(probability_bars_html(probabilities, class_names()))


def compute_map(x: np.ndarray, settings: ViewSettings, *, method: str | None = None,
                layer: str | None = None, classes: tuple[int, ...] | None = None) -> np.ndarray:
    """The (H, W) map of one input; the gradient is cached, sign and channels are display."""
    result = compute_attribution(x, settings, method=method, layer=layer, classes=classes)
    return to_map(result, settings.sign, settings.reduce_channels)[0]


def compute_attribution(x: np.ndarray, settings: ViewSettings, *, method: str | None = None,
                        layer: str | None = None,
                        classes: tuple[int, ...] | None = None) -> Attribution:
    """The attribution of one input under the settings (cached), with a progress bar if slow."""
    method = method or settings.method
    layer = layer or settings.layer
    classes = settings.classes if classes is None else classes
    if layer not in OUTPUT_TARGETS:
        classes = ()
    options = tuple(sorted(method_options(dataclasses.replace(settings, layer=layer),
                                          method).items()))
    return explain(x, method, layer, classes, options)


ESTIMATE_SHOWN_ABOVE_S = 1.0
"""The page tells the estimated time of the maps it is about to compute above this (seconds)."""


def request_work(settings: ViewSettings, images: int) -> list[Work]:
    """The work of the maps a run computes: the chosen method's on each of ``images`` images,
    then each side-by-side panel of the first image (layers, classes or methods; images
    reuse the maps), counted even when cached."""
    size = settings.size
    works = [estimate_work(settings.method, method_options(settings), size, size, images)]
    items = settings.compare_items if settings.compare in ("layers", "classes", "methods") else ()
    for item in items:
        method = item if settings.compare == "methods" else settings.method
        layer = item if settings.compare == "layers" else settings.layer
        options = method_options(dataclasses.replace(settings, layer=layer), method)
        works.append(estimate_work(method, options, size, size))
    return works


def refusal(works: list[Work]) -> str | None:
    """Why the operator's budget (``$SENSITIVITY_MAX_WORK``) refuses these maps (None: it
    does not); a limit that is no number refuses everything."""
    try:
        limit = max_work()
    except ValueError as exc:
        return f"The server's budget is misconfigured, so it computes no map: {exc}"
    message = check_budget(works[0], limit)
    if message is None and limit is not None:
        total = sum(w.forward_pixels for w in works)
        if total > limit:
            message = (f"the side-by-side panels bring this request to {total / 1e6:.3g} M "
                       f"forward-pass pixels; the server allows {limit / 1e6:.3g} M per "
                       "request: compare fewer items, or use a smaller size")
    return None if message is None else message[0].upper() + message[1:]


def photo_objects(image: np.ndarray, settings: ViewSettings) -> list[FoundObject]:
    """The objects :func:`sensitivity.find_objects` boxes in the whole photo, of the class
    mask when one applies (a logits, probabilities or log-probabilities target), else of the
    probable classes (cached)."""
    classes = settings.classes if settings.layer in OUTPUT_TARGETS else ()
    digest = f"{image.shape}-{image.dtype}-{hashlib.sha1(image.tobytes()).hexdigest()}"
    return objects_in(image, digest, classes)


def objects_caption(found: list[FoundObject]) -> str:
    """E.g. "boxes by gradcam at 128 px: dog 0.61, truck 0.22"."""
    listed = ", ".join(f"{f.label} {f.score:.2f}" for f in found) or "no object found"
    return f"boxes by {DEFAULT_RULE.method} at {DEFAULT_RULE.side} px: {listed}"


def target_class(probabilities: np.ndarray, settings: ViewSettings) -> int:
    """The class a map explains: the first of the mask, else the predicted one."""
    return settings.classes[0] if settings.classes else int(np.argmax(probabilities))


def show_maps(name: str, x: np.ndarray, probabilities: np.ndarray, settings: ViewSettings,
              boxes: list[Box]) -> np.ndarray:
    """Heatmap, overlay, top-k mask (``boxes`` outlined on each, in the map's pixels) and
    downloads; returns the map."""
    result = compute_attribution(x, settings)
    saliency_map = to_map(result, settings.sign, settings.reduce_channels)[0]
    signed = settings.sign == "signed"
    k = min(settings.k, saliency_map.size)
    mask = strongest_pixels(saliency_map, k, settings.sign)
    names = class_names()
    target = ", ".join(names[i] for i in settings.classes) if settings.classes else (
        f"predicted: {names[int(np.argmax(probabilities))]}")
    if settings.layer not in OUTPUT_TARGETS:
        target = f"{settings.layer_reduction} of {settings.layer}"
    st.caption(f"{settings.method} of {settings.layer} ({target}), sign {settings.sign}")
    caveat = METHODS[settings.method].caveat_at(settings.size)
    if caveat:
        st.warning(f"{settings.method} at {settings.size} px: {caveat}")
    if result.baseline_scores is not None:
        st.caption(completeness_note(float(result.scores[0]), float(result.baseline_scores[0]),
                                     float(result.values[0].sum(dtype=np.float64))))
    heat, over, top = st.columns(3)
    common = dict(signed=signed, colour_scale=settings.colour_scale)
    heat.plotly_chart(figures.saliency_heatmap(saliency_map, title="sensitivity", boxes=boxes,
                                               **common),
                      width="stretch", key=f"heat-{name}")
    # The overlay and the mask are pictures: the heatmap beside them has the hover.
    over.image(pictures.data_url(pictures.overlay(x, saliency_map, opacity=settings.opacity,
                                                  boxes=boxes, **common)),
               caption=f"overlay (opacity {settings.opacity:.2f})")
    top.image(pictures.data_url(pictures.mask(mask, boxes=boxes)), caption=f"top {k} pixels")
    stem = "".join(c if c.isalnum() else "_" for c in name)[:40] or "image"
    # Each file is made when its button is clicked (not on every run, and the browser fetches
    # nothing meanwhile); a click does not rerun the page.
    settings_dict = dataclasses.asdict(settings)
    downloads = [
        ("Heatmap (PNG)", lambda: export.heatmap_png(saliency_map, **common), "heatmap.png",
         "image/png"),
        ("Map (.npy)", lambda: export.map_npy(saliency_map), "map.npy",
         "application/octet-stream"),
        ("Probabilities (CSV)", lambda: export.probabilities_csv(probabilities, names),
         "probabilities.csv", "text/csv"),
        ("Settings (JSON)", lambda: export.settings_json(settings_dict), "settings.json",
         "application/json"),
    ]
    for column, (label, make, suffix, mime) in zip(st.columns(4), downloads, strict=True):
        column.download_button(label, make, f"{stem}-{suffix}", mime, on_click="ignore",
                               key=f"dl-{suffix}-{name}")
    return saliency_map


def show_faithfulness(name: str, x: np.ndarray, saliency_map: np.ndarray,
                      probabilities: np.ndarray, settings: ViewSettings) -> None:
    """Deletion/insertion curves, and the top-k pixels removed or kept alone, predicted again."""
    class_index = target_class(probabilities, settings)
    magnitude = np.abs(saliency_map)
    curves_col, again_col = st.columns(2)
    curves_col.plotly_chart(
        figures.perturbation_curves(faithfulness(x, magnitude, class_index),
                                    title=f"faithfulness for {class_names()[class_index]}"),
        width="stretch", key=f"curves-{name}")
    curves_col.caption("Deletion: the most salient pixels are replaced by a blurred copy first; "
                       "a faithful map makes the probability fall fast (low area). Insertion: "
                       "they are put back first into the blurred image (high area).")
    with again_col:
        k = min(settings.k, magnitude.size)
        mode = st.radio("Then predict again", ["remove", "keep"], horizontal=True,
                        key=f"cf-mode-{name}",
                        format_func=lambda m: f"remove the top {k} pixels" if m == "remove"
                        else f"keep only the top {k} pixels")
        if st.button("Predict again", key=f"cf-{name}"):
            result = counterfactual(x, magnitude, class_index, k, mode)
            st.metric(f"{class_names()[class_index]} probability", f"{100 * result.after:.1f}%",
                      delta=f"{100 * (result.after - result.before):+.1f} points")
            st.caption(f"Before: {100 * result.before:.1f}%. The same change on {k} random "
                       f"pixels instead ({len(result.random_trials)} tries): "
                       f"{100 * result.random_after:.1f}% on average. Changed pixels take the "
                       "blurred image's values.")


def show_comparison(inputs: list[tuple[str, np.ndarray, np.ndarray]],
                    settings: ViewSettings) -> None:
    mode = settings.compare
    if mode == "images":
        panels = [(name, compute_map(x, settings)) for name, x, _ in inputs]
    else:
        name, x, _ = inputs[0]
        items = list(settings.compare_items)
        if not items:
            st.info(f"Pick the {mode} to compare in the sidebar.")
            return
        if mode == "layers":
            panels = [(item, compute_map(x, settings, layer=item)) for item in items]
        elif mode == "classes":
            panels = [(item, compute_map(x, settings, layer="logits" if settings.layer not in
                                         OUTPUT_TARGETS else settings.layer,
                                         classes=(class_names().index(item),)))
                      for item in items]
        else:
            panels = [(item, compute_map(x, settings, method=item)) for item in items]
    signed = settings.sign == "signed"
    zrange = figures.colour_range([m for _, m in panels], signed) if settings.shared_scale else None
    columns = st.columns(min(len(panels), 4))
    for i, (title, saliency_map) in enumerate(panels):
        columns[i % len(columns)].plotly_chart(
            figures.saliency_heatmap(saliency_map, signed=signed, zrange=zrange, title=title,
                                     colour_scale=settings.colour_scale, size_px=300),
            width="stretch", key=f"cmp-{i}")


# --- The page ----------------------------------------------------------------------------------


@st.fragment
def workspace() -> None:
    """The uploader and every image's analysis. A fragment: an upload (or a camera shot, or a
    sample picked) reruns only this part, not the sidebar's two dozen controls, which cost the
    browser about 0.16 s to redraw (benchmarks/README.md); a control's change reruns the whole
    page, this part included."""
    uploads = st.file_uploader("Upload images", accept_multiple_files=True, key="uploads",
                               type=["jpg", "jpeg", "png", "webp", "bmp", "gif"])
    items = collect_images(uploads)
    if not items:
        st.plotly_chart(figures.reading_guide(), width="stretch",
                        config={"displayModeBar": False, "staticPlot": True},
                        key="reading-guide")
        st.info("Upload an image (JPEG, PNG, WebP, BMP or GIF), take one with the camera, or "
                "pick a CIFAR-10 sample to start.")
        return
    try:
        normalise_state(model_layers())
    except sensitivity.ModelError:
        return  # the page says so above (main)
    settings = current_settings()
    try:
        works = request_work(settings, len(items))
        refused = refusal(works)
    except ValueError as exc:  # a method that declares no cost
        works, refused = [], f"The server cannot estimate this request, so computes no map: {exc}"
    if refused:
        st.error(refused)  # nothing is computed but the predictions
    elif sum(w.seconds for w in works) > ESTIMATE_SHOWN_ABOVE_S:
        st.info(f"These maps take {summary(works)}.")
    inputs: list[tuple[str, np.ndarray, np.ndarray]] = []
    for index, (name, raw) in enumerate(items):
        try:
            image = decode(raw) if isinstance(raw, bytes) else raw
        except sensitivity.ImageError as exc:
            st.error(f"{name}: {exc}")
            continue
        x, probabilities = network_view(image, settings.size)
        assessment = novelty(x, str(model_path()))
        key = f"{index}-{hashlib.sha1(x.tobytes()).hexdigest()[:8]}"
        inputs.append((key, x, probabilities))
        st.subheader(name, divider="gray")
        if assessment is not None and assessment.flagged:
            st.warning(out_of_distribution_notice(len(probabilities)), icon=":material/help:")
        first, second, third = st.columns([1, 1, 2])
        found = None
        if settings.boxes:
            try:
                found = photo_objects(image, settings)
            except ValueError as exc:
                st.error(f"{name}: no boxes: {exc}")
        if found is None:
            outlines = [center_square_box(*image.shape[:2])]
            caption = "your image (the network sees the orange square)"
        else:
            outlines = [f.box for f in found]
            caption = objects_caption(found)
        first.image(pictures.data_url(pictures.photo(image, boxes=outlines), "JPEG"),
                    caption=caption)
        second.image(pictures.data_url(pictures.enlarged(x)),
                     caption=f"after processing ({settings.size}x{settings.size})")
        with third:
            show_prediction(probabilities, assessment)
        if refused:
            st.caption("No map: see the message above.")
            continue
        try:
            boxes = boxes_to_map([f.box._replace(score=f.score) for f in found or []],
                                 image.shape, x.shape[:2])
            saliency_map = show_maps(key, x, probabilities, settings, boxes)
            if settings.faithfulness:
                show_faithfulness(key, x, saliency_map, probabilities, settings)
        except ValueError as exc:
            st.error(f"{name}: {exc}")
            continue
    if inputs and settings.compare != "none" and not refused:
        st.subheader("Side by side", divider="gray")
        try:
            show_comparison(inputs, settings)
        except ValueError as exc:
            st.error(str(exc))
    if inputs:
        analysis_shown()  # the server's later warm-up may start now


def main() -> None:
    for problem in st.session_state.pop("_link_problems", []):
        NOTICES.warning(problem)
    # The uploader first: it shows while the model loads on a cold start.
    with WORKSPACE.container():
        workspace()
    try:
        layers = model_layers()
    except sensitivity.ModelError as exc:
        WORKSPACE.empty()
        SIDEBAR.empty()
        NOTICES.error(f"The model could not be loaded, so the page cannot work: {exc}")
        st.stop()
    normalise_state(layers)
    layer_controls(LAYER_SLOT, layers)
    compare_controls(COMPARE_SLOT, layers)
    st.query_params.from_dict(current_settings().to_query())


main()
