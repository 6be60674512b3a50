"""Choose find_objects' box floor (``ObjectRule.box_floor``) on scenes with several objects of
one class.

A class's map can leave small fragments beside its object, each a box; a second object of the
same class is a box too. For each scene of :data:`KINDS` (objects from ``--split``'s pool, this
script's own seeds) and each class in it, ``find_objects`` with the model's rule (its floor
set to 0) gives up to ``--max-objects`` boxes; each floor of ``--floors`` keeps those scoring
at least that fraction of the class's strongest box
(:func:`sensitivity.imaging.objects.strong_boxes`, as ``find_objects`` does with that floor).
Kept boxes are matched to the class's objects, strongest first, at IoU >= 0.5. Prints
precision, recall and F1 of the boxes per kind and over all kinds, as a Markdown table.

Choose on ``--split validation``; report the chosen floor with ``--split test``.

    python benchmarks/tune_box_floor.py --n 40 --floors 0,0.05,0.1,0.2,0.3,0.5,1
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

KINDS = {
    "one object": {"num_objects": 1},
    "two of one class": {"num_objects": 2, "same_class": True},
    "three of one class": {"num_objects": 3, "same_class": True},
    "benchmark (1-3 of different classes)": {},
}
"""Scene kind -> :func:`sensitivity.metrics.scenes.photo_like_scene` arguments (the
benchmark's ranges otherwise)."""


def class_boxes(model, scenes, max_objects: int) -> list[dict]:
    """One row per (scene, class in it): ``kind``, ``truth`` (the class's object boxes) and
    ``found`` (``find_objects``' boxes for that class with the floor at 0, strongest first)."""
    from sensitivity.imaging.objects import find_objects, rule_for

    rule = dataclasses.replace(rule_for(model), box_floor=0.0)
    rows = []
    for kind, scene in scenes:
        for label in sorted(set(scene.labels)):
            found = find_objects(model, scene.image, classes=[label], max_objects=max_objects,
                                 rule=rule)
            truth = [box for box, c in zip(scene.boxes, scene.labels, strict=True) if c == label]
            rows.append({"kind": kind, "truth": truth, "found": [f.box._replace(score=f.score)
                                                                 for f in found]})
    return rows


def strong_boxes_of(row: dict, floor: float) -> list:
    """The boxes of a :func:`class_boxes` row kept at ``floor``
    (:func:`sensitivity.imaging.objects.strong_boxes`)."""
    from sensitivity.imaging.objects import strong_boxes

    return strong_boxes(row["found"], floor)


def counts(rows, floor: float) -> tuple[int, int, int]:
    """(true positives, kept boxes, objects) over ``rows`` with boxes under ``floor`` times the
    class's strongest dropped; a kept box matches the first unmatched object it overlaps by
    IoU >= 0.5."""
    from sensitivity.imaging.discovery import iou

    hits = kept = objects = 0
    for row in rows:
        boxes = strong_boxes_of(row, floor)
        unmatched = list(row["truth"])
        for box in boxes:
            match = next((t for t in unmatched if iou(box, t) >= 0.5), None)
            if match is not None:
                unmatched.remove(match)
                hits += 1
        kept += len(boxes)
        objects += len(row["truth"])
    return hits, kept, objects


def table(rows, floors) -> str:
    from sensitivity.cli.args import kind_table

    def cell(group, floor: float) -> str:
        hits, kept, objects = counts(group, floor)
        return (f"P {hits / max(kept, 1):.3f} R {hits / max(objects, 1):.3f} "
                f"F1 {2 * hits / max(kept + objects, 1):.3f}")

    return kind_table(rows, "floor",
                      {f"{floor:g}": functools.partial(cell, floor=floor) for floor in floors},
                      "Objects", lambda row: len(row["truth"]))


def main(argv: list[str] | None = None) -> int:
    from sensitivity.cli.args import add_scene_kind_arguments, add_scene_sources, print_kind_table

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_scene_sources(parser)
    add_scene_kind_arguments(parser)
    parser.add_argument("--floors", default="0,0.05,0.1,0.2,0.3,0.5,1", help="comma-separated")
    parser.add_argument("--max-objects", type=int, default=3)
    args = parser.parse_args(argv)

    import sensitivity
    from sensitivity.metrics.scenes import kind_scenes

    model = sensitivity.load_model(args.model)
    scenes = kind_scenes(args.split, KINDS, args.n, data_dir=args.data_dir,
                         photos_dir=args.photos_dir, seed=args.seed, stream=200)
    start = time.perf_counter()
    rows = class_boxes(model, scenes, args.max_objects)
    floors = [float(f) for f in args.floors.split(",")]
    print_kind_table(args, time.perf_counter() - start, table(rows, floors))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
