"""Choose the localisation defaults on the validation scenes (never the test scenes).

For each analysis side (the scene's longer side after resizing) and each method, measure
pointing, mass in the box, class discrimination, CorLoc and MaxBoxAcc on ``--n`` validation
scenes (objects from the validation part of the training split); thresholds are chosen on the
same validation rows (the optimistic MaxBoxAcc: this script only chooses). Prints one Markdown
table per side and writes them to ``--out``. With ``--class-thresholds``, also the precision,
recall and F1 of the classes ``find_objects`` looks for when no class mask is given (those whose
evidence reaches each threshold, read at each of ``--evidence-sides`` through each of
``--evidence-activations``, by default the rule's) against the scenes' classes: the rule's
``min_probability``, ``evidence_side`` and ``evidence_activation``.

    python benchmarks/tune_localisation.py --n 120 --sides 96,128,160 --out tune.md
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DEFAULT_SPECS = ("gradient", "gradient_x_input", "gradcam", "cam", "layercam",
                 "cam:scales=0.75/1/1.25", "random", "center", "edge")


def main(argv: list[str] | None = None) -> int:
    from sensitivity.cli.args import add_scene_sources

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_scene_sources(parser)
    parser.add_argument("--n", type=int, default=120, help="validation scenes")
    parser.add_argument("--sides", default="96,128,160", help="analysis sides, comma-separated")
    parser.add_argument("--methods", nargs="+", default=list(DEFAULT_SPECS))
    parser.add_argument("--class-thresholds", default=None,
                        help="comma-separated min_probability values to compare (e.g. 0.5,0.9)")
    parser.add_argument("--evidence-sides", default=None,
                        help="sides at which to read the class evidence for --class-thresholds, "
                             "comma-separated (default: the rule's evidence side)")
    parser.add_argument("--evidence-activations", default=None,
                        help="per-position activations of the class evidence for "
                             "--class-thresholds, comma-separated among softmax, sigmoid "
                             "(default: the rule's)")
    parser.add_argument("--out", default=None, help="write the tables to this Markdown file")
    args = parser.parse_args(argv)

    import sensitivity
    from sensitivity.metrics.localisation_benchmark import (
        format_summary,
        measure,
        parse_spec,
        summarise,
    )
    from sensitivity.metrics.scenes import scene_set

    model = sensitivity.load_model(args.model)
    scenes = scene_set("validation", args.n, data_dir=args.data_dir, photos_dir=args.photos_dir)
    specs = [parse_spec(text) for text in args.methods]
    parts = []
    for side in (int(s) for s in args.sides.split(",")):
        start = time.perf_counter()
        rows = measure(model, scenes, specs, side=side)
        table = format_summary(summarise(rows))
        seconds = time.perf_counter() - start
        part = f"### side {side} ({args.n} validation scenes, {seconds:.0f} s)\n\n{table}\n"
        print(part, flush=True)
        parts.append(part)
    if args.class_thresholds:
        from sensitivity.imaging.objects import rule_for

        thresholds = [float(t) for t in args.class_thresholds.split(",")]
        rule = rule_for(model)
        evidence_sides = args.evidence_sides or str(rule.evidence_side or rule.side)
        activations = (args.evidence_activations.split(",") if args.evidence_activations
                       else [rule.evidence_activation])
        for side in (int(s) for s in evidence_sides.split(",")):
            for activation in activations:
                part = class_table(model, scenes, thresholds, side, activation)
                print(part, flush=True)
                parts.append(part)
    if args.out:
        Path(args.out).write_text("\n".join(parts), encoding="utf-8")
    return 0


def class_scores(found: list[set[int]], truth: list[set[int]]) -> tuple[float, float, float]:
    """Precision, recall and F1 of the classes ``found`` in each scene against ``truth``,
    counted over all scenes."""
    hits = sum(len(f & t) for f, t in zip(found, truth, strict=True))
    precision = hits / max(1, sum(len(f) for f in found))
    recall = hits / max(1, sum(len(t) for t in truth))
    return precision, recall, 2 * precision * recall / max(precision + recall, 1e-12)


def class_table(model, scenes, thresholds: list[float], side: int,
                activation: str | None = None) -> str:
    """Markdown: per threshold, the scores of :func:`class_scores` for the classes
    ``find_objects`` looks for with no class mask (:func:`candidate_classes`, at most 3), the
    evidence read with the scene's longer side at ``side`` pixels through ``activation`` per
    position (None: the head's)."""

    from sensitivity.imaging.images import resize_to_side
    from sensitivity.imaging.objects import candidate_classes, class_evidence

    evidence = [class_evidence(model, resize_to_side(scene.image, side), activation)
                for scene in scenes]
    truth = [set(scene.labels) for scene in scenes]
    how = activation or "the head's"
    lines = [f"### classes looked for with no class mask (side {side}, {how} activation, "
             f"{len(scenes)} validation scenes)\n", "| min_probability | precision | recall | F1 |",
             "| --- | --- | --- | --- |"]
    for threshold in thresholds:
        found = [set(candidate_classes(e, 3, threshold)) for e in evidence]
        lines.append("| {} | {:.3f} | {:.3f} | {:.3f} |".format(threshold,
                                                             *class_scores(found, truth)))
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
