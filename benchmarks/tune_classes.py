"""Choose which classes find_objects looks for with no class mask (``ObjectRule.min_probability``
and the sides its evidence is read at) on scenes of objects of many sizes.

For each scene of ``tune_sides.KINDS`` (objects from ``--split``'s pool, this script's own
seeds), the class evidence (:func:`sensitivity.imaging.objects.class_evidence`) is read at each
of the model's rule's :attr:`~sensitivity.imaging.rules.ObjectRule.evidence_sides`. Two ways of
reading it are compared at each threshold of ``--thresholds``: at the rule's evidence side
alone, and a class's highest over those sides (what ``find_objects`` does for a rule with
``sides``); the classes looked for are those of
:func:`sensitivity.imaging.objects.candidate_classes` (at most ``--max-objects``, the most
probable always). Prints the precision, recall and F1 of those classes against each scene's
classes, per kind and over all kinds, as a Markdown table.

Choose on ``--split validation``; report the chosen threshold with ``--split test``.

    python benchmarks/tune_classes.py --n 40 --thresholds 0.5,0.9,0.95,0.99,0.999
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def scene_evidence(model, scenes, sides) -> list[dict]:
    """One row per scene: ``kind``, ``truth`` (its set of classes) and ``evidence``
    (``(len(sides), K)``: the class evidence read with the longer side at each side)."""
    from sensitivity.imaging.images import resize_to_side
    from sensitivity.imaging.objects import class_evidence, rule_for

    activation = rule_for(model).evidence_activation
    return [{"kind": kind, "truth": set(scene.labels),
             "evidence": np.stack([class_evidence(model, resize_to_side(scene.image, side),
                                                  activation) for side in sides])}
            for kind, scene in scenes]


def class_counts(rows, read: slice, threshold: float, max_objects: int) -> tuple[int, int, int]:
    """(classes found that a scene holds, classes found, classes the scenes hold) over
    ``rows``, the evidence of the sides ``read`` (a slice of the rows' sides)."""
    from sensitivity.imaging.objects import candidate_classes

    hits = found = held = 0
    for row in rows:
        classes = set(candidate_classes(row["evidence"][read], max_objects, threshold))
        hits += len(classes & row["truth"])
        found += len(classes)
        held += len(row["truth"])
    return hits, found, held


def table(rows, thresholds, sides, max_objects: int) -> str:
    from sensitivity.cli.args import kind_table

    reads = {f"at {sides[0]} alone": slice(0, 1)}
    if len(sides) > 1:
        reads["highest over " + ", ".join(map(str, sides))] = slice(None)

    def cell(group, read: slice, threshold: float) -> str:
        hits, found, held = class_counts(group, read, threshold, max_objects)
        return (f"P {hits / max(found, 1):.3f} R {hits / max(held, 1):.3f} "
                f"F1 {2 * hits / max(found + held, 1):.3f}")

    return kind_table(rows, "evidence | threshold",
                      {f"{name} | {threshold}": functools.partial(cell, read=read,
                                                                   threshold=threshold)
                       for name, read in reads.items() for threshold in thresholds}, "Scenes")


def main(argv: list[str] | None = None) -> int:
    from sensitivity.cli.args import add_scene_kind_arguments, add_scene_sources, print_kind_table

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_scene_sources(parser)
    add_scene_kind_arguments(parser)
    parser.add_argument("--thresholds", default="0.5,0.8,0.9,0.95,0.98,0.99,0.995,0.999",
                        help="comma-separated min_probability values")
    parser.add_argument("--max-objects", type=int, default=3)
    args = parser.parse_args(argv)

    from tune_sides import KINDS

    import sensitivity
    from sensitivity.imaging.objects import rule_for
    from sensitivity.metrics.scenes import kind_scenes

    model = sensitivity.load_model(args.model)
    rule = rule_for(model)
    sides = list(rule.evidence_sides)
    scenes = kind_scenes(args.split, KINDS, args.n, data_dir=args.data_dir,
                         photos_dir=args.photos_dir, seed=args.seed, stream=300)
    start = time.perf_counter()
    rows = scene_evidence(model, scenes, sides)
    thresholds = [float(t) for t in args.thresholds.split(",")]
    print_kind_table(args, time.perf_counter() - start,
                     table(rows, thresholds, sides, args.max_objects))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
