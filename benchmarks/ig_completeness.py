"""How close Integrated Gradients comes to completeness on the default model, per path sampling.

For CIFAR-10 test images from ``--data-dir`` (a class-balanced selection of ``--n`` images,
``--skip`` the first ``--skip`` of it so that a set other than the unit test's can be
measured), runs integrated gradients from a black baseline with ``--steps`` gradients for the
predicted class, once with the engine's adaptive path sampling and once with the midpoint rule,
and prints, over the images whose score changes by at least 1 logit along the path (where the
relative gap is meaningful), the mean, median, 90th percentile and largest completeness gap
|sum of attributions - (f(x) - f(black))| / |f(x) - f(black)|, and the seconds each run took.

    python benchmarks/ig_completeness.py --data-dir ../shared/datasets/cifar10-jpeg --n 144
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

import sensitivity  # noqa: E402  (before TensorFlow: it switches oneDNN on)
from sensitivity.methods import attribute  # noqa: E402
from sensitivity.model.data import load_split  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True, help="CIFAR-10 class folders (train/, test/)")
    parser.add_argument("--n", type=int, default=144, help="test images to load")
    parser.add_argument("--skip", type=int, default=48, help="leave out the first SKIP of them")
    parser.add_argument("--steps", type=int, default=64)
    args = parser.parse_args(argv)
    model = sensitivity.load_model()
    images, _ = load_split(args.data_dir, "test", limit=args.n, cache=False)
    images = images[args.skip:].astype(np.float32)
    print(f"{len(images)} images, {args.steps} steps, black baseline, predicted class")
    print(f"{'sampling':10} {'images':>6} {'mean':>7} {'median':>7} {'p90':>7} {'max':>7} {'s':>6}")
    for sampling in ("adaptive", "uniform"):
        start = time.perf_counter()
        result = attribute(model, images, method="integrated_gradients", steps=args.steps,
                           path_sampling=sampling)
        seconds = time.perf_counter() - start
        meaningful = np.abs(result.scores - result.baseline_scores) >= 1.0
        gaps = result.completeness_gap[meaningful]
        print(f"{sampling:10} {len(gaps):6d} {gaps.mean():7.4f} {np.median(gaps):7.4f} "
              f"{np.quantile(gaps, 0.9):7.4f} {gaps.max():7.4f} {seconds:6.1f}")


if __name__ == "__main__":
    main()
