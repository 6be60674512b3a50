"""Gradient engine: compiled, cached gradients of a scalar target with respect to the pixels.

A *target* is the per-image scalar that is differentiated: a weighted sum of the model's
logits (``"logits"``), of its probabilities (``"probabilities"``: the softmax of the logits, or
their sigmoid for a multi-label head), of their logarithm (``"log_probabilities"``), of
each class's largest probability by the model's position head (``"position_probabilities"``,
:mod:`sensitivity.engine.position_target`), or a reduction (``"sum"``, ``"mean"``, ``"l2"``) of
the output of any layer, optionally of one channel. The weights (class weights, or channel
weights for an inner layer) are a per-image ``(N, K)`` tensor, so the predicted-class case,
explicit class masks and channel choices all share one compiled function.

Each routine is a :class:`tf.function` around a :class:`tf.GradientTape`, traced once per
(model, target, routine) with an input signature of dynamic batch, height and width: image
size, batch size, class choice, sign and channel reduction never cause a retrace
(:func:`tracing_count` reports the traces). Compiled functions are cached per model object in a
:class:`weakref.WeakKeyDictionary`; the cache never holds the model itself, only its layers.
The model always runs with ``training=False``: batch normalisation uses its moving statistics
and dropout is off.

Inner layers are reached by rebuilding the model's graph with its own layers (shared weights;
the user's model is not changed) and expanding nested sub-models, so a layer inside a nested
functional or sequential sub-model is addressable as ``"submodel/layer"`` (or by its name alone
when that is unique) without "graph disconnected" errors.

The *logits* are the model's output, unless its last layer ends in a softmax or a sigmoid (a
``Dense`` or other layer with that activation, an ``Activation`` or a ``Softmax`` layer): then
they are the values before that activation, and :func:`head_of` says which it was
(``"softmax"``, ``"sigmoid"``; ``"logits"`` for a model that outputs logits).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf
from scipy.special import expit, log_expit, log_softmax, softmax

from sensitivity.engine import position_target
from sensitivity.engine.choices import LAYER_REDUCTIONS, OUTPUT_TARGETS, POSITION_TARGET
from sensitivity.model.position_head import position_head_of
from sensitivity.trust.calibration import temperature_of

BATCH_PIXEL_BUDGET = 64 * 64 * 64
"""Most pixels (images x height x width) in one pass: large images go fewer at a time."""

_L2_FLOOR = 1e-12  # keeps the gradient of sqrt finite at an all-zero activation


@dataclass(frozen=True)
class Target:
    """The differentiated scalar: ``layer`` is an output target or a layer path.

    ``temperature`` divides the logits before the softmax (or sigmoid: ``activation``) of
    ``"probabilities"`` and ``"log_probabilities"`` (the model's calibration,
    :mod:`sensitivity.trust.calibration`); logits and inner layers are never rescaled."""

    layer: str = "logits"
    reduction: str = "sum"
    temperature: float = 1.0
    activation: str = "softmax"

    @property
    def is_output(self) -> bool:
        """True for the targets with one value per class (:data:`OUTPUT_TARGETS`)."""
        return self.layer in OUTPUT_TARGETS

    @property
    def from_logits(self) -> bool:
        """True for the output targets computed from the logits alone
        (:func:`output_scores`); the position head's target reads a feature map."""
        return self.is_output and self.layer != POSITION_TARGET


# --------------------------------------------------------------------------------------------
# Rebuilding the model's graph so that every layer's output is reachable.


@tf.custom_gradient
def _pass_positive_gradient(x):
    """Identity forward; backward passes only the positive part of the incoming gradient."""

    def grad(upstream):
        return tf.nn.relu(upstream)

    return tf.identity(x), grad


class GuidedGate(keras.layers.Layer):
    """Identity whose gradient is ``max(g, 0)``; placed after a ReLU it makes the ReLU guided.

    ReLU's own gradient already zeroes where the forward input is negative; the gate also
    zeroes where the incoming gradient is negative, which is guided backpropagation.
    """

    def call(self, inputs):
        return _pass_positive_gradient(inputs)

    def compute_output_shape(self, input_shape):
        return input_shape


