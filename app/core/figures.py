"""Plotly figures from arrays. Every figure has an explicit height (Gradio's gr.Plot needs one).

Images inside figures are small JPEG thumbnails (`overlays.data_uri`), with feature maps and
pooling bins drawn over them in the thumbnail's pixel coordinates.
"""

from __future__ import annotations

import math
import textwrap

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
from plotly.subplots import make_subplots

from .filters import pool_bins
from .overlays import data_uri, hex_color

pio.templates[pio.templates.default]  # plotly reads its theme (0.2 s) now, not in a first view

FILTER_SCALE = "RdBu_r"  # diverging, zero = white: filter taps are signed
ACTIVATION_SCALE = "Inferno"
MARGIN = dict(l=8, r=8, t=36, b=8)


def _image_layout(fig: go.Figure, height: int, title: str) -> go.Figure:
    fig.update_layout(height=height, margin=MARGIN, title=dict(text=title, font_size=13),
                      showlegend=False, plot_bgcolor="white")
    fig.update_xaxes(visible=False, constrain="domain")
    fig.update_yaxes(visible=False, scaleanchor="x", autorange="reversed")
    return fig


def _base(thumb: np.ndarray) -> go.Image:
    return go.Image(source=data_uri(thumb), x0=0, y0=0, dx=1, dy=1, hoverinfo="skip")


def pooling_grid(thumb: np.ndarray, feature_size: tuple[int, int], k: int,
                 height: int = 260) -> go.Figure:
    """The k x k adaptive-pooling bins over the image: each bin averages the features under it
    into one tap of the filter. Bins overlap (darker) where the feature size is not divisible."""
    h8, w8 = feature_size
    th, tw = thumb.shape[:2]
    sy, sx = th / h8, tw / w8
    fig = go.Figure(_base(thumb))
    rows, cols = pool_bins(h8, k), pool_bins(w8, k)
    outlines = {0: ([], []), 1: ([], [])}  # two colours, alternating like a chessboard
    xs, ys, texts = [], [], []
    for i, (r0, r1) in enumerate(rows):
        for j, (c0, c1) in enumerate(cols):
            x0, x1, y0, y1 = c0 * sx, c1 * sx, r0 * sy, r1 * sy
            ox, oy = outlines[(i + j) % 2]
            ox += [x0, x1, x1, x0, x0, None]
            oy += [y0, y0, y1, y1, y0, None]
            xs.append((x0 + x1) / 2)
            ys.append((y0 + y1) / 2)
            texts.append(f"bin ({i}, {j}) → filter tap ({i}, {j})<br>feature rows {r0}–{r1 - 1}, "
                         f"cols {c0}–{c1 - 1} ({r1 - r0}×{c1 - c0} cells)")
    for parity, color in ((0, "rgba(0,170,255,0.18)"), (1, "rgba(255,200,0,0.18)")):
        ox, oy = outlines[parity]
        if ox:
            fig.add_trace(go.Scatter(x=ox, y=oy, mode="lines", fill="toself", fillcolor=color,
                                     line=dict(color="white", width=1), hoverinfo="skip"))
    fig.add_trace(go.Scatter(x=xs, y=ys, mode="markers", marker=dict(size=4, color="white"),
                             text=texts, hovertemplate="%{text}<extra></extra>"))
    even = "even" if h8 % k == 0 and w8 % k == 0 else "overlapping"
    return _image_layout(fig, height, f"{k}×{k} pooling bins ({even})")


def activation_overlay(thumb: np.ndarray, act: np.ndarray, title: str,
                       height: int = 260, zmax: float | None = None) -> go.Figure:
    """A feature map (h8, w8) drawn over the image, each cell over the pixels it sees; with
    `zmax`, on the colour scale 0..zmax (shared by maps drawn side by side)."""
    th, tw = thumb.shape[:2]
    h8, w8 = act.shape
    fig = go.Figure(_base(thumb))
    fig.add_trace(go.Heatmap(
        z=act, x0=tw / w8 / 2, dx=tw / w8, y0=th / h8 / 2, dy=th / h8, opacity=0.6,
        colorscale=ACTIVATION_SCALE, colorbar=dict(thickness=10, len=0.9),
        **({} if zmax is None else dict(zmin=0, zmax=zmax)),
        hovertemplate="cell (%{y:.0f}, %{x:.0f}) px: %{z:.3f}<extra></extra>"))
    return _image_layout(fig, height, title)


