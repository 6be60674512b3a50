"""Plotly figures built from arrays (no Streamlit here)."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from sensitivity.labels import CLASS_NAMES


def probability_bars(probabilities: np.ndarray, highlight: int | None = None) -> go.Figure:
    """Horizontal bars of the ten class probabilities (``(10,)``, 0..1), largest on top."""
    probabilities = np.asarray(probabilities, dtype=np.float64).reshape(-1)
    order = np.argsort(probabilities)
    top = int(np.argmax(probabilities)) if highlight is None else int(highlight)
    colours = ["#0072B2" if i == top else "#9DB4C8" for i in order]
    figure = go.Figure(
        go.Bar(
            x=100 * probabilities[order],
            y=[CLASS_NAMES[i] for i in order],
            orientation="h",
            marker_color=colours,
            text=[f"{100 * p:.1f}%" for p in probabilities[order]],
            textposition="outside",
            hovertemplate="%{y}: %{x:.2f}%<extra></extra>",
        )
    )
    figure.update_layout(
        xaxis=dict(title="probability (%)", range=[0, 115]),
        margin=dict(l=10, r=10, t=10, b=40),
        height=320,
    )
    return figure