def _is_relu(layer) -> bool:
    if isinstance(layer, keras.layers.ReLU):
        return True
    return getattr(layer, "activation", None) is keras.activations.relu


def _is_functional(model) -> bool:
    return (
        isinstance(model, keras.Model)
        and not isinstance(model, keras.Sequential)
        and hasattr(model, "inputs")
        and hasattr(model, "outputs")
    )


def _same_layer(layer):
    return layer


class _Expander:
    """Re-runs a model's graph with its own layers, recording every layer's output by path."""

    def __init__(self, guided: bool):
        self.guided = guided
        self._submodels: dict[int, tuple[keras.Model, list[str], int]] = {}

    def expand(self, model) -> tuple[list, object, dict[str, object]]:
        """``(inputs, output, {path: symbolic tensor})`` of a fresh graph equivalent to model."""
        tensors: dict[str, object] = {}
        if isinstance(model, keras.Sequential):
            if not getattr(model, "inputs", None):
                raise ValueError("a Sequential model must be built with an Input to be analysed")
            spec = model.inputs[0]
            inputs = [keras.Input(batch_shape=spec.shape, dtype=spec.dtype)]
            output = self._run_sequential(model, inputs[0], "", tensors)
            return inputs, output, tensors
        if not _is_functional(model):
            raise ValueError(
                f"{type(model).__name__} is a subclassed model; saliency needs a functional or "
                "sequential Keras model, whose layers can be addressed"
            )

        def call(layer, *args, **kwargs):
            return self._call(layer, args, kwargs, "", tensors)

        clone = keras.models.clone_model(model, clone_function=_same_layer, call_function=call)
        return clone.inputs, clone.output, tensors

    def _run_sequential(self, model, x, prefix: str, tensors: dict) -> object:
        for layer in model.layers:
            x = self._call(layer, (x,), {}, prefix, tensors)
        return x

    def _call(self, layer, args, kwargs, prefix: str, tensors: dict):
        path = prefix + layer.name
        if isinstance(layer, keras.Sequential):
            out = self._run_sequential(layer, args[0], path + "/", tensors)
        elif _is_functional(layer):
            wrapper, names, n_out = self._submodel(layer)
            results = wrapper(*args, **kwargs)
            out = keras.tree.pack_sequence_as(layer.output, results[:n_out])
            for name, tensor in zip(names, results[n_out:], strict=True):
                tensors[f"{path}/{name}"] = tensor
        else:
            out = layer(*args, **kwargs)
            if self.guided and _is_relu(layer):
                out = GuidedGate(name=f"{layer.name}_guided_gate")(out)
        if isinstance(out, keras.KerasTensor):
            tensors[path] = out
        return out

    def _submodel(self, model):
        """A model with the sub-model's inputs whose outputs are its output and every layer's."""
        if id(model) not in self._submodels:
            inputs, output, tensors = _Expander(self.guided).expand(model)
            flat_out = keras.tree.flatten(output)
            wrapper = keras.Model(inputs, [*flat_out, *tensors.values()])
            self._submodels[id(model)] = (wrapper, list(tensors), len(flat_out))
        return self._submodels[id(model)]


def _head_kind(layer) -> str:
    """``"softmax"`` or ``"sigmoid"`` when ``layer`` ends in that activation, else ``"logits"``."""
    if isinstance(layer, keras.layers.Softmax):
        return "softmax"
    activation = getattr(layer, "activation", None)
    if activation is keras.activations.softmax:
        return "softmax"
    if activation is keras.activations.sigmoid:
        return "sigmoid"
    return "logits"


