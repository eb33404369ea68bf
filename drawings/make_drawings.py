"""Generate the SVG drawings of the SNN library (standard library only).

Run from anywhere::

    python3 drawings/make_drawings.py

It (re)writes, next to this script:

* ``snn_block.svg``      - one SNN block: synapse + LIF neuron (+ optional recurrence)
* ``layer_unrolled.svg`` - the fused sequence layer, forward and backward pass
* ``sparse_format.svg``  - the static-shape sparse spike format and SparseLinear
* ``graph.svg``          - a graph of SNN blocks (drawn from an adjacency list)
* ``graph_unrolled.svg`` - the same graph unrolled over three time steps

The SVG text is written by hand (no dependencies).  The graph drawings are
computed from the adjacency list by :func:`draw_graph` and
:func:`draw_graph_unrolled`, so they can be reused for other graphs.
"""

from __future__ import annotations

import math
import os
from typing import Dict, Iterable, List, Optional, Sequence, Tuple
from xml.sax.saxutils import escape

HERE = os.path.dirname(os.path.abspath(__file__))

FONT = "'DejaVu Sans', Helvetica, Arial, sans-serif"

# Colour palette: name -> (stroke / text colour, light fill colour).
COLORS: Dict[str, Tuple[str, str]] = {
    "ink": ("#1a202c", "#f7fafc"),
    "blue": ("#2b6cb0", "#e3eefa"),
    "orange": ("#b7541a", "#fdeedd"),
    "green": ("#2f7a4f", "#e3f4ea"),
    "purple": ("#6b46c1", "#efe9fb"),
    "gray": ("#718096", "#edf2f7"),
    "red": ("#c53030", "#fde8e8"),
    "gold": ("#b7791f", "#fff4d6"),
}


def stroke_of(color: str) -> str:
    return COLORS[color][0]


def fill_of(color: str) -> str:
    return COLORS[color][1]


# --------------------------------------------------------------------------
# Generic SVG helpers
# --------------------------------------------------------------------------


def fmt(v: float) -> str:
    """Short number formatting for coordinates."""
    if abs(v - round(v)) < 1e-6:
        return str(int(round(v)))
    return ("%.2f" % v).rstrip("0").rstrip(".")


def marker_defs() -> str:
    """<defs>: one arrowhead marker per palette colour, plus a hatch pattern."""
    parts = ["<defs>"]
    for name, (stroke, _fill) in COLORS.items():
        for suffix, size in (("", 10), ("-s", 8)):
            parts.append(
                '<marker id="arrow-%s%s" viewBox="0 0 10 10" refX="10" refY="5" '
                'markerWidth="%d" markerHeight="%d" markerUnits="userSpaceOnUse" '
                'orient="auto"><path d="M0,0.5 L10,5 L0,9.5 z" fill="%s"/></marker>'
                % (name, suffix, size, size, stroke)
            )
    parts.append(
        '<pattern id="hatch" patternUnits="userSpaceOnUse" width="6" height="6" '
        'patternTransform="rotate(45)"><rect width="6" height="6" fill="%s"/>'
        '<line x1="1.5" y1="0" x2="1.5" y2="6" stroke="%s" stroke-width="2"/>'
        "</pattern>" % (fill_of("gold"), "#d69e2e")
    )
    parts.append("</defs>")
    return "\n".join(parts)


def svg_document(width: int, height: int, title: str, body: Iterable[str]) -> str:
    """Standalone SVG: white background, title line, shared defs."""
    head = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" '
        'viewBox="0 0 %d %d" font-family="%s">\n'
        "<title>%s</title>\n" % (width, height, width, height, FONT, escape(title))
    )
    parts = [
        head,
        marker_defs(),
        '<rect x="0" y="0" width="%d" height="%d" fill="#ffffff"/>' % (width, height),
        text(20, 32, title, size=19, weight="bold"),
    ]
    parts.extend(body)
    parts.append("</svg>\n")
    return "\n".join(parts)


def text(
    x: float,
    y: float,
    s: str,
    size: float = 14,
    anchor: str = "start",
    weight: str = "normal",
    color: str = "ink",
    italic: bool = False,
    fill: Optional[str] = None,
) -> str:
    """One line of text; (x, y) is the baseline anchor point."""
    style = ' font-style="italic"' if italic else ""
    bold = ' font-weight="%s"' % weight if weight != "normal" else ""
    if "  " in s:  # keep runs of spaces (SVG collapses them by default)
        style += ' xml:space="preserve"'
    return '<text x="%s" y="%s" font-size="%s" text-anchor="%s" fill="%s"%s%s>%s</text>' % (
        fmt(x),
        fmt(y),
        fmt(size),
        anchor,
        fill or stroke_of(color),
        bold,
        style,
        escape(s),
    )


def text_lines(x: float, y: float, lines: Sequence[str], size: float = 14, gap: float = 1.35, **kw) -> str:
    """Several lines; ``y`` is the baseline of the first line."""
    return "\n".join(text(x, y + i * size * gap, s, size=size, **kw) for i, s in enumerate(lines))


