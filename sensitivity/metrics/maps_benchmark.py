"""``python -m sensitivity benchmark-maps``: do the maps find the object, and are they faithful?

Three parts, each against the model-free controls (random, center, edge):

1. **Localisation** on photo-like scenes (:func:`sensitivity.metrics.scenes.scene_set`: 1-3 CIFAR-10
   objects of 24-64 px, feathered, on fractal textures or photo crops, sensor noise, JPEG):
   ``--validation-n`` validation scenes (objects from the validation part of the training
   split) choose the box thresholds, ``--n`` test scenes (objects from the test split, other
   seeds) give the reported numbers (:mod:`sensitivity.metrics.localisation_benchmark`), overall and
   by object size. :func:`sensitivity.imaging.objects.find_objects` is measured as it is shipped.
2. **Faithfulness**: deletion and insertion curves of the true class's probability on
   ``--faithfulness-n`` native 32x32 test images, with each fill of ``--fills`` (``road`` is
   ROAD's noisy linear imputation, which does not leak the removed pixels' shape), reported
   as the mean AUC and its paired difference from the random control's.
3. **Real photographs** (``--photos-dir``): the class-masked map's maximum on each object of
   :data:`sensitivity.metrics.scenes.PHOTO_OBJECTS`, and the IoU of the first ``find_objects`` box.

Writes CSV files, ``report.html`` (Plotly bar charts with standard errors) and ``report.md``
to ``--out``, and prints the Markdown tables.
"""

from __future__ import annotations

import csv
import html
import math
import os
from pathlib import Path

import numpy as np

from sensitivity.cli.args import method_limit
from sensitivity.metrics.localisation_benchmark import CONTROLS, MEASURES, MethodSpec
from sensitivity.metrics.scenes import PHOTO_OBJECTS

DEFAULT_METHODS = (
    "gradient", "gradient_x_input", "guided_backprop", "smoothgrad:samples=16",
    "integrated_gradients:steps=16", "gradcam", "gradcam:scales=0.75/1/1.25",
    "cam:sign=positive", "layercam", "scorecam:max_channels=48", "rise:masks=200",
)
"""The methods measured by default (the sampling methods with fewer samples than the page's
default, to fit a 2-core machine); the controls always run. CAM is measured by its positive
part (``sign=positive``), the evidence for the class."""

DEFAULT_LIMITS = ("smoothgrad=100", "integrated_gradients=100", "scorecam=100", "rise=50")
"""Expensive methods run on the first N test and validation scenes only."""

FAITHFULNESS = ("deletion_auc", "insertion_auc")

SHARED_DATASETS = Path(__file__).resolve().parents[3] / "shared" / "datasets"


def scene_limits(specs: list[MethodSpec], limits: list[tuple[str, int]]) -> dict[str, int]:
    """``{spec label: N}`` for the specs whose method name (or label) has a limit."""
    table = dict(limits)
    out = {}
    for spec in specs:
        for key in (spec.label, spec.name):
            if key in table:
                out[spec.label] = table[key]
                break
    return out


def localisation(model, specs: list[MethodSpec], args, progress=print) -> dict:
    """Validation and test rows of every spec and control, plus the shipped find_objects."""
    from sensitivity.metrics.localisation_benchmark import measure
    from sensitivity.metrics.scenes import scene_set

    limits = scene_limits(specs, args.limit or [method_limit(t) for t in DEFAULT_LIMITS])
    everything = [*specs, *(MethodSpec(c) for c in CONTROLS)]
    rows = {}
    for split, n in (("validation", args.validation_n), ("test", args.n)):
        scenes = scene_set(split, n, data_dir=args.data_dir, photos_dir=args.photos_dir,
                           seed=args.seed)
        rows[split] = []
        for spec in everything:
            progress(f"{split}: {spec.label}")
            part = scenes[: limits.get(spec.label, n)]
            rows[split] += [{"split": split, **row}
                            for row in measure(model, part, [spec], side=args.side)]
        if split == "test":
            progress("test: find_objects")
            rows["find_objects"] = find_objects_rows(model, scenes)
    return rows


