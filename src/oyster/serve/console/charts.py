"""Charts as inline SVG, drawn on the server: no script, no library, readable by a screen
reader (each chart is an `img` with a title and a description listing its values) and by a
test (every bar carries its value in `data-*` attributes)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from html import escape
from typing import Any

from markupsafe import Markup

# Strategy colours run from open (answer) to closed (refuse); colour-blind safe (Okabe-Ito).
STRATEGY_COLOURS = {"answer": "#009E73", "answer_safely": "#56B4E9", "correct": "#E69F00",
                    "guide": "#0072B2", "refuse": "#D55E00"}
_INK = "#1f2933"
_MUTED = "#6b7785"
_GRID = "#d9dee3"


def _svg(width: int, height: int, title: str, desc: str, body: list[str],
         css_class: str) -> Markup:
    ident = f"c{abs(hash((title, desc))) % 10**8}"
    return Markup(
        f'<svg class="chart {css_class}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-labelledby="{ident}t {ident}d" preserveAspectRatio="xMinYMin meet">'
        f'<title id="{ident}t">{escape(title)}</title><desc id="{ident}d">{escape(desc)}</desc>'
        + "".join(body) + "</svg>")


def utility_chart(utilities: Mapping[Any, float], winner: str,
                  compare: Mapping[Any, float] | None = None,
                  title: str = "Expected utility of each strategy") -> Markup:
    """Horizontal bars around zero, the winner outlined and labelled with its margin over
    the runner-up. `compare` (e.g. the decision before a what-if) is drawn as thin marks."""
    names = list(utilities)
    values = list(utilities.values()) + list((compare or {}).values())
    lo, hi = min(0.0, *values), max(0.0, *values)
    span = (hi - lo) or 1.0
    left, right, row, top = 118, 330, 30, 8
    width = left + right + 150
    height = top + row * len(names) + 22

    def x(v: float) -> float:
        return left + (v - lo) / span * right

    ranked = sorted(utilities.values(), reverse=True)
    margin = ranked[0] - ranked[1] if len(ranked) > 1 else 0.0
    body = [f'<line x1="{x(0):.1f}" y1="{top - 4}" x2="{x(0):.1f}" y2="{height - 18}" '
            f'stroke="{_MUTED}" stroke-width="1"/>']
    for i, name in enumerate(names):
        v = utilities[name]
        y = top + i * row
        x0, x1 = sorted((x(0), x(v)))
        win = name == winner
        bold = ' font-weight="700"' if win else ""
        star = f"  ★ +{margin:.3f}" if win else ""
        body.append(
            f'<g class="bar{" winner" if win else ""}" data-strategy="{escape(name)}" '
            f'data-utility="{v:.4f}">'
            f'<text x="{left - 8}" y="{y + 17}" text-anchor="end" fill="{_INK}" '
            f'font-size="13"{bold}>{escape(name)}</text>'
            f'<rect x="{x0:.1f}" y="{y + 4}" width="{max(x1 - x0, 1):.1f}" height="{row - 10}" '
            f'fill="{STRATEGY_COLOURS.get(name, _MUTED)}"'
            + (f' stroke="{_INK}" stroke-width="2"' if win else "") + "/>"
            f'<text x="{x(max(v, 0)) + 6:.1f}" y="{y + 17}" fill="{_INK}" font-size="12">'
            f'{v:+.3f}{star}</text></g>')
        if compare is not None and name in compare:
            cx = x(compare[name])
            body.append(f'<line class="before" x1="{cx:.1f}" y1="{y + 1}" x2="{cx:.1f}" '
                        f'y2="{y + row - 3}" stroke="{_INK}" stroke-width="2" '
                        f'stroke-dasharray="3 2" data-strategy="{escape(name)}" '
                        f'data-utility="{compare[name]:.4f}"/>')
    body.append(f'<text x="{x(lo):.1f}" y="{height - 4}" fill="{_MUTED}" font-size="11">'
                f'{lo:+.2f}</text><text x="{x(hi):.1f}" y="{height - 4}" fill="{_MUTED}" '
                f'font-size="11" text-anchor="end">{hi:+.2f}</text>')
    desc = "; ".join(f"{n} {v:+.3f}" for n, v in utilities.items())
    desc += f". Chosen: {winner}, ahead by {margin:.3f}."
    if compare is not None:
        desc += " Dashed marks: before the change (" + "; ".join(
            f"{n} {v:+.3f}" for n, v in compare.items()) + ")."
    return _svg(width, height, title, desc, body, "utility-chart")


def _label(start: float, unit: str) -> str:
    t = datetime.fromtimestamp(start, UTC)
    return t.strftime("%m-%d %Hh") if unit == "hour" else t.strftime("%Y-%m-%d")


def series_chart(starts: Sequence[float], series: Mapping[str, Sequence[float | None]],
                 unit: str, title: str, value_format: str = "{:.0f}",
                 colours: Mapping[str, str] | None = None, stacked: bool = True) -> Markup:
    """Columns per hour or day (UTC): stacked series, or, with `stacked=False` and one
    series, plain columns. Axis labels are thinned to stay legible."""
    n = len(starts)
    left, plot_w, plot_h, top = 52, 640, 150, 10
    width, height = left + plot_w + 10, top + plot_h + 46
    totals = [sum(v or 0.0 for v in (s[i] for s in series.values())) if stacked
              else max((v or 0.0) for v in (s[i] for s in series.values()))
              for i in range(n)]
    peak = max(totals, default=0.0) or 1.0
    col = plot_w / max(n, 1)
    body = []
    for frac in (0.0, 0.5, 1.0) if value_format != "{:.0f}" or peak >= 4 else (0.0, 1.0):
        y = top + plot_h * (1 - frac)
        body.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" '
                    f'stroke="{_GRID}"/><text x="{left - 6}" y="{y + 4:.1f}" '
                    f'text-anchor="end" font-size="11" fill="{_MUTED}">'
                    f'{escape(value_format.format(peak * frac))}</text>')
    palette = colours or {}
    for i, start in enumerate(starts):
        base = 0.0
        parts = []
        for name, values in series.items():
            v = values[i]
            if v is None:
                continue
            h = v / peak * plot_h
            y = top + plot_h - (base + h if stacked else h)
            parts.append(f'<rect x="{left + i * col + col * 0.12:.1f}" y="{y:.1f}" '
                         f'width="{max(col * 0.76, 1):.1f}" height="{max(h, 0):.1f}" '
                         f'fill="{palette.get(name, "#0072B2")}" data-series="{escape(name)}" '
                         f'data-value="{v:.4g}"/>')
            if stacked:
                base += h
        label = _label(start, unit)
        values_text = ", ".join(f"{k} {value_format.format(s[i]) if s[i] is not None else '-'}"
                                for k, s in series.items())
        body.append(f'<g class="bucket" data-start="{start:.0f}"><title>{escape(label)}: '
                    f'{escape(values_text)}</title>{"".join(parts)}</g>')
    every = max(1, math.ceil(n / 7))
    for i in range(0, n, every):
        body.append(f'<text x="{left + (i + 0.5) * col:.1f}" y="{top + plot_h + 16}" '
                    f'text-anchor="middle" font-size="11" fill="{_MUTED}">'
                    f'{escape(_label(starts[i], unit))}</text>')
    if len(series) > 1:
        x = left
        for name in series:
            body.append(f'<rect x="{x}" y="{height - 14}" width="10" height="10" '
                        f'fill="{palette.get(name, "#0072B2")}"/><text x="{x + 14}" '
                        f'y="{height - 5}" font-size="11" fill="{_INK}">{escape(name)}</text>')
            x += 24 + 7 * len(name)
    desc = (f"{n} {unit}s (UTC). " + " ".join(
        f"{_label(s, unit)}: " + ", ".join(
            f"{k} {value_format.format(v[i]) if v[i] is not None else '-'}"
            for k, v in series.items()) + "." for i, s in enumerate(starts[:60])))
    return _svg(width, height, title, desc, body, "series-chart")
