"""Argument types shared by the command-line tools."""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1, with a readable error."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value}")
    return value


def non_negative_float(text: str) -> float:
    """An argparse type: a number of at least 0 (not NaN), with a readable error."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative number, got {text}")
    return value


def method_limit(text: str) -> tuple[str, int]:
    """An argparse type: ``METHOD=N`` (a method name and a positive number of scenes)."""
    name, sep, count = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected METHOD=N, got {text!r}")
    return name.strip(), positive_int(count)


def add_scene_sources(parser: argparse.ArgumentParser) -> None:
    """Add ``--data-dir`` (CIFAR-10 class folders) and ``--photos-dir`` (photographs for the
    scenes' backgrounds), by default in the shared datasets beside the project, and ``--model``
    (a .keras file with its card; default: the default model) to a scene script's parser."""
    from sensitivity.metrics.maps_benchmark import SHARED_DATASETS

    parser.add_argument("--data-dir", default=str(SHARED_DATASETS / "cifar10-jpeg"))
    parser.add_argument("--photos-dir", default=str(SHARED_DATASETS / "photos"))
    parser.add_argument("--model", default=None, help="a .keras file with its card (default: "
                        "the shipped default model)")
