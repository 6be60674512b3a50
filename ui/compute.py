"""What the page computes, cached: the model, decoded images, predictions, maps, boxes, the
faithfulness checks, and the cost of a request against the operator's budget. Each is a call
into the ``sensitivity`` library; the Streamlit caches keep one model per server and results
per input. Import after TensorFlow (:func:`sensitivity.web.serving.import_keras`)."""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
import streamlit as st

import sensitivity
from sensitivity.engine.budget import Work, check_budget, estimate_work, max_work
from sensitivity.engine.choices import METHODS, OUTPUT_TARGETS, POSITION_TARGET
from sensitivity.engine.saliency import Attribution, attribute, layer_names, to_map
from sensitivity.imaging import gallery
from sensitivity.imaging.objects import FoundObject, find_objects
from sensitivity.metrics import perturbation, sanity
from sensitivity.model.cards import model_card
from sensitivity.trust.ood import Assessment, assess
from sensitivity.web.serving import MODELS_HELD, ready_model
from sensitivity.web.settings import ViewSettings, method_options
from ui.controls import chosen_model_path, size_choices


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


@st.cache_resource(show_spinner="Loading the model...", max_entries=MODELS_HELD)
def load_traced_model(path: str):
    """The model at ``path``, loaded once per server and warmed (traced) before any user's call:
    ``python -m sensitivity serve`` has the operator's model loading while the server starts.
    At most :data:`~sensitivity.web.serving.MODELS_HELD` are held."""
    return ready_model(path)


def get_model(path: str | None = None):
    """The model at ``path``, by default the one picked in the sidebar."""
    return load_traced_model(path or chosen_model_path())


def class_names(path: str | None = None) -> tuple[str, ...]:
    """The class names of a model (default: the picked one), from its card (loads it)."""
    return model_card(get_model(path)).class_names


def model_layers() -> list[tuple[str, str]]:
    """(name, shape text) of every layer of the picked model a person can differentiate,
    led by the position head's target when the model has that head (raises ModelError when
    the model cannot load)."""
    return layers_of(chosen_model_path())


@st.cache_resource(max_entries=4 * MODELS_HELD)
def layers_of(path: str) -> list[tuple[str, str]]:
    from sensitivity.engine.gradients import layer_shape, output_targets

    model = load_traced_model(path)
    shown = []
    if POSITION_TARGET in output_targets(model):
        shown.append((POSITION_TARGET, "position head"))
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


def network_view(image: np.ndarray, size: int, path: str | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(network input (size, size, 3) float32, probabilities (K,)) of an image by a model
    (default: the picked one)."""
    return _network_view(image, size, path or chosen_model_path())


@st.cache_data(max_entries=256, ttl=3600, show_spinner=False)
def prediction(x: np.ndarray, path: str) -> np.ndarray:
    """``(K,)`` probabilities of a network input by the model at ``path``."""
    return sensitivity.predict(get_model(path), x)[0]


@st.cache_data(max_entries=256, ttl=3600, show_spinner=False)
def _network_view(image: np.ndarray, size: int, path: str) -> tuple[np.ndarray, np.ndarray]:
    x = sensitivity.preprocess(image, size)
    return x, prediction(x, path)


@st.cache_data(max_entries=256, ttl=3600, show_spinner=False)
def novelty(x: np.ndarray, path: str) -> Assessment | None:
    """The out-of-distribution score and flag of a network input by the detector of the model
    at ``path`` (None: it has none)."""
    return assess(load_traced_model(path), x)


@st.cache_data(max_entries=512, ttl=3600, show_spinner=False)
def explain(x: np.ndarray, method: str, layer: str, classes: tuple[int, ...],
            options: tuple, weights: str, path: str) -> Attribution:
    """Attribution of one network input by the model at ``path`` with ``weights`` "trained"
    or "randomised" (:func:`randomised_model`); keyed on everything that changes the gradient.

    A slow method draws its progress bar here, inside the cached function: Streamlit records
    the bar's messages and replays them on a cache hit (a bar made outside, updated inside,
    cannot be replayed and stopped the page on every cache hit of a slow method)."""
    bar = st.progress(0.0, text=f"Computing {method}...") if METHODS[method].slow else None
    try:
        model = get_model(path) if weights == "trained" else randomised_model(path)
        return attribute(model, x, method=method, layer=layer,
                         class_mask=list(classes) if classes else None,
                         progress=(lambda f: bar.progress(min(1.0, f))) if bar else None,
                         **dict(options))
    finally:
        if bar is not None:
            bar.empty()


@st.cache_resource(show_spinner="Randomising the model's top layers...",
                   max_entries=MODELS_HELD)
def randomised_model(path: str):
    """The model at ``path`` with the top half of its layers re-initialised in cascade
    (:func:`sensitivity.metrics.sanity.randomised_copy`, seed 0), made once per server."""
    return sanity.randomised_copy(load_traced_model(path))


@st.cache_data(max_entries=256, ttl=3600, show_spinner="Finding objects...")
def objects_in(_image: np.ndarray, digest: str, classes: tuple[int, ...],
               path: str) -> list[FoundObject]:
    """:func:`sensitivity.find_objects` on a photo (keyed on its ``digest``) by the model at
    ``path`` for the class mask (empty: the probable classes)."""
    return find_objects(get_model(path), _image, classes=list(classes) if classes else None)


def faithfulness(x: np.ndarray, saliency_map: np.ndarray, class_index: int) -> list:
    """Deletion and insertion curves of one map by the picked model (blurred-image fill)."""
    return _faithfulness(x, saliency_map, class_index, chosen_model_path())


@st.cache_data(max_entries=128, ttl=3600, show_spinner="Measuring faithfulness...")
def _faithfulness(x: np.ndarray, saliency_map: np.ndarray, class_index: int, path: str) -> list:
    model = get_model(path)
    return [perturbation.deletion_curve(model, x, saliency_map, class_index),
            perturbation.insertion_curve(model, x, saliency_map, class_index)]


def counterfactual(x: np.ndarray, saliency_map: np.ndarray, class_index: int, k: int,
                   mode: str) -> perturbation.Counterfactual:
    """The picked model's probability after removing or keeping only the top-k pixels."""
    return _counterfactual(x, saliency_map, class_index, k, mode, chosen_model_path())


