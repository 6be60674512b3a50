"""The model a server shares: loaded once, and preloaded only after the server is up."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict

import pytest

from sensitivity.web import serving
from tests.helpers import PythonProcess


def test_preload_loads_only_after_its_gate(monkeypatch):
    order = []
    gate = threading.Event()
    monkeypatch.setattr(serving, "ready_model", lambda path=None: order.append(("load", path)))

    def after():
        gate.wait(10)
        order.append("after")

    thread = serving.preload("some.keras", after=after)
    time.sleep(0.2)
    assert order == [] and thread.is_alive()
    gate.set()
    thread.join(10)
    assert order == ["after", ("load", "some.keras")]


def test_concurrent_callers_share_one_load(monkeypatch, tmp_path):
    loads = []

    def slow_load(path):
        loads.append(path)
        time.sleep(0.3)
        return object()

    monkeypatch.setattr("sensitivity.model.io.load_model", slow_load)
    monkeypatch.setattr(serving, "warm_up", lambda model: None)
    monkeypatch.setattr(serving, "warm_up_later", lambda model, wait_s=0.0: None)
    monkeypatch.setattr(serving, "_models", OrderedDict())
    path = str(tmp_path / "model.keras")
    results = []
    threads = [threading.Thread(target=lambda: results.append(serving.ready_model(path)))
               for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert loads == [path] and len(results) == 4 and len({id(r) for r in results}) == 1


def test_warm_up_traces_everything_a_page_calls():
    import numpy as np

    from sensitivity.engine.choices import DEFAULT_METHOD
    from sensitivity.engine.gradients import layer_shape, tracing_count
    from sensitivity.engine.inference import predict
    from sensitivity.methods import attribute
    from sensitivity.model.wrn import build_wrn
    from sensitivity.trust.ood import Detector, assess, attach_detector, fit_gaussians

    model = build_wrn(10, 1)
    rng = np.random.default_rng(0)
    channels = layer_shape(model, "group2")[-1]  # a detector on a feature layer, as shipped
    gaussians = fit_gaussians(rng.normal(size=(40, channels)), np.arange(40) % 10)
    attach_detector(model, Detector(("energy", "mahalanobis:group2"), (0.0, 0.0), (1.0, 1.0),
                                    0.0, {"group2": gaussians}))
    serving.warm_up(model)
    serving.warm_up_later(model)
    traced = tracing_count(model)
    for size in (32, 48):
        images = rng.uniform(0, 255, (2, size, size, 3))
        predict(model, images)
        assess(model, images[0])
        attribute(model, images)  # each image's predicted class
        attribute(model, images, class_mask=[1, 4])
        attribute(model, images, class_mask=3, method="gradient_x_input")
        attribute(model, images, method=DEFAULT_METHOD)
        attribute(model, images, class_mask=[2, 5], method=DEFAULT_METHOD)
    assert tracing_count(model) == traced


EXITS_DURING_THE_WARM_UP = """
import threading, time
import sensitivity.methods as methods
from sensitivity.web.serving import analysis_shown, ready_model

started, original = threading.Event(), methods.attribute
def attribute(*args, **kwargs):  # tells when the later warm-up's trace begins
    if threading.current_thread().name == "sensitivity-warm-up":
        started.set()
    return original(*args, **kwargs)

