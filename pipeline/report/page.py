"""The report's content model (sections of facts, tables, figures, text) and its three renderings:
one self-contained HTML page, Markdown with figure files, and a JSON document of every number.
"""

from __future__ import annotations

import base64
import html
import math
import re
from dataclasses import dataclass, field
from typing import Any

from pipeline.core.artifacts import library_versions


@dataclass(frozen=True)
class Facts:
    """Label -> value pairs; `formats` maps a label to a format spec such as '{:.1%}'."""

    items: dict[str, Any]
    formats: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Table:
    name: str
    columns: list[str]
    rows: list[list[Any]]
    caption: str = ""
    formats: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Figure:
    name: str
    png: bytes
    caption: str


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class Code:
    text: str


@dataclass
class Section:
    """One report section: its blocks in display order and extra machine-readable data."""

    key: str
    title: str
    blocks: list[Any] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)

    def add(self, *blocks: Any) -> Section:
        self.blocks.extend(b for b in blocks if b is not None)
        return self

    @property
    def figures(self) -> list[Figure]:
        return [b for b in self.blocks if isinstance(b, Figure)]


def as_float(value: Any) -> float:
    """A number from a JSON document, NaN when it holds none (null, text)."""
    return float(value) if isinstance(value, (int, float)) else float("nan")


def fmt(value: Any, spec: str | None = None) -> str:
    """A value as the report shows it: thousands separators, 5 decimals for scores, '-' for missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if spec:
        return spec.format(value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        size = abs(value)
        if value == 0 or math.isinf(value):
            return str(value) if math.isinf(value) else "0"
        if size >= 100:
            return f"{value:,.1f}"
        if size >= 1:
            return f"{value:.4f}"
        return f"{value:.5f}" if size >= 0.001 else f"{value:.3g}"
    return str(value)


def plain(value: Any) -> Any:
    """JSON-safe value: numpy scalars to Python, NaN and infinities to None."""
    if hasattr(value, "item") and not isinstance(value, (list, dict)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def to_json(title: str, headline: dict[str, Any], sections: list[Section], meta: dict[str, Any]) -> dict[str, Any]:
    """The report as data: every fact and table cell shown in the HTML, plus each section's extra data."""
    doc: dict[str, Any] = {"title": title, "headline": plain(headline), **plain(meta), "sections": {}}
    for section in sections:
        entry: dict[str, Any] = {"title": section.title, "facts": {}, "tables": {}, "figures": [], "text": []}
        for block in section.blocks:
            if isinstance(block, Facts):
                entry["facts"].update(plain(block.items))
            elif isinstance(block, Table):
                entry["tables"][block.name] = {"columns": block.columns, "rows": plain(block.rows)}
            elif isinstance(block, Figure):
                entry["figures"].append(block.name)
            elif isinstance(block, Text):
                entry["text"].append(block.text)
        entry["data"] = plain(section.data)
        doc["sections"][section.key] = entry
    return doc


# ---- Markdown ----
def to_markdown(title: str, headline: dict[str, Any], sections: list[Section], figure_dir: str) -> str:
    """Markdown of the report; figures are referenced as `<figure_dir>/<name>.png`."""
    lines = [f"# {title}", ""] + [f"- **{c['label']}: {c['value']}** — {c['detail']}" for c in headline["cards"]]
    lines.append("")
    lines += [f"- {line}" for line in headline.get("lines", [])] + [""]
    for section in sections:
        lines += [f"## {section.title}", ""]
        for block in section.blocks:
            lines += _markdown_block(block, figure_dir) + [""]
    return "\n".join(lines).rstrip() + "\n"


def _markdown_block(block: Any, figure_dir: str) -> list[str]:
    if isinstance(block, Facts):
        return [f"- **{k}**: {_md_cell(fmt(v, block.formats.get(k)))}" for k, v in block.items.items()]
    if isinstance(block, Table):
        head = [f"*{block.caption}*", ""] if block.caption else []
        rows = [
            "| " + " | ".join(_md_cell(c) for c in block.columns) + " |",
            "|" + "|".join("---:" if _numeric_column(block, i) else "---" for i in range(len(block.columns))) + "|",
        ]
        for row in block.rows:
            rows.append(
                "| " + " | ".join(_md_cell(fmt(v, block.formats.get(c))) for c, v in zip(block.columns, row)) + " |"
            )
        return head + rows
    if isinstance(block, Figure):
        return [f"![{block.caption}]({figure_dir}/{block.name}.png)"]
    if isinstance(block, Text):
        return [block.text]
    if isinstance(block, Code):
        return ["```", block.text.rstrip(), "```"]
    return []