def box(
    x: float,
    y: float,
    w: float,
    h: float,
    color: str = "blue",
    rx: float = 8,
    dashed: bool = False,
    fill: Optional[str] = None,
    stroke_width: float = 1.8,
) -> str:
    dash = ' stroke-dasharray="7 5"' if dashed else ""
    return '<rect x="%s" y="%s" width="%s" height="%s" rx="%s" fill="%s" stroke="%s" stroke-width="%s"%s/>' % (
        fmt(x),
        fmt(y),
        fmt(w),
        fmt(h),
        fmt(rx),
        fill or fill_of(color),
        stroke_of(color),
        fmt(stroke_width),
        dash,
    )


def labeled_box(
    x: float,
    y: float,
    w: float,
    h: float,
    lines: Sequence[str],
    color: str = "blue",
    size: float = 14,
    bold_first: bool = True,
    **kw,
) -> str:
    """Box with centred lines of text (first line bold by default)."""
    gap = 1.4
    total = size * gap * (len(lines) - 1)
    y0 = y + h / 2 - total / 2 + size * 0.36
    parts = [box(x, y, w, h, color=color, **kw)]
    for i, s in enumerate(lines):
        parts.append(
            text(
                x + w / 2,
                y0 + i * size * gap,
                s,
                size=size,
                anchor="middle",
                weight="bold" if (bold_first and i == 0) else "normal",
            )
        )
    return "\n".join(parts)


def circle(cx: float, cy: float, r: float, color: str = "blue", stroke_width: float = 2) -> str:
    return '<circle cx="%s" cy="%s" r="%s" fill="%s" stroke="%s" stroke-width="%s"/>' % (
        fmt(cx),
        fmt(cy),
        fmt(r),
        fill_of(color),
        stroke_of(color),
        fmt(stroke_width),
    )


def line(
    x1: float,
    y1: float,
    x2: float,
    y2: float,
    color: str = "ink",
    width: float = 1.5,
    dashed: bool = False,
    opacity: float = 1.0,
) -> str:
    dash = ' stroke-dasharray="5 4"' if dashed else ""
    op = ' stroke-opacity="%s"' % fmt(opacity) if opacity < 1 else ""
    return '<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="%s" stroke-width="%s"%s%s/>' % (
        fmt(x1),
        fmt(y1),
        fmt(x2),
        fmt(y2),
        stroke_of(color),
        fmt(width),
        dash,
        op,
    )


def arrow(
    x1: float,
    y1: float,
    x2: float,
    y2: float,
    color: str = "ink",
    width: float = 1.8,
    dashed: bool = False,
    small: bool = False,
) -> str:
    """Straight arrow from (x1, y1) to (x2, y2); the arrowhead tip is at (x2, y2)."""
    return path_arrow("M%s,%s L%s,%s" % (fmt(x1), fmt(y1), fmt(x2), fmt(y2)), color, width, dashed, small)


def path_arrow(d: str, color: str = "ink", width: float = 1.8, dashed: bool = False, small: bool = False) -> str:
    """Arbitrary SVG path with an arrowhead at its end."""
    dash = ' stroke-dasharray="7 5"' if dashed else ""
    return '<path d="%s" fill="none" stroke="%s" stroke-width="%s"%s marker-end="url(#arrow-%s%s)"/>' % (
        d,
        stroke_of(color),
        fmt(width),
        dash,
        color,
        "-s" if small else "",
    )


def poly_arrow(
    points: Sequence[Tuple[float, float]],
    color: str = "ink",
    width: float = 1.8,
    dashed: bool = False,
    small: bool = False,
) -> str:
    """Arrow along a polyline (used for orthogonal routing)."""
    d = "M" + " L".join("%s,%s" % (fmt(x), fmt(y)) for x, y in points)
    return path_arrow(d, color, width, dashed, small)


def write(name: str, content: str) -> str:
    path = os.path.join(HERE, name)
    with open(path, "w", encoding="utf-8") as f:
        f.write(content)
    return path


# --------------------------------------------------------------------------
# 1. One SNN block
# --------------------------------------------------------------------------


