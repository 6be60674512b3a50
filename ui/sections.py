"""The page's sections for one or more images: the inputs (uploads, camera, gallery, scene
builder), the prediction, the maps with their downloads, the faithfulness panel and the
side-by-side comparison. Layout only: the numbers come from :mod:`ui.compute`."""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
import streamlit as st

from sensitivity.engine.choices import OUTPUT_TARGETS
from sensitivity.engine.saliency import to_map
from sensitivity.imaging import gallery
from sensitivity.imaging.discovery import Box, boxes_to_map
from sensitivity.imaging.images import center_square_box
from sensitivity.imaging.postprocess import strongest_pixels
from sensitivity.metrics.sanity import RANDOMIZATION_THRESHOLD, spearman
from sensitivity.metrics.scenes import make_scene
from sensitivity.model.labels import CLASS_NAMES
from sensitivity.render import export, figures, pictures
from sensitivity.render.report import (
    completeness_note,
    flat_map_note,
    method_note,
    objects_note,
    out_of_distribution_note,
    out_of_distribution_notice,
    probability_bars_html,
    randomisation_note,
    verdict,
)
from sensitivity.trust.ood import Assessment
from sensitivity.web.settings import ViewSettings
from ui.compute import (
    class_names,
    compute_attribution,
    compute_map,
    counterfactual,
    faithfulness,
    network_view,
    novelty,
    photo_objects,
    prediction,
    samples,
)
from ui.controls import chosen_model_path, model_files, size_choices


def collect_images(uploads: list) -> list[tuple[str, np.ndarray | bytes]]:
    """(name, raw bytes or uint8 array) of every image brought to the page."""
    items: list[tuple[str, np.ndarray | bytes]] = []
    items += [(u.name, u.getvalue()) for u in uploads or []]
    with st.expander("Camera and sample gallery"):
        # Each behind a toggle: their widgets cost every run (and the browser every redraw)
        # for the many people who only upload.
        if st.toggle("Use the camera"):
            shot = st.camera_input("Take a photo")
            if shot is not None:
                items.append(("camera photo", shot.getvalue()))
        if not st.toggle("Use the sample gallery and the scene builder"):
            return items
        source = gallery.local_source()
        if source is None:
            st.caption("No local copy of CIFAR-10 found (set SENSITIVITY_SAMPLES_DIR).")
            if st.button("Fetch CIFAR-10 with keras.datasets (downloads 170 MB)"):
                with st.spinner("Downloading CIFAR-10..."):
                    gallery.fetch_keras_cifar10()
                st.rerun()
        else:
            pool = samples(source)
            picked = st.multiselect(
                "Sample CIFAR-10 test images", range(len(pool)),
                format_func=lambda i: f"{CLASS_NAMES[pool[i].label]} ({pool[i].name})")
            items += [(f"sample: {CLASS_NAMES[pool[i].label]}", pool[i].image) for i in picked]
            scene_builder(pool, items)
    return items


def scene_builder(pool: list[gallery.Sample], items: list) -> None:
    """Two sample images pasted on one 96x96 canvas, added to the images on the page."""
    st.markdown("**Scene builder**: two objects on one 96x96 canvas, to watch a class mask "
                "separate them (set the analysis size to 96 to keep every pixel).")
    left, right, seed_col = st.columns([2, 2, 1])
    label = lambda i: f"{CLASS_NAMES[pool[i].label]} ({pool[i].name})"  # noqa: E731
    first = left.selectbox("First object", [None, *range(len(pool))], key="scene_a",
                           format_func=lambda i: "-" if i is None else label(i))
    second = right.selectbox("Second object", [None, *range(len(pool))], key="scene_b",
                             format_func=lambda i: "-" if i is None else label(i))
    seed = seed_col.number_input("Layout", 0, 999, 0, key="scene_seed")
    if first is not None and second is not None:
        scene = make_scene([pool[first].image, pool[second].image],
                           [pool[first].label, pool[second].label], size=96, seed=int(seed))
        names = " + ".join(CLASS_NAMES[c] for c in scene.labels)
        items.append((f"scene: {names}", scene.image))