class PreActivation(keras.layers.Layer):
    """A layer's output before its activation: runs the wrapped (built) layer's ``call`` with
    a linear activation, on the layer's own weights (the wrapper holds none). The swap lasts
    only while the graph is traced, under the engine's lock."""

    def __init__(self, layer, **kwargs):
        super().__init__(name=f"{layer.name}_pre_activation", **kwargs)
        self._wrapped = (layer,)  # a tuple: not tracked, so the weights stay the layer's

    def call(self, *args, **kwargs):
        layer = self._wrapped[0]
        activation = layer.activation
        layer.activation = keras.activations.linear
        try:
            return layer.call(*args, **kwargs)
        finally:
            layer.activation = activation


def _logits(output) -> tuple[object, str]:
    """The logits behind a graph's ``output`` and the head's kind
    (:data:`sensitivity.model.cards.HEADS`)."""
    history = getattr(output, "_keras_history", None)
    kind = "logits" if history is None else _head_kind(history.operation)
    if kind == "logits":
        return output, kind
    layer = history.operation
    arguments = layer._inbound_nodes[history.node_index].arguments
    if isinstance(layer, (keras.layers.Softmax, keras.layers.Activation)):
        return arguments.keras_tensors[0], kind
    return PreActivation(layer)(*arguments.args, **arguments.kwargs), kind


# --------------------------------------------------------------------------------------------
# Per-model cache of expansions and compiled functions.


class _ModelEntry:
    def __init__(self):
        self.expansions: dict[bool, tuple[list, object, dict[str, object]]] = {}
        self.head = "logits"
        self.functions: dict[tuple, tf.types.experimental.GenericFunction] = {}


_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_LOCK = threading.RLock()


def _entry(model) -> _ModelEntry:
    with _LOCK:
        entry = _CACHE.get(model)
        if entry is None:
            entry = _CACHE[model] = _ModelEntry()
        return entry


def _expansion(model, guided: bool = False) -> tuple[list, object, dict[str, object]]:
    """``(inputs, logits, {path: tensor})`` of the rebuilt graph (see :func:`_logits`)."""
    entry = _entry(model)
    with _LOCK:
        if guided not in entry.expansions:
            inputs, output, tensors = _Expander(guided).expand(model)
            if len(inputs) != 1 or not isinstance(output, keras.KerasTensor):
                raise ValueError("saliency needs a model with one image input and one output")
            logits, entry.head = _logits(output)
            entry.expansions[guided] = (inputs, logits, tensors)
        return entry.expansions[guided]


def head_of(model) -> str:
    """What the model's last layer outputs (:data:`sensitivity.model.cards.HEADS`): ``"softmax"`` or
    ``"sigmoid"`` when it ends in that activation (the engine's logits are then the values
    before it), else ``"logits"``."""
    _expansion(model)
    return _entry(model).head


def probability_activation(head: str) -> str:
    """The function from logits to probabilities for a head: ``"sigmoid"`` for a sigmoid
    (multi-label) head, ``"softmax"`` otherwise."""
    return "sigmoid" if head == "sigmoid" else "softmax"


def tracing_count(model=None) -> int:
    """Total number of traces of the compiled functions of ``model`` (all models when None)."""
    with _LOCK:
        entries = list(_CACHE.values()) if model is None else [_CACHE.get(model)]
        return sum(
            fn.experimental_get_tracing_count()
            for entry in entries
            if entry is not None
            for fn in entry.functions.values()
        )


# --------------------------------------------------------------------------------------------
# Layers and targets.


def layer_names(model) -> list[str]:
    """Paths of all addressable layers in execution order; nested ones as ``"sub/layer"``."""
    return list(_expansion(model)[2])


def layer_shape(model, layer: str) -> tuple:
    """Output shape of a layer (by path or unique name), ``None`` for dynamic sizes."""
    return tuple(_expansion(model)[2][resolve_layer(model, layer)].shape)


