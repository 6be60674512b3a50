"""Choose the localisation defaults on the validation scenes (never the test scenes).

For each analysis side (the scene's longer side after resizing) and each method, measure
pointing, mass in the box, class discrimination, CorLoc and MaxBoxAcc on ``--n`` validation
scenes (objects from the validation part of the training split); thresholds are chosen on the
same validation rows (the optimistic MaxBoxAcc: this script only chooses). Prints one Markdown
table per side and writes them to ``--out``.

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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared/datasets/cifar10-jpeg"))
    parser.add_argument("--photos-dir", default=str(ROOT.parent / "shared/datasets/photos"))
    parser.add_argument("--model", default=None, help="a .keras file with its card (default: "
                        "the shipped default model)")
    parser.add_argument("--n", type=int, default=120, help="validation scenes")
    parser.add_argument("--sides", default="96,128,160", help="analysis sides, comma-separated")
    parser.add_argument("--methods", nargs="+", default=list(DEFAULT_SPECS))
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
    if args.out:
        Path(args.out).write_text("\n".join(parts), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
