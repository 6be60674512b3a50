"""Small synthetic data for tests."""

from __future__ import annotations

import importlib.util
import io
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
from PIL import Image

from sensitivity.model.labels import CLASS_NAMES
from tests.conftest import ROOT


def class_pattern(label: int, size: int = 32) -> np.ndarray:
    """A distinct, easily learnt ``(size, size, 3)`` uint8 image for each class."""
    rng = np.random.default_rng(label)
    colour = rng.integers(0, 256, 3)
    image = np.zeros((size, size, 3), np.uint8) + colour.astype(np.uint8)
    stripe = (label * size) // len(CLASS_NAMES)
    image[:, stripe : stripe + size // 8] = 255 - colour
    return image


def write_class_folders(root: Path, per_class: int = 4, splits=("train", "test")) -> Path:
    """Class folders of PNG images under ``root/<split>/<class>/``; returns ``root``."""
    rng = np.random.default_rng(0)
    for split in splits:
        for label, name in enumerate(CLASS_NAMES):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                noise = rng.integers(-20, 21, (32, 32, 3))
                pixels = np.clip(class_pattern(label).astype(int) + noise, 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i:04d}.png")
    return root


class _BarsParser(HTMLParser):
    def __init__(self):
        super().__init__()
        self.rows: list[dict] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        style = dict(attrs).get("style") or ""
        if tag == "tr":
            self.rows.append({"bold": "font-weight" in style, "cells": [], "bar": None})
        elif tag == "td":
            self._cell = []
        elif tag == "div" and self.rows:
            width = re.search(r"(?:^|;)width:([0-9.]+)%", style)
            colour = re.search(r"background:(#[0-9A-Fa-f]{6})", style)
            self.rows[-1]["bar"] = (float(width.group(1)), colour.group(1))

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            self.rows[-1]["cells"].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def probability_bars_rows(html: str) -> list[dict]:
    """Rows of :func:`sensitivity.render.report.probability_bars_html` as read back from its HTML:
    ``{"class", "percent" (the text shown), "bar" (width in %), "colour", "bold"}``."""
    parser = _BarsParser()
    parser.feed(html)
    rows = []
    for row in parser.rows:
        name, _, shown = row["cells"]
        assert shown.endswith("%"), shown
        width, colour = row["bar"]
        rows.append({"class": name, "percent": float(shown[:-1]), "bar": width,
                     "colour": colour, "bold": row["bold"]})
    return rows


RED, BLUE = (255, 0, 0), (0, 0, 255)
"""The colours :func:`colour_model` sees as class 0 (and 2) and class 1."""


def colour_model(scale: float = 0.1):
    """A functional Keras model whose class evidence is known: a 1x1 ReLU convolution gives
    channel 0 = channel 2 = ``scale * relu(R - G - B)`` (red pixels), channel 1 =
    ``scale * relu(B - R - G)`` (blue pixels), channels 3-9 = 0; then global average pooling
    and an identity ``Dense`` named ``logits`` (no activation). So the logit of class 0 (and 2)
    is ``scale * 255 * (red area / image area)`` for pure red on grey, class 1's the same for
    blue, and CAM of class c is feature map c."""
    import keras

    inputs = keras.Input((None, None, 3))
    conv = keras.layers.Conv2D(10, 1, activation="relu", name="colours")
    dense = keras.layers.Dense(10, name="logits")
    outputs = dense(keras.layers.GlobalAveragePooling2D(name="pool")(conv(inputs)))
    kernel = np.zeros((1, 1, 3, 10), np.float32)
    kernel[0, 0, :, 0] = kernel[0, 0, :, 2] = np.array([1, -1, -1]) * scale
    kernel[0, 0, :, 1] = np.array([-1, -1, 1]) * scale
    conv.set_weights([kernel, np.zeros(10, np.float32)])
    dense.set_weights([np.eye(10, dtype=np.float32), np.zeros(10, np.float32)])
    return keras.Model(inputs, outputs)


def two_squares():
    """A grey ``(120, 200, 3)`` uint8 image with a 40x40 red and a 40x50 (h x w) blue square;
    returns the image and the squares' boxes ``(x0, y0, x1, y1)`` (exclusive ends)."""
    image = np.full((120, 200, 3), 128, np.uint8)
    red, blue = (30, 20, 70, 60), (130, 60, 180, 100)
    for (x0, y0, x1, y1), colour in ((red, RED), (blue, BLUE)):
        image[y0:y1, x0:x1] = colour
    return image, red, blue


def png_bytes(pixels: np.ndarray) -> bytes:
    """``(H, W, 3)`` pixel values 0..255 as PNG bytes (rounded to uint8)."""
    buffer = io.BytesIO()
    Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def text_picture(model, size: int = 32, seeds: int = 8) -> tuple[bytes, float]:
    """A picture of plain text (:func:`sensitivity.trust.outliers.outlier_image`, drawn at 96 px) as
    PNG bytes: of ``seeds`` seeds, the one whose network input at ``size`` (as the page
    prepares an upload) the model's out-of-distribution detector scores highest; with that
    score."""
    from sensitivity import load_image, out_of_distribution, preprocess
    from sensitivity.trust.outliers import outlier_image

    pictures = [png_bytes(outlier_image("text", seed, size=96)) for seed in range(seeds)]
    inputs = np.stack([preprocess(load_image(data), size) for data in pictures])
    scores, _ = out_of_distribution(model, inputs)
    best = int(np.argmax(scores))
    return pictures[best], float(scores[best])


def typical_cifar_image(model, cifar_dir: Path, size: int = 32) -> tuple[Path, float]:
    """Of the first CIFAR-10 test image of each class, the file the model's out-of-distribution
    detector scores lowest (the most like its training images) at ``size``; with that score."""
    from sensitivity import load_image, out_of_distribution, preprocess

    paths = [sorted((cifar_dir / "test" / name).iterdir())[0] for name in CLASS_NAMES]
    scores, _ = out_of_distribution(model, np.stack([preprocess(load_image(p), size)
                                                     for p in paths]))
    best = int(np.argmin(scores))
    return paths[best], float(scores[best])


def benchmark_script(name: str):
    """The module of ``benchmarks/<name>.py``, imported (its ``main`` not run)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


class PythonProcess:
    """``python -c code`` in the repository root, started at once, its output kept in files in
    ``folder``: start several, then wait for each (a fresh interpreter that imports TensorFlow
    keeps one core busy for seconds, so two of them take about as long as one)."""

    def __init__(self, code: str, folder: Path, name: str, args: tuple[str, ...] = ()):
        self._out = open(folder / f"{name}.out", "w+")  # noqa: SIM115
        self._err = open(folder / f"{name}.err", "w+")  # noqa: SIM115
        self.process = subprocess.Popen([sys.executable, "-c", code, *args], cwd=ROOT,
                                        stdout=self._out, stderr=self._err, text=True)

    def result(self, timeout: float = 300) -> subprocess.CompletedProcess:
        """Wait for the process; its exit code, stdout and stderr."""
        returncode = self.process.wait(timeout)
        self._out.seek(0)
        self._err.seek(0)
        return subprocess.CompletedProcess(self.process.args, returncode, self._out.read(),
                                           self._err.read())

    def stop(self) -> None:
        """Kill the process if it still runs, and close its files."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._out.close()
        self._err.close()


CIFAR_CARD = {"classes": list(CLASS_NAMES), "input_size": 32}
"""The card fields of a CIFAR-10 model (its class names, native size 32) for a test's card."""


def nested_backbone(classes: int, widths: tuple[int, int]):
    """A ``Sequential`` backbone named "backbone" (rescaling, two ReLU convolutions "conv" and
    "conv2" of ``widths`` channels) inside a functional model: global average pooling, then a
    softmax ``Dense`` "head" over ``classes`` classes."""
    import keras

    backbone = keras.Sequential([
        keras.Input((None, None, 3)),
        keras.layers.Rescaling(1 / 255),
        keras.layers.Conv2D(widths[0], 3, padding="same", activation="relu", name="conv"),
        keras.layers.Conv2D(widths[1], 3, padding="same", activation="relu", name="conv2"),
    ], name="backbone")
    inputs = keras.Input((None, None, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(backbone(inputs))
    return keras.Model(inputs, keras.layers.Dense(classes, activation="softmax",
                                                  name="head")(pooled))


def copy_model(source, target):
    """Copy a model file, its card and the files its card names beside it (the detector's
    statistics, the position head) to ``target`` (a ``.keras`` path, same stem for all); returns
    ``target``."""
    import json
    import shutil
    from pathlib import Path

    from sensitivity.model.io import SIDE_FILES

    source, target = Path(source), Path(target)
    shutil.copy(source, target)
    card = json.loads(source.with_suffix(".json").read_text())
    for section, (key, _, _) in SIDE_FILES.items():
        if card.get(section):
            name = card[section][key]
            renamed = target.stem + name[len(source.stem):]
            shutil.copy(source.with_name(name), target.with_name(renamed))
            card[section][key] = renamed
    target.with_suffix(".json").write_text(json.dumps(card))
    return target