def show_prediction(probabilities: np.ndarray, assessment: Assessment | None) -> None:
    """The sentence (softened for a picture the detector flags; its score on hover) and the
    probability table."""
    flagged = assessment is not None and assessment.flagged
    st.markdown(f"**{verdict(probabilities, class_names(), flagged)}**",
                help=None if assessment is None else
                out_of_distribution_note(assessment.score, assessment.threshold))
    # All ten classes, sorted, with their bars and percentages, in one plain HTML table built
    # only from the probabilities and the class names. A Plotly bar chart plus a separate table
    # cost the browser about half a second per upload (benchmarks/README.md).
    probability_table(probabilities, class_names())


def probability_table(probabilities: np.ndarray, names: tuple[str, ...]) -> None:
    """The classes' probabilities, sorted, with bars: one plain HTML table built only from
    the numbers and the model's class names."""
    st.html(probability_bars_html(probabilities, names))


def target_class(probabilities: np.ndarray, settings: ViewSettings) -> int:
    """The class a map explains: the first of the mask, else the predicted one."""
    return settings.classes[0] if settings.classes else int(np.argmax(probabilities))


def show_maps(name: str, x: np.ndarray, probabilities: np.ndarray, settings: ViewSettings,
              boxes: list[Box]) -> np.ndarray:
    """Heatmap, overlay, top-k mask (``boxes`` outlined on each, in the map's pixels) and
    downloads; returns the map."""
    result = compute_attribution(x, settings)
    saliency_map = to_map(result, settings.sign, settings.reduce_channels)[0]
    signed = settings.sign == "signed"
    k = min(settings.k, saliency_map.size)
    mask = strongest_pixels(saliency_map, k, settings.sign)
    names = class_names()
    target = ", ".join(names[i] for i in settings.classes) if settings.classes else (
        f"predicted: {names[int(np.argmax(probabilities))]}")
    if settings.layer not in OUTPUT_TARGETS:
        target = f"{settings.layer_reduction} of {settings.layer}"
    st.caption(f"{settings.method} of {settings.layer} ({target}), sign {settings.sign}")
    sizes = size_choices()
    caveat = method_note(settings.method, settings.size, sizes.native, settings.layer)
    if caveat:
        st.warning(caveat)
    flat = flat_map_note(saliency_map, sizes.rule_side if sizes.rule_side in sizes.sizes else None)
    if flat:
        st.warning(flat)
    if result.baseline_scores is not None:
        st.caption(completeness_note(float(result.scores[0]), float(result.baseline_scores[0]),
                                     float(result.values[0].sum(dtype=np.float64))))
    heat, over, top = st.columns(3)
    common = dict(signed=signed, colour_scale=settings.colour_scale)
    heat.plotly_chart(figures.saliency_heatmap(saliency_map, title="sensitivity", boxes=boxes,
                                               **common),
                      width="stretch", key=f"heat-{name}")
    # The overlay and the mask are pictures: the heatmap beside them has the hover.
    over.image(pictures.data_url(pictures.overlay(x, saliency_map, opacity=settings.opacity,
                                                  boxes=boxes, **common)),
               caption=f"overlay (opacity {settings.opacity:.2f})")
    top.image(pictures.data_url(pictures.mask(mask, boxes=boxes)), caption=f"top {k} pixels")
    stem = "".join(c if c.isalnum() else "_" for c in name)[:40] or "image"
    # Each file is made when its button is clicked (not on every run, and the browser fetches
    # nothing meanwhile); a click does not rerun the page.
    settings_dict = dataclasses.asdict(settings)
    downloads = [
        ("Heatmap (PNG)", lambda: export.heatmap_png(saliency_map, **common), "heatmap.png",
         "image/png"),
        ("Map (.npy)", lambda: export.map_npy(saliency_map), "map.npy",
         "application/octet-stream"),
        ("Probabilities (CSV)", lambda: export.probabilities_csv(probabilities, names),
         "probabilities.csv", "text/csv"),
        ("Settings (JSON)", lambda: export.settings_json(settings_dict), "settings.json",
         "application/json"),
    ]
    for column, (label, make, suffix, mime) in zip(st.columns(4), downloads, strict=True):
        column.download_button(label, make, f"{stem}-{suffix}", mime, on_click="ignore",
                               key=f"dl-{suffix}-{name}")
    return saliency_map