def _md_cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _numeric_column(table: Table, index: int) -> bool:
    values = [row[index] for row in table.rows if row[index] is not None]
    return bool(values) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


# ---- HTML ----
def to_html(title: str, headline: dict[str, Any], sections: list[Section], subtitle: str) -> str:
    """One self-contained page: inline CSS, figures as data URIs, no network access."""
    nav = "".join(f'<a href="#{s.key}">{_esc(s.title)}</a>' for s in sections)
    body = "".join(_html_section(s) for s in sections)
    versions = library_versions()
    return PAGE.format(
        title=_esc(title),
        subtitle=_esc(subtitle),
        css=CSS,
        check=CHECK_SCRIPT,
        nav=nav,
        headline=_html_headline(headline),
        body=body,
        footer=_esc(
            f"gbpipe {versions['gbpipe']} · lightgbm {versions['lightgbm']} · scikit-learn {versions['sklearn']}"
        ),
    )


def _html_headline(headline: dict[str, Any]) -> str:
    """The first thing on the page: the OOF score large, then the other headline cards, then how."""
    cards = "".join(
        f'<div class="stat{" main" if i == 0 else ""}"><div class="label">{_esc(c["label"])}</div>'
        f'<div class="value">{_esc(c["value"])}</div><div class="detail">{_inline(c["detail"])}</div></div>'
        for i, c in enumerate(headline["cards"])
    )
    lines = "".join(f"<li>{_inline(line)}</li>" for line in headline.get("lines", []))
    return f'<section class="headline"><div class="stats">{cards}</div><ul>{lines}</ul></section>'


def _caption(text: str) -> str:
    return f'<div class="caption">{_inline(text)}</div>' if text else ""


def _html_section(section: Section) -> str:
    parts, figures = [], []
    for block in section.blocks:
        if isinstance(block, Figure):
            figures.append(block)
            continue
        if figures:
            parts.append(_html_figures(figures))
            figures = []
        parts.append(_html_block(block))
    if figures:
        parts.append(_html_figures(figures))
    return f'<section id="{section.key}"><h2>{_esc(section.title)}</h2>{"".join(parts)}</section>'


def _html_figures(figures: list[Figure]) -> str:
    items = "".join(
        f'<figure><img alt="{_esc(f.caption)}" src="data:image/png;base64,{base64.b64encode(f.png).decode()}">'
        f"<figcaption>{_inline(f.caption)}</figcaption></figure>"
        for f in figures
    )
    return f'<div class="figures">{items}</div>'


def _html_block(block: Any) -> str:
    if isinstance(block, Facts):
        items = "".join(
            f"<dt>{_esc(k)}</dt><dd>{_inline(fmt(v, block.formats.get(k)))}</dd>" for k, v in block.items.items()
        )
        return f'<dl class="facts">{items}</dl>'
    if isinstance(block, Table):
        numeric = [_numeric_column(block, i) for i in range(len(block.columns))]
        head = "".join(f'<th class="{"num" if n else ""}">{_esc(c)}</th>' for c, n in zip(block.columns, numeric))
        rows = "".join(
            "<tr>"
            + "".join(
                f'<td class="{"num" if n else ""}">{_inline(fmt(v, block.formats.get(c)))}</td>'
                for c, v, n in zip(block.columns, row, numeric)
            )
            + "</tr>"
            for row in block.rows
        )
        table = f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
        return f'<div class="table-wrap">{_caption(block.caption)}{table}</div>'
    if isinstance(block, Text):
        return f"<p>{_inline(block.text)}</p>"
    if isinstance(block, Code):
        return f"<pre><code>{_esc(block.text)}</code></pre>"
    return ""


def _esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


_CODE = re.compile(r"`([^`]+)`")
_BOLD = re.compile(r"\*\*([^*]+)\*\*")


def _inline(text: Any) -> str:
    """Escaped text with `code` and **bold** spans."""
    escaped = _esc(text)
    return _BOLD.sub(r"<strong>\1</strong>", _CODE.sub(r"<code>\1</code>", escaped))


