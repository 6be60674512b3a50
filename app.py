"""The sensitivity dashboard: upload a photo, see what the CIFAR-10 wide ResNet predicts.

Run with ``streamlit run app.py``. The page only lays out widgets and draws; every computation
is a function of the ``sensitivity`` package.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

import sensitivity
from sensitivity.figures import probability_bars
from sensitivity.report import probability_table, verdict

st.set_page_config(page_title="sensitivity", layout="wide")


@st.cache_resource(show_spinner="Loading the model...")
def get_model():
    return sensitivity.load_model()


@st.cache_data(max_entries=64, show_spinner=False)
def analyse(data: bytes, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Decoded image bytes to (network input (size, size, 3) float32, probabilities (10,))."""
    image = sensitivity.load_image(data)
    network_input = sensitivity.preprocess(image, size)
    return network_input, sensitivity.predict(get_model(), network_input)[0]


st.title("sensitivity")
st.caption("Which pixels does a CIFAR-10 wide ResNet look at? Upload a photo to start.")

try:
    get_model()
except sensitivity.ModelError as exc:
    st.error(f"The model could not be loaded: {exc}")
    st.stop()

uploads = st.file_uploader(
    "Images", type=["jpg", "jpeg", "png", "webp", "bmp", "gif"], accept_multiple_files=True
)
for upload in uploads or []:
    st.subheader(upload.name, divider="gray")
    try:
        network_input, probabilities = analyse(upload.getvalue(), 32)
    except sensitivity.ImageError as exc:
        st.error(f"{upload.name}: {exc}")
        continue
    left, right = st.columns([1, 2])
    with left:
        st.image(network_input.astype(np.uint8), caption="after processing (32x32)", width=224)
    with right:
        st.markdown(f"**{verdict(probabilities)}**")
        st.plotly_chart(probability_bars(probabilities), width="stretch")
        st.dataframe(probability_table(probabilities), hide_index=True)
