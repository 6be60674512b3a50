"""The benchmark's FLOP counter against multiply-accumulates counted by hand."""

from __future__ import annotations

import importlib.util
import sys

import pytest

from tests.conftest import ROOT


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location(
        "bench_saliency", ROOT / "benchmarks" / "bench_saliency.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_conv_and_dense_of_fixed_size(bench):
    import keras

    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", name="conv")(inputs)  # bias is not a MAC
    x = keras.layers.ReLU()(x)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(10, name="dense")(x)
    model = keras.Model(inputs, outputs)
    conv = 32 * 32 * 8 * (3 * 3 * 3)
    dense = 32 * 32 * 8 * 10
    assert bench.count_macs(model) == {"conv": conv, "dense": dense}
    assert bench.forward_flops(model) == 2 * (conv + dense)
    sequential = keras.Sequential(
        [
            keras.Input((32, 32, 3)),
            keras.layers.Conv2D(8, 3, padding="same", name="conv"),
            keras.layers.Flatten(),
            keras.layers.Dense(10, name="dense"),
        ]
    )
    assert bench.count_macs(sequential) == {"conv": conv, "dense": dense}


def test_any_size_model_strides_and_nesting(bench):
    import keras

    inner_in = keras.Input((None, None, 8))
    inner = keras.Model(
        inner_in,
        keras.layers.Conv2D(4, 3, strides=2, padding="same", name="down")(inner_in),
        name="inner",
    )
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", use_bias=False, name="stem")(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = inner(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(10, name="logits")(x))
    for size in (32, 16):
        expected = {
            "stem": size * size * 8 * 27,
            "inner/down": (size // 2) ** 2 * 4 * (9 * 8),
            "logits": 4 * 10,
        }
        assert bench.count_macs(model, size, size) == expected


def test_floor_passes(bench):
    assert bench.floor_passes("gradient", 50, 50, 225) == (1, 1)
    assert bench.floor_passes("smoothgrad", 50, 20, 225) == (50, 50)
    assert bench.floor_passes("integrated_gradients", 50, 20, 225) == (20, 20)
    assert bench.floor_passes("occlusion", 50, 20, 225) == (226, 0)
    assert bench.floor_passes("cam", 50, 20, 225) == (1, 0)
    assert bench.floor_passes("scorecam", 50, 20, 225, masks=1000, channels=192) == (192, 0)
    assert bench.floor_passes("rise", 50, 20, 225, masks=1000, channels=192) == (1000, 0)
