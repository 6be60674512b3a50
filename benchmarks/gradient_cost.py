"""Where one gradient's time goes: the engine against variants of the same pass, one process.

Implementations of one logit gradient of the default model, each called with the same batch of
images (uniform noise, pixels 0..255) and one-hot class weights, results copied back to NumPy:

- ``engine``: ``sensitivity.engine.gradients.gradients`` (the plain ``tf.function`` graph, oneDNN);
- ``graph``: a ``tf.function`` of the same tape over ``model(images, training=False)``;
- ``xla``: that function with ``jit_compile=True`` (compiled once per input shape);
- ``no_bn``: ``graph`` on a copy of the model with every batch normalisation replaced by the
  identity (same convolutions; the difference is what batch normalisation costs);
- ``forward``: the forward pass alone (``graph`` without the tape);
- ``smoothgrad``: ``sensitivity.saliency`` with SmoothGrad of ``--samples`` noisy copies of each
  image, its time divided by the samples (the engine's cost per gradient inside a method that
  batches its samples: noise, chunks of 64, sums).

The first call of each is a warm-up (tracing, XLA's compilation: its time is printed); then
they take turns for ``--repeats`` rounds. Prints the median and fastest ms per image of each
(per image and sample for ``smoothgrad``), its ratio to the engine and to the floor (2 x
forward FLOPs over this process's float32 matmul rate, as in ``bench_saliency.py``; 1 x for
``forward``), and the largest difference of the XLA gradient from the engine's, relative to
the largest magnitude.

    python benchmarks/gradient_cost.py --batch 1 --repeats 30
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

import sensitivity  # noqa: E402  (before TensorFlow: it switches oneDNN on)
from benchmarks.bench_saliency import forward_flops, matmul_rate  # noqa: E402
from sensitivity.engine import gradients as engine  # noqa: E402
from sensitivity.engine.saliency import saliency  # noqa: E402


def without_batch_normalisation(model):
    """A copy of a functional ``model`` whose BatchNormalization layers are identities."""
    import keras

    config = model.get_config()
    for layer in config["layers"]:
        if layer["class_name"] == "BatchNormalization":
            layer.update(module="keras.layers", class_name="Activation",
                         config={"name": layer["config"]["name"], "activation": "linear"})
            for node in layer["inbound_nodes"]:
                node["kwargs"].pop("mask", None)  # Activation takes no mask
    return keras.Model.from_config(config)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--samples", type=int, default=8)
    args = parser.parse_args(argv)

    import tensorflow as tf

    model = sensitivity.load_model()
    target = engine.make_target(model, "logits")
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (args.batch, args.size, args.size, 3)).astype(np.float32)
    weights = np.eye(10, dtype=np.float32)[rng.integers(0, 10, args.batch)]
    signature = [engine.input_signature(model), tf.TensorSpec([None, 10], tf.float32)]

    def compiled(net, jit: bool = False, tape: bool = True):
        def differentiate(x, w):
            with tf.GradientTape() as t:
                t.watch(x)
                score = tf.reduce_sum(net(x, training=False) * w, axis=-1)
            return t.gradient(score, x) if tape else score

        fn = tf.function(differentiate, input_signature=signature, autograph=False,
                         jit_compile=jit)
        return lambda: np.asarray(fn(tf.constant(images), tf.constant(weights)))

    calls = {
        "engine": lambda: engine.gradients(model, target, images, weights)[1],
        "graph": compiled(model),
        "xla": compiled(model, jit=True),
        "no_bn": compiled(without_batch_normalisation(model)),
        "forward": compiled(model, tape=False),
        "smoothgrad": lambda: saliency(model, images, method="smoothgrad", samples=args.samples),
    }
    per_call = {name: args.batch * (args.samples if name == "smoothgrad" else 1)
                for name in calls}
    for name, call in calls.items():
        start = time.perf_counter()
        call()
        print(f"warm-up {name}: {time.perf_counter() - start:.2f} s")
    reference = calls["engine"]()
    gap = np.abs(calls["xla"]() - reference).max() / np.abs(reference).max()

    times = {name: [] for name in calls}
    for _ in range(args.repeats):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append((time.perf_counter() - start) * 1000 / per_call[name])

    forward_ms = forward_flops(model, args.size, args.size) / matmul_rate() * 1000
    base = statistics.median(times["engine"])
    print(f"batch {args.batch}, {args.size}x{args.size}, {args.repeats} rounds; floor of one "
          f"gradient {2 * forward_ms:.2f} ms / image; XLA's largest relative difference {gap:.1e}")
    print("| implementation | median ms / image | fastest | x engine | x floor |")
    print("|---|---:|---:|---:|---:|")
    for name, values in times.items():
        median = statistics.median(values)
        floor = forward_ms if name == "forward" else 2 * forward_ms
        print(f"| {name} | {median:.2f} | {min(values):.2f} | {median / base:.2f} | "
              f"{median / floor:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