methods.attribute = attribute
ready_model()
analysis_shown()
assert started.wait(60)
time.sleep(0.1)  # the interpreter exits with the trace under way
"""

KERAS_IMPORT_SKIPS = """
import sys
from sensitivity.web.serving import import_keras
import_keras()
import keras
from keras.src.trainers.data_adapters import array_slicing
skipped = [n for n in {installed!r} if n in sys.modules]
assert not skipped, skipped
assert array_slicing.pandas is None
import pandas  # nothing is left blocked
assert pandas.DataFrame({{"a": [1]}}).shape == (1, 1)
"""


def installed_skipped_packages() -> list[str]:
    """The packages of ``serving.SKIPPED_BY_KERAS`` installed here."""
    import importlib.util

    return [n for n in serving.SKIPPED_BY_KERAS if importlib.util.find_spec(n)]


@pytest.fixture(scope="module")
def fresh_interpreters(tmp_path_factory):
    """The two checks below that need a fresh interpreter, started together (each imports
    TensorFlow)."""
    folder = tmp_path_factory.mktemp("serving")
    running = {
        "exit": PythonProcess(EXITS_DURING_THE_WARM_UP, folder, "exit"),
        "keras": PythonProcess(KERAS_IMPORT_SKIPS.format(installed=installed_skipped_packages()),
                               folder, "keras"),
    }
    yield running
    for process in running.values():
        process.stop()


def test_a_process_exiting_during_the_later_warm_up_exits_cleanly(fresh_interpreters):
    """The later warm-up traces on a daemon thread; a process that exits meanwhile (a server
    stopped, a short test run) waits for it instead of aborting in the middle of the trace."""
    done = fresh_interpreters["exit"].result()
    assert done.returncode == 0, done.stderr[-2000:]
    assert "terminate called" not in done.stderr


def test_sessions_calling_a_fresh_model_at_once_share_its_traces():
    """Users whose first calls reach an untraced gradient at the same moment (a model served
    before its warm-up is done) get correct maps, and the functions are traced once, not once
    per user."""
    import keras
    import numpy as np

    from sensitivity.engine.gradients import tracing_count
    from sensitivity.engine.saliency import saliency
    from sensitivity.model.wrn import build_wrn

    def fresh():
        keras.utils.set_random_seed(5)
        return build_wrn(10, 1)

    rng = np.random.default_rng(5)
    images = rng.uniform(0, 255, (6, 32, 32, 3)).astype(np.float32)
    calls = [{}, {"class_mask": 2}] * 3  # the predicted-class and the given-class functions
    sequential = fresh()
    expected = [saliency(sequential, images[i:i + 1], **kw) for i, kw in enumerate(calls)]

    model = fresh()
    barrier = threading.Barrier(len(calls))
    results: dict[int, np.ndarray] = {}

    def user(i):
        barrier.wait()
        results[i] = saliency(model, images[i:i + 1], **calls[i])

    threads = [threading.Thread(target=user, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert sorted(results) == list(range(len(calls)))
    assert tracing_count(model) == tracing_count(sequential) == 2
    for i, map_ in results.items():
        np.testing.assert_allclose(map_, expected[i], rtol=1e-5, atol=1e-6 * expected[i].max())


def test_the_servers_keras_import_skips_what_it_never_uses(fresh_interpreters):
    """Keras imported through ``import_keras`` leaves out pandas (and scikit-learn, IPython):
    Keras' optional pandas support is off, and the packages still import normally after."""
    assert "pandas" in installed_skipped_packages()  # Streamlit installs it: the case guarded
    done = fresh_interpreters["keras"].result()
    assert done.returncode == 0, done.stderr[-2000:]


def test_the_import_skip_applies_to_one_thread_only():
    import importlib
    import sys

    import pytest

    name = "wave"  # a standard-library module nothing here imports
    made = {}
    thread = threading.Thread(target=lambda: made.update(other=serving._SkipInThread((name,))))
    thread.start()
    thread.join()
    sys.modules.pop(name, None)
    try:
        sys.meta_path.insert(0, made["other"])
        assert importlib.import_module(name).__name__ == name  # skipped in another thread only
        sys.modules.pop(name)
        sys.meta_path.insert(0, serving._SkipInThread((name,)))
        with pytest.raises(ModuleNotFoundError, match=name):
            importlib.import_module(name)
    finally:
        sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, serving._SkipInThread)]
        sys.modules.pop(name, None)


def test_the_server_holds_at_most_models_held_dropping_the_least_recently_used(monkeypatch):
    from collections import OrderedDict

    from sensitivity.model import io as model_io
    from sensitivity.web import serving

    loaded: list[str] = []
    monkeypatch.setattr(model_io, "load_model", lambda key: loaded.append(key) or object())
    monkeypatch.setattr(serving, "warm_up", lambda model: None)
    monkeypatch.setattr(serving, "warm_up_later", lambda *args: None)
    monkeypatch.setattr(serving, "_models", OrderedDict())
    paths = [f"/models/{name}.keras" for name in "abcd"]
    assert serving.MODELS_HELD == 3
    for path in paths:
        serving.ready_model(path)
    assert list(serving._models) == paths[1:]
    serving.ready_model(paths[1])  # held: used again, not loaded again
    serving.ready_model(paths[0])  # loaded again; the least recently used (c) goes
    assert list(serving._models) == [paths[3], paths[1], paths[0]]
    assert loaded == [*paths, paths[0]]
