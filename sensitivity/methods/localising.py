"""Pieces of the localising methods (CAM, Score-CAM, RISE) that need no attribution job.

:func:`cam_head` finds the "feature map -> global average pooling -> Dense" head that CAM
needs; :func:`rise_masks` draws RISE's random masks; :func:`fill_images` makes what a masked
image is blended with; :func:`upsample` and :func:`resize` are the bilinear resizing every map
goes through (``tf.image.resize``, half-pixel centres, edges clamped).
"""

from __future__ import annotations

import math

import keras
import numpy as np
import scipy.ndimage
import tensorflow as tf

from sensitivity.engine.choices import FILLS

_CAM_HINT = "; method='gradcam' works at any 4-D layer without this head"


def _producer(tensor, what: str):
    """The layer that produced a symbolic tensor of the model's graph, and its call node."""
    history = getattr(tensor, "_keras_history", None)
    if history is None:
        raise ValueError(f"CAM cannot follow the model's graph at the {what}{_CAM_HINT}")
    layer = history.operation
    return layer, layer._inbound_nodes[history.node_index]


def _single_input(node, layer, what: str):
    inputs = keras.tree.flatten(node.input_tensors)
    if len(inputs) != 1:
        raise ValueError(f"CAM needs the {what} {layer.name!r} to have one input{_CAM_HINT}")
    return inputs[0]


def cam_head(model) -> tuple[str, np.ndarray, np.ndarray]:
    """``(feature layer name, dense kernel (C, K) float64, dense bias (K,) float64)`` (zeros for
    a dense layer without bias) of a model ending in a 4-D feature
    map -> ``GlobalAveragePooling2D`` (channels last) -> ``Dense`` with a linear activation
    (or a softmax or sigmoid one: the maps are then those of the logits before it).

    The shipped WRN ends ``final_relu -> pool -> logits``, so CAM reads ``final_relu``. Raises
    ValueError (suggesting Grad-CAM) for any other head.
    """
    outputs = getattr(model, "outputs", None)
    if not outputs or len(outputs) != 1:
        raise ValueError(f"CAM needs a functional or sequential model with one output{_CAM_HINT}")
    dense, node = _producer(outputs[0], "output")
    linear = getattr(dense, "activation", None) in (
        keras.activations.linear, keras.activations.softmax, keras.activations.sigmoid)
    if not isinstance(dense, keras.layers.Dense) or not linear:
        raise ValueError(
            f"CAM needs the output to come from a Dense layer without activation (or with a "
            f"softmax or sigmoid), got "
            f"{type(dense).__name__} {dense.name!r}{_CAM_HINT}"
        )
    pool, node = _producer(_single_input(node, dense, "dense layer"), "dense layer's input")
    if not (
        isinstance(pool, keras.layers.GlobalAveragePooling2D)
        and pool.data_format == "channels_last"
        and not pool.keepdims
    ):
        raise ValueError(
            f"CAM needs the dense layer {dense.name!r} to read a GlobalAveragePooling2D "
            f"(channels last), got {type(pool).__name__} {pool.name!r}{_CAM_HINT}"
        )
    source, _ = _producer(_single_input(node, pool, "pooling layer"), "pooling layer's input")
    if isinstance(source, keras.layers.InputLayer):
        raise ValueError(f"CAM needs a feature layer before the pooling, not the input{_CAM_HINT}")
    kernel = np.asarray(dense.kernel, np.float64)
    bias = np.zeros(kernel.shape[1]) if dense.bias is None else np.asarray(dense.bias, np.float64)
    return source.name, kernel, bias


