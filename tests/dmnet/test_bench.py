import torch

from dmnet.bench import bench_case


def test_bench_case_rows():
    rows = bench_case("dmnet_r18w32-d8_1xb8-7k_shapes-128x128", (64, 64), torch.device("cpu"), 1,
                      ["reference", "fp32", "inspect"])
    assert [r["variant"] for r in rows] == ["reference", "fp32", "inspect"]
    assert all(r["ms"] > 0 and r["peak_mb"] > 0 and r["size"] == "64x64" for r in rows)
