"""Figure builders and image overlays: explicit heights, the right traces, the right pixels."""

import numpy as np
import plotly.graph_objects as go

from app.core import figures, overlays
from app.views.about.diagram import architecture_svg

THUMB = np.zeros((120, 160, 3), np.uint8)


def test_every_figure_has_an_explicit_height():
    k3 = np.random.default_rng(0).normal(size=(3, 3))
    figs = [
        figures.filter_panels([("mean", k3), ("dynamic", -k3)], 1.0, "f"),
        figures.pooling_grid(THUMB, (15, 20), 3),
        figures.activation_overlay(THUMB, np.ones((15, 20)), "a"),
        figures.class_bars(["a", "b"], [(1, 2, 3), (4, 5, 6)], [0.4, 0.6], [0.5, float("nan")]),
        figures.margin_bars(["x", "k=1"], [0.3, -0.7], [(0, 0, 0), (1, 1, 1)], 0.1, "t"),
        figures.roles_plot(["small (2)", "large (1)"], ["x", "k=1"], np.full((2, 2), 0.5),
                           np.zeros((2, 2)), [(0, 0, 0), (1, 1, 1)]),
        figures.message_figure("needs a true mask"),
        figures.change_lines({3: np.ones(8)}, {3: np.zeros(8)}, 2, {3: (1, 2, 3)}),
        figures.sweep_lines([0.5, 1.0, 2.0], {3: [0.9, 1, 0.8]}, [0.7, 1, 0.6], None,
                            {3: (1, 2, 3)}),
    ]
    for fig in figs:
        assert isinstance(fig, go.Figure) and fig.layout.height and fig.layout.height >= 200


def test_a_message_figure_breaks_a_long_message_into_lines():
    """Plotly never wraps an annotation: one long line was clipped at both ends of the plot."""
    from app.views.attribution.explain import NEEDS_TRUTH

    text = figures.message_figure(NEEDS_TRUTH).layout.annotations[0].text
    lines = text.split("<br>")
    assert len(lines) > 1 and max(map(len, lines)) <= figures.MESSAGE_WIDTH
    assert " ".join(lines) == NEEDS_TRUTH


def test_pooling_grid_draws_every_bin_with_its_cells():
    fig = figures.pooling_grid(THUMB, (15, 20), 3)
    hover = fig.data[-1]
    assert len(hover.x) == 9
    assert "rows 0–4" in hover.text[0] and "cols 0–6" in hover.text[0]  # 15/3 = 5, 20/3 -> 7
    assert "overlapping" in fig.layout.title.text
    assert "even" in figures.pooling_grid(THUMB, (15, 21), 3).layout.title.text
    xs = [v for tr in fig.data[1:3] for v in tr.x if v is not None]
    assert min(xs) == 0 and max(xs) == 160  # bins cover the whole image


def test_filter_colour_scale_is_shared_and_symmetric():
    fig = figures.filter_panels([("a", np.ones((5, 5))), ("b", -np.ones((5, 5))),
                                 ("c", np.zeros((5, 5)))], 2.5, "t")
    assert [(t.zmin, t.zmax) for t in fig.data] == [(-2.5, 2.5)] * 3
    assert [t.showscale for t in fig.data] == [False, False, True]  # one colour bar


def test_overlays():
    image = np.full((4, 6, 3), 100, np.uint8)
    label = np.zeros((4, 6), np.int64)
    label[:, 3:] = 1
    palette = ((0, 0, 0), (200, 0, 0))
    out = overlays.overlay(image, label, palette, alpha=0.5)
    assert tuple(out[0, 0]) == (50, 50, 50) and tuple(out[0, 5]) == (150, 50, 50)
    after = label.copy()
    after[0, 0] = 1
    changed = overlays.changes(image, label, after, palette)
    assert tuple(changed[0, 0]) == (200, 0, 0)
    assert tuple(changed[1, 1]) == (185, 185, 185)  # faint gray
    assert overlays.colorize(np.array([[255]]), palette).tolist() == [[[0, 0, 0]]]
    up = overlays.upsample_nearest(np.array([[0, 1], [2, 3]]), (4, 6))
    assert up[0].tolist() == [0, 0, 0, 1, 1, 1] and up[3, 0] == 2
    assert overlays.thumbnail(np.zeros((600, 300, 3), np.uint8), 256).shape == (256, 128, 3)
    assert overlays.data_uri(image).startswith("data:image/jpeg;base64,")


def test_architecture_diagram_has_one_dcm_per_filter_size():
    svg = architecture_svg()
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert all(f"DCM k={k}" in svg for k in (1, 3, 5, 7))


def test_roles_plot_stacks_the_deciders_and_groups_the_costs():
    decides = np.array([[0.2, 0.8], [0.6, 0.4]])
    cost = np.array([[0.1, 0.0], [0.3, 0.05]])
    fig = figures.roles_plot(["small (2)", "large (1)"], ["x", "k=3"], decides, cost,
                             [(130, 130, 130), (44, 160, 44)])
    left = [t for t in fig.data if t.orientation == "h"]
    right = [t for t in fig.data if t.orientation != "h"]
    assert len(left) == len(right) == 2
    np.testing.assert_allclose(left[1].base.astype(float), 100 * decides[:, 0])  # after x
    np.testing.assert_allclose(right[0].y, 100 * cost[:, 0])
