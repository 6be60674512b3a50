"""Labelled image data sets as NumPy arrays: CIFAR-10 class folders or ``keras.datasets``.

A data folder holds one sub-folder per class, named as the model's classes (default
:data:`CLASS_NAMES`, CIFAR-10's), each with image files (the layout of
``keras.utils.image_dataset_from_directory``), either directly or under ``train/`` and
``test/``. Images are returned as ``(N, S, S, 3)`` uint8 RGB arrays at the model's native side
S (default 32; other sizes are brought to it by :func:`sensitivity.preprocess`), labels as
``(N,)`` int64, the index of the class folder among the class names.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np

from sensitivity.model.labels import CLASS_NAMES

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif")


class DataError(ValueError):
    """A data folder is missing or not laid out as class folders."""


def split_dir(data_dir: str | os.PathLike, split: str,
              class_names: Sequence[str] = CLASS_NAMES) -> Path:
    """The folder holding the class folders of ``split`` ("train" or "test") in ``data_dir``.

    ``data_dir`` may be the parent of ``train/`` and ``test/`` or a class-folder root itself.
    """
    root = Path(data_dir)
    if not root.is_dir():
        raise DataError(f"data folder not found: {root}")
    if (root / split).is_dir():
        return root / split
    if any((root / name).is_dir() for name in class_names):
        return root
    shown = ", ".join(class_names[:10]) + (", ..." if len(class_names) > 10 else "")
    raise DataError(
        f"{root} has neither a '{split}/' folder nor class folders "
        f"({shown}); expected e.g. {root}/{split}/{class_names[0]}/0001.jpg"
    )


def list_images(folder: str | os.PathLike,
                class_names: Sequence[str] = CLASS_NAMES) -> tuple[list[Path], np.ndarray]:
    """Paths of all images in the class folders under ``folder`` and their ``(N,)`` labels
    (the index of each folder's name in ``class_names``)."""
    folder = Path(folder)
    missing = [name for name in class_names if not (folder / name).is_dir()]
    if missing:
        shown = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more"
                                           if len(missing) > 10 else "")
        raise DataError(f"{folder} lacks the class folders: {shown}")
    paths: list[Path] = []
    labels: list[int] = []
    for label, name in enumerate(class_names):
        files = sorted(p for p in (folder / name).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DataError(f"{folder / name} holds no images")
        paths += files
        labels += [label] * len(files)
    return paths, np.asarray(labels, dtype=np.int64)


def _read(path: Path, size: int) -> np.ndarray:
    from sensitivity.imaging.images import load_image, preprocess

    image = load_image(path)
    if image.shape[:2] == (size, size):
        return image
    return np.clip(np.rint(preprocess(image, size)), 0, 255).astype(np.uint8)


def read_images(paths: list[Path], size: int = 32) -> np.ndarray:
    """Decode image files to ``(N, size, size, 3)`` uint8 (other sizes centre-cropped and
    resized)."""
    if not paths:
        return np.zeros((0, size, size, 3), np.uint8)
    with ThreadPoolExecutor(max_workers=4) as pool:
        return np.stack(list(pool.map(partial(_read, size=size), paths)))


def _cache_file(folder: Path, paths: list[Path], size: int) -> Path:
    # The side enters the key when it is not CIFAR-10's 32 (so the 32-px caches stay valid).
    digest = hashlib.sha256(f"{size}\n".encode() if size != 32 else b"")
    for p in paths:
        st = p.stat()
        digest.update(f"{p.relative_to(folder)}:{st.st_size}:{int(st.st_mtime)}\n".encode())
    base = Path(os.environ.get("SENSITIVITY_CACHE", Path.home() / ".cache" / "sensitivity"))
    return base / f"images-{digest.hexdigest()[:16]}.npz"


def load_split(
    data_dir: str | os.PathLike, split: str, limit: int | None = None, cache: bool = True,
    class_names: Sequence[str] = CLASS_NAMES, size: int = 32,
) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(N, size, size, 3)`` uint8 and labels ``(N,)`` of ``split`` from the folders
    of ``class_names`` (a model's card's; default CIFAR-10's).

    ``limit`` keeps an evenly spread, class-balanced subset of that many images (deterministic).
    Decoded full splits are cached as ``.npz`` under ``$SENSITIVITY_CACHE`` (default
    ``~/.cache/sensitivity``), keyed by the files' names, sizes and times and ``size``.
    """
    folder = split_dir(data_dir, split, class_names)
    paths, labels = list_images(folder, class_names)
    if limit is not None and limit < len(paths):
        order = np.argsort(_interleave(labels), kind="stable")
        keep = np.sort(order[:limit])
        paths = [paths[i] for i in keep]
        labels = labels[keep]
        cache = False
    cache_path = _cache_file(folder, paths, size) if cache else None
    if cache_path is not None and cache_path.exists():
        with np.load(cache_path) as stored:
            return stored["images"], stored["labels"]
    images = read_images(paths, size)
    if cache_path is not None:
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_path.with_suffix(f".{os.getpid()}.tmp.npz")  # writers never share it
        np.savez(tmp, images=images, labels=labels)
        os.replace(tmp, cache_path)
    return images, labels


def _interleave(labels: np.ndarray) -> np.ndarray:
    """A rank per item that interleaves the classes: 1st of each class, then 2nd of each, ..."""
    rank = np.zeros(len(labels), dtype=np.int64)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rank[idx] = np.arange(len(idx))
    return rank * (labels.max() + 1) + labels


def load_keras_cifar10() -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """CIFAR-10 from ``keras.datasets`` (downloads it once when not cached): train and test."""
    import keras

    (x_train, y_train), (x_test, y_test) = keras.datasets.cifar10.load_data()
    return (x_train, y_train.reshape(-1).astype(np.int64)), (
        x_test,
        y_test.reshape(-1).astype(np.int64),
    )


def train_val_split(
    images: np.ndarray, labels: np.ndarray, val_size: int, seed: int = 0
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Hold out a class-balanced validation part of ``val_size`` images (deterministic)."""
    if val_size <= 0:
        return (images, labels), (images[:0], labels[:0])
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    per_class = val_size // len(classes)
    val_idx = np.concatenate(
        [rng.permutation(np.flatnonzero(labels == c))[:per_class] for c in classes]
    )
    mask = np.zeros(len(labels), dtype=bool)
    mask[val_idx] = True
    return (images[~mask], labels[~mask]), (images[mask], labels[mask])