def show_faithfulness(name: str, x: np.ndarray, saliency_map: np.ndarray,
                      probabilities: np.ndarray, settings: ViewSettings) -> None:
    """Deletion/insertion curves, and the top-k pixels removed or kept alone, predicted again."""
    class_index = target_class(probabilities, settings)
    magnitude = np.abs(saliency_map)
    curves_col, again_col = st.columns(2)
    curves_col.plotly_chart(
        figures.perturbation_curves(faithfulness(x, magnitude, class_index),
                                    title=f"faithfulness for {class_names()[class_index]}"),
        width="stretch", key=f"curves-{name}")
    curves_col.caption("Deletion: the most salient pixels are replaced by a blurred copy first; "
                       "a faithful map makes the probability fall fast (low area). Insertion: "
                       "they are put back first into the blurred image (high area).")
    with again_col:
        k = min(settings.k, magnitude.size)
        mode = st.radio("Then predict again", ["remove", "keep"], horizontal=True,
                        key=f"cf-mode-{name}",
                        format_func=lambda m: f"remove the top {k} pixels" if m == "remove"
                        else f"keep only the top {k} pixels")
        if st.button("Predict again", key=f"cf-{name}"):
            result = counterfactual(x, magnitude, class_index, k, mode)
            st.metric(f"{class_names()[class_index]} probability", f"{100 * result.after:.1f}%",
                      delta=f"{100 * (result.after - result.before):+.1f} points")
            st.caption(f"Before: {100 * result.before:.1f}%. The same change on {k} random "
                       f"pixels instead ({len(result.random_trials)} tries): "
                       f"{100 * result.random_after:.1f}% on average. Changed pixels take the "
                       "blurred image's values.")


def randomised_panels(x: np.ndarray, probabilities: np.ndarray, settings: ViewSettings
                      ) -> list[tuple[str, np.ndarray]]:
    """The first image's map by the trained model and by the model with its top layers
    randomised, both for the class the trained model explains."""
    classes = settings.classes or (target_class(probabilities, settings),)
    return [(title, compute_map(x, settings, classes=classes, weights=weights))
            for title, weights in (("trained weights", "trained"),
                                   ("top layers randomised", "randomised"))]


def show_comparison(inputs: list[tuple[str, np.ndarray, np.ndarray]],
                    settings: ViewSettings) -> None:
    mode = settings.compare
    if mode == "randomised":
        _, x, probabilities = inputs[0]
        panels = randomised_panels(x, probabilities, settings)
    elif mode == "images":
        panels = [(name, compute_map(x, settings)) for name, x, _ in inputs]
    else:
        name, x, _ = inputs[0]
        items = list(settings.compare_items)
        if not items:
            st.info(f"Pick the {mode} to compare in the sidebar.")
            return
        if mode == "layers":
            panels = [(item, compute_map(x, settings, layer=item)) for item in items]
        elif mode == "classes":
            panels = [(item, compute_map(x, settings, layer="logits" if settings.layer not in
                                         OUTPUT_TARGETS else settings.layer,
                                         classes=(class_names().index(item),)))
                      for item in items]
        elif mode == "models":
            panels, tables = model_panels(x, items, settings)
        else:
            panels = [(item, compute_map(x, settings, method=item)) for item in items]
    signed = settings.sign == "signed"
    zrange = figures.colour_range([m for _, m in panels], signed) if settings.shared_scale else None
    columns = st.columns(min(len(panels), 4))
    for i, (title, saliency_map) in enumerate(panels):
        columns[i % len(columns)].plotly_chart(
            figures.saliency_heatmap(saliency_map, signed=signed, zrange=zrange, title=title,
                                     colour_scale=settings.colour_scale, size_px=300),
            width="stretch", key=f"cmp-{i}")
        if mode == "models":
            with columns[i % len(columns)]:
                probability_table(*tables[i])
    if mode == "randomised":
        st.caption(randomisation_note(settings.method, spearman(*(m for _, m in panels)),
                                      RANDOMIZATION_THRESHOLD))


