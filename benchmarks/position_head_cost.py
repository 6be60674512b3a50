"""What does the position head cost: its wider input in CAM's probability map, and its
target (``layer="position_probabilities"``) in the gradient methods?

The shipped head reads each position's features, its means over
:data:`sensitivity.model.position_head.NEIGHBOURHOODS` and the map's mean; a head of the
former layout (the 3x3 mean alone, same hidden width, random weights: the cost depends on the
shapes only) is the baseline. For each ``--sides`` (the photo's longer side after resizing),
CAM's cubed per-position probability (the page's default map without its pixel detail, whose
gradient does not depend on the head's layout) is timed with each head attached, beside the
head's own share (its MLP on the feature map, without the forward pass). A second table times
the gradient and LayerCAM of the position head's target against the same methods of the
logits (the baseline); a third, the page's map as it grew: the cubed probability (the
baseline), times the pixel detail (session 35), and that averaged with the mirror image's map
(session 36, the page's default); a fourth, those maps with the head's matrix products on one
BLAS thread (:func:`sensitivity.model.position_head.one_blas_thread`, as shipped) against
NumPy's default threads (the baseline). Each is run once to warm up, then ``--repeats`` times,
all in turn (:func:`alternating_medians`); the medians and their ratios (same process, same
photo) are printed as Markdown tables.

    python benchmarks/position_head_cost.py --repeats 21
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _seconds(run) -> float:
    """Wall time of one call of ``run``."""
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def alternating_medians(runs: dict[str, tuple[Callable, Callable]], repeats: int
                        ) -> dict[str, float]:
    """Median seconds of each of ``runs`` (``{name: (setup, run)}``, ``setup`` untimed before
    each call of ``run``): each run once to warm up, then ``repeats`` rounds of all in turn."""
    for setup, run in runs.values():
        setup()
        run()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, (setup, run) in runs.items():
            setup()
            times[name].append(_seconds(run))
    return {name: float(np.median(values)) for name, values in times.items()}


def _nothing() -> None:
    """The setup of a run that needs none."""


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
    from sensitivity.model import position_head
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
    images = {side: resize_to_side(image, side)[None].astype(np.float32)
              for side in (int(s) for s in args.sides.split(","))}
    heads = {"former": former, "shipped": shipped}

    def cubed_map(x: np.ndarray, options: dict) -> Callable[[], None]:
        """A run of CAM's cubed probability of ``x`` with ``options``."""
        return lambda: sensitivity.saliency(model, x, method="cam", class_mask=args.class_index,
                                            probability=True, exponent=3, **options)

    print(f"{Path(args.photo).name}, {args.repeats} alternating repeats after one warm-up, "
          f"medians; shipped head {shipped.neighbourhoods} against {FORMER_NEIGHBOURHOODS}\n")
    print("| side | map, former head | map, shipped head | ratio | head MLP, former | "
          "head MLP, shipped | ratio |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for side, x in images.items():
        features = np.asarray(feature_forward(model, layer, x)[0])
        runs = {}
        for name, head in heads.items():
            def attach(head=head):
                attach_position_head(model, head)

            def mlp(head=head, features=features):
                head.probabilities(features)

            runs[f"map, {name}"] = (attach, cubed_map(x, {}))
            runs[f"mlp, {name}"] = (attach, mlp)
        medians = alternating_medians(runs, args.repeats)
        attach_position_head(model, shipped)
        map_former, map_shipped, mlp_former, mlp_shipped = (
            medians[f"{part}, {name}"] for part in ("map", "mlp") for name in heads)
        print(f"| {side} ({features.shape[1]}x{features.shape[2]} positions) | "
              f"{map_former * 1e3:.1f} ms | {map_shipped * 1e3:.1f} ms | "
              f"{map_shipped / map_former:.2f} | {mlp_former * 1e3:.2f} ms | "
              f"{mlp_shipped * 1e3:.2f} ms | {mlp_shipped / mlp_former:.2f} |")

    print("\n| side | method | logits | position_probabilities | ratio |")
    print("| --- | --- | --- | --- | --- |")
    for side, x in images.items():
        for method in ("gradient", "layercam"):
            def method_map(target, x=x, method=method):
                sensitivity.saliency(model, x, method=method, layer=target,
                                     class_mask=args.class_index)

            medians = alternating_medians(
                {target: (_nothing, lambda target=target: method_map(target))
                 for target in ("logits", POSITION_TARGET)}, args.repeats)
            logits, located = medians["logits"], medians[POSITION_TARGET]
            print(f"| {side} | {method} | {logits * 1e3:.1f} ms | {located * 1e3:.1f} ms | "
                  f"{located / logits:.2f} |")

    steps = {"cubed": {}, "detail": {"detail": True},
             "detail and mirror": {"detail": True, "mirror": True}}

    print("\n| side | " + " | ".join(steps) + " | ratios to cubed |")
    print("| --- | --- | --- | --- | --- |")
    for side, x in images.items():
        medians = alternating_medians(
            {name: (_nothing, cubed_map(x, options)) for name, options in steps.items()},
            args.repeats)
        base = medians["cubed"]
        print(f"| {side} | " + " | ".join(f"{medians[name] * 1e3:.1f} ms" for name in steps)
              + " | " + " / ".join(f"{medians[name] / base:.2f}" for name in steps) + " |")

    print("\n| side | map | BLAS threads as NumPy's | one BLAS thread (shipped) | ratio |")
    print("| --- | --- | --- | --- | --- |")
    one_thread = position_head.one_blas_thread
    limits = {"default": contextlib.nullcontext, "one": one_thread}

    def use(limit):
        return lambda: setattr(position_head, "one_blas_thread", limit)

    try:
        for side, x in images.items():
            for name, options in steps.items():
                medians = alternating_medians(
                    {key: (use(limit), cubed_map(x, options)) for key, limit in limits.items()},
                    args.repeats)
                default, one = medians["default"], medians["one"]
                print(f"| {side} | {name} | {default * 1e3:.1f} ms | {one * 1e3:.1f} ms | "
                      f"{one / default:.2f} |")
    finally:
        position_head.one_blas_thread = one_thread
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