def find_objects_rows(model, scenes) -> list[dict]:
    """Per object of the test scenes: the IoU of the first box of ``find_objects`` for the
    object's class, CorLoc (IoU >= 0.5) and the share of IoU levels 0.3, 0.5, 0.7 met."""
    from sensitivity.imaging.discovery import iou
    from sensitivity.imaging.objects import find_objects, rule_for
    from sensitivity.metrics.localisation import IOU_THRESHOLDS

    rule = rule_for(model)
    rows = []
    for i, scene in enumerate(scenes):
        for k, (box, label) in enumerate(zip(scene.boxes, scene.labels, strict=True)):
            found = find_objects(model, scene.image, classes=[label], max_objects=1, rule=rule)
            overlap = iou(found[0].box, box) if found else 0.0
            rows.append({"scene": i, "object": k, "label": label, "iou": overlap,
                         "corloc": float(overlap >= 0.5),
                         "boxacc": float(np.mean([overlap >= t for t in IOU_THRESHOLDS])),
                         "rule": repr(rule)})
    return rows


def faithfulness(model, specs: list[MethodSpec], args, progress=print) -> list[dict]:
    """Per native test image, method and fill: deletion and insertion AUC of the true class."""
    from sensitivity.metrics.localisation_benchmark import object_maps
    from sensitivity.metrics.perturbation import perturbation_curves
    from sensitivity.model.data import load_split

    if args.faithfulness_n <= 0:
        return []
    images, labels = load_split(args.data_dir, "test", limit=args.faithfulness_n)
    fills = [f.strip() for f in args.fills.split(",") if f.strip()]
    rows = []
    for spec in [*specs, *(MethodSpec(c) for c in CONTROLS)]:
        progress(f"faithfulness: {spec.label}")
        maps = np.concatenate([
            object_maps(model, image, [int(label)], spec, side=None, seed=i)
            for i, (image, label) in enumerate(zip(images, labels, strict=True))
        ])
        for fill in fills:
            aucs = {
                kind: perturbation_curves(model, images, maps, labels, kind=kind,
                                          steps=args.steps, fill=fill)[2]
                for kind in ("deletion", "insertion")
            }
            rows += [{"method": spec.label, "fill": fill, "image": i,
                      "deletion_auc": float(aucs["deletion"][i]),
                      "insertion_auc": float(aucs["insertion"][i])} for i in range(len(images))]
    return rows


def summarise_faithfulness(rows: list[dict]) -> list[dict]:
    """Per method and fill: mean AUCs with standard errors, and the paired difference from
    the random control on the same images (negative deletion / positive insertion = better)."""
    from sensitivity.metrics.localisation_benchmark import mean_and_error

    out = []
    for fill in dict.fromkeys(r["fill"] for r in rows):
        random = {r["image"]: r for r in rows if r["fill"] == fill and r["method"] == "random"}
        for method in dict.fromkeys(r["method"] for r in rows):
            part = [r for r in rows if r["fill"] == fill and r["method"] == method]
            entry = {"method": method, "fill": fill}
            for name in FAITHFULNESS:
                entry[name], entry[f"{name}_se"], _ = mean_and_error([r[name] for r in part])
                diffs = [r[name] - random[r["image"]][name] for r in part if r["image"] in random]
                entry[f"{name}_vs_random"], entry[f"{name}_vs_random_se"], _ = mean_and_error(diffs)
            out.append(entry)
    return out


