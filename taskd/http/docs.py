"""``/docs``: the OpenAPI description rendered as one readable, self-contained HTML page.

No JavaScript and nothing fetched from elsewhere (taskd often runs where there is no
internet); the page is built once per app from the same dict ``/api/openapi.json`` serves.
"""

from __future__ import annotations

import re
from html import escape
from typing import Any

import orjson

_STYLE = """
body{font:15px/1.5 system-ui,sans-serif;margin:0 auto;max-width:980px;padding:1rem 1.5rem;
color:#1d232a;background:#fff}
@media (prefers-color-scheme:dark){body{color:#dde3ea;background:#14181d}
table,td,th{border-color:#39424d!important}code,pre{background:#232a32!important}}
h1{margin-bottom:0}h2{margin-top:2.5rem;border-bottom:1px solid #8884}
h3{font-family:ui-monospace,monospace;font-size:1rem;margin:2rem 0 .3rem}
.m{display:inline-block;min-width:4.2em;padding:.1em .4em;border-radius:4px;color:#fff;
text-align:center;margin-right:.5em}.get{background:#2f7d4f}.post{background:#2c63b5}
.delete{background:#b53a2c}table{border-collapse:collapse;width:100%;margin:.4rem 0}
td,th{border:1px solid #ddd;padding:.25rem .5rem;text-align:left;vertical-align:top}
code,pre{font-family:ui-monospace,monospace;background:#f2f4f6;border-radius:3px;
padding:0 .2em}pre{padding:.6rem;overflow:auto}nav li{font-family:ui-monospace,monospace}
"""


def _md(text: str) -> str:
    """The few Markdown forms the description uses: headings, bullets, paragraphs, code."""
    html: list[str] = []
    for block in re.split(r"\n\s*\n", text.strip()):
        lines = block.strip().splitlines()
        if lines[0].startswith("## "):
            html.append(f"<h2>{_inline(lines[0][3:])}</h2>")
        elif lines[0].startswith("* "):
            items = re.split(r"\n\* ", "\n" + "\n".join(lines))[1:]
            html.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in items) + "</ul>")
        else:
            html.append(f"<p>{_inline(' '.join(lines))}</p>")
    return "\n".join(html)


def _inline(text: str) -> str:
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", escape(text, quote=False))


def describe(schema: Any, spec: dict[str, Any]) -> str:
    """A one-line, human description of a schema (type, bounds, enum, reference)."""
    if not isinstance(schema, dict) or not schema:
        return "any"
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return f'<a href="#schema-{name}">{name}</a>'
    for key in ("anyOf", "oneOf"):
        if key in schema and "properties" not in schema:
            return " or ".join(describe(s, spec) for s in schema[key])
    kind = schema.get("type", "object" if "properties" in schema else "any")
    text = escape(" or ".join(kind) if isinstance(kind, list) else str(kind))
    if kind == "array":
        text = f"array of {describe(schema.get('items'), spec)}"
    notes = []
    if "enum" in schema:
        notes.append(
            "one of " + ", ".join(f"<code>{escape(str(v))}</code>" for v in schema["enum"])
        )
    for key, label in (
        ("minimum", "≥"),
        ("exclusiveMinimum", ">"),
        ("maximum", "≤"),
        ("minLength", "length ≥"),
        ("maxLength", "length ≤"),
        ("minItems", "items ≥"),
        ("maxItems", "items ≤"),
    ):
        if key in schema:
            notes.append(f"{label} {schema[key]}")
    if "pattern" in schema:
        notes.append(f"matches <code>{escape(schema['pattern'])}</code>")
    if "format" in schema:
        notes.append(escape(schema["format"]))
    if "default" in schema:
        notes.append(f"default <code>{escape(orjson.dumps(schema['default']).decode())}</code>")
    return text + (f" ({'; '.join(notes)})" if notes else "")


