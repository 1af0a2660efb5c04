"""The sweep's HTML frames."""

import re

import numpy as np

from app.views.sweep.player import Frame, Panel, cell_color, sweep_html


def frames(factors=(0.5, 1.0, 2.0)) -> list[Frame]:
    rng = np.random.default_rng(0)
    return [Frame(f, np.full((8, 8, 3), 40 * i, np.uint8), f"{f:g}×",
                  [Panel(k, 2, rng.normal(size=(k, k)), rng.normal(size=(k, k)),
                         None if f == 1 else 0.5) for k in (3, 7)])
            for i, f in enumerate(factors)]


def test_one_frame_per_scale_and_the_1x_frame_shows_first():
    page = sweep_html(frames(), "note", 3)
    assert page.count("class='sw-frame'") == 3
    shown = re.findall(r"<div class='sw-frame' data-factor='([^']+)'[^>]*?( hidden)?>", page)
    assert shown == [("0.5", " hidden"), ("1", ""), ("2", " hidden")]
    assert "value='1'" in page and "max='2'" in page  # the slider starts at 1x
    assert page.count("<table class='sw-grid'") == 3 * 2 * 2  # mean + dynamic, two branches
    assert "3/3" not in page.split("sw-note")[1]  # finished: no "scales so far"
    assert "1/3 scales so far" in sweep_html(frames((1.0,)), "", 3)
    assert sweep_html([], "", 3) == ""


def test_the_filter_colours_are_one_symmetric_scale():
    assert cell_color(0, 1) == "#f7f7f7"
    assert cell_color(1, 1) == cell_color(5, 1) == "#67001f"  # clipped to the scale
    assert cell_color(-1, 1) == "#053061"
    assert cell_color(0.3, 0) == "#f7f7f7"
