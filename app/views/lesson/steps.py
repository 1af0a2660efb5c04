"""The Lesson: DMNet in eight short steps, told on the image that is loaded.

Each step names the idea, says it in plain words (with this image's and this model's numbers),
ends with a one-line takeaway, and opens the live view that shows it: a tab of app/page.py (by its
`gr.Tab` id) and an element in it (by its elem_id; the page scrolls to it when it is there).
Step 4 gives the Compare tab a second image when it has none; step 6 runs an ablation.
"""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from app.core import models
from app.core.runtime import USER_ERRORS, ranking, see
from app.views.sidebar.actions import make_scene


@dataclass(frozen=True)
class Step:
    title: str
    tab: str  # the gr.Tab id the step opens
    target: str  # elem_id to scroll to ("" = the top of the tab)
    words: str  # markdown; {names} are filled by `facts`
    takeaway: str


STEPS = (
    Step("The pooling grid", "branches", "column-3",
         "The network first turns your {W}×{H} image into a grid of {w8}×{h8} *feature cells*: "
         "each cell is a list of {Cx} numbers that describe what is around that spot. A DMNet "
         "branch with filter size k cuts this grid into k×k bins and averages each bin. Look "
         "at the **pooling grid** in the k={k} column: each coloured bin (about {bin} cells) is "
         "summed up into one short description of that part of your image.",
         "Each branch summarises the whole image on a coarse grid: 1×1, 3×3, 5×5 or 7×7."),
    Step("A filter made from the image", "branches", "column-3",
         "A 1×1 convolution, `filter_gen_conv`, turns each bin's summary into one tap of a "
         "k×k filter, for each of the {C} channels: the top-left tap comes from the top-left "
         "bin, and so on. The **heatmap** in the k={k} column is the filter this image got for "
         "channel {top} (the channel whose filter changes most from image to image). The "
         "filter then slides over the (reduced) features, like any convolution.",
         "The filter is not stored in the model: it is computed from your image."),
    Step("Learned once, or made for each image?", "about", "",
         "Training learned these weights, and they are the same for every image: the "
         "backbone ({backbone} weights), and in each branch `filter_gen_conv` (the filter "
         "maker, {gen} weights in all branches) and `input_redu_conv` (which shrinks the "
         "features to {C} channels, {redu} weights), then the `bottleneck` ({bottleneck}) and "
         "the classifier `conv_seg` ({seg}). What is **made for each image** are the "
         "filters themselves: {generated} numbers for this image ({per_k}).",
         "Training learns how to make filters; every image gets its own."),
    Step("Two images, two sets of filters", "compare", "compare-pair",
         "The Compare tab runs a second image B through the same model (a generated scene is "
         "put there if there is none). The same branch and channel get a different filter for "
         "B. Part of each filter is the same for every image (its average over many images); "
         "the rest, the **input-dependent part**, is what changes with the image.",
         "Different image, different filters: that is what *dynamic* means."),
    Step("Big objects, small objects", "attribution", "roles-table",
         "Which branch decides the pixels of large objects, and which those of small ones? "
         "With a true mask (generated scenes and the shapes examples have one), the objects "
         "are sorted by size and each size gets the branch that decided most of its pixels. "
         "Compare a coarse grid (k=1) with a fine one (k=7).",
         "Branches that see the image at different grid sizes take on different objects."),
    Step("Take a branch away", "attribution", "ablation-changes",
         "Here the k=7 branch is removed: its output is set to zero and the rest of the "
         "network runs again. The changed pixels show what that branch did for this image; "
         "point at one to see its class before and after, and what each input had said. "
         "Try other branches, or **static filters** (every generated filter replaced by its "
         "average), then press Ablate.",
         "A branch matters where removing it changes the prediction."),
    Step("Zoom the image", "sweep", "sweep-animation",
         "The scale sweep feeds your image at 0.5× to 2× its size. The pooled bins then hold "
         "other things, so the filters change with the zoom. Press **Run the scale sweep** "
         "and move through the scales.",
         "When objects get bigger or smaller, the filters follow."),
    Step("Fusion into the prediction", "attribution", "attribution-map",
         "Finally the `bottleneck`, a 3×3 convolution, mixes the backbone features x with the "
         "outputs of the {n} branches, and `conv_seg` gives each pixel a score per class: the "
         "highest wins. Because the mix is a sum, each pixel's decision splits exactly into "
         "one part per input. The map shows which input pushed hardest for each pixel; "
         "point at a pixel and the bars beside the map show every input's part.",
         "The prediction is a sum of five contributions: you can see who decided each pixel."),
)
INTRO = ("**Lesson: how DMNet works, in {n} short steps, on your image.** Press **Next** to "
         "start. Each step opens the view that shows its idea.")


