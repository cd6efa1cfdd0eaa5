"""Rendering a report as self-contained HTML (inline CSS, inline SVG chart), CSV and JSON.

A :class:`Report` is plain data; the renderers know nothing about queues or records, so
both report kinds share them. The HTML has no scripts and loads nothing, so it opens the
same from a download, an email attachment or a file share.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from html import escape
from typing import Any, Final

from taskd.handlers.records import cell

MAX_HTML_ROWS = 500
CHART_W, CHART_H, CHART_PAD = 720, 260, 40
COLORS: Final = ("#2f7d4f", "#c0392b", "#2c6fbb", "#d68910")
STYLE: Final = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;
max-width:960px;padding:0 1rem;color:#1d2330;background:#fff}
h1{font-size:1.6rem;margin:0 0 .2rem}h2{font-size:1.15rem;margin:2rem 0 .6rem}
.meta{color:#5b6478;margin:0}
dl.facts{display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));gap:.6rem;
margin:1.2rem 0}
dl.facts div{border:1px solid #dde2ea;border-radius:6px;padding:.5rem .7rem}
dt{color:#5b6478;font-size:.8rem}dd{margin:0;font-size:1.25rem;font-weight:600}
table{border-collapse:collapse;width:100%;font-size:.9rem}
th,td{border-bottom:1px solid #e6e9ef;padding:.3rem .5rem;text-align:left;vertical-align:top}
th{background:#f4f6f9}td.num{text-align:right;font-variant-numeric:tabular-nums}
svg text{font-size:11px;fill:#5b6478}.note{color:#5b6478;font-size:.85rem}
"""


@dataclass(slots=True)
class Table:
    """A titled table; ``rows`` hold plain values."""

    title: str
    columns: list[str]
    rows: list[list[Any]]


@dataclass(slots=True)
class Chart:
    """A (stacked) bar chart: one bar per label, one value per series."""

    title: str
    series: list[str]
    labels: list[str]
    values: list[list[float]]


@dataclass(slots=True)
class Report:
    """Everything a report shows; ``data`` is the JSON artifact, ``csv_*`` the CSV one."""

    title: str
    subtitle: str
    facts: dict[str, Any]
    data: dict[str, Any]
    csv_columns: list[str]
    csv_rows: list[list[Any]]
    tables: list[Table] = field(default_factory=list)
    chart: Chart | None = None


def render_json(report: Report) -> bytes:
    """The report's data as indented JSON."""
    return json.dumps(report.data, indent=2, ensure_ascii=False, default=str).encode()


# A spreadsheet runs a cell that starts with one of these as a formula (=HYPERLINK(...),
# =cmd|...); OWASP's advice: prefix such text cells with a single quote.
_FORMULA_STARTS: Final = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_cell(value: Any) -> str:
    """A CSV cell a spreadsheet shows as text; numbers stay numbers (-5 is no formula)."""
    text = cell(value)
    if isinstance(value, str) and text.startswith(_FORMULA_STARTS):
        return "'" + text
    return text


def render_csv(report: Report) -> bytes:
    """The report's rows as CSV (RFC 4180 line ends), safe to open in a spreadsheet."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([spreadsheet_cell(c) for c in report.csv_columns])
    writer.writerows([spreadsheet_cell(v) for v in row] for row in report.csv_rows)
    return out.getvalue().encode()


def render_html(report: Report) -> bytes:
    """A self-contained HTML page: facts, chart, tables."""
    parts = [
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n',
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n',
        f"<title>{escape(report.title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n",
        f"<header><h1>{escape(report.title)}</h1>"
        f'<p class="meta">{escape(report.subtitle)}</p></header>\n',
        _facts(report.facts),
    ]
    if report.chart is not None and report.chart.labels:
        parts.append(
            f"<section><h2>{escape(report.chart.title)}</h2>\n{_svg(report.chart)}</section>\n"
        )
    parts.extend(_table(table) for table in report.tables)
    parts.append("</body>\n</html>\n")
    return "".join(parts).encode()


def _facts(facts: dict[str, Any]) -> str:
    items = "".join(
        f"<div><dt>{escape(str(k).replace('_', ' '))}</dt><dd>{escape(_show(v))}</dd></div>"
        for k, v in facts.items()
    )
    return f'<dl class="facts">{items}</dl>\n'


def _show(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return cell(value)


def _table(table: Table) -> str:
    head = "".join(f"<th>{escape(c)}</th>" for c in table.columns)
    rows = []
    for row in table.rows[:MAX_HTML_ROWS]:
        cells = "".join(
            f'<td class="num">{escape(_show(v))}</td>'
            if isinstance(v, int | float) and not isinstance(v, bool)
            else f"<td>{escape(_show(v))}</td>"
            for v in row
        )
        rows.append(f"<tr>{cells}</tr>")
    note = ""
    if len(table.rows) > MAX_HTML_ROWS:
        note = (
            f'<p class="note">First {MAX_HTML_ROWS} of {len(table.rows):,} rows; '
            "the CSV has them all.</p>"
        )
    return (
        f"<section><h2>{escape(table.title)}</h2>\n<table><thead><tr>{head}</tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>{note}</section>\n"
    )


def _svg(chart: Chart) -> str:
    """Stacked bars with a legend and the axis maximum; bar titles are tooltips."""
    totals = [sum(values) for values in chart.values] or [0.0]
    top = max([*totals, 1e-9])
    inner_w, inner_h = CHART_W - 2 * CHART_PAD, CHART_H - 2 * CHART_PAD
    slot = inner_w / max(len(chart.labels), 1)
    bar_w = max(slot * 0.7, 1.0)
    shapes = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {CHART_W} {CHART_H}" '
        f'width="100%" role="img" aria-label="{escape(chart.title)}">',
        f'<line x1="{CHART_PAD}" y1="{CHART_H - CHART_PAD}" x2="{CHART_W - CHART_PAD}" '
        f'y2="{CHART_H - CHART_PAD}" stroke="#99a1b3"/>',
        f'<text x="{CHART_PAD}" y="{CHART_PAD - 8}">max {escape(_show(max(totals)))}</text>',
    ]
    every = max(1, len(chart.labels) // 12)  # at most ~12 axis labels
    for i, (label, values) in enumerate(zip(chart.labels, chart.values, strict=True)):
        x = CHART_PAD + i * slot + (slot - bar_w) / 2
        y: float = CHART_H - CHART_PAD
        for s, value in enumerate(values):
            h = inner_h * value / top
            y -= h
            tip = f"{label}: {chart.series[s]} {_show(value)}"
            shapes.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
                f'fill="{COLORS[s % len(COLORS)]}"><title>{escape(tip)}</title></rect>'
            )
        if i % every == 0:
            shapes.append(
                f'<text x="{x:.1f}" y="{CHART_H - CHART_PAD + 14}">{escape(label[:16])}</text>'
            )
    for s, name in enumerate(chart.series):
        x = CHART_W - CHART_PAD - 120 * (len(chart.series) - s)
        shapes.append(
            f'<rect x="{x}" y="8" width="10" height="10" '
            f'fill="{COLORS[s % len(COLORS)]}"/>'
            f'<text x="{x + 14}" y="17">{escape(name)}</text>'
        )
    shapes.append("</svg>")
    return "\n".join(shapes) + "\n"
