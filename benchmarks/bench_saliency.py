"""Speed and memory of saliency methods: this engine, plain eager TensorFlow, and peer libraries.

Run from the repository root (see ``benchmarks/README.md``)::

    python benchmarks/bench_saliency.py                 # the shipped model, 10 repeats
    python benchmarks/bench_saliency.py --quick --repeats 2   # smoke test: tiny random WRN-10-1

In one process, on one model and the same 32x32 images (CIFAR-10 test images when the shared
copy exists, else uniform noise), every method is timed for batch 1 and batch 32 in up to five
implementations:

- ``engine``: :func:`sensitivity.engine.saliency.saliency` (compiled gradients, batched samples);
- ``eager``: a plain eager ``tf.GradientTape`` baseline, no ``tf.function``: one tape over the
  batch for gradient, gradient x input, guided backprop (ReLUs of a cloned model get the guided
  gradient) and Grad-CAM; a Python loop of one tape per noisy copy (SmoothGrad) or per path
  step (integrated gradients), each over the whole batch; one eager forward per patch position
  (occlusion);
- ``xplique``: xplique 1.3.3 ``Saliency``, ``SmoothGrad``, ``IntegratedGradients``, ``GradCAM``,
  ``GradientInput``, ``GuidedBackprop``, ``Occlusion``;
- ``tf-keras-vis``: tf-keras-vis 0.8.7 ``Saliency`` (gradient; SmoothGrad with
  ``smooth_samples``) and ``Gradcam``;
- ``forwards``: for the methods made of forward passes (occlusion, Score-CAM, RISE), only
  those passes: the compiled :func:`sensitivity.engine.gradients.forward` over one copy of each
  image per patch, channel or mask, ``MAX_BATCH`` at a time, as the engine batches them. This is
  the measured floor the engine's masking and bookkeeping are compared with (column
  "x forwards").

CAM, LayerCAM, Score-CAM and RISE are the engine's only (no eager or peer rows): CAM and
LayerCAM compare with the engine's gradient row, Score-CAM and RISE with their ``forwards``
row.

Settings are the same everywhere: the target is each image's predicted class (one-hot), 50
SmoothGrad samples with noise sigma 0.15 x 255 (tf-keras-vis: 0.15 x each image's value
range), 50 integrated-gradient steps from a black baseline (midpoint rule everywhere; the
engine's default adaptive path sampling is not timed here), Grad-CAM on the layer the engine
picks (the last 4-D layer), occlusion with 4x4 patches, stride 2, Score-CAM on that layer
with every channel, RISE with ``--masks`` masks (default 1000), both with the 'blur' fill.
Peers run with batches of at most 64 images, like the engine. Each case is warmed up (tracing
excluded), then the implementations of a method take turns for ``--repeats`` rounds; the
table gives the median.

Memory: after the timings every case runs once more and its peak resident set size (RSS) above
the RSS at the call's start is recorded (see :class:`PeakRSS` for how, and the limits).

Floor: the forward multiply-accumulates of the model at 32x32 (:func:`count_macs`, convolution
and dense layers only), 2 FLOPs per MAC, times the passes a method needs (a backward pass to the
input costs about one forward pass), over this machine's float32 matmul rate (best of several
``tf.matmul`` of two n x n matrices, measured in the same process).
"""

from __future__ import annotations

import argparse
import ctypes
import datetime
import gc
import importlib.metadata
import os
import platform
import re
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sensitivity.cli.args import positive_int  # noqa: E402  (after the path is set)

DEFAULT_DATA_DIR = ROOT.parent / "shared" / "datasets" / "cifar10-jpeg"
DEFAULT_OUT = ROOT / "benchmarks" / "results.md"
METHODS = (
    "gradient",
    "smoothgrad",
    "integrated_gradients",
    "gradcam",
    "gradient_x_input",
    "guided_backprop",
    "occlusion",
    "cam",
    "layercam",
    "scorecam",
    "rise",
)
IMPLEMENTATIONS = ("engine", "eager", "xplique", "tf-keras-vis", "forwards")
GRADIENT_ERA = set(METHODS[:7])
"""The methods the eager baseline and xplique are timed on."""
PEER_METHODS = {
    "xplique": GRADIENT_ERA,
    "tf-keras-vis": {"gradient", "smoothgrad", "gradcam"},
}
"""Which methods each peer library offers."""
OFFERED = {**PEER_METHODS, "eager": GRADIENT_ERA, "forwards": {"occlusion", "scorecam", "rise"}}
"""Which methods each implementation other than the engine is timed on."""