def class_bars(classes: list[str], colors: list[tuple[int, int, int]], share: list[float],
               iou: list[float] | None = None) -> go.Figure:
    """Pixel share (and IoU with the true mask, when there is one) of the classes present."""
    n = len(classes)
    fig = go.Figure(go.Bar(y=classes, x=[100 * s for s in share], orientation="h",
                           name="pixel share %", marker_color=[hex_color(c) for c in colors],
                           marker_line=dict(color="#444", width=1),
                           texttemplate="%{x:.1f}%", textposition="outside",
                           hovertemplate="%{y}: %{x:.2f}% of pixels<extra></extra>"))
    if iou is not None:
        fig.add_trace(go.Bar(y=classes, x=[100 * v if math.isfinite(v) else 0 for v in iou],
                             orientation="h", name="IoU %", marker_color="rgba(60,60,60,0.35)",
                             texttemplate="IoU %{x:.1f}", textposition="inside",
                             insidetextanchor="end",
                             hovertemplate="%{y}: IoU %{x:.1f}%<extra></extra>"))
    # The legend sits above the bars, the axis title below them: neither covers the other, and
    # the share's text outside its bar has room up to 125 %.
    fig.update_layout(height=min(130 + 26 * n * (2 if iou else 1), 720),
                      margin=dict(l=8, r=16, t=64, b=40), barmode="group",
                      title=dict(text="classes in the prediction", font_size=13, y=0.98,
                                 yanchor="top"),
                      xaxis=dict(title="% of pixels (and IoU %)", range=[0, 125]),
                      legend=dict(orientation="h", x=0, y=1.0, xanchor="left", yanchor="bottom"),
                      yaxis=dict(autorange="reversed", automargin=True),
                      showlegend=iou is not None)
    return fig


def margin_bars(names: list[str], values: list[float], colors: list[tuple[int, int, int]],
                rest: float, title: str, height: int = 300) -> go.Figure:
    """One pixel's margin split by input (signed: > 0 pushes towards the predicted class), and the
    constant rest (BN shift and classifier bias) in gray."""
    labels = [*names, "shift + bias"]
    fig = go.Figure(go.Bar(x=labels, y=[*values, rest],
                           marker_color=[*(hex_color(c) for c in colors), "#bbbbbb"],
                           text=[f"{v:+.2f}" for v in [*values, rest]], textposition="outside",
                           hovertemplate="%{x}: %{y:+.3f}<extra></extra>"))
    top = max(abs(v) for v in [*values, rest, 1e-6]) * 1.3
    fig.add_hline(y=0, line=dict(color="#444", width=1))
    fig.update_layout(height=height, margin=dict(l=8, r=8, t=56, b=8),
                      title=dict(text=title, font_size=13), yaxis=dict(
                          title="term of the margin", range=[-top, top], zeroline=False))
    return fig


def roles_plot(groups: list[str], names: list[str], decides: np.ndarray, cost: np.ndarray,
               colors: list[tuple[int, int, int]], height: int = 340) -> go.Figure:
    """Per object-size group (rows of `decides` and `cost`, (G, P)): which input decides its
    pixels (stacked shares, left) and the accuracy lost when each input is removed (right)."""
    fig = make_subplots(1, 2, horizontal_spacing=0.12, subplot_titles=(
        "which input decides the pixels", "accuracy lost without the input"))
    base = np.zeros(len(groups))
    for j, (name, color) in enumerate(zip(names, colors, strict=True)):
        share = 100 * decides[:, j]
        # Stacked by hand (`base`, one offsetgroup): the right panel's bars are grouped.
        fig.add_trace(go.Bar(y=groups, x=share, base=base.copy(), orientation="h", name=name,
                             offsetgroup="decides", marker_color=hex_color(color),
                             legendgroup=name,
                             hovertemplate=f"%{{y}}: {name} decides %{{x:.1f}}%<extra></extra>"),
                      1, 1)
        base += share
        fig.add_trace(go.Bar(x=groups, y=100 * cost[:, j], name=name, showlegend=False,
                             marker_color=hex_color(color), legendgroup=name,
                             hovertemplate=f"%{{x}}: without {name}, %{{y:.1f}} points lost"
                                           "<extra></extra>"), 1, 2)
    fig.update_layout(height=height, barmode="group", margin=dict(l=8, r=8, t=56, b=8),
                      legend=dict(orientation="h", y=-0.18))
    fig.update_xaxes(title="% of the pixels", range=[0, 100], row=1, col=1)
    fig.update_yaxes(autorange="reversed", row=1, col=1)
    fig.update_yaxes(title="accuracy points lost", row=1, col=2)
    return fig


MESSAGE_WIDTH = 44  # characters per line of a message figure: plotly never wraps annotations,
# and a half-width plot at 1280 px clipped a one-line message at both ends


