"""``python -m sensitivity benchmark-maps``: objective measures of saliency methods on scenes.

For each of ``--n`` seeds the command takes one test image at the network's native 32x32 and
builds two scenes from the test split (:mod:`sensitivity.scenes`): one with a single object,
one with two objects of different classes. Every method in ``--methods`` and the controls
(:data:`CONTROLS`) gives a map of the test image and of the single-object scene for the true
class, and one map per object of the two-object scene. Measured per seed
(:mod:`sensitivity.metrics`):

- ``deletion_auc`` (lower is better) and ``insertion_auc`` (higher is better) of the true
  class's probability on the native test image, ``--steps`` steps, ``--fill`` fill (on the
  scenes the network is far less sure of the class from the start, so the curves barely
  move and measure little);
- ``pointing``: the map's maximum lies in the object's box (1 or 0);
- ``corloc``: the strongest box of :func:`sensitivity.discovery.discover_objects` has IoU >=
  0.5 with the object's box (the ``center`` control uses a centred box of the object's size);
- ``discrimination``: share (0, 0.5 or 1) of the two objects whose class's map puts more
  mass in its own box than in the other's.

Writes ``maps_benchmark.csv`` (one row per method and scene), ``maps_benchmark_summary.csv``
(means) and ``maps_benchmark.html`` (self-contained Plotly report) to ``--out``, and prints
the table of means (method by measure).
"""

from __future__ import annotations

import argparse
import csv
import html
import os
from pathlib import Path

import numpy as np

from sensitivity.cli_args import positive_int
from sensitivity.scenes import PHOTO_OBJECTS

CONTROLS = ("random", "edge", "center")
"""Maps that ignore the model: uniform noise, Sobel edges of the image, a centred bump."""

MEASURES = ("deletion_auc", "insertion_auc", "pointing", "corloc", "discrimination")
"""Columns of the table; deletion AUC is better when low, the others when high."""

BETTER = {"deletion_auc": "lower", **{m: "higher" for m in MEASURES[1:]}}