SIZE = 32
PATCH = 4
STRIDE = 2
MAX_BATCH = 64
NOISE = 0.15


# --------------------------------------------------------------------------------------------
# FLOPs.


def _kernel_size(layer) -> int:
    """Weights of ``layer``'s kernels (conv, depthwise, pointwise, dense); 0 if it has none."""
    total = 0
    for name in ("kernel", "depthwise_kernel", "pointwise_kernel"):
        variable = getattr(layer, name, None)
        if variable is not None and hasattr(variable, "shape"):
            total += int(np.prod(variable.shape))
    return total


def _positions(shape, layer) -> int:
    """Spatial (or sequence) positions of a ``(N, ..., C)`` (or channels-first) shape."""
    dims = list(shape[1:])
    if getattr(layer, "data_format", "channels_last") == "channels_first":
        dims = dims[1:]
    else:
        dims = dims[:-1]
    return int(np.prod(dims)) if dims else 1


def count_macs(model, height: int = SIZE, width: int = SIZE) -> dict[str, int]:
    """Multiply-accumulates per layer of one forward pass of one ``height x width`` image.

    Counts layers with a kernel (convolutions of any kind, depthwise and separable ones, dense
    layers): each output position costs the kernel's size in MACs; a transposed convolution
    costs that per input position. Nested models are walked. Biases, batch normalisation,
    activations, pooling and additions are not counted (they are not multiply-accumulates and
    are small next to the convolutions). Returns ``{layer path: MACs}`` (only non-zero ones).
    """
    import keras

    spec = model.inputs[0]
    macs: dict[str, int] = {}
    _count(keras, model, (1, height, width, spec.shape[-1]), spec.dtype, "", macs)
    return macs


def _count(keras, model, shape: tuple, dtype, prefix: str, macs: dict[str, int]) -> None:
    """Re-run ``model``'s graph on a symbolic input of concrete ``shape``, recording MACs."""

    def record(layer, *args, **kwargs):
        path = prefix + layer.name
        first = keras.tree.flatten(args)[0]
        if isinstance(layer, keras.Model):
            _count(keras, layer, tuple(first.shape), first.dtype, path + "/", macs)
            return layer(*args, **kwargs)
        out = layer(*args, **kwargs)
        kernel = _kernel_size(layer)
        if kernel:
            transposed = "Transpose" in type(layer).__name__
            positions = _positions((first if transposed else out).shape, layer)
            macs[path] = macs.get(path, 0) + positions * kernel  # shared layers add up
        return out

    inputs = keras.Input(batch_shape=shape, dtype=dtype)
    if isinstance(model, keras.Sequential):
        x = inputs
        for layer in model.layers:
            x = record(layer, x)
        return
    keras.models.clone_model(
        model,
        input_tensors=keras.tree.pack_sequence_as(model.input, [inputs]),
        clone_function=lambda layer: layer,
        call_function=record,
    )


def forward_flops(model, height: int = SIZE, width: int = SIZE) -> int:
    """FLOPs of one forward pass of one image: 2 per multiply-accumulate of :func:`count_macs`."""
    return 2 * sum(count_macs(model, height, width).values())


def matmul_rate(n: int = 2048, repeats: int = 5) -> float:
    """This machine's float32 ``tf.matmul`` rate in FLOP/s: best of ``repeats`` n x n products."""
    import tensorflow as tf

    a = tf.random.uniform((n, n), dtype=tf.float32)
    b = tf.random.uniform((n, n), dtype=tf.float32)
    tf.matmul(a, b).numpy()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        tf.matmul(a, b).numpy()
        best = min(best, time.perf_counter() - start)
    return 2.0 * n**3 / best


def floor_passes(method: str, samples: int, steps: int, patches: int, masks: int = 0,
                 channels: int = 0) -> tuple[int, int]:
    """(forward passes, backward passes to the input) per image that ``method`` needs at least;
    ``masks``: RISE's masks, ``channels``: the channels Score-CAM scores."""
    return {
        "gradient": (1, 1),
        "gradient_x_input": (1, 1),
        "guided_backprop": (1, 1),
        "smoothgrad": (samples, samples),
        "integrated_gradients": (steps, steps),
        "gradcam": (1, 0),  # the backward pass stops at the last feature maps: negligible
        "occlusion": (patches + 1, 0),
        "cam": (1, 0),
        "layercam": (1, 0),  # as Grad-CAM
        "scorecam": (channels, 0),  # one pass per channel's mask (features and fill negligible)
        "rise": (masks, 0),  # one pass per mask
    }[method]