def photo_check(model, photos_dir: str | os.PathLike, specs: list[MethodSpec],
                side: int) -> list[dict]:
    """Class-masked maps on the photographs of :data:`PHOTO_OBJECTS`, each resized whole so
    its longer side is ``side``: ``pointing`` (the map's maximum in the object's box),
    ``share`` (the map's mass in its box over that in both objects' boxes; 0.5 = no
    preference), and for the ``find_objects`` row the IoU of its first box."""
    from sensitivity.imaging.discovery import Box, iou
    from sensitivity.imaging.images import load_image
    from sensitivity.imaging.objects import find_objects
    from sensitivity.metrics.localisation import mass_in_box, pointing_game
    from sensitivity.metrics.localisation_benchmark import weighted_maps

    rows = []
    for photo, objects in PHOTO_OBJECTS.items():
        path = Path(photos_dir) / photo
        if not path.is_file():
            continue
        image = load_image(path)
        boxes = {name: Box(*box) for name, (_, box) in objects.items()}
        for name, (classes, _) in objects.items():
            other = next(b for n, b in boxes.items() if n != name)
            for spec in specs:
                weights = np.zeros(int(model.outputs[0].shape[-1]), np.float32)
                weights[list(classes)] = 1.0
                saliency_map = weighted_maps(model, image, weights[None], spec, side)[0]
                own, rival = mass_in_box(saliency_map, boxes[name]), mass_in_box(saliency_map,
                                                                                  other)
                rows.append({"photo": photo, "object": name, "method": spec.label,
                             "pointing": float(pointing_game(saliency_map, boxes[name])),
                             "share": own / (own + rival) if own + rival > 0 else 0.5,
                             "iou": math.nan})
            found = find_objects(model, image, classes=list(classes), max_objects=1)
            rows.append({"photo": photo, "object": name, "method": "find_objects",
                         "pointing": math.nan, "share": math.nan,
                         "iou": iou(found[0].box, boxes[name]) if found else 0.0})
    return rows


def write_csv(rows: list[dict], path: str | os.PathLike) -> None:
    """One line per row (array-valued fields left out), columns in the first row's order."""
    if not rows:
        return
    fields = [k for k, v in rows[0].items() if not isinstance(v, np.ndarray)]
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def _cell(mean: float, error: float) -> str:
    return "-" if math.isnan(mean) else f"{mean:.3f} ({error:.3f})"


def format_faithfulness(summary: list[dict]) -> str:
    """The faithfulness summary as a Markdown table."""
    lines = ["| method | fill | deletion AUC (lower better) | minus random | "
             "insertion AUC (higher better) | minus random |", "|" + " --- |" * 6]
    for e in summary:
        lines.append(f"| {e['method']} | {e['fill']} | "
                     + " | ".join(_cell(e[f"{name}{suffix}"], e[f"{name}{suffix}_se"])
                                  for name in FAITHFULNESS for suffix in ("", "_vs_random"))
                     + " |")
    return "\n".join(lines)


def format_find_objects(rows: list[dict]) -> str:
    """The shipped find_objects on the test scenes as one Markdown table row."""
    from sensitivity.metrics.localisation_benchmark import mean_and_error

    corloc = mean_and_error([r["corloc"] for r in rows])
    boxacc = mean_and_error([r["boxacc"] for r in rows])
    return ("| find_objects (shipped rule) | CorLoc | box accuracy at 0.3/0.5/0.7 | n |\n"
            "| --- | --- | --- | --- |\n"
            f"| {rows[0]['rule'] if rows else ''} | {_cell(*corloc[:2])} | "
            f"{_cell(*boxacc[:2])} | {corloc[2]} |")


