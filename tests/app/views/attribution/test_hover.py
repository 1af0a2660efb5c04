"""The hover readout's data: every feature cell's split margin, as `cell_margin` gives it."""

import html
import json
import re

import pytest
import torch

from app.core.analysis import analyse
from app.core.attribution import cell_margin, logit_parts
from app.core.runtime import see
from app.views.attribution import ablation, hover

from ...conftest import rgb_noise, tiny_model


@pytest.fixture(scope="module")
def split():
    a = analyse(tiny_model(), rgb_noise(90, 130, seed=5))
    return a, *logit_parts(a.split, a.classifier)


def test_every_cell_holds_the_margin_terms_of_cell_margin(split):
    a, parts, rest = split
    table = hover.cell_table(parts, rest)
    h, w = a.feature_size
    assert (table["h"], table["w"]) == (h, w) and len(table["top"]) == h * w
    assert len(table["parts"]) == len(a.part_names)
    for r in range(h):
        for c in range(w):
            m, i = cell_margin(parts, rest, (r, c)), r * w + c
            assert (table["top"][i], table["second"][i]) == (m.top, m.runner_up)
            assert [p[i] for p in table["parts"]] == m.parts.tolist()
            assert table["rest"][i] == pytest.approx(m.rest, rel=1e-6, abs=1e-6)


def test_the_margin_of_a_cell_is_its_terms_plus_the_rest(split):
    a, parts, rest = split
    table = hover.cell_table(parts, rest)
    logits = (parts.sum(0) + rest).flatten(1)  # (classes, cells)
    top2 = logits.topk(2, dim=0).values
    scale = float(logits.abs().max())
    margin = torch.tensor(table["parts"]).sum(0) + torch.tensor(table["rest"])
    assert float((margin - (top2[0] - top2[1])).abs().max()) <= 1e-5 * scale
    assert (margin >= 0).all()  # the top class beats the runner-up


def test_the_readout_carries_the_table_escaped_in_its_html(split):
    a, parts, rest = split
    names = list(a.part_names)
    classes = ["<b>sky</b>", *a.classes[1:]]  # a class name that is also markup
    page = hover.readout(parts, rest, names, [(1, 2, 3)] * len(names), classes)
    assert "<b>sky</b>" not in page  # escaped, not markup
    data = json.loads(html.unescape(re.search(r'data-cells="([^"]*)"', page).group(1)))
    assert data["classes"] == classes and data["names"] == names
    assert data["colors"][0] == "#010203"
    full = hover.cell_table(parts, rest)
    assert data["parts"][2][7] == pytest.approx(full["parts"][2][7], abs=1e-4)
    assert hover.HINT in page


def test_the_ablation_readout_has_each_cells_class_after_the_removal(demo_env, scene):
    image, mask = (str(p) for p in scene)
    page = ablation.ablate("demo", image, mask, "remove", ["k=1"])[4]
    data = json.loads(html.unescape(re.search(r'data-cells="([^"]*)"', page).group(1)))
    a = see("demo", image, mask).analysis
    keep = [n != "k=1" for n in a.part_names]
    assert data["after"] == a.classifier(a.split.total(keep)).argmax(0).flatten().tolist()
    assert data["removed"] == ["k=1"] and data["change"] == "without k=1"
    assert "data-map='#ablation-changes'" in page
    static = ablation.ablate("demo", image, mask, "static filters", [])[4]
    assert "with static filters" in html.unescape(static)