# --------------------------------------------------------------------------------------------
# Memory.


def _proc_kib(field_name: str) -> int:
    with open("/proc/self/status") as fh:
        match = re.search(rf"^{field_name}:\s+(\d+) kB", fh.read(), re.MULTILINE)
    if match is None:
        raise OSError(f"no {field_name} in /proc/self/status")
    return int(match.group(1))


def release_freed_memory() -> bool:
    """Collect garbage and hand malloc's free pages back to the OS (glibc ``malloc_trim``).

    Lowers the RSS before a memory measurement, so that a call's allocations count even when
    an earlier call left freed memory behind. Returns whether ``malloc_trim`` was available.
    """
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        return False
    return True


class PeakRSS:
    """Peak resident set size of one call above the RSS at its start, in MiB.

    Preferred (Linux): reset the kernel's high-water mark (``5`` to ``/proc/self/clear_refs``),
    read ``VmRSS`` before and ``VmHWM`` after the call: exact for the process. Otherwise a
    thread samples ``psutil`` RSS every millisecond (may miss short peaks); otherwise
    ``resource.getrusage`` ``ru_maxrss`` before and after (only counts growth above the
    process's earlier peak, so it is zero for a call smaller than one measured before).

    Before each call, garbage is collected and malloc's free pages are returned to the OS
    (:func:`release_freed_memory`), so memory freed by earlier calls does not hide this one's.

    Limits: RSS is the whole process (all threads, TensorFlow's and oneDNN's caches, Python);
    memory that is still held from earlier calls (caches, pools, memory malloc cannot trim) is
    reused without counting again, so the figure is the extra memory this call needed beyond
    what the process already held, not the call's total working set. TensorFlow's allocations
    are not separable from Python's.
    """

    def __init__(self) -> None:
        self.how = self._pick()
        self.trims = release_freed_memory()

    @staticmethod
    def _pick() -> str:
        try:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")
            _proc_kib("VmHWM")
            return "clear_refs"
        except OSError:
            pass
        try:
            import psutil  # noqa: F401

            return "psutil"
        except ImportError:
            return "ru_maxrss"

    @property
    def description(self) -> str:
        """How the figure was measured, for the report."""
        trim = "; garbage collected and malloc_trim(0) before each call" if self.trims else ""
        return {
            "clear_refs": "peak RSS (VmHWM, reset through /proc/self/clear_refs) minus VmRSS at "
            "the call's start",
            "psutil": "largest psutil RSS sampled every 1 ms during the call minus RSS at its "
            "start (short peaks may be missed)",
            "ru_maxrss": "growth of getrusage ru_maxrss during the call (0 unless the call "
            "exceeds the process's earlier peak)",
        }[self.how] + trim

    def measure(self, fn: Callable[[], object]) -> float:
        """Run ``fn`` once; MiB of peak RSS above the RSS before it."""
        release_freed_memory()
        if self.how == "clear_refs":
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")
            before = _proc_kib("VmRSS")
            fn()
            return max(0, _proc_kib("VmHWM") - before) / 1024
        if self.how == "psutil":
            import psutil

            process = psutil.Process()
            before = process.memory_info().rss
            peak = [before]
            done = threading.Event()

            def sample() -> None:
                while not done.is_set():
                    peak[0] = max(peak[0], process.memory_info().rss)
                    time.sleep(0.001)

            thread = threading.Thread(target=sample, daemon=True)
            thread.start()
            try:
                fn()
            finally:
                done.set()
                thread.join()
            peak[0] = max(peak[0], process.memory_info().rss)
            return max(0, peak[0] - before) / 2**20
        import resource

        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        fn()
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return max(0, after - before) / 1024  # KiB on Linux


# --------------------------------------------------------------------------------------------
# Implementations. Each factory returns fn(images, onehot) -> maps, or raises.


