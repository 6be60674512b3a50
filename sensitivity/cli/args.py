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
