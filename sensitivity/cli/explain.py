"""``python -m sensitivity explain IMAGE...``: saliency maps of image files, written to a folder.

For every readable input the command writes four files into ``--out`` (default
``explanations/``), named after the input file (see :func:`output_stems`):

- ``STEM_heatmap.png``: the map in a colour scale, each map pixel drawn ``--scale`` times larger;
- ``STEM_mask.png``: the ``--top-k`` strongest map pixels in black on white, one PNG pixel per
  map pixel (``--size`` x ``--size``);
- ``STEM_map.npy``: the float32 ``(size, size)`` map (loads with ``allow_pickle=False``);
- ``STEM.json``: class probabilities by name, the predicted class, the out-of-distribution
  score, flag and threshold (None when the model has no detector), the explained classes and
  score, the settings and, for integrated gradients, the completeness gap.

Files that cannot be read as images are skipped and listed on stderr at the end; the exit code
is then 1 (0 when every image was written). Bad arguments raise ValueError, which
``python -m sensitivity`` reports as ``error: ...`` with exit code 2.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

import numpy as np

DEFAULT_OUT = "explanations"
REDUCTIONS = ("max", "sum", "l2")
"""Channel reductions offered here (``"none"`` would give three maps per image)."""

MAX_STEM = 80
"""Longest output file stem taken from an input name, in characters."""


# --------------------------------------------------------------------------------------------
# Arguments.


def _settable(method: str) -> dict:
    """``method``'s options that a command line can set (those with a kind)."""
    from sensitivity.engine.choices import method_option_specs

    return {n: o for n, o in method_option_specs(method).items() if o.kind is not None}


def _value(option, text: str) -> object:
    """``text`` read as a value of ``option``; ValueError when malformed or out of range."""
    value = option.read(text)
    if option.check(value) != value:
        raise ValueError(f"out of range: expected {option.expected()}")
    return value


def option_assignment(text: str) -> tuple[str, str]:
    """An argparse type: ``NAME=VALUE`` for an option some method declares settable
    (:data:`sensitivity.engine.choices.METHODS`), with a value it takes; returns (name, value text).
    Whether the chosen method has that option is checked by :func:`method_option_values`."""
    from sensitivity.engine.choices import METHODS

    name, equals, value = text.partition("=")
    name = name.strip()
    if not equals or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text[:80]!r}")
    declared = [specs[name] for specs in map(_settable, METHODS) if name in specs]
    if not declared:
        known = sorted({n for method in METHODS for n in _settable(method)})
        raise argparse.ArgumentTypeError(
            f"no method has an option {name[:80]!r}; options: {', '.join(known)}"
        )
    problems = []
    for option in declared:
        try:
            _value(option, value)
        except ValueError as exc:
            problems.append(str(exc))
        else:
            return name, value
    raise argparse.ArgumentTypeError(f"{name} {value[:80]!r}: {problems[0]}")


def method_option_values(method: str, assignments: list[tuple[str, str]]) -> dict[str, object]:
    """The options of ``method`` given by ``--option`` (:func:`option_assignment`), read and
    checked against its declarations; ValueError for an option it lacks or a bad value."""
    settable = _settable(method)
    values: dict[str, object] = {}
    for name, text in assignments:
        if name not in settable:
            raise ValueError(
                f"method {method!r} has no option {name!r}; its options: {', '.join(settable)}"
            )
        try:
            values[name] = _value(settable[name], text)
        except ValueError as exc:
            raise ValueError(f"--option {name}={text[:80]}: {exc}") from None
    return values


def parse_classes(values: list[str] | None, class_names: Sequence[str]) -> list[int] | None:
    """Class indices from ``--class`` values (names or indices, each maybe a comma list) of a
    model whose classes are ``class_names``.

    None (no ``--class``) stays None: each image's predicted class. Names are matched without
    regard to case; repeats are dropped; unknown names raise ValueError.
    """
    if not values:
        return None
    lookup = {name.lower(): i for i, name in enumerate(class_names)}
    indices: list[int] = []
    for value in values:
        for item in str(value).split(","):
            item = item.strip()
            if not item:
                continue
            if item.lower() in lookup:
                index = lookup[item.lower()]
            elif re.fullmatch(r"[0-9]+", item) and int(item) < len(class_names):
                index = int(item)
            else:
                shown = ", ".join(class_names[:12]) + (", ..." if len(class_names) > 12 else "")
                raise ValueError(
                    f"unknown class {item!r}; give a name ({shown}) "
                    f"or an index 0..{len(class_names) - 1}"
                )
            if index not in indices:
                indices.append(index)
    if not indices:
        raise ValueError("--class is empty; give a class name or index, e.g. --class cat")
    return indices


