"""How many masks does RISE need for a stable map? Measured, not assumed.

For ``--n`` CIFAR-10 test images (class-balanced, at the network's native 32x32), RISE maps
are made with two independent mask seeds for each mask count; the Spearman rank correlation
between the two maps of an image says how much of the map is the masks' noise rather than the
model (1 = the same map whatever the masks). Also the correlation with a reference map of
``--reference`` masks. Prints a Markdown table (median and interquartile range over images).

    python benchmarks/rise_masks.py --n 20 --counts 100,200,500,1000,2000
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared/datasets/cifar10-jpeg"))
    parser.add_argument("--n", type=int, default=20, help="test images")
    parser.add_argument("--counts", default="100,200,500,1000,2000", help="mask counts")
    parser.add_argument("--reference", type=int, default=4000, help="masks of the reference")
    parser.add_argument("--model", default=None, help="a .keras file with its card")
    args = parser.parse_args(argv)

    import sensitivity
    from sensitivity.metrics.sanity import spearman
    from sensitivity.model.data import load_split

    model = sensitivity.load_model(args.model)
    images, labels = load_split(args.data_dir, "test", limit=args.n)
    images = images.astype(np.float32)

    def maps(masks: int, seed: int) -> np.ndarray:
        return sensitivity.saliency(model, images, method="rise", class_mask=None,
                                    masks=masks, seed=seed, sign="signed")

    reference = maps(args.reference, 99)
    lines = ["| masks | seed-to-seed Spearman, median (IQR) | to the "
             f"{args.reference}-mask reference, median (IQR) |", "| --- | --- | --- |"]
    for count in (int(c) for c in args.counts.split(",")):
        first, second = maps(count, 0), maps(count, 1)
        pair = [spearman(a, b) for a, b in zip(first, second, strict=True)]
        ref = [spearman(a, b) for a, b in zip(first, reference, strict=True)]
        cells = [f"{np.median(v):.3f} ({np.percentile(v, 25):.3f}-{np.percentile(v, 75):.3f})"
                 for v in (pair, ref)]
        lines.append(f"| {count} | {cells[0]} | {cells[1]} |")
        print(lines[-1], flush=True)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