def format_photos(rows: list[dict]) -> str:
    """Real-photo rows as a Markdown table."""
    lines = ["| photo | object (class mask) | method | pointing | share of mass | box IoU |",
             "| --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        pointing = "-" if math.isnan(r["pointing"]) else ("yes" if r["pointing"] else "no")
        share = "-" if math.isnan(r["share"]) else f"{r['share']:.2f}"
        box = "-" if math.isnan(r["iou"]) else f"{r['iou']:.2f}"
        lines.append(f"| {r['photo']} | {r['object']} | {r['method']} | {pointing} | {share} | "
                     f"{box} |")
    return "\n".join(lines)


def report_html(summary: list[dict], faithfulness_summary: list[dict], markdown: str) -> str:
    """A self-contained HTML page: one bar chart per localisation measure (error bars:
    standard errors; grey: controls), the deletion and insertion AUCs, and the tables."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    charts = [(f"{m} (test scenes)", summary, m) for m in MEASURES]
    charts += [(f"{n} ({fill} fill)", [e for e in faithfulness_summary if e["fill"] == fill], n)
               for fill in dict.fromkeys(e["fill"] for e in faithfulness_summary)
               for n in FAITHFULNESS]
    columns = 3
    rows = math.ceil(len(charts) / columns)
    figure = make_subplots(rows=rows, cols=columns, subplot_titles=[c[0] for c in charts])
    for index, (_, entries, measure) in enumerate(charts):
        methods = [e["method"] for e in entries]
        figure.add_trace(
            go.Bar(x=methods, y=[e[measure] for e in entries],
                   error_y=dict(type="data", array=[e[f"{measure}_se"] for e in entries]),
                   marker_color=["#9DB4C8" if m in CONTROLS else "#0072B2" for m in methods],
                   showlegend=False, hovertemplate="%{x}: %{y:.3f}<extra></extra>"),
            row=index // columns + 1, col=index % columns + 1,
        )
    figure.update_layout(height=380 * rows, width=1200, margin=dict(t=60, b=40))
    return (
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'>"
        "<title>Saliency map benchmark</title></head><body>\n"
        "<h1>Saliency map benchmark</h1>\n"
        "<p>Grey bars: controls that ignore the model (random, center, edge).</p>\n"
        + figure.to_html(full_html=False, include_plotlyjs=True)
        + f"\n<pre>{html.escape(markdown)}</pre>\n</body></html>\n"
    )


def run(args) -> int:
    """Run the benchmark for parsed ``args`` (see
    :func:`sensitivity.cli.parsers.add_benchmark_maps_parser`); returns 0."""
    from sensitivity.imaging.objects import rule_for
    from sensitivity.metrics.localisation_benchmark import SIZE_BINS, format_summary, summarise
    from sensitivity.model.io import load_model

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a folder")
    model = load_model(args.model)
    if args.side is None:
        args.side = rule_for(model).side
    specs = list({s.label: s for s in args.methods if s.name not in CONTROLS}.values())
    rows = localisation(model, specs, args, progress=lambda text: print(text, flush=True))
    summary = summarise(rows["test"], rows["validation"])
    by_size = summarise(rows["test"], rows["validation"], bins=SIZE_BINS)
    faith = faithfulness(model, specs, args, progress=lambda text: print(text, flush=True))
    faith_summary = summarise_faithfulness(faith)
    photos = photo_check(model, args.photos_dir, specs, args.side)
    sections = [
        f"Localisation: {args.n} test scenes ({args.validation_n} validation scenes chose the "
        f"thresholds), analysis side {args.side}, class mask = the object's class.\n\n"
        + format_summary(summary),
        "By object size (box area / canvas area):\n\n" + format_summary(by_size),
        format_find_objects(rows["find_objects"]),
    ]
    if faith:
        sections.append(f"Faithfulness on {args.faithfulness_n} native test images, "
                        f"{args.steps} steps:\n\n" + format_faithfulness(faith_summary))
    if photos:
        sections.append("Real photographs:\n\n" + format_photos(photos))
    markdown = "\n\n".join(sections) + "\n"
    out.mkdir(parents=True, exist_ok=True)
    write_csv(rows["validation"] + rows["test"], out / "localisation_rows.csv")
    write_csv(summary, out / "localisation_summary.csv")
    write_csv(by_size, out / "localisation_by_size.csv")
    write_csv(rows["find_objects"], out / "find_objects.csv")
    write_csv(faith, out / "faithfulness.csv")
    write_csv(photos, out / "photos.csv")
    (out / "report.md").write_text(markdown, encoding="utf-8")
    (out / "report.html").write_text(report_html(summary, faith_summary, markdown),
                                     encoding="utf-8")
    print(markdown)
    print(f"wrote {out}/report.html, report.md and the CSV files")
    return 0