@dataclass
class Settings:
    """Method settings shared by all implementations."""

    samples: int = 50
    steps: int = 50
    noise: float = NOISE
    patch: int = PATCH
    stride: int = STRIDE
    seed: int = 0
    feature_layer: str = ""
    masks: int = 1000
    channels: int = 0
    """Channels of ``feature_layer``: the masks Score-CAM scores."""
    patches: int = 0

    def forward_count(self, method: str) -> int:
        """Forward passes per image of a method made of them: patches, channels or masks."""
        return {"occlusion": self.patches, "scorecam": self.channels, "rise": self.masks}[method]

    def engine_options(self, method: str) -> dict:
        """Options of :func:`sensitivity.engine.saliency.saliency` for ``method``."""
        return {
            "smoothgrad": {"samples": self.samples, "noise": self.noise, "seed": self.seed},
            # The midpoint rule, as the peers run it (the engine's default adaptive sampling
            # adds steps // 2 - 1 forward passes).
            "integrated_gradients": {"steps": self.steps, "baseline": "black",
                                     "path_sampling": "uniform"},
            "gradcam": {"target_layer": self.feature_layer},
            "occlusion": {"patch": self.patch, "stride": self.stride, "fill": "mean"},
            "layercam": {"target_layer": self.feature_layer},
            "scorecam": {"target_layer": self.feature_layer, "fill": "blur"},
            "rise": {"masks": self.masks, "fill": "blur", "seed": self.seed},
        }.get(method, {})


def _engine(model, method: str, settings: Settings):
    from sensitivity.engine.saliency import saliency

    options = settings.engine_options(method)

    def run(images, onehot):
        return saliency(
            model, images, method=method, class_mask=onehot, max_batch=MAX_BATCH, **options
        )

    return run


def _forwards(model, method: str, settings: Settings):
    """Only the forward passes of a forward-pass method: ``forward_count`` copies of each image
    through the compiled engine, ``MAX_BATCH`` at a time (no masks, no bookkeeping)."""
    from sensitivity.engine import gradients as engine

    target = engine.make_target(model, "logits")
    count = settings.forward_count(method)

    def run(images, onehot):
        total = len(images) * count
        for start in range(0, total, MAX_BATCH):
            index = np.arange(start, min(start + MAX_BATCH, total)) // count
            engine.forward(model, target, images[index], onehot[index], max_batch=MAX_BATCH)

    return run


def _occlusion_starts(size: int, patch: int, stride: int) -> list[int]:
    starts = list(range(0, size - patch + 1, stride))
    if starts[-1] != size - patch:
        starts.append(size - patch)
    return starts


def _guided_clone(model):
    """A copy of ``model`` whose ReLU layers pass only positive gradients where inputs are > 0."""
    import keras
    import tensorflow as tf

    class GuidedReLU(keras.layers.Layer):
        def call(self, x):
            @tf.custom_gradient
            def guided(v):
                def grad(dy):
                    return dy * tf.cast(v > 0, dy.dtype) * tf.cast(dy > 0, dy.dtype)

                return tf.nn.relu(v), grad

            return guided(x)

    def clone(layer):
        if isinstance(layer, keras.layers.ReLU):
            return GuidedReLU(name=layer.name)
        return layer.__class__.from_config(layer.get_config())

    copy = keras.models.clone_model(model, clone_function=clone)
    copy.set_weights(model.get_weights())
    return copy


def _eager(model, method: str, settings: Settings):
    import keras
    import tensorflow as tf

    def gradient(net, x, onehot):
        x = tf.convert_to_tensor(x)
        with tf.GradientTape() as tape:
            tape.watch(x)
            score = tf.reduce_sum(net(x, training=False) * onehot)
        return tape.gradient(score, x)

    def reduce(g):  # |g| max over RGB, as the engine's default map
        return tf.reduce_max(tf.abs(g), axis=-1).numpy()

    if method in ("gradient", "gradient_x_input"):
        factor = method == "gradient_x_input"
        return lambda x, w: reduce(gradient(model, x, w) * (x if factor else 1.0))
    if method == "guided_backprop":
        guided = _guided_clone(model)
        return lambda x, w: reduce(gradient(guided, x, w))
    if method == "smoothgrad":
        sigma = settings.noise * 255.0

        def smoothgrad(x, w):
            rng = np.random.default_rng(settings.seed)
            total = tf.zeros_like(x)
            for _ in range(settings.samples):
                noisy = x + rng.normal(0.0, sigma, x.shape).astype(np.float32)
                total += gradient(model, noisy, w)
            return reduce(total / settings.samples)

        return smoothgrad
    if method == "integrated_gradients":

        def integrated(x, w):
            total = tf.zeros_like(x)
            for k in range(settings.steps):
                total += gradient(model, x * ((k + 0.5) / settings.steps), w)
            return reduce(x * total / settings.steps)

        return integrated
    if method == "gradcam":
        layer = model.get_layer(settings.feature_layer)
        features_model = keras.Model(model.input, [layer.output, model.outputs[0]])

        def gradcam(x, w):
            with tf.GradientTape() as tape:
                features, logits = features_model(x, training=False)
                score = tf.reduce_sum(logits * w)
            grads = tape.gradient(score, features)
            weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
            cam = tf.nn.relu(tf.reduce_sum(features * weights, axis=-1, keepdims=True))
            return tf.image.resize(cam, x.shape[1:3], method="bilinear")[..., 0].numpy()

        return gradcam
    if method == "occlusion":

        def occlusion(x, w):
            n, height, width, _ = x.shape
            reference = np.sum(model(x, training=False).numpy() * w, axis=1)
            colours = x.mean(axis=(1, 2))[:, None, None, :]
            drops = np.zeros((n, height, width))
            covered = np.zeros((height, width))
            p = settings.patch
            for y in _occlusion_starts(height, p, settings.stride):
                for x0 in _occlusion_starts(width, p, settings.stride):
                    occluded = x.copy()
                    occluded[:, y : y + p, x0 : x0 + p] = colours
                    scores = np.sum(model(occluded, training=False).numpy() * w, axis=1)
                    drops[:, y : y + p, x0 : x0 + p] += (reference - scores)[:, None, None]
                    covered[y : y + p, x0 : x0 + p] += 1
            return drops / covered

        return occlusion
    raise ValueError(method)


