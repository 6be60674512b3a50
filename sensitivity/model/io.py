"""Loading models safely, their model cards, the models in a folder and a bounded cache.

A model file ``NAME.keras`` comes with a card ``NAME.json`` that records, among other things,
the sha256 of the weights file, the class names and the native input size
(:mod:`sensitivity.model.cards`). :func:`load_model` refuses a file whose checksum does not match or
whose card is missing or wrong, and always loads in Keras' safe mode (no Python code from the
file is run). :func:`write_operator_card` writes the card of an operator's own model;
:func:`list_models` lists a folder's models and :class:`ModelCache` keeps the last few loaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sensitivity.model.cards import ModelCard, attach_card, card_from_json, default_card

MODELS_DIR = Path(__file__).resolve().parents[2] / "models"
DEFAULT_MODEL_PATH = MODELS_DIR / "wrn-16-3.keras"
"""The committed default model."""

MODEL_PATH_ENV = "SENSITIVITY_MODEL_PATH"
"""An operator may point the app at another model file (with its card) through this variable."""

MODELS_DIR_ENV = "SENSITIVITY_MODELS_DIR"
"""An operator may name the folder whose models are offered (default :data:`MODELS_DIR`)."""


class ModelError(RuntimeError):
    """The model file is missing, altered or unreadable; the message names the file."""


def sha256_of(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def card_path(model_path: str | os.PathLike) -> Path:
    """The model card that belongs to a model file: same name, suffix ``.json``."""
    return Path(model_path).with_suffix(".json")


def write_model_card(model_path: str | os.PathLike, card: dict) -> dict:
    """Write ``card`` beside the model with the file's sha256 added; returns the card."""
    card = dict(card, sha256=sha256_of(model_path), file=Path(model_path).name)
    card_path(model_path).write_text(json.dumps(card, indent=2) + "\n")
    return card


