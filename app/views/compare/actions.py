"""The Compare tab's actions: image B, the same branch and channel's filters for A and B (split
into the static mean and each image's dynamic part), and the filter transplant."""

from __future__ import annotations

import gradio as gr
import numpy as np

from app.core import models, overlays
from app.core.dynamics import dynamic_parts
from app.core.analysis import Analysis
from app.core.figures import activation_overlay, change_lines, filter_panels
from app.core.filters import (bank_cosine, cosine_per_channel, rank_channels, relative_change,
                              shared_range)
from app.core.runtime import (THUMB, channel_choices, gpu, kept, ranking, see, user_errors,
                              valid_channel)
from app.core.transplant import with_filters
from app.views.sidebar.actions import make_scene


def make_scene_b(seed: float, key: str = models.DEMO) -> np.ndarray:
    """Compare's image B: a generated scene of the model's data at zoom 1 (no mask)."""
    return make_scene(seed, 1.0, key)[0]


@user_errors
def channel_picker(key: str, k: int, channel: int | None) -> gr.Dropdown:
    """The channels of branch k, most input-dependent first (keeps a valid current choice)."""
    r = ranking(key)
    k = int(k)
    if k not in r.order:
        raise gr.Error(f"this model has no branch with filter size {k}")
    return kept(gr.Dropdown, channel_choices(r, k), channel, valid_channel(r, k, channel))


@user_errors
@gpu
def compare(key: str, image_a: str | None, image_b: str | None, k: int, channel: int | None):
    """The same branch and channel's filters for images A and B, split into the mean over the
    reference inputs and each image's dynamic part; per channel, how much its filter changes
    from A to B (the channels ranked by it) and the cosine of the two dynamic parts."""
    if image_b is None:
        raise gr.Error("Add image B (upload, paste, or generate a scene and use it as B).")
    a, b = see(key, image_a).analysis, see(key, image_b).analysis
    r = ranking(key)
    k = int(k)
    if k not in a.filters:
        raise gr.Error(f"this model has no branch with filter size {k}")
    c = valid_channel(r, k, channel)
    da, db = dynamic_parts(a.filters, r), dynamic_parts(b.filters, r)
    cos = {s: cosine_per_channel(da[s], db[s]) for s in da}
    change = {s: relative_change(a.filters[s], b.filters[s]) for s in da}
    colors = {s: overlays.part_color(f"k={s}") for s in da}
    rows = []
    for s in da:
        most = rank_channels(change[s])[:3]
        rows.append([f"k={s}", round(100 * float(change[s].mean()), 1),
                     ", ".join(f"{i} ({100 * change[s][i]:.0f}%)" for i in most),
                     ", ".join(f"{cos[s][i]:.2f}" for i in most),
                     round(bank_cosine(a.filters[s], b.filters[s]), 3),
                     round(bank_cosine(da[s], db[s]), 3)])
    mean = r.mean[k][c]
    panels = [("mean (both)", mean), ("A: dynamic part", da[k][c]), ("B: dynamic part", db[k][c])]
    pair = filter_panels(panels, shared_range([mean, da[k][c], db[k][c]], 1.0),
                         f"k={k}, channel {c}: changes {100 * change[k][c]:.0f}% of the filter "
                         f"from A to B · cosine {cos[k][c]:.2f}")
    return (overlays.overlay(a.image, a.label, a.palette),
            overlays.overlay(b.image, b.label, b.palette),
            pair, change_lines(change, cos, c, colors), rows, *responses(a, b, k, c))


def responses(a: Analysis, b: Analysis, k: int, c: int) -> list:
    """Channel c of branch k over A and over B: the DCM's output maps, on one colour scale."""
    maps = [x.branches[k][c].float().numpy() for x in (a, b)]
    top = max(float(m.max()) for m in maps)  # after ReLU: 0 is the least response
    return [activation_overlay(overlays.thumbnail(x.image, THUMB), m,
                               f"{name}: what k={k} channel {c} responds to"
                               + ("" if m.max() > 0 else " (nothing: 0 everywhere)"),
                               zmax=top or 1.0)
            for name, x, m in zip("AB", (a, b), maps, strict=True)]


ALL_BRANCHES = "all branches"
TRANSPLANTS = ("B with A's filters", "A with B's filters")  # the directions of `transplant`


@user_errors
@gpu
def transplant(key: str, image_a: str | None, image_b: str | None, branch: str, direction: str):
    """Run one image (the host) with the filters generated for the other (the donor), in one
    branch or all; beside it, the host with the static (mean) filters in the same branches."""
    if image_b is None:
        raise gr.Error("Add image B (upload, paste, or generate a scene and use it as B).")
    if direction not in TRANSPLANTS:
        raise gr.Error(f"direction must be one of {', '.join(TRANSPLANTS)}")
    a, b = see(key, image_a), see(key, image_b)
    host, donor = (b, a) if direction == TRANSPLANTS[0] else (a, b)
    h, d = host.analysis, donor.analysis
    ks = list(h.filters) if branch == ALL_BRANCHES else [int(str(branch).removeprefix("k="))]
    if any(k not in h.filters for k in ks):
        raise gr.Error(f"this model has no branch {branch} (its sizes are {h.filter_sizes})")
    r = ranking(key)
    moved, static = with_filters(host.model, h.image, [{k: d.filters[k] for k in ks},
                                                       {k: r.mean[k] for k in ks}])
    hn, dn = ("B", "A") if host is b else ("A", "B")
    where = "every branch" if branch == ALL_BRANCHES else f"branch {branch}"
    moved_share = float((moved.label != h.label).mean())
    static_share = float((static.label != h.label).mean())
    summary = (f"**{hn} with {dn}'s filters** in {where}: **{100 * moved_share:.1f}%** of "
               f"{hn}'s pixels change class. With the static (mean) filters in the same "
               f"branches: **{100 * static_share:.1f}%**. (Mean over {r.description}.)")
    return (overlays.overlay(h.image, h.label, h.palette),
            overlays.changes(h.image, h.label, static.label, h.palette),
            overlays.overlay(h.image, moved.label, h.palette),
            overlays.changes(h.image, h.label, moved.label, h.palette), summary)