def draw_snn_block() -> str:
    W, H = 900, 420
    b: List[str] = []

    # Geometry.
    syn_x, syn_y, syn_w, syn_h = 150, 130, 220, 120
    neu_x, neu_y, neu_w, neu_h = 440, 110, 330, 160
    mid = syn_y + syn_h / 2  # 190, main signal line

    # Input spikes.
    b.append(text(20, mid - 22, "input spikes", size=13, color="gray"))
    b.append(text(20, mid - 4, "x[t]", size=16, weight="bold"))
    b.append(arrow(20, mid + 8, syn_x, mid + 8, width=2))

    # Synapse.
    b.append(
        labeled_box(
            syn_x,
            syn_y,
            syn_w,
            syn_h,
            ["Synaptic transform", "Dense / Conv / SparseLinear", "I[t] = W x[t] + b"],
            color="blue",
            size=14,
        )
    )

    # Synapse -> neuron.
    b.append(arrow(syn_x + syn_w, mid + 8, neu_x, mid + 8, width=2))
    b.append(text((syn_x + syn_w + neu_x) / 2, mid, "I[t]", size=14, anchor="middle", weight="bold"))

    # Neuron.
    b.append(box(neu_x, neu_y, neu_w, neu_h, color="orange"))
    b.append(text(neu_x + neu_w / 2, neu_y + 26, "LIF neuron  (state U, V)", size=15, anchor="middle", weight="bold"))
    eqs = [
        "U[t+1] = a U[t] + (1\u2212a)(I[t] + f(V[t]))",
        "V[t+1] = b V[t] + (1\u2212b) g U[t]",
        "S[t] = H(U \u2212 V \u2212 u_thresh)",
        "reset:  U \u2212= reset_val \u00b7 S",
    ]
    b.append(text_lines(neu_x + 18, neu_y + 56, eqs, size=13.5, gap=1.7))

    # Output spikes.
    out_x = neu_x + neu_w
    b.append(arrow(out_x, mid + 8, W - 24, mid + 8, width=2))
    b.append(text(W - 20, mid - 22, "output spikes", size=13, color="gray", anchor="end"))
    b.append(text(W - 20, mid - 4, "S[t]", size=16, weight="bold", anchor="end"))

    # State loop on top of the neuron.
    lx1, lx2 = neu_x + neu_w - 70, neu_x + 70
    top = neu_y
    b.append(
        path_arrow(
            "M%d,%d C%d,%d %d,%d %d,%d" % (lx1, top, lx1 - 10, top - 55, lx2 + 10, top - 55, lx2, top),
            color="green",
            width=2,
        )
    )
    b.append(
        text(
            neu_x + neu_w / 2, top - 48, "state (t \u2192 t+1)", size=14, anchor="middle", color="green", weight="bold"
        )
    )

    # Optional self-recurrence: output -> z^-1 -> R -> synapse.
    tap_x = out_x + 24
    low = neu_y + neu_h + 60  # 330
    zx, zw, zh = 520, 70, 40
    b.append('<circle cx="%d" cy="%d" r="4" fill="%s"/>' % (tap_x, mid + 8, stroke_of("purple")))
    b.append(poly_arrow([(tap_x, mid + 8), (tap_x, low), (zx + zw, low)], color="purple", dashed=True))
    b.append(labeled_box(zx, low - zh / 2, zw, zh, ["z\u207b\u00b9"], color="purple", size=16))
    b.append(
        poly_arrow(
            [(zx, low), (syn_x + syn_w / 2, low), (syn_x + syn_w / 2, syn_y + syn_h)], color="purple", dashed=True
        )
    )
    b.append(text(zx + zw / 2, low + zh / 2 + 20, "one-step delay", size=12.5, anchor="middle", color="purple"))
    b.append(text(syn_x + syn_w / 2 + 12, low - 10, "R S[t\u22121]", size=14, color="purple", weight="bold"))
    b.append(
        text(
            20,
            H - 22,
            "optional self-recurrence (recurrent weights R):  I[t] = W x[t] + R S[t\u22121] + b",
            size=13.5,
            color="purple",
        )
    )
    return svg_document(W, H, "SNN block: synaptic transform + LIF neuron", b)


# --------------------------------------------------------------------------
# 2. The fused sequence layer, forward and backward
# --------------------------------------------------------------------------


def _step_row(
    x0: float,
    y: float,
    labels: Sequence[str],
    bw: float,
    gap: float,
    bh: float,
    color: str,
    reverse: bool,
    state_label: str,
) -> Tuple[List[str], List[float]]:
    """A row of per-time-step boxes connected by state arrows.

    Returns the SVG parts and the x-centre of every box.
    """
    parts: List[str] = []
    centers: List[float] = []
    for i, lab in enumerate(labels):
        x = x0 + i * (bw + gap)
        centers.append(x + bw / 2)
        if lab == "\u22ef":
            parts.append(text(x + bw / 2, y + bh / 2 + 6, lab, size=20, anchor="middle", weight="bold"))
        else:
            parts.append(labeled_box(x, y, bw, bh, [lab], color=color, size=14))
        if i + 1 < len(labels):
            a, c = x + bw, x + bw + gap
            if reverse:
                parts.append(arrow(c, y + bh / 2, a, y + bh / 2, color="green", width=2))
            else:
                parts.append(arrow(a, y + bh / 2, c, y + bh / 2, color="green", width=2))
            parts.append(text((a + c) / 2, y + bh / 2 - 7, state_label, size=10.5, anchor="middle", color="green"))
    return parts, centers