def position_logits(features: np.ndarray, kernel: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """The head of :func:`cam_head` applied to each position: ``(N, h, w, C)`` features,
    ``(C, K)`` kernel and ``(K,)`` bias give ``(N, h, w, K)`` float64 logits (their mean over
    positions is the model's logits)."""
    return np.einsum("nhwk,kc->nhwc", np.asarray(features, np.float64), kernel) + bias


def position_probabilities(model, features: np.ndarray, kernel: np.ndarray, bias: np.ndarray,
                           activation: str = "sigmoid") -> np.ndarray:
    """``(N, h, w, K)`` float64: each class's probability at each position of the
    ``(N, h, w, C)`` features CAM reads: by ``model``'s position head when it has one
    (:func:`sensitivity.model.position_head.position_head_of`), else by its dense head applied
    to each position (:func:`position_logits` of :func:`cam_head`'s ``kernel`` and ``bias``)
    through ``activation``, a sigmoid per class or a softmax over the classes."""
    from scipy.special import expit, softmax

    from sensitivity.model.position_head import position_head_of

    head = position_head_of(model)
    if head is not None:
        return head.probabilities(features)
    logits = position_logits(features, kernel, bias)
    return expit(logits) if activation == "sigmoid" else softmax(logits, axis=-1)


def resize(values: np.ndarray, height: int, width: int, antialias: bool = False) -> np.ndarray:
    """``(N, h, w, C)`` float arrays resized bilinearly to ``(N, height, width, C)`` float64
    (computed in float32; ``antialias`` low-passes when shrinking); the same size returns a
    float64 copy."""
    values = np.asarray(values, np.float64)
    if values.shape[1:3] == (height, width):
        return values.copy()
    resized = tf.image.resize(values, (height, width), method="bilinear", antialias=antialias)
    return np.asarray(resized, np.float64)


def upsample(maps: np.ndarray, height: int, width: int) -> np.ndarray:
    """``(N, h, w)`` maps resized bilinearly to ``(N, height, width)`` float64."""
    return resize(np.asarray(maps)[..., None], height, width)[..., 0]


def fill_images(images: np.ndarray, fill: str, blur_sigma: float) -> np.ndarray:
    """What masked images are blended with: ``(N, H, W, 3)`` of the images' dtype.

    ``fill``: ``"blur"`` (each image blurred by a Gaussian of ``blur_sigma`` pixels, mirrored
    borders), ``"black"`` (zeros) or ``"mean"`` (each image's mean colour).
    """
    if fill not in FILLS:
        raise ValueError(f"fill must be one of {FILLS}, got {fill!r}")
    images = np.asarray(images)
    if fill == "black":
        return np.zeros_like(images)
    if fill == "mean":
        return np.broadcast_to(images.mean(axis=(1, 2), keepdims=True), images.shape).astype(
            images.dtype)
    blurred = scipy.ndimage.gaussian_filter(
        images.astype(np.float64), sigma=(0.0, blur_sigma, blur_sigma, 0.0), mode="reflect")
    return blurred.astype(images.dtype)


def blend(images: np.ndarray, fills: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """``images * masks + fills * (1 - masks)``: ``(B, H, W, 3)`` images and fills, ``(B, H, W)``
    masks in 0..1; the images' dtype."""
    m = np.asarray(masks, images.dtype)[..., None]
    return images * m + fills * (1 - m)


class RiseMasks:
    """RISE's ``count`` random masks of ``height x width``, drawn up front as binary grids and
    shifts, upsampled on demand by :meth:`take` (so a batch of masks is all that is held).

    Each mask: a ``grid x grid`` array of cells kept (1) with probability ``keep``, else 0,
    upsampled bilinearly to ``((grid + 1) * cell_h, (grid + 1) * cell_w)`` with ``cell =
    ceil(side / grid)``, then cropped to ``height x width`` at a random offset ``0 <= dy <
    cell_h``, ``0 <= dx < cell_w`` (Petsiuk et al. 2018). ``seed`` seeds NumPy's generator.
    """

    def __init__(self, count: int, height: int, width: int, grid: int = 7, keep: float = 0.5,
                 seed: int | None = 0):
        rng = np.random.default_rng(seed)
        self.height, self.width = height, width
        self.cells = (math.ceil(height / grid), math.ceil(width / grid))
        self.grids = (rng.random((count, grid, grid)) < keep).astype(np.float32)
        self.shifts = np.stack([rng.integers(0, cell, count) for cell in self.cells], axis=1)

    def take(self, index) -> np.ndarray:
        """Masks ``index`` (an int array) as ``(len(index), height, width)`` float32 in 0..1."""
        index = np.asarray(index)
        grid = self.grids.shape[1]
        big = resize(self.grids[index][..., None], (grid + 1) * self.cells[0],
                     (grid + 1) * self.cells[1])[..., 0]
        rows = self.shifts[index, :1] + np.arange(self.height)
        cols = self.shifts[index, 1:] + np.arange(self.width)
        crops = big[np.arange(len(index))[:, None, None], rows[:, :, None], cols[:, None, :]]
        return crops.astype(np.float32)


def rise_masks(count: int, height: int, width: int, grid: int = 7, keep: float = 0.5,
               seed: int | None = 0) -> np.ndarray:
    """All of RISE's masks at once: ``(count, height, width)`` float32 in 0..1, the same that
    the ``rise`` method draws with these settings (see :class:`RiseMasks`)."""
    return RiseMasks(count, height, width, grid, keep, seed).take(np.arange(count))
