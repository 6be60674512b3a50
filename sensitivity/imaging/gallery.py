"""Sample CIFAR-10 test images for the dashboard's gallery, from a local copy only.

Where the samples come from, in order: the class folders named by the environment variable
``SENSITIVITY_SAMPLES_DIR``; the shared copy beside the project
(``../shared/datasets/cifar10-jpeg``); the Keras dataset cache (``~/.keras/datasets``), which
holds CIFAR-10 once ``keras.datasets.cifar10.load_data()`` has run. Nothing is fetched unless a
person asks for it (:func:`fetch_keras_cifar10`). Nothing from CIFAR-10 ships with the project.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sensitivity.imaging.images import load_image
from sensitivity.model.data import DataError, list_images, split_dir

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SHARED_COPY = PROJECT_ROOT.parent / "shared" / "datasets" / "cifar10-jpeg"
ENV_VAR = "SENSITIVITY_SAMPLES_DIR"


@dataclass(frozen=True)
class Sample:
    """One gallery image: ``(32, 32, 3)`` uint8 pixels, its true label and a short name."""

    name: str
    label: int
    image: np.ndarray


def keras_cache_dir() -> Path:
    """Where ``keras.datasets.cifar10`` keeps its download."""
    base = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))
    return base / "datasets" / "cifar-10-batches-py"


def local_source() -> str | None:
    """A description of the first local CIFAR-10 copy found (a folder path or "keras"), or None."""
    for candidate in (os.environ.get(ENV_VAR), SHARED_COPY):
        if candidate:
            try:
                return str(split_dir(candidate, "test"))
            except DataError:
                continue
    if (keras_cache_dir() / "test_batch").is_file():
        return "keras"
    return None


def load_samples(source: str, per_class: int = 2, seed: int = 0) -> list[Sample]:
    """``per_class`` test images of each class from ``source`` (see :func:`local_source`)."""
    rng = np.random.default_rng(seed)
    samples: list[Sample] = []
    if source == "keras":
        from sensitivity.model.data import load_keras_cifar10

        _, (images, labels) = load_keras_cifar10()  # from the cache: the file exists
        for label in range(10):
            for i in rng.choice(np.flatnonzero(labels == label), per_class, replace=False):
                samples.append(Sample(f"test #{i}", label, images[i]))
        return samples
    paths, labels = list_images(source)
    for label in range(10):
        for i in rng.choice(np.flatnonzero(labels == label), per_class, replace=False):
            samples.append(Sample(paths[i].name, label, load_image(paths[i])))
    return samples


def fetch_keras_cifar10() -> None:
    """Download CIFAR-10 into the Keras cache (only when a person asks for it)."""
    from sensitivity.model.data import load_keras_cifar10

    load_keras_cifar10()