def _xplique(model, method: str, settings: Settings):
    from xplique import attributions as xa

    common = {"batch_size": MAX_BATCH}
    if method == "gradient":
        explainer = xa.Saliency(model, reducer="max", **common)
    elif method == "smoothgrad":
        explainer = xa.SmoothGrad(
            model, nb_samples=settings.samples, noise=settings.noise * 255.0, **common
        )
    elif method == "integrated_gradients":
        explainer = xa.IntegratedGradients(
            model, steps=settings.steps, baseline_value=0.0, **common
        )
    elif method == "gradcam":
        explainer = xa.GradCAM(model, conv_layer=settings.feature_layer, **common)
    elif method == "gradient_x_input":
        explainer = xa.GradientInput(model, **common)
    elif method == "guided_backprop":
        explainer = xa.GuidedBackprop(model, **common)
    elif method == "occlusion":
        # xplique fills with one scalar; the cost does not depend on the value.
        explainer = xa.Occlusion(
            model,
            patch_size=settings.patch,
            patch_stride=settings.stride,
            occlusion_value=127.5,
            **common,
        )
    else:
        raise ValueError(method)
    return lambda x, w: np.asarray(explainer.explain(x, w))


def _tf_keras_vis(model, method: str, settings: Settings):
    from tf_keras_vis.gradcam import Gradcam
    from tf_keras_vis.saliency import Saliency
    from tf_keras_vis.utils.scores import CategoricalScore

    if method in ("gradient", "smoothgrad"):
        explainer = Saliency(model, clone=False)
        samples = settings.samples if method == "smoothgrad" else 0

        def run(x, w):
            score = CategoricalScore(w.argmax(axis=1).tolist())
            return explainer(
                score, x, smooth_samples=samples, smooth_noise=settings.noise, normalize_map=False
            )

        return run
    if method == "gradcam":
        explainer = Gradcam(model, clone=False)

        def run_gradcam(x, w):
            score = CategoricalScore(w.argmax(axis=1).tolist())
            return explainer(
                score,
                x,
                penultimate_layer=settings.feature_layer,
                seek_penultimate_conv_layer=False,
                normalize_cam=False,
            )

        return run_gradcam
    raise ValueError(method)


FACTORIES = {
    "engine": _engine,
    "eager": _eager,
    "xplique": _xplique,
    "tf-keras-vis": _tf_keras_vis,
    "forwards": _forwards,
}


def peer_status(name: str) -> str | None:
    """None when the peer library imports, else why not (``"not installed"`` or the error)."""
    module = {"xplique": "xplique", "tf-keras-vis": "tf_keras_vis"}[name]
    try:
        __import__(module)
    except ImportError:
        return "not installed"
    except Exception as exc:  # noqa: BLE001 - a broken install can raise anything on import
        return f"import failed: {type(exc).__name__}: {exc}"[:120]
    return None


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


# --------------------------------------------------------------------------------------------
# Running.


