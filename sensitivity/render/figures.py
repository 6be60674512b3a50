"""Plotly figures built from arrays (no Streamlit here)."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go


def _ranks(values: np.ndarray) -> np.ndarray:
    """Rank of each pixel by value, 1 = largest (ties broken by position), same shape."""
    flat = np.asarray(values, dtype=np.float64).reshape(-1)
    order = np.lexsort((np.arange(flat.size), -flat))
    ranks = np.empty(flat.size, dtype=np.int64)
    ranks[order] = np.arange(1, flat.size + 1)
    return ranks.reshape(np.shape(values))


def colour_range(maps: list[np.ndarray], signed: bool) -> tuple[float, float]:
    """A colour range shared by several maps: ``(0, max)``, or ``(-m, m)`` when signed."""
    top = max((float(np.max(np.abs(m))) for m in maps), default=1.0) or 1.0
    return (-top, top) if signed else (0.0, top)


def reading_guide(colour_scale: str = "viridis") -> go.Figure:
    """A strip of the heatmaps' colour scale, from pixels the score ignores to the ones it is
    most sensitive to (the landing page shows it; drawing it early also loads Plotly in the
    browser while the model loads)."""
    from sensitivity.render.colormaps import plotly_scale

    strip = go.Heatmap(z=[np.linspace(0.0, 1.0, 64)], colorscale=plotly_scale(colour_scale),
                       showscale=False, hoverinfo="skip")
    figure = go.Figure(strip)
    figure.update_layout(
        height=90, margin=dict(l=10, r=10, t=28, b=24),
        title=dict(text="how to read the heatmaps", x=0.0, font=dict(size=13)),
    )
    figure.update_xaxes(tickvals=[0, 63], ticktext=["the score ignores the pixel",
                                                      "the score is most sensitive to it"])
    figure.update_yaxes(visible=False)
    return figure


def saliency_heatmap(
    saliency_map: np.ndarray,
    *,
    signed: bool = False,
    colour_scale: str = "viridis",
    zrange: tuple[float, float] | None = None,
    title: str = "",
    size_px: int = 360,
    boxes: list | None = None,
) -> go.Figure:
    """Interactive heatmap of an ``(H, W)`` map; hover gives x, y, value and rank (1 = top).

    Signed maps use a diverging scale centred at zero; others ``colour_scale`` (viridis or
    cividis are readable by colour-blind people). ``zrange`` fixes the colour range (for a
    colour scale shared across panels). ``boxes`` are ``(x0, y0, x1, y1, ...)`` outlines.
    The figure is built in one construction (Plotly validates it once; property updates one by
    one took four times as long, on every upload).
    """
    from sensitivity.render.colormaps import plotly_scale

    values = np.asarray(saliency_map, dtype=np.float64)
    height, width = values.shape
    zmin, zmax = zrange if zrange is not None else colour_range([values], signed)
    heat = dict(
        type="heatmap",
        z=values,
        customdata=_ranks(np.abs(values) if signed else values),
        colorscale=plotly_scale("diverging" if signed else colour_scale),
        zmin=zmin,
        zmax=zmax,
        zmid=0.0 if signed else None,
        hovertemplate="x %{x}, y %{y}<br>value %{z:.4g}<br>rank %{customdata}<extra></extra>",
        colorbar=dict(thickness=12, len=0.9),
    )
    layout = dict(
        # image axes: pixel centres at integers, rows growing downwards, square pixels
        xaxis=dict(visible=False, range=[-0.5, width - 0.5], constrain="domain"),
        yaxis=dict(visible=False, range=[height - 0.5, -0.5], scaleanchor="x",
                   constrain="domain"),
        margin=dict(l=0, r=0, t=30, b=0),
        height=size_px,
        plot_bgcolor="white",
        dragmode="pan",
        shapes=box_shapes(boxes or []),
    )
    if title:
        layout["title"] = dict(text=title, x=0.0, font=dict(size=13))
    return go.Figure(data=[heat], layout=layout)


def box_shapes(boxes: list, colour: str = "#E69F00") -> list[dict]:
    """Plotly rectangles outlining boxes ``(x0, y0, x1, y1[, score])`` (pixel edges; x1, y1
    exclusive) on image axes whose pixel centres are the integers."""
    shapes = []
    for box in boxes:
        x0, y0, x1, y1 = (float(v) for v in tuple(box)[:4])
        shapes.append(dict(type="rect", x0=x0 - 0.5, y0=y0 - 0.5, x1=x1 - 0.5, y1=y1 - 0.5,
                           line=dict(color=colour, width=2)))
    return shapes


def perturbation_curves(curves: list, title: str = "") -> go.Figure:
    """Deletion and insertion curves (``metrics.Curve``): class probability against the
    fraction of pixels removed or inserted, with the area under each in the legend."""
    figure = go.Figure()
    colours = {"deletion": "#D55E00", "insertion": "#0072B2"}
    for curve in curves:
        figure.add_trace(
            go.Scatter(
                x=100 * np.asarray(curve.fractions),
                y=100 * np.asarray(curve.probabilities),
                mode="lines",
                name=f"{curve.kind} (area {curve.auc:.3f})",
                line=dict(color=colours.get(curve.kind)),
                hovertemplate="%{x:.1f}% of pixels: %{y:.1f}%<extra></extra>",
            )
        )
    figure.update_layout(
        title=dict(text=title, x=0.0, font=dict(size=13)) if title else None,
        xaxis=dict(title="pixels changed, most salient first (%)", range=[0, 100]),
        yaxis=dict(title="class probability (%)", range=[0, 100]),
        legend=dict(orientation="h", y=-0.3),
        margin=dict(l=10, r=10, t=30, b=10),
        height=320,
    )
    return figure
