"""The Lesson: every step opens a tab and an element the app has, in words filled with the
loaded model's and image's numbers; next / back stay within the steps."""

import gradio as gr
import pytest

from app import page, urlstate
from app.views.lesson import steps as lesson

# Elements of the attribution tab's rebuilt views ("branch roles by object size", the
# attribution map and the changed pixels at display size), merged from another branch.
LATER = {"roles-table", "ablation-changes", "attribution-map"}


@pytest.fixture(scope="module")
def built():
    demo = page.build()
    blocks = list(demo.blocks.values())
    tabs = {b.id for b in blocks if isinstance(b, gr.Tab)}
    ids = {b.elem_id for b in blocks if getattr(b, "elem_id", None)}
    return tabs, ids


def test_every_step_opens_a_tab_and_an_element_of_the_app(built):
    tabs, ids = built
    assert set(urlstate.TABS) == tabs  # links name the same tabs
    assert len(lesson.STEPS) == 8
    for step in lesson.STEPS:
        assert step.tab in tabs, step
        assert not step.target or step.target in ids | LATER, step
        assert step.takeaway and len(step.takeaway) < 100  # one line


def test_the_words_quote_this_model_and_image(demo_env, scene):
    text = lesson.page(1, "demo", str(scene[0]))
    assert "Step 1 of 8" in text and "128×128 image" in text and "24×24" in text
    assert "?" not in text.split("➜")[0]
    third = lesson.page(3, "demo", str(scene[0]))
    assert "filter_gen_conv" in third and "input_redu_conv" in third
    assert "16×1×1, k=3: 16×3×3" in third  # the tiny model's head is 16 channels wide
    generated = sum(16 * k * k for k in (1, 3, 5, 7))
    assert f"{generated:,} numbers for this image" in third


def test_a_title_ends_in_one_mark(demo_env, scene):
    """"Learned once, or made for each image?." read as a typo: a question takes no dot."""
    for number in range(1, len(lesson.STEPS) + 1):
        title = lesson.page(number, "demo", str(scene[0])).split("**")[1]
        assert title[-1] in ".?!" and title[-2] not in ".?!", title


def test_without_an_image_the_words_still_read(demo_env):
    text = lesson.page(2, "demo", None)
    assert "Step 2 of 8" in text and "{" not in text


def test_next_and_back_stay_within_the_steps(demo_env, scene):
    image = str(scene[0])
    assert lesson.go(0, -1, "demo", image, None, 1)[0] == 0
    assert lesson.go(8, 1, "demo", image, None, 1)[0] == 8
    number, words, tabs, tab, target, b, mode, parts = lesson.go(0, 1, "demo", image, None, 1)
    assert (number, tab, target) == (1, "branches", "column-3") and tabs.selected == "branches"
    step4 = lesson.go(3, 1, "demo", image, None, 2)
    assert step4[3] == "compare" and step4[5].shape[-1] == 3  # a scene B was made
    assert isinstance(lesson.go(3, 1, "demo", image, image, 2)[5], dict)  # B kept (a skip)
    step6 = lesson.go(5, 1, "demo", image, None, 1)
    assert step6[6:] == ("remove", ["k=7"])
    assert lesson.go(2, 1, "demo", image, None, 1)[4] == "top"  # step 3: the top of its tab
    assert lesson.go(1, -1, "demo", image, None, 1)[4] == ""  # the introduction: no lesson on
    assert [lesson.target(n) for n in (0, 3, 4, 9)] == ["", "top", "compare-pair", ""]
    lesson.require_ablation_step(6)
    with pytest.raises(gr.Error):
        lesson.require_ablation_step(5)
