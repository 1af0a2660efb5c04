"""The DMNet architecture as an SVG diagram (the "About DMNet" tab), drawn from a few boxes."""

from __future__ import annotations

from html import escape

from app.core.overlays import PART_COLORS, hex_color

W, H = 980, 450


def _box(x: int, y: int, w: int, h: int, text: str, fill: str = "#f4f6fa",
         stroke: str = "#556") -> str:
    lines = text.split("\n")
    spans = "".join(f'<tspan x="{x + w / 2}" dy="{0 if i == 0 else 15}">{escape(t)}</tspan>'
                    for i, t in enumerate(lines))
    ty = y + h / 2 - 7.5 * (len(lines) - 1) + 4
    return (f'<rect x="{x}" y="{y}" width="{w}" height="{h}" rx="7" fill="{fill}" '
            f'stroke="{stroke}" stroke-width="1.4"/>'
            f'<text x="{x + w / 2}" y="{ty}" text-anchor="middle">{spans}</text>')


def _arrow(x1: float, y1: float, x2: float, y2: float, color: str = "#556") -> str:
    return (f'<line x1="{x1}" y1="{y1}" x2="{x2}" y2="{y2}" stroke="{color}" stroke-width="1.6" '
            'marker-end="url(#arrow)"/>')


def architecture_svg(filter_sizes: tuple[int, ...] = (1, 3, 5, 7)) -> str:
    """Image -> ResNetV1c-D8 -> x -> one DCM per filter size -> concat -> bottleneck -> classes."""
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" '
             'style="width:100%;max-width:980px;font:12px sans-serif" role="img" '
             'aria-label="DMNet architecture">',
             '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
             'markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#556"/></marker>'
             '</defs>']
    parts.append(_box(10, 180, 80, 60, "image\nH×W×3"))
    parts.append(_arrow(90, 210, 115, 210))
    parts.append(_box(115, 170, 120, 80, "ResNetV1c-D8\n(dilated,\noutput stride 8)"))
    parts.append(_arrow(235, 210, 262, 210))
    x_fill = hex_color(PART_COLORS["x"])
    parts.append(_box(262, 185, 60, 50, "x\n(features)", fill="#eee", stroke=x_fill))
    top, step = 20, 95
    for i, k in enumerate(filter_sizes):
        y = top + i * step
        color = hex_color(PART_COLORS.get(f"k={k}", (90, 90, 90)))
        parts.append(_arrow(322, 210, 350, y + 40, color))
        parts.append(_box(350, y, 170, 34, f"avg pool to {k}×{k}, 1×1 conv\n→ filters C×{k}×{k}",
                          stroke=color))
        parts.append(_box(350, y + 42, 170, 34, "1×1 conv + BN + ReLU\n(reduce to C)",
                          stroke=color))
        parts.append(_box(545, y + 12, 120, 52, f"depthwise {k}×{k} conv,\nits own filter per\n"
                          "channel → BN, ReLU", stroke=color))
        parts.append(_arrow(520, y + 17, 545, y + 30, color))
        parts.append(_arrow(520, y + 59, 545, y + 48, color))
        parts.append(_arrow(665, y + 38, 685, 210, color))
        parts.append(f'<text x="356" y="{y - 4}" fill="{color}" font-weight="bold">'
                     f'DCM k={k}</text>')
    parts.append(f'<path d="M292,235 L292,{H - 40} L722,{H - 40} L722,252" fill="none" '
                 f'stroke="{x_fill}" stroke-width="1.6" stroke-dasharray="5,4" '
                 'marker-end="url(#arrow)"/>')
    parts.append(f'<text x="420" y="{H - 46}" fill="#555">skip path: x itself is concatenated too'
                 '</text>')
    parts.append(_box(685, 170, 75, 80, "concat\n[x, k=1, 3,\n5, 7]"))
    parts.append(_arrow(760, 210, 775, 210))
    parts.append(_box(775, 160, 110, 100, "bottleneck\n3×3 conv\n+ BN + ReLU\n→ 1×1 conv_seg"))
    parts.append(_arrow(885, 210, 898, 210))
    parts.append(_box(898, 170, 78, 80, "classes\n(1/8 size)\n→ bilinear\nupsample"))
    parts.append("</svg>")
    return "".join(parts)