def draw_layer_unrolled() -> str:
    W, H = 960, 600
    b: List[str] = []
    steps = ["t=1", "t=2", "t=3", "\u22ef", "t=T"]
    bw, gap, bh = 60, 44, 42
    row_w = len(steps) * bw + (len(steps) - 1) * gap  # 494
    cx0 = 230  # container left
    cw = row_w + 40
    rx0 = cx0 + 20  # first box left

    # ---------------- forward ----------------
    b.append(text(20, 62, "Forward pass", size=15, weight="bold", color="blue"))
    mm_y, mm_h = 80, 56
    b.append(
        labeled_box(
            cx0,
            mm_y,
            cw,
            mm_h,
            ["ONE matmul over all T steps:  I = x @ W + b", "(x @ W for all steps at once, not T small matmuls)"],
            color="blue",
            size=13.5,
        )
    )
    b.append(labeled_box(20, mm_y + 3, 170, 50, ["input x", "[batch, time, features]"], color="gray", size=13))
    b.append(arrow(190, mm_y + mm_h / 2, cx0, mm_y + mm_h / 2, width=2))

    c_y, c_h = 170, 108
    b.append(box(cx0, c_y, cw, c_h, color="orange", dashed=True, fill="#fffaf3"))
    row_y = c_y + 30
    parts, centers = _step_row(rx0, row_y, steps, bw, gap, bh, "orange", False, "U, V")
    for cxx, lab in zip(centers, ["I[1]", "I[2]", "I[3]", None, "I[T]"]):
        if lab is None:
            continue
        b.append(arrow(cxx, mm_y + mm_h, cxx, row_y, color="blue"))
        b.append(text(cxx + 6, mm_y + mm_h + 20, lab, size=12, color="blue"))
    b.extend(parts)
    b.append(
        text(
            cx0 + cw / 2,
            c_y + c_h - 12,
            "compiled time recurrence of the neuron step (tf.while_loop / XLA)",
            size=12.5,
            anchor="middle",
            color="orange",
            italic=True,
        )
    )
    sx = cx0 + cw + 40
    b.append(arrow(cx0 + cw, row_y + bh / 2, sx, row_y + bh / 2, width=2))
    b.append(labeled_box(sx, row_y - 4, W - 20 - sx, 50, ["spikes S", "[batch, time, units]"], color="gray", size=13))

    # ---------------- backward ----------------
    sep = 312
    b.append(line(20, sep, W - 20, sep, color="gray", width=1, dashed=True))
    b.append(text(20, sep + 30, "Backward pass", size=15, weight="bold", color="red"))

    bc_y, bc_h = sep + 46, 108
    b.append(box(cx0, bc_y, cw, bc_h, color="red", dashed=True, fill="#fff8f8"))
    brow_y = bc_y + 16
    parts, bcenters = _step_row(rx0, brow_y, steps, bw, gap, bh, "red", True, "\u2202U, \u2202V")
    b.extend(parts)
    b.append(
        text(
            cx0 + cw / 2,
            bc_y + bc_h - 30,
            "reverse-time loop (t = T \u2192 1): keeps only the membrane trace U[t]",
            size=12.5,
            anchor="middle",
            color="red",
            italic=True,
        )
    )
    b.append(
        text(
            cx0 + cw / 2,
            bc_y + bc_h - 12,
            "for the surrogate gradient of S = H(U \u2212 V \u2212 u_thresh)",
            size=12.5,
            anchor="middle",
            color="red",
            italic=True,
        )
    )
    # incoming dL/dS on the right
    b.append(
        labeled_box(sx, brow_y - 4, W - 20 - sx, 50, ["\u2202L/\u2202S", "[batch, time, units]"], color="gray", size=13)
    )
    b.append(arrow(sx, brow_y + bh / 2, cx0 + cw, brow_y + bh / 2, width=2))
    # saved membrane trace on the left
    b.append(
        labeled_box(
            20,
            brow_y - 4,
            170,
            50,
            ["saved from forward:", "membrane trace U"],
            color="orange",
            size=12.5,
            bold_first=False,
        )
    )
    b.append(arrow(190, brow_y + bh / 2, cx0, brow_y + bh / 2, color="orange", width=2))

    # gradient matmuls
    g_y, g_h = bc_y + bc_h + 44, 56
    b.append(
        labeled_box(
            cx0,
            g_y,
            cw,
            g_h,
            [
                "weight / input gradients: single matmuls over all steps",
                "\u2202L/\u2202W = x\u1d40 @ \u2202L/\u2202I       \u2202L/\u2202x = \u2202L/\u2202I @ W\u1d40",
            ],
            color="blue",
            size=13.5,
        )
    )
    b.append(arrow(cx0 + cw / 2, bc_y + bc_h, cx0 + cw / 2, g_y, color="red", width=2))
    b.append(text(cx0 + cw / 2 + 8, bc_y + bc_h + 27, "\u2202L/\u2202I  [batch, time, units]", size=12.5, color="red"))
    b.append(labeled_box(20, g_y + 3, 170, 50, ["\u2202L/\u2202x", "[batch, time, features]"], color="gray", size=13))
    b.append(arrow(cx0, g_y + g_h / 2, 190, g_y + g_h / 2, width=2))
    b.append(labeled_box(sx, g_y + 3, W - 20 - sx, 50, ["\u2202L/\u2202W", "[features, units]"], color="gray", size=13))
    b.append(arrow(cx0 + cw, g_y + g_h / 2, sx, g_y + g_h / 2, width=2))
    return svg_document(W, H, "Fused sequence layer: one matmul + compiled time recurrence", b)


# --------------------------------------------------------------------------
# 3. Sparse spike format
# --------------------------------------------------------------------------