def check_arguments(args: argparse.Namespace) -> dict[str, object]:
    """Validate the model-independent arguments; returns the method's options."""
    from sensitivity.engine.saliency import METHODS, SIGNS

    if args.method not in METHODS:
        raise ValueError(f"unknown method {args.method!r}; choose from {', '.join(METHODS)}")
    if args.sign not in SIGNS:
        raise ValueError(f"unknown sign {args.sign!r}; choose from {', '.join(SIGNS)}")
    if args.reduce_channels not in REDUCTIONS:
        raise ValueError(
            f"unknown channel reduction {args.reduce_channels!r}; choose from "
            f"{', '.join(REDUCTIONS)}"
        )
    if args.size is not None:
        check_size(args.size, args.top_k)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a folder")
    return method_option_values(args.method, args.options)


def check_size(size: int, top_k: int) -> None:
    """ValueError unless ``size`` (the input's side) is within ``MIN_SIDE..MAX_SIDE`` and holds
    ``top_k`` pixels."""
    from sensitivity.engine.choices import MAX_SIDE, MIN_SIDE

    if not MIN_SIDE <= size <= MAX_SIDE:
        raise ValueError(f"--size must be {MIN_SIDE}..{MAX_SIDE}, got {size}")
    if top_k > size * size:
        raise ValueError(
            f"--top-k {top_k} exceeds the {size * size} pixels of a {size}x{size} map"
        )


# --------------------------------------------------------------------------------------------
# Output names.


def safe_stem(path: str | os.PathLike) -> str:
    """A file-name stem from an input path: its base name without suffix, safe characters only.

    Only the last path component is used (no folders, so no path traversal); characters other
    than letters, digits, ``.``, ``_`` and ``-`` become ``_``; leading dots are dropped (no
    hidden files, no ``..``); at most :data:`MAX_STEM` characters; ``"image"`` if nothing is left.
    """
    name = re.split(r"[\\/]", os.fspath(path))[-1]
    stem = name.rsplit(".", 1)[0] if "." in name.lstrip(".") else name
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", stem).lstrip(".")[:MAX_STEM].rstrip(".")
    return stem or "image"


def output_stems(paths: list[str]) -> list[str]:
    """One distinct stem per input, in order: repeats get ``-2``, ``-3``, ... (case-insensitive)."""
    used: set[str] = set()
    stems = []
    for path in paths:
        base = safe_stem(path)
        stem, n = base, 1
        while stem.lower() in used:
            n += 1
            stem = f"{base}-{n}"
        used.add(stem.lower())
        stems.append(stem)
    return stems


# --------------------------------------------------------------------------------------------
# Progress.


class ProgressBar:
    """A text progress bar on ``stream`` (stderr): count, percentage, elapsed time and ETA.

    On a terminal the line is redrawn in place; otherwise a line is printed about every 10 %.
    """

    def __init__(self, total: int, stream: TextIO | None = None, width: int = 30) -> None:
        self.total = max(int(total), 1)
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self.start = time.monotonic()
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._last_decile = -1

    @staticmethod
    def _clock(seconds: float) -> str:
        seconds = int(round(seconds))
        return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"

    def line(self, done: int) -> str:
        """The bar after ``done`` of ``total`` items, e.g. ``[####......] 4/10 40% ETA 0:00:12``."""
        fraction = min(max(done / self.total, 0.0), 1.0)
        filled = round(self.width * fraction)
        elapsed = time.monotonic() - self.start
        if done >= self.total:
            tail = f"in {self._clock(elapsed)}"
        elif done > 0:
            tail = f"ETA {self._clock(elapsed / done * (self.total - done))}"
        else:
            tail = "ETA --:--:--"
        bar = "#" * filled + "." * (self.width - filled)
        return f"[{bar}] {done}/{self.total} {100 * fraction:3.0f}% {tail}"

    def update(self, done: int) -> None:
        """Show that ``done`` items are finished."""
        if self.tty:
            end = "\n" if done >= self.total else ""
            print("\r" + self.line(done), end=end, file=self.stream, flush=True)
            return
        decile = int(10 * done / self.total)
        if decile != self._last_decile or done >= self.total:
            self._last_decile = decile
            print(self.line(done), file=self.stream, flush=True)