def resolve_layer(model, name: str) -> str:
    """The path of the layer called ``name``: an exact path, or a unique last path component."""
    tensors = _expansion(model)[2]
    if name in tensors:
        return name
    matches = [path for path in tensors if path.rsplit("/", 1)[-1] == name]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise ValueError(f"layer name {name!r} is ambiguous; use one of the paths {matches}")
    names = list(tensors)
    shown = ", ".join(names[:8] + (["..."] if len(names) > 8 else []))
    raise ValueError(f"the model has no layer {name!r}; its layers include {shown}")


def make_target(model, layer: str = "logits", reduction: str = "sum") -> Target:
    """Validate and resolve a target; inner layer names become paths."""
    if reduction not in LAYER_REDUCTIONS:
        raise ValueError(f"layer_reduction must be one of {LAYER_REDUCTIONS}, got {reduction!r}")
    if not isinstance(layer, str):
        raise ValueError(f"layer must be a string, got {layer!r}")
    if layer in ("probabilities", "log_probabilities"):
        return Target(layer, "sum", temperature_of(model),
                      probability_activation(head_of(model)))
    if layer == POSITION_TARGET:
        _position_layer(model)  # refuses a model without a fitting position head
    if layer in OUTPUT_TARGETS:
        return Target(layer, "sum")
    return Target(resolve_layer(model, layer), reduction)


def _position_layer(model) -> str:
    """The path of the feature layer the model's position head reads (CAM's); ValueError when
    the model has no position head or the head does not fit that layer and the classes."""
    from sensitivity.methods.localising import cam_head

    head = position_head_of(model)
    if head is None:
        raise ValueError(
            f"layer={POSITION_TARGET!r} needs the model's position head, and this model has "
            "none: `python -m sensitivity fit-positions --model PATH` fits one")
    name, kernel, _ = cam_head(model)
    path = resolve_layer(model, name)
    channels = _expansion(model)[2][path].shape[-1]
    if (head.channels, head.classes) != (channels, kernel.shape[1]):
        raise ValueError(
            f"the model's position head reads {head.channels} channels and {head.classes} "
            f"classes, but its layer {name!r} has {channels} and the model {kernel.shape[1]}")
    return path


def output_targets(model) -> tuple[str, ...]:
    """The output targets ``model`` offers: :data:`OUTPUT_TARGETS`, without the position head's
    when the model has no position head that fits it."""
    try:
        _position_layer(model)
    except ValueError:
        return tuple(t for t in OUTPUT_TARGETS if t != POSITION_TARGET)
    return OUTPUT_TARGETS


def _target_key(model, target: Target) -> tuple:
    """What a compiled function of ``target`` depends on: the target, and for the position
    head's target the head's identity (a compiled function holds its head, so that identity
    is never reused while the function is cached)."""
    if target.layer != POSITION_TARGET:
        return (target,)
    return (target, id(position_head_of(model)))


def weight_size(model, target: Target) -> int:
    """Length of the weight vector of a target: classes (outputs) or channels (inner layer)."""
    _, output, tensors = _expansion(model)
    tensor = output if target.is_output else tensors[target.layer]
    size = tensor.shape[-1]
    if size is None or len(tensor.shape) < 2:
        raise ValueError(f"{target.layer!r} has no static channel axis (shape {tensor.shape})")
    return int(size)


def input_signature(model) -> tf.TensorSpec:
    """The images' spec: the model's input shape with a dynamic batch, and its dtype."""
    spec = _expansion(model)[0][0]
    return tf.TensorSpec([None, *spec.shape[1:]], tf.as_dtype(spec.dtype))


