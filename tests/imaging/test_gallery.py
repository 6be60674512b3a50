"""The sample gallery's sources: ``SENSITIVITY_SAMPLES_DIR`` first, and each sample's label."""

from __future__ import annotations

import numpy as np
from PIL import Image

from sensitivity.imaging import gallery
from sensitivity.model.labels import CLASS_NAMES
from tests.helpers import write_class_folders


def test_the_samples_dir_comes_first_and_each_sample_is_the_file_of_its_class(tmp_path,
                                                                              monkeypatch):
    root = write_class_folders(tmp_path / "mine", per_class=4, splits=("test",))
    monkeypatch.setenv("SENSITIVITY_SAMPLES_DIR", str(root))
    source = gallery.local_source()
    assert source == str(root / "test")
    samples = gallery.load_samples(source, per_class=2)
    assert [s.label for s in samples] == [label for label in range(10) for _ in range(2)]
    for sample in samples:
        # Every class folder holds 0000.png .. 0003.png, each of its own class pattern: the
        # pixels show that the label names the folder the file was read from.
        with Image.open(root / "test" / CLASS_NAMES[sample.label] / sample.name) as image:
            np.testing.assert_array_equal(sample.image, np.asarray(image.convert("RGB")))
    assert len({(s.label, s.name) for s in samples}) == 20  # two different files per class


def test_a_samples_dir_without_class_folders_falls_back_to_the_shared_copy(tmp_path,
                                                                          monkeypatch,
                                                                          cifar_dir):
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("SENSITIVITY_SAMPLES_DIR", str(tmp_path / "empty"))
    assert gallery.local_source() == str(cifar_dir / "test")
