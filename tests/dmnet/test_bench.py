import json

import pytest
import torch

from dmnet import bench


def test_bench_case_rows():
    rows = bench.bench_case("dmnet_r18w32-d8_1xb8-7k_shapes-128x128", (64, 64),
                            torch.device("cpu"), 1, ["reference", "fp32", "inspect"])
    assert [r["variant"] for r in rows] == ["reference", "fp32", "inspect"]
    assert all(r["ms"] > 0 and r["peak_mb"] > 0 and r["size"] == "64x64" for r in rows)


@pytest.mark.parametrize("mode, kw", [("slide", dict(mode="slide")),
                                      ("ms+flip", dict(scales=(0.5, 1.0), flip=True))])
def test_mode_case_rows(mode, kw, monkeypatch, capsys):
    # The demo model on 160x200: 2x2 windows of its 128x128 crop; 4 views for ms+flip.
    monkeypatch.setitem(bench.MODE_CASES, mode,
                        ("dmnet_r18w32-d8_1xb8-7k_shapes-128x128", (160, 200), kw))
    # (the default adds `compiled`, minutes of compile: test_fast.py compiles a model)
    bench.main(["--case", mode, "--device", "cpu", "--repeats", "1",
                "--variants", "reference,fp32,batched"])
    rows = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert [r["variant"] for r in rows] == ["reference", "fp32", "batched"]
    assert all(r["ms"] > 0 and r["size"] == f"160x200 {mode}" for r in rows)
