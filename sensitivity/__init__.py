"""sensitivity: which input pixels a CIFAR-10 wide ResNet is sensitive to, and why.

The public API takes NumPy arrays (pixel values 0..255) or a Keras model and returns NumPy
arrays; nothing here imports Streamlit.

Importing the package is cheap: TensorFlow is imported only when a name that needs it is first
used (``sensitivity.predict``, ``sensitivity.load_model``, ...) or a module that needs it is
imported, so light modules (``sensitivity.figures``, ``sensitivity.labels``) load in a blink
and a page can draw before TensorFlow is ready.

The usual calls: ``sensitivity.load_model()``, ``load_image``, ``preprocess``, ``predict``,
``saliency`` (maps of any method of ``METHODS``, with its options as keywords; the page's own
is ``DEFAULT_METHOD``), ``top_k_mask``, ``find_objects`` (boxes around the objects a photo
holds, in its own pixels) and ``discover_objects`` (boxes around a map's strongest regions).
"""

import importlib
import os
import sys
import types

# oneDNN kernels: about 1.7x faster convolutions on this project's CPUs, off by default on AMD.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

_EXPORTS = {
    "CLASS_NAMES": "sensitivity.labels",
    "DEFAULT_METHOD": "sensitivity.choices",
    "DEFAULT_MODEL_PATH": "sensitivity.model_io",
    "ImageError": "sensitivity.images",
    "METHODS": "sensitivity.choices",
    "ModelCache": "sensitivity.model_io",
    "ModelCard": "sensitivity.cards",
    "ModelError": "sensitivity.model_io",
    "discover_objects": "sensitivity.discovery",
    "find_objects": "sensitivity.objects",
    "load_image": "sensitivity.images",
    "list_models": "sensitivity.model_io",
    "load_model": "sensitivity.model_io",
    "model_card": "sensitivity.cards",
    "out_of_distribution": "sensitivity.ood",
    "predict": "sensitivity.inference",
    "preprocess": "sensitivity.images",
    "saliency": "sensitivity.saliency",
    "top_k_mask": "sensitivity.postprocess",
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


class _Package(types.ModuleType):
    """The package's module type: ``sensitivity.saliency`` stays the function.

    Importing a submodule binds it as an attribute of its package once it has run, and an
    attribute found that way never reaches ``__getattr__``: after ``import sensitivity.saliency``
    (or ``from sensitivity.saliency import ...``, anywhere) ``sensitivity.saliency`` would be
    the module. This binds the public name of the same name instead; the module stays in
    ``sys.modules``, so ``from sensitivity.saliency import saliency`` keeps working.
    """

    def __setattr__(self, name: str, value) -> None:
        if (isinstance(value, types.ModuleType) and value.__name__ == f"{__name__}.{name}"
                and _EXPORTS.get(name) == value.__name__):
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