# The check script records script errors and failed images, and on load writes the result into
# #render-check, where a headless browser's --dump-dom output shows it (the rendering test reads it).
CHECK_SCRIPT = """(function(){var errs=[];window.addEventListener('error',function(e){
errs.push(String((e&&e.message)||(e&&e.target&&e.target.tagName)||'error'));},true);
window.addEventListener('load',function(){var imgs=document.images,bad=0,i;
for(i=0;i<imgs.length;i++){if(!imgs[i].complete||imgs[i].naturalWidth===0){bad++;}}
var m=document.getElementById('render-check');m.setAttribute('data-images',String(imgs.length));
m.setAttribute('data-broken-images',String(bad));m.setAttribute('data-errors',String(errs.length));
m.setAttribute('data-status',(bad===0&&errs.length===0)?'ok':'fail');});})();"""

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy"
 content="default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<title>{title}</title>
<style>{css}</style>
<script>{check}</script>
</head>
<body>
<header><h1>{title}</h1><p>{subtitle}</p></header>
<div class="layout">
<nav>{nav}</nav>
<main>{headline}{body}</main>
</div>
<footer>{footer}<span id="render-check"></span></footer>
</body>
</html>
"""

CSS = """
:root{--ink:#1f2933;--muted:#616e7c;--line:#e4e7eb;--bg:#f5f7fa;--card:#fff;--accent:#2563eb}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--ink);font:15px/1.55 -apple-system,BlinkMacSystemFont,"Segoe UI",
Roboto,"Helvetica Neue",Arial,sans-serif}
header{background:#102a43;color:#f0f4f8;padding:22px 32px}
header h1{margin:0;font-size:24px;font-weight:600}
header p{margin:4px 0 0;color:#bcccdc;font-size:14px}
.layout{display:flex;gap:24px;max-width:1360px;margin:0 auto;padding:24px 28px}
nav{position:sticky;top:16px;align-self:flex-start;min-width:150px;display:flex;flex-direction:column;gap:2px}
nav a{color:var(--muted);text-decoration:none;padding:5px 10px;border-radius:6px;font-size:14px}
nav a:hover{background:var(--card);color:var(--accent)}
main{flex:1;min-width:0}
section{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:20px 24px;margin:0 0 20px}
h2{margin:0 0 14px;font-size:19px;font-weight:600}
p{margin:8px 0;max-width:80ch}
.headline{border-left:5px solid var(--accent)}
.stats{display:flex;flex-wrap:wrap;gap:14px 44px;align-items:flex-end}
.stat .label{font-size:12.5px;text-transform:uppercase;letter-spacing:.06em;color:var(--muted)}
.stat .value{font-size:26px;font-weight:600;line-height:1.15;font-variant-numeric:tabular-nums;margin-top:2px}
.stat.main .value{font-size:48px;font-weight:700}
.stat .detail{font-size:14px;color:var(--muted)}
.headline ul{margin:16px 0 0;padding-left:18px;color:var(--ink)}
.facts{display:grid;grid-template-columns:max-content 1fr;gap:4px 18px;margin:8px 0 14px}
.facts dt{color:var(--muted)}
.facts dd{margin:0;font-variant-numeric:tabular-nums}
.table-wrap{overflow-x:auto;margin:10px 0 16px}
table{border-collapse:collapse;font-size:13.5px;font-variant-numeric:tabular-nums}
.caption{color:var(--muted);font-size:13px;padding-bottom:6px}
th,td{padding:5px 10px;border-bottom:1px solid var(--line);text-align:left;white-space:nowrap}
th{background:#f0f4f8;font-weight:600}
td.num,th.num{text-align:right}
tbody tr:nth-child(even){background:#fafbfc}
.figures{display:grid;grid-template-columns:repeat(auto-fill,minmax(400px,1fr));gap:18px;margin:12px 0}
figure{margin:0}
figure img{width:100%;height:auto;border:1px solid var(--line);border-radius:6px;background:#fff}
figcaption{font-size:13px;color:var(--muted);margin-top:4px}
code{background:#f0f4f8;border-radius:4px;padding:1px 5px;font:13px/1.4 ui-monospace,SFMono-Regular,Menlo,monospace}
pre{background:#f0f4f8;border-radius:8px;padding:12px 14px;overflow-x:auto}
pre code{padding:0;background:none}
footer{max-width:1360px;margin:0 auto;padding:8px 32px 32px;color:var(--muted);font-size:12px}
@media (max-width:900px){.layout{flex-direction:column}nav{position:static;flex-direction:row;flex-wrap:wrap}}
"""
