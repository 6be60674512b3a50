"""Choose find_objects' analysis sides (``ObjectRule.sides``) on scenes of several kinds.

The localisation benchmark's scenes hold objects of 24-64 px on canvases of 96-192 px; a photo
may show one object filling the frame, or many small ones. :data:`KINDS` names the benchmark's
kind and four outside its ranges. For each object (class mask = its class; objects from
``--split``'s pool, this script's own seeds) and each side of ``--sides``, ``find_objects``
with the model's rule at that side alone gives a first box, and ``class_evidence`` read at that
side the class's evidence. A set of sides (``--candidates``, each ``side/side/...``, the first
the rule's ``side``) boxes each class at the side where its evidence is highest
(:func:`sensitivity.imaging.objects.best_side`), as ``find_objects`` does with those sides: its
first box for one class is the first box at that side alone. Prints CorLoc (first box IoU >=
0.5) per kind and over all kinds, mean (standard error), as a Markdown table.

Choose on ``--split validation``; report the chosen set with ``--split test`` (other objects,
other seeds).

    python benchmarks/tune_sides.py --n 40 --sides 32,48,64,96,128 --candidates 96 96/32/48/64/128
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

KINDS = {
    "benchmark (24-64 px on 96-192)": {},
    "one object 64-112 on 128-160": {"canvas": (128, 160), "object_size": (64, 112),
                                     "num_objects": 1},
    "one object 72-96 on 96-112": {"canvas": (96, 112), "object_size": (72, 96),
                                   "num_objects": 1},
    "32-96 px on 256-384": {"canvas": (256, 384), "object_size": (32, 96)},
    "16-32 px on 128-192": {"canvas": (128, 192), "object_size": (16, 32)},
}
"""Scene kind -> :func:`sensitivity.metrics.scenes.photo_like_scene` ranges."""


def measure_sides(model, scenes, sides) -> list[dict]:
    """One row per object of ``scenes``: ``kind``, and per side ``iou{side}`` (first box of
    ``find_objects`` at that side alone, 0 if none) and ``evidence{side}`` (its class's
    evidence read there)."""
    from sensitivity.imaging.discovery import iou
    from sensitivity.imaging.images import resize_to_side
    from sensitivity.imaging.objects import class_evidence, find_objects, rule_for

    rule = rule_for(model)
    rows = []
    for kind, scene in scenes:
        for box, label in zip(scene.boxes, scene.labels, strict=True):
            row = {"kind": kind}
            for side in sides:
                at_side = dataclasses.replace(rule, side=side, sides=())
                found = find_objects(model, scene.image, classes=[label], max_objects=1,
                                     rule=at_side)
                row[f"iou{side}"] = iou(found[0].box, box) if found else 0.0
                x = resize_to_side(scene.image, side)
                row[f"evidence{side}"] = float(
                    class_evidence(model, x, rule.evidence_activation)[label])
            rows.append(row)
    return rows


def corloc(rows, candidate: tuple[int, ...]) -> np.ndarray:
    """Per row, 1.0 if the first box at the side ``candidate`` picks for it has IoU >= 0.5."""
    from sensitivity.imaging.objects import best_side

    hits = []
    for row in rows:
        side = best_side({s: np.array([row[f"evidence{s}"]]) for s in candidate}, 0)
        hits.append(float(row[f"iou{side}"] >= 0.5))
    return np.array(hits)


def table(rows, candidates) -> str:
    from sensitivity.cli.args import kind_table

    def cell(group, candidate) -> str:
        hits = corloc(group, candidate)
        error = hits.std(ddof=1) / np.sqrt(len(hits)) if len(hits) > 1 else float("nan")
        return f"{hits.mean():.3f} ({error:.3f})"

    return kind_table(rows, "sides", {"/".join(map(str, c)): functools.partial(cell, candidate=c)
                                      for c in candidates}, "Objects")


def main(argv: list[str] | None = None) -> int:
    from sensitivity.cli.args import add_scene_kind_arguments, add_scene_sources, print_kind_table

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_scene_sources(parser)
    add_scene_kind_arguments(parser)
    parser.add_argument("--sides", default="32,48,64,96,128", help="comma-separated")
    parser.add_argument("--candidates", nargs="+", default=["96", "96/32/48/64/128"],
                        help="sets of sides, each side/side/..., the rule's side first")
    args = parser.parse_args(argv)

    import sensitivity
    from sensitivity.metrics.scenes import kind_scenes

    sides = [int(s) for s in args.sides.split(",")]
    candidates = [tuple(int(s) for s in c.split("/")) for c in args.candidates]
    missing = {s for c in candidates for s in c} - set(sides)
    if missing:
        parser.error(f"candidates use sides not measured: {sorted(missing)}")
    model = sensitivity.load_model(args.model)
    scenes = kind_scenes(args.split, KINDS, args.n, data_dir=args.data_dir,
                         photos_dir=args.photos_dir, seed=args.seed, stream=100)
    start = time.perf_counter()
    rows = measure_sides(model, scenes, sides)
    print_kind_table(args, time.perf_counter() - start, table(rows, candidates))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
