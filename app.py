"""The sensitivity dashboard: which pixels does a CIFAR-10 wide ResNet look at?

Run with ``streamlit run app.py``. This page only lays out its sections (``ui/``), which call
the ``sensitivity`` library; every computation is a plain library function.
"""

from __future__ import annotations

import streamlit as st

from sensitivity.render import figures  # NumPy and Plotly only: no TensorFlow yet

# The header and the sidebar's controls go out before TensorFlow is imported (several seconds
# on a cold start); the uploader and a first Plotly figure follow before the model loads (main,
# below), so that a person can pick a file, and the browser load the controls' and Plotly's
# code, meanwhile. Hence the imports below the drawing (E402 is off for this file).
st.set_page_config(page_title="sensitivity", page_icon=":mag:", layout="wide")
st.title("sensitivity")
st.caption("Which input pixels is a CIFAR-10 wide ResNet most sensitive to, and why? "
           "Upload a photo; the heatmaps show |d output / d pixel|.")
NOTICES = st.container()  # the model's error, problems with the link's settings
WORKSPACE = st.empty()  # the uploader and the analyses (the fragment `workspace` draws them)
SIDEBAR = st.sidebar.empty()

from sensitivity.web.serving import analysis_shown, import_keras
from ui import controls

controls.init_state()
LAYER_SLOT, COMPARE_SLOT = controls.sidebar(SIDEBAR)

import_keras()  # TensorFlow and Keras, without the packages a server never uses

import sensitivity
from sensitivity.engine.budget import summary
from ui import compute, sections

compute.keep_keras_state()


@st.fragment
def workspace() -> None:
    """The uploader and every image's analysis. A fragment: an upload (or a camera shot, or a
    sample picked) reruns only this part, not the sidebar's two dozen controls, which cost the
    browser about 0.16 s to redraw (benchmarks/README.md); a control's change reruns the whole
    page, this part included."""
    uploads = st.file_uploader("Upload images", accept_multiple_files=True, key="uploads",
                               type=["jpg", "jpeg", "png", "webp", "bmp", "gif"])
    items = sections.collect_images(uploads)
    if not items:
        st.plotly_chart(figures.reading_guide(), width="stretch",
                        config={"displayModeBar": False, "staticPlot": True},
                        key="reading-guide")
        st.info("Upload an image (JPEG, PNG, WebP, BMP or GIF), take one with the camera, or "
                "pick a CIFAR-10 sample to start.")
        return
    try:
        controls.normalise_state(compute.model_layers())
    except sensitivity.ModelError:
        return  # the page says so above (main)
    settings = controls.current_settings()
    try:
        works = compute.request_work(settings, len(items))
        refused = compute.refusal(works)
    except ValueError as exc:  # a method that declares no cost
        works, refused = [], f"The server cannot estimate this request, so computes no map: {exc}"
    if refused:
        st.error(refused)  # nothing is computed but the predictions
    elif sum(w.seconds for w in works) > compute.ESTIMATE_SHOWN_ABOVE_S:
        st.info(f"These maps take {summary(works)}.")
    inputs = []
    for index, (name, raw) in enumerate(items):
        try:
            image = compute.decode(raw) if isinstance(raw, bytes) else raw
        except sensitivity.ImageError as exc:
            st.error(f"{name}: {exc}")
            continue
        inputs.append(sections.show_image(index, name, image, settings, refused))
    if inputs and settings.compare != "none" and not refused:
        st.subheader("Side by side", divider="gray")
        try:
            sections.show_comparison(inputs, settings)
        except ValueError as exc:
            st.error(str(exc))
    if inputs:
        analysis_shown()  # the server's later warm-up may start now


def main() -> None:
    for problem in st.session_state.pop("_link_problems", []):
        NOTICES.warning(problem)
    # The uploader first: it shows while the model loads on a cold start.
    with WORKSPACE.container():
        workspace()
    try:
        layers = compute.model_layers()
    except sensitivity.ModelError as exc:
        WORKSPACE.empty()
        SIDEBAR.empty()
        NOTICES.error(f"The model could not be loaded, so the page cannot work: {exc}")
        st.stop()
    controls.normalise_state(layers)
    controls.layer_controls(LAYER_SLOT, layers)
    controls.compare_controls(COMPARE_SLOT, layers)
    st.query_params.from_dict(controls.link_query())


main()
