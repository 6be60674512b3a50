"""The model a server shares between its users, loaded and warmed once per process.

:func:`ready_model` loads a model (checked, safe mode), traces its gradient function and runs
once through every step the page takes (prediction, attribution, figures), so that no user pays
for a first call. :func:`preload` does it on a background thread: ``python -m sensitivity
serve`` starts it with Streamlit, so that importing TensorFlow and loading the model overlap the
browser's first page load.
"""

from __future__ import annotations

import atexit
import importlib.abc
import os
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

MODELS_HELD = 3
"""Most models a server keeps loaded at once; loading another drops the least recently used
(about 30 MB each for the shipped WRNs, with their compiled functions)."""

_lock = threading.Lock()
_models: OrderedDict[str, object] = OrderedDict()
_first_analysis = threading.Event()
_exiting = threading.Event()
_later_warm_ups: list[threading.Thread] = []
LATER_WARM_UP_WAIT_S = 60.0  # the later warm-up waits at most this long for a first analysis
EXIT_WAIT_S = 60.0  # at exit, how long to wait for a later warm-up under way


# Packages Keras imports only if they are installed, for features a server never uses (pandas
# and scikit-learn inputs to `fit`, notebook display): about 1 s of a cold start for pandas
# (with pyarrow) in the app's own environment, 3 s more for scikit-learn and IPython in a
# developer's (benchmarks/README.md).
SKIPPED_BY_KERAS = ("pandas", "sklearn", "IPython")


class _SkipInThread(importlib.abc.MetaPathFinder):
    """An import finder that reports ``names`` (and their submodules) as missing to one thread
    only: the thread importing Keras, while other threads import anything they like."""

    def __init__(self, names: tuple[str, ...]):
        self.names = names
        self.thread = threading.get_ident()

    def find_spec(self, fullname, path=None, target=None):
        if threading.get_ident() == self.thread and fullname.partition(".")[0] in self.names:
            raise ModuleNotFoundError(f"{fullname} is skipped while Keras loads", name=fullname)
        return None


def import_keras() -> None:
    """Import Keras and TensorFlow for a server, without the optional packages
    :data:`SKIPPED_BY_KERAS` (Keras leaves their features off). The Keras of a process that
    has imported it already stays as it is; other threads are unaffected."""
    if "keras" in sys.modules:
        return
    finder = _SkipInThread(SKIPPED_BY_KERAS)
    sys.meta_path.insert(0, finder)
    try:
        import keras  # noqa: F401
    finally:
        sys.meta_path.remove(finder)


def analysis_shown() -> None:
    """Tell the server that a page has shown an analysis: the later warm-up may start (it would
    slow a cold start's first page down if it ran beside it)."""
    _first_analysis.set()


def warm_up(model) -> None:
    """One pass through the page's work on a blank image of the model's native size (its
    card's; the page's default size for the shipped models): the prediction, the
    out-of-distribution score, the default method's and the plain gradient's maps (traces,
    first-use imports)."""
    import numpy as np

    from sensitivity.engine.choices import DEFAULT_METHOD
    from sensitivity.engine.inference import predict
    from sensitivity.engine.saliency import to_map
    from sensitivity.imaging.postprocess import top_k_mask
    from sensitivity.methods import attribute
    from sensitivity.model.cards import model_card
    from sensitivity.render import figures, pictures
    from sensitivity.render.report import probability_bars_html
    from sensitivity.trust.ood import assess

    card = model_card(model)
    size = card.native_size
    image = np.full((size, size, 3), 128.0, np.float32)
    probabilities = predict(model, image)[0]
    assess(model, image)  # its feature layers' forward pass (nothing without a detector)
    attribute(model, image)  # the method most people try next
    saliency_map = to_map(attribute(model, image, method=DEFAULT_METHOD), "abs", "max")[0]
    probability_bars_html(probabilities, card.class_names)
    figures.saliency_heatmap(saliency_map, title="warm-up").to_json()
    pictures.data_url(pictures.photo(image, boxes=[(0, 0, size, size)]), "JPEG")
    pictures.data_url(pictures.overlay(image, saliency_map))
    pictures.data_url(pictures.mask(top_k_mask(saliency_map, 100)))


def warm_up_later(model, wait_s: float = 0.0) -> None:
    """What a first page does not need: the default method's and the gradient's maps (on a
    blank image of the model's native size) for a
    given class mask (a trace of about a second each), which the first change of the class mask
    would otherwise wait for. Starts once a page has shown an analysis (:func:`analysis_shown`)
    or after ``wait_s`` seconds."""
    import numpy as np

    from sensitivity.engine.choices import DEFAULT_METHOD
    from sensitivity.methods import attribute
    from sensitivity.model.cards import model_card

    _first_analysis.wait(wait_s)
    size = model_card(model).native_size
    image = np.full((1, size, size, 3), 128.0, np.float32)
    for method in dict.fromkeys((DEFAULT_METHOD, "gradient")):
        if _exiting.is_set():
            return
        attribute(model, image, method=method, class_mask=0)


@atexit.register
def _finish_warm_ups() -> None:
    """At exit: a later warm-up not yet begun is skipped, one under way is waited for (a
    process whose daemon thread is torn down in the middle of a TensorFlow trace aborts)."""
    _exiting.set()
    _first_analysis.set()
    for thread in _later_warm_ups:
        thread.join(EXIT_WAIT_S)


def ready_model(path: str | os.PathLike | None = None):
    """The model at ``path`` (default: :func:`sensitivity.model.io.model_path`), loaded and
    warmed once per process; concurrent callers wait for the first load instead of repeating it.
    At most :data:`MODELS_HELD` models are kept: loading another drops the least recently used.

    Raises :class:`sensitivity.ModelError` when the file is missing, altered or unreadable.
    """
    from sensitivity.model.io import load_model, model_path

    key = str(Path(path) if path is not None else model_path())
    import_keras()
    with _lock:
        if key not in _models:
            model = load_model(key)
            warm_up(model)
            _models[key] = model
            # Traced after the first analysis; a caller that needs it meanwhile waits for this
            # one trace (tf.function traces under a lock) instead of tracing again.
            later = threading.Thread(target=warm_up_later, args=(model, LATER_WARM_UP_WAIT_S),
                                     name="sensitivity-warm-up", daemon=True)
            _later_warm_ups.append(later)
            later.start()
            while len(_models) > MODELS_HELD:
                _models.popitem(last=False)
        _models.move_to_end(key)
        return _models[key]


def preload(path: str | os.PathLike | None = None,
            after: Callable[[], object] | None = None) -> threading.Thread:
    """Start :func:`ready_model` on a daemon thread, once ``after()`` has returned (for example
    once the web server listens, so that its start does not wait on TensorFlow's import);
    errors are left for the page to show."""

    def run() -> None:
        from sensitivity.model.io import ModelError

        if after is not None:
            after()
        try:
            ready_model(path)
        except ModelError:
            pass  # the page calls ready_model again and shows the message

    thread = threading.Thread(target=run, name="sensitivity-preload", daemon=True)
    thread.start()
    return thread