def _score(target: Target, inner, logits, weights):
    """``(N,)`` scalar per image from the target tensor (for the position head's target its
    ``(N, K)`` values), the logits and ``(N, K)`` weights."""
    if target.is_output:
        sigmoid = target.activation == "sigmoid"
        scaled = logits / target.temperature
        if target.layer == "probabilities":
            values = tf.sigmoid(scaled) if sigmoid else tf.nn.softmax(scaled, axis=-1)
        elif target.layer == "log_probabilities":
            values = tf.math.log_sigmoid(scaled) if sigmoid else tf.nn.log_softmax(scaled, -1)
        elif target.layer == POSITION_TARGET:
            values = inner
        else:
            values = logits
        return tf.reduce_sum(values * weights, axis=-1)
    rank = len(inner.shape)
    selected = inner * tf.reshape(weights, [-1] + [1] * (rank - 2) + [weights.shape[-1]])
    axes = list(range(1, rank))
    if target.reduction == "l2":
        return tf.sqrt(tf.maximum(tf.reduce_sum(tf.square(selected), axis=axes), _L2_FLOOR))
    total = tf.reduce_sum(selected, axis=axes)
    if target.reduction == "mean":
        positions = tf.cast(tf.reduce_prod(tf.shape(inner)[1:-1]), inner.dtype)
        total = total / (positions * tf.reduce_sum(weights, axis=-1))
    return total


