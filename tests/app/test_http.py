"""The real app over HTTP with gradio_client: every named endpoint, and bad inputs."""

import html
import json
import pickle
import urllib.request

import numpy as np
import pytest
import torch
from gradio_client import handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from app.core.dynamics import SCENES

from .conftest import serve

ENDPOINTS = {"/load_model", "/upload_checkpoint", "/generate_scene", "/segment", "/branches",
             "/branch_column", "/removals", "/attribution", "/roles", "/ablate", "/compare",
             "/transplant", "/sweep"}


def test_every_main_action_is_a_named_endpoint(client):
    named = set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
    assert ENDPOINTS <= named


def test_the_served_page_cancels_nothing_and_heavy_events_share_the_model_slots(server):
    """Stop ends the events on the server (`app.core.flow`): the page served over HTTP has no
    cancelling event; the heavy events are the model group, unlimited in Gradio's queue (so
    Stop reaches each) and bounded by the wrapper's slots."""
    config = json.load(urllib.request.urlopen(server + "/config"))  # noqa: S310 -- local
    assert not [d for d in config["dependencies"] if d.get("cancels")]
    from app.page import build

    fns = build().fns.values()  # the server-side settings of the same app
    heavy = [fn for fn in fns if fn.api_name in ("segment", "branches", "compare", "sweep")]
    assert len(heavy) == 4
    assert all(fn.concurrency_id == "model" and fn.concurrency_limit is None for fn in heavy)
    stops = [fn for fn in fns if getattr(fn.fn, "__name__", "") in ("stop_all", "stop_sweep")]
    assert len(stops) == 2 and not any(fn.queue for fn in stops)


def test_generate_scene_then_segment_with_its_true_mask(client):
    image, mask = client.predict(3, 1.0, api_name="/generate_scene")
    assert Image.open(image).size == (128, 128) and Image.open(mask).mode == "P"
    overlay, highlight, bars, table, info = client.predict(
        "demo", handle_file(image), handle_file(mask), 0.6, "(none)", api_name="/segment")
    assert overlay["value"]["image"] and overlay["value"]["annotations"]
    # the palette reaches the page by a UI-only event: a class named "path" (ADE20K) in a
    # colour map made the client take it for a file (test_http_classes.py)
    assert "color_map" not in overlay
    assert table["headers"] == ["class", "pixels %", "IoU %"]
    assert sum(row[1] for row in table["data"]) == pytest.approx(100, abs=0.1)
    assert "128×128 image" in info and "mIoU against the true mask" in info
    assert highlight["choices"][0] == ["(none)", "(none)"] and "value" not in highlight  # kept


def test_branches_gives_every_column(client, scene):
    out = client.predict("demo", handle_file(str(scene[0])), None, None, None, None,
                         api_name="/branches")
    assert len(out) == 1 + 2 + 4 * 5  # fused, the x column, four branch columns
    dropdown = out[3]  # k=1 column's channel picker
    assert len(dropdown["choices"]) == 16 and dropdown["choices"][0][0].startswith("ch ")
    assert all(o for o in out)
    column = client.predict("demo", handle_file(str(scene[0])), 5, 3, api_name="/branch_column")
    assert "value" not in column[0] and len(column) == 5  # channel 3 exists: the pick stays
    assert "ch 3 (#" in json.dumps(column[1])  # the filter panel of channel 3
    removals = client.predict("demo", handle_file(str(scene[0])), handle_file(str(scene[1])),
                              api_name="/removals")
    assert len(removals) == 10 and "removing **k=3** changes" in removals[5]


def test_attribution_and_ablation(client, scene):
    image, mask = (handle_file(str(p)) for p in scene)
    dominance, shown, table, legend, bars, readout = client.predict(
        "demo", image, 0.0, "all classes", api_name="/attribution")
    assert "data-map='#attribution-map'" in readout  # every cell's terms, for the hover
    table = table["value"]  # an update: its headers are the model's inputs
    assert table["headers"] == ["class", "pixels %", "x", "k=1", "k=3", "k=5", "k=7"]
    assert sum(table["data"][0][2:]) == pytest.approx(100, abs=0.5)  # all classes
    roles, plot, note = client.predict("demo", image, mask, api_name="/roles")
    assert roles["value"]["headers"][0] == "objects · count" and "objects" in note
    changed, rows, summary, shown, readout = client.predict(
        "demo", image, mask, "keep only", ["k=3"], 0.3, "all classes", api_name="/ablate")
    assert "computed from **k=3**" in summary and "mIoU" in summary
    assert "without x, k=1, k=5, k=7" in html.unescape(readout)
    assert rows["headers"][0] == "class"
    changed, rows, summary, shown, readout = client.predict(
        "demo", image, mask, "static filters", [], 0.3, "all classes", api_name="/ablate")
    assert f"mean over the first {SCENES} " in summary and "validation scenes" in summary
    assert "mIoU" in summary