def read_model_card(model_path: str | os.PathLike) -> dict:
    """The card of a model file, or :class:`ModelError` if it is missing or unreadable."""
    path = card_path(model_path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelError(
            f"model card not found: {path} (it records the model's checksum)"
        ) from None
    except (OSError, ValueError) as exc:
        raise ModelError(f"model card {path} cannot be read: {exc}") from None


def verify_model_file(path: str | os.PathLike) -> dict:
    """Check that ``path`` exists and matches the sha256 of its card; returns the card."""
    path = Path(path)
    if not path.is_file():
        expected = ""
        try:
            expected = f" (its card expects sha256 {read_model_card(path).get('sha256')})"
        except ModelError:
            pass
        raise ModelError(f"model file not found: {path}{expected}")
    card = read_model_card(path)
    _check_sha256(path, card.get("sha256"), "model file")
    for section, (_, sha_key, what) in SIDE_FILES.items():
        side_file = _side_file(path, card, section)
        if side_file is not None:
            _check_sha256(side_file, card[section].get(sha_key), what)
    return card


def _check_sha256(path: Path, expected: str | None, what: str) -> None:
    if not path.is_file():
        raise ModelError(f"{what} not found: {path} (the model card names it)")
    actual = sha256_of(path)
    if expected != actual:
        raise ModelError(
            f"{what} {path} does not match its card: sha256 is {actual}, expected {expected}. "
            "The file is damaged or was altered; restore it (git checkout) or refit it."
        )


SIDE_FILES = {
    "out_of_distribution": ("statistics", "statistics_sha256", "out-of-distribution statistics"),
    "position_head": ("file", "sha256", "position head"),
}
"""Card section -> (key of its file's name, key of that file's sha256, what the file is): the
files a card names beside its model, each checked against its sha256 before loading."""


def _side_file(model_file: Path, card: dict, section: str) -> Path | None:
    """The file the card's ``section`` (a key of :data:`SIDE_FILES`) names beside
    ``model_file`` (None: the card has no such section)."""
    key = SIDE_FILES[section][0]
    entry = card.get(section)
    if not entry:
        return None
    name = Path(str(entry.get(key, "")))
    if name.name != str(name) or not name.name:
        raise ModelError(f"model card of {model_file}: {section}'s {key} must be a file name "
                         f"beside the model, got {entry.get(key)!r}")
    return model_file.with_name(name.name)


def model_path() -> Path:
    """The model the operator chose with ``$SENSITIVITY_MODEL_PATH``, else the default."""
    return Path(os.environ.get(MODEL_PATH_ENV) or DEFAULT_MODEL_PATH)


def load_model(path: str | os.PathLike | None = None):
    """Load a model in safe mode after checking its checksum against its card.

    ``path=None`` loads the file named by ``$SENSITIVITY_MODEL_PATH`` if the operator set it,
    else the committed default model. The card's temperature and out-of-distribution detector
    (its statistics file checked against the card's sha256 too) are attached to the model
    (:func:`sensitivity.trust.calibration.temperature_of`,
    :func:`sensitivity.trust.ood.detector_of`).
    Raises :class:`ModelError` with a clear message if a file is missing, altered or
    unreadable.
    """
    path = model_path() if path is None else Path(path)
    card = verify_model_file(path)
    model = _load_keras_file(path)
    try:
        attach_card(model, card_from_json(card, path, model))
    except ValueError as exc:
        raise ModelError(str(exc)) from None
    _attach_confidence(model, path, card)
    _attach_position_head(model, path, card)
    return model


def _attach_position_head(model, path: Path, card: dict) -> None:
    """Attach the position head the card names (:mod:`sensitivity.model.position_head`)."""
    from sensitivity.methods.localising import cam_head
    from sensitivity.model.position_head import attach_position_head, load_position_head

    head_file = _side_file(path, card, "position_head")
    if head_file is None:
        return
    try:
        head = load_position_head(head_file, str(card["position_head"].get("fitted_on", "")))
        channels, classes = cam_head(model)[1].shape
    except (OSError, ValueError) as exc:
        raise ModelError(f"model card of {path}: its position head cannot be read: {exc}"
                         ) from None
    if (head.channels, head.classes) != (channels, classes):
        raise ModelError(f"model card of {path}: its position head reads {head.channels} "
                         f"channels into {head.classes} classes, the model's feature map has "
                         f"{channels} channels and its head {classes} classes")
    attach_position_head(model, head)


def load_model_alone(path: str | os.PathLike):
    """The model at ``path`` checked against its card's sha256 and loaded in safe mode, without
    the files its card names beside it (for refitting them: an old one does not matter)."""
    path = Path(path)
    _check_sha256(path, read_model_card(path).get("sha256"), "model file")
    return _load_keras_file(path)


def _load_keras_file(path: Path):
    """The Keras model in ``path``, loaded in safe mode (never compiled); ModelError if Keras
    cannot read it."""
    import keras

    try:
        return keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:  # noqa: BLE001 - Keras raises many types for a bad file
        raise ModelError(f"model file {path} cannot be loaded: {exc}") from None


def _attach_confidence(model, path: Path, card: dict) -> None:
    """Attach the card's temperature and out-of-distribution detector to ``model``."""
    from sensitivity.trust.calibration import attach
    from sensitivity.trust.ood import attach_detector, load_detector

    try:
        attach(model, card.get("calibration", {}).get("temperature", 1.0))
        statistics = _side_file(path, card, "out_of_distribution")
        if statistics is not None:
            attach_detector(model, load_detector(card["out_of_distribution"], statistics))
    except (KeyError, TypeError, ValueError, OSError) as exc:
        raise ModelError(f"model card of {path}: its calibration cannot be read: {exc}") from None


def write_operator_card(model_path: str | os.PathLike, classes: Sequence[str], input_size: int,
                        *, name: str | None = None, data: str = "",
                        accuracy: float | None = None) -> dict:
    """Write the card of an operator's own model: its ``classes`` (one per output, in output
    order), native ``input_size`` (pixels), whether its input side is fixed (read from its
    graph), pixel range 0..255, the head read from its graph,
    ``name`` (default: the file's stem), ``data``, ``accuracy`` and the file's sha256. Fields
    of a card already there are kept when its sha256 is the file's. Loads the model in safe
    mode to check it; :class:`ModelError` naming the file when the card would be wrong."""
    path = Path(model_path)
    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
    model = _load_keras_file(path)
    old = read_model_card(path) if card_path(path).is_file() else {}
    card = old if old.get("sha256") == sha256_of(path) else {}
    card.update(name=name or card.get("name") or path.stem,
                classes=[str(c).strip() for c in classes], input_size=input_size,
                input_range=[0, 255])
    if data:
        card["data"] = data
    if accuracy is not None:
        card["test_accuracy"] = accuracy
    card.pop("head", None)
    card.pop("input_fixed", None)
    if default_card(model).fixed_size:
        card["input_fixed"] = True
    try:
        card["head"] = card_from_json(card, path, model).head
    except ValueError as exc:
        raise ModelError(str(exc)) from None
    return write_model_card(path, card)


def models_dir() -> Path:
    """The folder of models on offer: ``$SENSITIVITY_MODELS_DIR``, else :data:`MODELS_DIR`."""
    return Path(os.environ.get(MODELS_DIR_ENV) or MODELS_DIR)


@dataclass(frozen=True)
class ModelEntry:
    """A model file in a folder: its ``name`` (the file's stem), ``path`` and ``card``, or the
    ``problem`` (naming the file) that keeps it from being offered, with ``card`` None."""

    name: str
    path: Path
    card: ModelCard | None
    problem: str = ""


def list_models(folder: str | os.PathLike | None = None) -> list[ModelEntry]:
    """Every ``.keras`` file of ``folder`` (default :func:`models_dir`), by name, with its card
    read (not yet checked against the file's sha256 or the model: :func:`load_model` does)."""
    folder = models_dir() if folder is None else Path(folder)
    entries = []
    for path in sorted(folder.glob("*.keras")):
        try:
            entries.append(ModelEntry(path.stem, path, card_from_json(read_model_card(path),
                                                                      path)))
        except (ModelError, ValueError) as exc:
            entries.append(ModelEntry(path.stem, path, None, str(exc)))
    return entries


class ModelCache:
    """The models of a folder, loaded by name on first use (:func:`load_model`), at most
    ``capacity`` held at once: loading another drops the least recently used."""

    def __init__(self, folder: str | os.PathLike | None = None, capacity: int = 3):
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self.folder = folder
        self.capacity = capacity
        self._models: OrderedDict[str, object] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, name: str):
        """The model called ``name`` (a file stem of the folder), loaded if not held;
        :class:`ModelError` naming the file when it is unknown, altered or its card wrong."""
        with self._lock:
            if name in self._models:
                self._models.move_to_end(name)
                return self._models[name]
            entry = next((e for e in list_models(self.folder) if e.name == name), None)
            if entry is None:
                raise ModelError(f"no model {name!r} in {self.folder or models_dir()}")
            if entry.problem:
                raise ModelError(entry.problem)
            model = load_model(entry.path)
            self._models[name] = model
            while len(self._models) > self.capacity:
                self._models.popitem(last=False)
            return model

    def held(self) -> list[str]:
        """Names of the models in memory, least recently used first."""
        with self._lock:
            return list(self._models)
