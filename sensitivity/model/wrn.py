"""Wide residual networks (Zagoruyko and Komodakis, 2016) with the Keras functional API.

WRN-d-k: a 3x3 stem convolution with 16 channels, three groups of ``n = (d - 4) / 6``
pre-activation blocks (BN-ReLU-Conv3x3-BN-ReLU-Conv3x3) with ``16k``, ``32k`` and ``64k``
channels, the second and third group starting with stride 2, a final BN-ReLU, global average
pooling and a dense layer of logits.

The network takes raw RGB pixel values (float32, 0..255) of any height and width: the
per-channel standardisation is a ``Normalization`` layer inside the model, so gradients are
taken with respect to the pixels a person sees.

Layer names are stable and readable, so a person can pick any of them:

- ``normalization``, ``stem_conv``
- ``group{g}_block{b}`` (the residual sum that ends a block) and its parts
  ``group{g}_block{b}_bn1``, ``_relu1``, ``_conv1``, ``_bn2``, ``_relu2``, ``_conv2``,
  ``_shortcut`` (1x1 projection where the shape changes)
- ``group{g}`` (the group's output), ``final_bn``, ``final_relu``, ``pool``, ``logits``
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import layers

from sensitivity.model.labels import NUM_CLASSES

# CIFAR-10 training-set statistics on the 0..255 scale (overridden by the values measured
# on the actual training data when a model is trained).
CIFAR10_MEAN = (125.3, 123.0, 113.9)
CIFAR10_STD = (63.0, 62.1, 66.7)


def blocks_per_group(depth: int) -> int:
    """Number of residual blocks in each of the three groups of a WRN of this depth."""
    if depth < 10 or (depth - 4) % 6:
        raise ValueError(f"WRN depth must be 6n+4 with n >= 1 (10, 16, 22, 28, ...), got {depth}")
    return (depth - 4) // 6


def _conv(filters: int, kernel: int, stride: int, name: str, weight_decay: float) -> layers.Conv2D:
    regularizer = keras.regularizers.L2(weight_decay) if weight_decay else None
    return layers.Conv2D(
        filters,
        kernel,
        strides=stride,
        padding="same",
        use_bias=False,
        kernel_initializer="he_normal",
        kernel_regularizer=regularizer,
        name=name,
    )


def _block(x, filters: int, stride: int, name: str, weight_decay: float, dropout: float):
    """One pre-activation basic block; returns the residual sum named ``name``."""
    h = layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=f"{name}_bn1")(x)
    h = layers.ReLU(name=f"{name}_relu1")(h)
    needs_projection = stride != 1 or x.shape[-1] != filters
    # As in the reference implementation, a projection shortcut reads the pre-activated input.
    shortcut = (
        _conv(filters, 1, stride, f"{name}_shortcut", weight_decay)(h) if needs_projection else x
    )
    h = _conv(filters, 3, stride, f"{name}_conv1", weight_decay)(h)
    h = layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=f"{name}_bn2")(h)
    h = layers.ReLU(name=f"{name}_relu2")(h)
    if dropout:
        h = layers.Dropout(dropout, name=f"{name}_dropout")(h)
    h = _conv(filters, 3, 1, f"{name}_conv2", weight_decay)(h)
    return layers.Add(name=name)([shortcut, h])


def build_wrn(
    depth: int = 16,
    width: int = 2,
    *,
    num_classes: int = NUM_CLASSES,
    mean: Sequence[float] = CIFAR10_MEAN,
    std: Sequence[float] = CIFAR10_STD,
    weight_decay: float = 0.0,
    dropout: float = 0.0,
) -> keras.Model:
    """Build WRN-``depth``-``width`` as a functional ``keras.Model`` named ``wrn_{depth}_{width}``.

    Input ``(None, None, None, 3)`` float32 RGB in 0..255; output ``(None, num_classes)`` logits
    from the layer ``logits``. ``weight_decay`` adds an L2 penalty (coefficient on the sum of
    squared kernel weights) to every convolution and the dense layer; ``dropout`` is the rate
    between the two convolutions of each block (0 disables it).
    """
    n = blocks_per_group(depth)
    if width < 1:
        raise ValueError(f"WRN width must be a positive integer, got {width}")
    if len(mean) != 3 or len(std) != 3:
        raise ValueError("mean and std need one value per RGB channel")
    inputs = keras.Input(shape=(None, None, 3), dtype="float32", name="pixels")
    x = layers.Normalization(mean=list(mean), variance=[s * s for s in std], name="normalization")(
        inputs
    )
    x = _conv(16, 3, 1, "stem_conv", weight_decay)(x)
    for g, filters in enumerate((16 * width, 32 * width, 64 * width), start=1):
        for b in range(1, n + 1):
            stride = 2 if (g > 1 and b == 1) else 1
            x = _block(x, filters, stride, f"group{g}_block{b}", weight_decay, dropout)
        x = layers.Identity(name=f"group{g}")(x)
    x = layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name="final_bn")(x)
    x = layers.ReLU(name="final_relu")(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    regularizer = keras.regularizers.L2(weight_decay) if weight_decay else None
    outputs = layers.Dense(num_classes, kernel_regularizer=regularizer, name="logits")(x)
    return keras.Model(inputs, outputs, name=f"wrn_{depth}_{width}")