def draw_sparse_format() -> str:
    W, H = 960, 470
    b: List[str] = []
    N, K = 12, 6
    spikes = [2, 5, 9]
    near = [4]
    ids = [2, 5, 9, 4, 0, 0]
    values = [1, 1, 1, 0, 0, 0]
    count = 4
    kinds = ["spike", "spike", "spike", "grad", "pad", "pad"]

    def cell_fill(kind: str) -> str:
        return {
            "spike": stroke_of("blue"),
            "grad": "url(#hatch)",
            "pad": fill_of("gray"),
            "off": "#ffffff",
            "spike-light": fill_of("blue"),
        }[kind]

    def cell(
        x: float,
        y: float,
        w: float,
        h: float,
        kind: str,
        label: str = "",
        label_color: str = "#1a202c",
        size: float = 14,
    ) -> str:
        parts = [
            '<rect x="%s" y="%s" width="%s" height="%s" fill="%s" stroke="%s" stroke-width="1.2"/>'
            % (fmt(x), fmt(y), fmt(w), fmt(h), cell_fill(kind), "#4a5568")
        ]
        if label:
            parts.append(
                text(
                    x + w / 2,
                    y + h / 2 + size * 0.36,
                    label,
                    size=size,
                    anchor="middle",
                    fill=label_color,
                    weight="bold",
                )
            )
        return "\n".join(parts)

    # Dense spike vector.
    dx0, dy, cs = 40, 92, 30
    b.append(text(dx0, 64, "dense spikes s[t]   (N = 12 neurons)", size=14, weight="bold"))
    for i in range(N):
        kind = "spike" if i in spikes else ("grad" if i in near else "off")
        b.append(cell(dx0 + i * cs, dy, cs, cs, kind))
        b.append(text(dx0 + i * cs + cs / 2, dy + cs + 16, str(i), size=11, anchor="middle", color="gray"))

    # Arrow down to the sparse tensors.
    b.append(arrow(dx0 + N * cs / 2, dy + cs + 24, dx0 + N * cs / 2, 178, width=2))
    b.append(text(dx0 + N * cs / 2 + 10, 164, "encode", size=12.5, color="gray", italic=True))

    # The three static-shape tensors.
    tx0, tw, th = 170, 40, 30
    rows_y = {"ids": 200, "values": 262, "count": 338}
    for k in range(K):
        b.append(text(tx0 + k * tw + tw / 2, rows_y["ids"] - 6, "k=%d" % k, size=10.5, anchor="middle", color="gray"))
    b.append(text(40, rows_y["ids"] + 20, "ids", size=14, weight="bold"))
    b.append(text(76, rows_y["ids"] + 20, "int32 [K]", size=12, color="gray"))
    b.append(text(40, rows_y["values"] + 20, "values", size=14, weight="bold"))
    b.append(text(96, rows_y["values"] + 20, "float [K]", size=12, color="gray"))
    b.append(text(40, rows_y["count"] + 20, "count", size=14, weight="bold"))
    b.append(text(90, rows_y["count"] + 20, "int32", size=12, color="gray"))
    for k in range(K):
        kind = kinds[k]
        light = {"spike": "spike-light", "grad": "grad", "pad": "pad"}[kind]
        fg = "#a0aec0" if kind == "pad" else "#1a202c"
        b.append(cell(tx0 + k * tw, rows_y["ids"], tw, th, light, str(ids[k]), fg))
        b.append(cell(tx0 + k * tw, rows_y["values"], tw, th, light, str(values[k]), fg))
    b.append(cell(tx0, rows_y["count"], tw, th, "off", str(count)))
    b.append(text(tx0 + tw + 12, rows_y["count"] + 20, "valid entries (spikes + gradient-only)", size=12, color="gray"))
    # Brackets under the values row.
    by = rows_y["values"] + th + 8

    def bracket(x1: float, x2: float, label: str, color: str) -> str:
        return "\n".join(
            [
                '<path d="M%s,%s L%s,%s L%s,%s L%s,%s" fill="none" stroke="%s" stroke-width="1.4"/>'
                % (
                    fmt(x1 + 2),
                    fmt(by),
                    fmt(x1 + 2),
                    fmt(by + 6),
                    fmt(x2 - 2),
                    fmt(by + 6),
                    fmt(x2 - 2),
                    fmt(by),
                    stroke_of(color),
                ),
                text((x1 + x2) / 2, by + 22, label, size=12, anchor="middle", color=color),
            ]
        )

    b.append(bracket(tx0, tx0 + 3 * tw, "spike", "blue"))
    b.append(bracket(tx0 + 3 * tw, tx0 + 4 * tw, "grad-only", "gold"))
    b.append(bracket(tx0 + 4 * tw, tx0 + 6 * tw, "padding", "gray"))

    # Legend.
    ly = 398
    b.append(cell(40, ly, 18, 18, "spike"))
    b.append(text(64, ly + 14, "spike", size=12.5))
    b.append(cell(120, ly, 18, 18, "grad"))
    b.append(text(144, ly + 14, "near threshold: gradient-only (value 0)", size=12.5))
    b.append(cell(420, ly, 18, 18, "pad"))
    b.append(text(444, ly + 14, "padding", size=12.5))
    b.append(
        text(
            40,
            H - 22,
            "capacity K = 6, static shapes: works in keras.layers.RNN, tf.while_loop, XLA",
            size=14.5,
            weight="bold",
            color="blue",
        )
    )

    # ---------------- SparseLinear ----------------
    sx0 = 560
    b.append(line(520, 56, 520, 430, color="gray", width=1, dashed=True))
    b.append(text(sx0 - 16, 64, "SparseLinear: gather K rows of W", size=14, weight="bold"))
    mx, my, mcw, mch, M = 590, 92, 22, 20, 5
    b.append(text(mx + M * mcw / 2, my + N * mch + 18, "W  [N, units]", size=12.5, anchor="middle", color="gray"))
    for r in range(N):
        kind = "spike-light" if r in spikes else ("grad" if r in near else "off")
        for c in range(M):
            b.append(cell(mx + c * mcw, my + r * mch, mcw, mch, kind))
        b.append(text(mx - 8, my + r * mch + 14, str(r), size=11, anchor="end", color="gray"))

    gx, gy = 770, 110
    b.append(text(gx + M * mcw / 2, gy - 12, "W[ids[k], :]", size=12.5, anchor="middle", color="gray"))
    for k in range(K):
        kind = {"spike": "spike-light", "grad": "grad", "pad": "pad"}[kinds[k]]
        y = gy + k * mch
        for c in range(M):
            b.append(cell(gx + c * mcw, y, mcw, mch, kind))
        src_y = my + ids[k] * mch + mch / 2
        color = {"spike": "blue", "grad": "gold", "pad": "gray"}[kinds[k]]
        b.append(
            line(mx + M * mcw, src_y, gx, y + mch / 2, color=color, width=1.2, dashed=kinds[k] == "pad", opacity=0.9)
        )
        b.append(text(gx + M * mcw + 8, y + 14, "\u00d7 %d" % values[k], size=12, color=color))
    # Sum to y.
    yy = gy + K * mch + 56
    b.append(arrow(gx + M * mcw / 2, gy + K * mch + 4, gx + M * mcw / 2, yy, width=2))
    b.append(text(gx + M * mcw / 2 + 10, gy + K * mch + 34, "\u03a3\u2096", size=15))
    for c in range(M):
        b.append(cell(gx + c * mcw, yy, mcw, mch, "off"))
    b.append(text(gx + M * mcw + 8, yy + 16, "y", size=14, weight="bold"))
    b.append(text(740, 392, "y = \u03a3\u2096 values[k] \u00b7 W[ids[k], :]", size=15, anchor="middle", weight="bold"))
    b.append(
        text(740, 414, "K row gathers + weighted sum: cost \u221d K, not N", size=12.5, anchor="middle", color="gray")
    )
    return svg_document(W, H, "Sparse spike format: static-shape (ids, values, count)", b)


