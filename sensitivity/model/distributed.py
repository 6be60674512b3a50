"""Forward passes over a data set with ``tf.data`` and a ``tf.distribute`` strategy.

:func:`default_strategy` mirrors the model over all GPUs (or, with no GPU, over all logical
CPU devices) when there are several, and is TensorFlow's default single-device strategy
otherwise. :func:`distributed_predict` reads the images through a ``tf.data`` pipeline,
splits each global batch across the strategy's replicas, runs the model (``training=False``)
on a mirrored copy of its weights and joins the replicas' class probabilities in input
order on the host.
"""

from __future__ import annotations

import weakref

import numpy as np
import tensorflow as tf

_STRATEGIES: dict[tuple[str, ...], tf.distribute.Strategy] = {}


def default_strategy() -> tf.distribute.Strategy:
    """``MirroredStrategy`` over the GPUs (or logical CPUs) when there are several, else the
    default strategy. The mirrored strategy is made once per process and reused."""
    devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
    if len(devices) < 2:
        return tf.distribute.get_strategy()
    names = tuple(d.name for d in devices)
    if names not in _STRATEGIES:
        _STRATEGIES[names] = tf.distribute.MirroredStrategy(devices=list(names))
    return _STRATEGIES[names]


def replicate(model, strategy: tf.distribute.Strategy):
    """A copy of ``model`` whose variables live under ``strategy`` (the caller's is unchanged)."""
    import keras

    if strategy is tf.distribute.get_strategy():
        return model
    with strategy.scope():
        copy = keras.models.clone_model(model)
        copy.set_weights(model.get_weights())
    return copy


_STEPS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _mirrored_step(model, strategy: tf.distribute.Strategy):
    """A compiled forward step of ``model`` under ``strategy``, made once per pair and reused;
    the mirrored copy's weights are refreshed from ``model`` on every call."""
    steps = _STEPS.setdefault(model, {})
    if strategy not in steps:
        local = replicate(model, strategy)

        @tf.function
        def step(inputs):
            return strategy.run(lambda x: local(x, training=False), args=(inputs,))

        steps[strategy] = (local, step)
    local, step = steps[strategy]
    with strategy.scope():
        local.set_weights(model.get_weights())
    return step


def predict_dataset(
    model,
    dataset: tf.data.Dataset,
    count: int,
    *,
    batch_size: int = 64,
    strategy: tf.distribute.Strategy | None = None,
    logits: bool = False,
) -> np.ndarray:
    """``(count, C)`` float32 probabilities (or logits) of a ``tf.data`` stream of single images.

    ``dataset`` yields ``count`` float32 ``(H, W, 3)`` images (pixels 0..255), unbatched.
    ``batch_size`` is the global batch, rounded up to a multiple of the number of replicas and
    split evenly over them; the stream is padded with black images to whole batches, so no
    replica ever gets an empty batch, and the padding is dropped from the result, which keeps
    the input order. ``strategy`` defaults to :func:`default_strategy`.
    """
    from sensitivity.engine.inference import probabilities

    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
        raise ValueError(f"batch_size must be a whole number, got {batch_size!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if count == 0:
        return np.zeros((0, model.output_shape[-1]), np.float32)
    strategy = strategy or default_strategy()
    replicas = strategy.num_replicas_in_sync
    global_batch = -(-int(batch_size) // replicas) * replicas
    global_batch = min(global_batch, -(-count // replicas) * replicas)
    padding = -(-count // global_batch) * global_batch - count
    if padding:
        blank = tf.zeros_like(next(iter(dataset.take(1))))
        dataset = dataset.concatenate(tf.data.Dataset.from_tensors(blank).repeat(padding))
    # Whole batches only (the padding makes sure nothing is dropped): a static batch size
    # lets tf.distribute split every batch evenly over the replicas.
    dataset = dataset.batch(global_batch, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
    if replicas == 1 and strategy is tf.distribute.get_strategy():
        # The current single-device strategy: run the model eagerly, batch by batch.
        values = np.concatenate([np.asarray(model(x, training=False)) for x in dataset])
        values = values[:count].astype(np.float32)
        return values if logits else probabilities(model, values)
    step = _mirrored_step(model, strategy)
    # Each replica's slice of a batch, in replica order, is the next part of the batch; the
    # parts are joined on the host (no collective operation is needed for inference).
    batches = strategy.experimental_distribute_dataset(dataset)
    parts = [
        part.numpy()
        for inputs in batches
        for part in strategy.experimental_local_results(step(inputs))
    ]
    values = np.concatenate(parts)[:count]
    values = values.astype(np.float32)
    return values if logits else probabilities(model, values)


def distributed_predict(
    model,
    images,
    *,
    batch_size: int = 64,
    strategy: tf.distribute.Strategy | None = None,
    logits: bool = False,
) -> np.ndarray:
    """``(N, C)`` float32 probabilities (or logits) of ``(N, H, W, 3)`` pixels 0..255.

    The images are read through ``tf.data`` and run by :func:`predict_dataset`; the result
    matches :func:`sensitivity.predict` up to float rounding.
    """
    from sensitivity.engine.inference import as_batch

    batch = as_batch(images)
    dataset = tf.data.Dataset.from_tensor_slices(batch)
    return predict_dataset(
        model, dataset, len(batch), batch_size=batch_size, strategy=strategy, logits=logits
    )
