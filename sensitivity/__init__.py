"""sensitivity: which input pixels a CIFAR-10 wide ResNet is sensitive to, and why.

The public API takes NumPy arrays (pixel values 0..255) or a Keras model and returns NumPy
arrays; nothing here imports Streamlit.

Importing the package is cheap: TensorFlow is imported only when a name that needs it is first
used (``sensitivity.predict``, ``sensitivity.load_model``, ...) or a module that needs it is
imported, so light modules (``sensitivity.render.figures``, ``sensitivity.model.labels``) load
in a blink and a page can draw before TensorFlow is ready.

The modules live in subpackages named for their part of the work (``engine``, ``methods``,
``metrics``, ``model``, ``trust``, ``imaging``, ``render``, ``web``, ``cli``); none shares a
public name, so ``sensitivity.saliency`` is always the function (its module is
``sensitivity.engine.saliency``).

The usual calls: ``sensitivity.load_model()``, ``load_image``, ``preprocess``, ``predict``,
``saliency`` (maps of any method of ``METHODS``, with its options as keywords; the page's own
is ``DEFAULT_METHOD``), ``top_k_mask``, ``find_objects`` (boxes around the objects a photo
holds, in its own pixels) and ``discover_objects`` (boxes around a map's strongest regions).
"""

import importlib
import os

# oneDNN kernels: about 1.7x faster convolutions on this project's CPUs, off by default on AMD.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

_EXPORTS = {
    "CLASS_NAMES": "sensitivity.model.labels",
    "DEFAULT_METHOD": "sensitivity.engine.choices",
    "DEFAULT_MODEL_PATH": "sensitivity.model.io",
    "ImageError": "sensitivity.imaging.images",
    "METHODS": "sensitivity.engine.choices",
    "ModelCache": "sensitivity.model.io",
    "ModelCard": "sensitivity.model.cards",
    "ModelError": "sensitivity.model.io",
    "discover_objects": "sensitivity.imaging.discovery",
    "find_objects": "sensitivity.imaging.objects",
    "load_image": "sensitivity.imaging.images",
    "list_models": "sensitivity.model.io",
    "load_model": "sensitivity.model.io",
    "model_card": "sensitivity.model.cards",
    "out_of_distribution": "sensitivity.trust.ood",
    "predict": "sensitivity.engine.inference",
    "preprocess": "sensitivity.imaging.images",
    "saliency": "sensitivity.engine.saliency",
    "top_k_mask": "sensitivity.imaging.postprocess",
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
