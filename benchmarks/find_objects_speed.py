"""How long does find_objects take with a model's card rule, against another rule?

For each photograph of ``--photos``, :func:`sensitivity.find_objects` with no class mask runs
once to warm up (traces, kernels), then ``--repeats`` times with each rule, alternating; the
median wall time per rule and the ratio to the baseline rule (same process, same photo) are
printed as a Markdown table. The baseline defaults to ``wrn-16-3-scenes``' session-29 rule:
Grad-CAM fused over scales 0.8, 1 and 1.25 at side 144, softmax evidence at side 112. A
card's rule with ``sides`` also runs at its ``side`` alone. With ``--masks``, the card's rule
also runs with each class mask given (class indices, comma-separated), its ratio to the card's
rule with the first mask.

    python benchmarks/find_objects_speed.py --model models/wrn-16-3-scenes.keras --repeats 7
    python benchmarks/find_objects_speed.py --masks 5 5,9 5,9,1
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos-dir", default=str(ROOT.parent / "shared/datasets/photos"))
    parser.add_argument("--photos", default="dog.jpg,person.jpg", help="comma-separated")
    parser.add_argument("--model", default=str(ROOT / "models/wrn-16-3-scenes.keras"))
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--masks", nargs="*", default=[],
                        help="class masks for the card's rule, e.g. 5 5,9,1")
    args = parser.parse_args(argv)

    import sensitivity
    from sensitivity.imaging.images import load_image
    from sensitivity.imaging.objects import ObjectRule, find_objects, rule_for

    model = sensitivity.load_model(args.model)
    card = rule_for(model)
    baseline = ObjectRule(method="gradcam", options={"scales": (0.8, 1.0, 1.25)}, side=144,
                          fraction=0.01, min_probability=0.98, evidence_side=112)
    # label: (rule, classes, label of the row it is divided by)
    runs = {"card's rule": (card, None, "baseline"), "baseline": (baseline, None, "baseline")}
    if card.sides:
        runs["card's rule at its side alone"] = (dataclasses.replace(card, sides=()), None,
                                                 "baseline")
    for mask in args.masks:
        runs[f"card's rule, classes {mask}"] = (
            card, [int(c) for c in mask.split(",")], f"card's rule, classes {args.masks[0]}")
    lines = ["| photo | rule | median seconds | ratio | to |", "| --- | --- | --- | --- | --- |"]
    for name in args.photos.split(","):
        image = load_image((Path(args.photos_dir) / name).read_bytes())
        seconds = {label: [] for label in runs}
        for rule, classes, _ in runs.values():
            find_objects(model, image, rule=rule, classes=classes)  # warm-up, not counted
        for _ in range(args.repeats):
            for label, (rule, classes, _) in runs.items():
                start = time.perf_counter()
                find_objects(model, image, rule=rule, classes=classes)
                seconds[label].append(time.perf_counter() - start)
        medians = {label: float(np.median(times)) for label, times in seconds.items()}
        for label, (_, _, base) in runs.items():
            lines.append(f"| {name} | {label} | {medians[label]:.3f} | "
                         f"{medians[label] / medians[base]:.2f} | {base} |")
    print("\n".join(lines))
    print("card's rule:", card)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
