"""The position head as TensorFlow ops, so that the gradient engine can differentiate it.

The output target :data:`sensitivity.engine.choices.POSITION_TARGET` is, for each class, the
largest probability the model's position head
(:mod:`sensitivity.model.position_head`) gives it at any position of the feature map CAM
reads: "how surely the model sees this class somewhere". Its gradient reaches only the
pixels around the position where the class is surest (and, through the head's map mean, a
little of everything), so a gradient-based method explains where the model localises the
class rather than the whole-image decision. Chosen on 150 validation scenes at side 144
(``benchmarks/README.md``, session 35) over the positions' mean probability and the mean of
its 2nd, 3rd and 5th powers: the largest probability pointed best with LayerCAM (0.912), the
gradient (0.896) and gradient x input (0.876), and told two objects apart best (0.911 each).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from sensitivity.model.position_head import PositionHead


def _edge_padded(features, pad: int):
    """``(N, h, w, C)`` features with ``pad`` positions added on each side, each a copy of the
    border (as :func:`scipy.ndimage.uniform_filter`'s ``mode="nearest"``): a symmetric pad of
    one position repeats the border, so ``pad`` of them repeat it ``pad`` times."""
    for _ in range(pad):
        features = tf.pad(features, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="SYMMETRIC")
    return features


def position_probabilities(head: PositionHead, features):
    """``(N, h, w, K)``: each class's probability at each position of ``(N, h, w, C)``
    features, as :meth:`PositionHead.probabilities` computes it in NumPy."""
    parts = [features]
    for side in head.neighbourhoods:
        parts.append(tf.nn.avg_pool2d(_edge_padded(features, side // 2), side, 1, "VALID"))
    parts.append(tf.broadcast_to(tf.reduce_mean(features, axis=[1, 2], keepdims=True),
                                 tf.shape(features)))
    inputs = tf.concat(parts, axis=-1)
    dtype = inputs.dtype.as_numpy_dtype

    def constant(array: np.ndarray):
        return tf.constant(np.asarray(array, dtype))

    hidden = tf.nn.relu(tf.tensordot(inputs, constant(head.hidden_kernel), 1)
                        + constant(head.hidden_bias))
    logits = tf.tensordot(hidden, constant(head.kernel), 1) + constant(head.bias)
    return tf.nn.softmax(logits, axis=-1)[..., :-1]


def located_probabilities(head: PositionHead, features):
    """``(N, K)``: each class's largest :func:`position_probabilities` over the positions."""
    return tf.reduce_max(position_probabilities(head, features), axis=[1, 2])