def output_scores(target: Target, logits: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``(N,)`` float64 scores of an output target computed from ``(N, K)`` logits, as
    :func:`_score` does in the graph (so a forward pass's logits serve for any class weights);
    ValueError for a target not computed from the logits (:attr:`Target.from_logits`)."""
    if not target.is_output:
        raise ValueError(f"{target.layer!r} is not an output target")
    if not target.from_logits:
        raise ValueError(f"{target.layer!r} is not computed from the logits alone")
    scaled = np.asarray(logits, np.float64) / target.temperature
    sigmoid = target.activation == "sigmoid"
    if target.layer == "probabilities":
        values = expit(scaled) if sigmoid else softmax(scaled, axis=-1)
    elif target.layer == "log_probabilities":
        values = log_expit(scaled) if sigmoid else log_softmax(scaled, axis=-1)
    else:
        values = logits
    return (np.asarray(values, np.float64) * np.asarray(weights, np.float64)).sum(axis=-1)


def _compiled(model, key: tuple, build: Callable) -> Callable:
    """The compiled function ``key`` of ``model``, built and traced once under the lock, so
    that two threads (a page and the server's warm-up) never trace through the model's layers
    at the same time (a test run once logged a Keras error from such a pair of traces). Every
    function has an input signature, so tracing it needs no example input."""
    entry = _entry(model)
    with _LOCK:
        if key not in entry.functions:
            function = build()
            function.get_concrete_function()
            entry.functions[key] = function
        return entry.functions[key]


def _extractor(model, target: Target, extra: str | None = None, guided: bool = False):
    """A callable ``images -> (extra features or None, target tensor, logits)``.

    Built from the rebuilt graph, so inner layers of nested sub-models are connected.
    """
    inputs, output, tensors = _expansion(model, guided)
    head = position_head_of(model) if target.layer == POSITION_TARGET else None
    source = _position_layer(model) if head is not None else target.layer
    outputs = ([] if extra is None else [tensors[extra]]) + (
        [] if target.from_logits else [tensors[source]]
    )
    net = keras.Model(inputs, [*outputs, output])

    def run(images):
        results = list(keras.tree.flatten(net(images, training=False)))
        logits = results.pop()
        inner = logits if target.from_logits else results.pop()
        if head is not None:
            inner = position_target.located_probabilities(head, inner)
        features = results.pop() if extra is not None else None
        return features, inner, logits

    return run


def _gradient_function(model, target: Target, guided: bool, predicted: bool = False):
    """The compiled pass ``(images, weights) -> (score, gradient, logits)``; with ``predicted``
    (an output target), ``images -> (score, gradient, logits, weights)``, where the weights are
    the one-hot of each image's largest logit, found inside the same pass."""

    def build():
        extractor = _extractor(model, target, guided=guided)
        spec = input_signature(model)
        k = weight_size(model, target)

        def differentiate(images, weights):
            with tf.GradientTape() as tape:
                tape.watch(images)
                _, inner, logits = extractor(images)
                if weights is None:
                    weights = tf.one_hot(tf.argmax(logits, axis=-1), k, dtype=logits.dtype)
                score = _score(target, inner, logits, weights)
            return score, tape.gradient(score, images), logits, weights

        if predicted:
            return tf.function(
                lambda images: differentiate(images, None),
                input_signature=[spec],
                autograph=False,
            )
        return tf.function(
            lambda images, weights: differentiate(images, weights)[:3],
            input_signature=[spec, tf.TensorSpec([None, k], spec.dtype)],
            autograph=False,
        )

    return _compiled(model, ("gradient", *_target_key(model, target), guided, predicted), build)


def _forward_function(model, target: Target):
    def build():
        extractor = _extractor(model, target)
        spec = input_signature(model)
        k = weight_size(model, target)

        @tf.function(input_signature=[spec, tf.TensorSpec([None, k], spec.dtype)], autograph=False)
        def forward(images, weights):
            _, inner, logits = extractor(images)
            return _score(target, inner, logits, weights), logits

        return forward

    return _compiled(model, ("forward", *_target_key(model, target)), build)


def _feature_gradient_function(model, target: Target, feature_layer: str):
    def build():
        extractor = _extractor(model, target, extra=feature_layer)
        spec = input_signature(model)
        k = weight_size(model, target)

        @tf.function(input_signature=[spec, tf.TensorSpec([None, k], spec.dtype)], autograph=False)
        def feature_gradient(images, weights):
            with tf.GradientTape() as tape:
                features, inner, logits = extractor(images)
                score = _score(target, inner, logits, weights)
            grads = tape.gradient(score, features)
            if grads is None:
                raise ValueError(
                    f"the target {target.layer!r} does not depend on the layer {feature_layer!r}"
                )
            return features, grads, score, logits

        return feature_gradient

    return _compiled(model, ("feature_gradient", *_target_key(model, target), feature_layer), build)


def _layers_forward_function(model, layers: tuple[str, ...]):
    def build():
        inputs, output, tensors = _expansion(model)
        net = keras.Model(inputs, [*(tensors[layer] for layer in layers), output])

        @tf.function(input_signature=[input_signature(model)], autograph=False)
        def layers_forward(images):
            return tuple(keras.tree.flatten(net(images, training=False)))

        return layers_forward

    return _compiled(model, ("layers_forward", layers), build)


# --------------------------------------------------------------------------------------------
# Batched NumPy entry points.


def _chunks(n: int, max_batch: int):
    if max_batch < 1:
        raise ValueError(f"max_batch must be at least 1, got {max_batch}")
    for start in range(0, n, max_batch):
        yield slice(start, min(start + max_batch, n))


def batch_size(max_batch: int, height: int, width: int) -> int:
    """Images per pass: at most ``max_batch`` and :data:`BATCH_PIXEL_BUDGET` pixels (at least 1)."""
    return max(1, min(max_batch, BATCH_PIXEL_BUDGET // max(1, height * width)))


def _run(fn, images: np.ndarray, weights: np.ndarray | None, max_batch: int, dtype) -> list:
    """``fn`` over chunks of ``images`` (and their ``weights`` rows, unless None)."""
    parts = []
    for s in _chunks(len(images), batch_size(max_batch, *images.shape[1:3])):
        args = [tf.constant(images[s], dtype)]
        if weights is not None:
            args.append(tf.constant(weights[s], dtype))
        parts.append([np.asarray(t) for t in fn(*args)])
    return [np.concatenate(column) for column in zip(*parts, strict=True)]


def gradients(
    model,
    target: Target,
    images: np.ndarray,
    weights: np.ndarray,
    *,
    max_batch: int = 64,
    guided: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Score ``(N,)``, its gradient ``(N, H, W, 3)`` (per pixel unit) and logits ``(N, K)``.

    ``images``: ``(N, H, W, 3)`` pixels 0..255; ``weights``: ``(N, K)`` class (or channel)
    weights. ``guided=True`` differentiates a copy of the graph with guided ReLUs.
    """
    dtype = input_signature(model).dtype
    fn = _gradient_function(model, target, guided)
    return tuple(_run(fn, images, weights, max_batch, dtype))


def predicted_class_gradients(
    model, target: Target, images: np.ndarray, *, max_batch: int = 64, guided: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """As :func:`gradients` for each image's predicted class, in one pass (no forward pass
    first): score ``(N,)``, gradient ``(N, H, W, 3)``, logits ``(N, K)`` and the one-hot
    weights ``(N, K)`` of the largest logit. ``target`` must be an output target."""
    if not target.is_output:
        raise ValueError(f"the predicted class applies to the output targets "
                         f"({', '.join(OUTPUT_TARGETS)})")
    dtype = input_signature(model).dtype
    fn = _gradient_function(model, target, guided, predicted=True)
    return tuple(_run(fn, images, None, max_batch, dtype))


def forward(
    model, target: Target, images: np.ndarray, weights: np.ndarray, *, max_batch: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    """Score ``(N,)`` and logits ``(N, K)`` without gradients, in batches of ``max_batch``."""
    dtype = input_signature(model).dtype
    fn = _forward_function(model, target)
    return tuple(_run(fn, images, weights, max_batch, dtype))


def feature_gradients(
    model,
    target: Target,
    feature_layer: str,
    images: np.ndarray,
    weights: np.ndarray,
    *,
    max_batch: int = 64,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Features ``(N, h, w, C)`` of ``feature_layer``, the score's gradient on them, score, logits.

    Raises ValueError when the score does not depend on that layer.
    """
    dtype = input_signature(model).dtype
    path = resolve_layer(model, feature_layer)
    fn = _feature_gradient_function(model, target, path)
    return tuple(_run(fn, images, weights, max_batch, dtype))


def layers_forward(
    model, layers: Sequence[str], images: np.ndarray, *, max_batch: int = 64
) -> tuple[list[np.ndarray], np.ndarray]:
    """The outputs of each of ``layers`` (paths or unique names; any rank, batch first) and the
    logits ``(N, K)`` of ``(N, H, W, 3)`` images from one forward pass, no gradients, in batches
    of ``max_batch``. An image equal to the one before it is not passed again: its outputs are
    copied (``find_objects`` repeats an image once per class it boxes)."""
    dtype = input_signature(model).dtype
    paths = tuple(resolve_layer(model, layer) for layer in layers)
    images = np.asarray(images)
    run = repeat_runs(images)
    distinct = images if run is None else images[np.flatnonzero(np.diff(run, prepend=-1))]
    *outputs, logits = _run(_layers_forward_function(model, paths), distinct, None, max_batch,
                            dtype)
    if run is not None:
        outputs, logits = [o[run] for o in outputs], logits[run]
    return outputs, logits


def repeat_runs(images: np.ndarray) -> np.ndarray | None:
    """For ``(N, ...)`` images, the ``(N,)`` int index of each one's run of equal consecutive
    images (0, 0, 1, ... for an image given twice then another), or None when no image equals
    the one before it."""
    if len(images) < 2:
        return None
    repeats = (images[1:] == images[:-1]).reshape(len(images) - 1, -1).all(axis=1)
    if not repeats.any():
        return None
    return np.concatenate([[0], np.cumsum(~repeats)])


def feature_forward(
    model, feature_layer: str, images: np.ndarray, *, max_batch: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    """Features ``(N, h, w, C)`` (any rank) of ``feature_layer`` and logits ``(N, K)`` from one
    forward pass, no gradients, in batches of ``max_batch``."""
    (features,), logits = layers_forward(model, [feature_layer], images, max_batch=max_batch)
    return features, logits


def last_spatial_layer(model) -> str:
    """Path of the last layer (in execution order) whose output is 4-D ``(N, h, w, C)``."""
    candidates = [p for p, t in _expansion(model)[2].items() if len(t.shape) == 4]
    if not candidates:
        raise ValueError("the model has no layer with a 4-D (N, h, w, C) output")
    return candidates[-1]
