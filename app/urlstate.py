"""The view in the page's address: which model, image, tab and selections, so a link reopens it.

A link reads `?model=demo&example=context_1.png&tab=branches&c3=12&k=5&ch=7&ablation=remove&
parts=k%3D7`: the model key, the example image by file name (or `seed` and `zoom` of a generated
scene), the tab (a `gr.Tab` id of app/page.py), the channel picked in each Branches column (`c1`,
`c3`, ...), the Compare tab's filter size `k` and channel `ch`, the ablation, and the attribution
map's legend pick (`decides`: only the pixels that input decides) and image opacity
(`opacity`), and the Lesson's step (`step`, 1-8; a teacher's link opens that step on that image,
with the second image step 4 compares it to). An uploaded
image cannot travel in a link: the link then says so (`image=yours`): "Copy link" tells the one
who copies it, and the page it opens says that it shows an example instead. Unknown or bad
values are ignored (the default is used), so an old or hand-edited link still opens.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

import gradio as gr
import numpy as np
from PIL import Image

from app.core import models
from app.core.images import InputError, generate_scene, scene_dataset
from app.core.runtime import FILTER_SIZES
from app.views.attribution.ablation import ABLATIONS, PARTS
from app.views.attribution.explain import EVERY_INPUT
from app.views.lesson import steps as lesson
from app.views.sidebar import actions

TABS = ("segmentation", "branches", "attribution", "compare", "sweep", "about")  # page.py's tab ids
ZOOMS = (0.5, 2.0)  # the range of the scene zoom slider
YOURS = "yours"  # `image=yours`: the link was made while the user's own image was shown
NOT_IN_LINK = ("ℹ️ **The link you opened was made with an image of its sender's own**, which a "
               "link cannot carry: an example is shown instead. Upload the image to see its view.")


@dataclass(frozen=True)
class View:
    """What a link shows (every field has the app's start value as default)."""

    model: str = "demo"
    example: str | None = None  # an example image's file name
    seed: int | None = None  # or a generated scene (with its zoom)
    zoom: float = 1.0
    tab: str = TABS[0]
    channels: dict[int, int] = field(default_factory=dict)  # Branches: k -> channel
    k: int = 3  # Compare's filter size
    channel: int | None = None  # Compare's channel
    ablation: str = ABLATIONS[0]
    parts: tuple[str, ...] = ("k=7",)
    decides: str | None = None  # the attribution legend's input (None: every input)
    opacity: float = 0.0  # the attribution map's image opacity
    step: int = 0  # the Lesson's step (0: its introduction)
    yours: bool = False  # made while the user's own image was shown (a link cannot carry it)


def _int(value: str | None, low: int = 0, high: int = 1 << 31) -> int | None:
    try:
        number = int(str(value))
    except (TypeError, ValueError):
        return None
    return number if low <= number <= high else None


def _float(value, default: float, low: float, high: float) -> float:
    """`value` as a number clamped to [low, high]; `default` when it is not a number (or NaN)."""
    try:
        number = float(str(value))
    except (TypeError, ValueError):
        return default
    return default if math.isnan(number) else min(max(number, low), high)


def _step(value) -> int:
    """A Lesson step number, 0 (the introduction) when it is not one."""
    return _int(value, 0, len(lesson.STEPS)) or 0


def parse(params: Mapping[str, str], models: Sequence[str] = ("demo",)) -> View:
    """The view a link's query parameters ask for; what is missing or bad keeps its default."""
    view = View()
    get = params.get
    zoom = _float(get("zoom"), view.zoom, *ZOOMS)
    opacity = _float(get("opacity"), view.opacity, 0.0, 1.0)
    parts = tuple(p for p in str(get("parts", "")).split(",") if p in PARTS)
    k = _int(get("k"))
    return View(
        model=get("model") if get("model") in models else view.model,
        example=Path(get("example")).name if get("example") else None,
        seed=_int(get("seed")), zoom=zoom,
        tab=get("tab") if get("tab") in TABS else view.tab,
        channels={k: c for k in FILTER_SIZES if (c := _int(get(f"c{k}"))) is not None},
        k=k if k in FILTER_SIZES else view.k,
        channel=_int(get("ch")),
        ablation=get("ablation") if get("ablation") in ABLATIONS else view.ablation,
        parts=parts if "parts" in params else view.parts,
        decides=get("decides") if get("decides") in PARTS else None, opacity=opacity,
        step=_step(get("step")), yours=get("image") == YOURS and not get("example"))


def encode(view: View) -> str:
    """The query string of a view (without "?"); fields at their default are left out."""
    base = View()
    query: dict[str, str] = {"model": view.model}
    if view.example:
        query["example"] = view.example
    elif view.yours:
        query["image"] = YOURS
    elif view.seed is not None:
        query["seed"] = str(view.seed)
        if view.zoom != 1.0:
            query["zoom"] = f"{view.zoom:g}"
    query["tab"] = view.tab
    query.update({f"c{k}": str(c) for k, c in sorted(view.channels.items())})
    if view.k != base.k:
        query["k"] = str(view.k)
    if view.channel is not None:
        query["ch"] = str(view.channel)
    if view.ablation != base.ablation:
        query["ablation"] = view.ablation
    if view.parts != base.parts:
        query["parts"] = ",".join(view.parts)
    if view.decides:
        query["decides"] = view.decides
    if view.opacity != base.opacity:
        query["opacity"] = f"{view.opacity:g}"
    if view.step:
        query["step"] = str(view.step)
    return urlencode(query)


def source(image: str | None, seed: float | None, zoom: float | None,
           examples: Sequence[str], model: str | None = models.DEMO
           ) -> tuple[str | None, int | None, float]:
    """(example name, scene seed, zoom) of the image on screen: an example by its file name, a
    generated scene when its pixels are those of the scene the seed and zoom fields make for
    `model` (of its training data: `actions.make_scene`), else neither (an upload)."""
    if not image:
        return None, None, 1.0
    name = Path(image).name
    if name in {Path(e).name for e in examples}:
        return name, None, 1.0
    if seed is None or zoom is None:
        return None, None, 1.0
    try:
        with Image.open(image) as im:
            pixels = np.asarray(im.convert("RGB"))
        dataset = scene_dataset(actions.trained_on(model))[0]
        scene = generate_scene(int(seed), float(zoom), dataset=dataset)[0]
    except (OSError, InputError):  # unreadable, or no such scene (PatternMatch at zoom != 1)
        return None, None, 1.0
    if pixels.shape == scene.shape and np.array_equal(pixels, scene):
        return None, int(seed), float(zoom)
    return None, None, 1.0


def first_view_image(view: View, rows: Sequence[tuple[str, str | None]]
                     ) -> tuple[str | None, str | None] | None:
    """The (image, true mask) files a view opens with: the example it names, else (without a
    scene seed) the first example with a true mask, else the first example; None: generate the
    view's scene (seed 0 when there is no example at all)."""
    if view.example:
        named = [r for r in rows if Path(r[0]).name == view.example]
        if named:
            return named[0]
    if view.seed is not None or not rows:
        return None
    return next((r for r in rows if r[1]), rows[0])


# --- the page's events ----------------------------------------------------------------------------

def restorer(rows: Sequence[tuple[str, str | None]]):
    """The page-load action for these examples (Gradio passes the request by its annotation)."""
    def restore_view(request: gr.Request) -> tuple:
        return restore(request, rows)
    return restore_view


def restore(request: gr.Request | None, rows: Sequence[tuple[str, str | None]]) -> tuple:
    """Page load: the view of the address (the first example without one), as the values of
    [model, image, true mask, seed, zoom, tabs, tab, c1, c3, c5, c7, k, ch, ablation, parts,
    legend, opacity, lesson step, image B, lesson target, link note]. The step's words follow
    from the image's change; a step that compares two images gets the Lesson's own image B; the
    note says when the link was made with the sender's own image."""
    params = dict(request.query_params) if request is not None else {}
    view = parse(params, [key for _, key in models.choices()])
    files = first_view_image(view, rows)
    if files is None:
        seed = view.seed or 0
        image, truth = actions.make_scene(seed, view.zoom, view.model)
    else:
        (image, truth), seed = files, view.seed or 0
    channels = [view.channels.get(k, gr.skip()) for k in FILTER_SIZES]
    return (view.model, image, truth, seed, view.zoom, gr.Tabs(selected=view.tab), view.tab,
            *channels, view.k, gr.skip() if view.channel is None else view.channel,
            view.ablation, list(view.parts),
            gr.Radio(choices=[EVERY_INPUT, *PARTS], value=view.decides or EVERY_INPUT),
            view.opacity, view.step, lesson.second_image(view.step, key=view.model),
            lesson.target(view.step), gr.Markdown(NOT_IN_LINK if view.yours else "",
                                                  visible=view.yours))


def link(model: str, image: str | None, seed: float | None, zoom: float | None, tab: str,
         c1, c3, c5, c7, k, channel, ablation: str, parts: list[str] | None,
         decides: str | None = None, opacity: float | None = 0.0, step: int | None = 0,
         examples: Sequence[str] = ()) -> str:
    """The query string of what is on screen."""
    example, scene, scene_zoom = source(image, seed, zoom, examples, model)
    yours = bool(image) and example is None and scene is None
    channels = {size: c for size, value in zip(FILTER_SIZES, (c1, c3, c5, c7), strict=True)
                if (c := _int(value)) is not None}
    return encode(View(model=model or "demo", example=example, seed=scene, zoom=scene_zoom,
                       tab=tab if tab in TABS else TABS[0], channels=channels,
                       k=_int(k) if _int(k) in FILTER_SIZES else 3, channel=_int(channel),
                       ablation=ablation if ablation in ABLATIONS else ABLATIONS[0],
                       parts=tuple(p for p in parts or () if p in PARTS),
                       decides=decides if decides in PARTS else None,
                       opacity=_float(opacity, 0.0, 0.0, 1.0),
                       step=_step(step), yours=yours))


# Run in the page after `link`: the address bar shows the view (no reload, no history entry).
SHOW_LINK = """(query) => {
  const url = location.pathname + (query ? "?" + query : "");
  if (location.pathname + location.search !== url) history.replaceState(null, "", url);
}"""
# The "Copy link" button: the address (kept up to date by SHOW_LINK), to the clipboard; it says
# so on the button, and that the user's own image is not in it.
COPY_LINK = """() => {
  const url = location.href;
  const done = () => {
    const b = document.querySelector("#copy-link");
    if (!b) return;
    const was = b.dataset.label || b.textContent;
    b.dataset.label = was;
    const yours = new URLSearchParams(location.search).get("image") === "yours";
    b.textContent = yours ? "✓ copied, without your image" : "✓ link copied";
    setTimeout(() => { b.textContent = was; }, yours ? 4000 : 1500);
  };
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(url).then(done, () => window.prompt("Copy this link:", url));
  } else { window.prompt("Copy this link:", url); }
}"""
