"""Plotly figures from arrays. Every figure has an explicit height (Gradio's gr.Plot needs one).

Images inside figures are small JPEG thumbnails (`overlays.data_uri`), with feature maps and
pooling bins drawn over them in the thumbnail's pixel coordinates.
"""

from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .filters import pool_bins
from .overlays import data_uri, hex_color

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


def filter_heatmap(filt: np.ndarray, zmax: float, title: str, height: int = 230) -> go.Figure:
    """One channel's k x k filter; the colour scale is symmetric and shared (`zmax`)."""
    k = filt.shape[-1]
    fig = go.Figure(go.Heatmap(
        z=filt, zmin=-zmax, zmax=zmax, zmid=0, colorscale=FILTER_SCALE,
        colorbar=dict(thickness=10, len=0.9),
        hovertemplate="tap (row %{y}, col %{x}): %{z:.4f}<extra></extra>",
        texttemplate="%{z:.3f}" if k <= 3 else None, textfont=dict(size=10)))
    fig.update_layout(height=height, margin=MARGIN, title=dict(text=title, font_size=13))
    fig.update_xaxes(dtick=1, showgrid=False, constrain="domain")
    fig.update_yaxes(dtick=1, showgrid=False, scaleanchor="x", autorange="reversed")
    return fig


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
                       height: int = 260) -> go.Figure:
    """A feature map (h8, w8) drawn over the image, each cell over the pixels it sees."""
    th, tw = thumb.shape[:2]
    h8, w8 = act.shape
    fig = go.Figure(_base(thumb))
    fig.add_trace(go.Heatmap(
        z=act, x0=tw / w8 / 2, dx=tw / w8, y0=th / h8 / 2, dy=th / h8, opacity=0.6,
        colorscale=ACTIVATION_SCALE, colorbar=dict(thickness=10, len=0.9),
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


def part_bars(names: list[str], values: list[float], colors: list[tuple[int, int, int]],
              title: str, height: int = 240) -> go.Figure:
    """One bar per bottleneck input (x and each branch)."""
    fig = go.Figure(go.Bar(x=names, y=values, marker_color=[hex_color(c) for c in colors],
                           texttemplate="%{y:.1%}", textposition="outside",
                           hovertemplate="%{x}: %{y:.2%}<extra></extra>"))
    fig.update_layout(height=height, margin=MARGIN, title=dict(text=title, font_size=13),
                      yaxis=dict(tickformat=".0%", range=[0, max(values + [0.01]) * 1.2]))
    return fig


def cosine_lines(cosines: dict[int, np.ndarray], channel: int | None,
                 colors: dict[int, tuple[int, int, int]], height: int = 300) -> go.Figure:
    """Per-channel cosine similarity of image A's and B's filters, one line per filter size."""
    fig = go.Figure()
    for k, cos in cosines.items():
        hover = f"k={k} channel %{{x}}: cos %{{y:.3f}}<extra></extra>"
        fig.add_trace(go.Scatter(y=cos, mode="markers", name=f"k={k}", hovertemplate=hover,
                                 marker=dict(size=5, color=hex_color(colors[k]))))
    if channel is not None:
        fig.add_vline(x=channel, line=dict(color="#444", dash="dot"))
    fig.update_layout(height=height, margin=MARGIN, legend=dict(orientation="h"),
                      title=dict(text="cosine similarity of A's and B's filter, per channel",
                                 font_size=13),
                      xaxis_title="channel", yaxis=dict(title="cosine", range=[-1.05, 1.05]))
    return fig


def filter_pair(a: np.ndarray, b: np.ndarray, zmax: float, title: str,
                height: int = 250) -> go.Figure:
    """Image A's and image B's filter for one channel, side by side, one colour scale."""
    fig = make_subplots(1, 2, subplot_titles=("image A", "image B"), horizontal_spacing=0.08)
    for col, f in ((1, a), (2, b)):
        fig.add_trace(go.Heatmap(z=f, zmin=-zmax, zmax=zmax, zmid=0, colorscale=FILTER_SCALE,
                                 showscale=col == 2, colorbar=dict(thickness=10),
                                 hovertemplate="tap (%{y}, %{x}): %{z:.4f}<extra></extra>"),
                      1, col)
    fig.update_yaxes(autorange="reversed", dtick=1, showgrid=False)
    fig.update_xaxes(dtick=1, showgrid=False)
    fig.update_layout(height=height, margin=dict(l=8, r=8, t=56, b=8),
                      title=dict(text=title, font_size=13))
    return fig


def sweep_lines(factors: list[float], filter_cos: dict[int, list[float]], agreement: list[float],
                miou: list[float] | None, colors: dict[int, tuple[int, int, int]],
                height: int = 320) -> go.Figure:
    """How the filters and the prediction change with the input scale, relative to 1x."""
    fig = make_subplots(1, 2, subplot_titles=("filter bank vs 1× (cosine)",
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
    fig.update_yaxes(range=[-0.05, 1.05])
    fig.update_layout(height=height, margin=dict(l=8, r=8, t=56, b=8),
                      legend=dict(orientation="h", y=-0.3))
    return fig


def sweep_animation(factors: list[float], thumbs: list[np.ndarray],
                    filters: list[dict[int, np.ndarray]], channels: dict[int, int], zmax: float,
                    height: int = 330) -> go.Figure:
    """A slider (and play button) over the scales: the prediction and, per branch, the chosen
    channel's generated filter at that scale."""
    ks = list(channels)
    titles = ["prediction", *(f"k={k}, ch {channels[k]}" for k in ks)]
    fig = make_subplots(1, 1 + len(ks), subplot_titles=titles, horizontal_spacing=0.03,
                        column_widths=[1.6] + [1] * len(ks))

    def traces(i: int) -> list:
        out = [go.Image(source=data_uri(thumbs[i]), hoverinfo="skip")]
        out += [go.Heatmap(z=filters[i][k][channels[k]], zmin=-zmax, zmax=zmax, zmid=0,
                           colorscale=FILTER_SCALE, showscale=j == len(ks) - 1,
                           colorbar=dict(thickness=10),
                           hovertemplate="tap (%{y}, %{x}): %{z:.4f}<extra></extra>")
                for j, k in enumerate(ks)]
        return out

    for col, tr in enumerate(traces(factors.index(1.0) if 1.0 in factors else 0), start=1):
        fig.add_trace(tr, 1, col)
    fig.frames = [go.Frame(data=traces(i), name=f"{f:g}", traces=list(range(1 + len(ks))))
                  for i, f in enumerate(factors)]
    steps = [dict(method="animate", label=f"{f:g}×",
                  args=[[f"{f:g}"], dict(mode="immediate", frame=dict(duration=0, redraw=True))])
             for f in factors]
    fig.update_layout(
        height=height, margin=dict(l=8, r=8, t=40, b=8),
        sliders=[dict(steps=steps, active=factors.index(1.0) if 1.0 in factors else 0,
                      currentvalue=dict(prefix="input scale: "), pad=dict(t=30))],
        updatemenus=[dict(type="buttons", showactive=False, x=0, y=-0.25, xanchor="left",
                          buttons=[dict(label="▶ play", method="animate",
                                        args=[None, dict(frame=dict(duration=700, redraw=True),
                                                         fromcurrent=True)])])])
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False, autorange="reversed")
    fig.update_yaxes(scaleanchor="x", row=1, col=1)
    for j in range(len(ks)):
        fig.update_yaxes(scaleanchor=f"x{j + 2}", row=1, col=j + 2)
    return fig