# --------------------------------------------------------------------------
# 4. Graph of SNN blocks (computed from the adjacency list)
# --------------------------------------------------------------------------


def _unit(angle_deg: float) -> Tuple[float, float]:
    """Unit vector for a math angle (counter-clockwise, 0 = right), in SVG coords (y down)."""
    a = math.radians(angle_deg)
    return math.cos(a), -math.sin(a)


def _angle_gap(a: float, b: float) -> float:
    d = abs(a - b) % 360
    return min(d, 360 - d)


def _pick_angle(used: List[float], preferred: float, enough: float = 50.0) -> float:
    """Free direction around a node: far from ``used`` angles, close to ``preferred``."""
    best, best_key = preferred, None
    for cand in range(0, 360, 15):
        gap = min([_angle_gap(cand, u) for u in used] or [360.0])
        key = (min(gap, enough), -_angle_gap(cand, preferred))
        if best_key is None or key > best_key:
            best, best_key = float(cand), key
    return best


def _bezier_points(p: Sequence[Tuple[float, float]], n: int = 24) -> List[Tuple[float, float]]:
    out = []
    for i in range(n + 1):
        t = i / n
        u = 1 - t
        x = u**3 * p[0][0] + 3 * u * u * t * p[1][0] + 3 * u * t * t * p[2][0] + t**3 * p[3][0]
        y = u**3 * p[0][1] + 3 * u * u * t * p[1][1] + 3 * u * t * t * p[2][1] + t**3 * p[3][1]
        out.append((x, y))
    return out


def _cubic(p: Sequence[Tuple[float, float]]) -> str:
    return "M%s,%s C%s,%s %s,%s %s,%s" % tuple(fmt(v) for pt in p for v in pt)


def graph_edges(inp_connectivity: Sequence[Sequence[int]]) -> List[Tuple[int, int]]:
    """(source, target) pairs: node i receives from every node in inp_connectivity[i]."""
    return [(src, dst) for dst, srcs in enumerate(inp_connectivity) for src in srcs]