@dataclass
class Case:
    """One method x batch x implementation; times in seconds per call."""

    method: str
    batch: int
    implementation: str
    times: list[float] = field(default_factory=list)
    memory_mib: float | None = None
    error: str | None = None
    fn: Callable | None = None

    @property
    def ms_per_image(self) -> float | None:
        """Median milliseconds per image, or None without timings."""
        if not self.times:
            return None
        return 1000.0 * statistics.median(self.times) / self.batch


def load_images(data_dir: Path | None, count: int, seed: int = 0) -> tuple[np.ndarray, str]:
    """``(count, 32, 32, 3)`` float32 images 0..255 and where they came from."""
    if data_dir is not None and (Path(data_dir) / "test").is_dir():
        from sensitivity.model.data import load_split

        images, _ = load_split(data_dir, "test", limit=count, cache=False)
        if len(images) >= count:
            return images[:count].astype(np.float32), f"CIFAR-10 test images from {data_dir}"
    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 255, (count, SIZE, SIZE, 3)).astype(np.float32)
    return images, "uniform random images"


def _short_error(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".replace("\n", " ").replace("|", "/")
    return text[:100] + ("..." if len(text) > 100 else "")


def _timed(fn: Callable, images: np.ndarray, onehot: np.ndarray) -> float:
    start = time.perf_counter()
    fn(images, onehot)
    return time.perf_counter() - start


def run_benchmark(
    model,
    images: np.ndarray,
    *,
    methods: list[str],
    batches: list[int],
    implementations: list[str],
    settings: Settings,
    repeats: int,
    warmup: int,
    memory: PeakRSS,
    log: Callable[[str], None] = print,
) -> list[Case]:
    """Time every case (warm-up, then ``repeats`` rounds taking turns), then measure memory."""
    from sensitivity.engine.inference import logits

    onehot_all = np.eye(10, dtype=np.float32)[logits(model, images).argmax(axis=1)]
    cases: list[Case] = []
    for batch in batches:
        x, w = images[:batch].copy(), onehot_all[:batch].copy()
        for method in methods:
            group = []
            for name in implementations:
                if name in OFFERED and method not in OFFERED[name]:
                    continue
                case = Case(method, batch, name)
                cases.append(case)
                status = peer_status(name) if name in PEER_METHODS else None
                if status is not None:
                    case.error = status
                    continue
                try:
                    case.fn = FACTORIES[name](model, method, settings)
                    for _ in range(warmup):
                        case.fn(x, w)
                except Exception as exc:  # noqa: BLE001 - report and go on
                    case.error = _short_error(exc)
                    continue
                group.append(case)
            names = ", ".join(c.implementation for c in group) or "nothing"
            log(f"batch {batch:3d} {method:22s} warmed up; timing {names}")
            for round_ in range(repeats):
                order = group[round_ % len(group) :] + group[: round_ % len(group)] if group else []
                for case in order:
                    if case.error is None:
                        try:
                            case.times.append(_timed(case.fn, x, w))
                        except Exception as exc:  # noqa: BLE001
                            case.error = _short_error(exc)
    log(f"memory ({memory.how}) ...")
    for case in cases:
        if case.error is None and case.fn is not None:
            x, w = images[: case.batch].copy(), onehot_all[: case.batch].copy()
            case.memory_mib = memory.measure(lambda c=case, x=x, w=w: c.fn(x, w))
        case.fn = None
    return cases


# --------------------------------------------------------------------------------------------
# Report.


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            match = re.search(r"^model name\s*:\s*(.+)$", fh.read(), re.MULTILINE)
        if match:
            return match.group(1).strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _fmt(value: float | None, digits: int = 2) -> str:
    if value is None:
        return "—"
    if value >= 100:
        return f"{value:.0f}"
    return f"{value:.{digits}f}"


def format_report(
    cases: list[Case],
    *,
    model_name: str,
    macs: int,
    rate: float,
    matmul_n: int,
    settings: Settings,
    patches: int,
    repeats: int,
    warmup: int,
    image_source: str,
    memory: PeakRSS,
) -> str:
    """The Markdown report: context, floors, and one row per case."""
    flops = 2 * macs
    floors = {}
    for method in dict.fromkeys(c.method for c in cases):
        forwards, backwards = floor_passes(method, settings.samples, settings.steps, patches,
                                           settings.masks, settings.channels)
        floors[method] = (forwards, backwards, 1000.0 * (forwards + backwards) * flops / rate)
    eager = {(c.method, c.batch): c.ms_per_image for c in cases if c.implementation == "eager"}
    bare = {(c.method, c.batch): c.ms_per_image for c in cases if c.implementation == "forwards"}
    engine_gradient = {c.batch: c.ms_per_image for c in cases
                       if c.implementation == "engine" and c.method == "gradient"}
    lines = [
        "# Saliency benchmark results",
        "",
        f"- Date: {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}",
        f"- Machine: {_cpu_name()}, {os.cpu_count()} logical cores, Python "
        f"{platform.python_version()}",
        f"- Libraries: tensorflow {_version('tensorflow-cpu')}, keras {_version('keras')}, "
        f"xplique {_version('xplique')}, tf-keras-vis {_version('tf-keras-vis')}",
        f"- Model: {model_name}; forward pass of one 32x32 image: {macs / 1e6:.2f} M "
        f"multiply-accumulates = {flops / 1e6:.2f} MFLOP (convolution and dense layers)",
        f"- float32 matmul rate: {rate / 1e9:.1f} GFLOP/s (best of 5 tf.matmul, "
        f"{matmul_n}x{matmul_n})",
        f"- Images: {image_source}; target: each image's predicted class (one-hot)",
        f"- Settings: SmoothGrad {settings.samples} samples, noise sigma {settings.noise} x 255; "
        f"integrated gradients {settings.steps} steps (midpoint rule), black baseline; Grad-CAM on "
        f"`{settings.feature_layer}`; occlusion {settings.patch}x{settings.patch} patches, "
        f"stride {settings.stride} ({patches} positions); LayerCAM and Score-CAM on "
        f"`{settings.feature_layer}` (Score-CAM: all {settings.channels} channels), RISE "
        f"{settings.masks} masks, both with the 'blur' fill; batches of at most {MAX_BATCH}",
        f"- Timing: median of {repeats} calls per case after {warmup} warm-up call(s); "
        "implementations of a method take turns in each round"
        + (" (**fewer than 10 repeats: smoke test, not a result**)" if repeats < 10 else ""),
        f"- Memory: {memory.description}; one call per case after all timings, in case order. "
        "Memory already held by the process (TensorFlow's and malloc's caches) is reused "
        "without counting, so this is the extra memory a call needed, not its total footprint.",
        "",
        "## Floor per image",
        "",
        "| method | forward passes | backward passes | floor ms / image |",
        "|---|---:|---:|---:|",
    ]
    for method, (forwards, backwards, ms) in floors.items():
        lines.append(f"| {method} | {forwards} | {backwards} | {ms:.3f} |")
    lines += [
        "",
        "Floor = (forward + backward passes) x forward FLOPs / matmul rate; a backward pass to "
        "the input is taken to cost one forward pass. Grad-CAM's backward pass stops at the "
        "last feature maps and is not counted (nor LayerCAM's); CAM is one forward pass; "
        "Score-CAM and RISE one forward pass per channel or mask.",
        "",
        "## Results",
        "",
        "| method | batch | implementation | ms / image (median) | x eager | x floor "
        "| x gradient | x forwards | peak RSS above start (MiB) |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for case in cases:
        ms = case.ms_per_image
        if case.error is not None:
            lines.append(
                f"| {case.method} | {case.batch} | {case.implementation} | {case.error} "
                "| — | — | — | — | — |"
            )
            continue
        base = eager.get((case.method, case.batch))
        ratio = ms / base if ms is not None and base else None
        floor = ms / floors[case.method][2] if ms is not None and floors[case.method][2] else None
        gradient = engine_gradient.get(case.batch)
        over_gradient = ms / gradient if ms is not None and gradient else None
        forwards = bare.get((case.method, case.batch))
        over_forwards = ms / forwards if ms is not None and forwards else None
        lines.append(
            f"| {case.method} | {case.batch} | {case.implementation} | {_fmt(ms, 3)} "
            f"| {_fmt(ratio)} | {_fmt(floor, 1)} | {_fmt(over_gradient)} "
            f"| {_fmt(over_forwards)} | {_fmt(case.memory_mib, 1)} |"
        )
    lines += [
        "",
        "x eager: time over the plain eager `tf.GradientTape` baseline of the same method and "
        "batch (below 1 is faster). x floor: time over the floor. Methods a peer does not offer "
        "have no row for it (tf-keras-vis: gradient, smoothgrad, gradcam only). x gradient: "
        "time over the engine's vanilla gradient at the same batch (CAM and Grad-CAM should be "
        "at most 1). x forwards: time over the bare forward passes of the method (`forwards` "
        "rows; Score-CAM and RISE should be at most 1.3).",
        "",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Command line.


def _list(text: str, allowed: tuple[str, ...], what: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [t for t in items if t not in allowed]
    if unknown or not items:
        raise argparse.ArgumentTypeError(
            f"unknown {what} {unknown[0] if unknown else '(none given)'!r}; "
            f"choose from {', '.join(allowed)}"
        )
    return list(dict.fromkeys(items))


def build_parser() -> argparse.ArgumentParser:
    """The benchmark's arguments."""
    parser = argparse.ArgumentParser(
        prog="python benchmarks/bench_saliency.py",
        description="Time saliency methods: this engine, eager TensorFlow, xplique, tf-keras-vis.",
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--model", help="a .keras file with its card (default: the shipped one)")
    source.add_argument(
        "--quick", action="store_true", help="a tiny random WRN-10-1 instead (smoke test)"
    )
    parser.add_argument("--repeats", type=positive_int, default=10, help="timed calls per case")
    parser.add_argument("--warmup", type=positive_int, default=1, help="untimed calls first")
    parser.add_argument(
        "--batches",
        type=lambda t: [positive_int(v) for v in t.split(",") if v.strip()],
        default=[1, 32],
        help="comma-separated batch sizes (default 1,32)",
    )
    parser.add_argument(
        "--methods",
        type=lambda t: _list(t, METHODS, "method"),
        default=list(METHODS),
        help="comma-separated methods (default: all eleven)",
    )
    parser.add_argument(
        "--implementations",
        type=lambda t: _list(t, IMPLEMENTATIONS, "implementation"),
        default=list(IMPLEMENTATIONS),
        help=f"comma-separated, from {','.join(IMPLEMENTATIONS)} (default: all)",
    )
    parser.add_argument("--samples", type=positive_int, default=50, help="SmoothGrad samples")
    parser.add_argument("--steps", type=positive_int, default=50, help="integrated-gradient steps")
    parser.add_argument("--masks", type=positive_int, default=1000, help="RISE masks")
    parser.add_argument(
        "--data-dir",
        default=str(DEFAULT_DATA_DIR),
        help="CIFAR-10 class folders with test/ (random images if absent)",
    )
    parser.add_argument("--matmul-size", type=positive_int, default=2048, help="n of n x n matmul")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="Markdown file for the table")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; prints the Markdown report and writes it to ``--out``."""
    args = build_parser().parse_args(argv)
    import sensitivity  # sets TensorFlow's environment before TensorFlow is imported
    from sensitivity.engine import gradients as engine

    if args.quick:
        import keras

        from sensitivity.model.wrn import build_wrn

        keras.utils.set_random_seed(0)
        model = build_wrn(10, 1)
        model_name = "tiny random WRN-10-1 (--quick)"
    else:
        try:
            model = sensitivity.load_model(args.model)
        except sensitivity.ModelError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        model_name = f"{model.name} from {args.model or 'the default model file'}"
    out = Path(args.out)
    images, image_source = load_images(Path(args.data_dir), max(args.batches))
    feature_layer = engine.last_spatial_layer(model)
    patches = len(_occlusion_starts(SIZE, PATCH, STRIDE)) ** 2
    settings = Settings(
        samples=args.samples, steps=args.steps, feature_layer=feature_layer, masks=args.masks,
        channels=int(engine.layer_shape(model, feature_layer)[-1]), patches=patches,
    )
    print(f"{model_name}: counting FLOPs, timing a {args.matmul_size}^2 matmul ...", flush=True)
    macs = sum(count_macs(model).values())
    rate = matmul_rate(args.matmul_size)
    memory = PeakRSS()
    for name in PEER_METHODS:
        if name in args.implementations and (status := peer_status(name)) is not None:
            print(f"{name}: {status}; skipped", flush=True)
    cases = run_benchmark(
        model,
        images,
        methods=args.methods,
        batches=args.batches,
        implementations=args.implementations,
        settings=settings,
        repeats=args.repeats,
        warmup=args.warmup,
        memory=memory,
        log=lambda text: print(text, flush=True),
    )
    report = format_report(
        cases,
        model_name=model_name,
        macs=macs,
        rate=rate,
        matmul_n=args.matmul_size,
        settings=settings,
        patches=patches,
        repeats=args.repeats,
        warmup=args.warmup,
        image_source=image_source,
        memory=memory,
    )
    print(report)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report, encoding="utf-8")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
