"""How long does find_objects take with a model's card rule, against another rule?

For each photograph of ``--photos``, :func:`sensitivity.find_objects` with no class mask runs
once to warm up (traces, kernels), then ``--repeats`` times with each rule, alternating; the
median wall time per rule and the ratio to the baseline rule (same process, same photo) are
printed as a Markdown table. The baseline defaults to ``wrn-16-3-scenes``' session-29 rule:
Grad-CAM fused over scales 0.8, 1 and 1.25 at side 144, softmax evidence at side 112.

    python benchmarks/find_objects_speed.py --model models/wrn-16-3-scenes.keras --repeats 7
"""

from __future__ import annotations

import argparse
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
    args = parser.parse_args(argv)

    import sensitivity
    from sensitivity.imaging.images import load_image
    from sensitivity.imaging.objects import ObjectRule, find_objects, rule_for

    model = sensitivity.load_model(args.model)
    rules = {
        "card's rule": rule_for(model),
        "baseline": ObjectRule(method="gradcam", options={"scales": (0.8, 1.0, 1.25)},
                               side=144, fraction=0.01, min_probability=0.98,
                               evidence_side=112),
    }
    lines = ["| photo | rule | median seconds | ratio to the baseline |",
             "| --- | --- | --- | --- |"]
    for name in args.photos.split(","):
        image = load_image((Path(args.photos_dir) / name).read_bytes())
        seconds = {label: [] for label in rules}
        for rule in rules.values():
            find_objects(model, image, rule=rule)  # warm-up, not counted
        for _ in range(args.repeats):
            for label, rule in rules.items():
                start = time.perf_counter()
                find_objects(model, image, rule=rule)
                seconds[label].append(time.perf_counter() - start)
        base = float(np.median(seconds["baseline"]))
        for label in rules:
            median = float(np.median(seconds[label]))
            lines.append(f"| {name} | {label} | {median:.3f} | {median / base:.2f} |")
    print("\n".join(lines))
    print("card's rule:", rules["card's rule"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