def _properties(schema: dict[str, Any], spec: dict[str, Any]) -> str:
    props = schema.get("properties")
    if not isinstance(props, dict) or not props:
        return f"<p>{describe(schema, spec)}</p>"
    required = set(schema.get("required", ()))
    rows = "".join(
        f"<tr><td><code>{escape(name)}</code>{' *' if name in required else ''}</td>"
        f"<td>{describe(sub, spec)}</td><td>{_inline(sub.get('description', ''))}</td></tr>"
        for name, sub in props.items()
    )
    return f"<table><tr><th>field (* required)</th><th>type</th><th>notes</th></tr>{rows}</table>"


def _response_schema(response: dict[str, Any], spec: dict[str, Any]) -> str:
    if "$ref" in response:
        response = spec["components"]["responses"][response["$ref"].rsplit("/", 1)[-1]]
    content = response.get("content", {})
    shown = [
        f"{escape(media)}: {describe(body.get('schema'), spec)}" for media, body in content.items()
    ]
    return escape(response.get("description", "")) + (f" — {'; '.join(shown)}" if shown else "")


def _operation(
    path: str, method: str, op: dict[str, Any], shared: list[Any], spec: dict[str, Any]
) -> str:
    anchor = op.get("operationId", f"{method}-{path}")
    parts = [
        f'<h3 id="{escape(anchor)}"><span class="m {method}">{method.upper()}</span>'
        f"{escape(path)}</h3><p>{_inline(op.get('summary', ''))}</p>"
    ]
    params = [*shared, *op.get("parameters", [])]
    if params:
        rows = "".join(
            f"<tr><td><code>{escape(p['name'])}</code>{' *' if p.get('required') else ''}</td>"
            f"<td>{escape(p['in'])}</td><td>{describe(p.get('schema'), spec)}</td>"
            f"<td>{_inline(p.get('description', ''))}</td></tr>"
            for p in params
        )
        parts.append(
            "<table><tr><th>parameter</th><th>in</th><th>type</th><th>notes</th>"
            f"</tr>{rows}</table>"
        )
    body = op.get("requestBody", {}).get("content", {}).get("application/json")
    if body:
        parts.append(f"<p>Body (JSON): {describe(body['schema'], spec)}</p>")
    rows = "".join(
        f"<tr><td>{escape(code)}</td><td>{_response_schema(r, spec)}</td></tr>"
        for code, r in op.get("responses", {}).items()
    )
    parts.append(f"<table><tr><th>status</th><th>response</th></tr>{rows}</table>")
    return "\n".join(parts)


def render(spec: dict[str, Any]) -> str:
    """The complete page."""
    info = spec["info"]
    toc: list[str] = []
    sections: list[str] = []
    for path, item in spec["paths"].items():
        shared = item.get("parameters", [])
        for method, op in item.items():
            if method == "parameters":
                continue
            toc.append(
                f'<li><a href="#{escape(op["operationId"])}">{method.upper()} '
                f"{escape(path)}</a> — {_inline(op.get('summary', ''))}</li>"
            )
            sections.append(_operation(path, method, op, shared, spec))
    schemas = "".join(
        f'<h3 id="schema-{escape(name)}">{escape(name)}</h3>{_properties(schema, spec)}'
        + (
            f"<p>Example:</p><pre>{escape(orjson.dumps(schema['example'], option=orjson.OPT_INDENT_2).decode())}</pre>"  # noqa: E501 - one expression
            if "example" in schema
            else ""
        )
        for name, schema in spec["components"]["schemas"].items()
    )
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width,initial-scale=1">'
        f"<title>{escape(info['title'])} API</title><style>{_STYLE}</style></head><body>"
        f"<h1>{escape(info['title'])} API</h1><p>Version {escape(info['version'])} · "
        '<a href="/api/openapi.json">openapi.json</a></p>'
        f"{_md(info.get('description', ''))}<h2>Endpoints</h2><nav><ul>{''.join(toc)}</ul>"
        f"</nav>{''.join(sections)}<h2>Schemas</h2>{schemas}</body></html>"
    )
