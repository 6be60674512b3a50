import numpy as np
import pytest

from sensitivity.model.data import DataError, load_split, split_dir, train_val_split
from tests.helpers import class_pattern, write_class_folders


def test_load_split_reads_class_folders_in_label_order(tmp_path, monkeypatch):
    monkeypatch.setenv("SENSITIVITY_CACHE", str(tmp_path / "cache"))
    root = write_class_folders(tmp_path / "data", per_class=3)
    images, labels = load_split(root, "train")
    assert images.shape == (30, 32, 32, 3) and images.dtype == np.uint8
    np.testing.assert_array_equal(labels, np.repeat(np.arange(10), 3))
    # Each image looks like its class pattern (up to the added noise).
    for image, label in zip(images, labels, strict=True):
        assert np.abs(image.astype(int) - class_pattern(label)).mean() < 25
    # The second read comes from the cache and is identical.
    assert list((tmp_path / "cache").iterdir())
    again, again_labels = load_split(root, "train")
    np.testing.assert_array_equal(again, images)
    np.testing.assert_array_equal(again_labels, labels)


def test_any_models_class_folders_at_its_native_size(tmp_path, monkeypatch):
    """Folders named as a model's classes, in the card's order, read at its native side."""
    from PIL import Image

    monkeypatch.setenv("SENSITIVITY_CACHE", str(tmp_path / "cache"))
    colours = {"sky": (40, 90, 230), "grass": (30, 200, 40), "road": (90, 90, 90)}
    for index, (name, colour) in enumerate(colours.items()):
        (tmp_path / "test" / name).mkdir(parents=True)
        for i in range(index + 1):
            Image.new("RGB", (60, 60), colour).save(tmp_path / "test" / name / f"{i}.png")
    names = ["road", "sky", "grass"]  # the card's order, not the folders' alphabetical one
    images, labels = load_split(tmp_path, "test", class_names=names, size=48)
    assert images.shape == (6, 48, 48, 3)
    np.testing.assert_array_equal(labels, [0, 0, 0, 1, 2, 2])
    for image, label in zip(images, labels, strict=True):
        np.testing.assert_array_equal(image[24, 24], colours[names[label]])
    # The 48-px copy is cached apart from a 32-px read of the same files.
    small, _ = load_split(tmp_path, "test", class_names=names)
    assert small.shape == (6, 32, 32, 3) and len(list((tmp_path / "cache").iterdir())) == 2
    with pytest.raises(DataError, match="lacks the class folders: cloud"):
        load_split(tmp_path, "test", class_names=[*names, "cloud"])


def test_limit_is_class_balanced(tmp_path):
    root = write_class_folders(tmp_path, per_class=4)
    _, labels = load_split(root, "test", limit=20, cache=False)
    assert np.bincount(labels, minlength=10).tolist() == [2] * 10


def test_layout_errors_are_clear(tmp_path):
    with pytest.raises(DataError, match="not found"):
        split_dir(tmp_path / "missing", "train")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="class folders"):
        split_dir(tmp_path / "empty", "train")
    partial = tmp_path / "partial" / "train" / "cat"
    partial.mkdir(parents=True)
    with pytest.raises(DataError, match="lacks the class folders"):
        load_split(tmp_path / "partial", "train")


def test_train_val_split_is_balanced_and_disjoint():
    labels = np.repeat(np.arange(10), 50)
    images = np.arange(500)[:, None]
    (xt, yt), (xv, yv) = train_val_split(images, labels, 100, seed=3)
    assert len(xv) == 100 and len(xt) == 400
    assert np.bincount(yv).tolist() == [10] * 10
    assert not set(xt[:, 0]) & set(xv[:, 0])


def test_shared_cifar_copy_has_the_documented_layout(cifar_dir):
    images, labels = load_split(cifar_dir, "test", limit=50, cache=False)
    assert images.shape == (50, 32, 32, 3)
    assert np.bincount(labels).tolist() == [5] * 10