@st.cache_data(max_entries=128, ttl=3600, show_spinner="Predicting again...")
def _counterfactual(x: np.ndarray, saliency_map: np.ndarray, class_index: int, k: int,
                    mode: str, path: str) -> perturbation.Counterfactual:
    return perturbation.counterfactual(get_model(path), x, saliency_map, class_index, k, mode=mode)


@st.cache_data(max_entries=16, show_spinner="Reading the sample images...")
def samples(source: str) -> list[gallery.Sample]:
    return gallery.load_samples(source, per_class=2)


def compute_map(x: np.ndarray, settings: ViewSettings, *, method: str | None = None,
                layer: str | None = None, classes: tuple[int, ...] | None = None,
                weights: str = "trained", path: str | None = None) -> np.ndarray:
    """The (H, W) map of one input; the gradient is cached, sign and channels are display."""
    result = compute_attribution(x, settings, method=method, layer=layer, classes=classes,
                                 weights=weights, path=path)
    return to_map(result, settings.sign, settings.reduce_channels)[0]


def compute_attribution(x: np.ndarray, settings: ViewSettings, *, method: str | None = None,
                        layer: str | None = None, classes: tuple[int, ...] | None = None,
                        weights: str = "trained", path: str | None = None) -> Attribution:
    """The attribution of one input under the settings (cached), with a progress bar if slow;
    by the model at ``path`` (default: the picked one) with ``weights`` "trained" or
    "randomised"."""
    method = method or settings.method
    layer = layer or settings.layer
    classes = settings.classes if classes is None else classes
    if layer not in OUTPUT_TARGETS:
        classes = ()
    options = tuple(sorted(method_options(dataclasses.replace(settings, layer=layer),
                                          method).items()))
    return explain(x, method, layer, classes, options, weights, path or chosen_model_path())


ESTIMATE_SHOWN_ABOVE_S = 1.0
"""The page tells the estimated time of the maps it is about to compute above this (seconds)."""


def request_work(settings: ViewSettings, images: int) -> list[Work]:
    """The work of the maps a run computes: the chosen method's on each of ``images`` images,
    then each side-by-side panel of the first image (layers, classes or methods; images
    reuse the maps; the randomised model's one more map), counted even when cached."""
    size = settings.size
    works = [estimate_work(settings.method, method_options(settings), size, size, images)]
    if settings.compare == "randomised":
        works.append(estimate_work(settings.method, method_options(settings), size, size))
    items = settings.compare_items if settings.compare in ("layers", "classes", "methods",
                                                           "models") else ()
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
    message = check_budget(works[0], limit, size_choices().sizes)
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
    return objects_in(image, digest, classes, chosen_model_path())
