"""Loss, learning rate and mIoU curves of a run, from its metrics.jsonl, as one plotly HTML file.

    python -m training.plot work_dirs/shapes            # writes work_dirs/shapes/curves.html
"""

from __future__ import annotations

import argparse
from pathlib import Path

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .runlog import read_jsonl


def read_metrics(work_dir: Path) -> tuple[list[dict], list[dict]]:
    """(training records, validation records) of `work_dir/metrics.jsonl`."""
    records = read_jsonl(work_dir / "metrics.jsonl")
    return [r for r in records if "loss" in r], [r for r in records if "mIoU" in r]


def figure(train: list[dict], val: list[dict], title: str) -> go.Figure:
    fig = make_subplots(rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.06,
                        subplot_titles=("loss", "learning rate", "validation (%)"))
    it = [r["iter"] for r in train]
    for key in ("loss", "decode.loss_ce", "aux.loss_ce"):
        fig.add_trace(go.Scatter(x=it, y=[r[key] for r in train], name=key), row=1, col=1)
    fig.add_trace(go.Scatter(x=it, y=[r["lr"] for r in train], name="lr"), row=2, col=1)
    for key in ("mIoU", "mAcc", "aAcc"):
        fig.add_trace(go.Scatter(x=[r["iter"] for r in val], y=[r[key] for r in val],
                                 name=key, mode="lines+markers"), row=3, col=1)
    fig.update_xaxes(title_text="iteration", row=3, col=1)
    fig.update_layout(title=title, height=900, template="plotly_white")
    return fig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("work_dir", type=Path)
    parser.add_argument("--out", type=Path, help="default: WORK_DIR/curves.html")
    args = parser.parse_args()
    train, val = read_metrics(args.work_dir)
    out = args.out or args.work_dir / "curves.html"
    figure(train, val, str(args.work_dir)).write_html(out, include_plotlyjs=True)
    print(f"wrote {out} ({len(train)} training and {len(val)} validation points)")


if __name__ == "__main__":
    main()
