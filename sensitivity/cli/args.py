"""Argument types shared by the command-line tools."""

from __future__ import annotations

import argparse
from collections.abc import Callable


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


def add_scene_kind_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--split`` (validation: to choose; test: to report), ``--n`` (scenes per kind),
    ``--seed`` and ``--out`` (a file for the table) to a scene-kind script's parser."""
    parser.add_argument("--split", choices=("validation", "test"), default="validation")
    parser.add_argument("--n", type=int, default=40, help="scenes per kind")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="also write the table to this file")


def print_kind_table(args: argparse.Namespace, seconds: float, table: str) -> None:
    """Print a scene-kind script's Markdown ``table`` under a header naming the split, the
    scenes per kind, the model and the ``seconds`` it took, and write it to ``args.out`` when
    given (the arguments of :func:`add_scene_sources` and :func:`add_scene_kind_arguments`)."""
    from pathlib import Path

    model = Path(args.model).stem if args.model else "the default model"
    text = f"### {args.split} scenes, {args.n} per kind, {model} ({seconds:.0f} s)\n\n{table}"
    print(text)
    if args.out:
        Path(args.out).write_text(text)


def kind_table(rows: list[dict], heading: str, lines: dict[str, Callable[[list[dict]], str]],
               counted: str, count: Callable[[dict], int] = lambda row: 1) -> str:
    """A scene-kind script's Markdown table: a column per scene kind of ``rows`` (each row a
    dict with its ``kind``), in order of appearance, and one for all kinds; one line per entry
    of ``lines`` (its first cells, then ``cell(rows of a kind)`` in each column).
    ``heading``: the first cells' headings (``"floor"``, ``"evidence | threshold"``). Under it,
    ``counted`` (``"Objects"``) per kind: the sum of ``count(row)`` over its rows."""
    kinds = list(dict.fromkeys(row["kind"] for row in rows))
    first = heading.count("|") + 1
    text = ["| " + heading + " | " + " | ".join(kinds) + " | all kinds |",
            "|" + " --- |" * (first + len(kinds) + 1)]
    groups = [[r for r in rows if r["kind"] == kind] for kind in kinds] + [list(rows)]
    for label, cell in lines.items():
        text.append(f"| {label} | " + " | ".join(cell(group) for group in groups) + " |")
    sizes = ", ".join(f"{kind}: {sum(count(r) for r in group)}"
                      for kind, group in zip(kinds, groups, strict=False))
    return "\n".join(text) + f"\n\n{counted}: {sizes}.\n"