def message_figure(message: str, height: int = 340) -> go.Figure:
    """An empty figure that says why it is empty (e.g. "needs a true mask")."""
    fig = go.Figure()
    fig.add_annotation(text="<br>".join(textwrap.wrap(message, MESSAGE_WIDTH)), x=0.5, y=0.5,
                       xref="paper", yref="paper", showarrow=False,
                       font=dict(size=14, color="#555"))
    fig.update_layout(height=height, margin=MARGIN, xaxis_visible=False, yaxis_visible=False,
                      plot_bgcolor="white")
    return fig


def change_lines(changes: dict[int, np.ndarray], cosines: dict[int, np.ndarray],
                 channel: int | None, colors: dict[int, tuple[int, int, int]],
                 height: int = 300) -> go.Figure:
    """Per channel, how much its filter changes from image A to image B (% of the filter's
    size, `filters.relative_change`), one series per filter size; the cosine of the two dynamic
    parts is in the hover, second."""
    fig = go.Figure()
    for k, change in changes.items():
        hover = (f"k={k} channel %{{x}}: the filter changes %{{y:.1f}}%<br>"
                 "cosine of the dynamic parts %{customdata:.3f}<extra></extra>")
        fig.add_trace(go.Scatter(y=100 * change, customdata=cosines[k], mode="markers",
                                 name=f"k={k}", hovertemplate=hover,
                                 marker=dict(size=5, color=hex_color(colors[k]))))
    if channel is not None:
        fig.add_vline(x=channel, line=dict(color="#444", dash="dot"))
    fig.update_layout(height=height, margin=MARGIN, legend=dict(orientation="h"),
                      title=dict(text="how much each channel's filter changes from A to B",
                                 font_size=13),
                      xaxis_title="channel",
                      yaxis=dict(title="change, % of the filter", rangemode="tozero"))
    return fig


def filter_panels(panels: list[tuple[str, np.ndarray]], zmax: float, title: str,
                  height: int = 250) -> go.Figure:
    """k x k filters side by side (e.g. the mean and the dynamic part) on one symmetric colour
    scale (`zmax`), so that their sizes compare at a glance."""
    fig = make_subplots(1, len(panels), subplot_titles=[name for name, _ in panels],
                        horizontal_spacing=0.06)
    for col, (name, f) in enumerate(panels, start=1):
        fig.add_trace(go.Heatmap(
            z=f, zmin=-zmax, zmax=zmax, zmid=0, colorscale=FILTER_SCALE,
            showscale=col == len(panels), colorbar=dict(thickness=10),
            hovertemplate=f"{name}<br>tap (%{{y}}, %{{x}}): %{{z:.4f}}<extra></extra>"), 1, col)
    # constrain="domain": a square filter shrinks its panel instead of padding it with empty taps
    fig.update_yaxes(autorange="reversed", showgrid=False, zeroline=False, showticklabels=False,
                     constrain="domain")
    fig.update_xaxes(showgrid=False, zeroline=False, showticklabels=False, constrain="domain")
    for col in range(1, len(panels) + 1):
        fig.update_yaxes(scaleanchor=f"x{'' if col == 1 else col}", row=1, col=col)
    fig.update_layout(height=height, margin=dict(l=8, r=8, t=56, b=8),
                      title=dict(text=title, font_size=13))
    for note in fig.layout.annotations:
        note.font.size = 11
    return fig


def sweep_lines(factors: list[float], filter_cos: dict[int, list[float]], agreement: list[float],
                miou: list[float] | None, colors: dict[int, tuple[int, int, int]],
                height: int = 320) -> go.Figure:
    """How the filters and the prediction change with the input scale, relative to 1x."""
    fig = make_subplots(1, 2, subplot_titles=("dynamic part of the filters vs 1× (cosine)",
                                              "prediction vs 1× (and vs truth)"))
    for k, cos in filter_cos.items():
        fig.add_trace(go.Scatter(x=factors, y=cos, mode="lines+markers", name=f"k={k}",
                                 line=dict(color=hex_color(colors[k]))), 1, 1)
    fig.add_trace(go.Scatter(x=factors, y=agreement, mode="lines+markers",
                             name="pixels as at 1×", line=dict(color="#222")), 1, 2)
    if miou is not None:
        fig.add_trace(go.Scatter(x=factors, y=miou, mode="lines+markers", name="mIoU vs truth",
                                 line=dict(color="#d62728", dash="dash")), 1, 2)
    fig.update_xaxes(type="log", tickvals=factors, ticktext=[f"{f:g}×" for f in factors],
                     title="input scale")
    fig.update_yaxes(range=[-1.05, 1.05], row=1, col=1)  # dynamic parts may point opposite ways
    fig.update_yaxes(range=[-0.05, 1.05], row=1, col=2)
    fig.update_layout(height=height, margin=dict(l=8, r=8, t=56, b=8),
                      legend=dict(orientation="h", y=-0.3))
    return fig
