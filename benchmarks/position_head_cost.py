"""What does the position head cost: its wider input in the page's default map, and its
target (``layer="position_probabilities"``) in the gradient methods?

The shipped head reads each position's features, its means over
:data:`sensitivity.model.position_head.NEIGHBOURHOODS` and the map's mean; a head of the
former layout (the 3x3 mean alone, same hidden width, random weights: the cost depends on the
shapes only) is the baseline. For each ``--sides`` (the photo's longer side after resizing),
the page's default map (``cam``, per-position probability cubed) is computed once with each
head attached to warm up, then ``--repeats`` times with each, alternating; the medians and
their ratio (same process, same photo) are printed as a Markdown table, beside the head's own
share (its MLP on the feature map, without the forward pass).

A second table times the gradient and LayerCAM of the position head's target against the
same methods of the logits (the baseline), in the same way: one warm-up each, then
alternating repeats, medians and their ratio.

    python benchmarks/position_head_cost.py --repeats 21
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


def _seconds(run) -> float:
    """Wall time of one call of ``run``."""
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photo", default=str(ROOT.parent / "shared/datasets/photos/dog.jpg"))
    parser.add_argument("--model", default=str(ROOT / "models/wrn-16-3.keras"))
    parser.add_argument("--sides", default="32,144", help="comma-separated longer sides")
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--class-index", type=int, default=5, help="the class mask (5: dog)")
    args = parser.parse_args(argv)

    import sensitivity
    from sensitivity.engine.choices import POSITION_TARGET
    from sensitivity.engine.gradients import feature_forward
    from sensitivity.imaging.images import load_image, resize_to_side
    from sensitivity.methods.localising import cam_head
    from sensitivity.model.position_head import (
        FORMER_NEIGHBOURHOODS,
        attach_position_head,
        input_parts,
        position_head_of,
    )

    model = sensitivity.load_model(args.model)
    shipped = position_head_of(model)
    if shipped is None:
        raise SystemExit(f"{args.model} has no position head")
    rng = np.random.default_rng(0)
    width = input_parts(FORMER_NEIGHBOURHOODS) * shipped.channels
    former = dataclasses.replace(
        shipped, neighbourhoods=FORMER_NEIGHBOURHOODS,
        hidden_kernel=rng.normal(0, 0.05, (width, shipped.hidden_kernel.shape[1])
                                 ).astype(np.float32))
    layer = cam_head(model)[0]
    image = load_image(args.photo)

    print(f"{Path(args.photo).name}, {args.repeats} alternating repeats after one warm-up, "
          f"medians; shipped head {shipped.neighbourhoods} against {FORMER_NEIGHBOURHOODS}\n")
    print("| side | map, former head | map, shipped head | ratio | head MLP, former | "
          "head MLP, shipped | ratio |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for side in (int(s) for s in args.sides.split(",")):
        x = resize_to_side(image, side)[None].astype(np.float32)
        features = np.asarray(feature_forward(model, layer, x)[0])

        def page_map(x=x):
            sensitivity.saliency(model, x, method="cam", class_mask=args.class_index,
                                 probability=True, exponent=3)

        for head in (former, shipped):  # warm-up
            attach_position_head(model, head)
            page_map()
        times = {name: ([], []) for name in ("former", "shipped")}
        for _ in range(args.repeats):
            for name, head in (("former", former), ("shipped", shipped)):
                attach_position_head(model, head)
                times[name][0].append(_seconds(page_map))
                times[name][1].append(_seconds(
                    lambda head=head, features=features: head.probabilities(features)))
        attach_position_head(model, shipped)
        (map_former, mlp_former), (map_shipped, mlp_shipped) = (
            (float(np.median(m)), float(np.median(h))) for m, h in times.values())
        print(f"| {side} ({features.shape[1]}x{features.shape[2]} positions) | "
              f"{map_former * 1e3:.1f} ms | {map_shipped * 1e3:.1f} ms | "
              f"{map_shipped / map_former:.2f} | {mlp_former * 1e3:.2f} ms | "
              f"{mlp_shipped * 1e3:.2f} ms | {mlp_shipped / mlp_former:.2f} |")

    print("\n| side | method | logits | position_probabilities | ratio |")
    print("| --- | --- | --- | --- | --- |")
    for side in (int(s) for s in args.sides.split(",")):
        x = resize_to_side(image, side)[None].astype(np.float32)
        for method in ("gradient", "layercam"):
            def method_map(layer, x=x, method=method):
                sensitivity.saliency(model, x, method=method, layer=layer,
                                     class_mask=args.class_index)

            layers = ("logits", POSITION_TARGET)
            for layer in layers:  # warm-up
                method_map(layer)
            times = {layer: [] for layer in layers}
            for _ in range(args.repeats):
                for layer in layers:
                    times[layer].append(_seconds(lambda layer=layer: method_map(layer)))
            logits, located = (float(np.median(times[layer])) for layer in layers)
            print(f"| {side} | {method} | {logits * 1e3:.1f} ms | {located * 1e3:.1f} ms | "
                  f"{located / logits:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
