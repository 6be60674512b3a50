"""sensitivity: which input pixels a CIFAR-10 wide ResNet is sensitive to, and why.

The public API takes NumPy arrays (pixel values 0..255) or a Keras model and returns NumPy
arrays; nothing here imports Streamlit.

Importing the package is cheap: TensorFlow is imported only when a name that needs it is first
used (``sensitivity.predict``, ``sensitivity.load_model``, ...) or a module that needs it is
imported, so light modules (``sensitivity.figures``, ``sensitivity.labels``) load in a blink
and a page can draw before TensorFlow is ready.
"""

import importlib
import os

# oneDNN kernels: about 1.7x faster convolutions on this project's CPUs, off by default on AMD.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

_EXPORTS = {
    "CLASS_NAMES": "sensitivity.labels",
    "DEFAULT_MODEL_PATH": "sensitivity.model_io",
    "ImageError": "sensitivity.images",
    "ModelError": "sensitivity.model_io",
    "load_image": "sensitivity.images",
    "load_model": "sensitivity.model_io",
    "predict": "sensitivity.inference",
    "preprocess": "sensitivity.images",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    """Import the module behind a public name on first use (PEP 562)."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'sensitivity' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
