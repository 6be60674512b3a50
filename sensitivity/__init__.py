"""sensitivity: which input pixels a CIFAR-10 wide ResNet is sensitive to, and why.

The public API takes NumPy arrays (pixel values 0..255) or a Keras model and returns NumPy
arrays; nothing here imports Streamlit.
"""

import os

# oneDNN kernels: about 1.7x faster convolutions on this project's CPUs, off by default on AMD.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

from sensitivity.images import ImageError, load_image, preprocess
from sensitivity.inference import predict
from sensitivity.labels import CLASS_NAMES
from sensitivity.model_io import DEFAULT_MODEL_PATH, ModelError, load_model

__all__ = [
    "CLASS_NAMES",
    "DEFAULT_MODEL_PATH",
    "ImageError",
    "ModelError",
    "load_image",
    "load_model",
    "predict",
    "preprocess",
]