def model_panels(x: np.ndarray, names: list[str], settings: ViewSettings
                 ) -> tuple[list[tuple[str, np.ndarray]], list[tuple[np.ndarray, tuple]]]:
    """For each model of ``names``: (title with its top class, its map of ``x``) and (its
    probabilities, its class names). The map explains the class mask when the model has the
    picked model's classes, else its own predicted class; an inner layer gives way to the
    logits."""
    offered = model_files()[0]
    layer = settings.layer if settings.layer in OUTPUT_TARGETS else "logits"
    panels, tables = [], []
    for name in names:
        path = offered[name]
        labels = class_names(path)
        probabilities = prediction(x, path)
        top = int(np.argmax(probabilities))
        same = settings.classes and labels == class_names()
        classes = settings.classes if same else (top,)
        saliency_map = compute_map(x, settings, layer=layer, classes=classes, path=path)
        panels.append((f"{name}: {labels[top]} {100 * probabilities[top]:.1f}%", saliency_map))
        tables.append((probabilities, labels))
    return panels, tables


def show_image(index: int, name: str, image: np.ndarray, settings: ViewSettings,
               refused: str | None) -> tuple[str, np.ndarray, np.ndarray]:
    """One image's section: its heading, the out-of-distribution notice when it is flagged,
    the photo (with the found objects' boxes), the network's input, the prediction, and,
    unless the request was ``refused``, its maps and faithfulness panel. Returns (key,
    network input, probabilities) for the side-by-side comparison."""
    x, probabilities = network_view(image, settings.size)
    assessment = novelty(x, chosen_model_path())
    key = f"{index}-{hashlib.sha1(x.tobytes()).hexdigest()[:8]}"
    st.subheader(name, divider="gray")
    if assessment is not None and assessment.flagged:
        st.warning(out_of_distribution_notice(len(probabilities)), icon=":material/help:")
    first, second, third = st.columns([1, 1, 2])
    found = None
    if settings.boxes:
        try:
            found = photo_objects(image, settings)
        except ValueError as exc:
            st.error(f"{name}: no boxes: {exc}")
    if found is None:
        outlines = [center_square_box(*image.shape[:2])]
        caption = "your image (the network sees the orange square)"
    else:
        outlines = [f.box for f in found]
        caption = objects_note(found)
    first.image(pictures.data_url(pictures.photo(image, boxes=outlines), "JPEG"),
                caption=caption)
    second.image(pictures.data_url(pictures.enlarged(x)),
                 caption=f"after processing ({settings.size}x{settings.size})")
    with third:
        show_prediction(probabilities, assessment)
    if refused:
        st.caption("No map: see the message above.")
        return key, x, probabilities
    try:
        boxes = boxes_to_map([f.box._replace(score=f.score) for f in found or []],
                             image.shape, x.shape[:2])
        saliency_map = show_maps(key, x, probabilities, settings, boxes)
        if settings.faithfulness:
            show_faithfulness(key, x, saliency_map, probabilities, settings)
    except ValueError as exc:
        st.error(f"{name}: {exc}")
    return key, x, probabilities