# --------------------------------------------------------------------------------------------
# One image.


def explain_image(
    model,
    image: np.ndarray,
    *,
    method: str,
    layer: str,
    classes: list[int] | None,
    sign: str,
    reduce_channels: str,
    options: dict | None = None,
) -> tuple[np.ndarray, dict]:
    """The ``(H, W)`` float32 map of one preprocessed ``(H, W, 3)`` image and its facts.

    Facts: ``probabilities`` (by class name), ``predicted_class``, ``predicted_index``,
    ``out_of_distribution_score``, ``out_of_distribution`` (whether the score is above
    ``out_of_distribution_threshold``; all three None when the model has no detector, see
    :func:`sensitivity.trust.ood.assess`), ``explained_classes``, ``score`` (the explained target
    score at the image), ``notes`` (what the page would say beside this map: the method's
    caveat at this size, a map that is the same everywhere; empty when none) and, for
    integrated gradients, ``completeness_gap`` (relative, see :class:`Attribution`; None when
    the score did not change along the path but the attributions do not sum to zero).
    ``options``: the method's options (:func:`method_option_values`; default: its defaults).
    """
    from sensitivity.engine.inference import probabilities as calibrated
    from sensitivity.engine.saliency import OUTPUT_TARGETS, attribute, to_map
    from sensitivity.imaging.objects import rule_for
    from sensitivity.model.cards import model_card
    from sensitivity.render.report import flat_map_note, method_note
    from sensitivity.trust.ood import assess

    result = attribute(
        model, image[None], method=method, layer=layer, class_mask=classes, **(options or {})
    )
    saliency_map = to_map(result, sign, reduce_channels)[0]
    probabilities = calibrated(model, result.logits)[0]
    predicted = int(probabilities.argmax())
    card = model_card(model)
    names = card.class_names
    facts: dict = {
        "probabilities": {name: float(p) for name, p in zip(names, probabilities, strict=True)},
        "predicted_class": names[predicted],
        "predicted_index": predicted,
    }
    assessment = assess(model, image)
    facts["out_of_distribution_score"] = None if assessment is None else assessment.score
    facts["out_of_distribution"] = None if assessment is None else assessment.flagged
    facts["out_of_distribution_threshold"] = None if assessment is None else assessment.threshold
    if layer in OUTPUT_TARGETS:
        explained = np.flatnonzero(result.weights[0]).tolist()
        facts["explained_classes"] = [names[i] for i in explained]
    facts["score"] = float(result.scores[0])
    rule_side = None if card.fixed_size else rule_for(model).side  # else --size cannot take it
    notes = (method_note(method, image.shape[0], card.native_size, layer),
             flat_map_note(saliency_map, rule_side))
    facts["notes"] = [note for note in notes if note]
    if result.completeness_gap is not None:
        gap = float(result.completeness_gap[0])
        facts["completeness_gap"] = gap if np.isfinite(gap) else None  # JSON has no infinity
    return saliency_map, facts


def _write_outputs(
    out: Path, stem: str, saliency_map: np.ndarray, record: dict, top_k: int, scale: int, sign: str
) -> dict[str, str]:
    from sensitivity.imaging.postprocess import strongest_pixels
    from sensitivity.render.export import heatmap_png, map_npy, mask_png

    files = {
        "heatmap": f"{stem}_heatmap.png",
        "mask": f"{stem}_mask.png",
        "map": f"{stem}_map.npy",
        "json": f"{stem}.json",
    }
    (out / files["heatmap"]).write_bytes(
        heatmap_png(saliency_map, signed=sign == "signed", scale=scale)
    )
    mask = strongest_pixels(saliency_map, top_k, sign)
    (out / files["mask"]).write_bytes(mask_png(mask, scale=1))
    (out / files["map"]).write_bytes(map_npy(saliency_map))
    record = dict(record, files=files)
    (out / files["json"]).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return files