DEFAULT_METHODS = "gradient,smoothgrad,integrated_gradients,gradcam"
OBJECT_SIZE = 32


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``benchmark-maps`` subcommand and its arguments on ``subparsers``."""
    from sensitivity.metrics import FILLS

    parser = subparsers.add_parser(
        "benchmark-maps",
        help="deletion/insertion AUC, pointing game, CorLoc, class discrimination of methods",
        description=(
            "Build scenes (CIFAR-10 test images pasted on backgrounds), compute saliency maps "
            "with each method and with model-free controls (random, edge, center), and measure "
            "them. Writes a CSV and an HTML report, and prints a table."
        ),
    )
    parser.add_argument("--data-dir", required=True, help="class folders, or a folder with test/")
    parser.add_argument("--n", type=positive_int, default=20, help="number of scene seeds")
    parser.add_argument(
        "--methods",
        default=DEFAULT_METHODS,
        help=f"comma-separated saliency methods (default {DEFAULT_METHODS})",
    )
    parser.add_argument("--out", default="maps-benchmark", help="folder for the CSV and HTML")
    parser.add_argument("--model", default=None, help="a .keras file with its card")
    parser.add_argument("--seed", type=int, default=0, help="seed of the scenes")
    parser.add_argument("--steps", type=positive_int, default=16, help="deletion/insertion steps")
    parser.add_argument("--fill", default="blur", choices=FILLS, help="removed pixels become")
    parser.add_argument("--size", type=positive_int, default=96, help="scene side in pixels")
    parser.add_argument(
        "--photos-dir",
        default=str(Path(__file__).resolve().parent.parent.parent / "shared/datasets/photos"),
        help="photographs of PHOTO_OBJECTS for the real-photo check (skipped if missing)",
    )
    return parser


def parse_methods(text: str) -> list[str]:
    """Method names from ``"a,b,c"``, validated; controls named there are skipped (always run)."""
    from sensitivity.saliency import METHODS

    names = [name.strip() for name in str(text).split(",") if name.strip()]
    if not names:
        raise ValueError("--methods is empty; give e.g. --methods gradient,gradcam")
    unknown = [name for name in names if name not in METHODS and name not in CONTROLS]
    if unknown:
        raise ValueError(
            f"unknown method {unknown[0]!r}; choose from {', '.join(METHODS)} "
            f"(the controls {', '.join(CONTROLS)} always run)"
        )
    return list(dict.fromkeys(n for n in names if n not in CONTROLS))


def _maps(method: str, model, images: np.ndarray, classes: np.ndarray, seeds) -> np.ndarray:
    from sensitivity.metrics import center_map, edge_map, random_map, saliency_function

    if method == "random":
        return np.stack(
            [random_map(im.shape[:2], seed=s) for im, s in zip(images, seeds, strict=True)]
        )
    if method == "edge":
        return np.stack([edge_map(im) for im in images])
    if method == "center":
        return np.stack([center_map(im.shape[:2]) for im in images])
    return saliency_function(method)(model, images, classes)


def benchmark(
    model,
    images: np.ndarray,
    labels: np.ndarray,
    methods: list[str],
    *,
    n: int = 20,
    seed: int = 0,
    steps: int = 16,
    fill: str = "blur",
    size: int = 96,
    progress=None,
) -> list[dict]:
    """Rows ``{method, scene, label, background, test_image, <measures>}`` per method and control.

    ``test_image`` is the index in ``images`` of the native image the deletion and insertion
    curves were measured on.

    ``images`` ``(M, 32, 32, 3)`` uint8 and ``labels`` ``(M,)``: the pool objects are drawn
    from. ``progress(text)`` is called before each method, when given.
    """
    from sensitivity.discovery import discover_objects
    from sensitivity.metrics import (
        center_box,
        corloc,
        discriminates,
        perturbation_curves,
        pointing_game,
    )
    from sensitivity.scenes import scene_from_pool

    seeds = [seed * 100_003 + i for i in range(n)]
    singles = [scene_from_pool(images, labels, num_objects=1, size=size, seed=s) for s in seeds]
    pairs = [scene_from_pool(images, labels, num_objects=2, size=size, seed=s) for s in seeds]
    single_images = np.stack([s.image for s in singles]).astype(np.float32)
    single_classes = np.array([s.labels[0] for s in singles])
    pair_images = np.repeat(np.stack([p.image for p in pairs]).astype(np.float32), 2, axis=0)
    pair_classes = np.array([c for p in pairs for c in p.labels])
    picked = np.random.default_rng([seed, 2]).choice(len(images), size=n, replace=len(images) < n)
    native_images = images[picked].astype(np.float32)
    native_classes = labels[picked]
    rows = []
    for method in [*methods, *CONTROLS]:
        if progress is not None:
            progress(method)
        maps = _maps(method, model, single_images, single_classes, seeds)
        pair_maps = _maps(method, model, pair_images, pair_classes, np.repeat(seeds, 2))
        native_maps = _maps(method, model, native_images, native_classes, seeds)
        curves = {
            kind: perturbation_curves(
                model, native_images, native_maps, native_classes, kind=kind, steps=steps,
                fill=fill,
            )[2]
            for kind in ("deletion", "insertion")
        }
        for i, (scene, pair) in enumerate(zip(singles, pairs, strict=True)):
            truth = scene.boxes[0]
            if method == "center":
                boxes = [center_box(maps[i].shape, (truth.height, truth.width))]
            else:
                boxes = discover_objects(maps[i])
            a, b = pair.boxes
            rows.append(
                {
                    "method": method,
                    "scene": i,
                    "label": int(scene.labels[0]),
                    "background": scene.background,
                    "test_image": int(picked[i]),
                    "deletion_auc": float(curves["deletion"][i]),
                    "insertion_auc": float(curves["insertion"][i]),
                    "pointing": float(pointing_game(maps[i], truth)),
                    "corloc": float(corloc(boxes, truth)),
                    "discrimination": (
                        float(discriminates(pair_maps[2 * i], a, b))
                        + float(discriminates(pair_maps[2 * i + 1], b, a))
                    )
                    / 2,
                }
            )
    return rows


def summarise(rows: list[dict]) -> dict[str, dict[str, tuple[float, float]]]:
    """``{method: {measure: (mean, standard error)}}`` in the order methods first appear."""
    summary: dict[str, dict[str, tuple[float, float]]] = {}
    for method in dict.fromkeys(row["method"] for row in rows):
        values = {m: np.array([r[m] for r in rows if r["method"] == method]) for m in MEASURES}
        summary[method] = {
            m: (
                float(v.mean()),
                float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else 0.0,
            )
            for m, v in values.items()
        }
    return summary


def format_table(summary: dict[str, dict[str, tuple[float, float]]]) -> str:
    """The summary as a fixed-width text table (means; standard errors in brackets)."""
    width = max([len("method")] + [len(m) for m in summary]) + 2
    header = "method".ljust(width) + "".join(m.rjust(18) for m in MEASURES)
    better = " " * width + "".join(f"({BETTER[m]} better)".rjust(18) for m in MEASURES)
    lines = [header, better, "-" * len(header)]
    for method, values in summary.items():
        cells = "".join(f"{values[m][0]:.3f} ({values[m][1]:.3f})".rjust(18) for m in MEASURES)
        lines.append(method.ljust(width) + cells)
    return "\n".join(lines)


def write_csv(rows: list[dict], path: str | os.PathLike) -> None:
    """One line per row, columns in the order of the first row's keys."""
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def report_html(summary: dict[str, dict[str, tuple[float, float]]], notes: str = "") -> str:
    """A self-contained HTML page: one bar chart per measure (error bars: standard error)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    methods = list(summary)
    colours = ["#9DB4C8" if m in CONTROLS else "#0072B2" for m in methods]
    figure = make_subplots(
        rows=1,
        cols=len(MEASURES),
        subplot_titles=[f"{m} ({BETTER[m]} better)" for m in MEASURES],
    )
    for col, measure in enumerate(MEASURES, start=1):
        figure.add_trace(
            go.Bar(
                x=methods,
                y=[summary[m][measure][0] for m in methods],
                error_y=dict(type="data", array=[summary[m][measure][1] for m in methods]),
                marker_color=colours,
                name=measure,
                showlegend=False,
                hovertemplate="%{x}: %{y:.3f}<extra></extra>",
            ),
            row=1,
            col=col,
        )
        figure.update_yaxes(range=[0, 1.05], row=1, col=col)
    figure.update_layout(height=420, width=300 * len(MEASURES), margin=dict(t=60, b=120))
    table = format_table(summary)
    return (
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'>"
        "<title>Saliency map benchmark</title></head><body>\n"
        "<h1>Saliency map benchmark</h1>\n"
        f"<p>{html.escape(notes)}</p>\n"
        "<p>Grey bars: controls that ignore the model (random, edge, center).</p>\n"
        + figure.to_html(full_html=False, include_plotlyjs=True)
        + f"\n<pre>{html.escape(table)}</pre>\n</body></html>\n"
    )


PHOTO_WIDTH = 160
"""The whole photograph is resized to this width (aspect kept) for the real-photo check."""


def photo_check(model, photos_dir: str | os.PathLike, methods: list[str]) -> list[dict]:
    """Class-masked maps on real photographs: does the map point at the masked object?

    Each photograph of :data:`PHOTO_OBJECTS` is resized whole to :data:`PHOTO_WIDTH` pixels
    wide (the network is fully convolutional). For each object, the class mask is set to its
    classes; ``pointing`` is whether the map's maximum lies in its box, ``share`` the map's
    mass in its box over the mass in both objects' boxes (0.5 = no preference).
    """
    from sensitivity.images import as_rgb_array, load_image, resize
    from sensitivity.metrics import mass_in_box, pointing_game
    from sensitivity.saliency import saliency

    rows = []
    for photo, objects in PHOTO_OBJECTS.items():
        path = Path(photos_dir) / photo
        if not path.is_file():
            continue
        image = load_image(path)
        scale = PHOTO_WIDTH / image.shape[1]
        height = round(image.shape[0] * scale)
        x = resize(as_rgb_array(image), height, PHOTO_WIDTH)
        boxes = {
            name: tuple(int(round(v * scale)) for v in box) for name, (_, box) in objects.items()
        }
        for method in methods:
            if method in CONTROLS:
                continue
            for name, (classes, _) in objects.items():
                saliency_map = saliency(model, x, method=method, class_mask=list(classes))[0]
                other = next(b for n, b in boxes.items() if n != name)
                own = mass_in_box(saliency_map, boxes[name])
                rival = mass_in_box(saliency_map, other)
                rows.append(
                    {
                        "photo": photo,
                        "object": name,
                        "method": method,
                        "pointing": float(pointing_game(saliency_map, boxes[name])),
                        "share": own / (own + rival) if own + rival > 0 else 0.5,
                    }
                )
    return rows


def format_photo_table(rows: list[dict]) -> str:
    """Real-photo rows as a Markdown table."""
    lines = [
        "| photo | object (class mask) | method | pointing | share of mass |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        lines.append(
            f"| {row['photo']} | {row['object']} | {row['method']} | "
            f"{'yes' if row['pointing'] else 'no'} | {row['share']:.2f} |"
        )
    return "\n".join(lines)


def run(args) -> int:
    """Run the benchmark for parsed ``args`` (see :func:`add_parser`); returns 0."""
    from sensitivity.data import load_split
    from sensitivity.model_io import load_model

    methods = parse_methods(args.methods)
    if args.size < OBJECT_SIZE * 2 + 2:
        raise ValueError(
            f"--size must be at least {2 * OBJECT_SIZE + 2} to hold two 32x32 objects apart"
        )
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a folder")
    images, labels = load_split(args.data_dir, "test", limit=max(50, 4 * args.n))
    model = load_model(args.model)
    rows = benchmark(
        model,
        images,
        labels,
        methods,
        n=args.n,
        seed=args.seed,
        steps=args.steps,
        fill=args.fill,
        size=args.size,
        progress=lambda method: print(f"measuring {method}...", flush=True),
    )
    summary = summarise(rows)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(rows, out / "maps_benchmark.csv")
    write_csv(
        [
            {
                "method": method,
                **{f"{m}_mean": v[m][0] for m in MEASURES},
                **{f"{m}_sem": v[m][1] for m in MEASURES},
            }
            for method, v in summary.items()
        ],
        out / "maps_benchmark_summary.csv",
    )
    notes = (
        f"{args.n} scene seeds (seed {args.seed}), {args.size}x{args.size} canvases, "
        f"{args.steps} deletion/insertion steps, fill '{args.fill}', model "
        f"{args.model or 'default'}."
    )
    (out / "maps_benchmark.html").write_text(report_html(summary, notes), encoding="utf-8")
    print(format_table(summary))
    photos_dir = Path(args.photos_dir)
    if photos_dir.is_dir():
        photo_rows = photo_check(model, photos_dir, methods)
        write_csv(photo_rows, out / "maps_benchmark_photos.csv")
        print()
        print(format_photo_table(photo_rows))
    print(f"wrote {out / 'maps_benchmark.csv'}, {out / 'maps_benchmark.html'}")
    return 0