def test_compare_two_images(client, scene, photo):
    out = client.predict("demo", handle_file(str(scene[0])), handle_file(str(photo)), 5, None,
                         api_name="/compare")
    pred_a, pred_b, pair, lines, table, act_a, act_b = out
    from app.views.compare import TABLE

    assert table["headers"] == list(TABLE)
    assert [row[0] for row in table["data"]] == ["k=1", "k=3", "k=5", "k=7"]
    for _, mean, most, cosines, raw, dynamic in table["data"]:
        changes = [float(part.split("(")[1].rstrip("%)")) for part in most.split(", ")]
        assert len(changes) == 3 and changes == sorted(changes, reverse=True)  # ranked by it
        assert 0 <= mean <= changes[0] + 0.5 and changes[0] <= 200  # a mean, of the same scale
        assert all(-1 <= float(c) <= 1 for c in cosines.split(", "))
        assert -1 <= raw <= 1 and -1 <= dynamic <= 1
    assert "changes" in pair["plot"] and "% of the filter" in lines["plot"]
    assert "A: what k=5 channel" in act_a["plot"] and "B: what k=5 channel" in act_b["plot"]


def test_sweep_streams_every_scale(client, scene):
    job = client.submit("demo", handle_file(str(scene[0])), handle_file(str(scene[1])),
                        None, None, None, None, api_name="/sweep")
    outputs = list(job)
    assert len(outputs) == 6
    assert outputs[0][2] == "1/6 scales done" and outputs[-1][2].startswith("Done: 6 scales")
    assert outputs[-1][0].count("class='sw-frame'") == 6  # one frame per scale in the view
    assert "the Segmentation tab's prediction (the same pass)" in outputs[-1][0]


def test_bad_images_get_clear_messages(client, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"definitely not a png")
    with pytest.raises(AppError, match="broken.png is not an image"):
        client.predict("demo", handle_file(str(bad)), None, 0.6, "(none)", api_name="/segment")

    huge = tmp_path / "huge.png"
    Image.fromarray(np.zeros((1500, 2400, 3), np.uint8)).save(huge)
    info = client.predict("demo", handle_file(str(huge)), None, 0.6, "(none)",
                          api_name="/segment")[4]
    assert "downscaled from 2400×1500 to 192×120" in info

    deep = tmp_path / "deep.png"
    Image.fromarray((np.arange(4096, dtype=np.uint16).reshape(64, 64) * 16)).save(deep)
    info = client.predict("demo", handle_file(str(deep)), None, 0.6, "(none)",
                          api_name="/segment")[4]
    assert "16-bit grayscale image scaled to 8 bits" in info

    with pytest.raises(AppError, match="true mask"):
        client.predict("demo", handle_file(str(deep)), handle_file(str(huge)), 0.6, "(none)",
                       api_name="/segment")


class Exploit:
    def __reduce__(self):
        return (print, ("pwned",))


def test_bad_checkpoints_get_clear_messages(client, tmp_path):
    other = tmp_path / "classifier.pth"
    torch.save({"fc.weight": torch.zeros(10, 512)}, other)
    with pytest.raises(AppError, match="classifier.pth is not a DMNet checkpoint"):
        client.predict(handle_file(str(other)), api_name="/upload_checkpoint")
    evil = tmp_path / "evil.pth"
    with open(evil, "wb") as f:
        pickle.dump({"state_dict": Exploit()}, f, protocol=2)
    with pytest.raises(AppError, match="evil.pth is unsafe"):
        client.predict(handle_file(str(evil)), api_name="/upload_checkpoint")
    with pytest.raises(AppError, match="unknown model"):
        client.predict("no-such-model", api_name="/load_model")


def test_without_the_demo_checkpoint_the_app_starts_and_says_how_to_make_it(tmp_path):
    with serve(tmp_path / "absent.pth", None, tmp_path / "app.log") as url:
        config = json.load(urllib.request.urlopen(url + "/config"))  # noqa: S310 -- local
    info = next(c for c in config["components"] if c.get("props", {}).get("elem_id") ==
                "model-info")
    assert "demo checkpoint is missing" in info["props"]["value"]
    assert "make demo-checkpoint" in info["props"]["value"]