def run(args: argparse.Namespace) -> int:
    """Explain every image of ``args`` (see
    :func:`sensitivity.cli.parsers.add_explain_parser`).

    Returns 0 when all were written, 1 when some files were skipped (listed on stderr).
    Raises ValueError (or ModelError) on bad arguments before anything is written.
    """
    from sensitivity.model.cards import model_card
    from sensitivity.model.io import load_model

    options = check_arguments(args)
    model = load_model(args.model)
    card = model_card(model)
    size = args.size or card.native_size
    classes = _check_against_model(args, model, card, size)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    settings = _settings(args, options, classes, card, size)
    written, skipped = _explain_files(args, model, size, classes, options, out, settings)
    return _report(written, skipped, len(args.images), out)


def _check_against_model(args: argparse.Namespace, model, card, size: int) -> list[int] | None:
    """The classes to explain (None: each image's predicted class), once the size, the
    classes and the layer are checked against the model; ValueError if one does not fit."""
    from sensitivity.engine.gradients import OUTPUT_TARGETS, make_target

    check_size(size, args.top_k)
    classes = parse_classes(args.classes, card.class_names)
    make_target(model, args.layer)  # ValueError for an unknown layer
    if classes is not None and args.layer not in OUTPUT_TARGETS:
        raise ValueError(
            f"--class applies to the output targets ({', '.join(OUTPUT_TARGETS)}), "
            f"not to the inner layer {args.layer!r}"
        )
    return classes


def _settings(args: argparse.Namespace, options: dict, classes: list[int] | None, card,
              size: int) -> dict:
    """The settings every image's JSON records."""
    from sensitivity.engine.saliency import METHODS

    return {
        "method": args.method,
        "method_options": {
            **{k: o.default for k, o in METHODS[args.method].options.items()},
            **options,
        },
        "layer": args.layer,
        "classes": None if classes is None else [card.class_names[i] for i in classes],
        "sign": args.sign,
        "reduce_channels": args.reduce_channels,
        "top_k": args.top_k,
        "size": size,
        "model": str(args.model) if args.model else "default",
    }


def _explain_files(args: argparse.Namespace, model, size: int, classes: list[int] | None,
                   options: dict, out: Path, settings: dict) -> tuple[int, list[tuple[str, str]]]:
    """Explain and write each image file in turn, with a progress bar, then print each map's
    notes (:func:`explain_image`); returns the number written and the ``(path, reason)`` of
    each file skipped."""
    from sensitivity.imaging.images import load_image, preprocess

    stems = output_stems(args.images)
    skipped: list[tuple[str, str]] = []
    noted: list[tuple[str, str]] = []
    written = 0
    bar = ProgressBar(len(args.images))
    bar.update(0)
    for done, (path, stem) in enumerate(zip(args.images, stems, strict=True), start=1):
        try:
            image = preprocess(load_image(path), size)
            saliency_map, facts = explain_image(
                model,
                image,
                method=args.method,
                layer=args.layer,
                classes=classes,
                sign=args.sign,
                reduce_channels=args.reduce_channels,
                options=options,
            )
        except (ValueError, OSError) as exc:  # ImageError is a ValueError
            skipped.append((path, str(exc)))
        else:
            record = {"image": str(path), **facts, "settings": settings}
            _write_outputs(out, stem, saliency_map, record, args.top_k, args.scale, args.sign)
            written += 1
            noted += [(path, note) for note in facts["notes"]]
        bar.update(done)
    for path, note in noted:
        print(f"note: {path}: {note}")
    return written, skipped


def _report(written: int, skipped: list[tuple[str, str]], total: int, out: Path) -> int:
    """Print what was written and what was skipped; the exit code (1 if any was skipped)."""
    print(f"wrote {written} of {total} explanations to {out}/")
    if skipped:
        print(f"skipped {len(skipped)} file(s):", file=sys.stderr)
        for path, reason in skipped:
            print(f"  {path}: {reason}", file=sys.stderr)
        return 1
    return 0