def _count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def facts(key: str, image: str | None) -> dict[str, object]:
    """The numbers the steps quote, for this model and image (what is unknown stays a word)."""
    out: dict[str, object] = dict(W="?", H="?", w8="?", h8="?", Cx="many", C="many", k=3,
                                  bin="several", top="?", generated="many", per_k="", n=4)
    try:
        model = models.get_model(key)
    except USER_ERRORS:
        return out
    head = model.decode_head
    sizes = head.filter_sizes
    k = 3 if 3 in sizes else sizes[0]
    c = model.preset.head_channels
    out.update(k=k, C=c, n=len(sizes), backbone=f"{_count(model.backbone):,}",
               gen=f"{sum(_count(m.filter_gen_conv) for m in head.dcm_modules):,}",
               redu=f"{sum(_count(m.input_redu_conv) for m in head.dcm_modules):,}",
               bottleneck=f"{_count(head.bottleneck):,}", seg=f"{_count(head.conv_seg):,}",
               generated=f"{sum(c * s * s for s in sizes):,}",
               per_k=", ".join(f"k={s}: {c}×{s}×{s}" for s in sizes),
               Cx=head.bottleneck.conv.in_channels - len(sizes) * c)
    if not image:
        return out
    try:
        a = see(key, image).analysis
        out["top"] = int(ranking(key).order[k][0])
    except (*USER_ERRORS, gr.Error):
        return out
    h8, w8 = a.feature_size
    out.update(H=a.image.shape[0], W=a.image.shape[1], h8=h8, w8=w8,
               bin=f"{h8 / k:.0f}×{w8 / k:.0f}")
    return out


def page(number: int, key: str, image: str | None) -> str:
    """The markdown of step `number` (0 = the introduction)."""
    if number <= 0:
        return INTRO.format(n=len(STEPS))
    step = STEPS[number - 1]
    words = step.words.format_map(_Missing(facts(key, image)))
    end = "" if step.title.endswith(("?", "!", ".")) else "."  # "...each image?" takes no dot
    return (f"**Step {number} of {len(STEPS)}: {step.title}{end}** {words}\n\n"
            f"➜ *{step.takeaway}*")


class _Missing(dict):
    def __missing__(self, name: str) -> str:
        return "?"


def go(number: int, delta: int, key: str, image: str | None, image_b: str | None,
       seed_b: float | None) -> tuple:
    """Next (delta 1) or back (-1): the step number, its words, the tab to open (and the tab
    state), the element to scroll to, image B for step 4, and the ablation for step 6."""
    number = min(max(int(number or 0) + int(delta), 0), len(STEPS))
    if number == 0:
        return (0, page(0, key, image), gr.skip(), gr.skip(), "", gr.skip(), gr.skip(),
                gr.skip())
    step = STEPS[number - 1]
    b = second_image(number, seed_b, key) if not image_b else gr.skip()
    ablation = number == 6
    return (number, page(number, key, image), gr.Tabs(selected=step.tab), step.tab,
            target(number), b, "remove" if ablation else gr.skip(),
            ["k=7"] if ablation else gr.skip())


def stepper(delta: int):
    """The action of Next (delta 1) or Back (-1): `go` with that delta, without the step's
    words, which the page writes in one place (`page`, on a new step or a new image), so that
    a late one cannot show another step's words."""
    def step(number: int, key: str, image: str | None, image_b: str | None, seed_b: float | None):
        out = go(number, delta, key, image, image_b, seed_b)
        return out[:1] + out[2:]
    step.__name__ = "lesson_next" if delta > 0 else "lesson_back"
    return step


def step_of(number: int) -> Step | None:
    """Step `number` (1-based); None for the introduction or a number past the last step."""
    return STEPS[number - 1] if 0 < number <= len(STEPS) else None


def target(number: int) -> str:
    """What SCROLL brings into view for step `number`: its element, "top" (the top of its tab),
    or "" at the introduction."""
    step = step_of(number)
    return "" if step is None else step.target or "top"


def second_image(number: int, seed: float | None = None, key: str = models.DEMO):
    """The second image of a step that compares two (a generated scene of the model `key`'s data:
    `seed`, else 1), or gr.skip() for the other steps."""
    step = step_of(number)
    if step is None or step.tab != "compare":
        return gr.skip()
    return make_scene(int(seed or 1), 1.0, key)[0]


def require_ablation_step(number: int) -> None:
    """Let the event chain run the ablation only at the step that removes a branch."""
    if int(number or 0) != 6:
        raise gr.Error("not the ablation step", visible=False, print_exception=False)


# Run in the page after `go`: scroll to the step's element once its tab has drawn it, its top
# just below the lesson panel, which stays on top of the page during the steps ("following",
# app/style.py's CSS) and not at the introduction (target ""). "top": the top of the page.
SCROLL = """(target) => {
  const panel = document.getElementById("lesson-panel");
  if (panel) panel.classList.toggle("following", !!target);
  if (!target || target === "top") { window.scrollTo({top: 0, behavior: "smooth"}); return; }
  let tries = 0;
  const find = () => {
    const el = document.getElementById(target);
    if (el && el.offsetParent !== null) {
      const below = panel ? panel.getBoundingClientRect().height + 8 : 0;
      const top = el.getBoundingClientRect().top + window.scrollY - below;
      window.scrollTo({top: Math.max(top, 0), behavior: "smooth"});
    } else if (++tries < 20) setTimeout(find, 150);
  };
  setTimeout(find, 100);
}"""