def draw_graph(
    inp_connectivity: Sequence[Sequence[int]],
    inputs: Sequence[int] = (0,),
    outputs: Sequence[int] = (-1,),
    title: str = "Graph of SNN blocks",
) -> str:
    """SVG of a graph of SNN blocks, nodes left to right.

    ``inp_connectivity[i]`` lists the nodes whose spikes node ``i`` receives.
    Forward edges (a < b) curve above the nodes and backward edges (a > b)
    below, so a reverse pair a->b / b->a never overlaps; longer edges leave
    the node at a steeper angle and rise higher, so they clear the nodes in
    between.  Self-loops, inputs and outputs are put in free directions.
    """
    n = len(inp_connectivity)
    inputs = [i % n for i in inputs]
    outputs = [i % n for i in outputs]
    r, spacing, margin = 27.0, 150.0, 120.0
    conn = "inp_connectivity = " + repr([list(s) for s in inp_connectivity])
    legend = (
        "edge a \u2192 b: node b receives the spikes of node a (forward edges above, "
        "backward edges below, self-loops green)"
    )
    W = int(max(margin * 2 + (n - 1) * spacing, 40 + 0.6 * 12.5 * len(legend), 40 + 0.62 * 13.5 * len(conn)))
    x0 = margin + (W - (margin * 2 + (n - 1) * spacing)) / 2  # centre narrow graphs
    xs = [x0 + i * spacing for i in range(n)]
    edges = graph_edges(inp_connectivity)

    def depart_angle(d: int) -> float:
        return 90.0 - 55.0 / d  # d=1: 35 deg, d=2: 62.5 deg, d=3: 71.7 deg

    # Geometry relative to a node line at y = 0; shifted once the extent is known.
    used: Dict[int, List[float]] = {i: [] for i in range(n)}
    curves: List[Tuple[List[Tuple[float, float]], str]] = []
    for src, dst in edges:
        if src == dst:
            continue
        d = abs(dst - src)
        a = depart_angle(d)
        if dst > src:  # forward: above, leave upper-right, arrive upper-left
            a_out, a_in = a, 180.0 - a
        else:  # backward: below, leave lower-left, arrive lower-right
            a_out, a_in = 180.0 + a, 360.0 - a
        used[src].append(a_out)
        used[dst].append(a_in)
        L = 0.42 * d * spacing
        uo, ui = _unit(a_out), _unit(a_in)
        p0 = (xs[src] + r * uo[0], r * uo[1])
        p3 = (xs[dst] + r * ui[0], r * ui[1])
        p1 = (p0[0] + L * uo[0], p0[1] + L * uo[1])
        p2 = (p3[0] + L * ui[0], p3[1] + L * ui[1])
        curves.append(([p0, p1, p2, p3], "blue" if dst > src else "purple"))

    io_arrows: List[Tuple[Tuple[float, float], Tuple[float, float], str, float]] = []
    for kind, nodes, end_node, end_pref in (("input", inputs, 0, 180.0), ("output", outputs, n - 1, 0.0)):
        for i in nodes:
            # End nodes get a horizontal arrow, inner nodes one from/to below.
            ang = _pick_angle(used[i], end_pref if i == end_node else 270.0)
            used[i].append(ang)
            u = _unit(ang)
            near = (xs[i] + r * u[0], r * u[1])
            far = (xs[i] + (r + 62) * u[0], (r + 62) * u[1])
            if kind == "input":
                io_arrows.append((far, near, kind, ang))
            else:
                io_arrows.append((near, far, kind, ang))

    loops: List[List[Tuple[float, float]]] = []
    for src, dst in edges:
        if src != dst:
            continue
        ang = _pick_angle(used[src], 90.0)
        used[src].append(ang)
        u0, u1 = _unit(ang + 20), _unit(ang - 20)
        c0, c1 = _unit(ang + 42), _unit(ang - 42)
        reach = r + 46
        loops.append(
            [
                (xs[src] + r * u0[0], r * u0[1]),
                (xs[src] + reach * c0[0], reach * c0[1]),
                (xs[src] + reach * c1[0], reach * c1[1]),
                (xs[src] + r * u1[0], r * u1[1]),
            ]
        )

    # Vertical extent.
    ys = [-r - 10, r + 10]
    for pts, _c in curves:
        ys.extend(y for _x, y in _bezier_points(pts))
    for pts in loops:
        ys.extend(y for _x, y in _bezier_points(pts))
    for a_, b_, _k, _ang in io_arrows:
        ys.extend([a_[1] - 24, b_[1] + 24])
    top_pad, bottom_pad = 70.0, 78.0
    y0 = top_pad - min(ys)
    H = int(math.ceil(y0 + max(ys) + bottom_pad))

    def sh(p: Tuple[float, float]) -> Tuple[float, float]:
        return p[0], p[1] + y0

    parts: List[str] = []
    for pts, color in curves:
        parts.append(path_arrow(_cubic([sh(p) for p in pts]), color=color, width=1.9))
    for pts in loops:
        parts.append(path_arrow(_cubic([sh(p) for p in pts]), color="green", width=1.9))
    for a_, b_, kind, ang in io_arrows:
        (x1, y1), (x2, y2) = sh(a_), sh(b_)
        parts.append(arrow(x1, y1, x2, y2, color="ink", width=2.2))
        far = (x1, y1) if kind == "input" else (x2, y2)
        u = _unit(ang)
        if abs(u[0]) > 0.5:  # mostly horizontal: label above the far end
            tx, ty = far[0], far[1] - 10
            anchor = "start" if u[0] < 0 else "end"
        else:  # mostly vertical: label beyond the far end
            tx, ty = far[0], far[1] + (20 if u[1] > 0 else -8)
            anchor = "middle"
        parts.append(text(tx, ty, kind, size=13.5, anchor=anchor, weight="bold"))
    for i in range(n):
        parts.append(circle(xs[i], y0, r, color="orange", stroke_width=2.2))
        parts.append(text(xs[i], y0 + 6, str(i), size=17, anchor="middle", weight="bold"))

    parts.append(text(20, H - 44, conn, size=13.5))
    parts.append(text(20, H - 20, legend, size=12.5, color="gray"))
    return svg_document(W, H, title, parts)


