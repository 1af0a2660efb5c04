"""Links: a view survives encode -> parse, bad values fall back, and the image on screen is
named by its example or scene seed."""

import numpy as np
from PIL import Image

from app import urlstate
from app.core import gates
from app.core.images import generate_scene
from app.urlstate import View


def test_a_view_round_trips_through_its_query_string():
    view = View(model="upload:abc", seed=12, zoom=1.5, tab="compare", channels={3: 7, 7: 0},
                k=5, channel=9, ablation="keep only", parts=("x", "k=1"), decides="k=7",
                opacity=0.45, step=4)
    query = urlstate.encode(view)
    params = dict(p.split("=", 1) for p in query.split("&"))
    from urllib.parse import unquote_plus

    params = {k: unquote_plus(v) for k, v in params.items()}
    assert urlstate.parse(params, ["demo", "upload:abc"]) == view


def test_an_example_is_named_instead_of_a_seed():
    query = urlstate.encode(View(example="shapes_1.png", seed=3, tab="branches"))
    assert query == "model=demo&example=shapes_1.png&tab=branches"
    assert urlstate.parse({"example": "../../etc/shapes_1.png"}).example == "shapes_1.png"


def test_bad_values_keep_their_defaults():
    view = urlstate.parse({"model": "nope", "tab": "secret", "c3": "-4", "c5": "x", "k": "4",
                           "ch": "1e9999", "zoom": "9", "ablation": "drop", "parts": "k=9,x",
                           "seed": "many", "decides": "k=2", "opacity": "lots", "step": "9"})
    assert view == View(zoom=2.0, parts=("x",))  # zoom clamped, known parts kept
    assert urlstate.parse({}) == View()
    assert urlstate.parse({"parts": ""}).parts == ()  # an empty ablation is a choice
    assert urlstate.parse({"opacity": "7"}).opacity == 1.0  # clamped
    assert urlstate.parse({"step": "-1"}).step == 0 and urlstate.parse({"step": "8"}).step == 8


def test_the_source_of_the_image_on_screen(tmp_path):
    scene = tmp_path / "image.png"
    Image.fromarray(generate_scene(4, 1.25)[0]).save(scene)
    assert urlstate.source(str(scene), 4, 1.25, []) == (None, 4, 1.25)
    assert urlstate.source(str(scene), 5, 1.25, []) == (None, None, 1.0)  # another seed
    named = tmp_path / "shapes_2.png"
    named.write_bytes(scene.read_bytes())
    assert urlstate.source(str(named), 4, 1.25, ["/x/shapes_2.png"]) == ("shapes_2.png", None, 1.0)
    photo = tmp_path / "mine.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(photo)
    assert urlstate.source(str(photo), 0, 1.0, []) == (None, None, 1.0)  # an upload
    assert urlstate.source(None, 0, 1.0, []) == (None, None, 1.0)


def test_the_first_view_opens_an_example_with_a_mask():
    rows = [("/e/astronaut.jpg", None), ("/e/shapes_1.png", "/e/shapes_1_mask.png")]
    assert urlstate.first_view_image(View(), rows) == rows[1]
    assert urlstate.first_view_image(View(example="astronaut.jpg"), rows) == rows[0]
    assert urlstate.first_view_image(View(example="gone.png"), rows) == rows[1]
    assert urlstate.first_view_image(View(seed=3), rows) is None  # generate the scene
    assert urlstate.first_view_image(View(), []) is None
    assert urlstate.first_view_image(View(), rows[:1]) == rows[0]


def test_link_describes_what_is_on_screen(tmp_path):
    image = tmp_path / "shapes_1.png"
    Image.fromarray(generate_scene(0, 1.0)[0]).save(image)
    query = urlstate.link("demo", str(image), 0, 1.0, "attribution", 3, None, "12", 0, 7,
                          "9", "static filters", [], examples=[str(image)])
    assert query == ("model=demo&example=shapes_1.png&tab=attribution&c1=3&c5=12&c7=0&k=7"
                     "&ch=9&ablation=static+filters&parts=")
    legend = urlstate.link("demo", str(image), 0, 1.0, "attribution", None, None, None, None, 3,
                           None, "remove", ["k=7"], "k=5", 0.3, examples=[str(image)])
    assert legend.endswith("tab=attribution&decides=k%3D5&opacity=0.3")
    every = urlstate.link("demo", str(image), 0, 1.0, "attribution", None, None, None, None, 3,
                          None, "remove", ["k=7"], "every input", 0, examples=[str(image)])
    assert "decides" not in every and "opacity" not in every
    lesson = urlstate.link("demo", str(image), 0, 1.0, "compare", None, None, None, None, 3,
                           None, "remove", ["k=7"], None, 0, 4, examples=[str(image)])
    assert lesson.endswith("tab=compare&step=4")
    assert "step" not in urlstate.link("demo", str(image), 0, 1.0, "compare", None, None, None,
                                       None, 3, None, "remove", ["k=7"], None, 0, 0)


def test_a_link_made_with_the_users_own_image_says_so(tmp_path):
    """An upload cannot travel in a link: the link says so, and the page it opens shows an
    example with a note (the last output of `restore`)."""
    from types import SimpleNamespace
    from urllib.parse import parse_qsl

    photo = tmp_path / "mine.png"
    Image.fromarray(np.full((8, 8, 3), 90, np.uint8)).save(photo)
    query = urlstate.link("demo", str(photo), 0, 1.0, "branches", None, None, None, None, 3,
                          None, "remove", ["k=7"])
    assert query == "model=demo&image=yours&tab=branches"
    view = urlstate.parse(dict(parse_qsl(query)))
    assert view.yours and view.example is None and view.seed is None
    scene = tmp_path / "shapes_1.png"
    Image.fromarray(generate_scene(0, 1.0)[0]).save(scene)
    assert "image" not in urlstate.link("demo", str(scene), 0, 1.0, "branches", None, None,
                                        None, None, 3, None, "remove", ["k=7"])  # a scene's
    assert not urlstate.parse({"image": "yours", "example": "shapes_1.png"}).yours
    rows = [(str(scene), None)]
    opened = urlstate.restore(SimpleNamespace(query_params=dict(parse_qsl(query))), rows)
    assert opened[1] == str(scene)  # the example instead
    note = opened[-1]
    assert note.visible is True and "cannot carry" in note.value
    plain = urlstate.restore(SimpleNamespace(query_params={"tab": "branches"}), rows)[-1]
    assert plain.visible is False


def test_a_lesson_step_link_brings_the_second_image_its_step_compares():
    from app.views.lesson import steps as lesson

    compare = [n for n, step in enumerate(lesson.STEPS, 1) if step.tab == "compare"]
    assert compare == [4]
    image_b = lesson.second_image(4)
    assert image_b.shape[-1] == 3 and np.array_equal(image_b, generate_scene(1, 1.0)[0])
    assert not isinstance(lesson.second_image(3), np.ndarray)  # other steps leave B alone
    assert not isinstance(lesson.second_image(0), np.ndarray)


def test_only_masks_of_examples_and_scenes_are_forgotten():
    rows = [("/e/shapes_1.png", "/e/shapes_1_mask.png")]
    assert gates.example_mask("/tmp/gradio/abc/shapes_1_mask.png", rows)
    assert gates.example_mask("/tmp/scenes/scene_3_x1_mask.png", rows)
    assert not gates.example_mask("/tmp/gradio/abc/my_labels.png", rows)
    assert not gates.example_mask(None, rows)