# --------------------------------------------------------------------------
# 5. The graph unrolled in time
# --------------------------------------------------------------------------


def draw_graph_unrolled(
    inp_connectivity: Sequence[Sequence[int]],
    inputs: Sequence[int] = (0,),
    outputs: Sequence[int] = (-1,),
    steps: int = 3,
    title: str = "Graph of SNN blocks unrolled in time",
) -> str:
    """Each column is one time step; every edge (self-loops included) goes
    from the source at step t to the target at step t+1 (one-step delay).
    External inputs enter their node inside the same column (no delay)."""
    n = len(inp_connectivity)
    inputs = [i % n for i in inputs]
    outputs = [i % n for i in outputs]
    r, col_dx, row_dy = 21.0, 230.0, 82.0
    left, top = 150.0, 128.0
    W = int(left + (steps - 1) * col_dx + 150)
    H = int(top + (n - 1) * row_dy + 150)
    xs = [left + c * col_dx for c in range(steps)]
    ys = [top + i * row_dy for i in range(n)]
    parts: List[str] = []

    # Column backgrounds and headers.
    names = ["t"] + ["t+%d" % c for c in range(1, steps)]
    for c, x in enumerate(xs):
        parts.append(box(x - 58, 50, 116, ys[-1] - 50 + 70, color="gray", rx=12, fill="#f7f9fc", stroke_width=1))
        parts.append(text(x, 72, "step " + names[c], size=15, anchor="middle", weight="bold"))
    for i, y in enumerate(ys):
        parts.append(text(22, y + 5, "node %d" % i, size=13.5, color="gray"))

    # Edges (one-step delay).
    for c in range(steps - 1):
        for src, dst in graph_edges(inp_connectivity):
            x1, y1, x2, y2 = xs[c], ys[src], xs[c + 1], ys[dst]
            dxl, dyl = x2 - x1, y2 - y1
            dist = math.hypot(dxl, dyl)
            ux, uy = dxl / dist, dyl / dist
            color = "green" if src == dst else ("blue" if dst > src else "purple")
            parts.append(arrow(x1 + r * ux, y1 + r * uy, x2 - r * ux, y2 - r * uy, color=color, width=1.5, small=True))
        parts.append(
            text((xs[c] + xs[c + 1]) / 2, 96, "one-step delay", size=11.5, anchor="middle", color="gray", italic=True)
        )

    # External input / output inside each column.
    for c, x in enumerate(xs):
        tname = names[c]
        for i in inputs:
            if i == 0:
                parts.append(arrow(x, ys[i] - r - 26, x, ys[i] - r, width=2))
                parts.append(text(x + 6, ys[i] - r - 14, "x[%s]" % tname, size=12, weight="bold"))
            else:
                parts.append(arrow(x + 40, ys[i] - r - 20, x + r * 0.7, ys[i] - r * 0.7, width=2))
        for i in outputs:
            if i == n - 1:
                parts.append(arrow(x, ys[i] + r, x, ys[i] + r + 26, width=2))
                parts.append(text(x + 6, ys[i] + r + 22, "y[%s]" % tname, size=12, weight="bold"))
            else:
                parts.append(arrow(x + r * 0.7, ys[i] + r * 0.7, x + 40, ys[i] + r + 20, width=2))

    for x in xs:
        for i, y in enumerate(ys):
            parts.append(circle(x, y, r, color="orange", stroke_width=2))
            parts.append(text(x, y + 5.5, str(i), size=15, anchor="middle", weight="bold"))

    parts.append(
        text(
            W / 2,
            H - 44,
            "within a step every node is independent: all run in parallel, on different devices",
            size=14,
            anchor="middle",
            weight="bold",
            color="blue",
        )
    )
    parts.append(
        text(
            W / 2,
            H - 20,
            "every edge (self-loops in green) goes from its source at step t to its target at step t+1",
            size=12.5,
            anchor="middle",
            color="gray",
        )
    )
    return svg_document(W, H, title, parts)


# --------------------------------------------------------------------------

EXAMPLE_CONNECTIVITY = [[1], [0, 2, 3], [1, 2], [1, 2, 3], [3, 4]]


def main() -> None:
    files = {
        "snn_block.svg": draw_snn_block(),
        "layer_unrolled.svg": draw_layer_unrolled(),
        "sparse_format.svg": draw_sparse_format(),
        "graph.svg": draw_graph(
            EXAMPLE_CONNECTIVITY, inputs=[0], outputs=[4], title="Graph of SNN blocks (5-node example)"
        ),
        "graph_unrolled.svg": draw_graph_unrolled(EXAMPLE_CONNECTIVITY, inputs=[0], outputs=[4]),
    }
    for name, content in files.items():
        print("wrote", write(name, content))


if __name__ == "__main__":
    main()
